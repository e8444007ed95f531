//! Settings → Contact fields: the custom fields of contacts and of companies, and the groups
//! their cards show them under. Administrators only.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use contacts_api::{CustomField, Entity, FieldId, FieldType, NewCustomField};
use kernel::AppError;
use kernel::fields::FieldGroup;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::pages::deals::filter;
use crate::web::pages::settings::deals::{form_group, group_form};
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

pub struct Row {
    pub field: CustomField,
    pub kind: String,
    /// The choices, one per line.
    pub choices: String,
}

/// One entity type's part of the page.
pub struct Section {
    /// "contact" or "company" (the forms' `entity`).
    pub entity: &'static str,
    /// The heading's text key.
    pub label: &'static str,
    pub groups: Vec<FieldGroup>,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "settings/contact_fields.html")]
struct FieldsTpl<'a> {
    ctx: &'a Ctx,
    sections: Vec<Section>,
    types: Vec<(&'static str, String)>,
    errors: FormErrors,
}

async fn render(ctx: &Ctx, state: &AppState, status: StatusCode, errors: FormErrors) -> PageResult {
    let caller = ctx.require_admin()?;
    let contacts = &state.modules.contacts;
    let type_label = |t: FieldType| ctx.t(&format!("fields.type.{}", t.as_str())).to_string();
    let mut sections = Vec::new();
    for (entity, label) in [
        (Entity::Contact, "settings.contact_fields.contacts"),
        (Entity::Company, "settings.contact_fields.companies"),
    ] {
        let rows = contacts
            .custom_fields(caller, entity)
            .await?
            .into_iter()
            .map(|f| Row {
                kind: type_label(f.field_type),
                choices: f
                    .enums
                    .iter()
                    .map(|e| e.value.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
                field: f,
            })
            .collect();
        sections.push(Section {
            entity: entity.as_str(),
            label,
            groups: contacts.field_groups(caller, entity).await?,
            rows,
        });
    }
    html(
        status,
        &FieldsTpl {
            ctx,
            sections,
            types: FieldType::ALL
                .iter()
                .map(|t| (t.as_str(), type_label(*t)))
                .collect(),
            errors,
        },
    )
}

type PageResult = crate::web::error::PageResult;

pub async fn list(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render(&ctx, &state, StatusCode::OK, FormErrors::none()).await
}

async fn after(ctx: &Ctx, state: &AppState, result: Result<(), AppError>) -> PageResult {
    match result {
        Ok(()) => see_other("/settings/contact-fields", Some("fields.saved")),
        Err(e) if is_form_error(&e) => {
            render(ctx, state, form_status(&e), FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

fn entity_of(form: &[(String, String)]) -> Result<Entity, AppError> {
    Entity::parse(filter::get(form, "entity"))
        .ok_or_else(|| AppError::validation("entity", "required", "contacts or companies"))
}

fn choices(form: &[(String, String)]) -> Vec<String> {
    filter::get(form, "choices")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

pub async fn create(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = async {
        let entity = entity_of(&form)?;
        let field_type = FieldType::parse(filter::get(&form, "field_type"))
            .ok_or_else(|| AppError::validation("field_type", "required", "choose a type"))?;
        let new = NewCustomField {
            name: filter::get(&form, "name").to_string(),
            field_type,
            enums: choices(&form),
            group_id: form_group(&form),
        };
        state
            .modules
            .contacts
            .create_custom_field(caller, entity, new)
            .await?;
        Ok(())
    }
    .await;
    after(&ctx, &state, result).await
}

pub async fn update(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let contacts = &state.modules.contacts;
    let result = async {
        let id = FieldId(*path);
        let entity = entity_of(&form)?;
        let existing = contacts
            .custom_fields(caller, entity)
            .await?
            .into_iter()
            .find(|f| f.id == id)
            .ok_or_else(|| AppError::not_found("field"))?;
        let new = NewCustomField {
            name: filter::get(&form, "name").to_string(),
            field_type: existing.field_type,
            enums: choices(&form),
            group_id: form_group(&form),
        };
        contacts.update_custom_field(caller, id, new).await?;
        Ok(())
    }
    .await;
    after(&ctx, &state, result).await
}

pub async fn delete(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .contacts
        .delete_custom_field(caller, FieldId(*path))
        .await;
    after(&ctx, &state, result).await
}

pub async fn create_group(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = async {
        let entity = entity_of(&form)?;
        let new = group_form(&form)?;
        state
            .modules
            .contacts
            .create_field_group(caller, entity, new)
            .await?;
        Ok(())
    }
    .await;
    after(&ctx, &state, result).await
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
            .contacts
            .update_field_group(caller, *path, new)
            .await?;
        Ok(())
    }
    .await;
    after(&ctx, &state, result).await
}

pub async fn delete_group(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .contacts
        .delete_field_group(caller, *path)
        .await;
    after(&ctx, &state, result).await
}
