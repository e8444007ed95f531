//! The deal page: every field editable in place, the stage progress bar, links, stage history.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use askama::Template;
use contacts_api::Entity;
use deals_api::{
    Deal, DealId, DealPatch, FieldType, LossReason, LossReasonId, MoveTo, Pipeline, StageId,
    StageKind,
};
use kernel::fields;
use kernel::{AppError, Caller};
use serde_json::Value;

use super::{FieldView, Names, filter, parse_budget, split_tags};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

pub struct StageStep {
    pub id: i64,
    pub name: String,
    pub color: String,
    /// "done", "current" or "" (ahead).
    pub state: &'static str,
}

pub struct FieldInput {
    pub view: FieldView,
    /// The value as the input shows it.
    pub text: String,
    /// Chosen enum ids (select, multiselect).
    pub chosen: Vec<i64>,
    pub checked: bool,
    pub required_here: bool,
    /// The group's name on the first field of a group (the main list has no heading).
    pub heading: Option<String>,
}

pub struct VisitView {
    pub stage: String,
    pub entered: String,
    pub left: String,
    pub duration: String,
    pub by: String,
}

#[derive(Template)]
#[template(path = "deals/deal.html")]
struct DealTpl<'a> {
    ctx: &'a Ctx,
    deal: &'a Deal,
    pipeline: &'a Pipeline,
    steps: Vec<StageStep>,
    stage_name: String,
    closed: &'static str,
    loss_reason: String,
    budget: String,
    responsible: i64,
    users: Vec<super::UserOption>,
    tags: String,
    /// The linked contacts by name (the contacts module resolves the ids).
    people: Vec<(i64, String)>,
    /// The search of the Contacts panel: what was asked, and the contacts and companies found
    /// that are not linked yet.
    contact_q: String,
    found: Vec<Found>,
    /// The linked companies by name.
    firms: Vec<(i64, String)>,
    fields: Vec<FieldInput>,
    reasons: Vec<LossReason>,
    history: Vec<VisitView>,
    timeline: crate::web::pages::activities::TimelineView,
    /// Manual triggers of the deal's pipeline (id, name), for "Run a robot".
    robots: Vec<(i64, String)>,
    errors: FormErrors,
}

/// A contact or company found in the panel's search, not linked to the deal yet.
pub struct Found {
    /// "contact" or "company".
    pub entity: &'static str,
    pub id: i64,
    pub name: String,
    /// What matched besides the name (a phone, an e-mail).
    pub detail: String,
}

fn duration(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}

async fn render(
    ctx: &Ctx,
    state: &AppState,
    id: DealId,
    status: StatusCode,
    errors: FormErrors,
) -> PageResult {
    render_with(ctx, state, id, status, errors, "").await
}

