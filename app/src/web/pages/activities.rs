//! Activities in the UI: the timeline of a deal, contact or company (with its composer for a
//! note or a task, worked by htmx without a page reload), the tasks page (overdue, today,
//! tomorrow, later; or a week), and the account's event list.

use std::collections::HashMap;

use activities_api::{
    EntityKind, EntityRef, LogEntry, LogFilter, NewNote, NewTask, Note, NoteId, Task, TaskId,
    TaskQuery, TaskTypeId, TimelineItem,
};
use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppError, Caller, ErrorCode};
use serde_json::Value;

use super::deals::{Names, filter};
use super::{html, is_form_error, see_other};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;

/// One line of a timeline or a task list.
pub struct ItemView {
    /// "note", "task" or "event".
    pub kind: &'static str,
    pub id: i64,
    pub at: String,
    pub who: String,
    /// A translation key: the note type, the task type or the event type.
    pub title: String,
    pub text: String,
    pub detail: String,
    pub overdue: bool,
    pub done: bool,
    pub pinned: bool,
    /// The record a task is about, as a link (on the tasks page).
    pub link: Option<(String, String)>,
}

pub struct TimelineView {
    pub kind: &'static str,
    pub id: i64,
    pub pinned: Vec<ItemView>,
    pub items: Vec<ItemView>,
    pub next: Option<String>,
    pub task_types: Vec<(i64, String)>,
    pub users: Vec<(i64, String)>,
    pub me: i64,
    /// A translation key for the composer's refusal, and the module's explanation.
    pub error: Option<(String, String)>,
    /// The default due time for a new task (tomorrow, 10:00), as datetime-local wants it.
    pub default_due: String,
}

fn when(t: DateTime<Utc>) -> String {
    // Times in UTC until the user's time zone is applied across the UI.
    t.format("%d.%m.%Y %H:%M").to_string()
}

fn type_key(types: &[(i64, String)], id: TaskTypeId) -> String {
    types
        .iter()
        .find(|(t, _)| *t == id.0)
        .map(|(_, n)| n.clone())
        .unwrap_or_default()
}

/// The translated names of the built-in task types; custom ones as named.
pub(crate) async fn task_types(
    ctx: &Ctx,
    state: &AppState,
    caller: Caller,
) -> Result<Vec<(i64, String)>, AppError> {
    Ok(state
        .modules
        .activities
        .task_types(caller)
        .await?
        .into_iter()
        .map(|t| {
            let name = if t.builtin {
                ctx.t(format!("tasks.type.{}", t.name).as_str()).to_string()
            } else {
                t.name
            };
            (t.id.0, name)
        })
        .collect())
}

fn note_view(n: Note, names: &HashMap<i64, String>) -> ItemView {
    let detail = match n.params.as_object() {
        Some(p) if n.note_type.starts_with("call_") => {
            let mut parts = Vec::new();
            if let Some(v) = p
                .get("phone")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                parts.push(v.to_string());
            }
            if let Some(d) = p.get("duration").and_then(Value::as_i64).filter(|d| *d > 0) {
                parts.push(format!("{}:{:02}", d / 60, d % 60));
            }
            if let Some(v) = p
                .get("call_result")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                parts.push(v.to_string());
            }
            if let Some(v) = p
                .get("link")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                parts.push(v.to_string());
            }
            parts.join(" · ")
        }
        _ => String::new(),
    };
    ItemView {
        kind: "note",
        id: n.id.0,
        at: when(n.created_at),
        who: names.get(&n.created_by.0).cloned().unwrap_or_default(),
        title: format!("notes.type.{}", n.note_type),
        text: n.text,
        detail,
        overdue: false,
        done: false,
        pinned: n.pinned,
        link: None,
    }
}

fn task_view(
    t: Task,
    names: &HashMap<i64, String>,
    types: &[(i64, String)],
    now: DateTime<Utc>,
) -> ItemView {
    let due = if t.whole_day {
        t.due_at.format("%d.%m.%Y").to_string()
    } else {
        when(t.due_at)
    };
    ItemView {
        kind: "task",
        id: t.id.0,
        at: due,
        who: names
            .get(&t.responsible_user_id.0)
            .cloned()
            .unwrap_or_default(),
        title: type_key(types, t.task_type_id),
        overdue: t.is_overdue(now),
        done: t.completed_at.is_some(),
        detail: t.result.clone(),
        link: t.entity.map(record_link),
        text: t.text,
        pinned: false,
    }
}

