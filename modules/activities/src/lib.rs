//! The activities module: notes and tasks on deals, contacts and companies, the account's event
//! log (fed by every module's events), and the timeline of a record.
//! Owns the `activities` schema; everyone else reaches it through `activities_api::Activities`.

mod log;
mod rows;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use log::EventLog;
pub use service::ActivitiesService;

pub const SCHEMA: &str = "activities";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/activities");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};
