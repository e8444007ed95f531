//! Chats in the UI: the inbox (conversations: all, unread, mine, by channel), a chat's thread
//! with the deal beside it (live: the thread and the list refresh themselves), replies with
//! templates, incoming leads accepted, declined or linked to a deal; the bell; and the
//! settings of channels and templates.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use askama::Template;
use chrono::{DateTime, Utc};
use deals_api::{DealId, StageKind};
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppError, Caller, ErrorCode};
use messaging_api::*;

use super::deals::filter::get;
use super::{html, is_form_error, ok, see_other};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;

fn when(t: DateTime<Utc>) -> String {
    t.format("%d.%m %H:%M").to_string()
}

pub struct ConversationLine {
    pub id: i64,
    pub provider: &'static str,
    pub title: String,
    pub handle: String,
    pub last_text: String,
    pub at: String,
    pub unread: i32,
}

impl From<&Conversation> for ConversationLine {
    fn from(c: &Conversation) -> ConversationLine {
        ConversationLine {
            id: c.id,
            provider: c.provider.as_str(),
            title: if c.title.is_empty() {
                c.handle.clone()
            } else {
                c.title.clone()
            },
            handle: c.handle.clone(),
            last_text: c.last_text.clone(),
            at: when(c.last_message_at),
            unread: c.unread,
        }
    }
}

pub struct MessageLine {
    pub id: i64,
    pub incoming: bool,
    pub text: String,
    pub status: &'static str,
    pub error: String,
    pub at: String,
    pub author: String,
    pub buttons: Vec<String>,
    pub files: Vec<FileLine>,
}

pub struct FileLine {
    pub id: i64,
    pub name: String,
    /// Shown in place.
    pub image: bool,
    /// `pending`, `stored` or `failed`.
    pub status: &'static str,
    pub size: String,
    pub error: String,
}

impl From<Attachment> for FileLine {
    fn from(a: Attachment) -> FileLine {
        FileLine {
            id: a.id,
            image: a.is_image() && a.mime_type != "image/svg+xml",
            status: match a.status {
                AttachmentStatus::Pending => "pending",
                AttachmentStatus::Stored => "stored",
                AttachmentStatus::Failed => "failed",
            },
            size: a.size.map(file_size).unwrap_or_default(),
            error: a.error.unwrap_or_default(),
            name: a.file_name,
        }
    }
}

/// 512 B, 3.4 KB, 2.0 MB.
fn file_size(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / 1024.0 / 1024.0),
    }
}

pub struct Thread {
    pub id: i64,
    pub messages: Vec<MessageLine>,
    /// Free-form messages may be sent (WhatsApp and Instagram: within 24 hours).
    pub window_open: bool,
    pub provider: &'static str,
}

pub struct DealSide {
    pub id: i64,
    pub name: String,
    pub stage: String,
    pub price: i64,
    pub responsible: String,
    pub incoming: bool,
}

#[derive(Template)]
#[template(path = "inbox/inbox.html")]
struct InboxTpl<'a> {
    ctx: &'a Ctx,
    filter: String,
    channel: Option<i64>,
    channels: Vec<(i64, String)>,
    conversations: Vec<ConversationLine>,
    next: Option<String>,
    current: Option<ConversationLine>,
    thread: Option<Thread>,
    deal: Option<DealSide>,
    contact: String,
    templates: Vec<(i64, String)>,
    error: Option<(String, String)>,
}

impl InboxTpl<'_> {
    fn is_channel(&self, id: i64) -> bool {
        self.channel == Some(id)
    }
}

#[derive(Template)]
#[template(path = "inbox/_list.html")]
struct ListTpl<'a> {
    ctx: &'a Ctx,
    filter: String,
    channel: Option<i64>,
    conversations: Vec<ConversationLine>,
    next: Option<String>,
    current: Option<ConversationLine>,
}

#[derive(Template)]
#[template(path = "inbox/_thread.html")]
struct ThreadTpl<'a> {
    ctx: &'a Ctx,
    thread: Thread,
}