/// The deal's page, with the contacts found for `contact_q` when it is not empty.
async fn render_with(
    ctx: &Ctx,
    state: &AppState,
    id: DealId,
    status: StatusCode,
    errors: FormErrors,
    contact_q: &str,
) -> PageResult {
    let caller = ctx.caller()?;
    let deals = &state.modules.deals;
    let deal = deals.deal(caller, id).await?;
    let pipeline = deals.pipeline(caller, deal.pipeline_id).await?;
    let defs = deals.custom_fields(caller).await?;
    let reasons = deals.loss_reasons(caller).await?;
    let history = deals.stage_history(caller, id).await?;
    let names = Names::load(state, ctx, caller).await?;
    let current = pipeline.stages.iter().find(|s| s.id == deal.stage_id);
    let current_sort = current.map(|s| s.sort).unwrap_or(0);
    let steps = pipeline
        .stages
        .iter()
        .filter(|s| !s.kind.is_closed())
        .map(|s| StageStep {
            id: s.id.0,
            name: s.name.clone(),
            color: s.color.clone(),
            state: if s.id == deal.stage_id {
                "current"
            } else if s.sort < current_sort {
                "done"
            } else {
                ""
            },
        })
        .collect();
    let stage_name = |sid: StageId| {
        pipeline
            .stages
            .iter()
            .find(|s| s.id == sid)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| sid.to_string())
    };
    let groups = deals.field_groups(caller).await?;
    let fields = grouped_inputs(&groups, &defs, |d| {
        field_input(
            d,
            &deal.custom_fields,
            current.is_some_and(|s| d.required_at(pipeline.id, s.id)),
        )
    });
    // Times in UTC (the user's time zone comes with the timeline of the activities issue).
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%d.%m.%Y %H:%M").to_string();
    let now = chrono::Utc::now();
    let history = history
        .iter()
        .map(|v| VisitView {
            stage: stage_name(v.stage_id),
            entered: at(v.entered_at),
            left: v.left_at.map(at).unwrap_or_default(),
            duration: duration((v.left_at.unwrap_or(now) - v.entered_at).num_seconds()),
            by: match v.entered_by.user_id() {
                Some(u) => names.user(u.0),
                None => ctx.t("deals.by_system").to_string(),
            },
        })
        .collect();
    let kind = current.map(|s| s.kind).unwrap_or(StageKind::Open);
    let people = state
        .modules
        .contacts
        .contacts_by_id(
            caller,
            deal.contact_ids
                .iter()
                .map(|c| contacts_api::ContactId(*c))
                .collect(),
        )
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.id.0, c.name))
        .collect();
    let found = if contact_q.is_empty() {
        Vec::new()
    } else {
        state
            .modules
            .contacts
            .search(caller, contact_q, 10)
            .await?
            .into_iter()
            .filter(|h| match h.entity {
                Entity::Contact => !deal.contact_ids.contains(&h.id),
                Entity::Company => !deal.company_ids.contains(&h.id),
            })
            .map(|h| Found {
                entity: h.entity.as_str(),
                id: h.id,
                name: h.name,
                detail: h.detail,
            })
            .collect()
    };
    let mut firms = Vec::with_capacity(deal.company_ids.len());
    for c in &deal.company_ids {
        // A company since deleted, or out of the user's sight, is left out.
        if let Ok(f) = state
            .modules
            .contacts
            .company(caller, contacts_api::CompanyId(*c))
            .await
        {
            firms.push((f.id.0, f.name));
        }
    }
    let stages: std::collections::HashMap<i64, String> = pipeline
        .stages
        .iter()
        .map(|s| (s.id.0, s.name.clone()))
        .collect();
    let timeline = crate::web::pages::activities::load_timeline(
        ctx,
        state,
        activities_api::EntityRef::deal(id.0),
        None,
        &stages,
    )
    .await?;
    let robots = crate::web::pages::automation::manual_triggers(state, caller, pipeline.id).await;
    html(
        status,
        &DealTpl {
            ctx,
            robots,
            stage_name: stage_name(deal.stage_id),
            closed: match kind {
                StageKind::Won => "won",
                StageKind::Lost => "lost",
                _ => "",
            },
            loss_reason: deal
                .loss_reason_id
                .and_then(|r| reasons.iter().find(|x| x.id == r))
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            budget: deal.price.to_string(),
            responsible: deal.responsible_user_id.0,
            users: names
                .user_list
                .iter()
                .map(|u| super::UserOption {
                    id: u.id,
                    name: u.name.clone(),
                })
                .collect(),
            tags: deal
                .tags
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            people,
            contact_q: contact_q.to_string(),
            found,
            firms,
            deal: &deal,
            pipeline: &pipeline,
            steps,
            fields,
            reasons,
            history,
            timeline,
            errors,
        },
    )
}

/// A custom field's input as a record's page shows it (deals, contacts, companies).
pub fn field_input<D: fields::FieldDef>(
    d: &D,
    values: &serde_json::Map<String, Value>,
    required_here: bool,
) -> FieldInput {
    let value = values.get(&d.field_id().to_string());
    let chosen: Vec<i64> = match value {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    };
    let text = match (d.field_type(), value) {
        // What <input type="datetime-local"> takes.
        (FieldType::DateTime, Some(Value::String(s))) => s.get(..16).unwrap_or(s).to_string(),
        (_, Some(v)) => fields::display(d.field_type(), d.field_enums(), v),
        (_, None) => String::new(),
    };
    FieldInput {
        view: FieldView::of(d),
        text,
        chosen,
        checked: value == Some(&Value::Bool(true)),
        required_here,
        heading: None,
    }
}

