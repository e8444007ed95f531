//! The event list (`GET /api/v4/events`), amoCRM's names for our logged events, with its
//! filters: `id`, `created_at`, `created_by` (≤10), `entity` (lead, contact, company, task),
//! `entity_id` (≤10, one entity), `type` (comma lists too).

use activities_api::{EntityKind, LogEntry, LogFilter};
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::paging::PageRequest;
use serde_json::{Value, json};

use super::{ApiAuth, ApiError, EntityPath, Paging, hal, links, list_page, no_content, params};
use crate::state::AppState;

/// Our event types and amoCRM's names for them.
pub const TYPES: [(&str, &str, &str); 14] = [
    ("deals.deal_created", "lead_added", "Lead added"),
    (
        "deals.deal_stage_changed",
        "lead_status_changed",
        "Lead status changed",
    ),
    ("deals.deal_updated", "sale_field_changed", "Lead changed"),
    (
        "deals.deal_responsible_changed",
        "entity_responsible_changed",
        "Responsible changed",
    ),
    ("deals.deal_deleted", "lead_deleted", "Lead deleted"),
    ("deals.deal_restored", "lead_restored", "Lead restored"),
    ("contacts.contact_created", "contact_added", "Contact added"),
    (
        "contacts.contact_deleted",
        "contact_deleted",
        "Contact deleted",
    ),
    ("contacts.company_created", "company_added", "Company added"),
    (
        "contacts.company_deleted",
        "company_deleted",
        "Company deleted",
    ),
    ("activities.note_added", "common_note_added", "Note added"),
    ("activities.task_created", "task_added", "Task added"),
    (
        "activities.task_completed",
        "task_completed",
        "Task completed",
    ),
    (
        "messaging.message_received",
        "incoming_chat_message",
        "Incoming chat message",
    ),
];

fn amo_type(ours: &str) -> String {
    // An entry brought over from amoCRM keeps its type.
    if let Some(theirs) = ours.strip_prefix(activities_api::IMPORTED_PREFIX) {
        return theirs.to_string();
    }
    if ours == "messaging.message_sent" {
        return "outgoing_chat_message".into();
    }
    TYPES
        .iter()
        .find(|(o, _, _)| *o == ours)
        .map(|(_, a, _)| a.to_string())
        .unwrap_or_else(|| ours.replace('.', "_"))
}

fn our_types(amo: &str) -> Vec<String> {
    let mut out: Vec<String> = TYPES
        .iter()
        .filter(|(_, a, _)| *a == amo)
        .map(|(o, _, _)| o.to_string())
        .collect();
    if amo == "outgoing_chat_message" {
        out.push("messaging.message_sent".into());
    }
    out.push(format!("{}{amo}", activities_api::IMPORTED_PREFIX));
    if out.is_empty() {
        // Our own names are accepted too (with a dot or an underscore after the module).
        out.push(amo.replacen('_', ".", 1));
        out.push(amo.to_string());
    }
    out
}

fn entity_of(amo: &str) -> Option<EntityKind> {
    match amo {
        "lead" | "leads" => Some(EntityKind::Deal),
        "contact" | "contacts" => Some(EntityKind::Contact),
        "company" | "companies" => Some(EntityKind::Company),
        _ => None,
    }
}

fn entity_name(k: EntityKind) -> &'static str {
    match k {
        EntityKind::Deal => "lead",
        EntityKind::Contact => "contact",
        EntityKind::Company => "company",
    }
}

/// Before/after values in amoCRM's shape for the types that have one.
fn values(e: &LogEntry, after: bool) -> Value {
    let side = if after { &e.after } else { &e.before };
    match e.event_type.as_str() {
        "deals.deal_stage_changed" => {
            let p = &e.payload;
            let (stage, pipeline) = if after {
                (
                    p.get("to_stage_id"),
                    p.get("to_pipeline_id").or(p.get("pipeline_id")),
                )
            } else {
                (
                    p.get("from_stage_id"),
                    p.get("from_pipeline_id").or(p.get("pipeline_id")),
                )
            };
            json!([{ "lead_status": { "id": stage, "pipeline_id": pipeline } }])
        }
        "deals.deal_responsible_changed" => {
            let key = if after { "to" } else { "from" };
            json!([{ "responsible_user": { "id": e.payload.get(key) } }])
        }
        // Brought over from amoCRM: its values as they were.
        t if t.starts_with(activities_api::IMPORTED_PREFIX) => {
            side.clone().unwrap_or_else(|| json!([]))
        }
        _ => match side {
            Some(v) if !v.is_null() => json!([v]),
            _ => json!([]),
        },
    }
}

