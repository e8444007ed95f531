//! `spawn_app`: the real server on a random port over a database of its own, and a browser-like
//! HTTP client (cookies, no automatic redirects) to drive it.

use std::net::TcpListener;

use accounts_api::{Lang, NewAccount, NewUser, UserInfo};
use actix_web::web;
use base64::Engine;
use kernel::testing::TestDb;
use kernel::{AccountId, Caller};
use reqwest::StatusCode;
use voronka::config::Config;
use voronka::state::AppState;

pub struct TestApp {
    pub url: String,
    pub state: web::Data<AppState>,
    pub db: TestDb,
    /// With `VORONKA_TEST_REMOTE=messaging[,…]`: the service process (in-process here) that runs
    /// those modules, which `state` reaches over signed HTTP calls.
    pub service: Option<web::Data<AppState>>,
}

/// The secret the test processes share when modules run remote.
pub const TEST_REMOTE_SECRET: &str = "the test installation's shared secret, 32+ chars";

/// The modules the suite runs as services (`VORONKA_TEST_REMOTE=messaging`), or none.
pub fn remote_modules() -> Vec<String> {
    std::env::var("VORONKA_TEST_REMOTE")
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn(adjust, None).await
}

/// The app as `voronka serve` runs it: with its job store, and its relay, subscribers and job
/// workers (imports, exports) running, polling often. Stop the backbone at the end.
pub async fn spawn_app_with_workers() -> (TestApp, voronka::backbone::Backbone) {
    spawn_app_with_workers_and(|_| {}).await
}

/// `spawn_app_with_workers` with the config adjusted first.
pub async fn spawn_app_with_workers_and(
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, voronka::backbone::Backbone) {
    let queues = voronka::server::queues();
    let app = spawn_app_with_jobs(
        &queues.iter().map(String::as_str).collect::<Vec<_>>(),
        |c| {
            c.jobs.poll_ms = 20;
            adjust(c)
        },
    )
    .await;
    let backbone = start_backbone(&app).await;
    (app, backbone)
}

/// Starts (again) the relay, the subscribers and the job workers of `app`, as a process start does
/// (and those of its service process, when modules run remote).
pub async fn start_backbone(app: &TestApp) -> voronka::backbone::Backbone {
    let service = match &app.service {
        None => None,
        Some(svc) => Some(
            voronka::backbone::Backbone::start(
                &svc.config,
                &app.db.url,
                svc.pool.clone(),
                svc.jobs.clone().expect("job store"),
                svc.metrics.clone(),
                voronka::backbone::Work {
                    subscribers: voronka::server::subscribers(&svc.modules),
                    schemas: voronka::server::outbox_schemas(&svc.config),
                    modules: Some(svc.modules.clone()),
                },
            )
            .await
            .expect("service backbone"),
        ),
    };
    let backbone = voronka::backbone::Backbone::start(
        &app.state.config,
        &app.db.url,
        app.state.pool.clone(),
        app.state.jobs.clone().expect("job store"),
        app.state.metrics.clone(),
        voronka::backbone::Work {
            subscribers: voronka::server::subscribers(&app.state.modules),
            schemas: voronka::server::outbox_schemas(&app.state.config),
            modules: Some(app.state.modules.clone()),
        },
    )
    .await
    .expect("backbone");
    // Stopping "the app" stops its service too, as when the whole installation goes down.
    match service {
        Some(s) => backbone.with(s),
        None => backbone,
    }
}

/// Another process of the same installation (of the service, when modules run remote): its
/// own state — caches, in-process rate limiters — on the app's database, without a backbone.
pub async fn another_process(app: &TestApp) -> web::Data<AppState> {
    let config = match &app.service {
        Some(svc) => svc.config.clone(),
        None => app.state.config.clone(),
    };
    web::Data::new(voronka::server::build_state(config, &app.db.url, None).expect("state"))
}

/// The app with its job store set up, for the backbone's tests; `queues` are the job queues the
/// test will use (the Redis store needs to know them).
pub async fn spawn_app_with_jobs(queues: &[&str], adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn(adjust, Some(queues.iter().map(|q| q.to_string()).collect())).await
}

