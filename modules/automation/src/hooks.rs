//! Outgoing webhooks: the account's subscriptions, a subscriber that turns events into
//! deliveries (the body fixed when the event is handled), and the delivery itself — signed with
//! HMAC-SHA256, through the SSRF guard, retried with backoff, logged, and a webhook switched off
//! after a long run of failures.

use std::sync::Arc;
use std::time::Instant;

use activities_api::events::{NoteAdded, TaskCompleted, TaskCreated};
use async_trait::async_trait;
use automation_api::*;
use chrono::{DateTime, Utc};
use contacts_api::events::{
    CompanyCreated, CompanyDeleted, CompanyUpdated, ContactCreated, ContactDeleted, ContactUpdated,
};
use deals_api::events::{
    DealCreated, DealDeleted, DealResponsibleChanged, DealRestored, DealStageChanged, DealUpdated,
};
use deals_api::{Deal, DealId};
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, AppError, AppResult, Caller, FieldError};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::rows::*;
use crate::service::{Inner, notify};

const EXCERPT: usize = 500;

/// The amoCRM webhook code of an event, if webhooks can carry it.
fn code_of(event: &EventEnvelope) -> Option<&'static str> {
    let t = event.event_type.as_str();
    let entity_kind = || {
        event
            .payload
            .get("entity")
            .and_then(|e| e.get("kind"))
            .and_then(Value::as_str)
    };
    Some(match t {
        _ if t == DealCreated::TYPE => "add_lead",
        _ if t == DealUpdated::TYPE => "update_lead",
        _ if t == DealDeleted::TYPE => "delete_lead",
        _ if t == DealRestored::TYPE => "restore_lead",
        _ if t == DealStageChanged::TYPE => "status_lead",
        _ if t == DealResponsibleChanged::TYPE => "responsible_lead",
        _ if t == ContactCreated::TYPE => "add_contact",
        _ if t == ContactUpdated::TYPE => "update_contact",
        _ if t == ContactDeleted::TYPE => "delete_contact",
        _ if t == CompanyCreated::TYPE => "add_company",
        _ if t == CompanyUpdated::TYPE => "update_company",
        _ if t == CompanyDeleted::TYPE => "delete_company",
        _ if t == TaskCreated::TYPE => "add_task",
        _ if t == TaskCompleted::TYPE => "complete_task",
        _ if t == NoteAdded::TYPE => match entity_kind()? {
            "deal" => "note_lead",
            "contact" => "note_contact",
            "company" => "note_company",
            _ => return None,
        },
        _ => return None,
    })
}

