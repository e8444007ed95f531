//! The messaging module's contract: what the web UI, the API and other modules (automation's
//! actions and bots) may ask of the chats with clients, and the events the module publishes. The
//! module itself — channels (Telegram, WhatsApp, Instagram), conversations, provider clients,
//! notifications — implements it.

pub mod events;
pub mod remote;
mod types;

pub use types::*;

use async_trait::async_trait;
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, AppResult, Caller};

/// What robots need of the chats: sending to a deal's client.
#[async_trait]
pub trait Chats: Send + Sync {
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

#[async_trait]
pub trait Messaging: Chats {
    // --- channels (administrators) ----------------------------------------------------------
    async fn channels(&self, caller: Caller) -> AppResult<Vec<Channel>>;
    async fn channel(&self, caller: Caller, id: i64) -> AppResult<Channel>;
    /// Checks the credentials with the provider (Telegram: getMe, then setWebhook with a secret
    /// token when `webhook_base` is given) and stores them encrypted.
    async fn create_channel(&self, caller: Caller, new: NewChannel) -> AppResult<Channel>;
    async fn set_channel_active(&self, caller: Caller, id: i64, active: bool)
    -> AppResult<Channel>;
    async fn delete_channel(&self, caller: Caller, id: i64) -> AppResult<()>;

    // --- conversations and messages -----------------------------------------------------------
    async fn conversations(
        &self,
        caller: Caller,
        filter: &ConversationFilter,
        page: PageRequest,
    ) -> AppResult<Page<Conversation>>;
    async fn conversation(&self, caller: Caller, id: i64) -> AppResult<Conversation>;
    /// The most recent conversation of a deal, if it has one.
    async fn conversation_of_deal(
        &self,
        caller: Caller,
        deal: i64,
    ) -> AppResult<Option<Conversation>>;
    /// Messages of a conversation in order: the last `limit`, or those after message `after`.
    async fn messages(
        &self,
        caller: Caller,
        conversation: i64,
        after: Option<i64>,
        limit: u32,
    ) -> AppResult<Vec<Message>>;
    /// Queues a message (a text, or a WhatsApp template). The same `key` queues it once.
    async fn send(
        &self,
        caller: Caller,
        conversation: i64,
        message: OutgoingMessage,
    ) -> AppResult<Queued>;
    async fn mark_read(&self, caller: Caller, conversation: i64) -> AppResult<()>;
    /// A message's file, on a conversation the caller may see (`not_found` while it is still
    /// being downloaded or when it could not be).
    async fn attachment(&self, caller: Caller, id: i64) -> AppResult<FileContent>;
    /// A file being sent, fetched by the provider through the signed link messaging gave it
    /// (no caller: the link's `token` authenticates).
    async fn linked_attachment(&self, id: i64, token: &str) -> AppResult<FileContent>;
    /// Attaches the conversation to another deal (an incoming lead linked to an existing deal),
    /// or to none (a declined lead: the client's next message starts a new one).
    async fn link_deal(
        &self,
        caller: Caller,
        conversation: i64,
        deal: Option<i64>,
    ) -> AppResult<Conversation>;
    /// Conversations with unread messages the caller may see.
    async fn unread_conversations(&self, caller: Caller) -> AppResult<i64>;

    // --- templates ----------------------------------------------------------------------------
    async fn templates(&self, caller: Caller) -> AppResult<Vec<Template>>;
    async fn save_template(&self, caller: Caller, new: NewTemplate) -> AppResult<Template>;
    async fn delete_template(&self, caller: Caller, id: i64) -> AppResult<()>;

    // --- in-app notifications -----------------------------------------------------------------
    async fn notifications(&self, caller: Caller, limit: u32) -> AppResult<Vec<Notification>>;
    async fn unread_notifications(&self, caller: Caller) -> AppResult<i64>;
    async fn read_notifications(&self, caller: Caller) -> AppResult<()>;

    // --- providers' webhooks (no caller: the channel's secret or signature authenticates) -----
    /// Verifies and stores an incoming webhook once; processing follows as a job.
    async fn receive(&self, inbound: Inbound) -> AppResult<Received>;
    /// Meta's subscription check: the challenge when the verify token is the channel's.
    async fn verify_subscription(
        &self,
        provider: Provider,
        webhook_key: &str,
        mode: &str,
        verify_token: &str,
        challenge: &str,
    ) -> AppResult<String>;

    // --- background work ----------------------------------------------------------------------
    /// Signalled when work became due in this process (a webhook stored, a message queued);
    /// dispatchers in other processes find it on their sweep.
    fn work_signal(&self) -> std::sync::Arc<tokio::sync::Notify>;
    /// Work that is due: stored webhooks to process, conversations with messages to send.
    async fn take_due(&self, limit: i64) -> AppResult<Vec<Work>>;
    async fn process(&self, work: Work) -> AppResult<()>;
    /// Removes processed webhook bodies after the retention period.
    async fn clean_up(&self) -> AppResult<usize>;
    /// Channels of an account (for the demo's and the bench's set-up).
    async fn account_channels(&self, account: AccountId) -> AppResult<Vec<Channel>>;
}
