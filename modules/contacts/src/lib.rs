//! The contacts module: contacts and companies, their phones and e-mails (normalised for search
//! and duplicates), links between them, custom fields, tags, search.
//! Owns the `contacts` schema; everyone else reaches it through `contacts_api::Contacts`.

mod contacted;
mod deal_links;
mod export;
mod import;
mod schema;
mod service;
mod tabular;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use contacted::Contacted;
pub use deal_links::DealLinks;
pub use service::ContactsService;

pub const SCHEMA: &str = "contacts";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/contacts");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};
