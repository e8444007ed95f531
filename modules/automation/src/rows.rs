//! Rows as read from the automation schema, and their conversion to the contract's types.

use automation_api::*;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use kernel::{AppError, AppResult};
use serde_json::Value;
use uuid::Uuid;

fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> AppResult<T> {
    serde_json::from_value(v).map_err(|e| AppError::internal(format!("stored {what}: {e}")))
}

#[derive(QueryableByName)]
pub(crate) struct TriggerRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub pipeline_id: i64,
    #[diesel(sql_type = BigInt)]
    pub stage_id: i64,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Jsonb)]
    pub when_: Value,
    #[diesel(sql_type = Jsonb)]
    pub conditions: Value,
    #[diesel(sql_type = Jsonb)]
    pub delay: Value,
    #[diesel(sql_type = Bool)]
    pub working_hours: bool,
    #[diesel(sql_type = Jsonb)]
    pub actions: Value,
    #[diesel(sql_type = Bool)]
    pub enabled: bool,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

/// A trigger with its account (`SELECT t.account_id, {TRIGGER_COLUMNS}`), for reads across
/// accounts (a batch of events or runs).
#[derive(QueryableByName)]
pub(crate) struct AccountTriggerRow {
    #[diesel(sql_type = BigInt)]
    pub account_id: i64,
    #[diesel(embed)]
    pub trigger: TriggerRow,
}

pub(crate) const TRIGGER_COLUMNS: &str = "t.id, t.pipeline_id, t.stage_id, t.name, t.\"when\" AS when_, t.conditions, t.delay, \
     t.working_hours, t.actions, t.enabled, t.created_at, t.updated_at";

impl TriggerRow {
    pub fn trigger(self, failed_recently: i64) -> AppResult<Trigger> {
        Ok(Trigger {
            id: TriggerId(self.id),
            name: self.name,
            pipeline_id: self.pipeline_id,
            stage_id: self.stage_id,
            when: parse("trigger event", self.when_)?,
            conditions: parse("conditions", self.conditions)?,
            delay: parse("delay", self.delay)?,
            working_hours: self.working_hours,
            actions: parse("actions", self.actions)?,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            failed_recently,
        })
    }
}

#[derive(QueryableByName)]
pub(crate) struct RunRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub trigger_id: i64,
    #[diesel(sql_type = Text)]
    pub trigger_name: String,
    #[diesel(sql_type = BigInt)]
    pub deal_id: i64,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub depth: i32,
    #[diesel(sql_type = Timestamptz)]
    pub run_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Jsonb)]
    pub steps: Value,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Over `automation.runs r` left-joined with `automation.triggers t`.
pub(crate) const RUN_COLUMNS: &str = "r.id, r.trigger_id, coalesce(t.name, '') AS trigger_name, r.deal_id, r.event_type, \
     r.status, r.depth, r.run_at, r.attempts, r.steps, r.error, r.created_at, r.finished_at";

impl RunRow {
    pub fn run(self) -> Run {
        Run {
            id: RunId(self.id),
            trigger_id: TriggerId(self.trigger_id),
            trigger_name: self.trigger_name,
            deal_id: self.deal_id,
            event_type: self.event_type,
            status: RunStatus::parse(&self.status),
            depth: self.depth,
            run_at: self.run_at,
            attempts: self.attempts,
            steps: serde_json::from_value(self.steps).unwrap_or_default(),
            error: self.error,
            created_at: self.created_at,
            finished_at: self.finished_at,
        }
    }
}

#[derive(QueryableByName)]
pub(crate) struct WebhookRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Array<Text>)]
    pub events: Vec<String>,
    #[diesel(sql_type = Text)]
    pub format: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
    #[diesel(sql_type = Bool)]
    pub enabled: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub disabled_reason: Option<String>,
    #[diesel(sql_type = Integer)]
    pub failures_in_row: i32,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

pub(crate) const WEBHOOK_COLUMNS: &str =
    "id, url, events, format, secret, enabled, disabled_reason, failures_in_row, created_at";

impl WebhookRow {
    pub fn webhook(self) -> Webhook {
        Webhook {
            id: WebhookId(self.id),
            url: self.url,
            events: self.events,
            format: if self.format == "form" {
                PayloadFormat::Form
            } else {
                PayloadFormat::Json
            },
            secret: self.secret,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            failures_in_row: self.failures_in_row,
            created_at: self.created_at,
        }
    }
}

#[derive(QueryableByName)]
pub(crate) struct DeliveryRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub webhook_id: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub run_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Text)]
    pub event: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    pub last_status_code: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub last_ms: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_response: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub delivered_at: Option<DateTime<Utc>>,
}

pub(crate) const DELIVERY_COLUMNS: &str = "id, webhook_id, run_id, url, event, status, attempts, last_status_code, \
     last_ms, last_response, next_at, created_at, delivered_at";

impl DeliveryRow {
    pub fn delivery(self) -> Delivery {
        Delivery {
            id: DeliveryId(self.id),
            webhook_id: self.webhook_id.map(WebhookId),
            run_id: self.run_id.map(RunId),
            url: self.url,
            event: self.event,
            status: DeliveryStatus::parse(&self.status),
            attempts: self.attempts,
            last_status_code: self.last_status_code,
            last_ms: self.last_ms,
            last_response: self.last_response,
            next_at: self.next_at,
            created_at: self.created_at,
            delivered_at: self.delivered_at,
        }
    }
}
