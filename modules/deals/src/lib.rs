//! The deals module: pipelines, stages, loss reasons, deals, per-stage totals, stage history.
//! Owns the `deals` schema; everyone else reaches it through `deals_api::Deals`.

mod access;
mod fields;
mod merges;
mod ops;
mod query;
mod rows;
mod schema;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use merges::ContactMerges;
pub use service::DealsService;

pub const SCHEMA: &str = "deals";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/deals");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};
