//! The service routes: `POST /svc/{module}/{method}`, where other Voronka processes call this
//! one's modules when they run them remote (`[modules.<m>] mode = "remote"`). Only calls signed
//! with the installation's shared secret (`[remote] secret`) are answered; without a secret the
//! routes do not exist. A module this process itself reaches remotely is not served from here.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::AppError;
use kernel::remote::{self, WireError};

use crate::state::AppState;

/// Service calls may carry a whole import file.
const MAX_CALL_BYTES: usize = 80 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/svc/{module}/{method}")
            .app_data(web::PayloadConfig::new(MAX_CALL_BYTES))
            .route(web::post().to(call)),
    );
}

fn error(e: &AppError) -> HttpResponse {
    HttpResponse::build(
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    )
    .json(WireError::of(e))
}

async fn call(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (module, method) = path.into_inner();
    let Some(secret) = state.config.remote.secret.as_deref() else {
        return error(&AppError::not_found("endpoint"));
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = remote::verify(
        secret.as_bytes(),
        header(remote::TIME_HEADER),
        header(remote::SIGNATURE_HEADER),
        req.path(),
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::warn!(module, method, error = %e, "refused an unsigned or badly signed service call");
        return error(&e);
    }
    let trace = header(remote::TRACE_HEADER).unwrap_or("").to_string();
    let m = &state.modules;
    if m.remote.contains(&module.as_str()) {
        return error(&AppError::not_found("module (it runs elsewhere)"));
    }
    let out = match module.as_str() {
        "accounts" => accounts_api::remote::dispatch_accounts(&*m.accounts, &method, &body).await,
        "deals" => deals_api::remote::dispatch_deals(&*m.deals, &method, &body).await,
        "contacts" => contacts_api::remote::dispatch_contacts(&*m.contacts, &method, &body).await,
        "activities" => {
            activities_api::remote::dispatch_activities(&*m.activities, &method, &body).await
        }
        "automation" => {
            automation_api::remote::dispatch_automation(&*m.automation, &method, &body).await
        }
        "messaging" if messaging_api::remote::CHATS_METHODS.contains(&method.as_str()) => {
            messaging_api::remote::dispatch_chats(&*m.messaging, &method, &body).await
        }
        "messaging" => {
            messaging_api::remote::dispatch_messaging(&*m.messaging, &method, &body).await
        }
        "analytics" => {
            analytics_api::remote::dispatch_analytics(&*m.analytics, &method, &body).await
        }
        _ => Err(AppError::not_found("module")),
    };
    match out {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => {
            tracing::debug!(module, method, trace, error = %e, "service call answered with an error");
            error(&e)
        }
    }
}
