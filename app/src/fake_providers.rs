//! A local stand-in for the messenger APIs Voronka calls: the subset of the Telegram Bot API,
//! the WhatsApp Cloud API and Instagram Messaging in `shared/reference/messengers.md`, answered
//! in each provider's own shapes. It records what was sent, injects faults on demand (blocked
//! users, 429s, 5xx, revoked tokens, a sliding-window rate limit) and posts webhooks back
//! (Telegram's secret header, Meta's `X-Hub-Signature-256`). Used by integration tests,
//! benchmarks and the demo (`voronka dev fake-providers --port N`).
//!
//! One base URL serves all three providers:
//! - Telegram: `GET|POST /bot<token>/<method>` (`getMe`, `setWebhook`, `deleteWebhook`,
//!   `getWebhookInfo`, `sendMessage`, `sendPhoto` and `sendDocument` by URL, `getFile`) and
//!   `GET /file/bot<token>/<file_path>`;
//! - WhatsApp and Instagram: `POST /<version>/<id>/messages` (also without the version); a body
//!   with `messaging_product` is WhatsApp, any other Instagram; `GET /<version>/<id>` answers
//!   the account's basic fields, or a hosted file's media URL when `<id>` is one;
//! - files: `POST /_fake/media?mime=…&name=…` hosts a file (its id is Telegram's `file_id`
//!   and WhatsApp's media id), `GET /_fake/media/<id>` downloads it (Instagram's attachment
//!   URL); files sent by link are fetched from the link as the providers do;
//! - control: `/_fake/...` (see [`run_cli`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// How often [`FakeProviders::wait_for_sent`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The window [`FakeProviders::limit_rate`] counts sends in.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// `retry_after` of the 429s the rate limit answers.
const RATE_RETRY_AFTER: u64 = 1;
/// Timeout of the webhook posts.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first `update_id` the control endpoint posts (as in Telegram's webhook guide).
const FIRST_UPDATE_ID: i64 = 10_000;
/// The first `message_id` of the updates the control endpoint posts.
const FIRST_UPDATE_MESSAGE_ID: i64 = 1_000;
/// Telegram's limit on a message's text.
const TELEGRAM_TEXT_MAX: usize = 4096;
/// WhatsApp's limit on a text body.
const WHATSAPP_TEXT_MAX: usize = 4096;
/// Instagram's limit on a text, in bytes.
const INSTAGRAM_TEXT_MAX_BYTES: usize = 1000;
/// Telegram parameters that carry JSON; a form or query string sends them serialized.
const TELEGRAM_JSON_PARAMS: [&str; 4] = [
    "reply_markup",
    "entities",
    "link_preview_options",
    "reply_parameters",
];

const WHATSAPP_RATE_DETAILS: &str = "Message failed to send because there were too many messages sent from this phone number in a short period of time";
const INSTAGRAM_RATE_DETAILS: &str =
    "Message failed to send because there were too many calls in a short period of time";
const WHATSAPP_WINDOW_DETAILS: &str = "Message failed to send because more than 24 hours have passed since the customer last replied to this number.";
const META_TRANSIENT_DETAILS: &str = "The service is temporarily unavailable; retry later.";

/// What a provider answered to a send it accepted.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// `telegram`, `whatsapp` or `instagram`.
    pub provider: &'static str,
    /// The bot token, or Meta's bearer / `access_token`.
    pub token: String,
    /// Telegram's `chat_id` as a string, WhatsApp's `to`, Instagram's recipient id.
    pub chat: String,
    /// The text; `template:<name>` for a WhatsApp template, the body of an interactive one,
    /// `[<type>]` for other message types.
    pub text: String,
    /// The request's parameters as received (Telegram: query, form and JSON merged).
    pub body: Value,
    /// Unix milliseconds of arrival.
    pub at_ms: u128,
    /// The message id it answered with (Telegram's `message_id`, a wamid, an Instagram mid).
    pub external_id: String,
    /// The file of a photo, document or attachment sent by link, as fetched from the link.
    pub file: Option<Fetched>,
}

/// A file fetched from the link a send named.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub url: String,
    pub content_type: String,
    pub size: usize,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
}

/// A file the fake hosts, as if a client had sent it.
#[derive(Clone)]
struct Hosted {
    bytes: Vec<u8>,
    mime: String,
    name: String,
}

/// An error the fake answers instead of success, in each provider's own shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Telegram: 429 with `parameters.retry_after`; Meta: 429, code 130429 and `Retry-After`.
    TooManyRequests { retry_after: u64 },
    /// Telegram: 403 "bot was blocked by the user"; WhatsApp: 400, code 131047 (outside the
    /// 24-hour window); Instagram: 400, code 10 (outside the allowed window).
    Blocked,
    /// A transient failure: Telegram 502 Bad Gateway; Meta 500 with code 2.
    ServerError,
    /// This status and body as they are, whatever the provider.
    Status { status: u16, body: Value },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Telegram,
    Whatsapp,
    Instagram,
}

impl Provider {
    fn as_str(self) -> &'static str {
        match self {
            Provider::Telegram => "telegram",
            Provider::Whatsapp => "whatsapp",
            Provider::Instagram => "instagram",
        }
    }
}

#[derive(Default)]
struct State {
    sent: Vec<Sent>,
    /// Every send call, whatever it was answered.
    attempts: usize,
    /// Faults for the next sends: (how many more, which).
    fail_next: VecDeque<(usize, Fault)>,
    fail_chats: HashMap<String, Fault>,
    rate: Option<u32>,
    /// Arrival of the sends the rate limit let through in the last window.
    window: VecDeque<Instant>,
    rejected_429: usize,
    revoked: HashSet<String>,
    webhooks: Vec<(String, String, Option<String>)>,
    /// The webhook URL set now, per bot token.
    current_webhooks: HashMap<String, String>,
    /// The last `message_id` per (bot token, chat).
    message_ids: HashMap<(String, String), i64>,
    /// Updates posted through the control endpoint.
    updates_posted: i64,
    /// Files clients "sent", by id.
    media: HashMap<String, Hosted>,
    /// File downloads still to answer with 502 Bad Gateway.
    failing_downloads: usize,
}

impl State {
    /// Whether this download is one of the failing ones.
    fn download_fails(&mut self) -> bool {
        let fails = self.failing_downloads > 0;
        self.failing_downloads = self.failing_downloads.saturating_sub(1);
        fails
    }
}

impl State {
    /// Forgets what was recorded; faults, the rate limit, revoked tokens and id counters stay.
    fn clear(&mut self) {
        self.sent.clear();
        self.attempts = 0;
        self.rejected_429 = 0;
        self.webhooks.clear();
    }

    /// The fault for a send to any of `chats`, in order: a failing chat, then the next-sends
    /// queue, then the rate limit; `None` lets it through.
    fn gate(&mut self, chats: &[String]) -> Option<Fault> {
        if let Some(fault) = chats.iter().find_map(|c| self.fail_chats.get(c)) {
            return Some(fault.clone());
        }
        if let Some((left, fault)) = self.fail_next.front_mut() {
            let fault = fault.clone();
            *left -= 1;
            if *left == 0 {
                self.fail_next.pop_front();
            }
            return Some(fault);
        }
        if let Some(limit) = self.rate {
            let now = Instant::now();
            while self
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
            {
                self.window.pop_front();
            }
            if self.window.len() >= limit as usize {
                self.rejected_429 += 1;
                return Some(Fault::TooManyRequests {
                    retry_after: RATE_RETRY_AFTER,
                });
            }
            self.window.push_back(now);
        }
        None
    }
}

