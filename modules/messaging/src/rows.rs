//! Rows read with plain SQL.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz};
use messaging_api::*;

#[derive(QueryableByName, Clone)]
pub struct ChannelRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub account_id: i64,
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub webhook_key: String,
    #[diesel(sql_type = Text)]
    pub external_id: String,
    #[diesel(sql_type = Text)]
    pub base_url: String,
    #[diesel(sql_type = Text)]
    pub api_version: String,
    #[diesel(sql_type = Bytea)]
    pub credentials: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    pub pipeline_id: i64,
    #[diesel(sql_type = BigInt)]
    pub responsible_user_id: i64,
    #[diesel(sql_type = Integer)]
    pub rate_per_second: i32,
    #[diesel(sql_type = Bool)]
    pub active: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

pub const CHANNEL_COLUMNS: &str =
    "id, account_id, provider, name, webhook_key, external_id, base_url, api_version, credentials,
     pipeline_id, responsible_user_id, rate_per_second, active, error, created_at";

impl ChannelRow {
    pub fn provider(&self) -> Provider {
        Provider::parse(&self.provider).unwrap_or(Provider::Telegram)
    }

    pub fn into_channel(self) -> Channel {
        Channel {
            id: self.id,
            account_id: kernel::AccountId(self.account_id),
            provider: self.provider(),
            name: self.name,
            webhook_key: self.webhook_key,
            external_id: self.external_id,
            base_url: self.base_url,
            api_version: self.api_version,
            pipeline_id: self.pipeline_id,
            responsible_user_id: self.responsible_user_id,
            rate_per_second: self.rate_per_second,
            active: self.active,
            error: self.error,
            created_at: self.created_at,
        }
    }
}

#[derive(QueryableByName)]
pub struct ConversationRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub channel_id: i64,
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(sql_type = Text)]
    pub channel_name: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub contact_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub deal_id: Option<i64>,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Text)]
    pub handle: String,
    #[diesel(sql_type = BigInt)]
    pub assigned_user_id: i64,
    #[diesel(sql_type = Integer)]
    pub unread: i32,
    #[diesel(sql_type = Text)]
    pub last_text: String,
    #[diesel(sql_type = Timestamptz)]
    pub last_message_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_incoming_at: Option<DateTime<Utc>>,
}

pub const CONVERSATION_SELECT: &str = "SELECT c.id, c.channel_id, ch.provider, ch.name AS channel_name, c.contact_id, c.deal_id,
            c.title, c.handle, c.assigned_user_id, c.unread, c.last_text, c.last_message_at, c.last_incoming_at
       FROM messaging.conversations c JOIN messaging.channels ch ON ch.id = c.channel_id";

impl From<ConversationRow> for Conversation {
    fn from(r: ConversationRow) -> Conversation {
        Conversation {
            id: r.id,
            channel_id: r.channel_id,
            provider: Provider::parse(&r.provider).unwrap_or(Provider::Telegram),
            channel_name: r.channel_name,
            contact_id: r.contact_id,
            deal_id: r.deal_id,
            title: r.title,
            handle: r.handle,
            assigned_user_id: r.assigned_user_id,
            unread: r.unread,
            last_text: r.last_text,
            last_message_at: r.last_message_at,
            last_incoming_at: r.last_incoming_at,
        }
    }
}

#[derive(QueryableByName)]
pub struct MessageRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub conversation_id: i64,
    #[diesel(sql_type = Text)]
    pub direction: String,
    #[diesel(sql_type = Text)]
    pub text: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub author_user_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub robot_id: Option<i64>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub template: Option<serde_json::Value>,
    #[diesel(sql_type = Jsonb)]
    pub buttons: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub sent_at: Option<DateTime<Utc>>,
}

pub const MESSAGE_COLUMNS: &str = "id, conversation_id, direction, text, status, error, author_user_id, robot_id, template, buttons, created_at, sent_at";

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Message {
        Message {
            id: r.id,
            conversation_id: r.conversation_id,
            direction: if r.direction == "in" {
                Direction::In
            } else {
                Direction::Out
            },
            text: r.text,
            status: MessageStatus::parse(&r.status).unwrap_or(MessageStatus::Queued),
            error: r.error,
            author_user_id: r.author_user_id,
            robot: r.robot_id.is_some(),
            template: r
                .template
                .and_then(|t| t["name"].as_str().map(str::to_string)),
            buttons: serde_json::from_value(r.buttons).unwrap_or_default(),
            created_at: r.created_at,
            sent_at: r.sent_at,
            attachments: Vec::new(),
        }
    }
}

#[derive(QueryableByName)]
pub struct TemplateRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub whatsapp_name: Option<String>,
    #[diesel(sql_type = Text)]
    pub whatsapp_language: String,
}

impl From<TemplateRow> for Template {
    fn from(r: TemplateRow) -> Template {
        Template {
            id: r.id,
            name: r.name,
            body: r.body,
            whatsapp_name: r.whatsapp_name,
            whatsapp_language: r.whatsapp_language,
        }
    }
}

#[derive(QueryableByName)]
pub struct NotificationRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub text: String,
    #[diesel(sql_type = Text)]
    pub link: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub read_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl From<NotificationRow> for Notification {
    fn from(r: NotificationRow) -> Notification {
        Notification {
            id: r.id,
            kind: NotificationKind::parse(&r.kind).unwrap_or(NotificationKind::Message),
            text: r.text,
            link: r.link,
            read: r.read_at.is_some(),
            created_at: r.created_at,
        }
    }
}

#[derive(QueryableByName)]
pub struct IdRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
}

#[derive(QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}
