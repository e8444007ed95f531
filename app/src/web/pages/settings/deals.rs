//! Settings → Pipelines (stages, loss reasons) and Settings → Deal fields. Administrators only.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use deals_api::{
    CustomField, FieldId, FieldType, LossReason, NewCustomField, NewPipeline, NewStage, Pipeline,
    PipelineId, RequiredAt, StageId, StageKind,
};
use kernel::AppError;
use serde::Deserialize;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::deals::filter;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

/// Colours offered for new stages, in turn.
const PALETTE: [&str; 8] = [
    "#99ccff", "#ffcc66", "#ff9999", "#ccff99", "#c1a3ff", "#98e2e2", "#ffb27f", "#d6d6d6",
];

#[derive(Template)]
#[template(path = "settings/pipelines.html")]
struct PipelinesTpl<'a> {
    ctx: &'a Ctx,
    pipelines: Vec<Pipeline>,
    reasons: Vec<LossReason>,
    errors: FormErrors,
}

async fn render_pipelines(
    ctx: &Ctx,
    state: &AppState,
    status: StatusCode,
    errors: FormErrors,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let deals = &state.modules.deals;
    html(
        status,
        &PipelinesTpl {
            ctx,
            pipelines: deals.pipelines(caller).await?,
            reasons: deals.loss_reasons(caller).await?,
            errors,
        },
    )
}

