//! Settings → Groups. Administrators only.

use accounts_api::{GroupId, GroupInfo};
use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use kernel::AppError;
use serde::Deserialize;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

#[derive(Template)]
#[template(path = "settings/groups.html")]
struct GroupsTpl<'a> {
    ctx: &'a Ctx,
    groups: Vec<GroupInfo>,
    errors: FormErrors,
}

async fn render(ctx: &Ctx, state: &AppState, status: StatusCode, errors: FormErrors) -> PageResult {
    let groups = state
        .modules
        .accounts
        .list_groups(ctx.require_admin()?)
        .await?;
    html(
        status,
        &GroupsTpl {
            ctx,
            groups,
            errors,
        },
    )
}

pub async fn list(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render(&ctx, &state, StatusCode::OK, FormErrors::none()).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NameForm {
    name: String,
}

async fn after(
    ctx: &Ctx,
    state: &AppState,
    result: Result<(), AppError>,
    done: &str,
) -> PageResult {
    match result {
        Ok(()) => see_other("/settings/groups", Some(done)),
        Err(e) if is_form_error(&e) => {
            render(ctx, state, form_status(&e), FormErrors::from_error(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create(ctx: Ctx, state: web::Data<AppState>, form: web::Form<NameForm>) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .accounts
        .create_group(caller, &form.name)
        .await
        .map(|_| ());
    after(&ctx, &state, result, "groups.created").await
}

pub async fn rename(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<NameForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let result = state
        .modules
        .accounts
        .rename_group(caller, GroupId(*path), &form.name)
        .await
        .map(|_| ());
    after(&ctx, &state, result, "groups.renamed").await
}

pub async fn delete(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.require_admin()?;
    state
        .modules
        .accounts
        .delete_group(caller, GroupId(*path))
        .await?;
    see_other("/settings/groups", Some("groups.deleted"))
}
