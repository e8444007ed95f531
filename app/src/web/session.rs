//! The session middleware: who is signed in, which language, CSRF checks on every form post, and
//! error pages rendered in the user's language.

use accounts_api::{Lang, SessionInfo};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, FromRequest, HttpMessage, HttpResponse};
use kernel::{AppError, ErrorCode};

use super::ctx::Ctx;
use super::i18n;
use super::pages::error_page;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "voronka_session";
/// Holds the CSRF token of a visitor who is not signed in yet (sign-in and sign-up forms).
pub const PRE_SESSION_COOKIE: &str = "voronka_csrf";
pub const LANG_COOKIE: &str = "voronka_lang";
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
const MAX_FORM_BYTES: usize = 256 * 1024;

/// Paths served without a session: assets, probes, metrics, the token-authenticated API and the
/// signed service calls.
fn sessionless(path: &str) -> bool {
    path.starts_with("/static/")
        || path.starts_with("/api/")
        || path.starts_with("/oauth2/")
        || path.starts_with("/hooks/")
        || path.starts_with("/svc/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics" | "/favicon.ico")
}

pub fn read_private(req: &actix_web::HttpRequest, key: &Key, name: &str) -> Option<String> {
    let cookie = req.cookie(name)?;
    let mut jar = CookieJar::new();
    jar.add_original(cookie);
    jar.private(key).get(name).map(|c| c.value().to_string())
}

/// An encrypted, authenticated, HttpOnly cookie.
pub fn private_cookie(
    key: &Key,
    name: &'static str,
    value: String,
    secure: bool,
    max_age_days: Option<i64>,
) -> Cookie<'static> {
    let mut cookie = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure);
    if let Some(days) = max_age_days {
        cookie = cookie.max_age(actix_web::cookie::time::Duration::days(days));
    }
    let mut jar = CookieJar::new();
    jar.private_mut(key).add(cookie.finish());
    jar.get(name)
        .cloned()
        .unwrap_or_else(|| Cookie::new(name, ""))
}

pub fn removal_cookie(name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path("/").finish();
    c.make_removal();
    c
}

fn same(a: &str, b: &str) -> bool {
    // Constant time for equal lengths: a token guessed byte by byte learns nothing from timing.
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn is_form(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The CSRF token a request carries: the `X-CSRF-Token` header (htmx), else the form's `csrf`
/// field. The body is read and put back for the handler.
async fn provided_csrf(req: &mut ServiceRequest) -> Result<Option<String>, AppError> {
    if let Some(v) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return Ok(Some(v.to_string()));
    }
    if !is_form(req) {
        return Ok(None);
    }
    let mut payload = req.take_payload();
    let body = actix_web::web::Bytes::from_request(req.request(), &mut payload)
        .await
        .map_err(|_| AppError::new(ErrorCode::PayloadTooLarge, "the form is too large"))?;
    if body.len() > MAX_FORM_BYTES {
        return Err(AppError::new(
            ErrorCode::PayloadTooLarge,
            "the form is too large",
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token = pairs
        .into_iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v);
    req.set_payload(Payload::from(body));
    Ok(token)
}

pub async fn session_layer(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let path = req.path().to_string();
    if sessionless(&path) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<Data<AppState>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError(
            "application state missing",
        ));
    };
    let key = &state.cookie_key;
    let secure = state.config.web.secure_cookies;
    let chosen_lang = req.cookie(LANG_COOKIE).map(|c| c.value().to_string());
    let browser_lang = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let mut session: Option<SessionInfo> = None;
    let mut stale_session = false;
    if let Some(token) = read_private(req.request(), key, SESSION_COOKIE) {
        match state.modules.accounts.session(&token).await {
            Ok(Some(s)) => session = Some(s),
            Ok(None) => stale_session = true,
            Err(e) => {
                let lang = i18n::negotiate(chosen_lang.as_deref(), browser_lang.as_deref());
                let ctx = Ctx::anonymous(lang, &path);
                return Ok(req.into_response(error_page(&ctx, &e)));
            }
        }
    }
    let lang = match &session {
        Some(s) => s.user.lang,
        None => i18n::negotiate(chosen_lang.as_deref(), browser_lang.as_deref()),
    };
    let (csrf, new_pre_session) = match &session {
        Some(s) => (s.csrf_token.clone(), None),
        None => match read_private(req.request(), key, PRE_SESSION_COOKIE) {
            Some(t) => (t, None),
            None => {
                let t = crate::web::random_token();
                (t.clone(), Some(t))
            }
        },
    };
    let notice = notice_of(req.query_string());
    let ctx = Ctx {
        lang,
        session,
        csrf: csrf.clone(),
        path: path.clone(),
        notice,
    };

    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        let verdict = match provided_csrf(&mut req).await {
            Ok(Some(given)) if new_pre_session.is_none() && same(&given, &csrf) => Ok(()),
            Ok(_) => Err(AppError::new(
                ErrorCode::CsrfRejected,
                "missing or wrong CSRF token",
            )),
            Err(e) => Err(e),
        };
        if let Err(e) = verdict {
            tracing::warn!(path = %path, code = %e.code, "form rejected before reaching its handler");
            let mut res = error_page(&ctx, &e);
            if let Some(t) = new_pre_session {
                let _ = res.add_cookie(&private_cookie(key, PRE_SESSION_COOKIE, t, secure, None));
            }
            return Ok(req.into_response(res));
        }
    }

    req.extensions_mut().insert(ctx.clone());
    let mut res = next.call(req).await?.map_into_boxed_body();

    let error = res.response().extensions().get::<AppError>().cloned();
    if let Some(err) = error {
        let page = if err.code == ErrorCode::Unauthorized {
            let target = format!("/sign-in?next={}", encode_next(&path));
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, target))
                .finish()
        } else {
            error_page(&ctx, &err)
        };
        res = res.into_response(page);
    }
    if let Some(t) = new_pre_session {
        let _ = res.response_mut().add_cookie(&private_cookie(
            key,
            PRE_SESSION_COOKIE,
            t,
            secure,
            None,
        ));
    }
    if stale_session {
        let _ = res
            .response_mut()
            .add_cookie(&removal_cookie(SESSION_COOKIE));
    }
    Ok(res)
}

/// A local path to come back to after signing in; anything else is dropped (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.starts_with("/sign-") =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn encode_next(path: &str) -> String {
    serde_urlencoded::to_string([("", path)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_string()
}

/// `?done=users.created` → a notice, if it names a known notice text (nothing else is echoed).
fn notice_of(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let key = pairs
        .into_iter()
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v)?;
    let known =
        i18n::has(Lang::En, &key) && !key.starts_with("error.") && !key.starts_with("field.");
    known.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/settings/users")), "/settings/users");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/sign-out")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(encode_next("/a b?c=1"), "%2Fa+b%3Fc%3D1");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert_eq!(
            notice_of("done=users.created&x=1").as_deref(),
            Some("users.created")
        );
        assert_eq!(notice_of("done=%3Cscript%3E"), None);
        assert_eq!(notice_of("done=error.internal"), None);
    }
}