pub(crate) const EVENTS: &[&str] = &[
    DealCreated::TYPE,
    DealUpdated::TYPE,
    DealDeleted::TYPE,
    DealRestored::TYPE,
    DealStageChanged::TYPE,
    DealResponsibleChanged::TYPE,
    ContactCreated::TYPE,
    ContactUpdated::TYPE,
    ContactDeleted::TYPE,
    CompanyCreated::TYPE,
    CompanyUpdated::TYPE,
    CompanyDeleted::TYPE,
    TaskCreated::TYPE,
    TaskCompleted::TYPE,
    NoteAdded::TYPE,
];

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + bytes.len() * 2);
    hex.push_str("sha256=");
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// amoCRM's element type (1 contact, 2 lead, 3 company) and id of the record an activity's
/// payload is on (its `entity`); no type when it is on none.
fn element(p: &Value) -> (Option<&'static str>, String) {
    let entity = p.get("entity");
    let kind = match entity.and_then(|e| e.get("kind")).and_then(Value::as_str) {
        Some("contact") => Some("1"),
        Some("deal") => Some("2"),
        Some("company") => Some("3"),
        _ => None,
    };
    let id = entity
        .and_then(|e| e.get("id"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    (kind, id.to_string())
}

/// amoCRM's form-encoded webhook body (PHP bracket keys, old-style field names).
fn form_body(
    code: &str,
    event: &EventEnvelope,
    deal: Option<&Deal>,
    account_subdomain: &str,
) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    let p = &event.payload;
    let ts = event.occurred_at.timestamp().to_string();
    let modified_by = event.actor.user_id().map(|u| u.0).unwrap_or(0).to_string();
    let num = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(0).to_string();
    let (root, action) = match code {
        "note_lead" => ("leads", "note"),
        "note_contact" => ("contacts", "note"),
        "note_company" => ("companies", "note"),
        "add_task" => ("task", "add"),
        "complete_task" => ("task", "update"),
        c => {
            let (action, entity) = c.split_once('_').unwrap_or((c, ""));
            let root = match entity {
                "lead" => "leads",
                "contact" => "contacts",
                _ => "companies",
            };
            (root, action)
        }
    };
    let k = |field: &str| format!("{root}[{action}][0][{field}]");
    match (root, action) {
        ("leads", "status") => {
            f.append_pair(&k("id"), &num("deal_id"));
            f.append_pair(&k("status_id"), &num("to_stage_id"));
            f.append_pair(&k("pipeline_id"), &num("pipeline_id"));
            f.append_pair(&k("old_status_id"), &num("from_stage_id"));
            let old_pipeline = if p.get("from_pipeline_id").is_some_and(|v| !v.is_null()) {
                num("from_pipeline_id")
            } else {
                num("pipeline_id")
            };
            f.append_pair(&k("old_pipeline_id"), &old_pipeline);
            f.append_pair(&k("last_modified"), &ts);
            f.append_pair(&k("modified_user_id"), &modified_by);
        }
        ("leads", "responsible") => {
            f.append_pair(&k("id"), &num("deal_id"));
            f.append_pair(&k("responsible_user_id"), &num("to_user_id"));
            f.append_pair(&k("old_responsible_user_id"), &num("from_user_id"));
            f.append_pair(&k("last_modified"), &ts);
            f.append_pair(&k("modified_user_id"), &modified_by);
        }
        ("leads", "add" | "update" | "restore") if deal.is_some() => {
            let Some(d) = deal else { unreachable!() };
            f.append_pair(&k("id"), &d.id.0.to_string());
            f.append_pair(&k("name"), &d.name);
            f.append_pair(&k("status_id"), &d.stage_id.0.to_string());
            f.append_pair(&k("pipeline_id"), &d.pipeline_id.0.to_string());
            f.append_pair(&k("price"), &d.price.to_string());
            f.append_pair(
                &k("responsible_user_id"),
                &d.responsible_user_id.0.to_string(),
            );
            f.append_pair(&k("created_user_id"), &d.created_by.to_string());
            f.append_pair(&k("modified_user_id"), &modified_by);
            f.append_pair(&k("date_create"), &d.created_at.timestamp().to_string());
            f.append_pair(&k("created_at"), &d.created_at.timestamp().to_string());
            f.append_pair(&k("last_modified"), &ts);
            f.append_pair(&k("updated_at"), &ts);
            f.append_pair(&k("account_id"), &event.account_id.0.to_string());
            for (i, t) in d.tags.iter().enumerate() {
                f.append_pair(&k(&format!("tags][{i}][id")), &t.id.0.to_string());
                f.append_pair(&k(&format!("tags][{i}][name")), &t.name);
            }
            for (i, (id, v)) in d.custom_fields.iter().enumerate() {
                f.append_pair(&k(&format!("custom_fields][{i}][id")), id);
                let values: Vec<Value> = match v {
                    Value::Array(a) => a.clone(),
                    v => vec![v.clone()],
                };
                for (j, v) in values.iter().enumerate() {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    f.append_pair(
                        &k(&format!("custom_fields][{i}][values][{j}][value")),
                        &text,
                    );
                }
            }
        }
        ("leads" | "contacts" | "companies", "note") => {
            let (element_type, element_id) = element(p);
            let nk = |field: &str| format!("{root}[note][0][note][{field}]");
            f.append_pair(&nk("id"), &num("note_id"));
            f.append_pair(
                &nk("text"),
                p.get("text").and_then(Value::as_str).unwrap_or(""),
            );
            f.append_pair(
                &nk("note_type"),
                p.get("note_type")
                    .and_then(Value::as_str)
                    .unwrap_or("common"),
            );
            f.append_pair(&nk("element_id"), &element_id);
            f.append_pair(&nk("element_type"), element_type.unwrap_or("2"));
            f.append_pair(&nk("created_by"), &modified_by);
            f.append_pair(&nk("date_create"), &ts);
            f.append_pair(&nk("account_id"), &event.account_id.0.to_string());
        }
        ("task", _) => {
            let (element_type, element_id) = element(p);
            f.append_pair(&k("id"), &num("task_id"));
            f.append_pair(&k("element_id"), &element_id);
            f.append_pair(&k("element_type"), element_type.unwrap_or("0"));
            f.append_pair(
                &k("text"),
                p.get("text").and_then(Value::as_str).unwrap_or(""),
            );
            f.append_pair(&k("status"), if action == "update" { "1" } else { "0" });
            if let Some(due) = p
                .get("due_at")
                .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok())
            {
                f.append_pair(&k("complete_till"), &due.timestamp().to_string());
            }
            f.append_pair(&k("responsible_user_id"), &num("responsible_user_id"));
            f.append_pair(&k("date_create"), &ts);
        }
        (_, _) => {
            let id = ["deal_id", "contact_id", "company_id"]
                .iter()
                .find_map(|k| p.get(*k).and_then(Value::as_i64))
                .unwrap_or(0);
            f.append_pair(&k("id"), &id.to_string());
            if let Some(name) = p.get("name").and_then(Value::as_str) {
                f.append_pair(&k("name"), name);
            } else if let Some(name) = p
                .get("after")
                .and_then(|a| a.get("name"))
                .and_then(Value::as_str)
            {
                f.append_pair(&k("name"), name);
            }
            if let Some(r) = p.get("responsible_user_id").and_then(Value::as_i64) {
                f.append_pair(&k("responsible_user_id"), &r.to_string());
            }
            if root == "contacts" {
                f.append_pair(&k("type"), "contact");
            }
            f.append_pair(&k("last_modified"), &ts);
            f.append_pair(&k("modified_user_id"), &modified_by);
            f.append_pair(&k("account_id"), &event.account_id.0.to_string());
        }
    }
    f.append_pair("account[subdomain]", account_subdomain);
    f.append_pair("account[id]", &event.account_id.0.to_string());
    f.append_pair(
        "account[_links][self]",
        &format!("https://{account_subdomain}.voronka.local"),
    );
    f.finish()
}

