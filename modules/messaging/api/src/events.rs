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
    /// `telegram`, `whatsapp` or `instagram`.
    #[serde(default)]
    pub channel: String,
}

impl DomainEvent for MessageReceived {
    const TYPE: &'static str = "messaging.message_received";
}

/// A message was accepted by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    pub message_id: i64,
    pub conversation_id: i64,
    pub deal_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub text: String,
    pub channel: String,
    /// The user who wrote it (none for robots).
    pub author_user_id: Option<i64>,
}

impl DomainEvent for MessageSent {
    const TYPE: &'static str = "messaging.message_sent";
}

/// A message could not be delivered; `reason` is shown next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFailed {
    pub message_id: i64,
    pub conversation_id: i64,
    pub deal_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub reason: String,
}

impl DomainEvent for MessageFailed {
    const TYPE: &'static str = "messaging.message_failed";
}

/// The first message of a new conversation arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationStarted {
    pub conversation_id: i64,
    pub channel_id: i64,
    pub channel: String,
    pub contact_id: Option<i64>,
    pub deal_id: Option<i64>,
}

impl DomainEvent for ConversationStarted {
    const TYPE: &'static str = "messaging.conversation_started";
}

/// A new conversation without an open deal became a deal in the pipeline's incoming stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingLeadCreated {
    pub deal_id: i64,
    pub conversation_id: i64,
    pub contact_id: Option<i64>,
    pub pipeline_id: i64,
    pub channel: String,
    /// Who the lead is assigned to (the channel's responsible user).
    pub responsible_user_id: i64,
}

impl DomainEvent for IncomingLeadCreated {
    const TYPE: &'static str = "messaging.incoming_lead_created";
}
