//! Starts and stops the event backbone of a process: the outbox relay, the bus, and the workers
//! (apalis for jobs and for the PostgreSQL bus; RabbitMQ consumers for the RabbitMQ bus).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config as PgQueueConfig, PostgresStorage};
use kernel::db::DbPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{BusKind, Config, JobStoreKind};
use crate::events::pg::{DeliveryCtx, PgBus, deliver, queue_of};
use crate::events::relay::Relay;
use crate::events::{Bus, Subscribers, amqp};
use crate::jobs::JobStore;
use crate::metrics::Metrics;

/// apalis' `get_jobs` (every worker's fetch, ready job or not) with the same statement and result,
/// in PL/pgSQL instead of SQL: a `LANGUAGE sql` function's body is parsed and planned again at
/// every call (about 0.5 ms, five times the statement's own cost under load); PL/pgSQL keeps the
/// plan for the session.
const GET_JOBS: &str = "CREATE OR REPLACE FUNCTION apalis.get_jobs(
    worker_id text, v_job_type text, v_job_count integer DEFAULT 5
) RETURNS SETOF apalis.jobs LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY
    WITH ready AS (
        SELECT id FROM apalis.jobs
        WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
          AND run_at < now()
          AND job_type = v_job_type
        ORDER BY priority DESC, run_at ASC
        LIMIT v_job_count
        FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE apalis.jobs j
        SET status = 'Queued', lock_by = worker_id, lock_at = now()
        FROM ready
        WHERE j.id = ready.id
        RETURNING j.*
    )
    SELECT * FROM taken;
END
$fn$";

/// The job store, ready: on PostgreSQL with apalis' tables set up, or a Redis connection. Needed
/// by workers and the jobs page. `queues` are the queues this build has (for Redis' figures).
pub async fn job_store(
    config: &Config,
    db_url: &str,
    queues: Vec<String>,
) -> Result<JobStore, String> {
    if config.jobs.store == JobStoreKind::Redis {
        // The client's default reply timeout (half a second) is shorter than a busy machine
        // can take to get to a reply; a late reply to a worker's heartbeat or fetch ends the
        // worker (it is started again, and its jobs in hand wait for its heartbeats to be
        // missed). Five seconds tells a slow Redis from a stuck one.
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn = async {
            redis::Client::open(config.jobs.redis_url.as_str())?
                .get_connection_manager_with_config(manager)
                .await
        }
        .await
        .map_err(|e| {
            format!(
                "job store: cannot reach Redis at {}: {e}",
                config.jobs.redis_url
            )
        })?;
        return Ok(JobStore::Redis(conn, Arc::new(queues)));
    }
    // apalis' statements (fetch, mark running, acknowledge, enqueue) are prepared once per
    // connection but, left to PostgreSQL, planned again at every call (their custom plans look
    // cheaper than the generic one): a plan per job and per fetch, for the same index lookups.
    let options = PgConnectOptions::from_str(db_url)
        .map_err(|e| format!("job store: {e}"))?
        .options([("plan_cache_mode", "force_generic_plan")]);
    let pool = PgPoolOptions::new()
        .max_connections(config.jobs.pool_size)
        .acquire_timeout(Duration::from_secs(config.db.timeout_secs))
        .connect_with(options)
        .await
        .map_err(|e| format!("job store: {e}"))?;
    // apalis migrations take their own lock; concurrent starts are safe.
    PostgresStorage::<()>::setup(&pool)
        .await
        .map_err(|e| format!("job store setup: {e}"))?;
    // The sweep of finished jobs (`JobStore::prune_done`) finds them by this index, and the
    // workers fetch through a plan-cached `get_jobs`. Several processes starting at once take
    // turns (the advisory lock) instead of racing to change the schema.
    let index = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('voronka.jobs_done_idx'))")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS voronka_jobs_done_idx ON apalis.jobs (done_at) WHERE status = 'Done'",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(GET_JOBS).execute(&mut *tx).await?;
        tx.commit().await
    };
    index.await.map_err(|e| format!("job store setup: {e}"))?;
    Ok(JobStore::Postgres(pool))
}

