//! Settings → Contact fields: the custom fields of contacts and of companies. Administrators only.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use contacts_api::{CustomField, Entity, FieldType, NewCustomField};
use kernel::AppError;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::pages::deals::filter;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

pub struct Row {
    pub entity: &'static str,
    pub name: String,
    pub kind: String,
    pub choices: String,
}

#[derive(Template)]
#[template(path = "settings/contact_fields.html")]
struct FieldsTpl<'a> {
    ctx: &'a Ctx,
    rows: Vec<Row>,
    types: Vec<(&'static str, String)>,
    errors: FormErrors,
}

async fn render(ctx: &Ctx, state: &AppState, status: StatusCode, errors: FormErrors) -> PageResult {
    let caller = ctx.require_admin()?;
    let type_label = |t: FieldType| ctx.t(&format!("fields.type.{}", t.as_str())).to_string();
    let mut rows = Vec::new();
    for (entity, label) in [
        (Entity::Contact, "contacts.contact"),
        (Entity::Company, "contacts.company"),
    ] {
        let fields: Vec<CustomField> = state.modules.contacts.custom_fields(caller, entity).await?;
        rows.extend(fields.into_iter().map(|f| {
            Row {
                entity: label,
                kind: type_label(f.field_type),
                choices: f
                    .enums
                    .iter()
                    .map(|e| e.value.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                name: f.name,
            }
        }));
    }
    html(
        status,
        &FieldsTpl {
            ctx,
            rows,
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

pub async fn create(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = async {
        let entity = Entity::parse(filter::get(&form, "entity"))
            .ok_or_else(|| AppError::validation("entity", "required", "contacts or companies"))?;
        let field_type = FieldType::parse(filter::get(&form, "field_type"))
            .ok_or_else(|| AppError::validation("field_type", "required", "choose a type"))?;
        let new = NewCustomField {
            name: filter::get(&form, "name").to_string(),
            field_type,
            enums: filter::get(&form, "choices")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        };
        state
            .modules
            .contacts
            .create_custom_field(caller, entity, new)
            .await
    }
    .await;
    match result {
        Ok(_) => see_other("/settings/contact-fields", Some("fields.saved")),
        Err(e) if is_form_error(&e) => {
            render(&ctx, &state, form_status(&e), FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}
