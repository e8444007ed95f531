//! One error type for the whole application.
//!
//! Every error carries a stable [`ErrorCode`]: the code is what API clients match on and what the
//! UI uses as the key of its translated message. The mapping code → HTTP status → message key
//! lives here, in one place; the web layer only renders it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, bad query parameter, bad cursor).
    BadRequest,
    /// The request is well-formed but its values are not acceptable; see the field errors.
    Validation,
    /// No valid session or token.
    Unauthorized,
    /// Signed in, but the user's rights do not allow this.
    Forbidden,
    /// No such thing in this account (also what another account's data looks like).
    NotFound,
    /// The change conflicts with existing data (a duplicate e-mail, a stale version).
    Conflict,
    /// Too many requests; `retry_after` says when to come back.
    RateLimited,
    /// A form was posted without the CSRF token of this session.
    CsrfRejected,
    /// Sign-in with a wrong e-mail or password.
    BadCredentials,
    /// The body is larger than this endpoint accepts.
    PayloadTooLarge,
    /// A dependency (the database, a remote module) is not reachable right now.
    Unavailable,
    /// A bug or an unexpected failure; details are logged, never shown.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::Validation,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::CsrfRejected,
        ErrorCode::BadCredentials,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The stable machine-readable code, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Validation => "validation",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::CsrfRejected => "csrf_rejected",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::Validation => 400,
            ErrorCode::Unauthorized | ErrorCode::BadCredentials => 401,
            ErrorCode::Forbidden | ErrorCode::CsrfRejected => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The key of the translated, human message shown in the UI.
    pub fn message_key(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "error.bad_request",
            ErrorCode::Validation => "error.validation",
            ErrorCode::Unauthorized => "error.unauthorized",
            ErrorCode::Forbidden => "error.forbidden",
            ErrorCode::NotFound => "error.not_found",
            ErrorCode::Conflict => "error.conflict",
            ErrorCode::RateLimited => "error.rate_limited",
            ErrorCode::CsrfRejected => "error.csrf_rejected",
            ErrorCode::BadCredentials => "error.bad_credentials",
            ErrorCode::PayloadTooLarge => "error.payload_too_large",
            ErrorCode::Unavailable => "error.unavailable",
            ErrorCode::Internal => "error.internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with one input field: `code` is stable (`required`, `too_long`, `taken`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub code: ErrorCode,
    /// An English explanation for logs and API clients; the UI shows the translated message.
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Seconds to wait, for `RateLimited`.
    pub retry_after: Option<u64>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    pub fn not_found(what: &str) -> AppError {
        AppError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::Forbidden, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::Unauthorized, message)
    }

    pub fn internal(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::Internal, message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> AppError {
        AppError {
            retry_after: Some(retry_after_secs.max(1)),
            ..AppError::new(ErrorCode::RateLimited, "too many requests")
        }
    }

    /// A validation error for a single field.
    pub fn validation(field: &str, code: &str, message: &str) -> AppError {
        AppError::from_fields(vec![FieldError {
            field: field.to_string(),
            code: code.to_string(),
            message: message.to_string(),
        }])
    }

    pub fn from_fields(fields: Vec<FieldError>) -> AppError {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        AppError {
            fields,
            ..AppError::new(ErrorCode::Validation, message)
        }
    }

    pub fn field(&self, name: &str) -> Option<&FieldError> {
        self.fields.iter().find(|f| f.field == name)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AppError {}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> AppError {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => AppError::new(ErrorCode::NotFound, "not found"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                AppError::new(ErrorCode::Conflict, info.message().to_string())
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                AppError::new(ErrorCode::Unavailable, "the database connection was lost")
            }
            other => {
                tracing::error!(error = %other, "database error");
                AppError::internal("database error")
            }
        }
    }
}

impl From<crate::db::PoolError> for AppError {
    fn from(e: crate::db::PoolError) -> AppError {
        tracing::error!(error = %e, "database pool error");
        AppError::new(ErrorCode::Unavailable, "the database is not reachable")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_has_a_distinct_string_and_an_error_status() {
        let strings: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(strings.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!((400..600).contains(&code.http_status()), "{code}");
            assert_eq!(code.message_key(), format!("error.{}", code.as_str()));
        }
    }

    #[test]
    fn database_errors_map_to_stable_codes() {
        assert_eq!(
            AppError::from(diesel::result::Error::NotFound).code,
            ErrorCode::NotFound
        );
        assert_eq!(
            AppError::from(diesel::result::Error::RollbackTransaction).code,
            ErrorCode::Internal
        );
        let v = AppError::validation("email", "required", "enter an e-mail");
        assert_eq!(v.code, ErrorCode::Validation);
        assert_eq!(v.field("email").unwrap().code, "required");
        assert_eq!(AppError::rate_limited(0).retry_after, Some(1));
    }
}
