//! Providers' webhooks: `/hooks/<provider>/<channel key>`. Telegram's secret token or Meta's
//! signature is checked over the raw body before anything is read; the body is stored once and
//! answered at once, processing follows in a job. Meta's subscription check is the GET.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use kernel::{AppError, ErrorCode};
use messaging_api::{Inbound, Provider};
use serde::Deserialize;

use crate::api::ApiError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/hooks/{provider}/{key}")
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .route(web::post().to(receive))
            .route(web::get().to(verify)),
    )
    .route(
        "/hooks/files/{id}/{token}/{name}",
        web::get().to(linked_file),
    );
}

/// A file being sent to a client, fetched by the provider through the signed link messaging
/// gave it.
async fn linked_file(
    state: web::Data<AppState>,
    path: web::Path<(i64, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, token, _) = path.into_inner();
    let file = state
        .modules
        .messaging
        .linked_attachment(id, &token)
        .await
        .map_err(ApiError)?;
    Ok(file_response(file))
}

/// A stored file as an answer: pictures shown in place, anything else downloaded, and never
/// run as a page (a client's HTML or SVG is only ever a file).
pub fn file_response(file: messaging_api::FileContent) -> HttpResponse {
    let inline = matches!(
        file.mime_type.as_str(),
        "image/jpeg" | "image/png" | "image/gif" | "image/webp"
    );
    let name: String = file
        .file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HttpResponse::Ok()
        .content_type(file.mime_type.as_str())
        .insert_header((
            "content-disposition",
            format!(
                "{}; filename=\"{name}\"",
                if inline { "inline" } else { "attachment" }
            ),
        ))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("content-security-policy", "sandbox; default-src 'none'"))
        .insert_header(("cache-control", "private, max-age=3600"))
        .body(file.content)
}

fn provider_of(name: &str) -> Result<Provider, ApiError> {
    Provider::parse(name).ok_or_else(|| ApiError(AppError::not_found("channel")))
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (provider, key) = path.into_inner();
    let provider = provider_of(&provider)?;
    let received = state
        .modules
        .messaging
        .receive(Inbound {
            provider,
            webhook_key: key,
            secret_token: header(&req, "x-telegram-bot-api-secret-token"),
            signature: header(&req, "x-hub-signature-256"),
            body: body.to_vec(),
        })
        .await
        .map_err(ApiError)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "ok": true,
        "duplicate": received == messaging_api::Received::Duplicate,
    })))
}

#[derive(Deserialize)]
struct Challenge {
    #[serde(rename = "hub.mode", default)]
    mode: String,
    #[serde(rename = "hub.verify_token", default)]
    verify_token: String,
    #[serde(rename = "hub.challenge", default)]
    challenge: String,
}

async fn verify(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Challenge>,
) -> Result<HttpResponse, ApiError> {
    let (provider, key) = path.into_inner();
    let provider = provider_of(&provider)?;
    if query.challenge.is_empty() {
        return Err(ApiError(AppError::new(
            ErrorCode::BadRequest,
            "hub.challenge is missing",
        )));
    }
    let challenge = state
        .modules
        .messaging
        .verify_subscription(
            provider,
            &key,
            &query.mode,
            &query.verify_token,
            &query.challenge,
        )
        .await
        .map_err(ApiError)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .body(challenge))
}
