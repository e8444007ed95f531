//! Webhook subscriptions (`/api/v4/webhooks`, administrators): deliveries go out in amoCRM's
//! form-encoded format through automation's delivery machinery (signed, retried, logged).

use actix_web::{HttpRequest, HttpResponse, web};
use automation_api::{PayloadFormat, WEBHOOK_EVENTS, Webhook, WebhookDraft};
use kernel::AppError;
use serde_json::{Value, json};

use super::body::{self, Item};
use super::{ApiAuth, ApiError, hal, links, no_content, params};
use crate::state::AppState;

fn webhook_json(account: i64, w: &Webhook, sort: usize) -> Value {
    json!({
        "id": w.id.0,
        "destination": w.url,
        "created_at": w.created_at.timestamp(),
        "updated_at": w.created_at.timestamp(),
        "account_id": account,
        "created_by": 0,
        "sort": sort,
        "disabled": !w.enabled,
        "settings": w.events,
    })
}

pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut p = params(&req);
    let destination = p.str(&["filter", "destination"]);
    p.finish()?;
    let mut all = state.modules.automation.webhooks(auth.caller()).await?;
    all.retain(|w| destination.as_deref().is_none_or(|d| w.url == d));
    if all.is_empty() {
        return Ok(no_content());
    }
    let account = auth.0.account_id.0;
    let items: Vec<Value> = all
        .iter()
        .enumerate()
        .map(|(i, w)| webhook_json(account, w, i + 1))
        .collect();
    Ok(hal(&json!({
        "_total_items": items.len(),
        "_links": links(&req, "webhooks"),
        "_embedded": { "webhooks": items },
    })))
}

/// `POST /api/v4/webhooks` `{"destination", "settings": [...], "sort"}`: subscribes (or, for a
/// destination already subscribed, replaces its settings).
pub async fn subscribe(
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let obj = body::object(&raw)?;
    let mut item = Item::new(&obj);
    let destination = item.str("destination").unwrap_or_default();
    item.int("sort");
    if destination.trim().is_empty() {
        item.fail(
            "destination",
            "Required",
            "destination: the address to deliver to",
        );
    }
    let mut settings = Vec::new();
    if let Some(list) = item.array("settings") {
        for (i, s) in list.iter().enumerate() {
            match s.as_str() {
                Some(s) if WEBHOOK_EVENTS.contains(&s) => settings.push(s.to_string()),
                _ => item.fail(
                    &format!("settings.{i}"),
                    "NotSupportedChoice",
                    format!("one of: {}", WEBHOOK_EVENTS.join(", ")),
                ),
            }
        }
    } else if !item.errors.iter().any(|e| e.field == "settings") {
        item.fail("settings", "Required", "settings: the events to deliver");
    }
    if !item.errors.is_empty() {
        return Err(ApiError(AppError::from_fields(item.errors)));
    }
    let automation = &state.modules.automation;
    let caller = auth.caller();
    let existing = automation
        .webhooks(caller)
        .await?
        .into_iter()
        .find(|w| w.url == destination.trim());
    let draft = WebhookDraft {
        url: destination.trim().to_string(),
        events: settings,
        format: PayloadFormat::Form,
        enabled: true,
    };
    let w = automation
        .save_webhook(caller, existing.map(|w| w.id), draft)
        .await
        .map_err(|mut e| {
            // The module names the address `url`; the API calls it `destination`.
            for f in &mut e.fields {
                if f.field == "url" {
                    f.field = "destination".into();
                }
            }
            e
        })?;
    Ok(hal(&webhook_json(auth.0.account_id.0, &w, 1)))
}

/// `DELETE /api/v4/webhooks` `{"destination"}`: 204.
pub async fn unsubscribe(
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let obj = body::object(&raw)?;
    let mut item = Item::new(&obj);
    let destination = item.str("destination").unwrap_or_default();
    if destination.trim().is_empty() {
        item.fail(
            "destination",
            "Required",
            "destination: the subscribed address",
        );
    }
    if !item.errors.is_empty() {
        return Err(ApiError(AppError::from_fields(item.errors)));
    }
    let automation = &state.modules.automation;
    let caller = auth.caller();
    let Some(w) = automation
        .webhooks(caller)
        .await?
        .into_iter()
        .find(|w| w.url == destination.trim())
    else {
        return Err(ApiError(AppError::not_found("webhook")));
    };
    automation.delete_webhook(caller, w.id).await?;
    Ok(no_content())
}
