//! Settings → Roles and rights. Administrators only.

use accounts_api::{Rights, RoleId, RoleInfo};
use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use kernel::AppError;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{
    FormErrors, Labeled, RightsRow, form_status, form_value, html, is_form_error, ok,
    rights_actions, rights_from_form, rights_levels, rights_rows, see_other,
};

#[derive(Template)]
#[template(path = "settings/roles.html")]
struct RolesTpl<'a> {
    ctx: &'a Ctx,
    roles: Vec<RoleInfo>,
}

pub async fn list(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    let roles = state
        .modules
        .accounts
        .list_roles(ctx.require_admin()?)
        .await?;
    ok(&RolesTpl { ctx: &ctx, roles })
}

#[derive(Template)]
#[template(path = "settings/role_form.html")]
struct RoleFormTpl<'a> {
    ctx: &'a Ctx,
    action: String,
    name: &'a str,
    errors: FormErrors,
    actions: Vec<Labeled>,
    levels: Vec<Labeled>,
    rights_rows: Vec<RightsRow>,
}

fn form(
    ctx: &Ctx,
    status: StatusCode,
    id: Option<RoleId>,
    name: &str,
    rights: &Rights,
    errors: FormErrors,
) -> PageResult {
    let tpl = RoleFormTpl {
        ctx,
        action: id
            .map(|i| format!("/settings/roles/{i}"))
            .unwrap_or_else(|| "/settings/roles".into()),
        name,
        errors,
        actions: rights_actions(),
        levels: rights_levels(),
        rights_rows: rights_rows(rights),
    };
    html(status, &tpl)
}

pub async fn new_form(ctx: Ctx) -> PageResult {
    ctx.require_admin()?;
    form(
        &ctx,
        StatusCode::OK,
        None,
        "",
        &Rights::member(),
        FormErrors::none(),
    )
}

pub async fn edit_form(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let role = state
        .modules
        .accounts
        .role(ctx.require_admin()?, RoleId(*path))
        .await?;
    form(
        &ctx,
        StatusCode::OK,
        Some(role.id),
        &role.name,
        &role.rights,
        FormErrors::none(),
    )
}

async fn save(
    ctx: Ctx,
    state: web::Data<AppState>,
    id: Option<RoleId>,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let name = form_value(&pairs, "name").unwrap_or_default();
    let result: Result<_, AppError> = async {
        let rights = rights_from_form(&pairs, Rights::member())?;
        match id {
            None => {
                state
                    .modules
                    .accounts
                    .create_role(caller, name, rights)
                    .await
            }
            Some(id) => {
                state
                    .modules
                    .accounts
                    .update_role(caller, id, name, rights)
                    .await
            }
        }
    }
    .await;
    match result {
        Ok(_) => see_other(
            "/settings/roles",
            Some(if id.is_some() {
                "roles.saved"
            } else {
                "roles.created"
            }),
        ),
        Err(e) if is_form_error(&e) => {
            let rights =
                rights_from_form(&pairs, Rights::member()).unwrap_or_else(|_| Rights::member());
            form(
                &ctx,
                form_status(&e),
                id,
                name,
                &rights,
                FormErrors::from_error(&e),
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create(
    ctx: Ctx,
    state: web::Data<AppState>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save(ctx, state, None, f.into_inner()).await
}

pub async fn update(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save(ctx, state, Some(RoleId(*path)), f.into_inner()).await
}

pub async fn delete(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    state
        .modules
        .accounts
        .delete_role(ctx.require_admin()?, RoleId(*path))
        .await?;
    see_other("/settings/roles", Some("roles.deleted"))
}
