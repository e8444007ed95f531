//! The accounts module: tenants, users, groups, roles and rights, sessions, API tokens.
//! Owns the `accounts` schema; everyone else reaches it through `accounts_api::Accounts`.

mod rows;
mod schema;
mod secrets;
mod service;
mod validate;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use service::AccountsService;

pub const SCHEMA: &str = "accounts";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/accounts");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};
