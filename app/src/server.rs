//! The composition root and the HTTP server: builds each module behind its trait, wires the web
//! UI, the API and the probes, and runs until SIGTERM or Ctrl-C.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::cookie::Key;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{ErrorHandlers, Next, from_fn};
use actix_web::{App, HttpServer, body::MessageBody, web};
use base64::Engine;
use kernel::db::{DbPool, PoolOptions, build_pool};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::{AppState, Modules};
use crate::web::limits::SignInLimits;

/// The application's secret: from config, else `<data_dir>/secret.key` (made on first start).
pub fn load_secret(config: &Config) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(key) = &config.secret_key {
        return b64
            .decode(key.trim())
            .map_err(|e| format!("secret_key: {e}"));
    }
    let path = config.data_dir.join("secret.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return b64
            .decode(text.trim())
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    let mut bytes = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(b64.encode(bytes).as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(bytes.to_vec())
}

/// The client of a module that runs as its own service (`[modules.<m>] mode = "remote"`).
fn remote(config: &Config, module: &'static str) -> Option<kernel::remote::RemoteClient> {
    if !config.is_remote(module) {
        return None;
    }
    let url = config.modules.get(module)?.url.clone()?;
    let secret = config.remote.secret.clone()?;
    Some(kernel::remote::RemoteClient::new(
        module,
        &url,
        secret.as_bytes(),
        Duration::from_millis(config.remote.timeout_ms),
    ))
}

/// Builds every module behind its trait: in-process, or the client of its service when config
/// says the module is remote (callers cannot tell the difference).
pub fn compose(pool: &DbPool, secret: &[u8], config: &Config) -> Modules {
    let token_key = Sha256::new()
        .chain_update(b"voronka:api-tokens:")
        .chain_update(secret)
        .finalize()
        .to_vec();
    let accounts: Arc<dyn accounts_api::Accounts> = match remote(config, "accounts") {
        Some(r) => Arc::new(accounts_api::remote::AccountsClient::new(r)),
        None => Arc::new(accounts::AccountsService::new(pool.clone(), token_key)),
    };
    let deals: Arc<dyn deals_api::Deals> = match remote(config, "deals") {
        Some(r) => Arc::new(deals_api::remote::DealsClient::new(r)),
        None => Arc::new(deals::DealsService::new(pool.clone(), accounts.clone())),
    };
    let contacts: Arc<dyn contacts_api::Contacts> = match remote(config, "contacts") {
        Some(r) => Arc::new(contacts_api::remote::ContactsClient::new(r)),
        None => Arc::new(contacts::ContactsService::new(
            pool.clone(),
            accounts.clone(),
        )),
    };
    let activities: Arc<dyn activities_api::Activities> = match remote(config, "activities") {
        Some(r) => Arc::new(activities_api::remote::ActivitiesClient::new(r)),
        None => Arc::new(activities::ActivitiesService::new(
            pool.clone(),
            accounts.clone(),
            deals.clone(),
            contacts.clone(),
        )),
    };
    let mut module_subscribers: Vec<Arc<dyn kernel::inbox::Subscriber>> = Vec::new();
    let messaging: Arc<dyn messaging_api::Messaging> = match remote(config, "messaging") {
        Some(r) => Arc::new(messaging_api::remote::MessagingClient::new(r)),
        None => {
            let mut settings = config.messaging.settings(secret);
            settings.public_url = Some(config.public_url());
            if config.is_remote("accounts") {
                // Users' rights come from another process: reuse a user's scope for 2 s (a
                // change of rights reaches chats that much later) instead of a call per request.
                settings.scope_ttl = Some(std::time::Duration::from_secs(2));
            }
            let messaging = messaging::MessagingService::new(
                pool.clone(),
                accounts.clone(),
                deals.clone(),
                contacts.clone(),
                settings,
            );
            module_subscribers.push(Arc::new(messaging.notifier()));
            Arc::new(messaging)
        }
    };
    let automation: Arc<dyn automation_api::Automation> = match remote(config, "automation") {
        Some(r) => Arc::new(automation_api::remote::AutomationClient::new(r)),
        None => {
            let automation = automation::AutomationService::new(
                pool.clone(),
                accounts.clone(),
                deals.clone(),
                activities.clone(),
                contacts.clone(),
                Some(messaging.clone() as Arc<dyn messaging_api::Chats>),
                config.automation.settings(),
            );
            module_subscribers.push(Arc::new(automation.matcher()));
            module_subscribers.push(Arc::new(automation.webhook_feed()));
            module_subscribers.push(Arc::new(automation.bot_replies()));
            Arc::new(automation)
        }
    };
    let analytics: Arc<dyn analytics_api::Analytics> = match remote(config, "analytics") {
        Some(r) => Arc::new(analytics_api::remote::AnalyticsClient::new(r)),
        None => Arc::new(analytics::AnalyticsService::new(
            pool.clone(),
            accounts.clone(),
            deals.clone(),
        )),
    };
    let remote_modules = crate::config::MODULES
        .iter()
        .copied()
        .filter(|m| config.is_remote(m))
        .collect();
    Modules {
        analytics,
        accounts,
        deals,
        contacts,
        activities,
        automation,
        messaging,
        module_subscribers,
        remote: remote_modules,
    }
}

pub fn build_state(
    config: Config,
    db_url: &str,
    jobs: Option<crate::jobs::JobStore>,
) -> Result<AppState, String> {
    let secret = load_secret(&config)?;
    if secret.len() < 64 {
        return Err("the secret key must be at least 64 bytes".into());
    }
    let pool = build_pool(
        db_url,
        &PoolOptions {
            max_size: config.db.pool_size,
            wait_timeout: Duration::from_secs(config.db.timeout_secs),
        },
    )?;
    let modules = compose(&pool, &secret, &config);
    let sign_in_limits = SignInLimits::new(
        config.auth.sign_in_per_login_per_minute,
        config.auth.sign_in_per_ip_per_minute,
    );
    Ok(AppState {
        cookie_key: Key::from(&secret),
        modules,
        pool,
        sign_in_limits,
        api_limits: crate::api::limits::ApiLimits::new(config.auth.api_requests_per_second),
        metrics: Metrics::new(),
        config,
        jobs,
    })
}

/// Records every request's latency and status under its route pattern, and logs it.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let res = next.call(req).await?;
    let elapsed = started.elapsed();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        state
            .metrics
            .requests
            .with_label_values(&[method.as_str(), route.as_str(), &status.to_string()])
            .inc();
        state
            .metrics
            .latency
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    tracing::info!(
        target: "voronka::http",
        method = %method,
        path = %res.request().path(),
        route = %route,
        status,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    Ok(res)
}

/// Starts the HTTP server on `listener`; returns its handle and the future that runs it.
pub fn start_http(
    state: web::Data<AppState>,
    listener: TcpListener,
) -> std::io::Result<(ServerHandle, actix_web::dev::Server)> {
    let workers = match state.config.web.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let data = state.clone();
    let server = HttpServer::new(move || {
        // A service process (`serve --modules`) answers other processes' calls, providers'
        // webhooks and probes; the UI and the public API are the monolith's.
        let service_only = data.config.serving.is_some();
        App::new()
            .app_data(data.clone())
            .app_data(web::FormConfig::default().limit(256 * 1024))
            .app_data(web::PathConfig::default().error_handler(crate::api::path_error))
            .app_data(web::PayloadConfig::new(crate::api::problem::BODY_LIMIT))
            .wrap(ErrorHandlers::new().handler(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                crate::api::problem::payload_too_large,
            ))
            .wrap(from_fn(crate::web::session::session_layer))
            .wrap(from_fn(observe))
            .configure(crate::health::routes)
            .configure(|cfg| {
                if !service_only {
                    crate::api::routes(cfg);
                }
            })
            .configure(crate::hooks::routes)
            .configure(crate::service::routes)
            .configure(|cfg| {
                if !service_only {
                    crate::web::routes(cfg);
                }
            })
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(20)
    .listen(listener)?
    .run();
    Ok((server.handle(), server))
}

async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    if req.path().starts_with("/api/") {
        use actix_web::ResponseError;
        return crate::api::ApiError(kernel::AppError::not_found("endpoint")).error_response();
    }
    use actix_web::ResponseError;
    crate::web::error::WebError(kernel::AppError::not_found("page")).error_response()
}

/// The job queues of this build's subscribers (Redis keeps no list of its queues).
/// The names of this build's event subscribers (each has its queue `events.<name>`).
pub const SUBSCRIBER_NAMES: [&str; 9] = [
    "deals.contact_merges",
    "contacts.deal_links",
    "contacts.contacted",
    "activities.log",
    "analytics.facts",
    "automation.triggers",
    "automation.webhooks",
    "automation.bot_replies",
    "messaging.notifications",
];

/// Every queue of this build: one per subscriber, and the modules' job queues.
pub fn queues() -> Vec<String> {
    SUBSCRIBER_NAMES
        .iter()
        .map(|s| crate::events::pg::queue_of(s))
        .chain([
            crate::work::CONTACT_FILES.to_string(),
            crate::work::AUTOMATION_WORK.to_string(),
            crate::work::MESSAGING_WORK.to_string(),
            crate::import::IMPORT_RUNS.to_string(),
        ])
        .collect()
}

/// The event subscribers of this build, wired to the modules they read through.
pub fn subscribers(modules: &Modules) -> crate::events::Subscribers {
    // A remote module's subscribers run in its service, not here.
    let local = |m: &str| !modules.remote.contains(&m);
    let mut all: Vec<Arc<dyn kernel::inbox::Subscriber>> = Vec::new();
    if local("deals") {
        all.push(Arc::new(deals::ContactMerges));
    }
    if local("contacts") {
        let deal_links = std::sync::Arc::new(contacts::DealLinks::new());
        deal_links.connect(modules.deals.clone());
        all.push(deal_links);
        all.push(Arc::new(contacts::Contacted));
    }
    if local("activities") {
        all.push(Arc::new(activities::EventLog));
    }
    if local("analytics") {
        all.push(Arc::new(analytics::Projector));
    }
    all.extend(modules.module_subscribers.iter().cloned());
    Arc::new(all)
}

/// A subscriber of a module that runs as a service elsewhere: known here only to route events
/// to its queue (its service works the queue).
struct Elsewhere {
    name: &'static str,
    schema: &'static str,
    types: &'static [&'static str],
}

#[async_trait::async_trait]
impl kernel::inbox::Subscriber for Elsewhere {
    fn name(&self) -> &str {
        self.name
    }

    fn schema(&self) -> &'static str {
        self.schema
    }

    fn event_types(&self) -> &'static [&'static str] {
        self.types
    }

    async fn handle(
        &self,
        _conn: &mut diesel_async::AsyncPgConnection,
        _event: &kernel::events::EventEnvelope,
    ) -> kernel::AppResult<()> {
        Err(kernel::AppError::internal(
            "this subscriber runs in its module's service",
        ))
    }
}

