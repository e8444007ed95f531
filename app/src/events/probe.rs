//! The event probe: a producer and diagnostic subscribers in their own schema (`voronka_probe`),
//! used by the crash test (`voronka events probe`, killed and restarted at random) and by the
//! backbone benchmark (`voronka events bench`). Everything it writes is in that schema.
//!
//! - `produced` holds every event committed by the producer (same transaction as its outbox row);
//! - `effects` holds one row per subscriber per handled event (no unique key: a duplicate effect
//!   would show), with the commit-to-handler latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Double, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use kernel::db::DbPool;
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, outbox};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "voronka_probe";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    pub n: i64,
}

impl DomainEvent for Ping {
    const TYPE: &'static str = "probe.ping";
}

/// Creates the probe schema and tables if missing.
pub async fn install(conn: &mut AsyncPgConnection) -> AppResult<()> {
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    conn.batch_execute(&format!("SELECT pg_advisory_lock(hashtext('{SCHEMA}'))"))
        .await?;
    let found: Exists =
        sql_query("SELECT to_regclass('voronka_probe.outbox') IS NOT NULL AS exists")
            .get_result(conn)
            .await?;
    if !found.exists {
        conn.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
             {}
             CREATE TABLE {SCHEMA}.produced (event_id UUID PRIMARY KEY, n BIGINT NOT NULL);
             CREATE TABLE {SCHEMA}.effects (
                 subscriber TEXT NOT NULL, event_id UUID NOT NULL,
                 handled_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), latency_ms DOUBLE PRECISION NOT NULL);
             CREATE INDEX effects_event_idx ON {SCHEMA}.effects (subscriber, event_id);",
            outbox::ddl(SCHEMA)
        ))
        .await?;
    }
    conn.batch_execute(&format!("SELECT pg_advisory_unlock(hashtext('{SCHEMA}'))"))
        .await?;
    Ok(())
}

/// A subscriber that records each ping it handles. While `failures` is above zero it fails
/// (transiently) and counts down, to exercise retries.
pub struct ProbeSubscriber {
    pub name: String,
    pub failures: Arc<AtomicI64>,
    /// While set it panics, as a handler with a bug would (for the tests that such a panic ends
    /// neither the job worker nor the broker's consumer).
    pub panics: Arc<AtomicBool>,
    /// When each attempt to handle an event started (for the retry tests).
    pub attempted_at: std::sync::Mutex<Vec<std::time::Instant>>,
}

impl ProbeSubscriber {
    pub fn new(name: impl Into<String>) -> ProbeSubscriber {
        ProbeSubscriber {
            name: name.into(),
            failures: Arc::new(AtomicI64::new(0)),
            panics: Arc::new(AtomicBool::new(false)),
            attempted_at: Default::default(),
        }
    }
}

