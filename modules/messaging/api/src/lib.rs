//! The messaging module's contract: what other modules (automation's actions and bots) may ask
//! of the chats with clients, and the events the module publishes. The module itself —
//! channels (Telegram, WhatsApp, Instagram), conversations, provider clients — implements it;
//! a build without it has no `Messaging` (callers say so plainly rather than pretend).

pub mod events;

use async_trait::async_trait;
use kernel::{AppResult, Caller};
use serde::{Deserialize, Serialize};

/// A message queued for sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub message_id: i64,
    pub conversation_id: i64,
}

#[async_trait]
pub trait Messaging: Send + Sync {
    /// Queues `text` (with quick-reply `buttons` where the channel has them) to the deal's
    /// contact on the deal's conversation. A caller with a `cause` (a robot's command) queues it
    /// once however often it asks.
    async fn send_to_deal(
        &self,
        caller: Caller,
        deal: i64,
        text: &str,
        buttons: &[String],
    ) -> AppResult<Queued>;
}
