//! The PostgreSQL bus: a batch of events becomes one apalis job per interested subscriber, in
//! that subscriber's own queue `events.<subscriber>`; a worker per queue hands each event to the
//! subscriber through its inbox.

use std::sync::Arc;

use apalis::prelude::*;
use async_trait::async_trait;
use diesel_async::AsyncConnection;
use kernel::db::DbPool;
use kernel::events::EventEnvelope;
use kernel::inbox::{self, Outcome, Subscriber};
use kernel::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{Bus, Subscribers};
use crate::jobs::{self, RetryPolicy};
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
    jobs: PgPool,
    subscribers: Subscribers,
    retry: RetryPolicy,
}

impl PgBus {
    pub fn new(jobs: PgPool, subscribers: Subscribers, retry: RetryPolicy) -> PgBus {
        PgBus {
            jobs,
            subscribers,
            retry,
        }
    }
}

#[async_trait]
impl Bus for PgBus {
    async fn publish(&self, events: &[EventEnvelope]) -> AppResult<()> {
        for sub in self.subscribers.iter() {
            let mine: Vec<EventEnvelope> = events
                .iter()
                .filter(|e| sub.wants(&e.event_type))
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            jobs::enqueue(
                &self.jobs,
                &queue_of(sub.name()),
                Deliver { events: mine },
                None,
                self.retry,
            )
            .await
            .map_err(|e| AppError::new(kernel::ErrorCode::Unavailable, e))?;
        }
        Ok(())
    }
}

/// What a delivery worker needs.
pub struct DeliveryCtx {
    pub subscriber: Arc<dyn Subscriber>,
    pub db: DbPool,
    pub jobs: PgPool,
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
        let n = attempt.current().max(1) as u32;
        let delay = ctx.retry.backoff(n);
        tracing::warn!(subscriber = ctx.subscriber.name(), attempt = n, ?delay, error = %e, "delivery failed; will retry");
        if let Err(db) = jobs::defer(&ctx.jobs, &id.to_string(), delay).await {
            tracing::warn!(error = %db, "could not defer the retry");
        }
    }
    result.map_err(|e| Box::new(e) as BoxDynError)
}

/// One transaction for the batch (one commit, however many events); each event in a savepoint,
/// so an event the subscriber rejects is recorded and the others go on.
async fn deliver_all(job: &Deliver, ctx: &DeliveryCtx) -> Result<(), AppError> {
    let mut conn = ctx.db.get().await?;
    let outcomes = conn
        .transaction::<_, AppError, _>(async |tx| {
            let mut outcomes = Vec::with_capacity(job.events.len());
            for event in &job.events {
                outcomes.push(inbox::handle_once(tx, &*ctx.subscriber, event).await?);
            }
            Ok(outcomes)
        })
        .await?;
    for o in outcomes {
        let label = match o {
            Outcome::Handled => "handled",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected(_) => "rejected",
        };
        ctx.metrics
            .events_handled
            .with_label_values(&[ctx.subscriber.name(), label])
            .inc();
    }
    Ok(())
}