fn new_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn excerpt(s: &str) -> String {
    s.chars().take(EXCERPT).collect()
}

#[derive(QueryableByName)]
struct Target {
    #[diesel(sql_type = BigInt)]
    account_id: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    events: Vec<String>,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Text)]
    format: String,
    #[diesel(sql_type = Text)]
    secret: String,
}

pub struct WebhookFeed {
    pub(crate) inner: Arc<Inner>,
}

#[async_trait]
impl Subscriber for WebhookFeed {
    fn name(&self) -> &str {
        "automation.webhooks"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENTS
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        self.handle_many(conn, &[event]).await
    }

    /// A delivery is unique per subscription and event (`deliveries_event_idx`, inserted with
    /// `ON CONFLICT DO NOTHING`), and an event no subscription wants does nothing: a redelivery
    /// is a no-op without an inbox row.
    fn deduplicates_itself(&self) -> bool {
        true
    }

    /// A batch: the accounts' subscriptions read once, one wake-up for the dispatcher.
    async fn handle_many(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<()> {
        let mut accounts: Vec<i64> = events.iter().map(|e| e.account_id.0).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let targets = targets(conn, &accounts).await?;
        let mut wake = false;
        for event in events {
            wake |= self.feed(conn, event, &targets).await?;
        }
        if wake {
            notify(conn).await?;
        }
        Ok(())
    }
}

/// The enabled subscriptions of `accounts`, by id.
async fn targets(conn: &mut AsyncPgConnection, accounts: &[i64]) -> AppResult<Vec<Target>> {
    Ok(kernel::sql::query(
        "SELECT account_id, id, events, url, format, secret FROM automation.webhooks
          WHERE account_id = ANY($1) AND enabled ORDER BY id",
    )
    .bind::<diesel::sql_types::Array<BigInt>, _>(accounts)
    .load(conn)
    .await?)
}

impl WebhookFeed {
    /// Queues a delivery of `event` to each of its account's subscriptions to it; says whether
    /// it queued any.
    async fn feed(
        &self,
        conn: &mut AsyncPgConnection,
        event: &EventEnvelope,
        targets: &[Target],
    ) -> AppResult<bool> {
        let Some(code) = code_of(event) else {
            return Ok(false);
        };
        let targets: Vec<&Target> = targets
            .iter()
            .filter(|t| t.account_id == event.account_id.0 && t.events.iter().any(|e| e == code))
            .collect();
        if targets.is_empty() {
            return Ok(false);
        }
        let json_body = json!({
            "event": code,
            "event_id": event.id,
            "event_type": event.event_type,
            "account_id": event.account_id.0,
            "occurred_at": event.occurred_at.timestamp(),
            "actor": event.actor,
            "data": event.payload,
        })
        .to_string();
        let mut form: Option<String> = None;
        for t in targets {
            let (content_type, body) = if t.format == "form" {
                if form.is_none() {
                    let deal = match event.payload.get("deal_id").and_then(Value::as_i64) {
                        Some(id) if code.ends_with("_lead") && !code.starts_with("delete") => self
                            .inner
                            .deals
                            .deal(Caller::system(event.account_id), DealId(id))
                            .await
                            .ok(),
                        _ => None,
                    };
                    let subdomain = self
                        .inner
                        .accounts
                        .account(event.account_id)
                        .await
                        .map(|a| a.subdomain)
                        .unwrap_or_default();
                    form = Some(form_body(code, event, deal.as_ref(), &subdomain));
                }
                (
                    "application/x-www-form-urlencoded",
                    form.clone().unwrap_or_default(),
                )
            } else {
                ("application/json", json_body.clone())
            };
            insert_delivery(
                conn,
                event.account_id,
                Some(t.id),
                None,
                Some(event.id),
                code,
                &t.url,
                content_type,
                &body,
                &t.secret,
                self.inner.settings.webhook_max_attempts,
            )
            .await?;
        }
        Ok(true)
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_delivery(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    webhook: Option<i64>,
    run: Option<Uuid>,
    event_id: Option<Uuid>,
    event: &str,
    url: &str,
    content_type: &str,
    body: &str,
    secret: &str,
    max_attempts: i32,
) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    kernel::sql::query(
        "INSERT INTO automation.deliveries (id, account_id, webhook_id, run_id, event_id, event, url, content_type,
                                            body, secret, status, max_attempts, next_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, now())
         ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(account.0)
    .bind::<Nullable<BigInt>, _>(webhook)
    .bind::<Nullable<SqlUuid>, _>(run)
    .bind::<Nullable<SqlUuid>, _>(event_id)
    .bind::<Text, _>(event)
    .bind::<Text, _>(url)
    .bind::<Text, _>(content_type)
    .bind::<Text, _>(body)
    .bind::<Text, _>(secret)
    .bind::<Integer, _>(max_attempts)
    .execute(conn)
    .await?;
    Ok(id)
}

#[derive(QueryableByName)]
struct Sending {
    #[diesel(sql_type = Nullable<BigInt>)]
    webhook_id: Option<i64>,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Text)]
    content_type: String,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Text)]
    secret: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = Nullable<Bool>)]
    hook_enabled: Option<bool>,
}