/// A record's field inputs in card order: the main list first, then each group's fields under
/// its name.
pub fn grouped_inputs<D: fields::FieldDef>(
    groups: &[fields::FieldGroup],
    defs: &[D],
    input: impl Fn(&D) -> FieldInput,
) -> Vec<FieldInput> {
    let mut out = Vec::new();
    for (group, members) in fields::by_group(groups, defs, |d| d.field_group()) {
        for (i, d) in members.into_iter().enumerate() {
            let mut f = input(d);
            if i == 0 {
                f.heading = group.map(|g| g.name.clone());
            }
            out.push(f);
        }
    }
    out
}

#[derive(serde::Deserialize)]
pub struct ShowQuery {
    /// A contact search from the Contacts panel.
    #[serde(default)]
    contact_q: String,
}

pub async fn show(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    query: web::Query<ShowQuery>,
) -> PageResult {
    render_with(
        &ctx,
        &state,
        DealId(*path),
        StatusCode::OK,
        FormErrors::none(),
        query.contact_q.trim(),
    )
    .await
}

#[derive(serde::Deserialize)]
pub struct LinkForm {
    /// "contact" or "company".
    entity: String,
    id: i64,
}

/// Links a contact or a company found in the panel to the deal (the first contact linked
/// becomes its main contact): only one of the account that the user can see.
pub async fn link(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<LinkForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let id = DealId(*path);
    let entity =
        Entity::parse(&form.entity).ok_or_else(|| AppError::not_found("contact or company"))?;
    let deal = state.modules.deals.deal(caller, id).await?;
    crate::web::pages::contacts::must_see(&state, caller, entity, form.id).await?;
    let add = |ids: &[i64]| {
        let mut ids = ids.to_vec();
        if !ids.contains(&form.id) {
            ids.push(form.id);
        }
        ids
    };
    let patch = match entity {
        Entity::Contact => DealPatch {
            contact_ids: Some(add(&deal.contact_ids)),
            main_contact_id: deal.main_contact_id.is_none().then_some(Some(form.id)),
            ..DealPatch::default()
        },
        Entity::Company => DealPatch {
            company_ids: Some(add(&deal.company_ids)),
            ..DealPatch::default()
        },
    };
    relink(&ctx, &state, id, patch).await
}

/// Unlinks a contact or a company from the deal (when the main contact goes, the next linked
/// one takes its place).
pub async fn unlink(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(i64, String, i64)>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (id, entity, target) = path.into_inner();
    let id = DealId(id);
    let entity = Entity::parse(&entity).ok_or_else(|| AppError::not_found("contact or company"))?;
    let deal = state.modules.deals.deal(caller, id).await?;
    let without =
        |ids: &[i64]| -> Vec<i64> { ids.iter().copied().filter(|c| *c != target).collect() };
    let patch = match entity {
        Entity::Contact => {
            let ids = without(&deal.contact_ids);
            DealPatch {
                main_contact_id: (deal.main_contact_id == Some(target))
                    .then(|| ids.first().copied()),
                contact_ids: Some(ids),
                ..DealPatch::default()
            }
        }
        Entity::Company => DealPatch {
            company_ids: Some(without(&deal.company_ids)),
            ..DealPatch::default()
        },
    };
    relink(&ctx, &state, id, patch).await
}

async fn relink(ctx: &Ctx, state: &AppState, id: DealId, patch: DealPatch) -> PageResult {
    match state
        .modules
        .deals
        .update_deal(ctx.caller()?, id, patch)
        .await
    {
        Ok(_) => see_other(&format!("/deals/{id}"), Some("deals.saved")),
        Err(e) if is_form_error(&e) => {
            render(ctx, state, id, form_status(&e), FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_ids(field: &str, s: &str) -> Result<Vec<i64>, AppError> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| AppError::validation(field, "invalid", "ids are positive numbers"))
        })
        .collect()
}

