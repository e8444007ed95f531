//! Incoming leads as amoCRM's "unsorted": `/api/v4/leads/unsorted` (list, one, summary), and
//! `…/{uid}/accept`, `…/{uid}/decline`, `…/{uid}/link`. Voronka's incoming leads are deals in a
//! pipeline's "Incoming leads" stage (made by new chats: category `chats`); the `uid` is the
//! deal's id.

use actix_web::{HttpRequest, HttpResponse, web};
use deals_api::{Deal, DealFilter, DealId, ListSort, PipelineId, StageId, StageKind};
use kernel::{AppError, Caller};
use serde_json::{Value, json};

use super::body::{self, Item};
use super::{ApiAuth, ApiError, Paging, hal, links, list_page, no_content, params, ts};
use crate::state::AppState;

fn parse_uid(uid: &str) -> Result<DealId, ApiError> {
    uid.trim()
        .parse::<i64>()
        .map(DealId)
        .map_err(|_| ApiError(AppError::not_found("incoming lead")))
}

async fn unsorted_json(
    req: &HttpRequest,
    state: &AppState,
    caller: Caller,
    d: &Deal,
) -> Result<Value, ApiError> {
    let chat = state
        .modules
        .messaging
        .conversation_of_deal(caller, d.id.0)
        .await?;
    let (source_uid, source_name, metadata) = match &chat {
        Some(c) => (
            json!(c.id.to_string()),
            json!(c.channel_name),
            json!({
                "from": c.title,
                "client": { "name": c.title, "id": c.handle },
                "origin": c.provider.as_str(),
                "last_message_text": c.last_text,
                "source_name": c.channel_name,
            }),
        ),
        None => (Value::Null, Value::Null, json!({})),
    };
    Ok(json!({
        "uid": d.id.0.to_string(),
        "source_uid": source_uid,
        "source_name": source_name,
        "category": "chats",
        "pipeline_id": d.pipeline_id.0,
        "created_at": ts(d.created_at),
        "metadata": metadata,
        "account_id": d.account_id.0,
        "_links": links(req, &format!("leads/unsorted/{}", d.id.0)),
        "_embedded": {
            "leads": [{ "id": d.id.0, "_links": links(req, &format!("leads/{}", d.id.0)) }],
            "contacts": d.contact_ids.iter().map(|c| json!({"id": c, "_links": links(req, &format!("contacts/{c}"))})).collect::<Vec<_>>(),
            "companies": d.company_ids.iter().map(|c| json!({"id": c, "_links": links(req, &format!("companies/{c}"))})).collect::<Vec<_>>(),
        },
    }))
}

/// Every pipeline's incoming stage (or the given pipelines').
async fn incoming_stages(
    state: &AppState,
    caller: Caller,
    only: &[i64],
) -> Result<Vec<(PipelineId, StageId)>, ApiError> {
    Ok(state
        .modules
        .deals
        .pipelines(caller)
        .await?
        .into_iter()
        .filter(|p| only.is_empty() || only.contains(&p.id.0))
        .flat_map(|p| {
            p.stages
                .into_iter()
                .filter(|s| s.kind == StageKind::Incoming)
                .map(move |s| (p.id, s.id))
        })
        .collect())
}

pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    let pipelines = p.ints(&["filter", "pipeline_id"], false);
    let uids = p.ints(&["filter", "uid"], true);
    let categories = p.strs(&["filter", "category"], true);
    let desc = match p
        .str(&["order", "created_at"])
        .or(p.str(&["order", "updated_at"]))
        .as_deref()
    {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            p.fail("order", "NotSupportedChoice", "asc or desc");
            false
        }
    };
    for c in &categories {
        if !["sip", "mail", "forms", "chats"].contains(&c.as_str()) {
            p.fail(
                "filter[category]",
                "NotSupportedChoice",
                "sip, mail, forms or chats",
            );
        }
    }
    p.finish()?;
    // Voronka's incoming leads come from chats only.
    if !categories.is_empty() && !categories.iter().any(|c| c == "chats") {
        return Ok(no_content());
    }
    let statuses = incoming_stages(&state, caller, &pipelines).await?;
    if statuses.is_empty() {
        return Ok(no_content());
    }
    let filter = DealFilter {
        statuses,
        ids: uids.into_iter().map(DealId).collect(),
        ..DealFilter::default()
    };
    let (deals, more) = state
        .modules
        .deals
        .list_at(
            caller,
            &filter,
            ListSort::Created,
            desc,
            paging.page,
            paging.limit,
        )
        .await?;
    let mut items = Vec::new();
    for d in &deals {
        items.push(unsorted_json(&req, &state, caller, d).await?);
    }
    Ok(list_page(&req, "unsorted", items, paging, more))
}

pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let Ok(id) = parse_uid(&path) else {
        return Ok(no_content());
    };
    match crate::incoming::incoming_lead(&state, caller, id).await {
        Ok((d, _)) => Ok(hal(&unsorted_json(&req, &state, caller, &d).await?)),
        Err(_) => Ok(no_content()),
    }
}

pub async fn summary(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let mut p = params(&req);
    let pipelines = p.ints(&["filter", "pipeline_id"], false);
    let (from, to) = p.time_range(&["filter", "created_at"]);
    p.finish()?;
    let statuses = incoming_stages(&state, caller, &pipelines).await?;
    let mut total = 0usize;
    if !statuses.is_empty() {
        let filter = DealFilter {
            statuses,
            created_from: from,
            created_to: to,
            ..DealFilter::default()
        };
        // Counted a page of 250 at a time (incoming leads are few: they are sorted daily).
        let mut page = 1;
        loop {
            let (deals, more) = state
                .modules
                .deals
                .list_at(caller, &filter, ListSort::Id, false, page, 250)
                .await?;
            total += deals.len();
            if !more || page >= 400 {
                break;
            }
            page += 1;
        }
    }
    Ok(hal(&json!({
        "total": total,
        "categories": { "chats": total, "forms": 0, "sip": 0, "mail": 0 },
        "_links": links(&req, "leads/unsorted/summary"),
    })))
}

fn answer(req: &HttpRequest, account: i64, uid: DealId, d: &Deal) -> Value {
    json!({
        "uid": uid.0.to_string(),
        "account_id": account,
        "_links": links(req, &format!("leads/unsorted/{}", uid.0)),
        "_embedded": {
            "leads": [{ "id": d.id.0, "_links": links(req, &format!("leads/{}", d.id.0)) }],
            "contacts": d.contact_ids.iter().map(|c| json!({"id": c})).collect::<Vec<_>>(),
            "companies": d.company_ids.iter().map(|c| json!({"id": c})).collect::<Vec<_>>(),
        },
    })
}

/// `POST …/{uid}/accept` `{"user_id"?, "status_id"?}`.
pub async fn accept(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let id = parse_uid(&path)?;
    let mut status = None;
    let mut user = None;
    if !raw.iter().all(u8::is_ascii_whitespace) {
        let obj = body::object(&raw)?;
        let mut item = Item::new(&obj);
        status = item.int("status_id").map(StageId);
        user = item.int("user_id");
        if !item.errors.is_empty() {
            return Err(ApiError(AppError::from_fields(item.errors)));
        }
    }
    let mut d = crate::incoming::accept(&state, caller, id, status).await?;
    if let Some(u) = user.filter(|u| *u != d.responsible_user_id.0) {
        d = state
            .modules
            .deals
            .update_deal(
                caller,
                d.id,
                deals_api::DealPatch {
                    responsible_user_id: Some(kernel::UserId(u)),
                    ..Default::default()
                },
            )
            .await?;
    }
    Ok(hal(&answer(&req, auth.0.account_id.0, id, &d)))
}

/// `DELETE …/{uid}/decline`.
pub async fn decline(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let id = parse_uid(&path)?;
    let d = crate::incoming::decline(&state, caller, id).await?;
    Ok(hal(&answer(&req, auth.0.account_id.0, id, &d)))
}

/// `POST …/{uid}/link` `{"link": {"entity_id": …, "entity_type": "leads"}}`: the lead's chat
/// goes to that deal, and the incoming lead is deleted.
pub async fn link(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let id = parse_uid(&path)?;
    let obj = body::object(&raw)?;
    let mut item = Item::new(&obj);
    let mut target = None;
    if let Some(l) = item.object("link") {
        item.nested(l, "link", |l| {
            target = l.int("entity_id");
            if l.str("entity_type").is_some_and(|t| t != "leads") {
                l.fail(
                    "entity_type",
                    "NotSupportedChoice",
                    "an incoming lead links to leads",
                );
            }
        });
    }
    if target.is_none() && item.errors.is_empty() {
        item.fail(
            "link.entity_id",
            "Required",
            "link.entity_id: the lead to attach the chat to",
        );
    }
    if !item.errors.is_empty() {
        return Err(ApiError(AppError::from_fields(item.errors)));
    }
    let (lead, _) = crate::incoming::incoming_lead(&state, caller, id).await?;
    let chat = state
        .modules
        .messaging
        .conversation_of_deal(caller, lead.id.0)
        .await?
        .ok_or_else(|| {
            ApiError(AppError::validation(
                "uid",
                "NotSupported",
                "only an incoming chat can be linked",
            ))
        })?;
    let target = DealId(target.unwrap_or_default());
    let d = crate::incoming::link_chat(&state, caller, chat.id, Some(lead.id), target).await?;
    Ok(hal(&answer(&req, auth.0.account_id.0, id, &d)))
}