/// In-process retries with exponential backoff and jitter (the Redis store's retries).
fn retry_layer(
    retry: crate::jobs::RetryPolicy,
) -> apalis::layers::retry::BackoffRetryPolicy<apalis::layers::retry::backoff::ExponentialBackoff> {
    use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
    use apalis::layers::retry::{HasherRng, RetryPolicy};
    let mut maker = ExponentialBackoffMaker::new(retry.base, retry.cap, 0.25, HasherRng::default())
        .expect("static backoff bounds: base <= cap, jitter in [0, 100]");
    // Attempts after the first; the handler kills the job on its last attempt.
    RetryPolicy::retries((retry.max_attempts - 1).max(0) as usize)
        .with_backoff(maker.make_backoff())
}

/// Catches a job handler's panic and makes it the job's error. The job is then killed rather
/// than retried (a panic is a bug: it would panic again) and listed among the dead jobs with the
/// message, where an admin can run it again; the worker goes on with its other jobs. Uncaught,
/// the panic ended the worker, and the job, handed back to the queue when the worker's
/// heartbeats stopped, ended the next worker too, every few seconds, for ever. It wraps the
/// handler itself: as a worker's layer it would sit outside apalis' own bookkeeping of the
/// task, which the panic would skip, leaving the job recorded as running.
fn catch_panic(
    queue: String,
) -> apalis::layers::catch_panic::CatchPanicLayer<
    impl FnMut(&Box<dyn std::any::Any + Send>) -> AbortError + Clone,
    AbortError,
> {
    apalis::layers::catch_panic::CatchPanicLayer::with_panic_handler(
        move |panic: &Box<dyn std::any::Any + Send>| {
            let message = crate::jobs::panic_message(&**panic);
            tracing::error!(queue, %message, "a job's handler panicked; the job is killed");
            AbortError::new(apalis::layers::catch_panic::PanicError(format!(
                "the job's handler panicked: {message}"
            )))
        },
    )
}

/// Adds to `$workers` a worker of `$job`s on `$queue` with `$handler` and its data, on whichever
/// store holds the jobs (PostgreSQL with LISTEN/NOTIFY, or Redis with in-process retries). The
/// worker is built anew, under a new name, each time [`supervise`] restarts it.
macro_rules! register_worker {
    ($workers:ident, $wakeups:expr, $jobs:expr, $job:ty, $queue:expr, $name:expr, $data:expr,
     $concurrency:expr, $batch:expr, $heartbeat:expr, $poll:expr, $retry:expr, $handler:path) => {{
        let queue: String = $queue.to_string();
        let base: String = $name;
        let data = $data;
        let wakeups: JobWakeups = $wakeups.clone();
        let (concurrency, batch, heartbeat, poll, retry) =
            ($concurrency, $batch, $heartbeat, $poll, $retry);
        let jobs: JobStore = $jobs.clone();
        let label = queue.clone();
        let make: MakeMonitor = Box::new(move |restarts| {
            let queue = queue.clone();
            let name = worker_name(&base, restarts);
            let data = data.clone();
            let wakeups = wakeups.clone();
            match &jobs {
                JobStore::Postgres(pool) => {
                    let pool = pool.clone();
                    Monitor::new().register(move |_| {
                        let backend = PostgresStorage::<$job>::new(&pool)
                            .with_config(
                                PgQueueConfig::default()
                                    .queue(&queue)
                                    .batch_size(batch)
                                    .heartbeat_interval(heartbeat)
                                    .missed_heartbeats(5),
                            )
                            .poll_with_strategy(StreamStrategy::new(wakeups.stream(&queue)))
                            .poll_with_interval(poll);
                        WorkerBuilder::new(name.as_str())
                            .backend(backend)
                            .data(data.clone())
                            .concurrency(concurrency)
                            .build(catch_panic(queue.clone()).layer(task_fn($handler)))
                    })
                }
                JobStore::Redis(conn, _) => {
                    let conn = conn.clone();
                    Monitor::new().register(move |_| {
                        let backend = apalis_redis::RedisStorage::<$job>::new(conn.clone())
                            .with_config(
                                apalis_redis::Config::default()
                                    .queue(&queue)
                                    .batch_size(batch)
                                    .heartbeat_interval(heartbeat)
                                    .missed_heartbeats(5),
                            )
                            .poll_with_interval(poll.min(Duration::from_millis(100)));
                        WorkerBuilder::new(name.as_str())
                            .backend(backend)
                            .data(data.clone())
                            .concurrency(concurrency)
                            .retry(retry_layer(retry))
                            .build(catch_panic(queue.clone()).layer(task_fn($handler)))
                    })
                }
            }
        });
        $workers.push((label, make));
    }};
}

