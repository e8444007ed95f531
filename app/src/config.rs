//! Typed configuration: defaults, then a TOML file, then `VORONKA_*` environment variables (nested
//! keys joined by `__`), then command-line flags. Validated once at start; a bad value stops the
//! start with a message that names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the web server listens.
    pub listen: SocketAddr,
    /// The URL people open, used in printed links (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// Voronka's own files: the private PostgreSQL cluster, the generated secret key.
    pub data_dir: PathBuf,
    /// An existing PostgreSQL database; without it Voronka runs a private cluster in `data_dir`.
    pub database_url: Option<String>,
    /// Base64 of at least 64 random bytes: signs and encrypts cookies, signs API tokens.
    /// Generated into `<data_dir>/secret.key` when not given.
    pub secret_key: Option<String>,
    pub web: WebConfig,
    pub db: DbConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub events: EventsConfig,
    pub jobs: JobsConfig,
    pub automation: AutomationConfig,
    pub messaging: MessagingConfig,
    pub modules: BTreeMap<String, ModuleConfig>,
    /// Calls between modules run as separate services.
    pub remote: RemoteConfig,
    /// Set by `voronka serve --modules …`: the only modules this process runs (as their service).
    #[serde(skip)]
    pub serving: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Shared by the processes of one installation: signs the calls between services (HMAC-SHA256),
    /// at least 32 characters. Without it this process serves no module to others, and no module
    /// may be remote.
    pub secret: Option<String>,
    /// One try of a call to a remote module; reads are tried up to three times.
    pub timeout_ms: u64,
    /// Where a service process (`serve --modules …`) finds the modules it does not run (the
    /// monolith's address), unless `[modules.<m>] url` names another.
    pub url: Option<String>,
}

impl Config {
    pub fn module_mode(&self, module: &str) -> ModuleMode {
        self.modules.get(module).map(|m| m.mode).unwrap_or_default()
    }

    pub fn is_remote(&self, module: &str) -> bool {
        self.module_mode(module) == ModuleMode::Remote
    }

