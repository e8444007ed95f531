//! Deals as a table: filtered, sorted, keyset paged, with bulk actions on the ticked rows.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use askama::Template;
use deals_api::{BulkAction, DealId, ListSort, LossReason, LossReasonId, StageId};
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppError, UserId};

use super::{CardView, FilterBar, Names, filter, filter_bar, safe_back, split_tags};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{FormErrors, html, is_form_error, see_other};

const ROWS_PER_PAGE: u32 = 50;

pub struct RowView {
    pub card: CardView,
    pub stage: String,
    pub color: String,
    pub created: String,
}

pub struct StageOption {
    pub id: i64,
    pub label: String,
}

pub struct SortLink {
    pub key: &'static str,
    pub label: &'static str,
    pub href: String,
    pub mark: &'static str,
}

#[derive(Template)]
#[template(path = "deals/list.html")]
struct ListTpl<'a> {
    ctx: &'a Ctx,
    list_pipeline: Option<i64>,
    bar: FilterBar,
    rows: Vec<RowView>,
    next: Option<String>,
    sorts: Vec<SortLink>,
    stages: Vec<StageOption>,
    reasons: Vec<LossReason>,
    /// Manual triggers of the pipelines the caller sees (id, "pipeline: name").
    robots: Vec<(i64, String)>,
    here: String,
    keep: String,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "deals/_rows.html")]
struct RowsTpl<'a> {
    ctx: &'a Ctx,
    rows: Vec<RowView>,
    next: Option<String>,
    keep: String,
}

pub async fn list(
    req: HttpRequest,
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    render(
        &req,
        &ctx,
        &state,
        q.into_inner(),
        StatusCode::OK,
        FormErrors::none(),
    )
    .await
}

async fn render(
    req: &HttpRequest,
    ctx: &Ctx,
    state: &AppState,
    pairs: Vec<(String, String)>,
    status: StatusCode,
    mut errors: FormErrors,
) -> PageResult {
    let caller = ctx.caller()?;
    let deals = &state.modules.deals;
    let (mut f, ferr) = match filter::parse(&pairs) {
        Ok(f) => (f, None),
        Err(e) => (deals_api::DealFilter::default(), Some(e)),
    };
    if let Some(e) = ferr {
        errors = FormErrors::from_error(&e);
    }
    let pipeline = filter::get(&pairs, "pipeline").parse::<i64>().ok();
    f.pipeline_id = pipeline.map(deals_api::PipelineId);
    filter::with_source(state, caller, &pairs, &mut f).await?;
    let sort = ListSort::parse(filter::get(&pairs, "sort")).unwrap_or_default();
    // Newest and largest first unless asked otherwise; names A→Z.
    let desc = match filter::get(&pairs, "dir") {
        "asc" => false,
        "desc" => true,
        _ => sort != ListSort::Name,
    };
    let after = filter::get(&pairs, "after");
    let page = deals
        .list(
            caller,
            &f,
            sort,
            desc,
            PageRequest::new(
                (!after.is_empty()).then(|| Cursor::from_string(after.to_string())),
                Some(ROWS_PER_PAGE),
            ),
        )
        .await?;
    let mut names = Names::load(state, ctx, caller).await?;
    names.with_contacts(state, caller, page.items.iter()).await;
    let pipelines = deals.pipelines(caller).await?;
    let mut stage_names: HashMap<(i64, i64), (String, String)> = HashMap::new();
    let mut stages = Vec::new();
    for p in &pipelines {
        for s in &p.stages {
            stage_names.insert((p.id.0, s.id.0), (s.name.clone(), s.color.clone()));
            if pipeline.is_none_or(|id| id == p.id.0) {
                stages.push(StageOption {
                    id: s.id.0,
                    label: if pipeline.is_some() {
                        s.name.clone()
                    } else {
                        format!("{}: {}", p.name, s.name)
                    },
                });
            }
        }
    }
    // Closing stages are the same ids in every pipeline: offer them once.
    let mut seen = std::collections::HashSet::new();
    stages.retain(|s| seen.insert(s.id));
    let rows: Vec<RowView> = page
        .items
        .into_iter()
        .map(|d| {
            let (stage, color) = stage_names
                .get(&(d.pipeline_id.0, d.stage_id.0))
                .cloned()
                .unwrap_or_default();
            RowView {
                created: d.created_at.format("%Y-%m-%d").to_string(),
                stage,
                color,
                card: names.card(d),
            }
        })
        .collect();
    let next = page.next.map(|c| c.as_str().to_string());
    // The query without paging: kept by sort links, "more" and the bulk form's return.
    let base: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "after" && k != "sort" && k != "dir")
        .cloned()
        .collect();
    let base_q = serde_urlencoded::to_string(&base).unwrap_or_default();
    let keep = format!(
        "{base_q}{}sort={}&dir={}",
        if base_q.is_empty() { "" } else { "&" },
        sort.as_str(),
        if desc { "desc" } else { "asc" }
    );
    if req.headers().contains_key("hx-request") && !after.is_empty() {
        return html(
            status,
            &RowsTpl {
                ctx,
                rows,
                next,
                keep,
            },
        );
    }
    let sorts = [
        ("name", "deals.f.name"),
        ("price", "deals.f.price"),
        ("created_at", "deals.created_at"),
        ("updated_at", "deals.updated_at"),
    ]
    .into_iter()
    .map(|(key, label)| {
        let current = sort.as_str() == key;
        let dir = if current && desc {
            "asc"
        } else if current {
            "desc"
        } else if key == "name" {
            "asc"
        } else {
            "desc"
        };
        SortLink {
            key,
            label,
            href: format!(
                "/deals/list?{base_q}{}sort={key}&dir={dir}",
                if base_q.is_empty() { "" } else { "&" }
            ),
            mark: match (current, desc) {
                (true, true) => "↓",
                (true, false) => "↑",
                _ => "",
            },
        }
    })
    .collect();
    let bar = filter_bar(state, caller, &names, pairs).await?;
    let mut robots = Vec::new();
    for p in deals.pipelines(caller).await? {
        for (id, name) in crate::web::pages::automation::manual_triggers(state, caller, p.id).await
        {
            robots.push((id, format!("{}: {name}", p.name)));
        }
    }
    html(
        status,
        &ListTpl {
            ctx,
            list_pipeline: pipeline,
            bar,
            rows,
            next,
            sorts,
            stages,
            reasons: deals.loss_reasons(caller).await?,
            robots,
            here: format!("/deals/list?{keep}"),
            keep,
            errors,
        },
    )
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    filter::get(pairs, key).trim()
}

