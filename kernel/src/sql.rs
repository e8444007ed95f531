//! Raw SQL that PostgreSQL prepares once per connection.
//!
//! Diesel's `sql_query` marks itself unsafe to cache, so every raw statement is parsed, analysed
//! and planned again on each call (about a third of PostgreSQL's CPU on the event paths). `query`
//! takes the same text and binds, but writes the statement through diesel's own bind placeholders,
//! so the connection's statement cache keeps it (keyed by the SQL text and the bind types) and
//! PostgreSQL reuses the prepared statement and, after a few calls, its generic plan.
//!
//! Use it for statements whose text is fixed (a constant, or a few variants such as one per
//! schema): every distinct text is a prepared statement kept for the connection's life. SQL built
//! with a varying number of values belongs in `diesel::sql_query`. `$n` placeholders refer to
//! the binds in the order they were added and may repeat; a `$` that is not followed by a digit
//! (a dollar-quoted string) is copied as it is. Placeholders inside string literals are not
//! recognised as text: do not write `'$1'`.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A raw statement with its binds; run it with diesel-async's `RunQueryDsl` (`execute`, `load`,
/// `get_result`) like `sql_query`'s.
pub struct Sql<'a> {
    text: String,
    binds: Vec<Box<dyn QueryFragment<Pg> + Send + Sync + 'a>>,
}

/// Starts a cacheable raw statement: `query("… WHERE id = $1").bind::<BigInt, _>(id)`.
pub fn query(text: impl Into<String>) -> Sql<'static> {
    Sql {
        text: text.into(),
        binds: Vec::new(),
    }
}

struct Bind<ST, V> {
    value: V,
    _type: PhantomData<fn() -> ST>,
}

impl<ST, V> QueryFragment<Pg> for Bind<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl<'a> Sql<'a> {
    /// Adds the value for the next placeholder (`$1` first), typed as `ST`.
    pub fn bind<ST, V>(self, value: V) -> Sql<'a>
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + Sync + 'a,
        ST: 'static,
    {
        let Sql { text, mut binds } = self;
        binds.push(Box::new(Bind {
            value,
            _type: PhantomData::<fn() -> ST>,
        }));
        Sql { text, binds }
    }
}

impl QueryFragment<Pg> for Sql<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let text = self.text.as_str();
        let bytes = text.as_bytes();
        let (mut from, mut i) = (0, 0);
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let n: usize = text[start..end].parse().unwrap_or(0);
                let bind = n
                    .checked_sub(1)
                    .and_then(|k| self.binds.get(k))
                    .ok_or_else(|| {
                        diesel::result::Error::QueryBuilderError(
                            format!("${n} has no bound value ({} bound)", self.binds.len()).into(),
                        )
                    })?;
                out.push_sql(&text[from..i]);
                bind.walk_ast(out.reborrow())?;
                from = end;
                i = end;
            } else {
                i += 1;
            }
        }
        out.push_sql(&text[from..]);
        Ok(())
    }
}

impl QueryId for Sql<'_> {
    type QueryId = ();
    // No static id: the cache keys the statement by its text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Sql<'_> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{BigInt, Text};

    fn sql_of(q: &Sql<'_>) -> String {
        diesel::debug_query::<Pg, _>(q).to_string()
    }

    #[test]
    fn placeholders_become_diesels_in_order_and_may_repeat() {
        let q = query("SELECT $2::text || $1, $1 + 0, $$lit$$")
            .bind::<BigInt, _>(7_i64)
            .bind::<Text, _>("a");
        let s = sql_of(&q);
        assert!(
            s.starts_with("SELECT $1::text || $2, $3 + 0, $$lit$$"),
            "{s}"
        );
        assert!(s.contains("binds: [\"a\", 7, 7]"), "{s}");
    }

    #[test]
    fn a_placeholder_without_a_value_is_an_error() {
        let q = query("SELECT $2").bind::<BigInt, _>(1_i64);
        let r = QueryFragment::<Pg>::to_sql(
            &q,
            &mut <Pg as diesel::backend::Backend>::QueryBuilder::default(),
            &Pg,
        );
        assert!(r.is_err());
    }
}