#[async_trait]
impl Subscriber for ProbeSubscriber {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[Ping::TYPE]
    }

    fn queue_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(600))
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        if let Ok(mut at) = self.attempted_at.lock() {
            at.push(std::time::Instant::now());
        }
        if AtomicBool::load(&self.panics, Ordering::SeqCst) {
            panic!("probe: panicking on purpose");
        }
        if self.failures.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(AppError::new(
                ErrorCode::Unavailable,
                "probe: failing on purpose",
            ));
        }
        self.failures.store(0, Ordering::SeqCst);
        event.decode::<Ping>()?;
        let latency = (chrono::Utc::now() - event.occurred_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        sql_query(format!(
            "INSERT INTO {SCHEMA}.effects (subscriber, event_id, latency_ms) VALUES ($1, $2, $3)"
        ))
        .bind::<Text, _>(&self.name)
        .bind::<SqlUuid, _>(event.id)
        .bind::<Double, _>(latency)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Commits one ping (outbox row and `produced` row in one transaction); returns its id.
pub async fn produce_one(conn: &mut AsyncPgConnection, n: i64) -> AppResult<uuid::Uuid> {
    let event = EventEnvelope::new(Caller::system(AccountId(0)), &Ping { n })?;
    let id = event.id;
    conn.transaction::<_, AppError, _>(async |tx| {
        outbox::append(tx, SCHEMA, std::slice::from_ref(&event)).await?;
        sql_query(format!(
            "INSERT INTO {SCHEMA}.produced (event_id, n) VALUES ($1, $2)"
        ))
        .bind::<SqlUuid, _>(id)
        .bind::<BigInt, _>(n)
        .execute(tx)
        .await?;
        Ok(())
    })
    .await?;
    Ok(id)
}

/// Writes a ping to the outbox and rolls the transaction back: it must never be delivered.
pub async fn produce_rolled_back(conn: &mut AsyncPgConnection, n: i64) -> AppResult<()> {
    let event = EventEnvelope::new(Caller::system(AccountId(0)), &Ping { n })?;
    let result = conn
        .transaction::<(), AppError, _>(async |tx| {
            outbox::append(tx, SCHEMA, std::slice::from_ref(&event)).await?;
            Err(AppError::new(ErrorCode::Conflict, "rolled back on purpose"))
        })
        .await;
    debug_assert!(result.is_err());
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> AppResult<i64> {
    Ok(sql_query(sql).get_result::<Count>(conn).await?.n)
}

pub async fn produced(conn: &mut AsyncPgConnection) -> AppResult<i64> {
    count(conn, "SELECT count(*) AS n FROM voronka_probe.produced").await
}

/// Distinct events handled by `subscriber`.
pub async fn handled(conn: &mut AsyncPgConnection, subscriber: &str) -> AppResult<i64> {
    Ok(sql_query(
        "SELECT count(DISTINCT event_id) AS n FROM voronka_probe.effects WHERE subscriber = $1",
    )
    .bind::<Text, _>(subscriber)
    .get_result::<Count>(conn)
    .await?
    .n)
}

/// Produces until `total` pings exist (resuming after a crash), one every `pause`, rolling back
/// every `rollback_every`-th attempt.
pub async fn run_producer(
    pool: DbPool,
    total: i64,
    pause: Duration,
    rollback_every: i64,
) -> AppResult<()> {
    let mut conn = pool.get().await?;
    let mut n = produced(&mut conn).await?;
    let mut attempts = 0i64;
    while n < total {
        attempts += 1;
        if rollback_every > 0 && attempts % rollback_every == 0 {
            produce_rolled_back(&mut conn, -attempts).await?;
        } else {
            produce_one(&mut conn, n).await?;
            n += 1;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(())
}

/// The backbone of a probe process: job store, relay on the probe schema, `subscribers` probes.
pub async fn start_backbone(
    config: &crate::config::Config,
    db_url: &str,
    pool: &DbPool,
    subscribers: &[Arc<ProbeSubscriber>],
) -> Result<crate::backbone::Backbone, String> {
    let queues = subscribers
        .iter()
        .map(|s| crate::events::pg::queue_of(&s.name))
        .collect();
    let jobs = crate::backbone::job_store(config, db_url, queues).await?;
    let subs: crate::events::Subscribers = Arc::new(
        subscribers
            .iter()
            .map(|s| s.clone() as Arc<dyn Subscriber>)
            .collect(),
    );
    crate::backbone::Backbone::start(
        config,
        db_url,
        pool.clone(),
        jobs,
        crate::metrics::Metrics::new(),
        crate::backbone::Work {
            subscribers: subs,
            schemas: vec![SCHEMA],
            modules: None,
        },
    )
    .await
}

/// Waits until every subscriber handled every one of `total` produced events.
pub async fn wait_all_handled(
    pool: &DbPool,
    names: &[String],
    produced_total: i64,
    handled_each: i64,
    timeout: Duration,
) -> AppResult<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut conn = pool.get().await?;
        let mut done = produced(&mut conn).await? >= produced_total;
        for name in names {
            done &= handled(&mut conn, name).await? >= handled_each;
        }
        drop(conn);
        if done {
            return Ok(true);
        }
        if tokio::time::Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Latency percentiles (ms) of one subscriber's effects for events numbered `from..`.
pub async fn latencies(
    conn: &mut AsyncPgConnection,
    subscriber: &str,
    from: i64,
) -> AppResult<(f64, f64, f64, f64)> {
    #[derive(diesel::QueryableByName)]
    struct P {
        #[diesel(sql_type = Double)]
        p50: f64,
        #[diesel(sql_type = Double)]
        p95: f64,
        #[diesel(sql_type = Double)]
        p99: f64,
        #[diesel(sql_type = Double)]
        span_s: f64,
    }
    let p: P = sql_query(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e.latency_ms) AS p50,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY e.latency_ms) AS p95,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY e.latency_ms) AS p99,
                extract(epoch FROM max(e.handled_at) - min(e.handled_at))::float8 AS span_s
           FROM voronka_probe.effects e JOIN voronka_probe.produced p USING (event_id)
          WHERE e.subscriber = $1 AND p.n >= $2",
    )
    .bind::<Text, _>(subscriber)
    .bind::<BigInt, _>(from)
    .get_result(conn)
    .await?;
    Ok((p.p50, p.p95, p.p99, p.span_s))
}

/// Commits `count` pings in transactions of `per_tx`, as fast as it can; numbering from `from`.
pub async fn produce_burst(pool: &DbPool, from: i64, count: i64, per_tx: i64) -> AppResult<()> {
    let mut conn = pool.get().await?;
    let mut n = from;
    while n < from + count {
        let batch: Vec<EventEnvelope> = (n..(n + per_tx).min(from + count))
            .map(|i| EventEnvelope::new(Caller::system(AccountId(0)), &Ping { n: i }))
            .collect::<AppResult<_>>()?;
        let len = batch.len() as i64;
        conn.transaction::<_, AppError, _>(async |tx| {
            outbox::append(tx, SCHEMA, &batch).await?;
            sql_query(format!("INSERT INTO {SCHEMA}.produced (event_id, n) SELECT * FROM unnest($1::uuid[], $2::bigint[])"))
                .bind::<diesel::sql_types::Array<SqlUuid>, _>(batch.iter().map(|e| e.id).collect::<Vec<_>>())
                .bind::<diesel::sql_types::Array<BigInt>, _>(
                    batch.iter().map(|e| e.payload["n"].as_i64().unwrap_or(0)).collect::<Vec<_>>(),
                )
                .execute(tx)
                .await?;
            Ok(())
        })
        .await?;
        n += len;
    }
    Ok(())
}
