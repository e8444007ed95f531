//! Pipelines and their statuses (stages): `/api/v4/leads/pipelines[/{id}[/statuses[/{id}]]]`.
//! Never paged: lists carry `_total_items`.

use actix_web::{HttpRequest, HttpResponse, web};
use deals_api::{NewPipeline, NewStage, Pipeline, PipelineId, Stage, StageId, StageKind};
use kernel::AppError;
use serde_json::{Value, json};

use super::body::{self, Item, MAX_BATCH};
use super::problem::ItemErrors;
use super::{ApiAuth, ApiError, hal, links, no_content, or_no_content, total_list};
use crate::state::AppState;

/// amoCRM's status colours (`StatusModel::COLORS`), and the two of its docs' example.
pub const COLORS: [&str; 23] = [
    "#fffeb2", "#fffd7f", "#fff000", "#ffeab2", "#ffdc7f", "#ffce5a", "#ffdbdb", "#ffc8c8",
    "#ff8f92", "#d6eaff", "#c1e0ff", "#98cbff", "#ebffb1", "#deff81", "#87f2c0", "#f9deff",
    "#f3beff", "#ccc8f9", "#eb93ff", "#f2f3f4", "#e6e8ea", "#c1c1c1", "#99ccff",
];

fn status_json(req: &HttpRequest, account: i64, s: &Stage) -> Value {
    json!({
        "id": s.id.0,
        "name": s.name,
        "sort": s.sort,
        "is_editable": s.kind == StageKind::Open,
        "pipeline_id": s.pipeline_id.0,
        "color": s.color,
        "type": if s.kind == StageKind::Incoming { 1 } else { 0 },
        "account_id": account,
        "_links": links(req, &format!("leads/pipelines/{}/statuses/{}", s.pipeline_id.0, s.id.0)),
    })
}

pub fn pipeline_json(req: &HttpRequest, account: i64, p: &Pipeline) -> Value {
    let statuses: Vec<Value> = p
        .stages
        .iter()
        .map(|s| status_json(req, account, s))
        .collect();
    json!({
        "id": p.id.0,
        "name": p.name,
        "sort": p.sort,
        "is_main": p.is_main,
        "is_unsorted_on": true,
        "is_archive": false,
        "account_id": account,
        "_links": links(req, &format!("leads/pipelines/{}", p.id.0)),
        "_embedded": { "statuses": statuses },
    })
}

pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = auth.0.account_id.0;
    let pipelines = state.modules.deals.pipelines(auth.caller()).await?;
    let items = pipelines
        .iter()
        .map(|p| pipeline_json(&req, account, p))
        .collect();
    Ok(total_list(&req, "pipelines", items))
}

pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let p = state
                .modules
                .deals
                .pipeline(auth.caller(), PipelineId(*path))
                .await?;
            Ok(hal(&pipeline_json(&req, auth.0.account_id.0, &p)))
        }
        .await,
    )
}

/// A status as written: name and colour (a colour not in amoCRM's palette is refused).
fn read_status(item: &mut Item<'_>, required: bool) -> Option<NewStage> {
    let name = item.str("name");
    let color = item.str("color").map(|c| c.to_lowercase());
    item.int("sort");
    let name = match name {
        Some(n) if !n.trim().is_empty() && n.chars().count() <= 255 => n.trim().to_string(),
        Some(_) => {
            item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
            return None;
        }
        None if required => {
            item.fail("name", "Required", "a status needs a name");
            return None;
        }
        None => String::new(),
    };
    let color = match color {
        Some(c) if COLORS.contains(&c.as_str()) => c,
        Some(_) => {
            item.fail(
                "color",
                "NotSupportedChoice",
                "one of amoCRM's status colours",
            );
            return None;
        }
        None => "#99ccff".to_string(),
    };
    Some(NewStage { name, color })
}