type Shared = Mutex<State>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running fake; dropping it stops the server too.
pub struct FakeProviders {
    /// `http://127.0.0.1:PORT`: the base URL of all three providers.
    pub url: String,
    state: Arc<Shared>,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl FakeProviders {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<FakeProviders> {
        Self::start_on(0).await
    }

    /// Starts on 127.0.0.1:`port` (0: a free one).
    pub async fn start_on(port: u16) -> std::io::Result<FakeProviders> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let state: Arc<Shared> = Arc::default();
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/_fake/sent", web::get().to(control_sent))
                .route("/_fake/stats", web::get().to(control_stats))
                .route("/_fake/webhooks", web::get().to(control_webhooks))
                .route("/_fake/clear", web::post().to(control_clear))
                .route("/_fake/reset", web::post().to(control_reset))
                .route("/_fake/fail", web::post().to(control_fail))
                .route("/_fake/rate", web::post().to(control_rate))
                .route("/_fake/revoke", web::post().to(control_revoke))
                .route(
                    "/_fake/telegram/update",
                    web::post().to(control_telegram_update),
                )
                .route("/_fake/meta/webhook", web::post().to(control_meta_webhook))
                .route("/_fake/media", web::post().to(control_media))
                .route("/_fake/media/{id}", web::get().to(media_download))
                .default_service(web::to(provider))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(FakeProviders {
            url: format!("http://{addr}"),
            state,
            handle,
            task: Some(task),
        })
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Every accepted send, in arrival order.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.state).sent.clone()
    }

    pub fn sent_count(&self) -> usize {
        lock(&self.state).sent.len()
    }

    /// Every send call, answered with success or not.
    pub fn attempts(&self) -> usize {
        lock(&self.state).attempts
    }

    /// Waits until `n` sends were accepted or `timeout` passed; returns what there is then.
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent();
            if sent.len() >= n || Instant::now() >= deadline {
                return sent;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Forgets the recorded sends, attempts, 429 count and setWebhook calls. Faults, the rate
    /// limit, revoked tokens and message id counters stay (see [`FakeProviders::reset`]).
    pub fn clear(&self) {
        lock(&self.state).clear();
    }

    /// Back to the state of a fresh start.
    pub fn reset(&self) {
        *lock(&self.state) = State::default();
    }

    /// The next `n` send calls (any provider) are answered with `fault`; calls add up in order.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        if n > 0 {
            lock(&self.state).fail_next.push_back((n, fault));
        }
    }

    /// Every send to this chat/recipient (Telegram `chat_id` as a string, WhatsApp `to` with or
    /// without `+`, Instagram recipient id) is answered with `fault`.
    pub fn fail_chat(&self, chat: &str, fault: Fault) {
        lock(&self.state).fail_chats.insert(chat.to_string(), fault);
    }

    /// Drops the pending [`FakeProviders::fail_next`] and [`FakeProviders::fail_chat`] faults.
    pub fn clear_faults(&self) {
        let mut st = lock(&self.state);
        st.fail_next.clear();
        st.fail_chats.clear();
    }

    /// Answers 429 (in each provider's shape, `retry_after` 1) to a send when `per_second`
    /// sends were already let through in the last second; `None` switches it off.
    pub fn limit_rate(&self, per_second: Option<u32>) {
        let mut st = lock(&self.state);
        st.rate = per_second;
        st.window.clear();
    }

    /// How many 429s the rate limit answered.
    pub fn rejected_429(&self) -> usize {
        lock(&self.state).rejected_429
    }

    /// Treats `token` as invalid: Telegram answers 401 Unauthorized, Meta 401 with code 190.
    pub fn revoke_token(&self, token: &str) {
        lock(&self.state).revoked.insert(token.to_string());
    }

    /// Hosts a file as if a client had sent it: the id is Telegram's `file_id` and WhatsApp's
    /// media id; [`FakeProviders::media_url`] is Instagram's attachment URL.
    pub fn host_file(&self, bytes: &[u8], mime: &str, name: &str) -> String {
        host(&self.state, bytes, mime, name)
    }

    /// Where a hosted file is downloaded from.
    pub fn media_url(&self, id: &str) -> String {
        format!("{}/_fake/media/{id}", self.url)
    }

    /// The next `n` file downloads (Telegram's file path, the media URL) answer 502.
    pub fn fail_downloads(&self, n: usize) {
        lock(&self.state).failing_downloads = n;
    }

    /// Takes a hosted file away (its downloads answer 404).
    pub fn drop_file(&self, id: &str) {
        lock(&self.state).media.remove(id);
    }

    /// setWebhook calls received: (bot token, url, secret_token).
    pub fn webhooks(&self) -> Vec<(String, String, Option<String>)> {
        lock(&self.state).webhooks.clone()
    }
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        // Stopping starts at the call; the returned future only waits for the outcome.
        #[allow(clippy::let_underscore_future)]
        let _ = self.handle.stop(false);
    }
}

// ---- provider routes ----

/// Routes every request that is not a control one by its path.
async fn provider(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    let post = req.method() == Method::POST;
    match segments.as_slice() {
        _ if path.starts_with("/_fake/") => {
            respond(404, json!({"error": format!("no control endpoint {path}")}))
        }
        ["file", bot, rest @ ..] if bot.starts_with("bot") && get => {
            telegram_file(&shared, &percent_decode(&bot[3..]), &rest.join("/"))
        }
        [bot, method] if bot.len() > 3 && bot.starts_with("bot") && (get || post) => {
            let method = percent_decode(method);
            // A photo or document by URL is fetched from it first, as Telegram does.
            let fetched = match method.to_ascii_lowercase().as_str() {
                m @ ("sendphoto" | "senddocument") => {
                    let key = if m == "sendphoto" {
                        "photo"
                    } else {
                        "document"
                    };
                    match telegram_params(&req, &body)
                        .ok()
                        .and_then(|p| p.get(key).and_then(Value::as_str).map(str::to_string))
                    {
                        Some(url) => Some(fetch_link(&url).await),
                        None => None,
                    }
                }
                _ => None,
            };
            telegram(
                &shared,
                &req,
                &percent_decode(&bot[3..]),
                &method,
                &body,
                fetched,
            )
        }
        [bot, ..] if bot.starts_with("bot") => telegram_error(404, "Not Found", None),
        [_, _, "messages"] | [_, "messages"] if post => {
            let link = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| meta_link(&b));
            let fetched = match link {
                Some(url) => Some(fetch_link(&url).await),
                None => None,
            };
            meta_send(&shared, &req, &body, fetched)
        }
        [_, account] | [account] if get && !account.is_empty() => {
            let account = percent_decode(account);
            if lock(&shared).media.contains_key(&account) {
                return media_info(&shared, &req, &account);
            }
            meta_info(&shared, &req, &account)
        }
        _ => respond(
            404,
            meta_error_body(
                None,
                2500,
                &format!("Unknown path components: {path}"),
                None,
            ),
        ),
    }
}