fn event_json(req: &HttpRequest, account: i64, e: &LogEntry) -> Value {
    let (entity_type, entity_id) = match e.entity {
        Some(r) => (json!(entity_name(r.kind)), json!(r.id)),
        None => (Value::Null, Value::Null),
    };
    json!({
        "id": e.id.to_string(),
        "type": amo_type(&e.event_type),
        "entity_id": entity_id,
        "entity_type": entity_type,
        "created_by": if e.actor.kind == "user" { e.actor.id } else { 0 },
        "created_at": e.occurred_at.timestamp(),
        "value_after": values(e, true),
        "value_before": values(e, false),
        "account_id": account,
        "_links": links(req, &format!("events/{}", e.id)),
        "_embedded": {
            "entity": e.entity.map(|r| json!({
                "id": r.id,
                "_links": links(req, &format!("{}/{}", EntityPath::of_kind(r.kind).as_str(), r.id)),
            })),
        },
    })
}

pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 100);
    let ids = p.ints(&["filter", "id"], true);
    let users = p.ints(&["filter", "created_by"], true);
    let entity_ids = p.ints(&["filter", "entity_id"], true);
    let types = p.strs(&["filter", "type"], true);
    let entities = p.strs(&["filter", "entity"], true);
    let (from, to) = p.time_range(&["filter", "created_at"]);
    if users.len() > 10 {
        p.fail("filter[created_by]", "InvalidValue", "at most 10 users");
    }
    if entity_ids.len() > 10 {
        p.fail("filter[entity_id]", "InvalidValue", "at most 10 records");
    }
    let mut kinds = Vec::new();
    for e in &entities {
        match entity_of(e) {
            Some(k) => kinds.push(k),
            None => p.fail(
                "filter[entity]",
                "NotSupportedChoice",
                "lead, contact or company",
            ),
        }
    }
    if !entity_ids.is_empty() && kinds.len() != 1 {
        p.fail(
            "filter[entity_id]",
            "InvalidValue",
            "filter[entity_id] needs exactly one filter[entity]",
        );
    }
    p.finish()?;
    let filter = LogFilter {
        from,
        to,
        ids,
        users,
        entity_ids,
        entities: kinds,
        event_types: types.iter().flat_map(|t| our_types(t)).collect(),
        ..LogFilter::default()
    };
    let acts = &state.modules.activities;
    let caller = auth.caller();
    let mut page = PageRequest::new(None, Some(paging.limit));
    let mut result = (Vec::new(), false);
    for n in 1..=paging.page {
        let got = acts.events(caller, &filter, page.clone()).await?;
        if n == paging.page {
            result = (got.items, got.next.is_some());
            break;
        }
        match got.next {
            Some(next) => page = PageRequest::new(Some(next), Some(paging.limit)),
            None => break,
        }
    }
    let account = auth.0.account_id.0;
    let items = result
        .0
        .iter()
        .map(|e| event_json(&req, account, e))
        .collect();
    Ok(list_page(&req, "events", items, paging, result.1))
}

pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Ok(id) = path.parse::<i64>() else {
        return Ok(no_content());
    };
    let filter = LogFilter {
        ids: vec![id],
        ..LogFilter::default()
    };
    let got = state
        .modules
        .activities
        .events(auth.caller(), &filter, PageRequest::new(None, Some(1)))
        .await?;
    match got.items.first() {
        Some(e) => Ok(hal(&event_json(&req, auth.0.account_id.0, e))),
        None => Ok(no_content()),
    }
}

pub async fn types(req: HttpRequest, _auth: ApiAuth) -> Result<HttpResponse, ApiError> {
    let mut items: Vec<Value> = TYPES
        .iter()
        .map(|(_, amo, name)| json!({"key": amo, "type": 0, "lang": {"en": name, "ru": name}}))
        .collect();
    items.push(json!({"key": "outgoing_chat_message", "type": 0, "lang": {"en": "Outgoing chat message", "ru": "Outgoing chat message"}}));
    Ok(hal(&json!({
        "_total_items": items.len(),
        "_links": links(&req, "events/types"),
        "_embedded": { "events_types": items },
    })))
}
