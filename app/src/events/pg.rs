//! The PostgreSQL bus: a batch of events becomes one apalis job per interested subscriber, in
//! that subscriber's own queue `events.<subscriber>`; a worker per queue hands each event to the
//! subscriber through its inbox.

use std::sync::Arc;

use apalis::prelude::*;
use async_trait::async_trait;
use kernel::db::DbPool;
use kernel::events::EventEnvelope;
use kernel::inbox::{self, Subscriber};
use kernel::{AppError, AppResult};
use serde::{Deserialize, Serialize};

use super::{Bus, Subscribers};
use crate::jobs::{self, JobStore, RetryPolicy};
use crate::metrics::Metrics;

/// The job: events for one subscriber, in outbox order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deliver {
    pub events: Vec<EventEnvelope>,
}

pub fn queue_of(subscriber: &str) -> String {
    format!("events.{subscriber}")
}

pub struct PgBus {
    jobs: JobStore,
    subscribers: Subscribers,
    retry: RetryPolicy,
}

impl PgBus {
    pub fn new(jobs: JobStore, subscribers: Subscribers, retry: RetryPolicy) -> PgBus {
        PgBus {
            jobs,
            subscribers,
            retry,
        }
    }
}

#[async_trait]
impl Bus for PgBus {
    /// One job per subscriber that wants any of the events, stored side by side (each on a
    /// connection of its own) rather than one after another: the relay waits for them all.
    async fn publish(&self, events: &[EventEnvelope]) -> AppResult<()> {
        let jobs = self.subscribers.iter().filter_map(|sub| {
            let mine: Vec<EventEnvelope> = events
                .iter()
                // An event the subscriber would ignore is not even queued for it.
                .filter(|e| sub.wants(&e.event_type) && !sub.ignores(e))
                .cloned()
                .collect();
            (!mine.is_empty()).then_some(async move {
                let queue = queue_of(sub.name());
                self.jobs
                    .enqueue(&queue, Deliver { events: mine }, None, self.retry)
                    .await
            })
        });
        for stored in futures_util::future::join_all(jobs).await {
            stored.map_err(|e| AppError::new(kernel::ErrorCode::Unavailable, e))?;
        }
        Ok(())
    }
}

/// What a delivery worker needs.
pub struct DeliveryCtx {
    pub subscriber: Arc<dyn Subscriber>,
    pub db: DbPool,
    pub jobs: JobStore,
    pub retry: RetryPolicy,
    pub metrics: Metrics,
}

/// Hands each event to the subscriber once. A transient failure defers the job by the backoff
/// and fails it (apalis retries it then); events already handled are skipped by the inbox.
pub async fn deliver(
    job: Deliver,
    ctx: Data<Arc<DeliveryCtx>>,
    id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let result = deliver_all(&job, &ctx).await;
    if let Err(e) = &result {
        tracing::warn!(subscriber = ctx.subscriber.name(), error = %e, "delivery failed; will retry");
        if let Some(abort) =
            jobs::after_failure(&ctx.jobs, ctx.retry, &id, &attempt, e.to_string()).await
        {
            return Err(abort);
        }
    }
    result.map_err(|e| Box::new(e) as BoxDynError)
}

async fn deliver_all(job: &Deliver, ctx: &DeliveryCtx) -> Result<(), AppError> {
    let mut conn = ctx.db.get().await?;
    let outcomes = inbox::handle_batch(&mut conn, &*ctx.subscriber, &job.events).await?;
    drop(conn);
    for o in outcomes {
        ctx.metrics
            .events_handled
            .with_label_values(&[ctx.subscriber.name(), o.label()])
            .inc();
    }
    ctx.subscriber.after_commit(&job.events).await;
    Ok(())
}
