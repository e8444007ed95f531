//! Moving an account over from amoCRM / Kommo through its API v4.
//!
//! [`amo`] reads an account politely (paced under its rate limit, 429s waited out, pages of 250);
//! [`survey`] is the dry run: it reads everything an import would and reports the counts and
//! what cannot be brought over as it is; [`run`] is the import itself, written through the
//! other modules' traits, resumable and repeatable. Owns the `importer` schema (runs and the
//! id map); it never touches another module's tables.

pub mod amo;
pub mod run;
pub mod store;
pub mod survey;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use amo::{AmoClient, AmoError, ClientOptions, OAuthClient, TokenSink, Tokens};
pub use run::{ImportError, Importer, Outcome, Progress, Skip, Targets};
pub use store::{Run, Store};
pub use survey::{Problem, Survey, survey};

pub const SCHEMA: &str = "importer";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/importer");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};