fn bulk_action(pairs: &[(String, String)]) -> Result<BulkAction, AppError> {
    let id = |key: &str| {
        value(pairs, key)
            .parse::<i64>()
            .map_err(|_| AppError::validation(key, "required", "choose one"))
    };
    Ok(match value(pairs, "action") {
        "move" => BulkAction::Move {
            stage_id: StageId(id("stage_id")?),
            loss_reason_id: value(pairs, "loss_reason_id")
                .parse::<i64>()
                .ok()
                .map(LossReasonId),
        },
        "responsible" => BulkAction::Responsible {
            user_id: UserId(id("user_id")?),
        },
        "add_tags" => BulkAction::AddTags {
            tags: split_tags(value(pairs, "tags")),
        },
        "remove_tags" => BulkAction::RemoveTags {
            tags: split_tags(value(pairs, "tags")),
        },
        "delete" => BulkAction::Delete,
        _ => {
            return Err(AppError::validation(
                "action",
                "required",
                "choose an action",
            ));
        }
    })
}

/// Applies the chosen action to the ticked deals, all in one transaction.
pub async fn bulk(
    req: HttpRequest,
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let back = safe_back(value(&form, "back"), "/deals/list");
    let result = async {
        let ids: Vec<DealId> = form
            .iter()
            .filter(|(k, _)| k == "id")
            .filter_map(|(_, v)| v.parse().ok().map(DealId))
            .collect();
        if value(&form, "action") == "robot" {
            let trigger = value(&form, "trigger")
                .parse::<i64>()
                .map_err(|_| AppError::validation("trigger", "required", "choose a robot"))?;
            return state
                .modules
                .automation
                .run_manual(caller, automation_api::TriggerId(trigger), ids)
                .await;
        }
        let action = bulk_action(&form)?;
        state.modules.deals.bulk(caller, ids, action).await
    }
    .await;
    match result {
        Ok(_) => see_other(&back, Some("deals.bulk_done")),
        Err(e) if is_form_error(&e) || e.code == kernel::ErrorCode::NotFound => {
            let pairs: Vec<(String, String)> = back
                .split_once('?')
                .map(|(_, q)| serde_urlencoded::from_str(q).unwrap_or_default())
                .unwrap_or_default();
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            render(
                &req,
                &ctx,
                &state,
                pairs,
                status,
                FormErrors::from_error(&e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
