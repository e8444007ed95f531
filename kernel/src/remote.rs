//! Remote mode: a module's trait called over HTTP, so that a module can run as its own service.
//!
//! Each `-api` crate declares its trait's methods once with [`remote_trait!`]; the macro writes
//! both ends from that one list, so they cannot drift:
//! - the client (`impl Trait for XClient`), which posts each call to
//!   `{url}/svc/{module}/{method}` as the JSON array of its arguments (the `Caller`, carrying the
//!   account and the actor, first) and reads the JSON result or the error back;
//! - the dispatcher (`dispatch_x(&dyn Trait, method, body)`), which the service's route runs on
//!   the module's local implementation.
//!
//! Calls are signed with HMAC-SHA256 over the time, the path and the body with a secret shared
//! through config, and refused unsigned, badly signed or older than five minutes. Each carries a
//! trace id. Reads are retried (twice, on a failed connection or a timeout); writes never are,
//! as the first try may have happened. A service that does not answer gives `Unavailable`, which
//! the UI and the API show as such while the rest of the app keeps working.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::{AppError, AppResult, ErrorCode, FieldError};

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;
#[doc(hidden)]
pub use serde_json as __serde_json;

/// For `Option<Option<T>>` fields of a change (`None` leaves a value, `Some(None)` clears it),
/// which plain JSON would confuse: use with
/// `#[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "kernel::remote::some")]`,
/// so that a missing field is `None` and `null` is `Some(None)`.
pub fn some<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// Where service routes live: `/svc/{module}/{method}`.
pub const PREFIX: &str = "/svc";
pub const TIME_HEADER: &str = "x-voronka-time";
pub const SIGNATURE_HEADER: &str = "x-voronka-signature";
pub const TRACE_HEADER: &str = "x-trace-id";
/// How old a signed call may be (clocks of the machines differ a little).
pub const MAX_SKEW_SECS: i64 = 300;

/// The signature of a call: hex HMAC-SHA256 of `time \n path \n body`.
pub fn sign(secret: &[u8], time: i64, path: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any size");
    mac.update(time.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a call's time and signature headers (constant-time comparison).
pub fn verify(
    secret: &[u8],
    time: Option<&str>,
    signature: Option<&str>,
    path: &str,
    body: &[u8],
    now: i64,
) -> AppResult<()> {
    let (Some(time), Some(signature)) = (time, signature) else {
        return Err(AppError::unauthorized("a service call must be signed"));
    };
    let time: i64 = time
        .trim()
        .parse()
        .map_err(|_| AppError::unauthorized("the call's time is not a number"))?;
    if (now - time).abs() > MAX_SKEW_SECS {
        return Err(AppError::unauthorized(
            "the call is too old or from the future",
        ));
    }
    let want = sign(secret, time, path, body);
    let same = want.len() == signature.len()
        && want
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(AppError::unauthorized("the call's signature is not valid"))
    }
}

/// An error as it travels between a service and its client.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WireError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub fields: Vec<FieldError>,
    #[serde(default)]
    pub retry_after: Option<u64>,
}

impl WireError {
    pub fn of(e: &AppError) -> WireError {
        WireError {
            code: e.code.as_str().to_string(),
            message: e.message.clone(),
            fields: e.fields.clone(),
            retry_after: e.retry_after,
        }
    }

    pub fn into_error(self) -> AppError {
        let code = ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == self.code)
            .unwrap_or(ErrorCode::Internal);
        AppError {
            code,
            message: self.message,
            fields: self.fields,
            retry_after: self.retry_after,
        }
    }
}

/// The calling end of one module's service.
#[derive(Clone)]
pub struct RemoteClient {
    http: reqwest::Client,
    module: &'static str,
    base: String,
    secret: Arc<Vec<u8>>,
}

impl RemoteClient {
    /// `base` is the service's URL (`http://10.0.0.5:8091`); `timeout` bounds each try.
    pub fn new(module: &'static str, base: &str, secret: &[u8], timeout: Duration) -> RemoteClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client with rustls");
        RemoteClient {
            http,
            module,
            base: base.trim_end_matches('/').to_string(),
            secret: Arc::new(secret.to_vec()),
        }
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    /// One call: `args` is the tuple of the method's arguments. `read` calls are retried after
    /// a failed connection or a timeout; others are tried once.
    pub async fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        read: bool,
        args: &A,
    ) -> AppResult<R> {
        let body = serde_json::to_vec(args).map_err(|e| AppError::internal(e.to_string()))?;
        let path = format!("{PREFIX}/{}/{method}", self.module);
        let trace = uuid::Uuid::now_v7().to_string();
        let tries = if read { 3 } else { 1 };
        let mut last = None;
        for attempt in 0..tries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * (1 << attempt))).await;
            }
            let now = chrono::Utc::now().timestamp();
            let sent = self
                .http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .header(TIME_HEADER, now.to_string())
                .header(SIGNATURE_HEADER, sign(&self.secret, now, &path, &body))
                .header(TRACE_HEADER, &trace)
                .body(body.clone())
                .send()
                .await;
            let res = match sent {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(module = self.module, method, trace = %trace, error = %e, "remote call failed");
                    last = Some(e);
                    continue;
                }
            };
            let status = res.status();
            let bytes = match res.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|e| {
                    AppError::internal(format!(
                        "the {} service answered {method} with an unreadable body: {e}",
                        self.module
                    ))
                });
            }
            return Err(match serde_json::from_slice::<WireError>(&bytes) {
                Ok(w) => w.into_error(),
                Err(_) => AppError::new(
                    ErrorCode::Unavailable,
                    format!("the {} service answered {status}", self.module),
                ),
            });
        }
        Err(AppError::new(
            ErrorCode::Unavailable,
            format!(
                "the {} service is unreachable ({})",
                self.module,
                last.map(|e| e.to_string()).unwrap_or_default()
            ),
        ))
    }
}

