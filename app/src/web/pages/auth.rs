//! Sign-in, sign-up, sign-out and the language switch for visitors.

use accounts_api::{Lang, NewAccount, SessionMeta};
use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::http::header::{RETRY_AFTER, USER_AGENT};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use kernel::{AppError, ErrorCode};
use serde::Deserialize;

use super::{FormErrors, html, ok, see_other};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::session::{
    self, LANG_COOKIE, PRE_SESSION_COOKIE, SESSION_COOKIE, private_cookie, removal_cookie,
};

#[derive(Template)]
#[template(path = "auth/sign_in.html")]
struct SignInTpl<'a> {
    ctx: &'a Ctx,
    errors: FormErrors,
    email: &'a str,
    next: &'a str,
    allow_sign_up: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn sign_in_page(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<NextQuery>,
) -> PageResult {
    let next = session::safe_next(q.next.as_deref());
    if ctx.user().is_some() {
        return see_other(&next, None);
    }
    ok(&SignInTpl {
        ctx: &ctx,
        errors: FormErrors::none(),
        email: "",
        next: &next,
        allow_sign_up: state.config.auth.allow_sign_up,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

pub async fn sign_in(
    ctx: Ctx,
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SignInForm>,
) -> PageResult {
    let next = session::safe_next(form.next.as_deref());
    let ip = req.peer_addr().map(|a| a.ip());
    let show = |err: AppError| {
        let tpl = SignInTpl {
            ctx: &ctx,
            errors: FormErrors::from_error(&err),
            email: &form.email,
            next: &next,
            allow_sign_up: state.config.auth.allow_sign_up,
        };
        let mut res = html(
            StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED),
            &tpl,
        )?;
        if let Some(secs) = err.retry_after {
            res.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        Ok(res)
    };
    if let Err(wait) = state.sign_in_limits.check(&form.email, ip) {
        state
            .metrics
            .sign_in_rejected
            .with_label_values(&["rate_limited"])
            .inc();
        tracing::warn!(ip = ?ip, "sign-in rate limit reached");
        return show(AppError::rate_limited(wait));
    }
    let meta = SessionMeta {
        ip: ip.map(|i| i.to_string()),
        user_agent: req
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    match state
        .modules
        .accounts
        .sign_in(&form.email, &form.password, meta)
        .await
    {
        Ok(new) => Ok(signed_in_redirect(&state, new.token, &next)),
        Err(e) if e.code == ErrorCode::BadCredentials => {
            state
                .metrics
                .sign_in_rejected
                .with_label_values(&["bad_credentials"])
                .inc();
            show(e)
        }
        Err(e) => Err(e.into()),
    }
}

fn signed_in_redirect(state: &AppState, token: String, next: &str) -> HttpResponse {
    let secure = state.config.web.secure_cookies;
    let mut res = HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, next.to_string()))
        .finish();
    let _ = res.add_cookie(&private_cookie(
        &state.cookie_key,
        SESSION_COOKIE,
        token,
        secure,
        Some(14),
    ));
    let _ = res.add_cookie(&removal_cookie(PRE_SESSION_COOKIE));
    res
}

#[derive(Template)]
#[template(path = "auth/sign_up.html")]
struct SignUpTpl<'a> {
    ctx: &'a Ctx,
    errors: FormErrors,
    form: &'a SignUpForm,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignUpForm {
    company: String,
    name: String,
    email: String,
    password: String,
}

pub async fn sign_up_page(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    if !state.config.auth.allow_sign_up {
        return Err(AppError::not_found("page").into());
    }
    ok(&SignUpTpl {
        ctx: &ctx,
        errors: FormErrors::none(),
        form: &SignUpForm::default(),
    })
}

pub async fn sign_up(
    ctx: Ctx,
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SignUpForm>,
) -> PageResult {
    if !state.config.auth.allow_sign_up {
        return Err(AppError::not_found("page").into());
    }
    let new = NewAccount {
        name: form.company.clone(),
        subdomain: None,
        admin_name: form.name.clone(),
        admin_email: form.email.clone(),
        admin_password: form.password.clone(),
        lang: ctx.lang,
    };
    match state.modules.accounts.create_account(new).await {
        Ok((account, admin)) => {
            crate::onboarding::first_pipeline(&state, account.id, admin.id, ctx.lang).await?;
            let meta = SessionMeta {
                ip: req.peer_addr().map(|a| a.ip().to_string()),
                user_agent: None,
            };
            let session = state
                .modules
                .accounts
                .sign_in(&form.email, &form.password, meta)
                .await?;
            Ok(signed_in_redirect(&state, session.token, "/"))
        }
        Err(e) if super::is_form_error(&e) => html(
            super::form_status(&e),
            &SignUpTpl {
                ctx: &ctx,
                errors: FormErrors::from_error(&e),
                form: &form,
            },
        ),
        Err(e) => Err(e.into()),
    }
}

pub async fn sign_out(state: web::Data<AppState>, req: HttpRequest) -> PageResult {
    if let Some(token) = session::read_private(&req, &state.cookie_key, SESSION_COOKIE) {
        state.modules.accounts.sign_out(&token).await?;
    }
    let mut res = see_other("/sign-in", Some("auth.signed_out"))?;
    let _ = res.add_cookie(&removal_cookie(SESSION_COOKIE));
    Ok(res)
}

pub async fn set_lang(path: web::Path<String>, q: web::Query<NextQuery>) -> PageResult {
    let lang = Lang::parse(&path).ok_or_else(|| AppError::not_found("language"))?;
    let mut res = see_other(&session::safe_next(q.next.as_deref()), None)?;
    let cookie = Cookie::build(LANG_COOKIE, lang.code())
        .path("/")
        .max_age(actix_web::cookie::time::Duration::days(365))
        .finish();
    let _ = res.add_cookie(&cookie);
    Ok(res)
}