#[derive(serde::Deserialize, Default)]
pub struct InboxQuery {
    #[serde(default)]
    f: String,
    channel: Option<i64>,
    after: Option<String>,
}

fn filter_of(q: &InboxQuery) -> ConversationFilter {
    ConversationFilter {
        unread_only: q.f == "unread",
        mine: q.f == "mine",
        channel_id: q.channel,
        provider: None,
    }
}

async fn list(
    state: &AppState,
    caller: Caller,
    q: &InboxQuery,
) -> Result<(Vec<ConversationLine>, Option<String>), AppError> {
    let page = state
        .modules
        .messaging
        .conversations(
            caller,
            &filter_of(q),
            PageRequest::new(q.after.clone().map(Cursor::from_string), Some(50)),
        )
        .await?;
    Ok((
        page.items.iter().map(ConversationLine::from).collect(),
        page.next.map(|c| c.as_str().to_string()),
    ))
}

async fn thread(state: &AppState, caller: Caller, c: &Conversation) -> Result<Thread, AppError> {
    let users = state
        .modules
        .accounts
        .list_users(caller, PageRequest::new(None, Some(250)))
        .await?;
    let name = |id: Option<i64>| {
        id.and_then(|i| users.items.iter().find(|u| u.id.0 == i))
            .map(|u| u.name.clone())
            .unwrap_or_default()
    };
    let messages = state
        .modules
        .messaging
        .messages(caller, c.id, None, 200)
        .await?;
    Ok(Thread {
        id: c.id,
        window_open: c.window_open(Utc::now()),
        provider: c.provider.as_str(),
        messages: messages
            .into_iter()
            .map(|m| MessageLine {
                id: m.id,
                incoming: m.direction == Direction::In,
                author: if m.robot {
                    "robot".into()
                } else {
                    name(m.author_user_id)
                },
                text: m.text,
                status: m.status.as_str(),
                error: m.error.unwrap_or_default(),
                at: when(m.sent_at.unwrap_or(m.created_at)),
                buttons: m.buttons,
                files: m.attachments.into_iter().map(FileLine::from).collect(),
            })
            .collect(),
    })
}

async fn deal_side(
    state: &AppState,
    caller: Caller,
    deal: i64,
) -> Result<Option<DealSide>, AppError> {
    let d = match state.modules.deals.deal(caller, DealId(deal)).await {
        Ok(d) => d,
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::Forbidden) => return Ok(None),
        Err(e) => return Err(e),
    };
    let pipeline = state.modules.deals.pipeline(caller, d.pipeline_id).await?;
    let stage = pipeline.stages.iter().find(|s| s.id == d.stage_id);
    let responsible = state
        .modules
        .accounts
        .user(caller, d.responsible_user_id)
        .await
        .map(|u| u.name)
        .unwrap_or_default();
    Ok(Some(DealSide {
        id: d.id.0,
        name: d.name,
        stage: stage.map(|s| s.name.clone()).unwrap_or_default(),
        price: d.price,
        responsible,
        incoming: stage.is_some_and(|s| s.kind == StageKind::Incoming),
    }))
}

async fn page(
    ctx: &Ctx,
    state: &AppState,
    q: &InboxQuery,
    current: Option<i64>,
    error: Option<(String, String)>,
    status: StatusCode,
) -> PageResult {
    let caller = ctx.caller()?;
    let (conversations, next) = list(state, caller, q).await?;
    let channels = state
        .modules
        .messaging
        .channels(caller)
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut tpl = InboxTpl {
        ctx,
        filter: q.f.clone(),
        channel: q.channel,
        channels,
        conversations,
        next,
        current: None,
        thread: None,
        deal: None,
        contact: String::new(),
        templates: Vec::new(),
        error,
    };
    if let Some(id) = current {
        let c = state.modules.messaging.conversation(caller, id).await?;
        state.modules.messaging.mark_read(caller, id).await?;
        tpl.thread = Some(thread(state, caller, &c).await?);
        if let Some(d) = c.deal_id {
            tpl.deal = deal_side(state, caller, d).await?;
        }
        if let Some(contact) = c.contact_id
            && let Ok(k) = state
                .modules
                .contacts
                .contact(caller, contacts_api::ContactId(contact))
                .await
        {
            tpl.contact = format!("{} {}", k.first_name, k.last_name)
                .trim()
                .to_string();
        }
        tpl.templates = state
            .modules
            .messaging
            .templates(caller)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        tpl.current = Some(ConversationLine::from(&c));
    }
    html(status, &tpl)
}