/// The custom-field values a deal form sends: every field of the account (a field left out,
/// such as an unticked checkbox, is cleared).
pub fn form_values<D: fields::FieldDef>(
    defs: &[D],
    pairs: &[(String, String)],
) -> serde_json::Map<String, Value> {
    let mut values = serde_json::Map::new();
    for d in defs {
        let key = format!("cf_{}", d.field_id());
        let given: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        let v = match d.field_type() {
            FieldType::Multiselect => Value::from(given),
            FieldType::Checkbox => Value::Bool(given.iter().any(|v| !v.is_empty())),
            _ => given
                .first()
                .map(|s| Value::from(*s))
                .unwrap_or(Value::Null),
        };
        values.insert(d.field_id().to_string(), v);
    }
    values
}

async fn save_patch(
    state: &AppState,
    caller: Caller,
    id: DealId,
    pairs: &[(String, String)],
) -> Result<Deal, AppError> {
    let deals = &state.modules.deals;
    let defs = deals.custom_fields(caller).await?;
    let get = |k: &str| filter::get(pairs, k);
    // The page links contacts and companies in its own panel; a form that sends the ids (as
    // the page did before) still sets them.
    let sent = |k: &str| pairs.iter().any(|(key, _)| key == k);
    let responsible = get("responsible_user_id").trim();
    let main = get("main_contact_id").trim();
    let patch = DealPatch {
        name: Some(get("name").to_string()),
        price: Some(parse_budget(get("price"))?),
        responsible_user_id: match responsible {
            "" => None,
            r => Some(kernel::UserId(r.parse().map_err(|_| {
                AppError::validation("responsible_user_id", "invalid", "choose a user")
            })?)),
        },
        tags: Some(split_tags(get("tags"))),
        custom_fields: Some(form_values(&defs, pairs)),
        contact_ids: match sent("contact_ids") {
            true => Some(parse_ids("contact_ids", get("contact_ids"))?),
            false => None,
        },
        main_contact_id: match sent("main_contact_id") {
            true => Some(match main {
                "" => None,
                m => parse_ids("main_contact_id", m)?.first().copied(),
            }),
            false => None,
        },
        company_ids: match sent("company_ids") {
            true => Some(parse_ids("company_ids", get("company_ids"))?),
            false => None,
        },
    };
    deals.update_deal(caller, id, patch).await
}

/// Saves the deal form (sent whole on every change by htmx, or by its button).
pub async fn save(
    req: HttpRequest,
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let id = DealId(*path);
    let htmx = req.headers().contains_key("hx-request");
    match save_patch(&state, caller, id, &form).await {
        Ok(_) if htmx => render(&ctx, &state, id, StatusCode::OK, FormErrors::none()).await,
        Ok(_) => see_other(&format!("/deals/{id}"), Some("deals.saved")),
        // htmx swaps only successful answers: the form comes back with its errors as 200.
        Err(e) if is_form_error(&e) => {
            let status = if htmx {
                StatusCode::OK
            } else {
                form_status(&e)
            };
            render(&ctx, &state, id, status, FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct StageForm {
    stage_id: i64,
    loss_reason_id: String,
}

/// A click on the progress bar, or "won" / "lost".
pub async fn set_stage(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<StageForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let id = DealId(*path);
    let loss_reason_id = form
        .loss_reason_id
        .trim()
        .parse::<i64>()
        .ok()
        .map(LossReasonId);
    let to = MoveTo {
        stage_id: StageId(form.stage_id),
        after: None,
        loss_reason_id,
    };
    match state.modules.deals.move_deal(caller, id, to).await {
        Ok(_) => see_other(&format!("/deals/{id}"), Some("deals.saved")),
        Err(e) if is_form_error(&e) => {
            render(
                &ctx,
                &state,
                id,
                form_status(&e),
                FormErrors::from_error(&e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let id = DealId(*path);
    let deal = state.modules.deals.deal(caller, id).await?;
    state.modules.deals.delete_deal(caller, id).await?;
    see_other(
        &format!("/deals/pipelines/{}", deal.pipeline_id),
        Some("deals.deleted"),
    )
}
