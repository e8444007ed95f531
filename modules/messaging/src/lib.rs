//! The messaging module: chats with clients over Telegram, WhatsApp and Instagram. Owns the
//! `messaging` schema; everyone else reaches it through `messaging_api::Messaging`.
//!
//! Incoming webhooks are checked (Telegram's secret token, Meta's signature), stored once per
//! delivery and processed by job workers into contacts, conversations, messages and incoming
//! leads. Outgoing messages are queued, then sent by job workers in order per chat, paced per
//! channel and per chat, retried when the provider says "later" and failed with the reason when it
//! says "never".

mod crypto;
mod files;
mod inbound;
mod notify;
mod outbound;
mod provider;
mod rows;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use crypto::meta_signature;
pub use files::MAX_FILE_BYTES;
pub use notify::Notifier;

/// This module's event subscribers, by name, with the event types each wants: how a relay in
/// another process routes events to them when the module runs as its own service.
pub const SUBSCRIBER_ROUTES: &[(&str, &[&str])] = &[("messaging.notifications", notify::EVENTS)];
pub use service::{MessagingService, Settings, fill};

pub const SCHEMA: &str = "messaging";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/messaging");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};
