//! API errors as RFC 7807 problem documents, in amoCRM's shape:
//! `{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"…"}`,
//! plus our stable `code` so clients can branch on it.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use kernel::{AppError, ErrorCode};
use serde_json::json;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug)]
pub struct ApiError(pub AppError);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let title = status.canonical_reason().unwrap_or("Error");
        let detail = if self.0.code == ErrorCode::Internal {
            "Internal error".to_string()
        } else {
            self.0.message.clone()
        };
        let mut body = json!({
            "title": title,
            "type": format!("https://httpstatus.es/{}", status.as_u16()),
            "status": status.as_u16(),
            "detail": detail,
            "code": self.0.code.as_str(),
        });
        if !self.0.fields.is_empty() {
            let errors: Vec<_> = self
                .0
                .fields
                .iter()
                .map(|f| json!({"code": f.code, "path": f.field, "detail": f.message}))
                .collect();
            body["validation-errors"] = json!([{ "request_id": "0", "errors": errors }]);
        }
        let mut res = HttpResponse::build(status);
        res.insert_header((CONTENT_TYPE, PROBLEM_JSON));
        if let Some(secs) = self.0.retry_after {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        res.body(body.to_string())
    }
}
