//! The analytics module: a read model of deals, stage stays and activity, kept current by an
//! event subscriber (`Projector`) and rebuildable from the deals module's history, and the
//! reports built on it. Owns the `analytics` schema; it never reads another module's tables.

mod projector;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use projector::Projector;
pub use service::AnalyticsService;

pub const SCHEMA: &str = "analytics";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/analytics");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};
