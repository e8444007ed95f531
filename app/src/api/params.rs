//! Query strings in PHP bracket notation, as amoCRM clients send them: `filter[id][0]=1`,
//! `filter[id][]=1`, a repeated `filter[pipeline_id]=5&filter[pipeline_id]=6`, comma lists,
//! ranges `filter[price][from]=…`, and brackets raw or percent-encoded alike.
//!
//! The string is read into a tree ([`Node`]) once; handlers then take typed values from it,
//! and every value that does not fit is reported with its path (`filter[price][from]`) as a
//! validation error, so a bad filter is a clear 400, never an ignored part.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kernel::{AppError, FieldError};

/// One level of the tree: a value, or children by key (numbered keys keep their order).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Values(Vec<String>),
    Map(BTreeMap<Key, Node>),
}

/// A child's key: numbers sort as numbers, before names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Index(u64),
    Name(String),
}

impl Key {
    fn of(s: &str) -> Key {
        match s.parse::<u64>() {
            Ok(n) if !s.starts_with('+') => Key::Index(n),
            _ => Key::Name(s.to_string()),
        }
    }
}

/// Splits `filter[statuses][0][pipeline_id]` into `filter`, `statuses`, `0`, `pipeline_id`.
fn segments(key: &str) -> Vec<&str> {
    let Some(open) = key.find('[') else {
        return vec![key];
    };
    let mut out = vec![&key[..open]];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                out.push(&stripped[..close]);
                rest = &stripped[close + 1..];
            }
            None => {
                out.push(stripped);
                break;
            }
        }
    }
    out
}

impl Node {
    fn insert(&mut self, path: &[&str], value: String) {
        let Some((first, rest)) = path.split_first() else {
            match self {
                Node::Values(v) => v.push(value),
                // A scalar given besides children (`a=1&a[b]=2`) is kept under the empty name.
                Node::Map(m) => m
                    .entry(Key::Name(String::new()))
                    .or_insert_with(|| Node::Values(Vec::new()))
                    .insert(&[], value),
            }
            return;
        };
        if let Node::Values(v) = self {
            let mut m = BTreeMap::new();
            if !v.is_empty() {
                m.insert(Key::Name(String::new()), Node::Values(std::mem::take(v)));
            }
            *self = Node::Map(m);
        }
        let Node::Map(m) = self else { return };
        let key = if first.is_empty() {
            // `[]` appends: the next free index.
            let next = m
                .keys()
                .filter_map(|k| match k {
                    Key::Index(i) => Some(i + 1),
                    Key::Name(_) => None,
                })
                .max()
                .unwrap_or(0);
            Key::Index(next)
        } else {
            Key::of(first)
        };
        m.entry(key)
            .or_insert_with(|| Node::Values(Vec::new()))
            .insert(rest, value);
    }

    pub fn get(&self, name: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.get(&Key::of(name)),
            Node::Values(_) => None,
        }
    }

    /// The single value here (the last one if repeated).
    pub fn value(&self) -> Option<&str> {
        match self {
            Node::Values(v) => v.last().map(String::as_str),
            Node::Map(m) => m.get(&Key::Name(String::new())).and_then(Node::value),
        }
    }

    /// Every value here as a list: repeated keys, numbered or `[]` children, and (with
    /// `commas`) comma-separated parts.
    pub fn list(&self, commas: bool) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(commas, &mut out);
        out
    }

    fn collect<'a>(&'a self, commas: bool, out: &mut Vec<&'a str>) {
        match self {
            Node::Values(v) => {
                for s in v {
                    if commas {
                        out.extend(s.split(',').map(str::trim).filter(|s| !s.is_empty()));
                    } else if !s.is_empty() {
                        out.push(s);
                    }
                }
            }
            Node::Map(m) => {
                for child in m.values() {
                    child.collect(commas, out);
                }
            }
        }
    }

    /// The children in order (numbered ones by number).
    pub fn children(&self) -> Vec<(&Key, &Node)> {
        match self {
            Node::Map(m) => m.iter().collect(),
            Node::Values(_) => Vec::new(),
        }
    }
}