    /// Makes this process the service of `modules` only (`voronka serve --modules`): every other
    /// module is reached remotely (at its `[modules.<m>] url`, else `[remote] url`), and the
    /// served modules' own database (`[modules.<m>] database_url`) becomes the process's.
    pub fn serve_only(&mut self, modules: &[String]) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if modules.is_empty() {
            return fail("`--modules` needs at least one module".into());
        }
        for m in modules {
            if !MODULES.contains(&m.as_str()) {
                return fail(format!(
                    "unknown module `{m}`; this build has: {}",
                    MODULES.join(", ")
                ));
            }
        }
        for m in MODULES {
            let served = modules.iter().any(|x| x == m);
            let entry = self.modules.entry(m.to_string()).or_default();
            if served {
                entry.mode = ModuleMode::Local;
                continue;
            }
            entry.mode = ModuleMode::Remote;
            if entry.url.is_none() {
                match &self.remote.url {
                    Some(u) => entry.url = Some(u.clone()),
                    None => {
                        return fail(format!(
                            "key `remote.url`: a service process needs the address of the modules it does not run (`{m}`)"
                        ));
                    }
                }
            }
        }
        let own: Vec<&String> = modules
            .iter()
            .filter_map(|m| self.modules.get(m).and_then(|c| c.database_url.as_ref()))
            .collect();
        if let Some(first) = own.first() {
            if own.iter().any(|u| u != first) || own.len() != modules.len() {
                return fail(
                    "the modules served together must share one `database_url` (or none)".into(),
                );
            }
            self.database_url = Some((*first).clone());
        }
        self.serving = Some(modules.to_vec());
        self.validate()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingConfig {
    /// Base64 of 32 bytes that encrypt channel credentials; derived from the secret key when
    /// not given (changing either makes stored credentials unreadable: reconnect the channels).
    pub credentials_key: Option<String>,
    /// Work handed to a worker and not finished in this time is handed out again.
    pub requeue_after_secs: u64,
    /// One provider call's limit.
    pub send_timeout_secs: u64,
    /// Attempts at one message (429s, provider errors, network) before it fails for good.
    pub max_send_attempts: i32,
    /// The first retry's wait when the provider names none; it doubles, up to five minutes.
    pub retry_base_ms: u64,
    /// Messages to one chat: one per this interval, with bursts of `chat_burst`.
    pub chat_interval_ms: u64,
    pub chat_burst: u32,
    /// Days processed webhook bodies are kept.
    pub keep_days: i32,
    /// Messaging jobs one process works at once (sends spend most of their time waiting for
    /// the provider and the pacing).
    pub workers: usize,
}

impl MessagingConfig {
    pub fn settings(&self, secret: &[u8]) -> messaging::Settings {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = self
            .credentials_key
            .as_deref()
            .and_then(|k| {
                base64::engine::general_purpose::STANDARD
                    .decode(k.trim())
                    .ok()
            })
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .unwrap_or_else(|| {
                Sha256::new()
                    .chain_update(b"voronka:messaging-credentials:")
                    .chain_update(secret)
                    .finalize()
                    .into()
            });
        messaging::Settings {
            credentials_key: key,
            requeue_after: std::time::Duration::from_secs(self.requeue_after_secs),
            send_timeout: std::time::Duration::from_secs(self.send_timeout_secs),
            max_send_attempts: self.max_send_attempts,
            retry_base: std::time::Duration::from_millis(self.retry_base_ms),
            keep_days: self.keep_days,
            chat_interval: std::time::Duration::from_millis(self.chat_interval_ms),
            chat_burst: self.chat_burst,
            scope_ttl: None,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationConfig {
    /// Let webhooks reach loopback, private and link-local addresses (the SSRF guard is off).
    pub allow_private_destinations: bool,
    /// A change made by a chain of more robots' runs than this does not start triggers (a loop).
    pub max_depth: i32,
    pub webhook_timeout_secs: u64,
    /// Attempts per webhook delivery before it is given up.
    pub webhook_max_attempts: i32,
    /// The first retry's wait; each next one doubles, up to an hour.
    pub webhook_backoff_ms: u64,
    /// A webhook whose deliveries failed this many times in a row is switched off.
    pub webhook_disable_after: i32,
    /// Working hours (UTC, Monday to Friday) for triggers that wait for them: "09:00", "18:00".
    pub work_day_from: String,
    pub work_day_to: String,
    /// Work handed to a worker and not finished in this time is handed out again.
    pub requeue_after_secs: u64,
    /// The SMTP server for robots' e-mails: `smtp://host:25` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://user:password@host` (TLS); none: the e-mail action is not offered.
    pub smtp_url: Option<String>,
    /// The sender of robots' e-mails.
    pub email_from: String,
    /// Days finished runs, bot runs and webhook deliveries are kept.
    pub keep_days: i32,
}

impl AutomationConfig {
    pub fn settings(&self) -> automation::Settings {
        let time = |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap_or_default();
        automation::Settings {
            max_depth: self.max_depth,
            allow_private_destinations: self.allow_private_destinations,
            webhook_timeout: std::time::Duration::from_secs(self.webhook_timeout_secs),
            webhook_max_attempts: self.webhook_max_attempts,
            webhook_backoff: std::time::Duration::from_millis(self.webhook_backoff_ms),
            webhook_disable_after: self.webhook_disable_after,
            work_day: (time(&self.work_day_from), time(&self.work_day_to)),
            requeue_after: std::time::Duration::from_secs(self.requeue_after_secs),
            smtp_url: self.smtp_url.clone(),
            email_from: self.email_from.clone(),
            keep_days: self.keep_days,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Postgres,
    Rabbitmq,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// `postgres` (nothing else to run) or `rabbitmq` (several processes or hosts).
    pub bus: BusKind,
    pub amqp_url: String,
    /// Names the RabbitMQ exchange (`<namespace>.events`) and queues (`<namespace>.events.<subscriber>`)
    /// of this installation: installations sharing a broker need different ones.
    pub amqp_namespace: String,
    /// How long the outbox relay lets events gather after a wake-up before it publishes them
    /// (longer: bigger batches, fewer deliveries, a little more latency).
    pub gather_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStoreKind {
    Postgres,
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Where jobs wait: `postgres` (nothing else to run) or `redis` (scale-out).
    pub store: JobStoreKind,
    pub redis_url: String,
    /// Attempts before a job is dead (listed on the jobs page for a retry).
    pub max_attempts: i32,
    /// The first retry's delay; each next one doubles (with jitter), up to an hour.
    pub retry_base_ms: u64,
    /// Jobs one queue runs at once in one process.
    pub concurrency: usize,
    /// Connections of the job store's pool.
    pub pool_size: u32,
    /// How often idle workers look for due jobs. With the PostgreSQL store a new job wakes its
    /// workers at once (LISTEN/NOTIFY), so this poll only finds jobs that fell due later (retries
    /// after their backoff); the Redis store has no wake-up, and its workers poll at most every
    /// 100 ms.
    pub poll_ms: u64,
    /// Workers' heartbeat: results are written and crashed workers' jobs re-queued at this pace
    /// (a worker missing 5 heartbeats is taken for dead).
    pub heartbeat_ms: u64,
    /// How long finished jobs stay in the PostgreSQL store (counted on the jobs page) before a
    /// sweep removes them; dead jobs stay until an admin runs or discards them.
    pub keep_done_minutes: u32,
}

/// What a `voronka serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Web, relay and workers.
    #[default]
    All,
    /// Only the web UI and API.
    Web,
    /// Only the relay and the background workers.
    Workers,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Mark cookies `Secure` (turn on behind HTTPS).
    pub secure_cookies: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    pub pool_size: usize,
    /// Seconds a request waits for a database connection before failing.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether anyone may create a new account from the sign-up page.
    pub allow_sign_up: bool,
    /// Sign-in attempts allowed per minute for one e-mail.
    pub sign_in_per_login_per_minute: u32,
    /// Sign-in attempts allowed per minute from one IP address.
    pub sign_in_per_ip_per_minute: u32,
    /// Public API requests allowed per second per integration (an OAuth client, or one
    /// long-lived token); amoCRM's limit is 7. 0 lifts the limit.
    pub api_requests_per_second: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `voronka=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModuleMode {
    #[default]
    Local,
    Remote,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    #[serde(default)]
    pub mode: ModuleMode,
    pub url: Option<String>,
    pub database_url: Option<String>,
}

/// The modules this build contains.
pub const MODULES: &[&str] = &[
    "accounts",
    "deals",
    "contacts",
    "activities",
    "automation",
    "messaging",
    "analytics",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("voronka-data"),
            database_url: None,
            secret_key: None,
            web: WebConfig {
                workers: 0,
                secure_cookies: false,
            },
            db: DbConfig {
                pool_size: 16,
                timeout_secs: 5,
            },
            auth: AuthConfig {
                allow_sign_up: true,
                sign_in_per_login_per_minute: 5,
                sign_in_per_ip_per_minute: 30,
                api_requests_per_second: 7,
            },
            log: LogConfig {
                format: LogFormat::Text,
                level: "info".into(),
            },
            events: EventsConfig {
                bus: BusKind::Postgres,
                amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                amqp_namespace: "voronka".into(),
                gather_ms: 20,
            },
            jobs: JobsConfig {
                store: JobStoreKind::Postgres,
                redis_url: "redis://127.0.0.1:6379/".into(),
                max_attempts: 8,
                retry_base_ms: 2000,
                concurrency: 8,
                pool_size: 20,
                poll_ms: 1000,
                heartbeat_ms: 1000,
                keep_done_minutes: 60,
            },
            automation: AutomationConfig {
                allow_private_destinations: false,
                max_depth: 5,
                webhook_timeout_secs: 10,
                webhook_max_attempts: 8,
                webhook_backoff_ms: 30_000,
                webhook_disable_after: 50,
                work_day_from: "09:00".into(),
                work_day_to: "18:00".into(),
                requeue_after_secs: 300,
                smtp_url: None,
                email_from: "Voronka <robot@localhost>".into(),
                keep_days: 90,
            },
            messaging: MessagingConfig {
                credentials_key: None,
                requeue_after_secs: 120,
                send_timeout_secs: 15,
                max_send_attempts: 10,
                retry_base_ms: 2000,
                chat_interval_ms: 1000,
                chat_burst: 3,
                keep_days: 7,
                workers: 16,
            },
            modules: BTreeMap::new(),
            remote: RemoteConfig {
                secret: None,
                timeout_ms: 5000,
                url: None,
            },
            serving: None,
        }
    }
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Config {
    pub fn retry_policy(&self) -> crate::jobs::RetryPolicy {
        crate::jobs::RetryPolicy {
            max_attempts: self.jobs.max_attempts,
            base: std::time::Duration::from_millis(self.jobs.retry_base_ms),
            cap: std::time::Duration::from_secs(3600),
        }
    }

    /// Loads the configuration: `file` (or `voronka.toml` in the working directory if present),
    /// then the environment, then `overrides`, and validates it.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) if !f.exists() => {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None if Path::new("voronka.toml").exists() => {
                fig = fig.merge(Toml::file_exact("voronka.toml"))
            }
            None => {}
        }
        fig = fig
            // `VORONKA_CONFIG` names the file; `VORONKA_TEST_*` belong to the test harness.
            .merge(Env::prefixed("VORONKA_").split("__").filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                k != "config" && !k.starts_with("test_")
            }))
            .merge(Serialized::defaults(overrides));
        let config: Config = fig.extract().map_err(|e| {
            let messages: Vec<String> = e
                .into_iter()
                .map(|e| {
                    let key = e.path.join(".");
                    let what = e.kind.to_string();
                    if key.is_empty() {
                        what
                    } else {
                        format!("key `{key}`: {what}")
                    }
                })
                .collect();
            ConfigError(messages.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, msg: &str| Err(ConfigError(format!("key `{key}`: {msg}")));
        if self.db.pool_size == 0 || self.db.pool_size > 1000 {
            return fail("db.pool_size", "must be between 1 and 1000");
        }
        if self.db.timeout_secs == 0 {
            return fail("db.timeout_secs", "must be at least 1");
        }
        if self.auth.sign_in_per_login_per_minute == 0 || self.auth.sign_in_per_ip_per_minute == 0 {
            return fail(
                "auth.sign_in_per_login_per_minute",
                "rate limits must be at least 1 per minute",
            );
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return fail("database_url", "must be a postgres:// or postgresql:// URL");
        }
        if let Some(key) = &self.secret_key {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
                Ok(bytes) if bytes.len() >= 64 => {}
                _ => return fail("secret_key", "must be base64 of at least 64 random bytes"),
            }
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return fail("public_url", "must start with http:// or https://");
        }
        if !(1..=100).contains(&self.jobs.max_attempts) {
            return fail("jobs.max_attempts", "must be between 1 and 100");
        }
        let ns = &self.events.amqp_namespace;
        if ns.is_empty()
            || ns.len() > 100
            || !ns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return fail(
                "events.amqp_namespace",
                "must be 1 to 100 letters, digits, '-', '_' or '.'",
            );
        }
        if self.jobs.poll_ms < 10 {
            return fail("jobs.poll_ms", "must be at least 10");
        }
        if self.jobs.heartbeat_ms < 50 {
            return fail("jobs.heartbeat_ms", "must be at least 50");
        }
        if self.jobs.keep_done_minutes > 60 * 24 * 90 {
            return fail("jobs.keep_done_minutes", "must be at most 90 days");
        }
        if self.jobs.concurrency == 0 || self.jobs.pool_size == 0 {
            return fail(
                "jobs.concurrency",
                "jobs.concurrency and jobs.pool_size must be at least 1",
            );
        }
        if !(self.jobs.redis_url.starts_with("redis://")
            || self.jobs.redis_url.starts_with("rediss://"))
        {
            return fail("jobs.redis_url", "must be a redis:// URL");
        }
        if !(self.events.amqp_url.starts_with("amqp://")
            || self.events.amqp_url.starts_with("amqps://"))
        {
            return fail("events.amqp_url", "must be an amqp:// URL");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return fail(
                "log.level",
                "is not a valid filter (try `info` or `voronka=debug,info`)",
            );
        }
        let a = &self.automation;
        if !(1..=50).contains(&a.max_depth) {
            return fail("automation.max_depth", "must be between 1 and 50");
        }
        if !(1..=100).contains(&a.webhook_max_attempts) {
            return fail(
                "automation.webhook_max_attempts",
                "must be between 1 and 100",
            );
        }
        if a.webhook_timeout_secs == 0 || a.webhook_timeout_secs > 300 {
            return fail(
                "automation.webhook_timeout_secs",
                "must be between 1 and 300",
            );
        }
        if a.webhook_disable_after < 1 {
            return fail("automation.webhook_disable_after", "must be at least 1");
        }
        if !(1..=3650).contains(&a.keep_days) {
            return fail("automation.keep_days", "must be between 1 and 3650");
        }
        if a.requeue_after_secs < 10 {
            return fail("automation.requeue_after_secs", "must be at least 10");
        }
        for (key, t) in [
            ("automation.work_day_from", &a.work_day_from),
            ("automation.work_day_to", &a.work_day_to),
        ] {
            if chrono::NaiveTime::parse_from_str(t, "%H:%M").is_err() {
                return fail(key, "must be a time of day like \"09:00\"");
            }
        }
        if let Some(url) = &a.smtp_url
            && let Err(e) = automation::smtp_transport(url)
        {
            return fail("automation.smtp_url", &e);
        }
        if automation::check_sender(&a.email_from).is_err() {
            return fail(
                "automation.email_from",
                "must be an address like \"Voronka <robot@example.com>\"",
            );
        }
        if a.work_day_from >= a.work_day_to {
            return fail("automation.work_day_to", "must be later than work_day_from");
        }
        let m = &self.messaging;
        if let Some(k) = &m.credentials_key {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(k.trim()) {
                Ok(b) if b.len() == 32 => {}
                _ => return fail("messaging.credentials_key", "must be base64 of 32 bytes"),
            }
        }
        if m.requeue_after_secs < 10 {
            return fail("messaging.requeue_after_secs", "must be at least 10");
        }
        if m.send_timeout_secs == 0 || m.send_timeout_secs > 120 {
            return fail("messaging.send_timeout_secs", "must be between 1 and 120");
        }
        if !(1..=100).contains(&m.max_send_attempts) {
            return fail("messaging.max_send_attempts", "must be between 1 and 100");
        }
        if m.chat_interval_ms == 0 || m.chat_burst == 0 {
            return fail(
                "messaging.chat_interval_ms",
                "the interval and the burst must be positive",
            );
        }
        if !(1..=3650).contains(&m.keep_days) {
            return fail("messaging.keep_days", "must be between 1 and 3650");
        }
        if !(1..=1000).contains(&m.workers) {
            return fail("messaging.workers", "must be between 1 and 1000");
        }
        for (name, m) in &self.modules {
            let key = format!("modules.{name}");
            if !MODULES.contains(&name.as_str()) {
                return fail(
                    &key,
                    &format!("unknown module; this build has: {}", MODULES.join(", ")),
                );
            }
            if m.mode == ModuleMode::Remote {
                match m.url.as_deref() {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                    _ => {
                        return fail(
                            &format!("{key}.url"),
                            "a remote module needs the http(s) URL of its service",
                        );
                    }
                }
                if self.remote.secret.as_deref().is_none_or(|s| s.len() < 32) {
                    return fail(
                        "remote.secret",
                        "remote modules need the installation's shared secret (32 characters or more)",
                    );
                }
            }
        }
        if self.remote.secret.as_deref().is_some_and(|s| s.len() < 32) {
            return fail("remote.secret", "must be at least 32 characters");
        }
        if !(100..=600_000).contains(&self.remote.timeout_ms) {
            return fail("remote.timeout_ms", "must be between 100 and 600000");
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = Config::default();
        c.db.pool_size = 0;
        assert!(c.validate().unwrap_err().0.contains("db.pool_size"));
        let c = Config {
            secret_key: Some("short".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.contains("secret_key"));
        let mut c = Config::default();
        c.modules.insert("billing".into(), ModuleConfig::default());
        assert!(c.validate().unwrap_err().0.contains("modules.billing"));
        // A remote module needs its service's URL and the shared secret.
        let mut c = Config::default();
        c.modules.insert(
            "messaging".into(),
            ModuleConfig {
                mode: ModuleMode::Remote,
                url: None,
                database_url: None,
            },
        );
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("modules.messaging.url")
        );
        c.modules.get_mut("messaging").unwrap().url = Some("http://10.0.0.5:8091".into());
        assert!(c.validate().unwrap_err().0.contains("remote.secret"));
        c.remote.secret = Some("x".repeat(32));
        assert!(c.validate().is_ok());
        assert!(c.is_remote("messaging") && !c.is_remote("deals"));
    }
}
