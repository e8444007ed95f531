//! The event backbone under crashes: the probe process is SIGKILLed at random points while it
//! produces and consumes events, restarted, and finally left to finish. Every event committed by
//! the producer must reach every subscriber's effect exactly once; no event from a rolled-back
//! transaction may ever be delivered.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{amqp_url, broker_reachable};
use kernel::testing::TestDb;
use rand::Rng;

const TOTAL: i64 = 1200;
const SUBSCRIBERS: usize = 2;

fn probe(db: &TestDb, bus: &str, store: &str, prefix: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voronka"));
    cmd.args([
        "events",
        "probe",
        "--total",
        &TOTAL.to_string(),
        "--subscribers",
        &SUBSCRIBERS.to_string(),
    ])
    .args([
        "--prefix",
        prefix,
        "--pause-ms",
        "1",
        "--rollback-every",
        "7",
    ])
    .env("VORONKA_DATABASE_URL", &db.url)
    .env("VORONKA_EVENTS__BUS", bus)
    .env("VORONKA_JOBS__STORE", store)
    .env("VORONKA_EVENTS__AMQP_URL", amqp_url())
    .env("VORONKA_JOBS__RETRY_BASE_MS", "50")
    .env("VORONKA_LOG__LEVEL", "error")
    .env_remove("DATABASE_URL")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

fn count(db: &TestDb, sql: &str) -> i64 {
    use diesel::sql_types::BigInt;
    use diesel_async::AsyncConnection;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let url = db.url.clone();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use diesel_async::RunQueryDsl;
            let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                .await
                .unwrap();
            diesel::sql_query(sql)
                .get_result::<N>(&mut conn)
                .await
                .unwrap()
                .n
        })
    })
    .join()
    .unwrap()
}

fn crash_and_recover(bus: &str, store: &str) {
    let db = TestDb::empty();
    let prefix = format!(
        "kill{}",
        uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
    );
    let mut rng = rand::rng();
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = probe(&db, bus, store, &prefix)
            .spawn()
            .expect("spawn the probe");
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    let produced_before_last = count(&db, "SELECT count(*) AS n FROM voronka_probe.produced");
    assert!(
        kills >= 3 && produced_before_last > 0,
        "the probe was killed {kills} times mid-way ({produced_before_last} produced)"
    );

    let mut child = probe(&db, bus, store, &prefix)
        .spawn()
        .expect("spawn the probe");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(240) {
            child.kill().unwrap();
            panic!("the probe did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success() && out.contains("probe: complete"),
        "status {status}\nstdout: {out}\nstderr: {err}"
    );

    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM voronka_probe.produced"),
        TOTAL
    );
    // The outbox holds exactly the committed events: nothing of a rolled-back transaction.
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM voronka_probe.outbox"),
        TOTAL
    );
    for i in 0..SUBSCRIBERS {
        let name = format!("{prefix}.{i}");
        let effects = count(
            &db,
            &format!("SELECT count(*) AS n FROM voronka_probe.effects WHERE subscriber = '{name}'"),
        );
        let distinct = count(
            &db,
            &format!(
                "SELECT count(DISTINCT event_id) AS n FROM voronka_probe.effects WHERE subscriber = '{name}'"
            ),
        );
        assert_eq!(
            distinct, TOTAL,
            "{name}: every committed event reached the effect"
        );
        assert_eq!(effects, TOTAL, "{name}: and no event twice");
    }
    let strays = count(
        &db,
        "SELECT count(*) AS n FROM voronka_probe.effects e WHERE NOT EXISTS
           (SELECT 1 FROM voronka_probe.produced p WHERE p.event_id = e.event_id)",
    );
    assert_eq!(strays, 0, "no effect of an event that was never committed");
    eprintln!(
        "{bus} bus, {store} jobs: killed {kills} times; {TOTAL} events × {SUBSCRIBERS} subscribers handled exactly once"
    );
}

#[test]
fn events_survive_sigkill_exactly_once_on_postgres() {
    crash_and_recover("postgres", "postgres");
}

#[test]
fn events_survive_sigkill_exactly_once_with_jobs_in_redis() {
    let reachable = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok();
    if !reachable {
        if std::env::var_os("CI").is_some()
            || std::env::var_os("VORONKA_TEST_REQUIRE_REDIS").is_some()
        {
            panic!("Redis is not reachable on 127.0.0.1:6379 and this run requires it");
        }
        eprintln!(
            "SKIPPED: Redis is not reachable on 127.0.0.1:6379; the Redis crash test did not run"
        );
        return;
    }
    crash_and_recover("postgres", "redis");
}

#[test]
fn events_survive_sigkill_exactly_once_on_rabbitmq() {
    if !broker_reachable() {
        if std::env::var_os("CI").is_some()
            || std::env::var_os("VORONKA_TEST_REQUIRE_RABBITMQ").is_some()
        {
            panic!(
                "RabbitMQ is not reachable at {} and this run requires it",
                amqp_url()
            );
        }
        eprintln!(
            "SKIPPED: RabbitMQ is not reachable at {}; the RabbitMQ crash test did not run",
            amqp_url()
        );
        return;
    }
    crash_and_recover("rabbitmq", "postgres");
}