/// Where the PostgreSQL bus delivers: the `local` subscribers, and those of the `remote` modules
/// (their services share the database and work their queues).
pub fn routes(local: &crate::events::Subscribers, remote: &[&str]) -> crate::events::Subscribers {
    use kernel::inbox::Subscriber;
    let mut all: Vec<Arc<dyn kernel::inbox::Subscriber>> = local.iter().cloned().collect();
    for m in remote {
        let (schema, list): (&'static str, Vec<(&'static str, &'static [&'static str])>) = match *m
        {
            "deals" => (
                "deals",
                vec![("deals.contact_merges", deals::ContactMerges.event_types())],
            ),
            "contacts" => (
                "contacts",
                vec![
                    (
                        "contacts.deal_links",
                        contacts::DealLinks::new().event_types(),
                    ),
                    ("contacts.contacted", contacts::Contacted.event_types()),
                ],
            ),
            "activities" => (
                "activities",
                vec![("activities.log", activities::EventLog.event_types())],
            ),
            "analytics" => (
                "analytics",
                vec![("analytics.facts", analytics::Projector.event_types())],
            ),
            "automation" => ("automation", automation::SUBSCRIBER_ROUTES.to_vec()),
            "messaging" => ("messaging", messaging::SUBSCRIBER_ROUTES.to_vec()),
            _ => continue,
        };
        for (name, types) in list {
            if !all.iter().any(|s| s.name() == name) {
                all.push(Arc::new(Elsewhere {
                    name,
                    schema,
                    types,
                }));
            }
        }
    }
    Arc::new(all)
}

/// Schemas without an outbox or inbox: the importer publishes no events and reacts to none (it
/// writes through the other modules, whose outboxes carry the events of what it writes).
pub const NO_OUTBOX: &[&str] = &[importer::SCHEMA];

/// The schemas whose outboxes this process relays: every module's it runs (a remote module's
/// outbox is in its service's database, relayed there).
pub fn outbox_schemas(config: &Config) -> Vec<&'static str> {
    crate::database::MIGRATIONS
        .iter()
        .map(|m| m.schema)
        .filter(|s| !config.is_remote(s) && !NO_OUTBOX.contains(s))
        .collect()
}

/// Forgets recovered rate-limit keys every minute, so memory use stays flat.
pub fn spawn_housekeeping(state: web::Data<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            state.sign_in_limits.prune();
        }
    })
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this
/// is called, not when it is first polled, so call it before announcing readiness.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