pub async fn index(ctx: Ctx, state: web::Data<AppState>, q: web::Query<InboxQuery>) -> PageResult {
    page(&ctx, &state, &q, None, None, StatusCode::OK).await
}

pub async fn show(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<InboxQuery>,
) -> PageResult {
    page(&ctx, &state, &q, Some(*path), None, StatusCode::OK).await
}

/// The conversations list alone (the page refreshes it every few seconds).
pub async fn list_part(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<InboxQuery>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (conversations, next) = list(&state, caller, &q).await?;
    ok(&ListTpl {
        ctx: &ctx,
        filter: q.f.clone(),
        channel: q.channel,
        conversations,
        next,
        current: None,
    })
}

/// The thread alone (refreshed every few seconds while open; read as it is shown).
pub async fn thread_part(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let c = state.modules.messaging.conversation(caller, *path).await?;
    if c.unread > 0 {
        state.modules.messaging.mark_read(caller, c.id).await?;
    }
    ok(&ThreadTpl {
        ctx: &ctx,
        thread: thread(&state, caller, &c).await?,
    })
}

/// `{{contact.name}}`, `{{deal.name}}`, `{{user.name}}` of the conversation.
async fn variables(
    ctx: &Ctx,
    state: &AppState,
    caller: Caller,
    c: &Conversation,
) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("contact.name", c.title.clone()),
        (
            "user.name",
            ctx.user().map(|u| u.name.clone()).unwrap_or_default(),
        ),
    ];
    if let Some(d) = c.deal_id
        && let Ok(deal) = state.modules.deals.deal(caller, DealId(d)).await
    {
        vars.push(("deal.name", deal.name));
    }
    vars
}

pub async fn send(
    ctx: Ctx,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let id = *path;
    let c = state.modules.messaging.conversation(caller, id).await?;
    let mut message = OutgoingMessage {
        text: get(&form, "text").to_string(),
        ..Default::default()
    };
    if let Ok(t) = get(&form, "template_id").trim().parse::<i64>() {
        let template = state
            .modules
            .messaging
            .templates(caller)
            .await?
            .into_iter()
            .find(|x| x.id == t)
            .ok_or_else(|| AppError::not_found("template"))?;
        let vars = variables(&ctx, &state, caller, &c).await;
        let filled = messaging::fill(&template.body, &vars);
        match (&template.whatsapp_name, c.window_open(Utc::now())) {
            // Outside the 24-hour window WhatsApp takes only an approved template.
            (Some(name), false) if c.provider == Provider::Whatsapp => {
                message.template = Some(TemplateSend {
                    name: name.clone(),
                    language: template.whatsapp_language.clone(),
                    params: Vec::new(),
                });
                message.text = filled;
            }
            _ if message.text.is_empty() => message.text = filled,
            _ => {}
        }
    }
    let result = state.modules.messaging.send(caller, id, message).await;
    after_send(ctx, req, state, path, result).await
}

