//! The messaging contract's types.

use chrono::{DateTime, Utc};
use kernel::AccountId;
use serde::{Deserialize, Serialize};

/// A messenger a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Telegram,
    Whatsapp,
    Instagram,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Telegram, Provider::Whatsapp, Provider::Instagram];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Telegram => "telegram",
            Provider::Whatsapp => "whatsapp",
            Provider::Instagram => "instagram",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The provider's public API.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Telegram => "https://api.telegram.org",
            Provider::Whatsapp => "https://graph.facebook.com",
            Provider::Instagram => "https://graph.instagram.com",
        }
    }

    /// Messages per second to one channel the provider publishes (Telegram's bulk limit,
    /// WhatsApp's default per-number throughput, Instagram's Send API limit).
    pub fn default_rate(self) -> u32 {
        match self {
            Provider::Telegram => 30,
            Provider::Whatsapp => 80,
            Provider::Instagram => 300,
        }
    }

    /// Whether free-form messages need the client to have written in the last 24 hours.
    pub fn has_window(self) -> bool {
        !matches!(self, Provider::Telegram)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: i64,
    pub account_id: AccountId,
    pub provider: Provider,
    pub name: String,
    /// The public part of the channel's webhook URL: `/hooks/<provider>/<webhook_key>`.
    pub webhook_key: String,
    /// Telegram: the bot's username; WhatsApp: the phone number id; Instagram: the account id.
    pub external_id: String,
    pub base_url: String,
    pub api_version: String,
    /// Incoming leads go to this pipeline's incoming stage, assigned to this user.
    pub pipeline_id: i64,
    pub responsible_user_id: i64,
    /// Sends per second to the provider (per channel).
    pub rate_per_second: i32,
    pub active: bool,
    /// Why the channel needs attention (a revoked token), if it does.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A channel to connect. Which credentials are needed depends on the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewChannel {
    pub provider: Option<Provider>,
    pub name: String,
    /// Telegram's bot token, or Meta's access token.
    pub token: String,
    /// WhatsApp: the phone number id; Instagram: the Instagram account id.
    pub external_id: String,
    /// Meta: the app secret that signs webhooks.
    pub app_secret: String,
    /// Meta: the verify token of the subscription check.
    pub verify_token: String,
    /// Empty: the provider's public URL.
    pub base_url: String,
    /// Meta's Graph API version (`v21.0` when empty).
    pub api_version: String,
    pub pipeline_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    pub rate_per_second: Option<i32>,
    /// The app's public URL; Telegram channels register `<webhook_base>/hooks/telegram/<key>`.
    pub webhook_base: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

/// A message's state: incoming ones are `received`; outgoing ones go queued → sending → sent →
/// delivered → read (never backwards), or end `failed` with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Received,
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Received => "received",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        use MessageStatus::*;
        [Received, Queued, Sending, Sent, Delivered, Read, Failed]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: i64,
    pub channel_id: i64,
    pub provider: Provider,
    pub channel_name: String,
    pub contact_id: Option<i64>,
    pub deal_id: Option<i64>,
    /// The client's name as the messenger gives it.
    pub title: String,
    /// The client's username or phone, as the messenger gives it.
    pub handle: String,
    pub assigned_user_id: i64,
    pub unread: i32,
    pub last_text: String,
    pub last_message_at: DateTime<Utc>,
    /// The client's last message (the 24-hour window of WhatsApp and Instagram counts from it).
    pub last_incoming_at: Option<DateTime<Utc>>,
}

