//! Settings → Users: list, add, edit, deactivate, set a password. Administrators only.

use accounts_api::{
    GroupId, GroupInfo, Lang, NewUser, PasswordChange, Rights, RoleId, RoleInfo, TIME_ZONES,
    UserInfo, UserPatch,
};
use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppError, UserId};
use serde::Deserialize;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{
    FormErrors, Labeled, RightsRow, form_status, form_value, html, is_form_error, ok,
    rights_actions, rights_from_form, rights_levels, rights_rows, see_other,
};

pub struct UserRowView {
    pub user: UserInfo,
    pub group: String,
    pub role: String,
    pub is_me: bool,
}

#[derive(Template)]
#[template(path = "settings/users.html")]
struct UsersTpl<'a> {
    ctx: &'a Ctx,
    rows: Vec<UserRowView>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    after: Option<String>,
}

pub async fn list(ctx: Ctx, state: web::Data<AppState>, q: web::Query<ListQuery>) -> PageResult {
    let caller = ctx.require_admin()?;
    let accounts = &state.modules.accounts;
    let page = accounts
        .list_users(
            caller,
            PageRequest::new(q.after.clone().map(Cursor::from_string), Some(50)),
        )
        .await?;
    let groups = accounts.list_groups(caller).await?;
    let roles = accounts.list_roles(caller).await?;
    let me = ctx.user().map(|u| u.id);
    let rows = page
        .items
        .into_iter()
        .map(|user| UserRowView {
            group: user
                .group_id
                .and_then(|g| groups.iter().find(|x| x.id == g))
                .map(|g| g.name.clone())
                .unwrap_or_default(),
            role: user
                .role_id
                .and_then(|r| roles.iter().find(|x| x.id == r))
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            is_me: Some(user.id) == me,
            user,
        })
        .collect();
    ok(&UsersTpl {
        ctx: &ctx,
        rows,
        next: page.next.map(|c| c.as_str().to_string()),
    })
}

/// What the user form shows (a new user, an existing one, or what was just posted).
pub struct UserFormView {
    pub name: String,
    pub email: String,
    pub group_id: String,
    pub role_id: String,
    pub lang: String,
    pub time_zone: String,
    pub is_admin: bool,
    pub is_active: bool,
}

impl From<&UserInfo> for UserFormView {
    fn from(user: &UserInfo) -> Self {
        UserFormView {
            name: user.name.clone(),
            email: user.email.clone(),
            group_id: user.group_id.map(|g| g.to_string()).unwrap_or_default(),
            role_id: user.role_id.map(|r| r.to_string()).unwrap_or_default(),
            lang: user.lang.code().into(),
            time_zone: user.time_zone.clone(),
            is_admin: user.is_admin,
            is_active: user.is_active,
        }
    }
}

#[derive(Template)]
#[template(path = "settings/user_form.html")]
struct UserFormTpl<'a> {
    ctx: &'a Ctx,
    is_new: bool,
    action: String,
    form: UserFormView,
    errors: FormErrors,
    groups: Vec<GroupInfo>,
    roles: Vec<RoleInfo>,
    time_zones: &'static [&'static str],
    actions: Vec<Labeled>,
    levels: Vec<Labeled>,
    rights_rows: Vec<RightsRow>,
}

async fn render_form(
    ctx: &Ctx,
    state: &AppState,
    status: StatusCode,
    id: Option<UserId>,
    form: UserFormView,
    rights: &Rights,
    errors: FormErrors,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let groups = state.modules.accounts.list_groups(caller).await?;
    let roles = state.modules.accounts.list_roles(caller).await?;
    let tpl = UserFormTpl {
        ctx,
        is_new: id.is_none(),
        action: id
            .map(|i| format!("/settings/users/{i}"))
            .unwrap_or_else(|| "/settings/users".into()),
        form,
        errors,
        groups,
        roles,
        time_zones: TIME_ZONES,
        actions: rights_actions(),
        levels: rights_levels(),
        rights_rows: rights_rows(rights),
    };
    html(status, &tpl)
}

pub async fn new_form(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    ctx.require_admin()?;
    let form = UserFormView {
        name: String::new(),
        email: String::new(),
        group_id: String::new(),
        role_id: String::new(),
        lang: ctx.lang.code().into(),
        time_zone: ctx
            .user()
            .map(|u| u.time_zone.clone())
            .unwrap_or_else(|| "UTC".into()),
        is_admin: false,
        is_active: true,
    };
    render_form(
        &ctx,
        &state,
        StatusCode::OK,
        None,
        form,
        &Rights::member(),
        FormErrors::none(),
    )
    .await
}

