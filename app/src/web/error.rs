//! How an `AppError` becomes a response for a person: an error page in their language, a
//! redirect to sign-in, or a form shown again with its errors (done by the handlers).

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use kernel::AppError;

/// A page handler's error. The response carries the `AppError` in its extensions; the session
/// middleware renders it as a page in the request's language.
#[derive(Debug)]
pub struct WebError(pub AppError);

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
        WebError(e)
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(secs) = self.0.retry_after {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        let mut res = res
            .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body(self.0.code.as_str());
        res.extensions_mut().insert(self.0.clone());
        res
    }
}

pub type PageResult = Result<HttpResponse, WebError>;