fn respond(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .json(body)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A number that depends only on `s`.
fn stable_number(s: &str) -> u64 {
    use sha2::Digest;
    let digest = <Sha256 as Digest>::digest(s.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `%XX` escapes of a path segment decoded (a token's `:` may arrive as `%3A`).
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high * 16 + low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query).unwrap_or_default()
}

// ---- Telegram ----

fn telegram_error(code: u16, description: &str, retry_after: Option<u64>) -> HttpResponse {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(seconds) = retry_after {
        body["parameters"] = json!({ "retry_after": seconds });
    }
    respond(code, body)
}

fn telegram_fault(fault: &Fault) -> HttpResponse {
    match fault {
        Fault::TooManyRequests { retry_after } => telegram_error(
            429,
            &format!("Too Many Requests: retry after {retry_after}"),
            Some(*retry_after),
        ),
        Fault::Blocked => telegram_error(403, "Forbidden: bot was blocked by the user", None),
        Fault::ServerError => telegram_error(502, "Bad Gateway", None),
        Fault::Status { status, body } => respond(*status, body.clone()),
    }
}

/// The bot's id: the token's numeric part, else a number derived from the token.
fn bot_id(token: &str) -> u64 {
    token
        .split(':')
        .next()
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| 1_000_000_000 + stable_number(token) % 9_000_000_000)
}

/// The bot as a User; `full` adds getMe's own fields.
fn bot_user(token: &str, full: bool) -> Value {
    let id = bot_id(token);
    let mut user = json!({
        "id": id,
        "is_bot": true,
        "first_name": "Fake bot",
        "username": format!("fake_{id}_bot"),
    });
    if full {
        user["can_join_groups"] = json!(true);
        user["can_read_all_group_messages"] = json!(false);
        user["supports_inline_queries"] = json!(false);
    }
    user
}

/// The Chat a `chat_id` names: positive ids are private chats, negative ones groups
/// (`-100…` supergroups), `@name` a channel.
fn telegram_chat(chat: &str) -> Value {
    match chat.parse::<i64>() {
        Ok(id) if id > 0 => json!({"id": id, "type": "private"}),
        Ok(id) if chat.starts_with("-100") => {
            json!({"id": id, "type": "supergroup", "title": "Fake supergroup"})
        }
        Ok(id) => json!({"id": id, "type": "group", "title": "Fake group"}),
        Err(_) => {
            let id = -(1_000_000_000_000 + (stable_number(chat) % 1_000_000_000) as i64);
            json!({
                "id": id,
                "type": "channel",
                "title": "Fake channel",
                "username": chat.trim_start_matches('@'),
            })
        }
    }
}

/// `chat_id` as the fake keys chats: an integer's digits or the string trimmed.
fn chat_key(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// Telegram's parameters from the query string and the body (JSON or form; the body wins).
fn telegram_params(req: &HttpRequest, body: &[u8]) -> Result<Map<String, Value>, String> {
    let mut params = Map::new();
    for (key, value) in query_pairs(req.query_string()) {
        params.insert(key, Value::String(value));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if body.iter().all(u8::is_ascii_whitespace) {
        // Parameters in the query string only.
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| "Bad Request: can't parse request body".to_string())?;
        for (key, value) in pairs {
            params.insert(key, Value::String(value));
        }
    } else if content_type.starts_with("multipart/form-data") {
        return Err("Bad Request: multipart/form-data is not supported by the fake".into());
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => params.extend(map),
            _ => return Err("Bad Request: can't parse JSON object".into()),
        }
    }
    for key in TELEGRAM_JSON_PARAMS {
        let parsed = match params.get(key) {
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .ok()
                .filter(|v| v.is_object() || v.is_array()),
            _ => None,
        };
        if let Some(value) = parsed {
            params.insert(key.to_string(), value);
        }
    }
    Ok(params)
}

fn telegram(
    shared: &Shared,
    req: &HttpRequest,
    token: &str,
    method: &str,
    body: &[u8],
    fetched: Option<Result<(Fetched, Vec<u8>), String>>,
) -> HttpResponse {
    let method = method.to_ascii_lowercase();
    let known = matches!(
        method.as_str(),
        "getme"
            | "setwebhook"
            | "deletewebhook"
            | "getwebhookinfo"
            | "sendmessage"
            | "sendphoto"
            | "senddocument"
            | "getfile"
    );
    let params = telegram_params(req, body);
    let mut st = lock(shared);
    if matches!(
        method.as_str(),
        "sendmessage" | "sendphoto" | "senddocument"
    ) {
        st.attempts += 1;
    }
    if st.revoked.contains(token) {
        return telegram_error(401, "Unauthorized", None);
    }
    if !known {
        return telegram_error(404, "Not Found: method not found", None);
    }
    let params = match params {
        Ok(params) => params,
        Err(description) => return telegram_error(400, &description, None),
    };
    match method.as_str() {
        "getme" => respond(200, json!({"ok": true, "result": bot_user(token, true)})),
        "setwebhook" => {
            let url = params
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let secret = params
                .get("secret_token")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(secret) = &secret
                && (secret.is_empty()
                    || secret.len() > 256
                    || !secret
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            {
                return telegram_error(
                    400,
                    "Bad Request: secret token contains unallowed characters",
                    None,
                );
            }
            st.webhooks.push((token.to_string(), url.clone(), secret));
            let description = if url.is_empty() {
                st.current_webhooks.remove(token);
                "Webhook was deleted"
            } else {
                st.current_webhooks.insert(token.to_string(), url);
                "Webhook was set"
            };
            respond(
                200,
                json!({"ok": true, "result": true, "description": description}),
            )
        }
        "deletewebhook" => {
            let description = match st.current_webhooks.remove(token) {
                Some(_) => "Webhook was deleted",
                None => "Webhook is already deleted",
            };
            respond(
                200,
                json!({"ok": true, "result": true, "description": description}),
            )
        }
        "getwebhookinfo" => {
            let url = st.current_webhooks.get(token).cloned().unwrap_or_default();
            respond(
                200,
                json!({
                    "ok": true,
                    "result": {"url": url, "has_custom_certificate": false, "pending_update_count": 0},
                }),
            )
        }
        "getfile" => {
            let id = params
                .get("file_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match st.media.get(id) {
                Some(f) => respond(
                    200,
                    json!({"ok": true, "result": {
                        "file_id": id,
                        "file_unique_id": format!("u{id}"),
                        "file_size": f.bytes.len(),
                        "file_path": format!("documents/{id}/{}", f.name),
                    }}),
                ),
                None => telegram_error(400, "Bad Request: invalid file_id", None),
            }
        }
        "sendmessage" => send_telegram(&mut st, token, params, None),
        _ => send_telegram(&mut st, token, params, Some((method.as_str(), fetched))),
    }
}

/// `GET /file/bot<token>/documents/<id>/<name>`: a hosted file's bytes.
fn telegram_file(shared: &Shared, token: &str, path: &str) -> HttpResponse {
    let mut st = lock(shared);
    if st.revoked.contains(token) {
        return telegram_error(401, "Unauthorized", None);
    }
    if st.download_fails() {
        return telegram_error(502, "Bad Gateway", None);
    }
    let id = path.split('/').nth(1).unwrap_or_default();
    match st.media.get(id) {
        Some(f) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(f.bytes.clone()),
        None => telegram_error(404, "Not Found", None),
    }
}

/// A file send: the method, and what fetching its URL gave.
type FileSend<'a> = (&'a str, Option<Result<(Fetched, Vec<u8>), String>>);

fn send_telegram(
    st: &mut State,
    token: &str,
    params: Map<String, Value>,
    file: Option<FileSend<'_>>,
) -> HttpResponse {
    let Some(chat) = params.get("chat_id").and_then(chat_key) else {
        return telegram_error(400, "Bad Request: chat_id is empty", None);
    };
    let mut fetched = None;
    let text = match &file {
        None => match params.get("text") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return telegram_error(400, "Bad Request: message text is empty", None),
        },
        Some((method, got)) => {
            let kind = if *method == "sendphoto" {
                "photo"
            } else {
                "document"
            };
            match got {
                None => {
                    return telegram_error(
                        400,
                        &format!("Bad Request: there is no {kind} in the request"),
                        None,
                    );
                }
                Some(Err(e)) => {
                    return telegram_error(
                        400,
                        &format!("Bad Request: failed to get HTTP URL content ({e})"),
                        None,
                    );
                }
                Some(Ok((f, bytes))) => {
                    if kind == "photo"
                        && !bytes.starts_with(&[0xFF, 0xD8])
                        && !bytes.starts_with(b"\x89PNG")
                    {
                        return telegram_error(400, "Bad Request: IMAGE_PROCESS_FAILED", None);
                    }
                    fetched = Some(f.clone());
                }
            }
            match params.get("caption").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => c.to_string(),
                _ => format!("[{kind}]"),
            }
        }
    };
    if text.chars().count() > TELEGRAM_TEXT_MAX {
        return telegram_error(400, "Bad Request: message is too long", None);
    }
    if let Some(fault) = st.gate(std::slice::from_ref(&chat)) {
        tracing::debug!(?fault, %chat, "fake telegram: fault");
        return telegram_fault(&fault);
    }
    let counter = st
        .message_ids
        .entry((token.to_string(), chat.clone()))
        .or_insert(0);
    *counter += 1;
    let message_id = *counter;
    let at_ms = now_ms();
    let mut message = json!({
        "message_id": message_id,
        "from": bot_user(token, false),
        "chat": telegram_chat(&chat),
        "date": (at_ms / 1000) as i64,
        "text": &text,
    });
    if let Some(markup) = params
        .get("reply_markup")
        .filter(|m| m.get("inline_keyboard").is_some())
    {
        message["reply_markup"] = markup.clone();
    }
    st.sent.push(Sent {
        provider: Provider::Telegram.as_str(),
        token: token.to_string(),
        chat,
        text,
        body: Value::Object(params),
        at_ms,
        external_id: message_id.to_string(),
        file: fetched,
    });
    respond(200, json!({"ok": true, "result": message}))
}

