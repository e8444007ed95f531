//! A polite reader of an amoCRM / Kommo account through its API v4.
//!
//! - Paced under the API's 7 requests per second (6 by default, evenly spaced, no bursts).
//! - A 429 is waited out for its `Retry-After` (seconds or an HTTP date; 1 s when absent) and the
//!   request asked again; server errors (5xx) and network failures are retried with an
//!   exponential backoff; anything else is an error that names the request.
//! - Lists are read in pages of `limit=250`; an empty list is a 204 with no body, which ends it,
//!   as does a page without `_links.next` or without items.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

/// The most items amoCRM gives per page.
pub const PAGE_LIMIT: u32 = 250;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmoError {
    /// 401/403: the token was refused (or the account is blocked).
    Refused { path: String, status: u16 },
    /// Another status that retrying cannot fix.
    Status {
        path: String,
        status: u16,
        body: String,
    },
    /// The network or the server kept failing after the retries.
    Unreachable { path: String, reason: String },
    /// The answer was not the JSON expected.
    Malformed { path: String, reason: String },
}

impl std::fmt::Display for AmoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AmoError::Refused { path, status } => write!(
                f,
                "amoCRM refused the token ({status} on {path}): check the token and that it belongs to this account"
            ),
            AmoError::Status { path, status, body } => {
                write!(f, "amoCRM answered {status} on {path}: {body}")
            }
            AmoError::Unreachable { path, reason } => {
                write!(f, "amoCRM could not be reached for {path}: {reason}")
            }
            AmoError::Malformed { path, reason } => {
                write!(f, "amoCRM's answer to {path} could not be read: {reason}")
            }
        }
    }
}

impl std::error::Error for AmoError {}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Requests per second at most (amoCRM allows 7).
    pub per_second: u32,
    /// Attempts at a request that fails with 5xx or on the network.
    pub attempts: u32,
    /// The first retry's wait; each next one doubles, up to 30 s.
    pub backoff: Duration,
    /// 429s waited out for one request before giving up.
    pub max_429: u32,
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            per_second: 6,
            attempts: 6,
            backoff: Duration::from_secs(1),
            max_429: 30,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Value>,
    /// Whether another page follows.
    pub more: bool,
}

/// What the client did, for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    pub requests: u64,
    pub throttled: u64,
    pub retried: u64,
}

/// An integration registered in the amoCRM account (OAuth 2.0 authorization code flow).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// Where the current tokens are kept (written at every exchange; amoCRM's refresh tokens
    /// rotate, so a resumed import needs the last one). `None`: kept in memory only.
    pub token_file: Option<std::path::PathBuf>,
    /// Told of the tokens at every exchange (an import run from the settings keeps them with
    /// the run); an error fails the exchange, as a token file that cannot be written does.
    pub sink: Option<TokenSink>,
}

/// What a [`TokenSink`] returns: done, or why the tokens could not be kept.
pub type SinkFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Where a background run keeps the rotating tokens: called with the new pair.
#[derive(Clone)]
pub struct TokenSink(pub std::sync::Arc<dyn Fn(Tokens) -> SinkFuture + Send + Sync>);

impl std::fmt::Debug for TokenSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSink")
    }
}

/// An OAuth token pair, as kept in the token file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

pub struct AmoClient {
    http: reqwest::Client,
    base: String,
    token: std::sync::RwLock<String>,
    /// With OAuth: the integration and the refresh token (an access token refused with 401 is
    /// renewed once and the request asked again).
    oauth: Option<(OAuthClient, tokio::sync::Mutex<String>)>,
    limiter: DefaultDirectRateLimiter,
    options: ClientOptions,
    requests: AtomicU64,
    throttled: AtomicU64,
    retried: AtomicU64,
}

/// How long a 429 asks to wait: `Retry-After` in seconds or as an HTTP date; 1 s otherwise.
pub fn retry_after(header: Option<&str>, now: SystemTime) -> Duration {
    let Some(v) = header.map(str::trim) else {
        return Duration::from_secs(1);
    };
    if let Ok(secs) = v.parse::<u64>() {
        return Duration::from_secs(secs.min(600));
    }
    match httpdate::parse_http_date(v) {
        Ok(at) => at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(600)),
        Err(_) => Duration::from_secs(1),
    }
}