/// `POST /api/v4/leads/pipelines`: pipelines with their open statuses (the incoming, won and
/// lost statuses are made by Voronka; statuses given with id 142/143 are skipped).
pub async fn create(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let items = body::batch(&raw, MAX_BATCH)?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let name = item.str("name").unwrap_or_default();
        if name.trim().is_empty() || name.chars().count() > 255 {
            item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
        }
        item.int("sort");
        for k in ["is_main", "is_unsorted_on", "is_archive"] {
            item.bool(k);
        }
        let mut stages = Vec::new();
        if let Some(emb) = item.object("_embedded") {
            item.nested(emb, "_embedded", |e| {
                if let Some(list) = e.array("statuses") {
                    for (j, s) in list.iter().enumerate() {
                        let Some(o) = s.as_object() else {
                            e.fail(
                                &format!("statuses.{j}"),
                                "InvalidType",
                                "This value should be of type object.",
                            );
                            continue;
                        };
                        if matches!(o.get("id").and_then(Value::as_i64), Some(142 | 143))
                            || o.get("type").and_then(Value::as_i64) == Some(1)
                        {
                            continue;
                        }
                        e.nested(o, &format!("statuses.{j}"), |s| {
                            if let Some(st) = read_status(s, true) {
                                stages.push(st);
                            }
                        });
                    }
                }
            });
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: item.errors,
            });
        }
        plans.push((
            request_id,
            NewPipeline {
                name: name.trim().to_string(),
                stages,
            },
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let account = auth.0.account_id.0;
    let mut out = Vec::new();
    for (request_id, new) in plans {
        let p = state
            .modules
            .deals
            .create_pipeline(auth.caller(), new)
            .await?;
        let mut v = pipeline_json(&req, account, &p);
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    Ok(hal(&json!({
        "_total_items": out.len(),
        "_links": links(&req, "leads/pipelines"),
        "_embedded": { "pipelines": out },
    })))
}

pub async fn statuses(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let p = state
        .modules
        .deals
        .pipeline(auth.caller(), PipelineId(*path))
        .await?;
    let account = auth.0.account_id.0;
    let items = p
        .stages
        .iter()
        .map(|s| status_json(&req, account, s))
        .collect();
    Ok(total_list(&req, "statuses", items))
}

pub async fn status(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (pid, sid) = path.into_inner();
    or_no_content(
        async {
            let p = state
                .modules
                .deals
                .pipeline(auth.caller(), PipelineId(pid))
                .await?;
            let s = p
                .stages
                .iter()
                .find(|s| s.id == StageId(sid))
                .ok_or_else(|| AppError::not_found("status"))?;
            Ok(hal(&status_json(&req, auth.0.account_id.0, s)))
        }
        .await,
    )
}

/// `POST …/statuses`: new open statuses, placed before the closing ones.
pub async fn add_statuses(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let pid = PipelineId(*path);
    let caller = auth.caller();
    state.modules.deals.pipeline(caller, pid).await?;
    let items = body::batch(&raw, deals_api::MAX_STAGES)?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let s = read_status(&mut item, true);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: item.errors,
            });
        }
        plans.push((request_id, s));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, s) in plans {
        let Some(s) = s else { continue };
        let st = state.modules.deals.add_stage(caller, pid, s).await?;
        let mut v = status_json(&req, auth.0.account_id.0, &st);
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    Ok(hal(&json!({
        "_total_items": out.len(),
        "_links": links(&req, &format!("leads/pipelines/{}/statuses", pid.0)),
        "_embedded": { "statuses": out },
    })))
}

