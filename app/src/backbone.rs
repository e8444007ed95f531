//! Starts and stops the event backbone of a process: the outbox relay, the bus, and the workers
//! (apalis for jobs and for the PostgreSQL bus; RabbitMQ consumers for the RabbitMQ bus).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config as PgQueueConfig, PostgresStorage};
use kernel::db::DbPool;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{BusKind, Config};
use crate::events::pg::{DeliveryCtx, PgBus, deliver, queue_of};
use crate::events::relay::Relay;
use crate::events::{Bus, Subscribers, amqp};
use crate::metrics::Metrics;

/// The job store's pool, with apalis' tables set up. Needed by workers and the jobs page.
pub async fn job_store(config: &Config, db_url: &str) -> Result<PgPool, String> {
    let pool = PgPoolOptions::new()
        .max_connections(config.jobs.pool_size)
        .acquire_timeout(Duration::from_secs(config.db.timeout_secs))
        .connect(db_url)
        .await
        .map_err(|e| format!("job store: {e}"))?;
    // apalis migrations take their own lock; concurrent starts are safe.
    PostgresStorage::<()>::setup(&pool)
        .await
        .map_err(|e| format!("job store setup: {e}"))?;
    Ok(pool)
}

pub struct Backbone {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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
        jobs: PgPool,
        metrics: Metrics,
        subscribers: Subscribers,
        schemas: Vec<&'static str>,
    ) -> Result<Backbone, String> {
        let retry = config.retry_policy();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let bus: Arc<dyn Bus> = match config.events.bus {
            BusKind::Postgres => Arc::new(PgBus::new(jobs.clone(), subscribers.clone(), retry)),
            BusKind::Rabbitmq => Arc::new(
                amqp::AmqpBus::connect(&config.events.amqp_url, subscribers.clone()).await?,
            ),
        };
        let relay = Relay {
            db_url: db_url.to_string(),
            pool: db.clone(),
            schemas,
            bus,
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(relay.run(stop_rx.clone())));

        match config.events.bus {
            BusKind::Postgres => {
                let instance = instance();
                let concurrency = config.jobs.concurrency;
                let poll = Duration::from_millis(config.jobs.poll_ms);
                let heartbeat = Duration::from_millis(config.jobs.heartbeat_ms);
                let mut monitor = Monitor::new();
                for sub in subscribers.iter() {
                    let ctx = Arc::new(DeliveryCtx {
                        subscriber: sub.clone(),
                        db: db.clone(),
                        jobs: jobs.clone(),
                        retry,
                        metrics: metrics.clone(),
                    });
                    let queue = queue_of(sub.name());
                    let pool = jobs.clone();
                    let name = format!("{queue}@{instance}");
                    monitor = monitor.register(move |_| {
                        let backend = PostgresStorage::<crate::events::pg::Deliver>::new(&pool)
                            .with_config(
                                PgQueueConfig::default()
                                    .queue(&queue)
                                    .batch_size(50)
                                    .heartbeat_interval(heartbeat)
                                    .missed_heartbeats(5),
                            )
                            .with_pubsub()
                            .poll_with_interval(poll);
                        WorkerBuilder::new(name.as_str())
                            .backend(backend)
                            .data(ctx.clone())
                            .concurrency(concurrency)
                            .build(deliver)
                    });
                }
                let mut rx = stop_rx.clone();
                tasks.push(tokio::spawn(async move {
                    let signal = async move {
                        let _ = rx.changed().await;
                        Ok(())
                    };
                    if let Err(e) = monitor
                        .shutdown_timeout(Duration::from_secs(20))
                        .run_with_signal(signal)
                        .await
                    {
                        tracing::error!(error = %e, "job workers stopped with an error");
                    }
                }));
            }
            BusKind::Rabbitmq => {
                for sub in subscribers.iter() {
                    tasks.push(tokio::spawn(amqp::consume(
                        config.events.amqp_url.clone(),
                        sub.clone(),
                        db.clone(),
                        retry,
                        metrics.clone(),
                        stop_rx.clone(),
                    )));
                }
            }
        }
        Ok(Backbone { stop, tasks })
    }

    /// Stops taking new work, lets running handlers finish (up to 20 s), and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(25), t).await;
        }
    }
}
