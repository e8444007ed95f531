//! Remote mode: a module's trait answered by another process over signed HTTP calls. One
//! contract suite runs against the in-process module and against its client, with the same
//! outcomes; unsigned or forged calls are refused; an unreachable module gives `Unavailable`
//! where it is needed while the rest of the app works.

use std::net::TcpListener;

use actix_web::web;
use kernel::{AppResult, Caller, ErrorCode};
use messaging_api::{ConversationFilter, Messaging, NewChannel, NewTemplate};
use reqwest::StatusCode;
use voronka::config::{Config, ModuleConfig, ModuleMode};
use voronka::state::AppState;

use crate::support::{PASSWORD, TestApp, amqp_url, spawn_app_with};

const SECRET: &str = "an installation's shared secret, 32+ characters";

/// A second process on the service's database, with `module` reached over HTTP at `url`.
async fn front(service: &TestApp, module: &str, url: &str) -> (String, web::Data<AppState>) {
    let mut config = Config {
        database_url: Some(service.db.url.clone()),
        // The same secret key as the service, so sessions and tokens read on both.
        secret_key: service.state.config.secret_key.clone(),
        data_dir: std::env::temp_dir().join(format!("voronka-front-{}", service.db.name)),
        ..Config::default()
    };
    config.web.workers = 1;
    config.db.pool_size = 4;
    config.remote.secret = Some(SECRET.into());
    config.remote.timeout_ms = 2000;
    config.modules.insert(
        module.into(),
        ModuleConfig {
            mode: ModuleMode::Remote,
            url: Some(url.into()),
            database_url: None,
        },
    );
    config.validate().expect("a valid remote config");
    let state =
        web::Data::new(voronka::server::build_state(config, &service.db.url, None).expect("state"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (_h, server) = voronka::server::start_http(state.clone(), listener).unwrap();
    tokio::spawn(server);
    (addr, state)
}

fn code<T: std::fmt::Debug>(r: AppResult<T>) -> ErrorCode {
    r.expect_err("an error").code
}

/// What any implementation of `Messaging` must do; returns what it saw, to compare the two.
async fn messaging_contract(m: &dyn Messaging, caller: Caller, other: Caller) -> Vec<String> {
    let mut seen = Vec::new();
    // Templates: saved, listed, refused when empty (with the field), deleted; others' unseen.
    let t = m
        .save_template(
            caller,
            NewTemplate {
                id: None,
                name: "Greeting".into(),
                body: "Hello, {{contact.name}}!".into(),
                whatsapp_name: String::new(),
                whatsapp_language: String::new(),
            },
        )
        .await
        .unwrap();
    let all = m.templates(caller).await.unwrap();
    assert!(
        all.iter()
            .any(|x| x.id == t.id && x.body == "Hello, {{contact.name}}!")
    );
    seen.push(format!("templates {}", all.len()));
    let bad = m
        .save_template(
            caller,
            NewTemplate {
                id: None,
                name: " ".into(),
                body: String::new(),
                whatsapp_name: String::new(),
                whatsapp_language: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code, ErrorCode::Validation);
    assert!(!bad.fields.is_empty(), "field errors cross the wire");
    seen.push(format!(
        "bad template {:?}",
        bad.fields.iter().map(|f| &f.field).collect::<Vec<_>>()
    ));
    assert!(m.templates(other).await.unwrap().is_empty());
    m.delete_template(caller, t.id).await.unwrap();
    assert_eq!(
        code(m.delete_template(caller, t.id).await),
        ErrorCode::NotFound
    );
    // Channels: none yet; an unknown one is not found; one without a token is refused.
    assert!(m.channels(caller).await.unwrap().is_empty());
    assert_eq!(code(m.channel(caller, 987_654).await), ErrorCode::NotFound);
    let refused = m
        .create_channel(caller, NewChannel::default())
        .await
        .unwrap_err();
    seen.push(format!("channel {:?}", refused.code));
    // Conversations and notifications: empty pages and zero counts.
    let page = m
        .conversations(caller, &ConversationFilter::default(), Default::default())
        .await
        .unwrap();
    seen.push(format!(
        "conversations {} {:?}",
        page.items.len(),
        page.next
    ));
    assert_eq!(m.unread_conversations(caller).await.unwrap(), 0);
    assert_eq!(code(m.conversation(caller, 1).await), ErrorCode::NotFound);
    assert!(m.conversation_of_deal(caller, 1).await.unwrap().is_none());
    assert!(m.notifications(caller, 10).await.unwrap().is_empty());
    m.read_notifications(caller).await.unwrap();
    seen
}

#[tokio::test]
async fn messaging_keeps_its_contract_in_process_and_over_http() {
    if !crate::support::remote_modules().is_empty() {
        return; // these tests set up their own topology
    }
    let service = spawn_app_with(|c| c.remote.secret = Some(SECRET.into())).await;
    let t = service.tenant("Remote").await;
    let o = service.tenant("Elsewhere").await;
    let (caller, other) = (
        Caller::user(t.account, t.admin.id),
        Caller::user(o.account, o.admin.id),
    );
    let (_, front) = front(&service, "messaging", &service.url).await;
    assert_eq!(front.modules.remote, vec!["messaging"]);
    let local = messaging_contract(&*service.state.modules.messaging, caller, other).await;
    let remote = messaging_contract(&*front.modules.messaging, caller, other).await;
    assert_eq!(local, remote, "the same outcomes in both modes");
}

#[tokio::test]
async fn service_calls_must_be_signed_and_are_served_only_with_a_secret() {
    if !crate::support::remote_modules().is_empty() {
        return; // these tests set up their own topology
    }
    let service = spawn_app_with(|c| c.remote.secret = Some(SECRET.into())).await;
    let t = service.tenant("Signed").await;
    let caller = Caller::user(t.account, t.admin.id);
    let http = reqwest::Client::new();
    let path = "/svc/messaging/templates";
    let body = serde_json::to_vec(&(caller,)).unwrap();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut r = http
            .post(format!("{}{path}", service.url))
            .header("content-type", "application/json")
            .body(body.clone());
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let now = chrono::Utc::now().timestamp();
    // Unsigned, forged, replayed from long ago: 401 with the error on the wire.
    let res = post(vec![]).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let forged = kernel::remote::sign(b"not the secret, but long enough...", now, path, &body);
    let res = post(vec![
        (kernel::remote::TIME_HEADER, now.to_string()),
        (kernel::remote::SIGNATURE_HEADER, forged),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let old = now - 3600;
    let res = post(vec![
        (kernel::remote::TIME_HEADER, old.to_string()),
        (
            kernel::remote::SIGNATURE_HEADER,
            kernel::remote::sign(SECRET.as_bytes(), old, path, &body),
        ),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Signed: the answer.
    let res = post(vec![
        (kernel::remote::TIME_HEADER, now.to_string()),
        (
            kernel::remote::SIGNATURE_HEADER,
            kernel::remote::sign(SECRET.as_bytes(), now, path, &body),
        ),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!([])
    );
    // Arguments that do not read: 400; an unknown method: 404.
    for (p, b, status) in [
        (
            "/svc/messaging/templates",
            b"[1, 2]".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/svc/messaging/nothing",
            body.clone(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let res = http
            .post(format!("{}{p}", service.url))
            .header(kernel::remote::TIME_HEADER, now.to_string())
            .header(
                kernel::remote::SIGNATURE_HEADER,
                kernel::remote::sign(SECRET.as_bytes(), now, p, &b),
            )
            .body(b)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{p}");
    }
    // A process without a secret serves no module.
    let plain = spawn_app_with(|_| {}).await;
    let res = http
        .post(format!("{}{path}", plain.url))
        .header(kernel::remote::TIME_HEADER, now.to_string())
        .header(
            kernel::remote::SIGNATURE_HEADER,
            kernel::remote::sign(SECRET.as_bytes(), now, path, &body),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unreachable_module_is_an_error_where_needed_and_the_rest_works() {
    if !crate::support::remote_modules().is_empty() {
        return; // these tests set up their own topology
    }
    let service = spawn_app_with(|c| c.remote.secret = Some(SECRET.into())).await;
    let t = service.tenant("Down").await;
    let caller = Caller::user(t.account, t.admin.id);
    // Nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (url, front) = front(&service, "messaging", &dead).await;
    let e = front.modules.messaging.templates(caller).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("messaging"), "{}", e.message);
    // Through the front's pages: the inbox says the service is unavailable; deals work.
    let c = crate::support::Client::new(&url);
    let res = c.sign_in(&t.admin.email, PASSWORD).await;
    assert!(res.status().is_redirection() || res.status().is_success());
    assert_eq!(
        c.get("/inbox").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(c.get("/deals/list").await.status(), StatusCode::OK);
    assert_eq!(c.get("/contacts").await.status(), StatusCode::OK);
}

/// `voronka serve --modules messaging` on messaging's own (empty) database, reaching the other
/// modules at the monolith; a front with messaging remote uses it. Killed on drop.
struct ServiceProcess {
    child: std::process::Child,
    url: String,
    /// Settings of its own, as `VORONKA_…` variables (kept for restarts).
    env: Vec<(String, String)>,
    _db: kernel::testing::TestDb,
    _dir: std::path::PathBuf,
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn spawn_service(
    monolith_url: &str,
    secret_key: &str,
    port: u16,
    db_url: &str,
    dir: &std::path::Path,
    env: &[(String, String)],
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_voronka"))
        .args(["serve", "--modules", "messaging", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env("VORONKA_MODULES__MESSAGING__DATABASE_URL", db_url)
        .env("VORONKA_REMOTE__URL", monolith_url)
        .env("VORONKA_REMOTE__SECRET", SECRET)
        .env("VORONKA_SECRET_KEY", secret_key)
        .env("VORONKA_LOG__LEVEL", "warn")
        .env("VORONKA_JOBS__POLL_MS", "50")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("voronka serve --modules messaging")
}

impl ServiceProcess {
    async fn ready(&mut self) {
        for _ in 0..600 {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.url)).await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the messaging service exited: {status}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the messaging service did not become ready");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn restart(&mut self, monolith: &TestApp) {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        self.child = spawn_service(
            &monolith.url,
            monolith.state.config.secret_key.as_deref().unwrap(),
            port,
            &self._db.url,
            &self._dir,
            &self.env,
        );
        self.ready().await;
    }
}

async fn messaging_service(monolith: &TestApp) -> ServiceProcess {
    let db = tokio::task::spawn_blocking(kernel::testing::TestDb::empty)
        .await
        .unwrap();
    messaging_service_on(monolith, db).await
}

/// The messaging service on a database of the caller's (e.g. one messaging was moved into).
async fn messaging_service_on(monolith: &TestApp, db: kernel::testing::TestDb) -> ServiceProcess {
    let port = free_port();
    service_at(monolith, port, db, Vec::new()).await
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The messaging service on `port`, with settings of its own.
async fn service_at(
    monolith: &TestApp,
    port: u16,
    db: kernel::testing::TestDb,
    env: Vec<(String, String)>,
) -> ServiceProcess {
    let dir = std::env::temp_dir().join(format!("voronka-svc-{}", db.name));
    let child = spawn_service(
        &monolith.url,
        monolith.state.config.secret_key.as_deref().unwrap(),
        port,
        &db.url,
        &dir,
        &env,
    );
    let mut svc = ServiceProcess {
        child,
        url: format!("http://127.0.0.1:{port}"),
        env,
        _db: db,
        _dir: dir,
    };
    svc.ready().await;
    svc
}

#[tokio::test]
async fn messaging_runs_as_its_own_service_on_its_own_database() {
    if !crate::support::remote_modules().is_empty() {
        return; // these tests set up their own topology
    }
    let monolith = spawn_app_with(|c| c.remote.secret = Some(SECRET.into())).await;
    let t = monolith.tenant("Split").await;
    let o = monolith.tenant("Other split").await;
    let (caller, other) = (
        Caller::user(t.account, t.admin.id),
        Caller::user(o.account, o.admin.id),
    );
    let svc = messaging_service(&monolith).await;
    let (url, front) = front(&monolith, "messaging", &svc.url).await;
    // The same contract as in process, through the service (which asks the monolith for the
    // users' rights over the wire).
    let local = messaging_contract(&*monolith.state.modules.messaging, caller, other).await;
    let remote = messaging_contract(&*front.modules.messaging, caller, other).await;
    assert_eq!(local, remote);
    // What the service stores lands in its own database, not the monolith's.
    front
        .modules
        .messaging
        .save_template(
            caller,
            NewTemplate {
                id: None,
                name: "Kept".into(),
                body: "Stays in the service's database".into(),
                whatsapp_name: String::new(),
                whatsapp_language: String::new(),
            },
        )
        .await
        .unwrap();
    let svc_db = diesel_async_count(
        &svc._db.url,
        "SELECT count(*) AS n FROM messaging.templates WHERE name = 'Kept'",
    )
    .await;
    assert_eq!(svc_db, 1);
    assert_eq!(
        monolith
            .count("SELECT count(*) AS n FROM messaging.templates WHERE name = 'Kept'")
            .await,
        0
    );
    // The service's database holds messaging's schema only.
    assert_eq!(
        diesel_async_count(
            &svc._db.url,
            "SELECT count(*) AS n FROM information_schema.schemata WHERE schema_name IN ('deals', 'accounts', 'contacts')",
        )
        .await,
        0
    );
    // The service serves no pages: the UI is the monolith's (and the front's).
    assert_eq!(
        reqwest::get(format!("{}/sign-in", svc.url))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let c = crate::support::Client::new(&url);
    c.sign_in(&t.admin.email, PASSWORD).await;
    let (status, html) = c.text("/settings/templates").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Kept"),
        "the front's page shows the service's data"
    );

    // The service is killed: what needs it says so, the rest works.
    let mut svc = svc;
    svc.kill();
    assert_eq!(
        front
            .modules
            .messaging
            .templates(caller)
            .await
            .unwrap_err()
            .code,
        ErrorCode::Unavailable
    );
    assert_eq!(
        c.get("/inbox").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(c.get("/deals/list").await.status(), StatusCode::OK);
    // It comes back on the same database: everything is there and calls work again.
    svc.restart(&monolith).await;
    let all = front.modules.messaging.templates(caller).await.unwrap();
    assert!(all.iter().any(|t| t.name == "Kept"));
    assert_eq!(c.get("/inbox").await.status(), StatusCode::OK);
}

async fn diesel_async_count(url: &str, sql: &str) -> i64 {
    use diesel::QueryableByName;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let row: N = diesel::sql_query(sql).get_result(&mut conn).await.unwrap();
    row.n
}

fn template(name: String) -> NewTemplate {
    NewTemplate {
        id: None,
        name,
        body: "Hello".into(),
        whatsapp_name: String::new(),
        whatsapp_language: String::new(),
    }
}

#[tokio::test]
async fn messaging_moves_to_its_own_database_while_written_to_and_comes_back() {
    if !crate::support::remote_modules().is_empty() {
        return; // these tests set up their own topology
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let monolith = spawn_app_with(|c| c.remote.secret = Some(SECRET.into())).await;
    let t = monolith.tenant("Move").await;
    let caller = Caller::user(t.account, t.admin.id);
    let local = monolith.state.modules.messaging.clone();
    for i in 0..20 {
        local
            .save_template(caller, template(format!("Before {i}")))
            .await
            .unwrap();
    }
    // A writer keeps saving during the move: each save either succeeds (and must be found after
    // the move, once) or fails (and must be found nowhere).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (local, stop) = (local.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("During {i}");
                match local.save_template(caller, template(name.clone())).await {
                    Ok(_) => ok.push(name),
                    Err(_) => failed.push(name),
                }
                i += 1;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let target = tokio::task::spawn_blocking(kernel::testing::TestDb::empty)
        .await
        .unwrap();
    let (from, to) = (monolith.db.url.clone(), target.url.clone());
    let (checks, aside) =
        tokio::task::spawn_blocking(move || voronka::extract::extract("messaging", &from, &to))
            .await
            .unwrap()
            .expect("the move");
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(
        !ok.is_empty() && !failed.is_empty(),
        "writes before and after: {} ok, {} failed",
        ok.len(),
        failed.len()
    );
    assert!(aside.starts_with("messaging_extracted_"));
    let copied = checks.iter().find(|c| c.table == "templates").unwrap();
    assert_eq!(
        copied.rows,
        20 + ok.len() as i64,
        "every successful write was copied"
    );
    assert!(
        checks.iter().any(|c| c.table == "outbox"),
        "the outbox moves too"
    );
    // The old copy refuses writes; the monolith's in-process messaging can no longer write.
    assert!(
        local
            .save_template(caller, template("Late".into()))
            .await
            .is_err()
    );

    // The service on the target database serves exactly what was written, once.
    let svc = messaging_service_on(&monolith, target).await;
    let (_, front) = front(&monolith, "messaging", &svc.url).await;
    let mut names: Vec<String> = front
        .modules
        .messaging
        .templates(caller)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..20)
        .map(|i| format!("Before {i}"))
        .chain(ok.clone())
        .collect();
    want.sort();
    assert_eq!(names, want, "nothing lost, nothing twice, no failed write");
    front
        .modules
        .messaging
        .save_template(caller, template("In the service".into()))
        .await
        .unwrap();

    // And back: the monolith's database gets the rows as they are in the service now.
    let (from, to) = (svc._db.url.clone(), monolith.db.url.clone());
    let (back, _) =
        tokio::task::spawn_blocking(move || voronka::extract::rollback("messaging", &from, &to))
            .await
            .unwrap()
            .expect("the move back");
    assert_eq!(
        back.iter().find(|c| c.table == "templates").unwrap().rows,
        21 + ok.len() as i64
    );
    assert_eq!(
        monolith
            .count("SELECT count(*) AS n FROM messaging.templates WHERE name = 'In the service'")
            .await,
        1
    );
    // Bad input: an unknown module, the same database.
    let url = monolith.db.url.clone();
    let e = tokio::task::spawn_blocking(move || {
        (
            voronka::extract::extract("billing", &url, "postgres://x"),
            voronka::extract::extract("messaging", &url, &url),
        )
    })
    .await
    .unwrap();
    assert!(e.0.unwrap_err().contains("unknown module"));
    assert!(e.1.is_err());
}

/// Whether the RabbitMQ broker answers; a CI run requires it.
fn broker_here() -> bool {
    crate::support::rabbitmq_is_there("the test of the service's queued events")
}

/// Removes a test's exchange and queues from the shared broker.
async fn drop_namespace(namespace: &str) {
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    for sub in voronka::server::SUBSCRIBER_NAMES {
        let _ = ch
            .queue_delete(
                voronka::events::amqp::queue_of(namespace, sub)
                    .as_str()
                    .into(),
                Default::default(),
            )
            .await;
    }
    let _ = ch
        .exchange_delete(
            voronka::events::amqp::exchange(namespace).as_str().into(),
            Default::default(),
        )
        .await;
    let _ = conn.close(0, "done".into()).await;
}

/// Waits until `sql` counts `want` on the service's database.
async fn until_count(url: &str, sql: &str, want: i64) -> i64 {
    let mut n = 0;
    for _ in 0..300 {
        n = diesel_async_count(url, sql).await;
        if n >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    n
}

#[tokio::test]
async fn events_for_a_stopped_service_wait_for_it_and_none_is_lost() {
    if !crate::support::remote_modules().is_empty() || !broker_here() {
        return;
    }
    use deals_api::{DealPatch, NewDeal, NewPipeline, NewStage};
    let namespace = format!(
        "voronka-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let port = free_port();
    let (amqp, ns) = (amqp_url(), namespace.clone());
    // The monolith with messaging elsewhere, both on RabbitMQ (separate processes, separate
    // databases), under a namespace of this test's own on the shared broker.
    let (monolith, backbone) = crate::support::spawn_app_with_workers_and(move |c| {
        c.remote.secret = Some(SECRET.into());
        c.events.bus = voronka::config::BusKind::Rabbitmq;
        c.events.amqp_url = amqp;
        c.events.amqp_namespace = ns;
        c.modules.insert(
            "messaging".into(),
            ModuleConfig {
                mode: ModuleMode::Remote,
                url: Some(format!("http://127.0.0.1:{port}")),
                database_url: None,
            },
        );
    })
    .await;
    let t = monolith.tenant("Waiting").await;
    let caller = Caller::user(t.account, t.admin.id);
    let m = monolith.member(&t, "seller@waiting.test").await;
    let deals = &monolith.state.modules.deals;
    let p = deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Sales".into(),
                stages: vec![NewStage {
                    name: "New".into(),
                    color: "#99ccff".into(),
                }],
            },
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            deals
                .create_deal(caller, NewDeal::new(p.id, format!("Deal {i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let assign = async |id| {
        deals
            .update_deal(
                caller,
                id,
                DealPatch {
                    responsible_user_id: Some(m.id),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    };
    let handled = "SELECT count(*) AS n FROM messaging.inbox
                    WHERE subscriber = 'messaging.notifications' AND event_type = 'deals.deal_responsible_changed' AND outcome = 'done'";
    let notified = "SELECT count(*) AS n FROM messaging.notifications WHERE kind = 'assigned'";

    // Before the service has ever run: the monolith declared its queue, so the event waits.
    assign(ids[0]).await;
    let db = tokio::task::spawn_blocking(kernel::testing::TestDb::empty)
        .await
        .unwrap();
    let env = vec![
        ("VORONKA_EVENTS__BUS".to_string(), "rabbitmq".to_string()),
        ("VORONKA_EVENTS__AMQP_URL".to_string(), amqp_url()),
        (
            "VORONKA_EVENTS__AMQP_NAMESPACE".to_string(),
            namespace.clone(),
        ),
    ];
    let mut svc = service_at(&monolith, port, db, env).await;
    assert_eq!(until_count(&svc._db.url, handled, 1).await, 1);

    // Killed: pages that need it say so, the rest works, and events keep coming for it.
    svc.kill();
    let c = crate::support::Client::new(&monolith.url);
    c.sign_in(&t.admin.email, PASSWORD).await;
    assert_eq!(
        c.get("/inbox").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(c.get("/deals/list").await.status(), StatusCode::OK);
    for id in &ids[1..] {
        assign(*id).await;
    }
    // Published while it was down (nothing is left in the monolith's outbox).
    let mut unpublished = 1;
    for _ in 0..100 {
        unpublished = monolith
            .count("SELECT count(*) AS n FROM deals.outbox WHERE published_at IS NULL")
            .await;
        if unpublished == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        unpublished, 0,
        "the relay published while the service was down"
    );

    // Back: it works off what waited, each event once.
    svc.restart(&monolith).await;
    assert_eq!(until_count(&svc._db.url, handled, 6).await, 6);
    assert_eq!(diesel_async_count(&svc._db.url, notified).await, 6);
    let produced = monolith
        .count("SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_responsible_changed'")
        .await;
    assert_eq!(produced, 6);
    assert_eq!(c.get("/inbox").await.status(), StatusCode::OK);
    backbone.stop().await;
    drop(svc);
    drop_namespace(&namespace).await;
}
