//! Background jobs and event delivery in one process: retries with growing delays, the dead
//! list, running a dead job again from the admin page, and events a subscriber cannot read.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kernel::events::EventEnvelope;
use kernel::{AccountId, Caller, outbox};
use reqwest::StatusCode;
use voronka::backbone::Backbone;
use voronka::config::JobStoreKind;
use voronka::events::probe::{self, ProbeSubscriber};

use crate::support::{TestApp, amqp_url, rabbitmq_is_there, redis_is_there, spawn_app_with_jobs};

/// Workers that look for work every 20 ms and write results every 250 ms: tests wait less. (A
/// shorter heartbeat risks a busy test machine taking a live worker for dead.)
fn quick_workers(c: &mut voronka::config::Config) {
    c.jobs.poll_ms = 20;
    c.jobs.heartbeat_ms = 250;
}

async fn with_probe(app: &TestApp, sub: &Arc<ProbeSubscriber>) -> Backbone {
    let mut conn = app.state.pool.get().await.unwrap();
    probe::install(&mut conn).await.unwrap();
    drop(conn);
    let config = &app.state.config;
    let subs: voronka::events::Subscribers =
        Arc::new(vec![sub.clone() as Arc<dyn kernel::inbox::Subscriber>]);
    Backbone::start(
        config,
        &app.db.url,
        app.state.pool.clone(),
        app.state.jobs.clone().unwrap(),
        app.state.metrics.clone(),
        voronka::backbone::Work {
            subscribers: subs,
            schemas: vec![probe::SCHEMA],
            modules: None,
        },
    )
    .await
    .unwrap()
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A name of its own for a probe subscriber (Redis keys and RabbitMQ queues outlive the test
/// database), and its job queue.
fn probe_name(prefix: &str) -> (String, String) {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let queue = voronka::events::pg::queue_of(&name);
    (name, queue)
}

/// An app whose job workers serve `queue` on `store`, quickly, three attempts per job.
async fn probe_app(queue: &str, store: JobStoreKind, retry_base_ms: Option<u64>) -> TestApp {
    spawn_app_with_jobs(&[queue], |c| {
        quick_workers(c);
        if store == JobStoreKind::Redis {
            // apalis-redis drops a worker that misses five heartbeats ("worker not registered"
            // ever after); a loaded 2-core machine running the whole suite has missed 1.25 s.
            c.jobs.heartbeat_ms = 500;
        }
        c.jobs.store = store;
        c.jobs.max_attempts = 3;
        if let Some(ms) = retry_base_ms {
            c.jobs.retry_base_ms = ms;
        }
    })
    .await
}

/// Commits ping `n`.
async fn produce(app: &TestApp, n: i64) {
    let mut conn = app.state.pool.get().await.unwrap();
    probe::produce_one(&mut conn, n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_backs_off_dies_after_its_cap_and_runs_again_from_the_admin_page() {
    failing_job_dies_and_runs_again(JobStoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_the_redis_job_store() {
    if redis_is_there("the Redis job store test") {
        failing_job_dies_and_runs_again(JobStoreKind::Redis).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_kills_its_own_job_and_the_worker_goes_on() {
    panicking_job_is_killed(JobStoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_on_the_redis_job_store_too() {
    if redis_is_there("the Redis panicking handler test") {
        panicking_job_is_killed(JobStoreKind::Redis).await;
    }
}

/// On the RabbitMQ bus there is no job: the batch whose handling panicked goes back to the
/// queue like one that failed, and the consumer lives on to handle it once the subscriber works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_subscriber_on_rabbitmq_fails_its_batch_and_the_consumer_goes_on() {
    if !rabbitmq_is_there("the panicking consumer test") {
        return;
    }
    let (name, _) = probe_name("panic-probe");
    let app = spawn_app_with_jobs(&[], |c| {
        quick_workers(c);
        c.events.bus = voronka::config::BusKind::Rabbitmq;
        c.events.amqp_url = amqp_url();
        c.events.amqp_namespace = format!("test-{name}");
        c.jobs.retry_base_ms = 100;
    })
    .await;
    let sub = Arc::new(ProbeSubscriber::new(name.clone()));
    sub.panics.store(true, Ordering::SeqCst);
    let backbone = with_probe(&app, &sub).await;
    produce(&app, 1).await;

    let tries = async || sub.attempted_at.lock().unwrap().len();
    wait_for(
        "the batch to be tried again",
        Duration::from_secs(30),
        async || tries().await >= 2,
    )
    .await;
    sub.panics.store(false, Ordering::SeqCst);
    let pool = app.state.pool.clone();
    let handled = async |n: i64| {
        let pool = pool.clone();
        let name = name.clone();
        wait_for(
            "the event to be handled",
            Duration::from_secs(30),
            async || {
                let mut c = pool.get().await.unwrap();
                probe::handled(&mut c, &name).await.unwrap() == n
            },
        )
        .await;
    };
    handled(1).await;
    produce(&app, 2).await;
    handled(2).await;
    backbone.stop().await;
}

async fn panicking_job_is_killed(store: JobStoreKind) {
    let (name, queue) = probe_name("panic-probe");
    let app = probe_app(&queue, store, None).await;
    let sub = Arc::new(ProbeSubscriber::new(name.clone()));
    sub.panics.store(true, Ordering::SeqCst);
    let backbone = with_probe(&app, &sub).await;
    produce(&app, 1).await;

    // Killed at once, with the panic's message, and not tried again.
    let jobs = app.state.jobs.clone().unwrap();
    wait_for("the job to die", Duration::from_secs(30), async || {
        !jobs.dead_jobs(10).await.unwrap().is_empty()
    })
    .await;
    let dead = jobs.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].queue, queue);
    assert_eq!(dead[0].attempts, 1, "{dead:?}");
    assert!(
        dead[0].error.contains("panicking on purpose"),
        "{:?}",
        dead[0].error
    );

    // The same worker handles the next event: it was not ended by the panic.
    sub.panics.store(false, Ordering::SeqCst);
    produce(&app, 2).await;
    let pool = app.state.pool.clone();
    wait_for("the next event", Duration::from_secs(10), async || {
        let mut c = pool.get().await.unwrap();
        probe::handled(&mut c, &name).await.unwrap() == 1
    })
    .await;
    assert_eq!(sub.attempted_at.lock().unwrap().len(), 2, "one try each");
    assert_eq!(
        app.state
            .metrics
            .worker_restarts
            .with_label_values(&[&queue])
            .get(),
        0
    );
    assert_eq!(jobs.dead_jobs(10).await.unwrap().len(), 1);
    backbone.stop().await;
}

async fn failing_job_dies_and_runs_again(store: JobStoreKind) {
    let (name, queue) = probe_name("retry-probe");
    let app = probe_app(&queue, store, Some(1500)).await;
    let t = app.tenant("Acme").await;
    let sub = Arc::new(ProbeSubscriber::new(name.clone()));
    sub.failures.store(i64::MAX, Ordering::SeqCst);
    let seen = sub.clone();
    let backbone = with_probe(&app, &sub).await;
    produce(&app, 1).await;

    let jobs = app.state.jobs.clone().unwrap();
    // Three attempts with short backoffs take a few seconds; a loaded 2-core machine running
    // the whole suite has been seen to need more than 30.
    wait_for("the job to die", Duration::from_secs(90), async || {
        !jobs.dead_jobs(10).await.unwrap().is_empty()
    })
    .await;
    let attempts = seen.attempted_at.lock().unwrap().clone();
    assert_eq!(attempts.len(), 3, "three attempts, then dead: {attempts:?}");
    let (gap1, gap2) = (attempts[1] - attempts[0], attempts[2] - attempts[1]);
    // base 1.5 s ± 25 %, then twice that (results reach the store within a 250 ms heartbeat)
    assert!(
        gap1 >= Duration::from_millis(1100),
        "first retry waited {gap1:?}"
    );
    assert!(gap2 > gap1, "the delays grow: {gap1:?} then {gap2:?}");
    let dead = jobs.dead_jobs(10).await.unwrap();
    assert_eq!(dead[0].queue, queue);
    assert_eq!(dead[0].attempts, 3);
    // The sweep of finished jobs leaves dead ones for the admin.
    jobs.prune_done(Duration::ZERO).await.unwrap();
    assert_eq!(jobs.dead_jobs(10).await.unwrap().len(), 1);

    // The admin sees it with its error and runs it again; this time the subscriber works.
    let admin = app.signed_in(&t.admin.email).await;
    let (status, html) = admin.text("/settings/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&queue) && html.contains("failing on purpose"),
        "{html}"
    );
    sub.failures.store(0, Ordering::SeqCst);
    let res = admin
        .submit(
            "/settings/jobs",
            &format!("/settings/jobs/{}/retry", dead[0].id),
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let pool = app.state.pool.clone();
    wait_for(
        "the retried job to run",
        Duration::from_secs(10),
        async || {
            let mut c = pool.get().await.unwrap();
            probe::handled(&mut c, &name).await.unwrap() == 1
        },
    )
    .await;
    assert!(jobs.dead_jobs(10).await.unwrap().is_empty());
    // Once done, it is swept when older than the time finished jobs are kept (on Redis with its
    // data, metadata and result).
    let done = async || {
        jobs.queue_stats()
            .await
            .unwrap()
            .into_iter()
            .find(|q| q.queue == queue)
            .map_or(0, |q| q.done)
    };
    wait_for(
        "the job to be recorded done",
        Duration::from_secs(10),
        async || done().await == 1,
    )
    .await;
    jobs.prune_done(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(done().await, 1, "a job done just now stays");
    jobs.prune_done(Duration::ZERO).await.unwrap();
    assert_eq!(done().await, 0);
    if store == JobStoreKind::Redis {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let data: i64 = redis::cmd("HLEN")
            .arg(format!("{queue}:data"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(data, 0, "the swept job's data is gone");
    }
    // A job that is not dead (or not there) cannot be retried; non-admins get 403.
    let res = admin
        .submit(
            "/settings/jobs",
            &format!("/settings/jobs/{}/retry", dead[0].id),
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let m = app.member(&t, "maria@acme.test").await;
    let member = app.signed_in(&m.email).await;
    assert_eq!(
        member.get("/settings/jobs").await.status(),
        StatusCode::FORBIDDEN
    );
    backbone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_versions_are_recorded_as_failed_and_never_stop_the_worker() {
    let app = spawn_app_with_jobs(&["events.strict-probe"], quick_workers).await;
    let sub = Arc::new(ProbeSubscriber::new("strict-probe"));
    let backbone = with_probe(&app, &sub).await;
    let good =
        |n: i64| EventEnvelope::new(Caller::system(AccountId(0)), &probe::Ping { n }).unwrap();
    let mut malformed = good(0);
    malformed.payload = serde_json::json!({"n": "not a number"});
    let mut future_version = good(0);
    future_version.version = 99;
    let after = good(7);
    let conn = app.state.pool.get().await.unwrap();
    outbox::append(
        &conn,
        probe::SCHEMA,
        &[malformed.clone(), future_version.clone(), after.clone()],
    )
    .await
    .unwrap();
    drop(conn);
    let pool = app.state.pool.clone();
    wait_for(
        "the good event after the bad ones",
        Duration::from_secs(10),
        async || {
            let mut c = pool.get().await.unwrap();
            probe::handled(&mut c, "strict-probe").await.unwrap() == 1
        },
    )
    .await;
    let failed = app
        .count(&format!(
            "SELECT count(*) AS n FROM voronka_probe.inbox WHERE subscriber = 'strict-probe' AND outcome = 'failed'
               AND event_id IN ('{}', '{}') AND error <> ''",
            malformed.id, future_version.id
        ))
        .await;
    assert_eq!(
        failed, 2,
        "both bad events are recorded as failed with a reason"
    );
    let reason = app
        .count(&format!(
            "SELECT count(*) AS n FROM voronka_probe.inbox WHERE event_id = '{}' AND error LIKE '%v99%'",
            future_version.id
        ))
        .await;
    assert_eq!(reason, 1);
    let jobs = app.state.jobs.clone().unwrap();
    assert!(jobs.dead_jobs(10).await.unwrap().is_empty());

    // Finished jobs are removed once older than the time kept, not before.
    let done = "SELECT count(*) AS n FROM apalis.jobs WHERE job_type = 'events.strict-probe' AND status = 'Done'";
    wait_for(
        "the job's result to be stored",
        Duration::from_secs(10),
        async || app.count(done).await >= 1,
    )
    .await;
    let finished = app.count(done).await;
    assert_eq!(jobs.prune_done(Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(app.count(done).await, finished);
    assert!(jobs.prune_done(Duration::ZERO).await.unwrap() >= finished as u64);
    assert_eq!(app.count(done).await, 0);
    backbone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_waits_for_its_time() {
    let app = spawn_app_with_jobs(&["events.delay-probe"], quick_workers).await;
    let sub = Arc::new(ProbeSubscriber::new("delay-probe"));
    let backbone = with_probe(&app, &sub).await;
    let event = EventEnvelope::new(Caller::system(AccountId(0)), &probe::Ping { n: 1 }).unwrap();
    let jobs = app.state.jobs.clone().unwrap();
    let started = Instant::now();
    jobs.enqueue(
        &voronka::events::pg::queue_of("delay-probe"),
        voronka::events::pg::Deliver {
            events: vec![event],
        },
        Some(Duration::from_secs(3)),
        app.state.config.retry_policy(),
    )
    .await
    .unwrap();
    let pool = app.state.pool.clone();
    wait_for("the delayed job", Duration::from_secs(15), async || {
        let mut c = pool.get().await.unwrap();
        probe::handled(&mut c, "delay-probe").await.unwrap() == 1
    })
    .await;
    // Stored with one-second precision: due between 2 and 3 s after it was queued.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "ran after {:?}",
        started.elapsed()
    );
    backbone.stop().await;
}

#[test]
fn workers_stop_gracefully_on_sigterm() {
    let db = kernel::testing::TestDb::empty();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_voronka"))
        .args(["serve", "--role", "workers"])
        .env("VORONKA_DATABASE_URL", &db.url)
        .env("VORONKA_LOG__LEVEL", "info")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.contains("workers are running"), "{line}");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit {status}: {err}");
    assert!(err.contains("relay stopped"), "{err}");
}
