//! Settings → My profile: name, interface language, time zone, password.

use accounts_api::{Lang, PasswordChange, TIME_ZONES, UserPatch};
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
#[template(path = "settings/profile.html")]
struct ProfileTpl<'a> {
    ctx: &'a Ctx,
    name: &'a str,
    lang: &'a str,
    time_zone: &'a str,
    time_zones: &'static [&'static str],
    errors: FormErrors,
}

fn render(ctx: &Ctx, status: StatusCode, form: &ProfileForm, errors: FormErrors) -> PageResult {
    html(
        status,
        &ProfileTpl {
            ctx,
            name: &form.name,
            lang: &form.lang,
            time_zone: &form.time_zone,
            time_zones: TIME_ZONES,
            errors,
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ProfileForm {
    name: String,
    lang: String,
    time_zone: String,
}

impl ProfileForm {
    /// The signed-in user's profile as it is now.
    fn of(ctx: &Ctx) -> ProfileForm {
        ctx.user()
            .map(|u| ProfileForm {
                name: u.name.clone(),
                lang: u.lang.code().into(),
                time_zone: u.time_zone.clone(),
            })
            .unwrap_or_default()
    }
}

pub async fn show(ctx: Ctx) -> PageResult {
    ctx.caller()?;
    let form = ProfileForm::of(&ctx);
    render(&ctx, StatusCode::OK, &form, FormErrors::none())
}

pub async fn save(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<ProfileForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let me = ctx.user_id()?;
    let result = async {
        let lang = Lang::parse(&form.lang)
            .ok_or_else(|| AppError::validation("lang", "invalid", "unknown language"))?;
        let patch = UserPatch {
            name: Some(form.name.clone()),
            lang: Some(lang),
            time_zone: Some(form.time_zone.clone()),
            ..UserPatch::default()
        };
        state.modules.accounts.update_user(caller, me, patch).await
    }
    .await;
    match result {
        Ok(_) => see_other("/settings/profile", Some("profile.saved")),
        Err(e) if is_form_error(&e) => {
            render(&ctx, form_status(&e), &form, FormErrors::from_error(&e))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    current: String,
    new: String,
}

pub async fn change_password(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<PasswordForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let me = ctx.user_id()?;
    let change = PasswordChange {
        current: Some(form.current.clone()),
        new: form.new.clone(),
    };
    match state
        .modules
        .accounts
        .change_password(caller, me, change)
        .await
    {
        Ok(()) => see_other("/settings/profile", Some("users.password_set")),
        Err(e) if is_form_error(&e) => {
            let current = ProfileForm::of(&ctx);
            render(&ctx, form_status(&e), &current, FormErrors::from_error(&e))
        }
        Err(e) => Err(e.into()),
    }
}