/// The thread again (htmx) or the chat page after a send; the chat with the problem named
/// when the message was refused.
async fn after_send(
    ctx: Ctx,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    result: Result<Queued, AppError>,
) -> PageResult {
    let id = *path;
    let htmx = req.headers().contains_key("hx-request");
    match result {
        Ok(_) if htmx => thread_part(ctx, state, path).await,
        Ok(_) => see_other(&format!("/inbox/{id}"), None),
        Err(e) if is_form_error(&e) => {
            let detail = e
                .fields
                .first()
                .map(|f| f.message.clone())
                .unwrap_or(e.message.clone());
            let status = super::form_status(&e);
            page(
                &ctx,
                &state,
                &InboxQuery::default(),
                Some(id),
                Some((e.code.message_key().to_string(), detail)),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends a file, with the text as its caption (a multipart form: `file`, `text`).
pub async fn attach(
    ctx: Ctx,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: actix_multipart::Multipart,
) -> PageResult {
    let caller = ctx.caller()?;
    let id = *path;
    state.modules.messaging.conversation(caller, id).await?;
    let result = match read_file_form(form).await {
        Ok(message) => state.modules.messaging.send(caller, id, message).await,
        Err(e) => Err(e),
    };
    after_send(ctx, req, state, path, result).await
}

/// The file and the caption of a file form; a file over the limit is refused before it is
/// read to the end.
async fn read_file_form(mut form: actix_multipart::Multipart) -> Result<OutgoingMessage, AppError> {
    use futures_util::StreamExt;
    let mut message = OutgoingMessage::default();
    let mut file = FileUpload::default();
    let bad = |_| AppError::new(ErrorCode::BadRequest, "the upload cannot be read");
    while let Some(field) = form.next().await {
        let mut field = field.map_err(bad)?;
        let name = field.name().unwrap_or("").to_string();
        let limit = match name.as_str() {
            "file" => messaging::MAX_FILE_BYTES,
            _ => 16 * 1024,
        };
        if name == "file" {
            file.file_name = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .unwrap_or("")
                .to_string();
            file.mime_type = field
                .content_type()
                .map(|m| m.essence_str().to_string())
                .unwrap_or_default();
        }
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad)?;
            if data.len() + chunk.len() > limit {
                return Err(AppError::validation(
                    if name == "file" { "file" } else { "text" },
                    "too_large",
                    &format!("at most {} MB", messaging::MAX_FILE_BYTES / 1024 / 1024),
                ));
            }
            data.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "file" => file.content = data,
            "text" => message.text = String::from_utf8_lossy(&data).to_string(),
            _ => {}
        }
    }
    message.file = Some(file);
    Ok(message)
}

/// A file of a message, for someone who sees its conversation.
pub async fn file(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let file = state.modules.messaging.attachment(caller, *path).await?;
    Ok(crate::hooks::file_response(file))
}

/// The conversation's deal, if it has one (its incoming lead, or the deal it was linked to).
fn lead_of(c: &Conversation) -> Result<DealId, AppError> {
    c.deal_id
        .map(DealId)
        .ok_or_else(|| AppError::validation("deal_id", "no_lead", "this chat has no lead"))
}

/// Accepts the incoming lead: it moves to the pipeline's first open stage.
pub async fn accept(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let c = state.modules.messaging.conversation(caller, *path).await?;
    crate::incoming::accept(&state, caller, lead_of(&c)?, None).await?;
    see_other(&format!("/inbox/{}", c.id), Some("inbox.accepted"))
}

/// Declines the incoming lead: its deal is deleted (it can be restored), the chat stays.
pub async fn decline(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let c = state.modules.messaging.conversation(caller, *path).await?;
    crate::incoming::decline(&state, caller, lead_of(&c)?).await?;
    see_other(&format!("/inbox/{}", c.id), Some("inbox.declined"))
}

/// Links the chat to an existing deal instead of its incoming lead (which is deleted).
pub async fn link(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let c = state.modules.messaging.conversation(caller, *path).await?;
    let target: i64 = get(&form, "deal_id")
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| AppError::validation("deal_id", "invalid", "a deal number"))?;
    let lead = match c.deal_id {
        Some(d) => crate::incoming::incoming_lead(&state, caller, DealId(d))
            .await
            .ok()
            .map(|(deal, _)| deal.id),
        None => None,
    };
    crate::incoming::link_chat(&state, caller, c.id, lead, DealId(target)).await?;
    see_other(&format!("/inbox/{}", c.id), Some("inbox.linked"))
}

// --- the bell --------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "inbox/_bell.html")]
struct BellTpl<'a> {
    ctx: &'a Ctx,
    notifications: i64,
    chats: i64,
}