// ---- WhatsApp and Instagram ----

fn fbtrace_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("Fake{}", &id[..19])
}

/// Meta's error body; `details` goes to `error_data` (with `messaging_product` for WhatsApp).
fn meta_error_body(
    provider: Option<Provider>,
    code: i64,
    message: &str,
    details: Option<&str>,
) -> Value {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": fbtrace_id(),
    });
    if let Some(details) = details {
        error["error_data"] = match provider {
            Some(Provider::Whatsapp) => {
                json!({"messaging_product": "whatsapp", "details": details})
            }
            _ => json!({ "details": details }),
        };
    }
    json!({ "error": error })
}

fn meta_fault(provider: Provider, fault: &Fault) -> HttpResponse {
    match fault {
        Fault::TooManyRequests { retry_after } => {
            let details = match provider {
                Provider::Whatsapp => WHATSAPP_RATE_DETAILS,
                _ => INSTAGRAM_RATE_DETAILS,
            };
            HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
                .insert_header((header::RETRY_AFTER, retry_after.to_string()))
                .json(meta_error_body(
                    Some(provider),
                    130429,
                    "(#130429) Rate limit hit",
                    Some(details),
                ))
        }
        Fault::Blocked if provider == Provider::Whatsapp => respond(
            400,
            meta_error_body(
                Some(provider),
                131047,
                "(#131047) Re-engagement message",
                Some(WHATSAPP_WINDOW_DETAILS),
            ),
        ),
        Fault::Blocked => {
            let mut body = meta_error_body(
                Some(provider),
                10,
                "(#10) This message is sent outside of allowed window.",
                None,
            );
            body["error"]["error_subcode"] = json!(2534022);
            respond(400, body)
        }
        Fault::ServerError => {
            let mut body = meta_error_body(
                Some(provider),
                2,
                "(#2) Service temporarily unavailable",
                Some(META_TRANSIENT_DETAILS),
            );
            body["error"]["is_transient"] = json!(true);
            respond(500, body)
        }
        Fault::Status { status, body } => respond(*status, body.clone()),
    }
}

/// The access token: the `access_token` query parameter, else the bearer.
fn meta_token(req: &HttpRequest) -> Option<String> {
    let from_query = query_pairs(req.query_string())
        .into_iter()
        .find(|(key, _)| key == "access_token")
        .map(|(_, value)| value);
    let from_header = || {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_string())
    };
    from_query
        .or_else(from_header)
        .filter(|token| !token.is_empty())
}

/// 401 for a missing or revoked token, `None` for a good one.
fn meta_auth(st: &State, token: Option<&str>) -> Option<HttpResponse> {
    match token {
        None => Some(respond(
            401,
            meta_error_body(None, 190, "Invalid OAuth access token.", None),
        )),
        Some(token) if st.revoked.contains(token) => Some(respond(
            401,
            meta_error_body(
                None,
                190,
                "Error validating access token: The session has been invalidated.",
                None,
            ),
        )),
        Some(_) => None,
    }
}

/// The link of a WhatsApp image or document, or of an Instagram attachment.
fn meta_link(body: &Value) -> Option<String> {
    if body.get("messaging_product").is_some() {
        let kind = body["type"].as_str()?;
        return body[kind]["link"].as_str().map(str::to_string);
    }
    body["message"]["attachment"]["payload"]["url"]
        .as_str()
        .map(str::to_string)
}

fn meta_send(
    shared: &Shared,
    req: &HttpRequest,
    body: &[u8],
    fetched: Option<Result<(Fetched, Vec<u8>), String>>,
) -> HttpResponse {
    let token = meta_token(req);
    let parsed = serde_json::from_slice::<Value>(body);
    let mut st = lock(shared);
    st.attempts += 1;
    if let Some(denied) = meta_auth(&st, token.as_deref()) {
        return denied;
    }
    let token = token.unwrap_or_default();
    let Ok(Value::Object(body)) = parsed else {
        return respond(
            400,
            meta_error_body(
                None,
                100,
                "(#100) The request body is not a JSON object.",
                None,
            ),
        );
    };
    let whatsapp = body.contains_key("messaging_product");
    let file = match fetched {
        None => None,
        Some(Ok((f, _))) => Some(f),
        Some(Err(e)) if whatsapp => {
            return respond(
                400,
                meta_error_body(
                    Some(Provider::Whatsapp),
                    131053,
                    "(#131053) Media upload error",
                    Some(&format!("Downloading media from the link failed: {e}")),
                ),
            );
        }
        Some(Err(e)) => {
            return respond(
                400,
                meta_error_body(
                    Some(Provider::Instagram),
                    100,
                    &format!("(#100) Failed to fetch the file from the url: {e}"),
                    None,
                ),
            );
        }
    };
    let response = if whatsapp {
        send_whatsapp(&mut st, token, body)
    } else {
        send_instagram(&mut st, token, body)
    };
    if response.status().is_success()
        && let Some(last) = st.sent.last_mut()
    {
        last.file = file;
    }
    response
}

fn send_whatsapp(st: &mut State, token: String, body: Map<String, Value>) -> HttpResponse {
    let bad = |message: &str| {
        respond(
            400,
            meta_error_body(Some(Provider::Whatsapp), 100, message, None),
        )
    };
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return bad("(#100) Param messaging_product must be 'whatsapp'");
    }
    let to = match body.get("to") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return bad("(#100) The parameter to is required."),
    };
    let kind = match body.get("type").and_then(Value::as_str) {
        Some(kind) => kind.to_string(),
        None if body.contains_key("template") => "template".to_string(),
        None => "text".to_string(),
    };
    let text = match kind.as_str() {
        "text" => match body
            .get("text")
            .and_then(|t| t.get("body"))
            .and_then(Value::as_str)
        {
            Some(text) if !text.is_empty() => text.to_string(),
            _ => return bad("(#100) The parameter text['body'] is required."),
        },
        "template" => match body
            .get("template")
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) if !name.is_empty() => format!("template:{name}"),
            _ => return bad("(#100) The parameter template['name'] is required."),
        },
        // Reply buttons: the text is the message's body.
        "interactive" => body
            .get("interactive")
            .and_then(|i| i.get("body"))
            .and_then(|b| b.get("text"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| "[interactive]".to_string()),
        other => body
            .get(other)
            .and_then(|m| m.get("caption"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("[{other}]")),
    };
    if text.chars().count() > WHATSAPP_TEXT_MAX {
        return bad("(#100) Param text['body'] must be at most 4096 characters long.");
    }
    let wa_id: String = to.chars().filter(char::is_ascii_digit).collect();
    if let Some(fault) = st.gate(&[to.clone(), wa_id.clone(), format!("+{wa_id}")]) {
        tracing::debug!(?fault, %to, "fake whatsapp: fault");
        return meta_fault(Provider::Whatsapp, &fault);
    }
    let id = format!("wamid.FAKE{}", uuid::Uuid::new_v4().simple());
    let mut answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": &to, "wa_id": wa_id}],
        "messages": [{"id": &id}],
    });
    if kind == "template" {
        answer["messages"][0]["message_status"] = json!("accepted");
    }
    st.sent.push(Sent {
        provider: Provider::Whatsapp.as_str(),
        token,
        chat: to,
        text,
        body: Value::Object(body),
        at_ms: now_ms(),
        external_id: id,
        file: None,
    });
    respond(200, answer)
}