/// `PATCH …/statuses/{id}`: a new name or colour.
pub async fn update_status(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (pid, sid) = path.into_inner();
    let caller = auth.caller();
    let p = state
        .modules
        .deals
        .pipeline(caller, PipelineId(pid))
        .await?;
    let current = p
        .stages
        .iter()
        .find(|s| s.id == StageId(sid))
        .ok_or_else(|| ApiError(AppError::not_found("status")))?;
    let obj = body::object(&raw)?;
    let mut item = Item::new(&obj);
    let s = read_status(&mut item, false);
    if !item.errors.is_empty() {
        return Err(ApiError(AppError::from_fields(item.errors)));
    }
    let mut s = s.unwrap_or(NewStage {
        name: String::new(),
        color: String::new(),
    });
    if s.name.is_empty() {
        s.name = current.name.clone();
    }
    if !obj.contains_key("color") {
        s.color = current.color.clone();
    }
    let st = state
        .modules
        .deals
        .update_stage(caller, PipelineId(pid), StageId(sid), s)
        .await?;
    Ok(hal(&status_json(&req, auth.0.account_id.0, &st)))
}

/// `DELETE …/statuses/{id}`: its leads move to the status before it; 204.
pub async fn delete_status(
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (pid, sid) = path.into_inner();
    let caller = auth.caller();
    let p = state
        .modules
        .deals
        .pipeline(caller, PipelineId(pid))
        .await?;
    let open: Vec<&Stage> = p
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .collect();
    let Some(pos) = open.iter().position(|s| s.id == StageId(sid)) else {
        return Err(ApiError(AppError::not_found("status")));
    };
    let move_to = if pos > 0 {
        open.get(pos - 1)
    } else {
        open.get(1)
    }
    .map(|s| s.id)
    .ok_or_else(|| {
        ApiError(AppError::validation(
            "status_id",
            "InvalidValue",
            "a pipeline keeps at least one open status",
        ))
    })?;
    state
        .modules
        .deals
        .delete_stage(caller, PipelineId(pid), StageId(sid), move_to)
        .await?;
    Ok(no_content())
}

/// `PATCH /api/v4/leads/pipelines/{id}`: `name`, `sort`, `is_main` (`is_unsorted_on` and
/// `is_archive` are read and must keep their only values).
pub async fn update(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let obj = body::object(&raw)?;
    let mut item = Item::new(&obj);
    let mut patch = deals_api::PipelinePatch::default();
    if let Some(n) = item.str("name") {
        if n.trim().is_empty() || n.chars().count() > 255 {
            item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
        }
        patch.name = Some(n.trim().to_string());
    }
    if let Some(s) = item.int("sort") {
        match i32::try_from(s) {
            Ok(s) if s >= 0 => patch.sort = Some(s),
            _ => item.fail("sort", "InvalidValue", "a sort key from 0 to 1,000,000"),
        }
    }
    patch.is_main = item.bool("is_main");
    if item.bool("is_unsorted_on") == Some(false) {
        item.fail(
            "is_unsorted_on",
            "NotSupported",
            "every Voronka pipeline has its incoming leads stage",
        );
    }
    if item.bool("is_archive") == Some(true) {
        item.fail("is_archive", "NotSupported", "pipelines are not archived");
    }
    if !item.errors.is_empty() {
        return Err(ApiError(AppError::from_fields(item.errors)));
    }
    let p = state
        .modules
        .deals
        .update_pipeline(auth.caller(), PipelineId(*path), patch)
        .await?;
    Ok(hal(&pipeline_json(&req, auth.0.account_id.0, &p)))
}

/// `DELETE /api/v4/leads/pipelines/{id}`: 204. Refused for the main pipeline, for one holding
/// leads, and for one a messaging channel brings its incoming leads to.
pub async fn delete(
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let id = PipelineId(*path);
    state.modules.deals.pipeline(caller, id).await?;
    if let Some(c) = state
        .modules
        .messaging
        .channels(caller)
        .await?
        .into_iter()
        .find(|c| c.pipeline_id == id.0)
    {
        return Err(ApiError(AppError::validation(
            "pipeline_id",
            "in_use",
            &format!(
                "the channel \"{}\" brings its incoming leads to this pipeline: point it at another one first",
                c.name
            ),
        )));
    }
    state.modules.deals.delete_pipeline(caller, id).await?;
    Ok(no_content())
}
