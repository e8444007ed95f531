//! When and by whom a record was made, as the system it came from recorded it. An import sets
//! it on the records it brought over, so they keep their history instead of looking new; the
//! modules accept it only from the system itself or an administrator.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AppError, AppResult};

/// The most records one call restores.
pub const MAX_PROVENANCE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The record's id in this module.
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A user of the account (0: the system).
    pub created_by: i64,
    pub updated_by: i64,
    /// When a deal was closed or a task completed, where that applies.
    pub closed_at: Option<DateTime<Utc>>,
}

/// Checks a restore request's shape: at most [`MAX_PROVENANCE`] records, creation not after
/// the last change. Who may ask is checked by the module
/// (`accounts_api::access::system_or_admin`).
pub fn check(items: &[Provenance]) -> AppResult<()> {
    if items.len() > MAX_PROVENANCE {
        return Err(AppError::validation(
            "items",
            "too_many",
            &format!("at most {MAX_PROVENANCE} records at once"),
        ));
    }
    if let Some(p) = items.iter().find(|p| p.created_at > p.updated_at) {
        return Err(AppError::validation(
            "created_at",
            "after_update",
            &format!("record {} would be created after its last change", p.id),
        ));
    }
    Ok(())
}
