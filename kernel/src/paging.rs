//! Keyset pagination: a page is "the next N rows after this key", never an OFFSET.
//!
//! The cursor is opaque to clients: base64url of a small JSON value holding the sort key of the
//! last row seen (for example `[created_at, id]`). Each list decides what its key is.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{AppError, ErrorCode};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 250;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    pub fn encode<K: Serialize>(key: &K) -> Cursor {
        // Serialising plain keys (numbers, strings, timestamps) cannot fail.
        let json = serde_json::to_vec(key).unwrap_or_default();
        Cursor(URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode<K: DeserializeOwned>(&self) -> Result<K, AppError> {
        let bad = || AppError::new(ErrorCode::BadRequest, "the page cursor is not valid");
        let bytes = URL_SAFE_NO_PAD
            .decode(self.0.as_bytes())
            .map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_string(s: String) -> Cursor {
        Cursor(s)
    }
}

/// What a caller asks for: up to `limit` rows after `after` (from the start when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    pub after: Option<Cursor>,
    pub limit: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            after: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl PageRequest {
    pub fn new(after: Option<Cursor>, limit: Option<u32>) -> PageRequest {
        PageRequest {
            after,
            limit: limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
        }
    }

    /// How many rows to fetch: one more than asked, to learn whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

/// One page of results and the cursor for the next page, if there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from `fetch_limit()` rows: the extra row, if present, proves there is more.
    pub fn from_rows<K: Serialize>(
        mut rows: Vec<T>,
        req: &PageRequest,
        key: impl Fn(&T) -> K,
    ) -> Page<T> {
        let limit = req.limit as usize;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor::encode(&key(last)))
        } else {
            None
        };
        Page { items: rows, next }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_knows_whether_more_rows_follow() {
        let req = PageRequest::new(None, Some(2));
        assert_eq!(req.fetch_limit(), 3);
        let page = Page::from_rows(vec![1, 2, 3], &req, |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        let after: i32 = page.next.unwrap().decode().unwrap();
        assert_eq!(after, 2);
        let last = Page::from_rows(vec![4], &req, |n| *n);
        assert!(last.next.is_none());
    }

    #[test]
    fn limits_are_clamped_and_bad_cursors_refused() {
        assert_eq!(PageRequest::new(None, Some(10_000)).limit, MAX_LIMIT);
        assert_eq!(PageRequest::new(None, Some(0)).limit, 1);
        let err = Cursor::from_string("%%%".into())
            .decode::<i64>()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }
}
