//! The automation module: stage triggers (amoCRM's Digital Pipeline) started by deal events,
//! their runs done action by action by the job workers, and the account's outgoing webhooks.
//! Owns the `automation` schema; everyone else reaches it through `automation_api::Automation`.
//!
//! A run's actions reach other modules through their traits as a robot, with a per-action
//! command id as the call's cause: the events they cause carry it (so the next trigger knows how
//! deep the chain of robots is, and cuts a loop), and a redelivered command does nothing twice.

mod botrun;
mod bots;
mod check;
mod exec;
mod gather;
mod guard;
mod hooks;
mod matcher;
mod rows;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::migrate::ModuleMigrations;

pub use botrun::BotReplies;
pub use hooks::{WebhookFeed, signature as signature_of};
pub use matcher::TriggerMatcher;

/// This module's event subscribers, by name, with the event types each wants: how a relay in
/// another process routes events to them when the module runs as its own service.
pub const SUBSCRIBER_ROUTES: &[(&str, &[&str])] = &[
    ("automation.triggers", matcher::EVENTS),
    ("automation.webhooks", hooks::EVENTS),
    ("automation.bot_replies", botrun::REPLY_EVENTS),
];
pub use service::{AutomationService, Settings, check_sender, mailer as smtp_transport};

pub const SCHEMA: &str = "automation";
/// Notified (at commit) when runs or deliveries become due now.
pub const WORK_CHANNEL: &str = "automation_work";
const EMBEDDED: EmbeddedMigrations = embed_migrations!("../../migrations/automation");

pub const MIGRATIONS: ModuleMigrations = ModuleMigrations {
    schema: SCHEMA,
    migrations: || EMBEDDED,
};

/// A run's id has a zero last byte; the command id of its action `i` puts `i + 1` there, so the
/// run behind an event's cause is found by one key lookup.
pub(crate) fn new_run_id() -> uuid::Uuid {
    let mut b = *uuid::Uuid::now_v7().as_bytes();
    b[15] = 0;
    uuid::Uuid::from_bytes(b)
}

pub(crate) fn action_key(run: uuid::Uuid, index: usize) -> uuid::Uuid {
    let mut b = *run.as_bytes();
    b[15] = (index + 1) as u8;
    uuid::Uuid::from_bytes(b)
}

pub(crate) fn run_of(key: uuid::Uuid) -> uuid::Uuid {
    let mut b = *key.as_bytes();
    b[15] = 0;
    uuid::Uuid::from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_keys_lead_back_to_their_run() {
        let run = new_run_id();
        let keys: Vec<_> = (0..20).map(|i| action_key(run, i)).collect();
        for k in &keys {
            assert_ne!(*k, run);
            assert_eq!(run_of(*k), run);
        }
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
    }
}