async fn after(
    ctx: &Ctx,
    state: &AppState,
    result: Result<(), AppError>,
    done: &str,
) -> PageResult {
    match result {
        Ok(()) => see_other("/settings/pipelines", Some(done)),
        Err(e) if is_form_error(&e) => {
            render_pipelines(ctx, state, form_status(&e), FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn pipelines(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render_pipelines(&ctx, &state, StatusCode::OK, FormErrors::none()).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PipelineForm {
    name: String,
    /// One stage per line.
    stages: String,
}

pub async fn create_pipeline(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<PipelineForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let stages = form
        .stages
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, name)| NewStage {
            name: name.to_string(),
            color: PALETTE[i % PALETTE.len()].to_string(),
        })
        .collect();
    let result = state
        .modules
        .deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: form.name.clone(),
                stages,
            },
        )
        .await
        .map(|_| ());
    after(&ctx, &state, result, "pipelines.created").await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StageForm {
    name: String,
    color: String,
}

pub async fn add_stage(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<StageForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .deals
        .add_stage(
            caller,
            PipelineId(*path),
            NewStage {
                name: form.name.clone(),
                color: form.color.clone(),
            },
        )
        .await
        .map(|_| ());
    after(&ctx, &state, result, "pipelines.saved").await
}

pub async fn update_stage(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: web::Form<StageForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .deals
        .update_stage(
            caller,
            PipelineId(path.0),
            StageId(path.1),
            NewStage {
                name: form.name.clone(),
                color: form.color.clone(),
            },
        )
        .await
        .map(|_| ());
    after(&ctx, &state, result, "pipelines.saved").await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ShiftForm {
    /// -1 (earlier) or 1 (later).
    by: i32,
}

pub async fn shift_stage(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: web::Form<ShiftForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let deals = &state.modules.deals;
    let result = async {
        let p = deals.pipeline(caller, PipelineId(path.0)).await?;
        let mut open: Vec<StageId> = p
            .stages
            .iter()
            .filter(|s| s.kind == StageKind::Open)
            .map(|s| s.id)
            .collect();
        let i = open
            .iter()
            .position(|s| s.0 == path.1)
            .ok_or_else(|| AppError::not_found("stage"))?;
        let j = i as i64 + i64::from(form.by.signum());
        if (0..open.len() as i64).contains(&j) {
            open.swap(i, j as usize);
            deals.reorder_stages(caller, p.id, open).await?;
        }
        Ok(())
    }
    .await;
    after(&ctx, &state, result, "pipelines.saved").await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeleteStageForm {
    move_to: i64,
}

pub async fn delete_stage(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: web::Form<DeleteStageForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .deals
        .delete_stage(
            caller,
            PipelineId(path.0),
            StageId(path.1),
            StageId(form.move_to),
        )
        .await;
    after(&ctx, &state, result, "pipelines.saved").await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NameForm {
    name: String,
}

pub async fn create_loss_reason(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<NameForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .deals
        .create_loss_reason(caller, &form.name)
        .await
        .map(|_| ());
    after(&ctx, &state, result, "pipelines.saved").await
}

// --- deal fields ---------------------------------------------------------------------------------

pub struct StageChoice {
    /// "pipeline:stage"
    pub value: String,
    pub label: String,
}

pub struct FieldRow {
    pub field: CustomField,
    pub kind_label: String,
    pub choices: String,
    pub required: Vec<String>,
}

impl FieldRow {
    pub fn requires(&self, value: &str) -> bool {
        self.required.iter().any(|r| r == value)
    }
}

#[derive(Template)]
#[template(path = "settings/fields.html")]
struct FieldsTpl<'a> {
    ctx: &'a Ctx,
    fields: Vec<FieldRow>,
    groups: Vec<kernel::fields::FieldGroup>,
    types: Vec<(&'static str, String)>,
    stages: Vec<StageChoice>,
    errors: FormErrors,
}

async fn render_fields(
    ctx: &Ctx,
    state: &AppState,
    status: StatusCode,
    errors: FormErrors,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let deals = &state.modules.deals;
    let type_label = |t: FieldType| ctx.t(&format!("fields.type.{}", t.as_str())).to_string();
    let stages = deals
        .pipelines(caller)
        .await?
        .iter()
        .flat_map(|p| {
            p.stages.iter().map(move |s| StageChoice {
                value: format!("{}:{}", p.id, s.id),
                label: format!("{}: {}", p.name, s.name),
            })
        })
        .collect();
    let fields = deals
        .custom_fields(caller)
        .await?
        .into_iter()
        .map(|f| FieldRow {
            kind_label: type_label(f.field_type),
            choices: f
                .enums
                .iter()
                .map(|e| e.value.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            required: f
                .required_statuses
                .iter()
                .map(|r| format!("{}:{}", r.pipeline_id, r.status_id))
                .collect(),
            field: f,
        })
        .collect();
    let groups = deals.field_groups(caller).await?;
    html(
        status,
        &FieldsTpl {
            ctx,
            fields,
            groups,
            types: FieldType::ALL
                .iter()
                .map(|t| (t.as_str(), type_label(*t)))
                .collect(),
            stages,
            errors,
        },
    )
}

pub async fn fields(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render_fields(&ctx, &state, StatusCode::OK, FormErrors::none()).await
}

/// A field definition from a form: name, field_type, choices (one per line), required
/// ("pipeline:stage", repeated).
fn definition(
    pairs: &[(String, String)],
    ty: Option<FieldType>,
) -> Result<NewCustomField, AppError> {
    let field_type = match ty {
        Some(t) => t,
        None => FieldType::parse(filter::get(pairs, "field_type"))
            .ok_or_else(|| AppError::validation("field_type", "required", "choose a type"))?,
    };
    let required_statuses = pairs
        .iter()
        .filter(|(k, _)| k == "required")
        .filter_map(|(_, v)| {
            let (p, s) = v.split_once(':')?;
            Some(RequiredAt {
                pipeline_id: PipelineId(p.parse().ok()?),
                status_id: StageId(s.parse().ok()?),
            })
        })
        .collect();
    Ok(NewCustomField {
        name: filter::get(pairs, "name").to_string(),
        field_type,
        enums: filter::get(pairs, "choices")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        required_statuses,
        group_id: form_group(pairs),
    })
}

/// The `group` of a field's form: a group's id, or empty for the main list.
pub fn form_group(pairs: &[(String, String)]) -> Option<i64> {
    filter::get(pairs, "group").trim().parse().ok()
}

/// A group's name and place from its form (`sort` may be left empty).
pub fn group_form(pairs: &[(String, String)]) -> Result<kernel::fields::NewFieldGroup, AppError> {
    let sort = filter::get(pairs, "sort").trim();
    let sort = if sort.is_empty() {
        None
    } else {
        Some(
            sort.parse()
                .map_err(|_| AppError::validation("sort", "not_a_number", "enter a number"))?,
        )
    };
    Ok(kernel::fields::NewFieldGroup {
        name: filter::get(pairs, "name").to_string(),
        sort,
    })
}

pub async fn create_group(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = async {
        let new = group_form(&form)?;
        state.modules.deals.create_field_group(caller, new).await?;
        Ok(())
    }
    .await;
    after_fields(&ctx, &state, result).await
}

pub async fn update_group(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = async {
        let new = group_form(&form)?;
        state
            .modules
            .deals
            .update_field_group(caller, *path, new)
            .await?;
        Ok(())
    }
    .await;
    after_fields(&ctx, &state, result).await
}

pub async fn delete_group(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state.modules.deals.delete_field_group(caller, *path).await;
    after_fields(&ctx, &state, result).await
}

async fn after_fields(ctx: &Ctx, state: &AppState, result: Result<(), AppError>) -> PageResult {
    match result {
        Ok(()) => see_other("/settings/fields", Some("fields.saved")),
        Err(e) if is_form_error(&e) => {
            render_fields(ctx, state, form_status(&e), FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create_field(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = async {
        let def = definition(&form, None)?;
        state.modules.deals.create_custom_field(caller, def).await?;
        Ok(())
    }
    .await;
    after_fields(&ctx, &state, result).await
}

pub async fn update_field(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let deals = &state.modules.deals;
    let result = async {
        let id = FieldId(*path);
        let existing = deals
            .custom_fields(caller)
            .await?
            .into_iter()
            .find(|f| f.id == id)
            .ok_or_else(|| AppError::not_found("field"))?;
        let def = definition(&form, Some(existing.field_type))?;
        deals.update_custom_field(caller, id, def).await?;
        Ok(())
    }
    .await;
    after_fields(&ctx, &state, result).await
}

pub async fn delete_field(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .deals
        .delete_custom_field(caller, FieldId(*path))
        .await;
    after_fields(&ctx, &state, result).await
}
