//! Users and roles: `GET /api/v4/users[/{id}]`, `GET /api/v4/roles`, with amoCRM's rights
//! letters (`A` all, `G` group, `M` own only, `D` denied).

use std::collections::HashSet;

use accounts_api::{EntityRights, Level, Rights, UserInfo};
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::paging::PageRequest;
use kernel::{Caller, UserId};
use serde_json::{Value, json};

use super::{ApiAuth, ApiError, Paging, hal, links, list_page, or_no_content, params, total_list};
use crate::state::AppState;

/// Every user of the account (in pages of 250 under the hood).
pub async fn all_users(state: &AppState, caller: Caller) -> Result<Vec<UserInfo>, ApiError> {
    let mut out = Vec::new();
    let mut page = PageRequest::new(None, Some(250));
    loop {
        let p = state.modules.accounts.list_users(caller, page).await?;
        out.extend(p.items);
        match p.next {
            Some(next) => page = PageRequest::new(Some(next), Some(250)),
            None => return Ok(out),
        }
    }
}

pub async fn all_user_ids(state: &AppState, caller: Caller) -> kernel::AppResult<HashSet<i64>> {
    all_users(state, caller)
        .await
        .map(|u| u.into_iter().map(|u| u.id.0).collect())
        .map_err(|e| e.0)
}

fn letter(l: Level) -> &'static str {
    match l {
        Level::All => "A",
        Level::Group => "G",
        Level::Own => "M",
        Level::None => "D",
    }
}

fn entity_rights(r: &EntityRights) -> Value {
    json!({
        "view": letter(r.view),
        "edit": letter(r.edit),
        "add": letter(r.create),
        "delete": letter(r.delete),
        "export": letter(r.export),
    })
}

pub fn rights_json(r: &Rights) -> Value {
    json!({
        "leads": entity_rights(&r.deals),
        "contacts": entity_rights(&r.contacts),
        "companies": entity_rights(&r.companies),
        "tasks": { "edit": letter(r.tasks.edit), "delete": letter(r.tasks.delete) },
        "mail_access": false,
        "catalog_access": false,
        "status_rights": [],
        "is_admin": r.is_admin,
        "is_free": false,
    })
}

fn user_json(req: &HttpRequest, u: &UserInfo) -> Value {
    let mut rights = rights_json(&u.rights);
    rights["is_admin"] = json!(u.is_admin);
    rights["is_active"] = json!(u.is_active);
    rights["group_id"] = json!(u.group_id.map(|g| g.0));
    rights["role_id"] = json!(u.role_id.map(|r| r.0));
    json!({
        "id": u.id.0,
        "name": u.name,
        "email": u.email,
        "lang": u.lang.code(),
        "rights": rights,
        "_links": links(req, &format!("users/{}", u.id.0)),
    })
}

pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    p.finish()?;
    let users = all_users(&state, auth.caller()).await?;
    let (page, more) = paging.slice(users);
    let items = page.iter().map(|u| user_json(&req, u)).collect();
    Ok(list_page(&req, "users", items, paging, more))
}

pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let u = state
                .modules
                .accounts
                .user(auth.caller(), UserId(*path))
                .await?;
            Ok(hal(&user_json(&req, &u)))
        }
        .await,
    )
}

pub async fn roles(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let roles = state.modules.accounts.list_roles(auth.caller()).await?;
    let items = roles
        .iter()
        .map(|r| {
            json!({
                "id": r.id.0,
                "name": r.name,
                "rights": rights_json(&r.rights),
                "_links": links(&req, &format!("roles/{}", r.id.0)),
            })
        })
        .collect();
    Ok(total_list(&req, "roles", items))
}