/// The parsed query string, with the errors found while reading values from it.
pub struct Params {
    root: Node,
    pub errors: Vec<FieldError>,
}

impl Params {
    pub fn parse(query: &str) -> Params {
        let mut root = Node::Map(BTreeMap::new());
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let mut errors = Vec::new();
        for (k, v) in pairs {
            // PostgreSQL text cannot hold NUL: refused here rather than failing in a query.
            if k.contains('\0') || v.contains('\0') {
                errors.push(FieldError {
                    field: k.replace('\0', ""),
                    code: "InvalidValue".into(),
                    message: "NUL characters are not allowed".into(),
                });
                continue;
            }
            let segs = segments(&k);
            if segs.first().is_some_and(|s| !s.is_empty()) {
                root.insert(&segs, v);
            }
        }
        Params { root, errors }
    }

    /// A node by its path, e.g. `["filter", "price"]`.
    pub fn node(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(&self.root, |n, p| n.get(p))
    }

    pub fn fail(&mut self, path: &str, code: &str, detail: &str) {
        self.errors.push(FieldError {
            field: path.to_string(),
            code: code.to_string(),
            message: detail.to_string(),
        });
    }

    pub fn str(&self, path: &[&str]) -> Option<String> {
        self.node(path)
            .and_then(Node::value)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// A whole number, or an error naming the parameter.
    pub fn int(&mut self, path: &[&str]) -> Option<i64> {
        let raw = self.str(path)?;
        match raw.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.fail(
                    &render(path),
                    "InvalidType",
                    "This value should be of type int.",
                );
                None
            }
        }
    }

    /// Every whole number given (repeated, numbered, `[]`, or with `commas` comma-separated).
    pub fn ints(&mut self, path: &[&str], commas: bool) -> Vec<i64> {
        let Some(node) = self.node(path) else {
            return Vec::new();
        };
        let raw: Vec<String> = node.list(commas).into_iter().map(str::to_string).collect();
        let mut out = Vec::new();
        for s in raw {
            match s.trim().parse::<i64>() {
                Ok(n) => out.push(n),
                Err(_) => {
                    self.fail(
                        &render(path),
                        "InvalidType",
                        "This value should be of type int.",
                    );
                    return Vec::new();
                }
            }
        }
        out
    }

    pub fn strs(&self, path: &[&str], commas: bool) -> Vec<String> {
        self.node(path)
            .map(|n| n.list(commas).into_iter().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `1`/`0` (also `true`/`false`).
    pub fn bool(&mut self, path: &[&str]) -> Option<bool> {
        match self.str(path)?.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => {
                self.fail(&render(path), "InvalidType", "This value should be 1 or 0.");
                None
            }
        }
    }

    /// A range `[from]`/`[to]` of whole numbers; a single value (or the old `a,b` form) is read
    /// as both ends.
    pub fn int_range(&mut self, path: &[&str]) -> (Option<i64>, Option<i64>) {
        let Some(node) = self.node(path).cloned() else {
            return (None, None);
        };
        let one = |p: &str, s: Option<&str>, this: &mut Params| -> Option<i64> {
            let s = s?.trim();
            if s.is_empty() {
                return None;
            }
            match s.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    this.fail(p, "InvalidType", "This value should be of type int.");
                    None
                }
            }
        };
        let base = render(path);
        if node.get("from").is_some() || node.get("to").is_some() {
            let from = one(
                &format!("{base}[from]"),
                node.get("from").and_then(Node::value),
                self,
            );
            let to = one(
                &format!("{base}[to]"),
                node.get("to").and_then(Node::value),
                self,
            );
            return (from, to);
        }
        let list = node.list(true);
        match list.as_slice() {
            [] => (None, None),
            [v] => {
                let n = one(&base, Some(v), self);
                (n, n)
            }
            [a, b] => (one(&base, Some(a), self), one(&base, Some(b), self)),
            _ => {
                self.fail(&base, "InvalidType", "A range is [from] and [to].");
                (None, None)
            }
        }
    }

    /// A range of unix seconds, as times; `to` is taken as inclusive (amoCRM's ranges are).
    pub fn time_range(&mut self, path: &[&str]) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let (from, to) = self.int_range(path);
        if from.is_some_and(|s| !valid_time(s)) || to.is_some_and(|s| !valid_time(s)) {
            self.fail(
                &render(path),
                "InvalidValue",
                "unix seconds between the years 1 and 9999",
            );
            return (None, None);
        }
        (
            from.and_then(|s| DateTime::from_timestamp(s, 0)),
            to.and_then(|s| DateTime::from_timestamp(s + 1, 0)),
        )
    }

    /// The collected errors as one 400, or nothing.
    pub fn finish(&mut self) -> Result<(), AppError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::from_fields(std::mem::take(&mut self.errors)))
        }
    }
}