/// The counters in the header (refreshed by the page every few seconds).
pub async fn bell(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    let caller = ctx.caller()?;
    let m = &state.modules.messaging;
    ok(&BellTpl {
        ctx: &ctx,
        notifications: m.unread_notifications(caller).await?,
        chats: m.unread_conversations(caller).await?,
    })
}

pub struct NotificationLine {
    pub kind: &'static str,
    pub text: String,
    pub link: String,
    pub at: String,
    pub read: bool,
}

#[derive(Template)]
#[template(path = "inbox/notifications.html")]
struct NotificationsTpl<'a> {
    ctx: &'a Ctx,
    items: Vec<NotificationLine>,
}

/// The notifications, newest first; opening the list reads them.
pub async fn notifications(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    let caller = ctx.caller()?;
    let m = &state.modules.messaging;
    let items = m
        .notifications(caller, 100)
        .await?
        .into_iter()
        .map(|n| NotificationLine {
            kind: n.kind.as_str(),
            text: n.text,
            link: n.link,
            at: when(n.created_at),
            read: n.read,
        })
        .collect();
    m.read_notifications(caller).await?;
    ok(&NotificationsTpl { ctx: &ctx, items })
}

// --- the deal page's chat ---------------------------------------------------------------------

#[derive(Template)]
#[template(path = "inbox/_deal_chat.html")]
struct DealChatTpl<'a> {
    ctx: &'a Ctx,
    thread: Option<Thread>,
}

/// The deal's chat on its page: the last messages and a reply box.
pub async fn deal_chat(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let thread = match state
        .modules
        .messaging
        .conversation_of_deal(caller, *path)
        .await?
    {
        Some(c) => Some(thread(&state, caller, &c).await?),
        None => None,
    };
    ok(&DealChatTpl { ctx: &ctx, thread })
}

// --- settings: channels and templates ----------------------------------------------------------

pub struct ChannelLine {
    pub id: i64,
    pub provider: &'static str,
    pub name: String,
    pub external_id: String,
    pub webhook: String,
    pub pipeline: String,
    pub rate: i32,
    pub active: bool,
    pub error: String,
}

#[derive(Template)]
#[template(path = "settings/channels.html")]
struct ChannelsTpl<'a> {
    ctx: &'a Ctx,
    channels: Vec<ChannelLine>,
    pipelines: Vec<(i64, String)>,
    form: Vec<(String, String)>,
    problems: Vec<(String, String, String)>,
}

impl ChannelsTpl<'_> {
    fn value(&self, key: &str) -> &str {
        get(&self.form, key)
    }
}

fn public_url(state: &AppState) -> String {
    state
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config.listen))
        .trim_end_matches('/')
        .to_string()
}

async fn channels_page(
    ctx: &Ctx,
    state: &AppState,
    form: Vec<(String, String)>,
    problems: Vec<(String, String, String)>,
    status: StatusCode,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let pipelines: Vec<(i64, String)> = state
        .modules
        .deals
        .pipelines(caller)
        .await?
        .into_iter()
        .map(|p| (p.id.0, p.name))
        .collect();
    let base = public_url(state);
    let channels = state
        .modules
        .messaging
        .channels(caller)
        .await?
        .into_iter()
        .map(|c| ChannelLine {
            id: c.id,
            provider: c.provider.as_str(),
            webhook: format!("{base}/hooks/{}/{}", c.provider.as_str(), c.webhook_key),
            pipeline: pipelines
                .iter()
                .find(|p| p.0 == c.pipeline_id)
                .map(|p| p.1.clone())
                .unwrap_or_default(),
            name: c.name,
            external_id: c.external_id,
            rate: c.rate_per_second,
            active: c.active,
            error: c.error.unwrap_or_default(),
        })
        .collect();
    html(
        status,
        &ChannelsTpl {
            ctx,
            channels,
            pipelines,
            form,
            problems,
        },
    )
}

