//! `voronka extract <module> --to <database_url>`: moves one module's data into the database of
//! its own service, consistently, and `--rollback` brings it back.
//!
//! The move: the target gets the module's schema by its own migrations (so the same migration
//! history); the module's tables in the source are locked against writes (reads go on), their
//! rows are copied from one snapshot with `pg_dump --data-only` (sequences included), and each
//! table's row count and checksum (an MD5 over the sorted MD5s of its rows) are compared on both
//! sides. Then, in the same locked transaction, every table of the source schema gets a trigger
//! that refuses writes and the schema is renamed to `<module>_extracted_<time>`, so that a
//! process still running the module in-process fails loudly instead of writing where nobody
//! reads (writes that waited for the lock fail too). The outbox and the inbox are tables of the
//! schema and move with it: unpublished events are published by the service's relay.

use std::process::{Command, Stdio};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

/// A blocking connection (the move runs on a blocking thread).
type PgConnection = AsyncConnectionWrapper<AsyncPgConnection>;

use crate::database::MIGRATIONS;

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName, PartialEq, Eq, Debug)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = Text)]
    checksum: String,
}

/// One table's comparison.
#[derive(Debug)]
pub struct TableCheck {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

fn tables(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>, String> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables
          WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .bind::<Text, _>(schema)
    .load(conn)
    .map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

fn sum(conn: &mut PgConnection, schema: &str, table: &str) -> Result<Sum, String> {
    diesel::sql_query(format!(
        "SELECT count(*) AS rows,
                md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS checksum
           FROM (SELECT md5(t::text) AS h FROM \"{schema}\".\"{table}\" t) x"
    ))
    .get_result(conn)
    .map_err(|e| format!("{schema}.{table}: {e}"))
}

fn pg_tool(name: &str) -> String {
    kernel::pg_cluster::find_bin_dir()
        .map(|d| d.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Copies the rows of `schema` (all its tables but the migration history) from the snapshot
/// `snapshot` of `from` into `to`, in one transaction.
fn copy_rows(from: &str, to: &str, schema: &str, snapshot: &str) -> Result<(), String> {
    let mut dump = Command::new(pg_tool("pg_dump"))
        .args(["--data-only", "--no-owner", "--no-privileges", "--schema"])
        .arg(schema)
        .arg(format!(
            "--exclude-table={schema}.__diesel_schema_migrations"
        ))
        .arg(format!("--snapshot={snapshot}"))
        .arg("--dbname")
        .arg(from)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("pg_dump: {e} (install the PostgreSQL client)"))?;
    let out = dump.stdout.take().ok_or("pg_dump: no output")?;
    let restore = Command::new(pg_tool("psql"))
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "--dbname",
        ])
        .arg(to)
        .stdin(out)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    let dumped = dump.wait().map_err(|e| e.to_string())?;
    if !dumped.success() {
        return Err("pg_dump failed (see its message above)".into());
    }
    if !restore.status.success() {
        return Err(format!(
            "restoring into the target failed: {}",
            String::from_utf8_lossy(&restore.stderr)
        ));
    }
    Ok(())
}

/// Moves `module`'s schema from `from` to `to`; returns each table's rows and checksum (equal on
/// both sides) and the name the source schema was given.
pub fn extract(module: &str, from: &str, to: &str) -> Result<(Vec<TableCheck>, String), String> {
    let m = MIGRATIONS
        .iter()
        .find(|m| m.schema == module)
        .ok_or_else(|| format!("unknown module `{module}`"))?;
    if from == to {
        return Err("the target is the database the module is in already".into());
    }
    let names = {
        let mut source = PgConnection::establish(from).map_err(|e| format!("the source: {e}"))?;
        tables(&mut source, module)?
    };
    if names.is_empty() {
        return Err(format!("the source has no `{module}` schema"));
    }
    // The target's schema, made here by the module's own migrations (so the same history): a
    // target that had the schema already is refused, its data is not ours to overwrite.
    let all = kernel::migrate::versions(m).map_err(|e| e.to_string())?;
    let applied =
        kernel::migrate::run_pending(to, m).map_err(|e| format!("migrating the target: {e}"))?;
    if applied.len() < all.len() {
        return Err(format!(
            "the target has a `{module}` schema already: extract into a database without one"
        ));
    }
    let mut target = PgConnection::establish(to).map_err(|e| format!("the target: {e}"))?;
    // Rows the migrations seeded come with the copy.
    let data: Vec<String> = names
        .iter()
        .filter(|t| *t != "__diesel_schema_migrations")
        .map(|t| format!("\"{module}\".\"{t}\""))
        .collect();
    target
        .batch_execute(&format!("TRUNCATE {}", data.join(", ")))
        .map_err(|e| format!("emptying the target: {e}"))?;
    // Writes to the module pause: its tables are locked (reads go on) until the commit.
    let mut source = PgConnection::establish(from).map_err(|e| format!("the source: {e}"))?;
    source
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .map_err(|e| e.to_string())?;
    let list: Vec<String> = names
        .iter()
        .map(|t| format!("\"{module}\".\"{t}\""))
        .collect();
    let result = (|| {
        source
            .batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", list.join(", ")))
            .map_err(|e| format!("pausing writes: {e}"))?;
        let snapshot: Name = diesel::sql_query("SELECT pg_export_snapshot() AS name")
            .get_result(&mut source)
            .map_err(|e| e.to_string())?;
        copy_rows(from, to, module, &snapshot.name)?;
        let mut checks = Vec::new();
        for t in names.iter().filter(|t| *t != "__diesel_schema_migrations") {
            let a = sum(&mut source, module, t)?;
            let b = sum(&mut target, module, t)?;
            if a != b {
                return Err(format!(
                    "{module}.{t} differs after the copy: {} rows ({}) here, {} rows ({}) there",
                    a.rows, a.checksum, b.rows, b.checksum
                ));
            }
            checks.push(TableCheck {
                table: t.clone(),
                rows: a.rows,
                checksum: a.checksum,
            });
        }
        // Writes still aimed at the old copy fail from now on: statements waiting for the lock
        // find the tables renamed, and cached plans are invalidated by the triggers, which
        // refuse every write.
        source
            .batch_execute(&format!(
                "CREATE FUNCTION \"{module}\".moved_away() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN
                     RAISE EXCEPTION 'the {module} module has moved to the database of its service'
                         USING ERRCODE = 'read_only_sql_transaction';
                 END $f$"
            ))
            .map_err(|e| e.to_string())?;
        for t in &names {
            source
                .batch_execute(&format!(
                    "CREATE TRIGGER moved_away BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE
                         ON \"{module}\".\"{t}\" FOR EACH STATEMENT
                         EXECUTE FUNCTION \"{module}\".moved_away()"
                ))
                .map_err(|e| e.to_string())?;
        }
        let moved = format!(
            "{module}_extracted_{}",
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        );
        source
            .batch_execute(&format!("ALTER SCHEMA \"{module}\" RENAME TO \"{moved}\""))
            .map_err(|e| e.to_string())?;
        Ok((checks, moved))
    })();
    match result {
        Ok(done) => {
            source.batch_execute("COMMIT").map_err(|e| e.to_string())?;
            Ok(done)
        }
        Err(e) => {
            let _ = source.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Brings `module` back from its service's database `from` into `to` (the monolith's): the rows
/// as they are there now (the service may have written since), verified the same way; the
/// copy in `from` is renamed aside in turn.
pub fn rollback(module: &str, from: &str, to: &str) -> Result<(Vec<TableCheck>, String), String> {
    // The monolith's old copy is stale; it goes aside under a second name before the move back.
    let mut target = PgConnection::establish(to).map_err(|e| format!("the target: {e}"))?;
    let present: Vec<Name> =
        diesel::sql_query("SELECT nspname::text AS name FROM pg_namespace WHERE nspname = $1")
            .bind::<Text, _>(module)
            .load(&mut target)
            .map_err(|e| e.to_string())?;
    if !present.is_empty() {
        target
            .batch_execute(&format!(
                "ALTER SCHEMA \"{module}\" RENAME TO \"{module}_stale_{}\"",
                chrono::Utc::now().format("%Y%m%d%H%M%S")
            ))
            .map_err(|e| e.to_string())?;
    }
    extract(module, from, to)
}
