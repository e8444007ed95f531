//! Tasks: list (`filter[responsible_user_id]`, `filter[is_completed]`, `filter[entity_type]` +
//! `filter[entity_id]`, `filter[id]`), get, create, complete (`PATCH` with `is_completed`).

use std::collections::HashSet;

use activities_api::{EntityRef, NewTask, Task, TaskId, TaskPatch, TaskQuery, TaskTypeId};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::DateTime;
use kernel::paging::PageRequest;
use kernel::{AppError, Caller, FieldError, UserId};
use serde_json::{Map, Value, json};

use super::body::{self, Item, MAX_BATCH};
use super::problem::ItemErrors;
use super::{
    ApiAuth, ApiError, EntityPath, Paging, SelfLink, base_url, hal, hal_of, links, list_page,
    or_no_content, params, ts,
};
use crate::state::AppState;

/// A task as amoCRM writes it, serialised straight from the record (no JSON tree per task).
#[derive(serde::Serialize)]
pub struct TaskOut<'a> {
    id: i64,
    created_by: i64,
    updated_by: i64,
    created_at: i64,
    updated_at: i64,
    responsible_user_id: i64,
    group_id: i64,
    entity_id: Option<i64>,
    entity_type: Option<&'static str>,
    duration: i64,
    is_completed: bool,
    task_type_id: i64,
    text: &'a str,
    result: TaskResult<'a>,
    complete_till: i64,
    account_id: i64,
    #[serde(rename = "_links")]
    links: SelfLink,
}

/// `{"text": …}` once the task is completed; amoCRM writes an empty array before.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum TaskResult<'a> {
    Done { text: &'a str },
    Open([(); 0]),
}

impl<'a> TaskOut<'a> {
    pub fn new(base: &str, account: i64, t: &'a Task) -> TaskOut<'a> {
        TaskOut {
            id: t.id.0,
            created_by: t.created_by.0,
            updated_by: t.created_by.0,
            created_at: ts(t.created_at),
            updated_at: ts(t.completed_at.unwrap_or(t.created_at)),
            responsible_user_id: t.responsible_user_id.0,
            group_id: 0,
            entity_id: t.entity.map(|e| e.id),
            entity_type: t.entity.map(|e| EntityPath::of_kind(e.kind).as_str()),
            duration: 0,
            is_completed: t.completed_at.is_some(),
            task_type_id: t.task_type_id.0,
            text: &t.text,
            result: if t.completed_at.is_some() {
                TaskResult::Done { text: &t.result }
            } else {
                TaskResult::Open([])
            },
            complete_till: ts(t.due_at),
            account_id: account,
            links: SelfLink::new(base, format_args!("tasks/{}", t.id.0)),
        }
    }
}

pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    let ids = p.ints(&["filter", "id"], false);
    let responsible = p.ints(&["filter", "responsible_user_id"], false);
    let done = p.bool(&["filter", "is_completed"]);
    let entity_type = p.str(&["filter", "entity_type"]);
    let entity_ids = p.ints(&["filter", "entity_id"], false);
    if responsible.len() > 1 {
        p.fail(
            "filter[responsible_user_id]",
            "NotSupported",
            "one user at a time",
        );
    }
    if entity_ids.len() > 1 {
        p.fail("filter[entity_id]", "NotSupported", "one record at a time");
    }
    let entity = match (
        entity_type.as_deref().map(EntityPath::parse),
        entity_ids.first(),
    ) {
        (Some(Ok(e)), Some(id)) => Some(EntityRef {
            kind: e.kind(),
            id: *id,
        }),
        (Some(Err(_)), _) => {
            p.fail(
                "filter[entity_type]",
                "NotSupportedChoice",
                "leads, contacts or companies",
            );
            None
        }
        (None, Some(_)) => {
            p.fail(
                "filter[entity_type]",
                "Required",
                "filter[entity_id] needs filter[entity_type]",
            );
            None
        }
        _ => None,
    };
    p.finish()?;
    let account = auth.0.account_id.0;
    let acts = &state.modules.activities;
    let (tasks, more) = if !ids.is_empty() {
        let mut found = Vec::new();
        for id in ids {
            match acts.task(caller, TaskId(id)).await {
                Ok(t) => found.push(t),
                Err(e)
                    if e.code == kernel::ErrorCode::NotFound
                        || e.code == kernel::ErrorCode::Forbidden => {}
                Err(e) => return Err(e.into()),
            }
        }
        paging.slice(found)
    } else {
        let query = TaskQuery {
            responsible: responsible.first().copied().map(UserId),
            done: done.unwrap_or(false),
            due_before: None,
            entity,
        };
        let mut page = PageRequest::new(None, Some(paging.limit));
        let mut result = (Vec::new(), false);
        for n in 1..=paging.page {
            let got = acts.tasks(caller, &query, page.clone()).await?;
            if n == paging.page {
                result = (got.items, got.next.is_some());
                break;
            }
            match got.next {
                Some(next) => page = PageRequest::new(Some(next), Some(paging.limit)),
                None => break,
            }
        }
        result
    };
    let base = base_url(&req);
    let items = tasks
        .iter()
        .map(|t| TaskOut::new(&base, account, t))
        .collect();
    Ok(list_page(&req, "tasks", items, paging, more))
}

pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let t = state
                .modules
                .activities
                .task(auth.caller(), TaskId(*path))
                .await?;
            Ok(hal_of(&TaskOut::new(
                &base_url(&req),
                auth.0.account_id.0,
                &t,
            )))
        }
        .await,
    )
}

/// Checks that the records the tasks are about exist for the caller.
async fn missing_entities(
    state: &AppState,
    caller: Caller,
    refs: &[EntityRef],
) -> Result<HashSet<EntityRef>, ApiError> {
    let of = |k| -> Vec<i64> { refs.iter().filter(|r| r.kind == k).map(|r| r.id).collect() };
    let deals = of(activities_api::EntityKind::Deal);
    let visible: HashSet<i64> = if deals.is_empty() {
        HashSet::new()
    } else {
        state
            .modules
            .deals
            .visible_deals(
                caller,
                deals.iter().copied().map(deals_api::DealId).collect(),
            )
            .await?
            .into_iter()
            .map(|d| d.0)
            .collect()
    };
    let (mc, mco) = super::leads::missing_links(
        state,
        caller,
        &of(activities_api::EntityKind::Contact),
        &of(activities_api::EntityKind::Company),
    )
    .await?;
    Ok(refs
        .iter()
        .copied()
        .filter(|r| match r.kind {
            activities_api::EntityKind::Deal => !visible.contains(&r.id),
            activities_api::EntityKind::Contact => mc.contains(&r.id),
            activities_api::EntityKind::Company => mco.contains(&r.id),
        })
        .collect())
}

pub async fn create(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let types: HashSet<i64> = state
        .modules
        .activities
        .task_types(caller)
        .await?
        .into_iter()
        .map(|t| t.id.0)
        .collect();
    let users = super::users::all_user_ids(&state, caller).await?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let text = item.str("text").unwrap_or_default();
        if text.trim().is_empty() {
            item.fail("text", "Required", "a task needs a text");
        }
        let due = item.int("complete_till");
        if due.is_none() && !item.errors.iter().any(|e| e.field == "complete_till") {
            item.fail("complete_till", "Required", "complete_till: unix seconds");
        }
        if due.is_some_and(|s| !super::params::valid_time(s)) {
            item.fail(
                "complete_till",
                "InvalidValue",
                "unix seconds between the years 1 and 9999",
            );
        }
        let type_id = item
            .int("task_type_id")
            .or(item.int("task_type"))
            .unwrap_or(1);
        if !types.contains(&type_id) {
            item.fail("task_type_id", "NotFound", "No such task type");
        }
        let responsible = item.int("responsible_user_id");
        if responsible.is_some_and(|u| !users.contains(&u)) {
            item.fail("responsible_user_id", "NotFound", "No such user");
        }
        item.int("duration");
        let entity_id = item.int("entity_id");
        let entity_type = item.str("entity_type");
        let entity = match (entity_type.as_deref().map(EntityPath::parse), entity_id) {
            (Some(Ok(e)), Some(id)) => Some(EntityRef { kind: e.kind(), id }),
            (Some(Err(_)), _) => {
                item.fail(
                    "entity_type",
                    "NotSupportedChoice",
                    "leads, contacts or companies",
                );
                None
            }
            (None, Some(_)) => {
                item.fail("entity_type", "Required", "entity_id needs entity_type");
                None
            }
            (Some(Ok(_)), None) => {
                item.fail("entity_id", "Required", "entity_type needs entity_id");
                None
            }
            (None, None) => None,
        };
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: item.errors,
            });
            continue;
        }
        let due_at = due
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .unwrap_or_default();
        plans.push((
            request_id,
            NewTask {
                entity,
                task_type_id: TaskTypeId(type_id),
                text: text.trim().to_string(),
                due_at,
                whole_day: false,
                responsible_user_id: responsible.map(UserId),
            },
        ));
    }
    let refs: Vec<EntityRef> = plans.iter().filter_map(|(_, t)| t.entity).collect();
    let missing = missing_entities(&state, caller, &refs).await?;
    for (request_id, t) in &plans {
        if t.entity.is_some_and(|e| missing.contains(&e)) {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: vec![FieldError {
                    field: "entity_id".into(),
                    code: "NotFound".into(),
                    message: "No such record".into(),
                }],
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, new) in plans {
        let t = state.modules.activities.create_task(caller, new).await?;
        out.push(json!({
            "id": t.id.0,
            "request_id": request_id,
            "_links": links(&req, &format!("tasks/{}", t.id.0)),
        }));
    }
    Ok(hal(
        &json!({"_links": links(&req, "tasks"), "_embedded": {"tasks": out}}),
    ))
}

/// One task change: its text, type, due time or responsible user, and completing (with a
/// result) or reopening. Moving a task to another record is refused with a clear error rather
/// than ignored.
struct TaskChange {
    id: TaskId,
    patch: TaskPatch,
    complete: Option<bool>,
    result: String,
}