/// Declares a trait's remote form: the client's implementation of the trait and the service's
/// dispatcher, from one list of the trait's methods. Each entry is `read fn …` (retried) or
/// `write fn …`; an argument the trait takes by reference names the owned type it travels as
/// (`text: &str as String`). Methods that are not remote calls go in `extra { … }`.
#[macro_export]
macro_rules! remote_trait {
    (
        impl $Trait:ident for $Client:ty, dispatch $dispatch:ident, methods $METHODS:ident {
            $( $kind:ident fn $m:ident ( $( $a:ident : $t:ty $(as $o:ty)? ),* $(,)? ) -> $r:ty ; )*
        }
        $( extra { $($extra:tt)* } )?
    ) => {
        #[$crate::remote::__async_trait]
        impl $Trait for $Client {
            $(
                #[allow(clippy::ref_option_ref)]
                async fn $m(&self, $( $a : $t ),* ) -> $crate::AppResult<$r> {
                    self.remote
                        .call(stringify!($m), $crate::remote_trait!(@read $kind), &( $( &$a, )* ))
                        .await
                }
            )*
            $( $($extra)* )?
        }

        /// The names of the trait's remote methods.
        pub const $METHODS: &[&str] = &[ $( stringify!($m) ),* ];

        /// Runs one call that came over HTTP on the module's implementation.
        pub async fn $dispatch(
            svc: &dyn $Trait,
            method: &str,
            body: &[u8],
        ) -> $crate::AppResult<$crate::remote::__serde_json::Value> {
            match method {
                $(
                    stringify!($m) => {
                        #[allow(unused_parens, clippy::let_unit_value)]
                        let ( $( $a, )* ): ( $( $crate::remote_trait!(@owned $t $(, $o)?), )* ) =
                            $crate::remote::__serde_json::from_slice(body).map_err(|e| {
                                $crate::AppError::new(
                                    $crate::ErrorCode::BadRequest,
                                    format!("the arguments of {} do not read: {e}", stringify!($m)),
                                )
                            })?;
                        let out = svc.$m( $( $crate::remote_trait!(@pass $a $(, $o)?) ),* ).await?;
                        $crate::remote::__serde_json::to_value(out)
                            .map_err(|e| $crate::AppError::internal(e.to_string()))
                    }
                )*
                _ => Err($crate::AppError::not_found("remote method")),
            }
        }
    };
    (@read read) => { true };
    (@read write) => { false };
    (@owned $t:ty) => { $t };
    (@owned $t:ty, $o:ty) => { $o };
    (@pass $a:ident) => { $a };
    (@pass $a:ident, $o:ty) => { &$a };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_the_time_the_path_and_the_body() {
        let s = sign(b"secret", 1000, "/svc/deals/deal", b"[1]");
        assert!(
            verify(
                b"secret",
                Some("1000"),
                Some(&s),
                "/svc/deals/deal",
                b"[1]",
                1100
            )
            .is_ok()
        );
        for (time, path, body, now) in [
            ("1001", "/svc/deals/deal", &b"[1]"[..], 1100),
            ("1000", "/svc/deals/other", &b"[1]"[..], 1100),
            ("1000", "/svc/deals/deal", &b"[2]"[..], 1100),
            (
                "1000",
                "/svc/deals/deal",
                &b"[1]"[..],
                1000 + MAX_SKEW_SECS + 1,
            ),
        ] {
            assert_eq!(
                verify(b"secret", Some(time), Some(&s), path, body, now)
                    .unwrap_err()
                    .code,
                ErrorCode::Unauthorized
            );
        }
        assert!(
            verify(
                b"other",
                Some("1000"),
                Some(&s),
                "/svc/deals/deal",
                b"[1]",
                1000
            )
            .is_err()
        );
        assert!(verify(b"secret", None, Some(&s), "/svc/deals/deal", b"[1]", 1000).is_err());
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Change {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "some"
        )]
        v: Option<Option<i64>>,
    }

    #[test]
    fn leave_clear_and_set_survive_json() {
        for c in [
            Change { v: None },
            Change { v: Some(None) },
            Change { v: Some(Some(3)) },
        ] {
            let back: Change = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn errors_cross_the_wire_whole() {
        let mut e = AppError::validation("name", "required", "a name");
        e.retry_after = Some(3);
        let wire = serde_json::to_vec(&WireError::of(&e)).unwrap();
        let back = serde_json::from_slice::<WireError>(&wire)
            .unwrap()
            .into_error();
        assert_eq!(back, e);
    }
}
