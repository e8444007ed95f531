//! Chats with clients as amoCRM's talks: `GET /api/v4/talks[/{id}]` over the messaging module's
//! conversations, and (a Voronka extension, as amoCRM sends messages through a separate chats
//! service) `GET|POST /api/v4/talks/{id}/messages` to read a talk and send into it through the
//! same paced, retried, idempotent sending as the inbox.

use actix_web::{HttpRequest, HttpResponse, web};
use kernel::paging::PageRequest;
use messaging_api::{
    Conversation, ConversationFilter, Direction, Message, OutgoingMessage, Provider,
};
use serde_json::{Value, json};

use super::body::{self, Item};
use super::contacts::nth_page;
use super::{ApiAuth, ApiError, Paging, hal, links, list_page, or_no_content, params, ts};
use crate::state::AppState;

fn talk_json(req: &HttpRequest, account: i64, c: &Conversation) -> Value {
    let contacts: Vec<Value> = c
        .contact_id
        .iter()
        .map(|id| json!({"id": id, "_links": links(req, &format!("contacts/{id}"))}))
        .collect();
    let leads: Vec<Value> = c
        .deal_id
        .iter()
        .map(|id| json!({"id": id, "_links": links(req, &format!("leads/{id}"))}))
        .collect();
    json!({
        "talk_id": c.id,
        "created_at": ts(c.last_incoming_at.unwrap_or(c.last_message_at)),
        "updated_at": ts(c.last_message_at),
        "rate": 0,
        "contact_id": c.contact_id,
        "chat_id": c.id.to_string(),
        "entity_id": c.deal_id,
        "entity_type": c.deal_id.map(|_| "lead"),
        "is_in_work": c.deal_id.is_some(),
        "is_read": c.unread == 0,
        "origin": c.provider.as_str(),
        "missed_at": Value::Null,
        "account_id": account,
        "responsible_user_id": c.assigned_user_id,
        "channel": { "id": c.channel_id, "name": c.channel_name },
        "client": { "name": c.title, "handle": c.handle },
        "_links": links(req, &format!("talks/{}", c.id)),
        "_embedded": { "contacts": contacts, "leads": leads },
    })
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "talk_id": m.conversation_id,
        "direction": match m.direction { Direction::In => "in", Direction::Out => "out" },
        "text": m.text,
        "status": m.status.as_str(),
        "error": m.error,
        "author_user_id": m.author_user_id,
        "is_robot": m.robot,
        "template": m.template,
        "created_at": ts(m.created_at),
        "sent_at": m.sent_at.map(ts),
    })
}

/// `GET /api/v4/talks`: `filter[is_read]=0`, `filter[origin]=telegram|whatsapp|instagram`,
/// `filter[responsible_user_id]=me`-style ownership through `filter[mine]=1`; newest first.
pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    let mut filter = ConversationFilter {
        unread_only: p.int(&["filter", "is_read"]) == Some(0),
        mine: p.int(&["filter", "mine"]) == Some(1),
        ..ConversationFilter::default()
    };
    if let Some(origin) = p.str(&["filter", "origin"]) {
        match Provider::parse(&origin) {
            Some(pr) => filter.provider = Some(pr),
            None => p.fail(
                "filter[origin]",
                "NotSupportedChoice",
                "telegram, whatsapp or instagram",
            ),
        }
    }
    p.finish()?;
    let caller = auth.caller();
    let messaging = &state.modules.messaging;
    let (items, more) = nth_page(paging, |page: PageRequest| {
        messaging.conversations(caller, &filter, page)
    })
    .await?;
    let account = auth.0.account_id.0;
    let out = items.iter().map(|c| talk_json(&req, account, c)).collect();
    Ok(list_page(&req, "talks", out, paging, more))
}

pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let c = state
                .modules
                .messaging
                .conversation(auth.caller(), *path)
                .await?;
            Ok(hal(&talk_json(&req, auth.0.account_id.0, &c)))
        }
        .await,
    )
}

/// `GET /api/v4/talks/{id}/messages`: the last `limit` messages (at most 250) in order, or
/// those after `filter[after_id]`.
pub async fn messages(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    let after = p.int(&["filter", "after_id"]);
    p.finish()?;
    let caller = auth.caller();
    let m = &state.modules.messaging;
    m.conversation(caller, *path).await?;
    let list = m.messages(caller, *path, after, paging.limit).await?;
    if list.is_empty() {
        return Ok(super::no_content());
    }
    Ok(hal(&json!({
        "_total_items": list.len(),
        "_links": links(&req, &format!("talks/{}/messages", *path)),
        "_embedded": { "messages": list.iter().map(message_json).collect::<Vec<_>>() },
    })))
}

/// `POST /api/v4/talks/{id}/messages`: `{"text", "uid"}` queues a message to the client; the
/// same `uid` (a UUID) queues it once. Answers the queued message's id; its status follows in
/// `GET …/messages` (queued → sent → delivered → read, or failed with the provider's reason).
pub async fn send(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let obj = body::object(&raw)?;
    let mut item = Item::new(&obj);
    let text = item.str("text").unwrap_or_default();
    if text.trim().is_empty() {
        item.fail("text", "Required", "a message needs a text");
    }
    let key = match item.str("uid") {
        Some(u) => match uuid::Uuid::parse_str(u.trim()) {
            Ok(k) => Some(k),
            Err(_) => {
                item.fail("uid", "InvalidValue", "a UUID");
                None
            }
        },
        None => None,
    };
    if !item.errors.is_empty() {
        return Err(ApiError(kernel::AppError::from_fields(item.errors)));
    }
    let queued = state
        .modules
        .messaging
        .send(
            auth.caller(),
            *path,
            OutgoingMessage {
                text: text.trim().to_string(),
                template: None,
                buttons: Vec::new(),
                key,
                file: None,
            },
        )
        .await?;
    Ok(hal(&json!({
        "id": queued.message_id,
        "talk_id": queued.conversation_id,
        "status": "queued",
        "_links": links(&req, &format!("talks/{}/messages", queued.conversation_id)),
    })))
}