async fn spawn(adjust: impl FnOnce(&mut Config), with_jobs: Option<Vec<String>>) -> TestApp {
    // Errors the app logs show up in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()))
        .try_init();
    let db = tokio::task::spawn_blocking(|| TestDb::new(voronka::database::MIGRATIONS))
        .await
        .expect("test database");
    let mut config = Config {
        database_url: Some(db.url.clone()),
        secret_key: Some(base64::engine::general_purpose::STANDARD.encode(rand_bytes())),
        data_dir: std::env::temp_dir().join(format!("voronka-test-{}", db.name)),
        ..Config::default()
    };
    config.web.workers = 1;
    config.db.pool_size = 8;
    let remote = remote_modules();
    if !remote.is_empty() {
        config.remote.secret = Some(TEST_REMOTE_SECRET.into());
        // Two processes per test: fewer connections each (the service runs one module's
        // workers only).
        config.db.pool_size = 6;
        config.jobs.pool_size = 16;
    }
    adjust(&mut config);
    let store = async |config: &Config| match &with_jobs {
        Some(queues) => Some(
            voronka::backbone::job_store(config, &db.url, queues.clone())
                .await
                .expect("job store"),
        ),
        None => None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // Where providers reach the app (the links of files sent to clients).
    if config.public_url.is_none() {
        config.public_url = Some(url.clone());
    }
    // The service of the remote modules, as `voronka serve --modules …` on the same database,
    // reaching the other modules at the app.
    let service = if remote.is_empty() {
        None
    } else {
        let mut sc = config.clone();
        sc.remote.url = Some(url.clone());
        sc.serve_only(&remote).expect("service config");
        sc.db.pool_size = 4;
        sc.jobs.pool_size = 8;
        let svc_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let svc_url = format!("http://{}", svc_listener.local_addr().expect("addr"));
        let jobs = store(&sc).await;
        let svc =
            web::Data::new(voronka::server::build_state(sc, &db.url, jobs).expect("service state"));
        let (_h, server) =
            voronka::server::start_http(svc.clone(), svc_listener).expect("start service");
        tokio::spawn(server);
        for m in &remote {
            config.modules.insert(
                m.clone(),
                voronka::config::ModuleConfig {
                    mode: voronka::config::ModuleMode::Remote,
                    url: Some(svc_url.clone()),
                    database_url: None,
                },
            );
        }
        Some(svc)
    };
    let jobs = store(&config).await;
    let state = web::Data::new(voronka::server::build_state(config, &db.url, jobs).expect("state"));
    let (_handle, server) = voronka::server::start_http(state.clone(), listener).expect("start");
    tokio::spawn(server);
    TestApp {
        url,
        state,
        db,
        service,
    }
}

fn rand_bytes() -> [u8; 64] {
    let mut b = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b
}

pub const PASSWORD: &str = "correct-horse-42";

/// An account with its administrator, created through the module trait.
pub struct Tenant {
    pub account: AccountId,
    pub admin: UserInfo,
}

impl TestApp {
    pub async fn tenant(&self, name: &str) -> Tenant {
        let email = format!("admin@{}.test", name.to_lowercase().replace(' ', "-"));
        let (account, admin) = self
            .state
            .modules
            .accounts
            .create_account(NewAccount {
                name: name.into(),
                subdomain: None,
                admin_name: format!("{name} Admin"),
                admin_email: email,
                admin_password: PASSWORD.into(),
                lang: Lang::En,
            })
            .await
            .expect("create account");
        Tenant {
            account: account.id,
            admin,
        }
    }

    /// Gives `user` the right to see and change only his own deals (every action, level "own").
    pub async fn limit_to_own_deals(&self, admin: kernel::Caller, user: kernel::UserId) {
        use accounts_api::{Action, Entity, Level, Rights, UserPatch};
        let mut own = Rights::member();
        for a in Action::ALL {
            own.entity_mut(Entity::Deals).set(a, Level::Own);
        }
        self.state
            .modules
            .accounts
            .update_user(
                admin,
                user,
                UserPatch {
                    rights: Some(own),
                    ..Default::default()
                },
            )
            .await
            .expect("limit to own deals");
    }

    pub async fn member(&self, tenant: &Tenant, email: &str) -> UserInfo {
        self.state
            .modules
            .accounts
            .create_user(
                Caller::user(tenant.account, tenant.admin.id),
                NewUser {
                    name: format!("Member {email}"),
                    email: email.into(),
                    password: PASSWORD.into(),
                    is_admin: false,
                    lang: Lang::En,
                    time_zone: "Europe/Moscow".into(),
                    group_id: None,
                    role_id: None,
                },
            )
            .await
            .expect("create member")
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    pub async fn signed_in(&self, email: &str) -> Client {
        let c = self.client();
        let res = c.sign_in(email, PASSWORD).await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "sign-in of {email} should succeed"
        );
        c
    }

    /// Runs SQL against the test database directly (to inspect state, or simulate time passing).
    pub async fn sql(&self, sql: &str) {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let mut conn = AsyncPgConnection::establish(&self.db.url)
            .await
            .expect("connect");
        conn.batch_execute(sql).await.expect("sql");
    }

    /// The text column `v` of the one row `sql` selects.
    pub async fn text_row(&self, sql: &str) -> String {
        use diesel::sql_types::Text;
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct V {
            #[diesel(sql_type = Text)]
            v: String,
        }
        let mut conn = AsyncPgConnection::establish(&self.db.url)
            .await
            .expect("connect");
        diesel::sql_query(sql)
            .get_result::<V>(&mut conn)
            .await
            .expect("one row")
            .v
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use diesel::sql_types::BigInt;
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.db.url)
            .await
            .expect("connect");
        diesel::sql_query(sql)
            .get_result::<N>(&mut conn)
            .await
            .expect("count")
            .n
    }
}

