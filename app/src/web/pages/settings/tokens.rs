//! Settings → API tokens: create (shown once), list, revoke. Every user manages their own;
//! administrators see and can revoke the whole account's.

use accounts_api::{TokenId, TokenInfo};
use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

pub struct TokenView {
    pub info: TokenInfo,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "settings/tokens.html")]
struct TokensTpl<'a> {
    ctx: &'a Ctx,
    tokens: Vec<TokenView>,
    new_secret: Option<String>,
    errors: FormErrors,
    form_name: String,
    form_days: String,
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

async fn render(
    ctx: &Ctx,
    state: &AppState,
    status: StatusCode,
    new_secret: Option<String>,
    errors: FormErrors,
    form: &TokenForm,
) -> PageResult {
    let caller = ctx.caller()?;
    let now = Utc::now();
    let tokens = state
        .modules
        .accounts
        .list_tokens(caller)
        .await?
        .into_iter()
        .map(|info| TokenView {
            created: day(info.created_at),
            expires: day(info.expires_at),
            last_used: info
                .last_used_at
                .map(day)
                .unwrap_or_else(|| ctx.t("tokens.never").to_string()),
            state: if info.revoked_at.is_some() {
                "revoked"
            } else if info.is_usable(now) {
                "active"
            } else {
                "expired"
            },
            info,
        })
        .collect();
    let tpl = TokensTpl {
        ctx,
        tokens,
        new_secret,
        errors,
        form_name: form.name.clone(),
        form_days: if form.days.is_empty() {
            "365".into()
        } else {
            form.days.clone()
        },
    };
    html(status, &tpl)
}

pub async fn list(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render(
        &ctx,
        &state,
        StatusCode::OK,
        None,
        FormErrors::none(),
        &TokenForm::default(),
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    name: String,
    days: String,
}

pub async fn create(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let result = match form.days.trim().parse::<u32>() {
        Ok(days) => {
            state
                .modules
                .accounts
                .create_token(caller, &form.name, days)
                .await
        }
        Err(_) => Err(kernel::AppError::validation(
            "days",
            "out_of_range",
            "a whole number of days",
        )),
    };
    match result {
        // The secret is rendered in the response to this POST only: it is never stored or shown again.
        Ok(new) => {
            render(
                &ctx,
                &state,
                StatusCode::OK,
                Some(new.secret),
                FormErrors::none(),
                &TokenForm::default(),
            )
            .await
        }
        Err(e) if is_form_error(&e) => {
            render(
                &ctx,
                &state,
                form_status(&e),
                None,
                FormErrors::from_error(&e),
                &form,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    state
        .modules
        .accounts
        .revoke_token(ctx.caller()?, TokenId(*path))
        .await?;
    see_other("/settings/tokens", Some("tokens.revoked_msg"))
}