/// Builds a monitor of one worker; its argument is how many times the worker was restarted.
type MakeMonitor = Box<dyn Fn(usize) -> Monitor + Send + Sync>;

/// A restarted worker's name: a new one each time. The stores refuse a name still held (Redis
/// until its heartbeats are missed; PostgreSQL takes a session lock to register a known name
/// again, which the pool connection then keeps), and they hand the jobs the old worker had in
/// hand back to the queue once its heartbeats stop.
fn worker_name(base: &str, restarts: usize) -> String {
    match restarts {
        0 => base.to_string(),
        n => format!("{base}~{n}"),
    }
}

/// Runs one job worker until the process stops, and starts a new one whenever it ends without
/// being stopped. apalis ends a worker at the first failed call to its store (a Redis reply
/// later than its timeout, a PostgreSQL connection closed by a restart) or when a handler
/// panics, and does not start it again: the queue would then wait for a restart of the whole
/// process. A worker that keeps ending is restarted after a growing pause (0.1 s doubling up to
/// 10 s, less up to a fifth at random so that the workers of several processes do not all
/// come back at once).
async fn supervise(
    queue: String,
    make: MakeMonitor,
    mut stop: watch::Receiver<bool>,
    metrics: Metrics,
) {
    use rand::Rng;
    let mut restarts = 0;
    let mut failures_in_row = 0u32;
    loop {
        let mut rx = stop.clone();
        let signal = async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
            Ok(())
        };
        let started = tokio::time::Instant::now();
        // With a shutdown timeout, apalis returns Ok whatever became of the worker, and logs
        // why it ended itself ("worker future ended with error", just before the line below).
        let _ = make(restarts)
            .shutdown_timeout(Duration::from_secs(20))
            .run_with_signal(signal)
            .await;
        if *stop.borrow() {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            failures_in_row = 0;
        }
        let full =
            Duration::from_millis(100 << failures_in_row.min(7)).min(Duration::from_secs(10));
        let pause = full.mul_f64(1.0 - rand::rng().random_range(0.0..0.2));
        failures_in_row += 1;
        restarts += 1;
        metrics.worker_restarts.with_label_values(&[&queue]).inc();
        tracing::warn!(
            queue,
            restarts,
            ?pause,
            "job worker ended without being stopped; starting a new one"
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Wakes a process's job workers when jobs of their queue are stored: one LISTEN connection per
/// process on apalis' insert notification, waking only the worker of the job's queue. (apalis'
/// own pubsub opens a connection per worker, and every notification woke every worker, each
/// then fetching from its queue: about nine fetches per job under load.) Workers also poll on
/// their interval, so a notification missed while the listener reconnects delays work by at
/// most `jobs.poll_ms`.
#[derive(Clone, Default)]
struct JobWakeups(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Notify>>>>);

impl JobWakeups {
    fn notify_of(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_string()).or_default().clone()
    }

    /// One item per wake-up of `queue` (wake-ups while nobody waits are kept as one).
    fn stream(&self, queue: &str) -> futures_util::stream::BoxStream<'static, ()> {
        let notify = self.notify_of(queue);
        Box::pin(futures_util::stream::unfold(notify, |n| async move {
            n.notified().await;
            Some(((), n))
        }))
    }

    fn wake(&self, queue: &str) {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(queue) {
            n.notify_one();
        }
    }

    fn wake_all(&self) {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.values().for_each(|n| n.notify_one());
    }

    async fn listen(self, pool: sqlx::PgPool, mut stop: watch::Receiver<bool>) {
        #[derive(serde::Deserialize)]
        struct Inserted {
            job_type: String,
        }
        let mut listener: Option<sqlx::postgres::PgListener> = None;
        loop {
            let l = match listener.as_mut() {
                Some(l) => l,
                None => {
                    let connected = async {
                        let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                        l.listen("apalis::job::insert").await?;
                        Ok::<_, sqlx::Error>(l)
                    };
                    tokio::select! {
                        _ = stop.changed() => return,
                        r = connected => match r {
                            Ok(l) => {
                                // Jobs stored while nobody listened.
                                self.wake_all();
                                listener.insert(l)
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "job wake-ups: cannot listen; workers poll meanwhile");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                continue;
                            }
                        },
                    }
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                n = l.try_recv() => match n {
                    Ok(Some(n)) => {
                        if let Ok(i) = serde_json::from_str::<Inserted>(n.payload()) {
                            self.wake(&i.job_type);
                        }
                    }
                    // The connection was lost (it reconnects on the next call).
                    Ok(None) => self.wake_all(),
                    Err(e) => {
                        tracing::warn!(error = %e, "job wake-ups: listener failed; reconnecting");
                        listener = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
    }
}

/// What a backbone runs: the event subscribers, the outboxes it relays, and the modules whose
/// jobs (imports, exports) it works — none for the diagnostic probe.
pub struct Work {
    pub subscribers: Subscribers,
    pub schemas: Vec<&'static str>,
    pub modules: Option<crate::state::Modules>,
}

pub struct Backbone {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Backbones stopped with this one (another process's, in tests that run a module remote).
    also: Vec<Backbone>,
}

/// Runs `work` now and then every `period` until `stop` changes.
fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut work: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            work().await;
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
    })
}

/// A name unique to this process, for apalis worker registration.
fn instance() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("0")
    )
}