/// Unix seconds PostgreSQL and people can use: from the year 1 to 9999.
pub fn valid_time(secs: i64) -> bool {
    (-62_135_596_800..=253_402_300_799).contains(&secs)
}

/// `["filter", "price"]` as `filter[price]`.
pub fn render(path: &[&str]) -> String {
    let mut out = String::new();
    for (i, p) in path.iter().enumerate() {
        if i == 0 {
            out.push_str(p);
        } else {
            out.push('[');
            out.push_str(p);
            out.push(']');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_bracket_encoding() {
        let mut p = Params::parse(
            "filter%5Bid%5D%5B0%5D=1&filter%5Bid%5D%5B1%5D=2&filter[created_by][]=7&filter[created_by][]=8\
             &filter[pipeline_id]=5&filter[pipeline_id]=6&filter[entity]=lead,contact\
             &filter[price][from]=10&filter[price][to]=20\
             &filter[statuses][0][pipeline_id]=3&filter[statuses][0][status_id]=142\
             &filter[statuses][1][pipeline_id]=4&filter[statuses][1][status_id]=143&with=contacts",
        );
        assert_eq!(p.ints(&["filter", "id"], false), vec![1, 2]);
        assert_eq!(p.ints(&["filter", "created_by"], false), vec![7, 8]);
        assert_eq!(p.ints(&["filter", "pipeline_id"], false), vec![5, 6]);
        assert_eq!(p.strs(&["filter", "entity"], true), vec!["lead", "contact"]);
        assert_eq!(p.int_range(&["filter", "price"]), (Some(10), Some(20)));
        let statuses: Vec<(i64, i64)> = p
            .node(&["filter", "statuses"])
            .unwrap()
            .children()
            .into_iter()
            .map(|(_, n)| {
                (
                    n.get("pipeline_id")
                        .unwrap()
                        .value()
                        .unwrap()
                        .parse()
                        .unwrap(),
                    n.get("status_id")
                        .unwrap()
                        .value()
                        .unwrap()
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(statuses, vec![(3, 142), (4, 143)]);
        assert_eq!(p.str(&["with"]).as_deref(), Some("contacts"));
        assert!(p.finish().is_ok());
    }

    #[test]
    fn a_bad_value_is_reported_with_its_path() {
        let mut p = Params::parse("filter[price][from]=abc&filter[id]=x");
        p.int_range(&["filter", "price"]);
        p.ints(&["filter", "id"], false);
        let err = p.finish().unwrap_err();
        let paths: Vec<_> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(paths, vec!["filter[price][from]", "filter[id]"]);
    }

    #[test]
    fn the_old_comma_range_and_a_single_value() {
        let mut p = Params::parse("filter[created_at]=100,200&filter[price]=5");
        assert_eq!(
            p.int_range(&["filter", "created_at"]),
            (Some(100), Some(200))
        );
        assert_eq!(p.int_range(&["filter", "price"]), (Some(5), Some(5)));
    }
}
