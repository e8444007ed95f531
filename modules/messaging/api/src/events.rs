//! Events the messaging module publishes (through its outbox).

use kernel::events::DomainEvent;
use serde::{Deserialize, Serialize};

/// A client's message arrived (stored once per provider message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReceived {
    pub message_id: i64,
    pub conversation_id: i64,
    /// The deal the conversation belongs to, if any.
    pub deal_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub text: String,
}

impl DomainEvent for MessageReceived {
    const TYPE: &'static str = "messaging.message_received";
}