pub async fn channels(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    channels_page(&ctx, &state, Vec::new(), Vec::new(), StatusCode::OK).await
}

pub async fn create_channel(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let f = form.into_inner();
    let new = NewChannel {
        provider: Provider::parse(get(&f, "provider").trim()),
        name: get(&f, "name").into(),
        token: get(&f, "token").into(),
        external_id: get(&f, "external_id").into(),
        app_secret: get(&f, "app_secret").into(),
        verify_token: get(&f, "verify_token").into(),
        base_url: get(&f, "base_url").into(),
        api_version: get(&f, "api_version").into(),
        pipeline_id: get(&f, "pipeline_id").trim().parse().ok(),
        responsible_user_id: None,
        rate_per_second: get(&f, "rate_per_second").trim().parse().ok(),
        webhook_base: Some(public_url(&state)),
    };
    match state.modules.messaging.create_channel(caller, new).await {
        Ok(_) => see_other("/settings/channels", Some("fields.saved")),
        Err(e) if is_form_error(&e) => {
            let problems = e
                .fields
                .iter()
                .map(|p| {
                    (
                        p.field.clone(),
                        format!("field.{}", p.code),
                        p.message.clone(),
                    )
                })
                .collect();
            // Secrets are not shown back.
            let kept = f
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "token" | "app_secret"))
                .collect();
            channels_page(&ctx, &state, kept, problems, super::form_status(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn toggle_channel(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    state
        .modules
        .messaging
        .set_channel_active(caller, *path, get(&form, "active").trim() == "true")
        .await?;
    see_other("/settings/channels", Some("fields.saved"))
}

pub async fn delete_channel(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    state
        .modules
        .messaging
        .delete_channel(caller, *path)
        .await?;
    see_other("/settings/channels", Some("automation.deleted"))
}

#[derive(Template)]
#[template(path = "settings/templates.html")]
struct TemplatesTpl<'a> {
    ctx: &'a Ctx,
    templates: Vec<messaging_api::Template>,
    form: Vec<(String, String)>,
    problems: Vec<(String, String, String)>,
}

impl TemplatesTpl<'_> {
    fn value(&self, key: &str) -> &str {
        get(&self.form, key)
    }
}

pub async fn templates(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    let caller = ctx.require_admin()?;
    ok(&TemplatesTpl {
        ctx: &ctx,
        templates: state.modules.messaging.templates(caller).await?,
        form: Vec::new(),
        problems: Vec::new(),
    })
}

pub async fn save_template(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let f = form.into_inner();
    let new = NewTemplate {
        id: None,
        name: get(&f, "name").into(),
        body: get(&f, "body").into(),
        whatsapp_name: get(&f, "whatsapp_name").into(),
        whatsapp_language: get(&f, "whatsapp_language").into(),
    };
    match state.modules.messaging.save_template(caller, new).await {
        Ok(_) => see_other("/settings/templates", Some("fields.saved")),
        Err(e) if is_form_error(&e) => html(
            super::form_status(&e),
            &TemplatesTpl {
                ctx: &ctx,
                templates: state.modules.messaging.templates(caller).await?,
                problems: e
                    .fields
                    .iter()
                    .map(|p| {
                        (
                            p.field.clone(),
                            format!("field.{}", p.code),
                            p.message.clone(),
                        )
                    })
                    .collect(),
                form: f,
            },
        ),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_template(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    state
        .modules
        .messaging
        .delete_template(caller, *path)
        .await?;
    see_other("/settings/templates", Some("automation.deleted"))
}