/// What one attempt got.
enum Outcome {
    Delivered {
        code: i32,
        ms: i32,
        text: String,
    },
    Failed {
        code: Option<i32>,
        ms: i32,
        text: String,
    },
    Refused(String),
}

impl Inner {
    fn check_webhook(&self, d: &mut WebhookDraft) -> AppResult<()> {
        let mut errors = Vec::new();
        d.url = d.url.trim().to_string();
        if let Err(m) = crate::guard::check_url(&d.url, self.settings.allow_private_destinations) {
            errors.push(FieldError {
                field: "url".into(),
                code: "bad_url".into(),
                message: m,
            });
        }
        d.events.sort();
        d.events.dedup();
        if d.events.is_empty() {
            errors.push(FieldError {
                field: "events".into(),
                code: "required".into(),
                message: "choose at least one event".into(),
            });
        } else if let Some(e) = d
            .events
            .iter()
            .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
        {
            errors.push(FieldError {
                field: "events".into(),
                code: "unknown_event".into(),
                message: format!("no event \u{ab}{e}\u{bb}"),
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::from_fields(errors))
        }
    }

    pub(crate) async fn webhooks(&self, caller: Caller) -> AppResult<Vec<Webhook>> {
        self.require_admin(caller).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<WebhookRow> = kernel::sql::query(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM automation.webhooks WHERE account_id = $1 ORDER BY id"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(WebhookRow::webhook).collect())
    }

    pub(crate) async fn save_webhook(
        &self,
        caller: Caller,
        id: Option<WebhookId>,
        mut d: WebhookDraft,
    ) -> AppResult<Webhook> {
        self.require_admin(caller).await?;
        self.check_webhook(&mut d)?;
        let mut conn = self.conn().await?;
        let row: Option<WebhookRow> = match id {
            None => kernel::sql::query(format!(
                "INSERT INTO automation.webhooks (account_id, url, events, format, secret, enabled, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {WEBHOOK_COLUMNS}"
            ))
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<Text, _>(&d.url)
            .bind::<Array<Text>, _>(&d.events)
            .bind::<Text, _>(d.format.as_str())
            .bind::<Text, _>(new_secret())
            .bind::<Bool, _>(d.enabled)
            .bind::<BigInt, _>(caller.actor.user_id().map(|u| u.0).unwrap_or(0))
            .get_result(&mut conn)
            .await
            .optional()?,
            // Switching a webhook back on clears the failure count and the reason.
            Some(id) => kernel::sql::query(format!(
                "UPDATE automation.webhooks SET url = $3, events = $4, format = $5, enabled = $6,
                        disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
                        failures_in_row = CASE WHEN $6 AND NOT enabled THEN 0 ELSE failures_in_row END,
                        updated_at = now()
                  WHERE account_id = $1 AND id = $2 RETURNING {WEBHOOK_COLUMNS}"
            ))
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(id.0)
            .bind::<Text, _>(&d.url)
            .bind::<Array<Text>, _>(&d.events)
            .bind::<Text, _>(d.format.as_str())
            .bind::<Bool, _>(d.enabled)
            .get_result(&mut conn)
            .await
            .optional()?,
        };
        row.map(WebhookRow::webhook)
            .ok_or_else(|| AppError::not_found("webhook"))
    }

    pub(crate) async fn delete_webhook(&self, caller: Caller, id: WebhookId) -> AppResult<()> {
        self.require_admin(caller).await?;
        let mut conn = self.conn().await?;
        let n =
            kernel::sql::query("DELETE FROM automation.webhooks WHERE account_id = $1 AND id = $2")
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(id.0)
                .execute(&mut conn)
                .await?;
        if n == 0 {
            return Err(AppError::not_found("webhook"));
        }
        kernel::sql::query(
            "UPDATE automation.deliveries SET status = 'failed', last_response = 'the webhook was deleted'
              WHERE account_id = $1 AND webhook_id = $2 AND status IN ('pending', 'queued')",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn deliveries(
        &self,
        caller: Caller,
        webhook: Option<WebhookId>,
        page: PageRequest,
    ) -> AppResult<Page<Delivery>> {
        self.require_admin(caller).await?;
        let after: Option<(DateTime<Utc>, Uuid)> = crate::service::keyset_after(&page)?;
        let mut conn = self.conn().await?;
        let rows: Vec<DeliveryRow> = kernel::sql::query(format!(
            "SELECT {DELIVERY_COLUMNS} FROM automation.deliveries
              WHERE account_id = $1 AND ($2::bigint IS NULL OR webhook_id = $2)
                AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
              ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Nullable<BigInt>, _>(webhook.map(|w| w.0))
        .bind::<Nullable<Timestamptz>, _>(after.map(|a| a.0))
        .bind::<SqlUuid, _>(after.map(|a| a.1).unwrap_or_default())
        .bind::<BigInt, _>(page.fetch_limit())
        .load(&mut conn)
        .await?;
        let items: Vec<Delivery> = rows.into_iter().map(DeliveryRow::delivery).collect();
        Ok(Page::from_rows(items, &page, |d| (d.created_at, d.id.0)))
    }

    /// A trigger's "call a webhook": one delivery per run and action, signed with the account's
    /// first webhook secret if any (else unsigned).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn queue_delivery(
        &self,
        account: AccountId,
        webhook: Option<i64>,
        run: Option<Uuid>,
        event_id: Option<Uuid>,
        event: &str,
        url: &str,
        content_type: &str,
        body: &str,
        secret: &str,
    ) -> AppResult<Uuid> {
        let mut conn = self.conn().await?;
        let id = insert_delivery(
            &mut conn,
            account,
            webhook,
            run,
            event_id,
            event,
            url,
            content_type,
            body,
            secret,
            self.settings.webhook_max_attempts,
        )
        .await?;
        notify(&mut conn).await?;
        Ok(id)
    }

    async fn attempt(&self, s: &Sending, id: Uuid) -> Outcome {
        if let Err(m) = crate::guard::check_url(&s.url, self.settings.allow_private_destinations) {
            return Outcome::Refused(m);
        }
        let mut req = self
            .http
            .post(&s.url)
            .header("Content-Type", &s.content_type)
            .header("X-Voronka-Delivery", id.to_string())
            .header("X-Voronka-Event", &s.event);
        if !s.secret.is_empty() {
            req = req.header(
                "X-Voronka-Signature",
                signature(&s.secret, s.body.as_bytes()),
            );
        }
        let started = Instant::now();
        let result = req.body(s.body.clone()).send().await;
        let ms = |t: Instant| t.elapsed().as_millis().min(i32::MAX as u128) as i32;
        match result {
            Ok(mut resp) => {
                let code = resp.status().as_u16() as i32;
                // Only the start of the answer is kept.
                let mut buf: Vec<u8> = Vec::new();
                while buf.len() < EXCERPT * 4 {
                    match resp.chunk().await {
                        Ok(Some(c)) => buf.extend_from_slice(&c),
                        _ => break,
                    }
                }
                let text = excerpt(&String::from_utf8_lossy(&buf));
                let ms = ms(started);
                if resp.status().is_success() {
                    Outcome::Delivered { code, ms, text }
                } else {
                    Outcome::Failed {
                        code: Some(code),
                        ms,
                        text,
                    }
                }
            }
            Err(e) => match crate::guard::refused_in(&e) {
                Some(m) => Outcome::Refused(m),
                None => Outcome::Failed {
                    code: None,
                    ms: ms(started),
                    text: excerpt(&format!("{e}: {}", source_chain(&e))),
                },
            },
        }
    }

    pub(crate) async fn deliver(&self, account: AccountId, id: Uuid) -> AppResult<DeliveryStatus> {
        let mut conn = self.conn().await?;
        let taken: Option<Sending> = kernel::sql::query(
            "UPDATE automation.deliveries d SET status = 'sending', attempts = attempts + 1, queued_at = now()
              WHERE d.account_id = $1 AND d.id = $2 AND d.status IN ('queued', 'pending')
              RETURNING d.webhook_id, d.url, d.event, d.content_type, d.body, d.secret, d.attempts, d.max_attempts,
                        (SELECT enabled FROM automation.webhooks w WHERE w.account_id = d.account_id AND w.id = d.webhook_id) AS hook_enabled",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?;
        let Some(s) = taken else {
            #[derive(QueryableByName)]
            struct St {
                #[diesel(sql_type = Text)]
                status: String,
            }
            let st: Option<St> = kernel::sql::query(
                "SELECT status FROM automation.deliveries WHERE account_id = $1 AND id = $2",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<SqlUuid, _>(id)
            .get_result(&mut conn)
            .await
            .optional()?;
            return Ok(st
                .map(|s| DeliveryStatus::parse(&s.status))
                .unwrap_or(DeliveryStatus::Failed));
        };
        if s.webhook_id.is_some() && s.hook_enabled != Some(true) {
            kernel::sql::query(
                "UPDATE automation.deliveries SET status = 'failed', attempts = attempts - 1,
                        last_response = 'the webhook is switched off', next_at = NULL
                  WHERE account_id = $1 AND id = $2",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<SqlUuid, _>(id)
            .execute(&mut conn)
            .await?;
            return Ok(DeliveryStatus::Failed);
        }
        drop(conn);
        let outcome = self.attempt(&s, id).await;
        let (status, code, ms, text, ok) = match outcome {
            Outcome::Delivered { code, ms, text } => {
                ("delivered", Some(code), Some(ms), text, true)
            }
            Outcome::Failed { code, ms, text } => {
                let last = s.attempts >= s.max_attempts;
                (
                    if last { "failed" } else { "pending" },
                    code,
                    Some(ms),
                    text,
                    false,
                )
            }
            Outcome::Refused(m) => ("failed", None, None, format!("refused: {m}"), false),
        };
        let next_at = (status == "pending").then(|| {
            let base = self.settings.webhook_backoff.as_secs_f64().max(0.05);
            let wait = (base * 2f64.powi((s.attempts - 1).clamp(0, 20))).min(3600.0);
            Utc::now() + chrono::Duration::milliseconds((wait * 1000.0) as i64)
        });
        let mut conn = self.conn().await?;
        kernel::sql::query(
            "UPDATE automation.deliveries SET status = $3, last_status_code = $4, last_ms = $5, last_response = $6,
                    next_at = $7, delivered_at = CASE WHEN $3 = 'delivered' THEN now() END
              WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(status)
        .bind::<Nullable<Integer>, _>(code)
        .bind::<Nullable<Integer>, _>(ms)
        .bind::<Text, _>(&text)
        .bind::<Nullable<Timestamptz>, _>(next_at)
        .execute(&mut conn)
        .await?;
        if let Some(hook) = s.webhook_id {
            if ok {
                kernel::sql::query(
                    "UPDATE automation.webhooks SET failures_in_row = 0 WHERE account_id = $1 AND id = $2 AND failures_in_row <> 0",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(hook)
                .execute(&mut conn)
                .await?;
            } else {
                let limit = self.settings.webhook_disable_after;
                let what = code
                    .map(|c| format!("HTTP {c}"))
                    .unwrap_or_else(|| text.clone());
                let reason = format!(
                    "switched off after {limit} failed deliveries in a row; the last one: {}",
                    excerpt(&what)
                );
                #[derive(QueryableByName)]
                struct Off {
                    #[diesel(sql_type = Bool)]
                    off: bool,
                }
                let off: Option<Off> = kernel::sql::query(
                    "UPDATE automation.webhooks SET failures_in_row = failures_in_row + 1,
                            enabled = CASE WHEN failures_in_row + 1 >= $3 THEN false ELSE enabled END,
                            disabled_reason = CASE WHEN failures_in_row + 1 >= $3 AND enabled THEN $4 ELSE disabled_reason END
                      WHERE account_id = $1 AND id = $2 RETURNING NOT enabled AS off",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(hook)
                .bind::<Integer, _>(limit)
                .bind::<Text, _>(&reason)
                .get_result(&mut conn)
                .await
                .optional()?;
                if off.is_some_and(|o| o.off) {
                    kernel::sql::query(
                        "UPDATE automation.deliveries SET status = 'failed', next_at = NULL,
                                last_response = coalesce(last_response, 'the webhook is switched off')
                          WHERE account_id = $1 AND webhook_id = $2 AND status = 'pending'",
                    )
                    .bind::<BigInt, _>(account.0)
                    .bind::<BigInt, _>(hook)
                    .execute(&mut conn)
                    .await?;
                }
            }
        }
        Ok(DeliveryStatus::parse(status))
    }
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::{Actor, UserId};

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn status_changes_encode_like_amocrm() {
        let event = EventEnvelope {
            id: Uuid::now_v7(),
            account_id: AccountId(29085955),
            event_type: DealStageChanged::TYPE.into(),
            version: 1,
            actor: Actor::User { id: UserId(123123) },
            occurred_at: DateTime::from_timestamp(1413554372, 0).unwrap(),
            causation_id: None,
            payload: json!({"deal_id": 25399013, "pipeline_id": 1300, "from_stage_id": 10, "to_stage_id": 142, "loss_reason_id": null}),
        };
        let code = code_of(&event).unwrap();
        assert_eq!(code, "status_lead");
        let body = form_body(code, &event, None, "example");
        assert!(body.starts_with("leads%5Bstatus%5D%5B0%5D%5Bid%5D=25399013&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142"), "{body}");
        assert!(body.contains("old_status_id%5D=10"));
        assert!(body.contains("account%5Bsubdomain%5D=example&account%5Bid%5D=29085955"));
        let note = EventEnvelope {
            event_type: NoteAdded::TYPE.into(),
            payload: json!({"note_id": 5, "entity": {"kind": "contact", "id": 9}, "note_type": "common", "text": "hi"}),
            ..event
        };
        assert_eq!(code_of(&note), Some("note_contact"));
        let body = form_body("note_contact", &note, None, "example");
        assert!(
            body.contains("contacts%5Bnote%5D%5B0%5D%5Bnote%5D%5Belement_type%5D=1"),
            "{body}"
        );
    }
}
