//! API errors as RFC 7807 problem documents, in amoCRM's shape:
//! `{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"…"}`,
//! plus our stable `code` so clients can branch on it.

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use kernel::{AppError, ErrorCode};
use serde_json::json;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The largest body the API reads (a batch of 250 leads with their custom fields fits many times).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// actix's body extractors answer a body over [`BODY_LIMIT`] with a plain-text 413 before any
/// handler runs; on the API (and the OAuth token endpoint) that answer becomes a problem document
/// like every other error. Other 413s pass through unchanged.
pub fn payload_too_large<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let path = res.request().path();
    let api = path.starts_with("/api/") || path.starts_with("/oauth2/");
    let already = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !api || already {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, _) = res.into_parts();
    let problem = ApiError(AppError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is larger than {} MiB",
            BODY_LIMIT / (1024 * 1024)
        ),
    ))
    .error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, problem).map_into_right_body(),
    ))
}

#[derive(Debug)]
pub struct ApiError(pub AppError);

/// The validation errors of one item of a batch, under its `request_id`.
#[derive(Debug, Clone)]
pub struct ItemErrors {
    pub request_id: String,
    pub errors: Vec<kernel::FieldError>,
}

impl ApiError {
    /// A 400 for a batch: each failing item's errors under its `request_id` (nothing saved).
    pub fn batch(items: Vec<ItemErrors>) -> ApiError {
        let mut fields = Vec::new();
        for item in items {
            for f in item.errors {
                fields.push(kernel::FieldError {
                    field: format!("{}{BATCH_SEP}{}", item.request_id, f.field),
                    ..f
                });
            }
        }
        ApiError(AppError::from_fields(fields))
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError(AppError::new(ErrorCode::BadRequest, detail))
    }
}

/// Separates an item's `request_id` from the field's path inside a batch error's field name.
const BATCH_SEP: char = '\u{1f}';

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
            // Grouped by item, in the order the items came.
            let mut groups: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
            for f in &self.0.fields {
                let (request_id, path) = f.field.split_once(BATCH_SEP).unwrap_or(("0", &f.field));
                let error = json!({"code": f.code, "path": path, "detail": f.message});
                match groups.iter_mut().find(|(r, _)| r == request_id) {
                    Some((_, list)) => list.push(error),
                    None => groups.push((request_id.to_string(), vec![error])),
                }
            }
            body["validation-errors"] = groups
                .into_iter()
                .map(|(request_id, errors)| json!({"request_id": request_id, "errors": errors}))
                .collect();
            if self.0.code == ErrorCode::Validation {
                body["detail"] = json!("Request validation failed");
            }
        }
        let mut res = HttpResponse::build(status);
        res.insert_header((CONTENT_TYPE, PROBLEM_JSON));
        if let Some(secs) = self.0.retry_after {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        res.body(body.to_string())
    }
}
