//! OAuth 2.0, amoCRM's authorization-code flow: the consent page (`/oauth?client_id=…&state=…`)
//! where a signed-in user allows an integration, the redirect with `code`, `state`, `referer`
//! and `client_id`, and `POST /oauth2/access_token` taking JSON or form bodies.

use accounts_api::{OAuthGrant, OAuthTokenRequest};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use kernel::{AppError, ErrorCode};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::html;

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenBody {
    client_id: String,
    client_secret: String,
    grant_type: String,
    code: String,
    refresh_token: String,
    redirect_uri: String,
}

/// The token endpoint's errors: problem+json with `hint`, as amoCRM answers.
fn token_error(status: StatusCode, detail: &str, hint: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, super::problem::PROBLEM_JSON))
        .body(
            json!({
                "title": status.canonical_reason().unwrap_or("Error"),
                "type": format!("https://httpstatus.es/{}", status.as_u16()),
                "status": status.as_u16(),
                "detail": detail,
                "hint": hint,
            })
            .to_string(),
        )
}

pub async fn access_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body: TokenBody = if content_type.starts_with("application/x-www-form-urlencoded") {
        match serde_urlencoded::from_bytes(&raw) {
            Ok(b) => b,
            Err(e) => {
                return Ok(token_error(
                    StatusCode::BAD_REQUEST,
                    "Malformed form body",
                    &e.to_string(),
                ));
            }
        }
    } else {
        match serde_json::from_slice(&raw) {
            Ok(b) => b,
            Err(e) => {
                return Ok(token_error(
                    StatusCode::BAD_REQUEST,
                    "Malformed JSON body",
                    &e.to_string(),
                ));
            }
        }
    };
    let grant = match body.grant_type.as_str() {
        "authorization_code" if !body.code.trim().is_empty() => OAuthGrant::AuthorizationCode {
            code: body.code.clone(),
        },
        "refresh_token" if !body.refresh_token.trim().is_empty() => OAuthGrant::RefreshToken {
            refresh_token: body.refresh_token.clone(),
        },
        "authorization_code" | "refresh_token" => {
            return Ok(token_error(
                StatusCode::BAD_REQUEST,
                "The request is missing a required parameter",
                "Check the `code` or `refresh_token` parameter",
            ));
        }
        _ => {
            return Ok(token_error(
                StatusCode::BAD_REQUEST,
                "The authorization grant type is not supported by the authorization server.",
                "Check the `grant_type` parameter",
            ));
        }
    };
    let request = OAuthTokenRequest {
        client_id: body.client_id,
        client_secret: body.client_secret,
        redirect_uri: Some(body.redirect_uri).filter(|u| !u.trim().is_empty()),
        grant,
        api_domain: req.connection_info().host().to_string(),
    };
    match state.modules.accounts.oauth_token(request).await {
        Ok(t) => Ok(HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(
                json!({
                    "token_type": "Bearer",
                    "expires_in": t.expires_in,
                    "access_token": t.access_token,
                    "refresh_token": t.refresh_token,
                    "server_time": chrono::Utc::now().timestamp(),
                })
                .to_string(),
            )),
        Err(e) if e.code == ErrorCode::Unauthorized => Ok(token_error(
            StatusCode::UNAUTHORIZED,
            "Client authentication failed",
            &e.message,
        )),
        Err(e) if matches!(e.code, ErrorCode::BadRequest | ErrorCode::Validation) => {
            Ok(token_error(
                StatusCode::BAD_REQUEST,
                &e.message,
                "Check the grant and redirect_uri",
            ))
        }
        Err(e) => Err(ApiError(e)),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConsentQuery {
    client_id: String,
    state: String,
    mode: String,
}

#[derive(Template)]
#[template(path = "settings/oauth_consent.html")]
struct ConsentTpl<'a> {
    ctx: &'a Ctx,
    name: String,
    redirect_uri: String,
    client_id: String,
    state: String,
    mode: String,
}

/// The consent page: which integration asks to act for the signed-in user.
pub async fn consent(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<ConsentQuery>,
) -> PageResult {
    let caller = ctx.caller()?;
    let client = state
        .modules
        .accounts
        .find_oauth_client(&q.client_id)
        .await?
        .filter(|c| c.account_id == caller.account_id)
        .ok_or_else(|| AppError::not_found("integration"))?;
    html(
        StatusCode::OK,
        &ConsentTpl {
            ctx: &ctx,
            name: client.name,
            redirect_uri: client.redirect_uri,
            client_id: client.client_id,
            state: q.state.clone(),
            mode: q.mode.clone(),
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConsentForm {
    client_id: String,
    state: String,
    decision: String,
}

/// Allows (or denies) the integration: back to its redirect URI with a single-use `code`
/// (20 minutes), or with `error=access_denied`.
pub async fn allow(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<ConsentForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let accounts = &state.modules.accounts;
    let client = accounts
        .find_oauth_client(&form.client_id)
        .await?
        .filter(|c| c.account_id == caller.account_id)
        .ok_or_else(|| AppError::not_found("integration"))?;
    let account = accounts.account(caller.account_id).await?;
    let sep = if client.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut query = vec![
        ("state", form.state.clone()),
        ("client_id", client.client_id.clone()),
    ];
    if form.decision == "allow" {
        let code = accounts.authorize_oauth(caller, &client.client_id).await?;
        query.insert(0, ("code", code));
        query.push(("referer", account.subdomain.clone()));
        query.push(("platform", "1".into()));
    } else {
        query.insert(0, ("error", "access_denied".into()));
    }
    let qs = serde_urlencoded::to_string(&query).map_err(|e| AppError::internal(e.to_string()))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("{}{sep}{qs}", client.redirect_uri)))
        .finish())
}