impl Conversation {
    /// Whether a free-form message may be sent now.
    pub fn window_open(&self, now: DateTime<Utc>) -> bool {
        !self.provider.has_window()
            || self
                .last_incoming_at
                .is_some_and(|t| now - t < chrono::Duration::hours(24))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversationFilter {
    pub unread_only: bool,
    /// Only conversations assigned to the caller.
    pub mine: bool,
    pub channel_id: Option<i64>,
    pub provider: Option<Provider>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub direction: Direction,
    pub text: String,
    pub status: MessageStatus,
    /// Why sending failed (the provider's words), shown next to the message.
    pub error: Option<String>,
    /// The user who wrote it (outgoing; none for robots).
    pub author_user_id: Option<i64>,
    /// The robot that sent it, if one did.
    pub robot: bool,
    pub template: Option<String>,
    pub buttons: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Files the message carries (a client's photo, a manager's document).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// Where a file of a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentStatus {
    /// A client's file still being downloaded from the provider.
    Pending,
    /// Kept here: it can be opened.
    Stored,
    /// It could not be downloaded (the reason is in `error`).
    Failed,
}

/// A file of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: i64,
    /// `image`, `video`, `audio`, `voice`, `document` or `sticker`.
    pub kind: String,
    pub file_name: String,
    pub mime_type: String,
    /// Bytes, once known.
    pub size: Option<i64>,
    pub status: AttachmentStatus,
    pub error: Option<String>,
}

impl Attachment {
    /// Shown inline (a picture) rather than as a link.
    pub fn is_image(&self) -> bool {
        self.mime_type.starts_with("image/")
    }
}

/// A file a manager (or the API) sends with a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUpload {
    pub file_name: String,
    /// Guessed from the name when empty.
    pub mime_type: String,
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
}

/// A stored file, to hand out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    pub file_name: String,
    pub mime_type: String,
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
}

/// A WhatsApp template message (for outside the 24-hour window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSend {
    pub name: String,
    pub language: String,
    /// The body's variables, in order.
    #[serde(default)]
    pub params: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutgoingMessage {
    pub text: String,
    pub template: Option<TemplateSend>,
    pub buttons: Vec<String>,
    /// Idempotency key: the same key queues the message once.
    pub key: Option<uuid::Uuid>,
    /// A file sent with the text (the text is its caption; it may be empty).
    pub file: Option<FileUpload>,
}

/// A message queued for sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub message_id: i64,
    pub conversation_id: i64,
}

/// A reply template with variables (`{{contact.name}}`, `{{deal.name}}`, `{{user.name}}`); with a
/// WhatsApp template name it is sent as that template outside the 24-hour window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: i64,
    pub name: String,
    pub body: String,
    pub whatsapp_name: Option<String>,
    pub whatsapp_language: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewTemplate {
    pub id: Option<i64>,
    pub name: String,
    pub body: String,
    pub whatsapp_name: String,
    pub whatsapp_language: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    IncomingLead,
    Message,
    TaskDue,
    Assigned,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::IncomingLead => "incoming_lead",
            NotificationKind::Message => "message",
            NotificationKind::TaskDue => "task_due",
            NotificationKind::Assigned => "assigned",
        }
    }

    pub fn parse(s: &str) -> Option<NotificationKind> {
        use NotificationKind::*;
        [IncomingLead, Message, TaskDue, Assigned]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub kind: NotificationKind,
    /// What happened, in the data's own words (a client's name, a task's text).
    pub text: String,
    /// Where it leads (`/deals/7`, `/inbox/3`).
    pub link: String,
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

/// A provider's webhook call as it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub provider: Provider,
    pub webhook_key: String,
    /// Telegram's `X-Telegram-Bot-Api-Secret-Token`.
    pub secret_token: Option<String>,
    /// Meta's `X-Hub-Signature-256`.
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Received {
    Stored,
    /// The same delivery was stored before.
    Duplicate,
}

/// The module's background work, done by job workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Work {
    /// A stored webhook body to turn into contacts, conversations and messages.
    Inbound { id: i64 },
    /// A conversation's queued messages to send, in order.
    Send {
        account_id: AccountId,
        conversation_id: i64,
    },
    /// Several conversations' sends in one job (each still in order, several at once).
    Sends {
        conversations: Vec<(AccountId, i64)>,
    },
    /// A client's file to download from the provider.
    Fetch { id: i64 },
}

/// File contents as base64 in JSON (the remote mode's calls), not as an array of numbers.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
