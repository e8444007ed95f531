//! Users and roles: `GET /api/v4/users[/{id}]`, `GET /api/v4/roles`, with amoCRM's rights
//! letters (`A` all, `G` group, `M` own only, `D` denied).

use std::collections::HashSet;

use accounts_api::{
    Action, Entity, EntityRights, GroupId, Lang, Level, NewUser, Rights, RoleId, RoleInfo,
    UserInfo, UserPatch,
};
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::paging::PageRequest;
use kernel::{AppError, Caller, UserId};
use serde_json::{Value, json};

use super::body::{self, Item, MAX_BATCH};
use super::problem::ItemErrors;
use super::{
    ApiAuth, ApiError, Paging, hal, links, list_page, no_content, or_no_content, params, total_list,
};
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

fn role_json(req: &HttpRequest, r: &RoleInfo) -> Value {
    json!({
        "id": r.id.0,
        "name": r.name,
        "rights": rights_json(&r.rights),
        "_links": links(req, &format!("roles/{}", r.id.0)),
    })
}

pub async fn roles(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let roles = state.modules.accounts.list_roles(auth.caller()).await?;
    let items = roles.iter().map(|r| role_json(&req, r)).collect();
    Ok(total_list(&req, "roles", items))
}

pub async fn role(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let r = state
                .modules
                .accounts
                .role(auth.caller(), RoleId(*path))
                .await?;
            Ok(hal(&role_json(&req, &r)))
        }
        .await,
    )
}

fn level_of(letter: &str) -> Option<Level> {
    match letter {
        "A" => Some(Level::All),
        "G" => Some(Level::Group),
        "M" => Some(Level::Own),
        "D" => Some(Level::None),
        _ => None,
    }
}

/// amoCRM's `rights` object (`leads: {view: "A", add: "G", …}`, `is_admin`) applied over
/// `base`: what is not given stays. `L` (linked records) has no counterpart and is refused.
fn read_rights(item: &mut Item<'_>, base: Rights) -> Rights {
    let mut rights = base;
    let Some(obj) = item.object("rights") else {
        return rights;
    };
    item.nested(obj, "rights", |r| {
        if let Some(a) = r.bool("is_admin") {
            rights.is_admin = a;
        }
        for entity in Entity::ALL {
            let Some(actions) = r.object(entity.amocrm_key()) else {
                continue;
            };
            r.nested(actions, entity.amocrm_key(), |a| {
                for action in Action::ALL {
                    let Some(letter) = a.str(action.amocrm_key()) else {
                        continue;
                    };
                    match level_of(&letter) {
                        Some(l) => rights.entity_mut(entity).set(action, l),
                        None => a.fail(
                            action.amocrm_key(),
                            "NotSupportedChoice",
                            "A (all), G (group), M (own) or D (denied)",
                        ),
                    }
                }
            });
        }
    });
    rights
}

/// `POST /api/v4/users`: `[{"name", "email", "password", "lang", "rights"}]`, checked whole
/// first; each user then gets the rights given over a member's (or an admin's).
pub async fn create(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let name = item.str("name").unwrap_or_default();
        let email = item.str("email").unwrap_or_default();
        let password = item.str("password").unwrap_or_default();
        for (k, v) in [("name", &name), ("email", &email), ("password", &password)] {
            if v.trim().is_empty() {
                item.fail(k, "Required", format!("a user needs {k}"));
            }
        }
        let lang = match item.str("lang") {
            Some(l) => Lang::parse(&l).unwrap_or_else(|| {
                item.fail("lang", "NotSupportedChoice", "en or ru");
                Lang::En
            }),
            None => Lang::En,
        };
        let is_admin = obj
            .get("rights")
            .and_then(|r| r.get("is_admin"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let base = if is_admin {
            Rights::admin()
        } else {
            Rights::member()
        };
        let rights = read_rights(&mut item, base);
        let (group, role) = match obj.get("rights") {
            Some(r) => (
                r.get("group_id").and_then(Value::as_i64).filter(|g| *g > 0),
                r.get("role_id").and_then(Value::as_i64).filter(|g| *g > 0),
            ),
            None => (None, None),
        };
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        plans.push((
            request_id,
            NewUser {
                name: name.trim().to_string(),
                email: email.trim().to_string(),
                password,
                is_admin,
                lang,
                time_zone: "UTC".into(),
                group_id: group.map(GroupId),
                role_id: role.map(RoleId),
            },
            (rights != base).then_some(rights),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let accounts = &state.modules.accounts;
    let mut out = Vec::new();
    for (request_id, new, rights) in plans {
        let mut u = accounts.create_user(caller, new).await?;
        if rights.is_some() {
            u = accounts
                .update_user(
                    caller,
                    u.id,
                    UserPatch {
                        rights,
                        ..UserPatch::default()
                    },
                )
                .await?;
        }
        let mut v = user_json(&req, &u);
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    Ok(hal(&json!({
        "_total_items": out.len(),
        "_links": links(&req, "users"),
        "_embedded": { "users": out },
    })))
}

/// `POST /api/v4/roles`: `[{"name", "rights"}]` (rights over a member's).
pub async fn create_roles(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let name = item.str("name").unwrap_or_default();
        if name.trim().is_empty() || name.chars().count() > 255 {
            item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
        }
        let rights = read_rights(&mut item, Rights::member());
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        plans.push((request_id, name.trim().to_string(), rights));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, name, rights) in plans {
        let r = state
            .modules
            .accounts
            .create_role(caller, &name, rights)
            .await?;
        let mut v = role_json(&req, &r);
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    Ok(hal(&json!({
        "_total_items": out.len(),
        "_links": links(&req, "roles"),
        "_embedded": { "roles": out },
    })))
}

/// `PATCH /api/v4/roles/{id}`: a new name or rights (what is not given stays).
pub async fn update_role(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let current = state.modules.accounts.role(caller, RoleId(*path)).await?;
    let obj = body::object(&raw)?;
    let mut item = Item::new(&obj);
    let name = item.str("name").unwrap_or_else(|| current.name.clone());
    if name.trim().is_empty() || name.chars().count() > 255 {
        item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
    }
    let rights = read_rights(&mut item, current.rights);
    if !item.errors.is_empty() {
        return Err(ApiError(AppError::from_fields(item.errors)));
    }
    let r = state
        .modules
        .accounts
        .update_role(caller, current.id, name.trim(), rights)
        .await?;
    Ok(hal(&role_json(&req, &r)))
}

/// `DELETE /api/v4/roles/{id}`: 204.
pub async fn delete_role(
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    state
        .modules
        .accounts
        .delete_role(auth.caller(), RoleId(*path))
        .await?;
    Ok(no_content())
}