/// A module's unpublished events (at most `limit`), claimed as the relay claims them: for tests
/// that run no backbone and hand events to a subscriber themselves.
pub async fn claim_events(
    conn: &mut diesel_async::AsyncPgConnection,
    schema: &'static str,
    limit: i64,
) -> Vec<kernel::events::EventEnvelope> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, kernel::AppError, _>(async |tx| {
        Ok(kernel::outbox::claim(tx, schema, limit).await?.events)
    })
    .await
    .unwrap()
}

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Client {
            base: base.to_string(),
            http,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    pub async fn text(&self, path: &str) -> (StatusCode, String) {
        let res = self.get(path).await;
        let status = res.status();
        (status, res.text().await.expect("body"))
    }

    /// The CSRF token the page at `path` carries in its forms.
    pub async fn csrf(&self, path: &str) -> String {
        let (_, html) = self.text(path).await;
        csrf_in(&html).unwrap_or_else(|| panic!("no CSRF token on {path}"))
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// Posts a form with the CSRF token of the page at `page`.
    pub async fn submit(&self, page: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let token = self.csrf(page).await;
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend_from_slice(form);
        self.post_form(path, &fields).await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.submit(
            "/sign-in",
            "/sign-in",
            &[("email", email), ("password", password)],
        )
        .await
    }

    pub async fn api_get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("API GET")
    }
}

pub fn csrf_in(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[start..].split('"').next()?.to_string())
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The RabbitMQ broker the tests use (`VORONKA_TEST_AMQP_URL`, else the local one).
pub fn amqp_url() -> String {
    std::env::var("VORONKA_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Whether RabbitMQ answers at [`amqp_url`]. When it does not, a run that requires it (CI, or
/// `VORONKA_TEST_REQUIRE_RABBITMQ`) fails, and another says that `what` did not run.
pub fn rabbitmq_is_there(what: &str) -> bool {
    if broker_reachable() {
        return true;
    }
    let url = amqp_url();
    if std::env::var_os("CI").is_some()
        || std::env::var_os("VORONKA_TEST_REQUIRE_RABBITMQ").is_some()
    {
        panic!("RabbitMQ is not reachable at {url} and this run requires it");
    }
    eprintln!("SKIPPED: RabbitMQ is not reachable at {url}; {what} did not run");
    false
}

/// Whether Redis answers on 127.0.0.1:6379. When it does not, a run that requires it (CI, or
/// `VORONKA_TEST_REQUIRE_REDIS`) fails, and another says that `what` did not run.
pub fn redis_is_there(what: &str) -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 6379)),
        std::time::Duration::from_secs(1),
    )
    .is_ok();
    if up {
        return true;
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("VORONKA_TEST_REQUIRE_REDIS").is_some()
    {
        panic!("Redis is not reachable on 127.0.0.1:6379 and this run requires it");
    }
    eprintln!("SKIPPED: Redis is not reachable on 127.0.0.1:6379; {what} did not run");
    false
}

/// Whether that broker answers (within a second).
pub fn broker_reachable() -> bool {
    let url = amqp_url();
    let host = url
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .to_string();
    std::net::ToSocketAddrs::to_socket_addrs(&host)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok()
        })
}
