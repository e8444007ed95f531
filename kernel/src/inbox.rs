//! Subscribers and the inbox: each subscriber handles each event at most once.
//!
//! `handle_once` records the event id in the subscriber module's `<schema>.inbox` in the same
//! transaction as the subscriber's effect; a redelivered event finds its row and is skipped.
//! Events a subscriber cannot read (malformed, unknown type or version) are recorded as failed
//! with the reason and not retried; transient errors roll back and are retried by the caller.

use async_trait::async_trait;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::events::EventEnvelope;
use crate::{AppError, AppResult, ErrorCode};

#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Unique and stable: it names the subscriber's queue and its inbox rows (`analytics.facts`).
    fn name(&self) -> &str;
    /// The schema whose inbox records what this subscriber handled (its module's schema).
    fn schema(&self) -> &'static str;
    /// The event types it wants; `"*"` means all.
    fn event_types(&self) -> &'static [&'static str];
    /// The effect, on the inbox transaction's connection. Return `BadRequest`/`Validation` for an
    /// event that can never be handled; other errors are retried.
    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()>;

    /// Drop the subscriber's broker queue after this long unused (diagnostic subscribers only;
    /// a real subscriber's queue must keep events while it is down).
    fn queue_ttl(&self) -> Option<std::time::Duration> {
        None
    }

    fn wants(&self, event_type: &str) -> bool {
        self.event_types()
            .iter()
            .any(|t| *t == "*" || *t == event_type)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// Already handled before (a redelivery).
    Duplicate,
    /// Recorded as failed, with the reason; never retried.
    Rejected(String),
}

impl Outcome {
    /// For metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

/// Errors that retrying cannot fix.
pub fn is_permanent(e: &AppError) -> bool {
    matches!(
        e.code,
        ErrorCode::BadRequest | ErrorCode::Validation | ErrorCode::NotFound | ErrorCode::Forbidden
    )
}

/// Handles `event` for `sub` exactly once. `Err` means a transient failure: nothing was recorded,
/// and the event must be delivered again later.
pub async fn handle_once(
    conn: &mut AsyncPgConnection,
    sub: &dyn Subscriber,
    event: &EventEnvelope,
) -> AppResult<Outcome> {
    let schema = sub.schema();
    let result = conn
        .transaction::<_, AppError, _>(async |tx| {
            let inserted = sql_query(format!(
                "INSERT INTO {schema}.inbox (subscriber, event_id, account_id, event_type, outcome)
                 VALUES ($1, $2, $3, $4, 'done') ON CONFLICT DO NOTHING"
            ))
            .bind::<Text, _>(sub.name())
            .bind::<SqlUuid, _>(event.id)
            .bind::<BigInt, _>(event.account_id.0)
            .bind::<Text, _>(&event.event_type)
            .execute(tx)
            .await?;
            if inserted == 0 {
                return Ok(Outcome::Duplicate);
            }
            sub.handle(tx, event).await?;
            Ok(Outcome::Handled)
        })
        .await;
    match result {
        Err(e) if is_permanent(&e) => {
            record_failure(conn, sub, event, &e.message).await?;
            Ok(Outcome::Rejected(e.message))
        }
        other => other,
    }
}

/// Handles a batch in one transaction (one commit, however many events), each event in a
/// savepoint, so an event the subscriber rejects is recorded and the others go on. `Err` (a
/// transient failure) rolls the whole batch back, to be delivered again.
pub async fn handle_batch(
    conn: &mut AsyncPgConnection,
    sub: &dyn Subscriber,
    events: &[EventEnvelope],
) -> AppResult<Vec<Outcome>> {
    conn.transaction::<_, AppError, _>(async |tx| {
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(handle_once(tx, sub, event).await?);
        }
        Ok(outcomes)
    })
    .await
}

/// Records that `sub` could not handle `event` (and will not try again).
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    sub: &dyn Subscriber,
    event: &EventEnvelope,
    reason: &str,
) -> AppResult<()> {
    let schema = sub.schema();
    tracing::warn!(subscriber = sub.name(), event = %event.id, event_type = %event.event_type, reason, "event rejected");
    sql_query(format!(
        "INSERT INTO {schema}.inbox (subscriber, event_id, account_id, event_type, outcome, error)
         VALUES ($1, $2, $3, $4, 'failed', $5) ON CONFLICT DO NOTHING"
    ))
    .bind::<Text, _>(sub.name())
    .bind::<SqlUuid, _>(event.id)
    .bind::<BigInt, _>(event.account_id.0)
    .bind::<Text, _>(&event.event_type)
    .bind::<Nullable<Text>, _>(Some(reason))
    .execute(conn)
    .await?;
    Ok(())
}