/// What a batch of changes is checked against: the account's task types and users.
struct Known {
    types: HashSet<i64>,
    users: HashSet<i64>,
}

async fn known(state: &AppState, caller: Caller) -> Result<Known, ApiError> {
    let types = state
        .modules
        .activities
        .task_types(caller)
        .await?
        .into_iter()
        .map(|t| t.id.0)
        .collect();
    let users = super::users::all_user_ids(state, caller).await?;
    Ok(Known { types, users })
}

fn read_change(item: &mut Item<'_>, id: Option<i64>, known: &Known) -> Option<TaskChange> {
    let id = id.or_else(|| item.int("id"));
    if id.is_none() && !item.errors.iter().any(|e| e.field == "id") {
        item.fail("id", "Required", "updates need the task's id");
    }
    let complete = item.bool("is_completed");
    let mut result = String::new();
    if let Some(r) = item.object("result") {
        item.nested(r, "result", |r| result = r.str("text").unwrap_or_default());
    }
    let mut patch = TaskPatch::default();
    if let Some(text) = item.str("text") {
        if text.trim().is_empty() {
            item.fail("text", "InvalidValue", "a task needs a text");
        }
        patch.text = Some(text);
    }
    if let Some(due) = item.int("complete_till") {
        match DateTime::from_timestamp(due, 0).filter(|_| super::params::valid_time(due)) {
            Some(t) => patch.due_at = Some(t),
            None => item.fail(
                "complete_till",
                "InvalidValue",
                "unix seconds between the years 1 and 9999",
            ),
        }
    }
    if let Some(t) = item.int("task_type_id").or(item.int("task_type")) {
        if known.types.contains(&t) {
            patch.task_type_id = Some(TaskTypeId(t));
        } else {
            item.fail("task_type_id", "NotFound", "No such task type");
        }
    }
    if let Some(u) = item.int("responsible_user_id") {
        if known.users.contains(&u) {
            patch.responsible_user_id = Some(UserId(u));
        } else {
            item.fail("responsible_user_id", "NotFound", "No such user");
        }
    }
    item.int("duration");
    for k in ["entity_id", "entity_type"] {
        if item.has(k) {
            item.fail(
                k,
                "NotSupported",
                "a task stays on its record: create a task on the other one instead",
            );
        }
    }
    Some(TaskChange {
        id: TaskId(id?),
        patch,
        complete,
        result,
    })
}

async fn apply(state: &AppState, caller: Caller, c: &TaskChange) -> Result<Task, ApiError> {
    let acts = &state.modules.activities;
    if c.patch != TaskPatch::default() {
        acts.update_task(caller, c.id, c.patch.clone()).await?;
    }
    Ok(match c.complete {
        Some(true) => acts.complete_task(caller, c.id, &c.result).await?,
        Some(false) => acts.reopen_task(caller, c.id).await?,
        None => acts.task(caller, c.id).await?,
    })
}

async fn check_tasks(
    state: &AppState,
    caller: Caller,
    changes: &[(String, TaskChange)],
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (request_id, c) in changes {
        match state.modules.activities.task(caller, c.id).await {
            Ok(_) => {}
            Err(e)
                if e.code == kernel::ErrorCode::NotFound
                    || e.code == kernel::ErrorCode::Forbidden =>
            {
                errors.push(ItemErrors {
                    request_id: request_id.clone(),
                    errors: vec![FieldError {
                        field: "id".into(),
                        code: "NotFound".into(),
                        message: "No such task".into(),
                    }],
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::batch(errors))
    }
}

fn read_changes(
    items: &[Map<String, Value>],
    id: Option<i64>,
    known: &Known,
) -> Result<Vec<(String, TaskChange)>, ApiError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let c = read_change(&mut item, id, known);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        if let Some(c) = c {
            out.push((request_id, c));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::batch(errors))
    }
}

pub async fn update_many(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let changes = read_changes(&items, None, &known(&state, caller).await?)?;
    check_tasks(&state, caller, &changes).await?;
    let mut out = Vec::new();
    for (request_id, c) in &changes {
        let t = apply(&state, caller, c).await?;
        out.push(json!({
            "id": t.id.0,
            "updated_at": ts(t.completed_at.unwrap_or(t.created_at)),
            "request_id": request_id,
            "_links": links(&req, &format!("tasks/{}", t.id.0)),
        }));
    }
    Ok(hal(
        &json!({"_links": links(&req, "tasks"), "_embedded": {"tasks": out}}),
    ))
}

pub async fn update_one(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let obj = body::object(&raw)?;
    let changes = read_changes(
        std::slice::from_ref(&obj),
        Some(*path),
        &known(&state, caller).await?,
    )?;
    if check_tasks(&state, caller, &changes).await.is_err() {
        return Err(ApiError(AppError::not_found("task")));
    }
    let (_, c) = changes
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("nothing to change"))?;
    let t = apply(&state, caller, &c).await?;
    Ok(hal(&json!({
        "id": t.id.0,
        "updated_at": ts(t.completed_at.unwrap_or(t.created_at)),
        "_links": links(&req, &format!("tasks/{}", t.id.0)),
    })))
}
