//! The public REST API, compatible with amoCRM API v4 (`/api/v4/...`). Written against the
//! module traits only. Successful answers are `application/hal+json`, errors
//! `application/problem+json`, exactly (clients compare the strings).

pub mod account;
pub mod problem;

use std::future::Future;
use std::pin::Pin;

use accounts_api::TokenPrincipal;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use kernel::{AppError, Caller};

pub use problem::ApiError;

use crate::state::AppState;

pub const HAL_JSON: &str = "application/hal+json";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v4/account", web::get().to(account::get));
}

/// The token's account and user, from `Authorization: Bearer …`.
pub struct ApiAuth(pub TokenPrincipal);

impl ApiAuth {
    pub fn caller(&self) -> Caller {
        Caller::user(self.0.account_id, self.0.user_id)
    }
}

impl FromRequest for ApiAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ApiAuth, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError(AppError::internal("application state missing")))?;
            let token = header
                .as_deref()
                .and_then(|h| {
                    h.strip_prefix("Bearer ")
                        .or_else(|| h.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError(AppError::unauthorized(
                        "an Authorization: Bearer token is required",
                    ))
                })?;
            let principal = state.modules.accounts.authenticate_token(token).await?;
            Ok(ApiAuth(principal))
        })
    }
}

/// The scheme and host the client used, for `_links` (amoCRM clients follow them verbatim).
pub fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}