impl AmoClient {
    /// `base_url` is the account's address (`https://SUBDOMAIN.amocrm.ru`), `token` a long-lived
    /// token or an OAuth access token.
    pub fn new(base_url: &str, token: &str, options: ClientOptions) -> Result<AmoClient, String> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!(
                "the base URL must start with https:// (or http://): {base_url}"
            ));
        }
        if token.trim().is_empty() {
            return Err("the token is empty".into());
        }
        let per_second = NonZeroU32::new(options.per_second.clamp(1, 7)).unwrap_or(NonZeroU32::MIN);
        // Evenly spaced, a burst of one: no second ever holds more than `per_second`.
        let limiter =
            RateLimiter::direct(Quota::per_second(per_second).allow_burst(NonZeroU32::MIN));
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("Voronka-importer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(AmoClient {
            http,
            base,
            token: std::sync::RwLock::new(token.trim().to_string()),
            oauth: None,
            limiter,
            options,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A client of an OAuth integration: `code` (single-use, from the consent redirect) is
    /// exchanged for tokens; without one, the tokens of `oauth.token_file` (an import run before)
    /// are used. The tokens are written to the file at every exchange.
    pub async fn with_oauth(
        base_url: &str,
        oauth: OAuthClient,
        code: Option<&str>,
        options: ClientOptions,
    ) -> Result<AmoClient, String> {
        for (name, v) in [
            ("client id", &oauth.client_id),
            ("client secret", &oauth.client_secret),
            ("redirect URI", &oauth.redirect_uri),
        ] {
            if v.trim().is_empty() {
                return Err(format!("the integration's {name} is empty"));
            }
        }
        // A placeholder token until the exchange: `new` checks the rest.
        let mut client = AmoClient::new(base_url, "pending", options)?;
        let tokens = match code.map(str::trim).filter(|c| !c.is_empty()) {
            Some(code) => {
                client
                    .exchange(
                        &oauth,
                        serde_json::json!({
                            "client_id": oauth.client_id,
                            "client_secret": oauth.client_secret,
                            "grant_type": "authorization_code",
                            "code": code,
                            "redirect_uri": oauth.redirect_uri,
                        }),
                    )
                    .await?
            }
            None => {
                let Some(path) = &oauth.token_file else {
                    return Err(
                        "an authorization code is needed (no token file to go on from)".into(),
                    );
                };
                // (A run that keeps its tokens elsewhere goes on with `resume_oauth`.)
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "no authorization code and the token file {} cannot be read ({e}): pass --code",
                        path.display()
                    )
                })?;
                serde_json::from_str::<Tokens>(&text)
                    .map_err(|e| format!("the token file {} is not usable: {e}", path.display()))?
            }
        };
        client.token = std::sync::RwLock::new(tokens.access_token);
        client.oauth = Some((oauth, tokio::sync::Mutex::new(tokens.refresh_token)));
        Ok(client)
    }

    /// A client of an OAuth integration going on with tokens it was given before (a background
    /// run kept them); an expired access token is renewed with the refresh token as usual.
    pub fn resume_oauth(
        base_url: &str,
        oauth: OAuthClient,
        tokens: Tokens,
        options: ClientOptions,
    ) -> Result<AmoClient, String> {
        let mut client = AmoClient::new(base_url, &tokens.access_token, options)?;
        client.oauth = Some((oauth, tokio::sync::Mutex::new(tokens.refresh_token)));
        Ok(client)
    }

    /// The current token pair of an OAuth client (None for a long-lived token).
    pub async fn oauth_tokens(&self) -> Option<Tokens> {
        let (_, refresh) = self.oauth.as_ref()?;
        let refresh = refresh.lock().await.clone();
        Some(Tokens {
            access_token: self.current_token(),
            refresh_token: refresh,
        })
    }

    /// `POST {base}/oauth2/access_token` with `body`; the tokens, written to the token file.
    async fn exchange(&self, oauth: &OAuthClient, body: Value) -> Result<Tokens, String> {
        self.limiter.until_ready().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(format!("{}/oauth2/access_token", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("amoCRM could not be reached for the OAuth exchange: {e}"))?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let (Some(access), Some(refresh)) = (
            answer["access_token"].as_str(),
            answer["refresh_token"].as_str(),
        ) else {
            return Err(format!(
                "amoCRM refused the OAuth exchange ({status}): {}",
                answer["hint"]
                    .as_str()
                    .or(answer["detail"].as_str())
                    .or(answer["title"].as_str())
                    .unwrap_or("no reason given")
            ));
        };
        let tokens = Tokens {
            access_token: access.to_string(),
            refresh_token: refresh.to_string(),
        };
        if let Some(path) = &oauth.token_file {
            write_private(path, &serde_json::to_string(&tokens).unwrap_or_default())
                .map_err(|e| format!("the token file {} cannot be written: {e}", path.display()))?;
        }
        if let Some(sink) = &oauth.sink {
            (sink.0)(tokens.clone()).await?;
        }
        Ok(tokens)
    }

    /// Renews the access token with the refresh token (amoCRM rotates both). `used` is the
    /// access token the refused request carried: another request renewed it meanwhile when it
    /// differs, and nothing is asked.
    async fn refresh(&self, used: &str) -> Result<bool, String> {
        let Some((oauth, refresh)) = &self.oauth else {
            return Ok(false);
        };
        let mut refresh = refresh.lock().await;
        if self.current_token() != used {
            return Ok(true);
        }
        let tokens = self
            .exchange(
                oauth,
                serde_json::json!({
                    "client_id": oauth.client_id,
                    "client_secret": oauth.client_secret,
                    "grant_type": "refresh_token",
                    "refresh_token": *refresh,
                    "redirect_uri": oauth.redirect_uri,
                }),
            )
            .await?;
        *refresh = tokens.refresh_token;
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = tokens.access_token;
        Ok(true)
    }

    fn current_token(&self) -> String {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }

    /// `GET {base}{path}?{query}`: the JSON answer, or `None` for 204 (nothing there).
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Value>, AmoError> {
        let url = format!("{}{}", self.base, path);
        let mut failures = 0u32;
        let mut throttled = 0u32;
        let mut renewed = false;
        loop {
            self.limiter.until_ready().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let token = self.current_token();
            let sent = self
                .http
                .get(&url)
                .bearer_auth(&token)
                .query(query)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    if failures >= self.options.attempts {
                        return Err(AmoError::Unreachable {
                            path: path.into(),
                            reason: e.to_string(),
                        });
                    }
                    self.wait_backoff(failures).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            match status {
                200 => {
                    let body = response.bytes().await.map_err(|e| AmoError::Unreachable {
                        path: path.into(),
                        reason: e.to_string(),
                    })?;
                    return serde_json::from_slice(&body).map(Some).map_err(|e| {
                        AmoError::Malformed {
                            path: path.into(),
                            reason: e.to_string(),
                        }
                    });
                }
                204 => return Ok(None),
                429 => {
                    throttled += 1;
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                    if throttled > self.options.max_429 {
                        return Err(AmoError::Status {
                            path: path.into(),
                            status,
                            body: format!("still throttled after {} waits", self.options.max_429),
                        });
                    }
                    let wait = retry_after(
                        response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok()),
                        SystemTime::now(),
                    );
                    tracing::info!(path, ?wait, "amoCRM throttled the import (429); waiting");
                    tokio::time::sleep(wait).await;
                }
                // An expired access token of an integration: renewed once, and asked again.
                401 if !renewed && self.oauth.is_some() => {
                    renewed = true;
                    match self.refresh(&token).await {
                        Ok(true) => continue,
                        Ok(false) => {
                            return Err(AmoError::Refused {
                                path: path.into(),
                                status,
                            });
                        }
                        Err(reason) => {
                            return Err(AmoError::Status {
                                path: path.into(),
                                status,
                                body: reason,
                            });
                        }
                    }
                }
                401 | 403 => {
                    return Err(AmoError::Refused {
                        path: path.into(),
                        status,
                    });
                }
                s if s >= 500 => {
                    failures += 1;
                    if failures >= self.options.attempts {
                        return Err(AmoError::Unreachable {
                            path: path.into(),
                            reason: format!("{s} after {failures} attempts"),
                        });
                    }
                    self.wait_backoff(failures).await;
                }
                s => {
                    let body = response.text().await.unwrap_or_default();
                    return Err(AmoError::Status {
                        path: path.into(),
                        status: s,
                        body: body.chars().take(300).collect(),
                    });
                }
            }
        }
    }

    async fn wait_backoff(&self, failures: u32) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        let wait = self
            .options
            .backoff
            .saturating_mul(1 << failures.saturating_sub(1).min(5))
            .min(Duration::from_secs(30));
        tokio::time::sleep(wait).await;
    }

    /// Page `page` (1-based) of the list at `path`, whose items are under `_embedded.<key>`.
    pub async fn page(
        &self,
        path: &str,
        key: &str,
        page: u32,
        extra: &[(&str, String)],
    ) -> Result<Page, AmoError> {
        // amoCRM's events list takes 100 at most.
        let limit = if path.ends_with("/events") {
            100
        } else {
            PAGE_LIMIT
        };
        let mut query = vec![("page", page.to_string()), ("limit", limit.to_string())];
        query.extend(extra.iter().cloned());
        let Some(body) = self.get(path, &query).await? else {
            return Ok(Page::default());
        };
        let items = match body.pointer(&format!("/_embedded/{key}")) {
            Some(Value::Array(a)) => a.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(AmoError::Malformed {
                    path: path.into(),
                    reason: format!("_embedded.{key} is not a list"),
                });
            }
        };
        // A page without items ends the list even if it links a next one.
        let more = body.pointer("/_links/next/href").is_some() && !items.is_empty();
        Ok(Page { items, more })
    }

    /// How many items the list at `path` holds (every page read).
    pub async fn count(&self, path: &str, key: &str) -> Result<usize, AmoError> {
        self.each_page(path, key, &[], 1, |_, _| async { Ok(()) })
            .await
    }

    /// Every item of the list at `path`, page by page, handed to `each` with its page number.
    /// Returns how many items there were.
    pub async fn each_page<F, Fut>(
        &self,
        path: &str,
        key: &str,
        extra: &[(&str, String)],
        from_page: u32,
        mut each: F,
    ) -> Result<usize, AmoError>
    where
        F: FnMut(u32, Vec<Value>) -> Fut,
        Fut: std::future::Future<Output = Result<(), AmoError>>,
    {
        let mut total = 0;
        let mut n = from_page.max(1);
        loop {
            let page = self.page(path, key, n, extra).await?;
            total += page.items.len();
            let more = page.more;
            if !page.items.is_empty() {
                each(n, page.items).await?;
            }
            if !more {
                return Ok(total);
            }
            n += 1;
        }
    }
}

/// Writes a file only its owner may read (it holds tokens).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_dates_and_nonsense() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(Some("3"), now), Duration::from_secs(3));
        assert_eq!(retry_after(None, now), Duration::from_secs(1));
        assert_eq!(retry_after(Some("soon"), now), Duration::from_secs(1));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(retry_after(Some(&later), now), Duration::from_secs(5));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(retry_after(Some(&past), now), Duration::ZERO);
    }

    #[test]
    fn a_base_url_needs_a_scheme_and_a_token() {
        assert!(AmoClient::new("example.amocrm.ru", "t", ClientOptions::default()).is_err());
        assert!(
            AmoClient::new("https://example.amocrm.ru", " ", ClientOptions::default()).is_err()
        );
        let c =
            AmoClient::new("https://example.amocrm.ru/", "t", ClientOptions::default()).unwrap();
        assert_eq!(c.base_url(), "https://example.amocrm.ru");
    }
}