/// What changed, in a line: "stage: 1001 → 1002", "name: Old → New".
fn changes(e: &LogEntry, stages: &HashMap<i64, String>) -> String {
    let value = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    if let (Some(f), Some(t)) = (
        e.payload.get("from_stage_id").and_then(Value::as_i64),
        e.payload.get("to_stage_id").and_then(Value::as_i64),
    ) {
        let name = |id: i64| stages.get(&id).cloned().unwrap_or_else(|| id.to_string());
        return format!("{} → {}", name(f), name(t));
    }
    let (Some(Value::Object(b)), Some(Value::Object(a))) = (&e.before, &e.after) else {
        return e
            .payload
            .get("name")
            .or_else(|| e.payload.get("text"))
            .map(value)
            .unwrap_or_default();
    };
    a.iter()
        .map(|(k, v)| {
            format!(
                "{k}: {} → {}",
                b.get(k).map(value).unwrap_or_else(|| "—".into()),
                value(v)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn event_view(
    e: LogEntry,
    names: &HashMap<i64, String>,
    stages: &HashMap<i64, String>,
) -> ItemView {
    ItemView {
        kind: "event",
        id: e.id,
        at: when(e.occurred_at),
        who: if e.actor.kind == "user" {
            names.get(&e.actor.id).cloned().unwrap_or_default()
        } else {
            e.actor.kind.clone()
        },
        title: if e.event_type.starts_with(activities_api::IMPORTED_PREFIX) {
            "event.imported".to_string()
        } else {
            format!("event.{}", e.event_type)
        },
        text: String::new(),
        detail: if let Some(theirs) = e.event_type.strip_prefix(activities_api::IMPORTED_PREFIX) {
            imported_detail(theirs, &e)
        } else if e.event_type
            == <automation_api::events::RunFinished as kernel::events::DomainEvent>::TYPE
        {
            // A robot's run: which trigger, how it ended, and why it failed or was cut.
            let p = &e.payload;
            let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default();
            let mut d = format!("\u{ab}{}\u{bb}: {}", s("trigger_name"), s("status"));
            if !s("error").is_empty() {
                d.push_str(" — ");
                d.push_str(s("error"));
            }
            d
        } else {
            changes(&e, stages)
        },
        overdue: false,
        done: false,
        pinned: false,
        link: None,
    }
}

/// An entry of amoCRM's event log: its type, and its values before and after (shortened).
fn imported_detail(theirs: &str, e: &LogEntry) -> String {
    let short = |v: &Option<serde_json::Value>| {
        let text = v
            .as_ref()
            .filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
            .map(|v| v.to_string())
            .unwrap_or_default();
        if text.chars().count() > 160 {
            format!("{}…", text.chars().take(160).collect::<String>())
        } else {
            text
        }
    };
    match (short(&e.before), short(&e.after)) {
        (b, a) if b.is_empty() && a.is_empty() => theirs.to_string(),
        (b, a) if b.is_empty() => format!("{theirs}: {a}"),
        (b, a) => format!("{theirs}: {b} → {a}"),
    }
}

/// A record as a link: its page, and "deal #12".
fn record_link(e: EntityRef) -> (String, String) {
    let path = match e.kind {
        EntityKind::Deal => "deals",
        EntityKind::Contact => "contacts",
        EntityKind::Company => "companies",
    };
    (
        format!("/{path}/{}", e.id),
        format!("{} #{}", e.kind.as_str(), e.id),
    )
}

fn kind_of(s: &str) -> Result<EntityKind, AppError> {
    EntityKind::parse(s).ok_or_else(|| AppError::not_found("record"))
}

/// The timeline of a record, first page or after a cursor. `stages` names a deal's stages.
pub async fn load_timeline(
    ctx: &Ctx,
    state: &AppState,
    entity: EntityRef,
    after: Option<String>,
    stages: &HashMap<i64, String>,
) -> Result<TimelineView, AppError> {
    let caller = ctx.caller()?;
    let names = Names::load(state, ctx, caller).await?;
    let types = task_types(ctx, state, caller).await?;
    let tl = state
        .modules
        .activities
        .timeline(
            caller,
            entity,
            PageRequest::new(after.map(Cursor::from_string), Some(30)),
        )
        .await?;
    let now = Utc::now();
    let tomorrow = (now + TimeDelta::days(1)).date_naive();
    Ok(TimelineView {
        kind: entity.kind.as_str(),
        id: entity.id,
        pinned: tl
            .pinned
            .into_iter()
            .map(|n| note_view(n, &names.users))
            .collect(),
        items: tl
            .items
            .into_iter()
            .map(|i| match i {
                TimelineItem::Note(n) => note_view(n, &names.users),
                TimelineItem::Task(t) => task_view(t, &names.users, &types, now),
                TimelineItem::Event(e) => event_view(e, &names.users, stages),
            })
            .collect(),
        next: tl.next.map(|c| c.as_str().to_string()),
        task_types: types,
        users: names
            .user_list
            .iter()
            .map(|u| (u.id, u.name.clone()))
            .collect(),
        me: caller.actor.user_id().map(|u| u.0).unwrap_or(0),
        error: None,
        default_due: format!("{}T10:00", tomorrow.format("%Y-%m-%d")),
    })
}

#[derive(Template)]
#[template(path = "activities/timeline.html")]
struct TimelineTpl<'a> {
    ctx: &'a Ctx,
    timeline: TimelineView,
}

async fn timeline_response(
    ctx: &Ctx,
    state: &AppState,
    entity: EntityRef,
    after: Option<String>,
    error: Option<&AppError>,
) -> PageResult {
    let mut timeline = load_timeline(ctx, state, entity, after, &HashMap::new()).await?;
    timeline.error = error.map(|e| {
        let key = <[_]>::first(&e.fields)
            .map(|f| format!("field.{}", f.code))
            .unwrap_or_else(|| e.code.message_key().to_string());
        let detail = <[_]>::first(&e.fields)
            .map(|f| f.message.clone())
            .unwrap_or_else(|| e.message.clone());
        (key, detail)
    });
    html(StatusCode::OK, &TimelineTpl { ctx, timeline })
}

/// The timeline fragment (its "more" link, and a refresh).
pub async fn timeline(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    let (kind, id) = path.into_inner();
    let entity = EntityRef {
        kind: kind_of(&kind)?,
        id,
    };
    let after = Some(filter::get(&q, "after").to_string()).filter(|a| !a.is_empty());
    timeline_response(&ctx, &state, entity, after, None).await
}

/// Handles what a composer's result is: the fresh timeline, or the timeline with the refusal.
async fn after_change(
    ctx: &Ctx,
    state: &AppState,
    entity: EntityRef,
    result: Result<(), AppError>,
) -> PageResult {
    match result {
        Ok(()) => timeline_response(ctx, state, entity, None, None).await,
        Err(e) if is_form_error(&e) || e.code == ErrorCode::Forbidden => {
            timeline_response(ctx, state, entity, None, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn add_note(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (kind, id) = path.into_inner();
    let entity = EntityRef {
        kind: kind_of(&kind)?,
        id,
    };
    let g = |k: &str| filter::get(&f, k).to_string();
    let note_type = g("note_type");
    let call = note_type
        .starts_with("call_")
        .then(|| activities_api::CallParams {
            phone: g("phone"),
            duration: g("duration").trim().parse::<i64>().unwrap_or(0) * 60,
            call_result: g("call_result"),
            link: g("link"),
            source: String::new(),
        });
    let result = state
        .modules
        .activities
        .add_note(
            caller,
            NewNote {
                entity,
                note_type,
                text: g("text"),
                call,
            },
        )
        .await
        .map(|_| ());
    after_change(&ctx, &state, entity, result).await
}

/// A datetime-local value ("2026-11-27T10:00") or a date, as UTC.
fn parse_due(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|t| t.and_utc())
}

fn new_task(f: &[(String, String)], entity: Option<EntityRef>) -> Result<NewTask, AppError> {
    let g = |k: &str| filter::get(f, k).to_string();
    let due_at = parse_due(&g("due"))
        .ok_or_else(|| AppError::validation("due", "not_a_datetime", "when is it due?"))?;
    Ok(NewTask {
        entity,
        task_type_id: TaskTypeId(g("task_type_id").parse().unwrap_or(1)),
        text: g("text"),
        due_at,
        whole_day: !g("whole_day").is_empty(),
        responsible_user_id: g("responsible_user_id").parse().ok().map(kernel::UserId),
    })
}

pub async fn add_task(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (kind, id) = path.into_inner();
    let entity = EntityRef {
        kind: kind_of(&kind)?,
        id,
    };
    let result = match new_task(&f, Some(entity)) {
        Ok(t) => state
            .modules
            .activities
            .create_task(caller, t)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    after_change(&ctx, &state, entity, result).await
}

/// Completes (or reopens) a task; from a timeline the timeline comes back, from the tasks page
/// the page.
pub async fn complete_task(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let a = &state.modules.activities;
    let id = TaskId(*path);
    let result = if filter::get(&f, "reopen").is_empty() {
        a.complete_task(caller, id, filter::get(&f, "result")).await
    } else {
        a.reopen_task(caller, id).await
    };
    let task = match result {
        Ok(t) => t,
        Err(e) if is_form_error(&e) => {
            return see_other("/tasks", Some("tasks.not_completed"));
        }
        Err(e) => return Err(e.into()),
    };
    match (filter::get(&f, "back"), task.entity) {
        ("timeline", Some(entity)) => after_change(&ctx, &state, entity, Ok(())).await,
        _ => see_other("/tasks", Some("tasks.saved")),
    }
}

pub async fn pin_note(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let a = &state.modules.activities;
    let id = NoteId(*path);
    let kind = kind_of(filter::get(&f, "kind"))?;
    let entity = EntityRef {
        kind,
        id: filter::get(&f, "entity_id").parse().unwrap_or(0),
    };
    let result = match filter::get(&f, "action") {
        "delete" => a.delete_note(caller, id).await.map(|_| None),
        "edit" => a
            .update_note(
                caller,
                id,
                NewNote {
                    entity,
                    note_type: String::new(),
                    text: filter::get(&f, "text").to_string(),
                    call: None,
                },
            )
            .await
            .map(Some),
        "unpin" => a.pin_note(caller, id, false).await.map(Some),
        _ => a.pin_note(caller, id, true).await.map(Some),
    };
    after_change(&ctx, &state, entity, result.map(|_| ())).await
}

// --- the tasks page ---------------------------------------------------------------------------

pub struct TaskGroup {
    /// A translation key.
    pub title: &'static str,
    pub tasks: Vec<ItemView>,
}

pub struct DayView {
    pub label: String,
    pub today: bool,
    pub tasks: Vec<ItemView>,
}

#[derive(Template)]
#[template(path = "activities/tasks.html")]
struct TasksTpl<'a> {
    ctx: &'a Ctx,
    groups: Vec<TaskGroup>,
    week: Vec<DayView>,
    view: String,
    /// "me", "all" or a user id.
    who: String,
    users: Vec<(i64, String)>,
    task_types: Vec<(i64, String)>,
    default_due: String,
    error: Option<String>,
}

/// Tasks: open ones by due time in four groups (overdue, today, tomorrow, later), or the week
/// as seven columns; the user's own by default, anyone's the rights allow.
pub async fn tasks(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    tasks_page(&ctx, &state, &q, None).await
}

async fn tasks_page(
    ctx: &Ctx,
    state: &AppState,
    q: &[(String, String)],
    error: Option<String>,
) -> PageResult {
    let caller = ctx.caller()?;
    let names = Names::load(state, ctx, caller).await?;
    let types = task_types(ctx, state, caller).await?;
    let who = match filter::get(q, "who") {
        "" => "me".to_string(),
        w => w.to_string(),
    };
    let responsible = match who.as_str() {
        "me" => caller.actor.user_id(),
        "all" => None,
        id => id.parse().ok().map(kernel::UserId),
    };
    let view = if filter::get(q, "view") == "week" {
        "week"
    } else {
        "list"
    };
    let now = Utc::now();
    let today = now.date_naive();
    let start_of = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now);
    let monday = today - TimeDelta::days(today.weekday().num_days_from_monday() as i64);
    let due_before = match view {
        "week" => Some(start_of(monday + TimeDelta::days(7))),
        _ => None,
    };
    let page = state
        .modules
        .activities
        .tasks(
            caller,
            &TaskQuery {
                responsible,
                done: false,
                due_before,
                entity: None,
            },
            PageRequest::new(None, Some(250)),
        )
        .await?;
    let mut groups = vec![
        TaskGroup {
            title: "tasks.overdue",
            tasks: Vec::new(),
        },
        TaskGroup {
            title: "tasks.today",
            tasks: Vec::new(),
        },
        TaskGroup {
            title: "tasks.tomorrow",
            tasks: Vec::new(),
        },
        TaskGroup {
            title: "tasks.later",
            tasks: Vec::new(),
        },
    ];
    let mut week: Vec<DayView> = (0..7)
        .map(|i| {
            let d = monday + TimeDelta::days(i);
            DayView {
                label: format!(
                    "{} {}",
                    ctx.t(format!("tasks.day.{}", i).as_str()),
                    d.format("%d.%m")
                ),
                today: d == today,
                tasks: Vec::new(),
            }
        })
        .collect();
    for t in page.items {
        let day = t.due_at.date_naive();
        let overdue = t.is_overdue(now);
        let v = task_view(t, &names.users, &types, now);
        if view == "week" {
            // Overdue tasks of earlier weeks show on Monday.
            let i = (day - monday).num_days().clamp(0, 6) as usize;
            week[i].tasks.push(v);
            continue;
        }
        let g = if overdue {
            0
        } else if day == today {
            1
        } else if day == today + TimeDelta::days(1) {
            2
        } else {
            3
        };
        groups[g].tasks.push(v);
    }
    html(
        StatusCode::OK,
        &TasksTpl {
            ctx,
            groups,
            week,
            view: view.to_string(),
            who,
            users: names
                .user_list
                .iter()
                .map(|u| (u.id, u.name.clone()))
                .collect(),
            task_types: types,
            default_due: format!("{}T10:00", (today + TimeDelta::days(1)).format("%Y-%m-%d")),
            error,
        },
    )
}

/// A task from the tasks page (not about a record).
pub async fn create_task(
    ctx: Ctx,
    state: web::Data<AppState>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let result = match new_task(&f, None) {
        Ok(t) => state.modules.activities.create_task(caller, t).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => see_other("/tasks", Some("tasks.saved")),
        Err(e) if is_form_error(&e) => {
            let key = <[_]>::first(&e.fields)
                .map(|f| format!("field.{}", f.code))
                .unwrap_or_else(|| e.code.message_key().to_string());
            tasks_page(&ctx, &state, &[], Some(key)).await
        }
        Err(e) => Err(e.into()),
    }
}

// --- the event list ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "activities/events.html")]
struct EventsTpl<'a> {
    ctx: &'a Ctx,
    rows: Vec<(ItemView, Option<(String, String)>)>,
    next: Option<String>,
    query: String,
    entity: String,
    event_type: String,
    user: String,
    from: String,
    to: String,
    users: Vec<(i64, String)>,
    event_types: Vec<&'static str>,
}

/// The event types the list offers as a filter.
const EVENT_TYPES: [&str; 17] = [
    "deals.deal_created",
    "deals.deal_updated",
    "deals.deal_stage_changed",
    "deals.deal_responsible_changed",
    "deals.deal_deleted",
    "contacts.contact_created",
    "contacts.contact_updated",
    "contacts.contact_deleted",
    "contacts.contacts_merged",
    "contacts.company_created",
    "contacts.company_updated",
    "contacts.companies_merged",
    "activities.note_added",
    "activities.task_created",
    "activities.task_completed",
    "activities.task_due",
    "automation.run_finished",
];

/// The account's event list (administrators), filtered by record type, event, user and period.
pub async fn events(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let g = |k: &str| filter::get(&q, k).to_string();
    let day = |s: String| {
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    };
    let log_filter = LogFilter {
        entity: EntityKind::parse(&g("entity")),
        event_type: Some(g("event_type")).filter(|t| !t.is_empty()),
        user: g("user").parse().ok().map(kernel::UserId),
        from: day(g("from")),
        to: day(g("to")).map(|t| t + TimeDelta::days(1)),
        ..LogFilter::default()
    };
    let after = Some(g("after")).filter(|a| !a.is_empty());
    let page = state
        .modules
        .activities
        .events(
            caller,
            &log_filter,
            PageRequest::new(after.map(Cursor::from_string), Some(50)),
        )
        .await?;
    let names = Names::load(&state, &ctx, caller).await?;
    let rows = page
        .items
        .into_iter()
        .map(|e| {
            let link = e.entity.map(record_link);
            (event_view(e, &names.users, &HashMap::new()), link)
        })
        .collect();
    let query = serde_urlencoded::to_string(
        ["entity", "event_type", "user", "from", "to"]
            .iter()
            .map(|k| (*k, g(k)))
            .filter(|(_, v)| !v.is_empty())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    html(
        StatusCode::OK,
        &EventsTpl {
            ctx: &ctx,
            rows,
            next: page.next.map(|c| c.as_str().to_string()),
            query,
            entity: g("entity"),
            event_type: g("event_type"),
            user: g("user"),
            from: g("from"),
            to: g("to"),
            users: names
                .user_list
                .iter()
                .map(|u| (u.id, u.name.clone()))
                .collect(),
            event_types: EVENT_TYPES.to_vec(),
        },
    )
}