fn send_instagram(st: &mut State, token: String, body: Map<String, Value>) -> HttpResponse {
    let bad = |message: &str| {
        respond(
            400,
            meta_error_body(Some(Provider::Instagram), 100, message, None),
        )
    };
    let recipient = match body.get("recipient").and_then(|r| r.get("id")) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return bad("(#100) The parameter recipient is required"),
    };
    let Some(message) = body.get("message") else {
        return bad("(#100) The parameter message is required");
    };
    let text = match (
        message.get("text").and_then(Value::as_str),
        message.get("attachment"),
    ) {
        (Some(text), _) if !text.is_empty() => text.to_string(),
        (_, Some(attachment)) => format!(
            "[{}]",
            attachment
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("attachment")
        ),
        _ => return bad("(#100) Param message must be non-empty"),
    };
    if text.len() > INSTAGRAM_TEXT_MAX_BYTES {
        return bad("(#100) Length of param message[text] must be less than or equal to 1000");
    }
    if let Some(fault) = st.gate(std::slice::from_ref(&recipient)) {
        tracing::debug!(?fault, %recipient, "fake instagram: fault");
        return meta_fault(Provider::Instagram, &fault);
    }
    let id = format!("mid.FAKE{}", uuid::Uuid::new_v4().simple());
    let answer = json!({"recipient_id": &recipient, "message_id": &id});
    st.sent.push(Sent {
        provider: Provider::Instagram.as_str(),
        token,
        chat: recipient,
        text,
        body: Value::Object(body),
        at_ms: now_ms(),
        external_id: id,
        file: None,
    });
    respond(200, answer)
}

/// `GET /<version>/<id>`: a phone number's or Instagram account's basic fields (both kinds
/// in one answer), for checking a token on channel setup.
fn meta_info(shared: &Shared, req: &HttpRequest, account: &str) -> HttpResponse {
    let token = meta_token(req);
    if let Some(denied) = meta_auth(&lock(shared), token.as_deref()) {
        return denied;
    }
    let id = if account == "me" {
        let token = token.unwrap_or_default();
        format!("1784{:011}", stable_number(&token) % 100_000_000_000)
    } else {
        account.to_string()
    };
    respond(
        200,
        json!({
            "id": &id,
            "verified_name": "Fake business",
            "display_phone_number": display_phone_number(&id),
            "quality_rating": "GREEN",
            "username": format!("fake_{id}"),
            "name": "Fake account",
        }),
    )
}

fn display_phone_number(phone_number_id: &str) -> String {
    format!("1555{:07}", stable_number(phone_number_id) % 10_000_000)
}

// ---- control routes ----

fn parse_control<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<HttpResponse>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(HttpResponse::BadRequest().json(json!({"error": e.to_string()}))))
}

async fn control_sent(shared: web::Data<Shared>) -> HttpResponse {
    let sent = lock(&shared).sent.clone();
    HttpResponse::Ok().json(sent)
}

async fn control_stats(shared: web::Data<Shared>) -> HttpResponse {
    let st = lock(&shared);
    HttpResponse::Ok().json(json!({
        "sent": st.sent.len(),
        "attempts": st.attempts,
        "rejected_429": st.rejected_429,
        "rate_per_second": st.rate,
        "pending_faults": st.fail_next.iter().map(|(n, _)| n).sum::<usize>(),
        "failing_chats": st.fail_chats.keys().collect::<Vec<_>>(),
        "revoked_tokens": st.revoked.len(),
    }))
}

async fn control_webhooks(shared: web::Data<Shared>) -> HttpResponse {
    let webhooks: Vec<Value> = lock(&shared)
        .webhooks
        .iter()
        .map(|(token, url, secret)| json!({"token": token, "url": url, "secret_token": secret}))
        .collect();
    HttpResponse::Ok().json(webhooks)
}

