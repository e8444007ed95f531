//! Shared primitives every module stands on. Nothing here knows about any module's data.

pub mod actor;
pub mod db;
pub mod error;
pub mod events;
pub mod fields;
pub mod ids;
pub mod inbox;
pub mod migrate;
pub mod money;
pub mod outbox;
pub mod paging;
pub mod pg_cluster;
pub mod provenance;
pub mod reach;
pub mod remote;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;

pub use actor::{Actor, Caller};
pub use error::{AppError, AppResult, ErrorCode, FieldError};
pub use ids::{AccountId, UserId};