impl Backbone {
    pub async fn start(
        config: &Config,
        db_url: &str,
        db: DbPool,
        jobs: JobStore,
        metrics: Metrics,
        work: Work,
    ) -> Result<Backbone, String> {
        let Work {
            subscribers,
            schemas,
            modules,
        } = work;
        let retry = config.retry_policy();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let bus: Arc<dyn Bus> = match config.events.bus {
            // The PostgreSQL bus routes to every subscriber of the installation on this
            // database: this process's, and those of modules running as services elsewhere.
            BusKind::Postgres => Arc::new(PgBus::new(
                jobs.clone(),
                crate::server::routes(
                    &subscribers,
                    modules.as_ref().map(|m| m.remote.as_slice()).unwrap_or(&[]),
                ),
                retry,
            )),
            BusKind::Rabbitmq => Arc::new(
                amqp::AmqpBus::connect(
                    &config.events.amqp_url,
                    &config.events.amqp_namespace,
                    crate::server::routes(
                        &subscribers,
                        modules.as_ref().map(|m| m.remote.as_slice()).unwrap_or(&[]),
                    ),
                )
                .await?,
            ),
        };
        let relay = Relay {
            db_url: db_url.to_string(),
            pool: db.clone(),
            schemas,
            bus,
            metrics: metrics.clone(),
            gather: Duration::from_millis(config.events.gather_ms),
        };
        tasks.push(tokio::spawn(relay.run(stop_rx.clone())));

        let instance = instance();
        let wakeups = JobWakeups::default();
        if let JobStore::Postgres(pool) = &jobs {
            tasks.push(tokio::spawn(
                wakeups.clone().listen(pool.clone(), stop_rx.clone()),
            ));
        }
        let concurrency = config.jobs.concurrency;
        let poll = Duration::from_millis(config.jobs.poll_ms);
        let heartbeat = Duration::from_millis(config.jobs.heartbeat_ms);
        let mut workers: Vec<(String, MakeMonitor)> = Vec::new();
        match config.events.bus {
            BusKind::Postgres => {
                for sub in subscribers.iter() {
                    let ctx = Arc::new(DeliveryCtx {
                        subscriber: sub.clone(),
                        db: db.clone(),
                        jobs: jobs.clone(),
                        retry,
                        metrics: metrics.clone(),
                    });
                    let queue = queue_of(sub.name());
                    let name = format!("{queue}@{instance}");
                    register_worker!(
                        workers,
                        wakeups,
                        &jobs,
                        crate::events::pg::Deliver,
                        queue,
                        name,
                        ctx,
                        concurrency,
                        50,
                        heartbeat,
                        poll,
                        retry,
                        deliver
                    );
                }
            }
            BusKind::Rabbitmq => {
                for sub in subscribers.iter() {
                    tasks.push(tokio::spawn(amqp::consume(
                        config.events.amqp_url.clone(),
                        config.events.amqp_namespace.clone(),
                        sub.clone(),
                        db.clone(),
                        retry,
                        metrics.clone(),
                        stop_rx.clone(),
                    )));
                }
            }
        }
        if matches!(jobs, JobStore::Postgres(_)) {
            // Finished jobs go after `jobs.keep_done_minutes`, swept every minute (several
            // processes sweeping at once only share the work).
            let jobs = jobs.clone();
            let keep = Duration::from_secs(u64::from(config.jobs.keep_done_minutes) * 60);
            tasks.push(every(Duration::from_secs(60), stop_rx.clone(), move || {
                let jobs = jobs.clone();
                async move {
                    match jobs.prune_done(keep).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(removed = n, "finished jobs removed"),
                        Err(e) => {
                            tracing::warn!(error = %e, "removing finished jobs failed; will retry")
                        }
                    }
                }
            }));
        }
        if let Some(modules) = modules {
            // A remote module's background work runs in its own service.
            let remote = modules.remote.clone();
            let local = move |m: &str| !remote.contains(&m);
            if local("activities") {
                // Tasks falling due: TaskDue (the reminder) once per task, swept every few seconds;
                // several processes share the sweep (rows are taken with SKIP LOCKED).
                let activities = modules.activities.clone();
                tasks.push(every(Duration::from_secs(5), stop_rx.clone(), move || {
                    let activities = activities.clone();
                    async move {
                        if let Err(e) = activities.publish_due(None).await {
                            tracing::warn!(error = %e, "publishing due tasks failed; will retry");
                        }
                    }
                }));
            }
            if local("automation") {
                // Automation's old runs and deliveries go after `keep_days`, a batch an hour.
                let automation = modules.automation.clone();
                tasks.push(every(Duration::from_secs(3600), stop_rx.clone(), move || {
                    let automation = automation.clone();
                    async move {
                        match automation.clean_up().await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(
                                removed = n,
                                "automation: old runs and deliveries removed"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "automation clean-up failed; will retry")
                            }
                        }
                    }
                }));
            }
            if local("messaging") {
                // Processed webhook bodies go after `[messaging] keep_days`.
                let messaging = modules.messaging.clone();
                tasks.push(every(
                    Duration::from_secs(3600),
                    stop_rx.clone(),
                    move || {
                        let messaging = messaging.clone();
                        async move {
                            if let Err(e) = messaging.clean_up().await {
                                tracing::warn!(error = %e, "messaging clean-up failed; will retry");
                            }
                        }
                    },
                ));
            }
            if local("automation") {
                // Automation: due runs and deliveries go to the queue, and its workers do them.
                tasks.push(tokio::spawn(crate::work::dispatch_automation(
                    modules.automation.clone(),
                    jobs.clone(),
                    retry,
                    db_url.to_string(),
                    stop_rx.clone(),
                )));
                let actx = Arc::new(crate::work::AutomationCtx {
                    automation: modules.automation.clone(),
                    jobs: jobs.clone(),
                    retry,
                });
                let queue = crate::work::AUTOMATION_WORK;
                let name = format!("{queue}@{instance}");
                register_worker!(
                    workers,
                    wakeups,
                    &jobs,
                    automation_api::Work,
                    queue,
                    name,
                    actx,
                    concurrency,
                    50,
                    heartbeat,
                    poll,
                    retry,
                    crate::work::run_automation
                );
            }
            if local("messaging") {
                // Messaging: stored webhooks and conversations' sends go to the queue; its workers
                // do them (many at once: most of the time is spent waiting on providers and pacing).
                tasks.push(tokio::spawn(crate::work::dispatch_messaging(
                    modules.messaging.clone(),
                    jobs.clone(),
                    retry,
                    stop_rx.clone(),
                )));
                let mctx = Arc::new(crate::work::MessagingCtx {
                    messaging: modules.messaging.clone(),
                });
                let queue = crate::work::MESSAGING_WORK;
                let name = format!("{queue}@{instance}");
                register_worker!(
                    workers,
                    wakeups,
                    &jobs,
                    messaging_api::Work,
                    queue,
                    name,
                    mctx,
                    config.messaging.workers,
                    100,
                    heartbeat,
                    poll,
                    retry,
                    crate::work::run_messaging
                );
            }
            if local("contacts") {
                // Imports and exports: one at a time per process (they are heavy; more processes
                // run more).
                let ctx = Arc::new(crate::work::WorkCtx {
                    contacts: modules.contacts.clone(),
                    jobs: jobs.clone(),
                    retry,
                });
                let queue = crate::work::CONTACT_FILES;
                let name = format!("{queue}@{instance}");
                register_worker!(
                    workers,
                    wakeups,
                    &jobs,
                    crate::work::ContactFiles,
                    queue,
                    name,
                    ctx,
                    1,
                    1,
                    heartbeat,
                    poll,
                    retry,
                    crate::work::run_contact_files
                );
            }
            // Imports from amoCRM started in the settings: one at a time per process (each
            // keeps to amoCRM's rate limit on its own).
            let ictx = Arc::new(crate::import::ImportCtx {
                importer: importer::Importer::new(
                    db.clone(),
                    importer::Targets {
                        accounts: modules.accounts.clone(),
                        deals: modules.deals.clone(),
                        contacts: modules.contacts.clone(),
                        activities: modules.activities.clone(),
                    },
                ),
                jobs: jobs.clone(),
                retry,
            });
            let queue = crate::import::IMPORT_RUNS;
            let name = format!("{queue}@{instance}");
            register_worker!(
                workers,
                wakeups,
                &jobs,
                crate::import::ImportJob,
                queue,
                name,
                ictx,
                1,
                1,
                heartbeat,
                poll,
                retry,
                crate::import::run_job
            );
        }
        for (queue, make) in workers {
            tasks.push(tokio::spawn(supervise(
                queue,
                make,
                stop_rx.clone(),
                metrics.clone(),
            )));
        }
        Ok(Backbone {
            stop,
            tasks,
            also: Vec::new(),
        })
    }

    /// Stops taking new work, lets running handlers finish (up to 20 s), and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(25), t).await;
        }
        for other in self.also {
            Box::pin(other.stop()).await;
        }
    }

    /// This backbone and `other`, stopped together.
    pub fn with(mut self, other: Backbone) -> Backbone {
        self.also.push(other);
        self
    }
}