fn view_from_pairs(pairs: &[(String, String)]) -> UserFormView {
    let v = |k: &str| form_value(pairs, k).unwrap_or_default().to_string();
    UserFormView {
        name: v("name"),
        email: v("email"),
        group_id: v("group_id"),
        role_id: v("role_id"),
        lang: v("lang"),
        time_zone: v("time_zone"),
        is_admin: form_value(pairs, "is_admin").is_some(),
        is_active: form_value(pairs, "is_active").is_some(),
    }
}

fn optional_id(pairs: &[(String, String)], key: &str) -> Result<Option<i64>, AppError> {
    match form_value(pairs, key).map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| AppError::validation(key, "invalid", "not a valid id")),
    }
}

fn lang_of(pairs: &[(String, String)]) -> Result<Lang, AppError> {
    Lang::parse(form_value(pairs, "lang").unwrap_or("en"))
        .ok_or_else(|| AppError::validation("lang", "invalid", "unknown language"))
}

pub async fn create(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let pairs = form.into_inner();
    let result = async {
        let rights = rights_from_form(&pairs, Rights::member())?;
        let new = NewUser {
            name: form_value(&pairs, "name").unwrap_or_default().into(),
            email: form_value(&pairs, "email").unwrap_or_default().into(),
            password: form_value(&pairs, "password").unwrap_or_default().into(),
            is_admin: form_value(&pairs, "is_admin").is_some(),
            lang: lang_of(&pairs)?,
            time_zone: form_value(&pairs, "time_zone").unwrap_or("UTC").into(),
            group_id: optional_id(&pairs, "group_id")?.map(GroupId),
            role_id: optional_id(&pairs, "role_id")?.map(RoleId),
        };
        let user = state.modules.accounts.create_user(caller, new).await?;
        if !user.is_admin && rights != Rights::member() {
            let patch = UserPatch {
                rights: Some(rights),
                ..UserPatch::default()
            };
            state
                .modules
                .accounts
                .update_user(caller, user.id, patch)
                .await?;
        }
        Ok::<_, AppError>(user)
    }
    .await;
    match result {
        Ok(_) => see_other("/settings/users", Some("users.created")),
        Err(e) if is_form_error(&e) => {
            let rights =
                rights_from_form(&pairs, Rights::member()).unwrap_or_else(|_| Rights::member());
            render_form(
                &ctx,
                &state,
                form_status(&e),
                None,
                view_from_pairs(&pairs),
                &rights,
                FormErrors::from_error(&e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn edit_form(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.require_admin()?;
    let user = state.modules.accounts.user(caller, UserId(*path)).await?;
    let form = UserFormView::from(&user);
    render_form(
        &ctx,
        &state,
        StatusCode::OK,
        Some(user.id),
        form,
        &user.rights,
        FormErrors::none(),
    )
    .await
}

pub async fn update(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let id = UserId(*path);
    // Unknown (or another account's) users are a 404 before anything else.
    let current = state.modules.accounts.user(caller, id).await?;
    let pairs = form.into_inner();
    let result = async {
        let rights = rights_from_form(&pairs, current.rights)?;
        let patch = UserPatch {
            name: form_value(&pairs, "name").map(str::to_string),
            email: form_value(&pairs, "email").map(str::to_string),
            is_admin: Some(form_value(&pairs, "is_admin").is_some()),
            is_active: Some(form_value(&pairs, "is_active").is_some()),
            lang: Some(lang_of(&pairs)?),
            time_zone: form_value(&pairs, "time_zone").map(str::to_string),
            group_id: Some(optional_id(&pairs, "group_id")?.map(GroupId)),
            role_id: Some(optional_id(&pairs, "role_id")?.map(RoleId)),
            rights: Some(rights),
        };
        state.modules.accounts.update_user(caller, id, patch).await
    }
    .await;
    match result {
        Ok(_) => see_other(&format!("/settings/users/{id}"), Some("users.saved")),
        Err(e) if is_form_error(&e) => {
            let rights = rights_from_form(&pairs, current.rights).unwrap_or(current.rights);
            let errors = FormErrors::from_error(&e);
            render_form(
                &ctx,
                &state,
                form_status(&e),
                Some(id),
                view_from_pairs(&pairs),
                &rights,
                errors,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    new: String,
}

pub async fn set_password(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<PasswordForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let id = UserId(*path);
    let change = PasswordChange {
        current: None,
        new: form.new.clone(),
    };
    match state
        .modules
        .accounts
        .change_password(caller, id, change)
        .await
    {
        Ok(()) => see_other(&format!("/settings/users/{id}"), Some("users.password_set")),
        Err(e) if is_form_error(&e) => {
            let user = state.modules.accounts.user(caller, id).await?;
            let form = UserFormView::from(&user);
            render_form(
                &ctx,
                &state,
                form_status(&e),
                Some(id),
                form,
                &user.rights,
                FormErrors::from_error(&e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
