//! Settings → Task types: follow-up, meeting and call for everyone, and the account's own.
//! Administrators only.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::deals::filter;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

#[derive(Template)]
#[template(path = "settings/task_types.html")]
struct TypesTpl<'a> {
    ctx: &'a Ctx,
    /// (name, built in)
    types: Vec<(String, bool)>,
    errors: FormErrors,
}

async fn render(ctx: &Ctx, state: &AppState, status: StatusCode, errors: FormErrors) -> PageResult {
    let caller = ctx.require_admin()?;
    let types = state
        .modules
        .activities
        .task_types(caller)
        .await?
        .into_iter()
        .map(|t| {
            if t.builtin {
                (
                    ctx.t(format!("tasks.type.{}", t.name).as_str()).to_string(),
                    true,
                )
            } else {
                (t.name, false)
            }
        })
        .collect();
    html(status, &TypesTpl { ctx, types, errors })
}

pub async fn list(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render(&ctx, &state, StatusCode::OK, FormErrors::none()).await
}

pub async fn create(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    match state
        .modules
        .activities
        .add_task_type(caller, filter::get(&form, "name"))
        .await
    {
        Ok(_) => see_other("/settings/task-types", Some("fields.saved")),
        Err(e) if is_form_error(&e) => {
            render(&ctx, &state, form_status(&e), FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}