async fn control_clear(shared: web::Data<Shared>) -> HttpResponse {
    lock(&shared).clear();
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn control_reset(shared: web::Data<Shared>) -> HttpResponse {
    *lock(&shared) = State::default();
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `{"n": 3, "fault": {...}}` fails the next sends; `{"chat": "42", "fault": {...}}` a chat.
#[derive(Deserialize)]
struct FailRequest {
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    chat: Option<String>,
    fault: Fault,
}

async fn control_fail(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let request: FailRequest = match parse_control(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let mut st = lock(&shared);
    match (request.chat, request.n) {
        (Some(chat), _) => {
            st.fail_chats.insert(chat, request.fault);
        }
        (None, n) => {
            let n = n.unwrap_or(1);
            if n > 0 {
                st.fail_next.push_back((n, request.fault));
            }
        }
    }
    HttpResponse::Ok().json(json!({"ok": true}))
}

#[derive(Deserialize)]
struct RateRequest {
    #[serde(default)]
    per_second: Option<u32>,
}

async fn control_rate(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let request: RateRequest = match parse_control(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let mut st = lock(&shared);
    st.rate = request.per_second;
    st.window.clear();
    HttpResponse::Ok().json(json!({"ok": true, "per_second": request.per_second}))
}

#[derive(Deserialize)]
struct RevokeRequest {
    token: String,
}

async fn control_revoke(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let request: RevokeRequest = match parse_control(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    lock(&shared).revoked.insert(request.token);
    HttpResponse::Ok().json(json!({"ok": true}))
}

#[derive(Deserialize)]
struct TelegramUpdateRequest {
    webhook_url: String,
    #[serde(default)]
    secret: String,
    chat_id: Value,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
    text: String,
}

/// Builds a text update (ids from counters), posts it; answers `{"status", "update"}`.
async fn control_telegram_update(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let request: TelegramUpdateRequest = match parse_control(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let chat_id = match &request.chat_id {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let Some(chat_id) = chat_id else {
        return HttpResponse::BadRequest().json(json!({"error": "chat_id must be an integer"}));
    };
    let (update_id, message_id) = {
        let mut st = lock(&shared);
        let n = st.updates_posted;
        st.updates_posted += 1;
        (FIRST_UPDATE_ID + n, FIRST_UPDATE_MESSAGE_ID + n)
    };
    let update = telegram_text_update(
        update_id,
        chat_id,
        request.first_name.as_deref().unwrap_or("Test"),
        request.username.as_deref().unwrap_or_default(),
        message_id,
        &request.text,
    );
    match post_telegram_update(&request.webhook_url, &request.secret, &update).await {
        Ok(status) => HttpResponse::Ok().json(json!({"status": status, "update": update})),
        Err(e) => HttpResponse::BadGateway().json(json!({"error": e, "update": update})),
    }
}

#[derive(Deserialize)]
struct MetaWebhookRequest {
    webhook_url: String,
    app_secret: String,
    payload: Value,
}

/// Posts `payload` signed with `app_secret`; answers `{"status"}`.
async fn control_meta_webhook(body: web::Bytes) -> HttpResponse {
    let request: MetaWebhookRequest = match parse_control(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let bytes = match serde_json::to_vec(&request.payload) {
        Ok(bytes) => bytes,
        Err(e) => return HttpResponse::BadRequest().json(json!({"error": e.to_string()})),
    };
    match post_meta_webhook(&request.webhook_url, &request.app_secret, &bytes).await {
        Ok(status) => HttpResponse::Ok().json(json!({ "status": status })),
        Err(e) => HttpResponse::BadGateway().json(json!({ "error": e })),
    }
}

fn host(shared: &Shared, bytes: &[u8], mime: &str, name: &str) -> String {
    let id = format!(
        "{}",
        4_000_000_000u64 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as u64
    );
    lock(shared).media.insert(
        id.clone(),
        Hosted {
            bytes: bytes.to_vec(),
            mime: if mime.is_empty() {
                "application/octet-stream".into()
            } else {
                mime.into()
            },
            name: if name.is_empty() {
                "file.bin".into()
            } else {
                name.into()
            },
        },
    );
    id
}

/// `POST /_fake/media?mime=…&name=…` with the file as the body: `{"id", "url"}`.
async fn control_media(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let q = query_pairs(req.query_string());
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let id = host(&shared, &body, &get("mime"), &get("name"));
    let url = format!("http://{}/_fake/media/{id}", req.connection_info().host());
    HttpResponse::Ok().json(json!({"id": id, "url": url}))
}

/// `GET /_fake/media/<id>`: a hosted file (WhatsApp's media URL, Instagram's attachment URL).
async fn media_download(path: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let mut st = lock(&shared);
    if st.download_fails() {
        return HttpResponse::BadGateway().finish();
    }
    match st.media.get(path.as_str()) {
        Some(f) => HttpResponse::Ok()
            .content_type(f.mime.as_str())
            .body(f.bytes.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

/// WhatsApp's `GET /<version>/<media id>`: where to download a client's file.
fn media_info(shared: &Shared, req: &HttpRequest, id: &str) -> HttpResponse {
    use sha2::Digest;
    let token = meta_token(req);
    let st = lock(shared);
    if let Some(denied) = meta_auth(&st, token.as_deref()) {
        return denied;
    }
    let Some(f) = st.media.get(id) else {
        return respond(
            404,
            meta_error_body(None, 100, "Unsupported get request.", None),
        );
    };
    respond(
        200,
        json!({
            "messaging_product": "whatsapp",
            "url": format!("http://{}/_fake/media/{id}", req.connection_info().host()),
            "mime_type": f.mime,
            "sha256": hex(&Sha256::digest(&f.bytes)),
            "file_size": f.bytes.len(),
            "id": id,
        }),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetches a file a send links to, as the provider would (up to 50 MB).
async fn fetch_link(url: &str) -> Result<(Fetched, Vec<u8>), String> {
    use sha2::Digest;
    let response = http_client()?
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if bytes.len() > 50 * 1024 * 1024 {
        return Err("the file is too large".into());
    }
    Ok((
        Fetched {
            url: url.to_string(),
            content_type,
            size: bytes.len(),
            sha256: hex(&Sha256::digest(&bytes)),
        },
        bytes.to_vec(),
    ))
}

// ---- webhooks towards Voronka ----

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

/// `sha256=<hex>` of HMAC-SHA256(app_secret, body): Meta's `X-Hub-Signature-256`.
pub use messaging::meta_signature;

/// Posts a Telegram Update JSON to `webhook_url` with header `X-Telegram-Bot-Api-Secret-Token`
/// (left out when `secret` is empty); returns the HTTP status.
pub async fn post_telegram_update(
    webhook_url: &str,
    secret: &str,
    update: &Value,
) -> Result<u16, String> {
    let mut request = http_client()?.post(webhook_url).json(update);
    if !secret.is_empty() {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// Posts a Meta (WhatsApp/Instagram) webhook body as it is, with
/// `X-Hub-Signature-256: sha256=<hex hmac(app_secret, body)>`; returns the HTTP status.
pub async fn post_meta_webhook(
    webhook_url: &str,
    app_secret: &str,
    body: &[u8],
) -> Result<u16, String> {
    let response = http_client()?
        .post(webhook_url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "facebookexternalua")
        .header("X-Hub-Signature-256", meta_signature(app_secret, body))
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

// ---- payload builders (reference §5) ----

/// A Telegram Update with a private-chat text message from user `chat_id`; a leading
/// `/command` gets its `bot_command` entity. An empty `username` is left out.
pub fn telegram_text_update(
    update_id: i64,
    chat_id: i64,
    first_name: &str,
    username: &str,
    message_id: i64,
    text: &str,
) -> Value {
    let mut from = json!({"id": chat_id, "is_bot": false, "first_name": first_name});
    let mut chat = json!({"id": chat_id, "first_name": first_name, "type": "private"});
    if !username.is_empty() {
        from["username"] = json!(username);
        chat["username"] = json!(username);
    }
    let mut message = json!({
        "message_id": message_id,
        "from": from,
        "chat": chat,
        "date": now_secs(),
        "text": text,
    });
    if text.starts_with('/') {
        let command = text.split_whitespace().next().unwrap_or(text);
        message["entities"] = json!([{
            "offset": 0,
            "length": command.encode_utf16().count(),
            "type": "bot_command",
        }]);
    }
    json!({"update_id": update_id, "message": message})
}

/// A WhatsApp webhook with one incoming text message from `wa_id` (profile `name`).
pub fn whatsapp_text_payload(
    phone_number_id: &str,
    wa_id: &str,
    name: &str,
    wamid: &str,
    text: &str,
) -> Value {
    whatsapp_change(
        phone_number_id,
        json!({
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": display_phone_number(phone_number_id),
                "phone_number_id": phone_number_id,
            },
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [{
                "from": wa_id,
                "id": wamid,
                "timestamp": now_secs().to_string(),
                "type": "text",
                "text": {"body": text},
            }],
        }),
    )
}

/// A WhatsApp webhook with one status (`sent`, `delivered`, `read` or `failed`) of the
/// message `wamid` sent to `recipient`; `failed` carries an error (131026, undeliverable).
pub fn whatsapp_status_payload(
    phone_number_id: &str,
    wamid: &str,
    recipient: &str,
    status: &str,
) -> Value {
    let now = now_secs();
    let mut entry = json!({
        "id": wamid,
        "status": status,
        "timestamp": now.to_string(),
        "recipient_id": recipient,
    });
    match status {
        "sent" | "delivered" => {
            let mut conversation = json!({
                "id": format!("{:032x}", stable_number(&format!("{phone_number_id}:{recipient}"))),
                "origin": {"type": "utility"},
            });
            if status == "sent" {
                conversation["expiration_timestamp"] = json!((now + 24 * 3600).to_string());
            }
            entry["conversation"] = conversation;
            entry["pricing"] =
                json!({"billable": true, "pricing_model": "CBP", "category": "utility"});
        }
        "failed" => {
            entry["errors"] = json!([{
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Message Undeliverable."},
            }]);
        }
        _ => {}
    }
    whatsapp_change(
        phone_number_id,
        json!({
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": display_phone_number(phone_number_id),
                "phone_number_id": phone_number_id,
            },
            "statuses": [entry],
        }),
    )
}

/// The envelope of one WhatsApp change; the entry id (the business account) derives from
/// the phone number id.
fn whatsapp_change(phone_number_id: &str, value: Value) -> Value {
    let waba_id = 100_000_000_000_000
        + stable_number(&format!("waba:{phone_number_id}")) % 900_000_000_000_000;
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id.to_string(),
            "changes": [{"value": value, "field": "messages"}],
        }],
    })
}

/// An Instagram webhook with one direct message from `sender` to the account `ig_id`.
pub fn instagram_text_payload(ig_id: &str, sender: &str, mid: &str, text: &str) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    json!({
        "object": "instagram",
        "entry": [{
            "id": ig_id,
            "time": now,
            "messaging": [{
                "sender": {"id": sender},
                "recipient": {"id": ig_id},
                "timestamp": now,
                "message": {"mid": mid, "text": text},
            }],
        }],
    })
}

// ---- CLI ----

const CONTROL_HELP: &str = r#"Control endpoints:
  GET  /_fake/sent             accepted sends (JSON array)
  GET  /_fake/stats            counters
  GET  /_fake/webhooks         setWebhook calls
  POST /_fake/clear            forget what was recorded
  POST /_fake/reset            back to a fresh start
  POST /_fake/fail             {"n":3,"fault":{"kind":"blocked"}} or {"chat":"42","fault":{...}}
  POST /_fake/rate             {"per_second":5} ({"per_second":null} switches it off)
  POST /_fake/revoke           {"token":"..."}
  POST /_fake/telegram/update  {"webhook_url":"...","secret":"...","chat_id":42,"first_name":"Ann","username":"ann","text":"Hi"}
  POST /_fake/meta/webhook     {"webhook_url":"...","app_secret":"...","payload":{...}}
Faults: {"kind":"too_many_requests","retry_after":5} | {"kind":"blocked"} | {"kind":"server_error"}
        | {"kind":"status","status":400,"body":{...}}"#;

/// Runs the fake until Ctrl-C (`voronka dev fake-providers --port N`), printing the URL and
/// the control endpoints.
pub async fn run_cli(port: u16) -> std::io::Result<()> {
    let fake = FakeProviders::start_on(port).await?;
    let url = &fake.url;
    println!("Fake messenger providers on {url} (Ctrl-C stops). Use it as the channels' base URL:");
    println!("  Telegram   {url}/bot<token>/sendMessage (getMe, setWebhook, deleteWebhook)");
    println!("  WhatsApp   {url}/<version>/<phone_number_id>/messages (Authorization: Bearer)");
    println!("  Instagram  {url}/<version>/<ig_id|me>/messages (access_token or Bearer)");
    println!("{CONTROL_HELP}");
    tokio::signal::ctrl_c().await?;
    fake.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    type Hits = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

    /// A webhook receiver keeping (secret header, signature header, body) of each POST.
    async fn receiver() -> (String, Hits, ServerHandle) {
        let hits: Hits = Arc::default();
        let data = web::Data::new(hits.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route(
                "/hook",
                web::post().to(
                    |req: HttpRequest, body: web::Bytes, hits: web::Data<Hits>| async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        hits.lock().unwrap().push((
                            header("x-telegram-bot-api-secret-token"),
                            header("x-hub-signature-256"),
                            body.to_vec(),
                        ));
                        HttpResponse::Ok().finish()
                    },
                ),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        (url, hits, handle)
    }

    #[test]
    fn telegram_update_has_the_reference_fields() {
        let update = telegram_text_update(
            10000,
            1111111,
            "Test Firstname",
            "Testusername",
            1365,
            "/start now",
        );
        assert_eq!(update["update_id"], 10000);
        let message = &update["message"];
        assert_eq!(message["message_id"], 1365);
        assert_eq!(message["chat"]["id"], 1111111);
        assert_eq!(message["chat"]["type"], "private");
        assert_eq!(message["chat"]["first_name"], "Test Firstname");
        assert_eq!(message["chat"]["username"], "Testusername");
        assert_eq!(message["from"]["id"], 1111111);
        assert_eq!(message["from"]["is_bot"], false);
        assert_eq!(message["from"]["username"], "Testusername");
        assert_eq!(message["text"], "/start now");
        assert!(message["date"].as_i64().unwrap() > 1_600_000_000);
        assert_eq!(message["entities"][0]["type"], "bot_command");
        assert_eq!(message["entities"][0]["length"], 6);

        let plain = telegram_text_update(1, -5, "Ann", "", 2, "hello");
        assert!(plain["message"]["from"].get("username").is_none());
        assert!(plain["message"].get("entities").is_none());
    }

    #[test]
    fn whatsapp_payloads_have_the_reference_fields() {
        let p = whatsapp_text_payload(
            "123456123",
            "16315551181",
            "test user name",
            "wamid.ABC",
            "hi there",
        );
        assert_eq!(p["object"], "whatsapp_business_account");
        let change = &p["entry"][0]["changes"][0];
        assert_eq!(change["field"], "messages");
        let value = &change["value"];
        assert_eq!(value["messaging_product"], "whatsapp");
        assert_eq!(value["metadata"]["phone_number_id"], "123456123");
        assert!(value["metadata"]["display_phone_number"].is_string());
        assert_eq!(value["contacts"][0]["wa_id"], "16315551181");
        assert_eq!(value["contacts"][0]["profile"]["name"], "test user name");
        let message = &value["messages"][0];
        assert_eq!(message["from"], "16315551181");
        assert_eq!(message["id"], "wamid.ABC");
        assert_eq!(message["type"], "text");
        assert_eq!(message["text"]["body"], "hi there");
        let ts = message["timestamp"].as_str().unwrap();
        assert!(ts.parse::<i64>().is_ok());
        assert!(p["entry"][0]["id"].is_string());

        let s = whatsapp_status_payload("114896151713920", "wamid.XYZ", "60173526233", "delivered");
        let status = &s["entry"][0]["changes"][0]["value"]["statuses"][0];
        assert_eq!(status["id"], "wamid.XYZ");
        assert_eq!(status["status"], "delivered");
        assert_eq!(status["recipient_id"], "60173526233");
        assert!(status["timestamp"].is_string());
        assert_eq!(status["pricing"]["category"], "utility");
        assert!(status["conversation"]["id"].is_string());
        assert!(
            s["entry"][0]["changes"][0]["value"]
                .get("messages")
                .is_none()
        );

        let failed = whatsapp_status_payload("1", "wamid.F", "2", "failed");
        let status = &failed["entry"][0]["changes"][0]["value"]["statuses"][0];
        assert_eq!(status["errors"][0]["code"], 131026);
    }

    #[test]
    fn instagram_payload_has_the_reference_fields() {
        let p = instagram_text_payload(
            "17841400000000000",
            "1234567890123456",
            "aWdfZAG1",
            "first message",
        );
        assert_eq!(p["object"], "instagram");
        let entry = &p["entry"][0];
        assert_eq!(entry["id"], "17841400000000000");
        assert!(entry["time"].is_i64());
        let event = &entry["messaging"][0];
        assert_eq!(event["sender"]["id"], "1234567890123456");
        assert_eq!(event["recipient"]["id"], "17841400000000000");
        assert!(event["timestamp"].is_i64());
        assert_eq!(event["message"]["mid"], "aWdfZAG1");
        assert_eq!(event["message"]["text"], "first message");
    }

    #[test]
    fn faults_read_from_json() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"too_many_requests","retry_after":3}"#).unwrap();
        assert!(matches!(f, Fault::TooManyRequests { retry_after: 3 }));
        let f: Fault = serde_json::from_str(r#"{"kind":"blocked"}"#).unwrap();
        assert!(matches!(f, Fault::Blocked));
        let f: Fault = serde_json::from_str(r#"{"kind":"server_error"}"#).unwrap();
        assert!(matches!(f, Fault::ServerError));
        let f: Fault =
            serde_json::from_str(r#"{"kind":"status","status":418,"body":{"x":1}}"#).unwrap();
        assert!(matches!(f, Fault::Status { status: 418, ref body } if body["x"] == 1));
    }

    #[test]
    fn tokens_and_paths_decode() {
        assert_eq!(percent_decode("123%3AABC-def"), "123:ABC-def");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(bot_id("123456:ABC"), 123456);
        assert_eq!(bot_id("not-a-bot"), bot_id("not-a-bot"));
        assert!(bot_id("not-a-bot") >= 1_000_000_000);
    }

    #[tokio::test]
    async fn telegram_sends_faults_and_revocation() {
        let fake = FakeProviders::start().await.unwrap();
        let http = client();
        let url = |method: &str| format!("{}/bot123:ABC/{method}", fake.url);

        let me: Value = http
            .get(url("getMe"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["ok"], true);
        assert_eq!(me["result"]["id"], 123);
        assert_eq!(me["result"]["username"], "fake_123_bot");

        let r = http
            .post(url("setWebhook"))
            .json(&json!({"url": "http://x/hooks/telegram/k", "secret_token": "s3cret"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            fake.webhooks(),
            vec![(
                "123:ABC".to_string(),
                "http://x/hooks/telegram/k".to_string(),
                Some("s3cret".to_string())
            )]
        );

        let send = |chat: Value| {
            http.post(url("sendMessage"))
                .json(&json!({"chat_id": chat, "text": "Hi", "reply_markup": {"inline_keyboard": []}}))
                .send()
        };
        let body: Value = send(json!(42)).await.unwrap().json().await.unwrap();
        assert_eq!(body["ok"], true);
        assert_eq!(body["result"]["message_id"], 1);
        assert_eq!(body["result"]["chat"]["id"], 42);
        assert_eq!(body["result"]["chat"]["type"], "private");
        assert_eq!(body["result"]["from"]["is_bot"], true);
        assert_eq!(body["result"]["text"], "Hi");
        let body: Value = send(json!("42")).await.unwrap().json().await.unwrap();
        assert_eq!(body["result"]["message_id"], 2);
        let r = http
            .post(url("SENDMESSAGE"))
            .form(&[("chat_id", "43"), ("text", "Form")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        fake.fail_next(1, Fault::Blocked);
        let r = send(json!(42)).await.unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["description"],
            "Forbidden: bot was blocked by the user"
        );

        fake.fail_chat("7", Fault::TooManyRequests { retry_after: 3 });
        let r = send(json!(7)).await.unwrap();
        assert_eq!(r.status(), 429);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error_code"], 429);
        assert_eq!(body["parameters"]["retry_after"], 3);

        let r = http
            .post(format!("{}/_fake/fail", fake.url))
            .json(&json!({"n": 1, "fault": {"kind": "server_error"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(send(json!(42)).await.unwrap().status(), 502);

        let r = http
            .post(url("sendMessage"))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = http.post(url("noSuchMethod")).send().await.unwrap();
        assert_eq!(r.status(), 404);

        let sent = fake.sent();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].provider, "telegram");
        assert_eq!(sent[0].token, "123:ABC");
        assert_eq!(sent[0].chat, "42");
        assert_eq!(sent[0].text, "Hi");
        assert_eq!(sent[0].external_id, "1");
        assert_eq!(sent[2].chat, "43");
        assert_eq!(sent[2].text, "Form");
        assert_eq!(fake.attempts(), 7);
        let listed: Vec<Value> = http
            .get(format!("{}/_fake/sent", fake.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);

        fake.revoke_token("123:ABC");
        let r = http.get(url("getMe")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        );

        fake.clear();
        assert_eq!(fake.sent_count(), 0);
        assert_eq!(fake.attempts(), 0);
        fake.stop().await;
    }

    #[tokio::test]
    async fn meta_sends_and_errors() {
        let fake = FakeProviders::start().await.unwrap();
        let http = client();
        let wa = format!("{}/v21.0/123456123/messages", fake.url);

        let r = http
            .post(&wa)
            .bearer_auth("WA-TOKEN")
            .json(&json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234", "type": "text", "text": {"preview_url": false, "body": "Hello"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["messaging_product"], "whatsapp");
        assert_eq!(body["contacts"][0]["input"], "+16505551234");
        assert_eq!(body["contacts"][0]["wa_id"], "16505551234");
        assert!(
            body["messages"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("wamid.FAKE")
        );

        let r = http
            .post(&wa)
            .bearer_auth("WA-TOKEN")
            .json(&json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let r = http
            .post(&wa)
            .json(&json!({"messaging_product": "whatsapp", "to": "1", "text": {"body": "x"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 190);
        assert_eq!(body["error"]["message"], "Invalid OAuth access token.");

        fake.fail_chat("16505551234", Fault::Blocked);
        let r = http
            .post(&wa)
            .bearer_auth("WA-TOKEN")
            .json(&json!({"messaging_product": "whatsapp", "to": "+16505551234", "text": {"body": "late"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 131047);
        assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");

        let ig = format!("{}/v21.0/me/messages?access_token=IG-TOKEN", fake.url);
        let r = http
            .post(&ig)
            .json(&json!({"recipient": {"id": "1234"}, "message": {"text": "Hi"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["recipient_id"], "1234");
        assert!(body["message_id"].as_str().unwrap().starts_with("mid.FAKE"));

        fake.fail_next(1, Fault::TooManyRequests { retry_after: 2 });
        let r = http
            .post(&ig)
            .json(&json!({"recipient": {"id": "1234"}, "message": {"text": "Hi"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers().get("retry-after").unwrap(), "2");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 130429);

        let r = http.post(&ig).body("[").send().await.unwrap();
        assert_eq!(r.status(), 400);

        fake.revoke_token("IG-TOKEN");
        let r = http
            .post(&ig)
            .json(&json!({"recipient": {"id": "1234"}, "message": {"text": "Hi"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 190);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Error validating access token")
        );

        let sent = fake.sent();
        let providers: Vec<&str> = sent.iter().map(|s| s.provider).collect();
        assert_eq!(providers, ["whatsapp", "whatsapp", "instagram"]);
        assert_eq!(sent[0].token, "WA-TOKEN");
        assert_eq!(sent[0].chat, "+16505551234");
        assert_eq!(sent[0].text, "Hello");
        assert_eq!(sent[1].text, "template:hello_world");
        assert_eq!(sent[2].token, "IG-TOKEN");
        assert_eq!(sent[2].chat, "1234");
        fake.stop().await;
    }

    #[tokio::test]
    async fn rate_limit_answers_429_past_the_window() {
        let fake = FakeProviders::start().await.unwrap();
        let http = client();
        let url = format!("{}/bot1:T/sendMessage", fake.url);
        fake.limit_rate(Some(2));
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let r = http
                .post(&url)
                .json(&json!({"chat_id": 1, "text": "x"}))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            if r.status() == 429 {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["parameters"]["retry_after"], 1);
            }
        }
        assert_eq!(statuses, [200, 200, 429]);
        assert_eq!(fake.rejected_429(), 1);
        fake.limit_rate(None);
        let r = http
            .post(&url)
            .json(&json!({"chat_id": 1, "text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(fake.wait_for_sent(3, Duration::from_secs(1)).await.len(), 3);
        fake.stop().await;
    }

    #[tokio::test]
    async fn webhooks_are_posted_signed() {
        let (hook, hits, handle) = receiver().await;
        let body =
            serde_json::to_vec(&whatsapp_text_payload("1", "2", "Ann", "wamid.A", "hi")).unwrap();
        assert_eq!(
            post_meta_webhook(&hook, "app-secret", &body).await.unwrap(),
            200
        );
        let update = telegram_text_update(10000, 1111111, "Test", "test", 1365, "/start");
        assert_eq!(
            post_telegram_update(&hook, "s3cret", &update)
                .await
                .unwrap(),
            200
        );

        let fake = FakeProviders::start().await.unwrap();
        let answer: Value = client()
            .post(format!("{}/_fake/telegram/update", fake.url))
            .json(&json!({"webhook_url": &hook, "secret": "s3cret", "chat_id": 5, "first_name": "Ann", "username": "ann", "text": "hello"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"], 200);
        assert_eq!(answer["update"]["update_id"], FIRST_UPDATE_ID);

        let hits = hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].1, meta_signature("app-secret", &body));
        assert_eq!(hits[0].2, body);
        assert_eq!(hits[1].0, "s3cret");
        let posted: Value = serde_json::from_slice(&hits[2].2).unwrap();
        assert_eq!(posted["message"]["chat"]["id"], 5);
        assert_eq!(posted["message"]["text"], "hello");
        fake.stop().await;
        handle.stop(false).await;
    }
}
