//! The event backbone under crashes: the probe process is SIGKILLed at random points while it
//! produces and consumes events, restarted, and finally left to finish. Every event committed by
//! the producer must reach every subscriber's effect exactly once; no event from a rolled-back
//! transaction may ever be delivered.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{amqp_url, rabbitmq_is_there, redis_is_there};
use kernel::testing::TestDb;
use rand::Rng;

const TOTAL: i64 = 1200;
const SUBSCRIBERS: usize = 2;

fn probe(db: &TestDb, bus: &str, store: &str, prefix: &str, total: i64) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voronka"));
    cmd.args([
        "events",
        "probe",
        "--total",
        &total.to_string(),
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
    .env("VORONKA_LOG__LEVEL", "warn")
    .env_remove("DATABASE_URL")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Runs `f` on a connection of its own to the test database (from a plain thread: the tests here
/// are synchronous).
fn with_conn<T: Send + 'static>(
    db: &TestDb,
    f: impl AsyncFnOnce(&mut diesel_async::AsyncPgConnection) -> T + Send + 'static,
) -> T {
    use diesel_async::AsyncConnection;
    let url = db.url.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                .await
                .unwrap();
            f(&mut conn).await
        })
    })
    .join()
    .unwrap()
}

fn count(db: &TestDb, sql: &str) -> i64 {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let sql = sql.to_string();
    with_conn(db, async move |conn| {
        diesel::sql_query(sql)
            .get_result::<N>(conn)
            .await
            .unwrap()
            .n
    })
}

fn execute(db: &TestDb, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    let sql = sql.to_string();
    with_conn(db, async move |conn| {
        conn.batch_execute(&sql).await.unwrap()
    })
}

/// The end of a probe's log (a long run under load can warn a lot).
fn tail(log: &str) -> &str {
    let mut from = log.len().saturating_sub(8192);
    while !log.is_char_boundary(from) {
        from += 1;
    }
    &log[from..]
}

/// Waits for a probe to finish (240 s at most), asserts that it completed, and returns its
/// stderr. Both pipes are read while it runs: a probe that logs more than a pipe holds would
/// otherwise block on its next write and never finish.
fn run_to_end(db: &TestDb, child: &mut std::process::Child) -> String {
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(240) {
            child.kill().unwrap();
            child.wait().unwrap();
            let err = err.join().unwrap();
            let state = [
                "SELECT count(*) AS n FROM voronka_probe.produced",
                "SELECT count(*) AS n FROM voronka_probe.outbox WHERE published_at IS NULL",
                "SELECT count(*) AS n FROM voronka_probe.effects",
                "SELECT count(DISTINCT (subscriber, event_id)) AS n FROM voronka_probe.effects",
            ]
            .map(|sql| format!("{sql}: {}", count(db, sql)))
            .join("\n");
            panic!(
                "the probe did not finish in 240 s\n{state}\nstderr (last 8 kB): {}",
                tail(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success() && out.contains("probe: complete"),
        "status {status}\nstdout: {out}\nstderr (last 8 kB): {}",
        tail(&err)
    );
    err
}

/// Asserts that each subscriber of the probe handled each of `total` events, and none twice.
fn assert_each_handled_once(db: &TestDb, prefix: &str, total: i64) {
    for i in 0..SUBSCRIBERS {
        let name = format!("{prefix}.{i}");
        let effects = count(
            db,
            &format!("SELECT count(*) AS n FROM voronka_probe.effects WHERE subscriber = '{name}'"),
        );
        let distinct = count(
            db,
            &format!(
                "SELECT count(DISTINCT event_id) AS n FROM voronka_probe.effects WHERE subscriber = '{name}'"
            ),
        );
        assert_eq!(
            distinct, total,
            "{name}: every committed event reached the effect"
        );
        assert_eq!(effects, total, "{name}: and no event twice");
    }
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
        let mut child = probe(&db, bus, store, &prefix, TOTAL)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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

    let mut child = probe(&db, bus, store, &prefix, TOTAL)
        .spawn()
        .expect("spawn the probe");
    run_to_end(&db, &mut child);

    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM voronka_probe.produced"),
        TOTAL
    );
    // The outbox holds exactly the committed events: nothing of a rolled-back transaction.
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM voronka_probe.outbox"),
        TOTAL
    );
    assert_each_handled_once(&db, &prefix, TOTAL);
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
    if redis_is_there("the Redis crash test") {
        crash_and_recover("postgres", "redis");
    }
}

#[test]
fn events_survive_sigkill_exactly_once_on_rabbitmq() {
    if rabbitmq_is_there("the RabbitMQ crash test") {
        crash_and_recover("rabbitmq", "postgres");
    }
}

/// apalis ends a job worker at the first failed call to its store and never starts it again; a
/// blip of the store (PostgreSQL restarting, Redis answering late) then stopped a queue until the
/// process was restarted. Here every fetch of jobs fails for a second and a half while events
/// flow: the workers end, are started again, and every event still reaches every subscriber
/// exactly once.
#[test]
fn job_workers_come_back_after_their_store_fails_for_a_while() {
    let db = TestDb::empty();
    let prefix = format!(
        "blip{}",
        uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
    );
    let total = 3000;
    let mut child = probe(&db, "postgres", "postgres", &prefix, total)
        .spawn()
        .expect("spawn the probe");
    let started = Instant::now();
    while count(
        &db,
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'voronka_probe' AND tablename = 'effects'",
    ) == 0
        || count(&db, "SELECT count(*) AS n FROM voronka_probe.effects") < 100
    {
        assert!(
            started.elapsed() < Duration::from_secs(120) && child.try_wait().unwrap().is_none(),
            "the probe did not get going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // apalis.get_jobs is every worker's fetch (the backbone installs it at start).
    let failing = "CREATE OR REPLACE FUNCTION apalis.get_jobs(
        worker_id text, v_job_type text, v_job_count integer DEFAULT 5
    ) RETURNS SETOF apalis.jobs LANGUAGE plpgsql AS $fn$
    BEGIN
        RAISE EXCEPTION 'the job store fails (a test)';
    END
    $fn$";
    let original = with_conn(&db, async |conn| {
        use diesel::sql_types::Text;
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Def {
            #[diesel(sql_type = Text)]
            def: String,
        }
        diesel::sql_query(
            "SELECT pg_get_functiondef('apalis.get_jobs(text, text, integer)'::regprocedure) AS def",
        )
        .get_result::<Def>(conn)
        .await
        .unwrap()
        .def
    });
    execute(&db, failing);
    std::thread::sleep(Duration::from_millis(1500));
    execute(&db, &original);

    let err = run_to_end(&db, &mut child);
    assert!(
        err.contains("starting a new one"),
        "the workers were not restarted: stderr (last 8 kB): {}",
        tail(&err)
    );
    assert_each_handled_once(&db, &prefix, total);
}
