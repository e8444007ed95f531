//! Subscribers and the inbox: each subscriber handles each event at most once.
//!
//! `handle_once` records the event id in the subscriber module's `<schema>.inbox` in the same
//! transaction as the subscriber's effect; a redelivered event finds its row and is skipped.
//! Events a subscriber cannot read (malformed, unknown type or version) are recorded as failed
//! with the reason and not retried; transient errors roll back and are retried by the caller.

use async_trait::async_trait;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Uuid as SqlUuid};
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

    /// The effect of several events, in order, on one transaction's connection. By default one
    /// `handle` each; a subscriber overrides it to do a batch in fewer statements (one insert of
    /// many rows, one lookup shared by the batch). An error is treated as `handle`'s: a
    /// permanent one makes the caller redo the batch event by event, to reject only the bad one.
    async fn handle_many(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<()> {
        for event in events {
            self.handle(conn, event).await?;
        }
        Ok(())
    }

    /// Called once the transaction that handled `events` has committed (not when it rolled
    /// back), outside it: work the events made due now, done at once instead of when a sweep
    /// finds it. Best effort: what it leaves undone, the subscriber's module finds by its own
    /// means (automation: the dispatcher's hand-out of due runs).
    async fn after_commit(&self, _events: &[EventEnvelope]) {}

    /// Whether the subscriber's own effect is keyed by the event id (a unique `event_id` in its
    /// own table, written with `ON CONFLICT DO NOTHING`), so that a redelivered event is already a
    /// no-op and needs no inbox row: that saves a row and an index entry per event. Such a
    /// subscriber is called through `handle_new`.
    fn deduplicates_itself(&self) -> bool {
        false
    }

    /// For a subscriber that deduplicates itself: the effect of the events (distinct ids, in
    /// order), leaving one handled before as it is; returns the ids of those handled now (by
    /// default all of them: a subscriber that cannot tell reports a redelivery as handled).
    async fn handle_new(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<std::collections::HashSet<uuid::Uuid>> {
        self.handle_many(conn, events).await?;
        Ok(events.iter().map(|e| e.id).collect())
    }

    /// Whether this event, of a type it wants, asks nothing of the subscriber, as the event
    /// itself shows (a stage change between two open stages, for a subscriber that follows
    /// only whether deals are open). Such an event is handled without a transaction and leaves
    /// no inbox row: a redelivery is as harmless as the first delivery. An event the subscriber
    /// cannot read must not be ignored (it is rejected, and recorded as such).
    fn ignores(&self, _event: &EventEnvelope) -> bool {
        false
    }

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
    if sub.ignores(event) {
        return Ok(Outcome::Handled);
    }
    let result = conn
        .transaction::<_, AppError, _>(async |tx| {
            if sub.deduplicates_itself() {
                let new = sub.handle_new(tx, &[event]).await?;
                return Ok(if new.is_empty() {
                    Outcome::Duplicate
                } else {
                    Outcome::Handled
                });
            }
            if record_batch(tx, sub, &[event]).await?.is_empty() {
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

/// Handles a batch in one transaction (one commit, however many events). First optimistically:
/// the batch's inbox rows in one statement, then the subscriber's effect for the new events (its
/// `handle_many`), with no savepoints (they cost two round trips per event). If the subscriber rejects an event, that
/// attempt is rolled back and the batch is done again event by event, each in a savepoint, so the
/// rejected event is recorded and the others go on. `Err` (a transient failure) rolls the whole
/// batch back, to be delivered again. Events the subscriber ignores are handled without any of
/// this (no transaction, no inbox row).
pub async fn handle_batch(
    conn: &mut AsyncPgConnection,
    sub: &dyn Subscriber,
    events: &[EventEnvelope],
) -> AppResult<Vec<Outcome>> {
    // Events that ask nothing of the subscriber are handled as they are (and recorded nowhere).
    let ignored: Vec<bool> = events.iter().map(|e| sub.ignores(e)).collect();
    let todo: Vec<&EventEnvelope> = events
        .iter()
        .zip(&ignored)
        .filter(|(_, i)| !**i)
        .map(|(e, _)| e)
        .collect();
    let mut done = handle_wanted(conn, sub, &todo).await?.into_iter();
    Ok(ignored
        .iter()
        .map(|i| match i {
            true => Outcome::Handled,
            false => done.next().unwrap_or(Outcome::Handled),
        })
        .collect())
}

/// `handle_batch` for the events the subscriber does not ignore.
async fn handle_wanted(
    conn: &mut AsyncPgConnection,
    sub: &dyn Subscriber,
    events: &[&EventEnvelope],
) -> AppResult<Vec<Outcome>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let fast = conn
        .transaction::<_, AppError, _>(async |tx| {
            // An id is taken out of the set when handled: the same event twice in the batch is
            // handled once.
            if sub.deduplicates_itself() {
                // The subscriber's own rows say which events are new; it gets each id once.
                let mut seen = std::collections::HashSet::with_capacity(events.len());
                let distinct: Vec<&EventEnvelope> = events
                    .iter()
                    .copied()
                    .filter(|e| seen.insert(e.id))
                    .collect();
                let mut new = sub.handle_new(tx, &distinct).await?;
                return Ok(events
                    .iter()
                    .map(|e| {
                        if new.remove(&e.id) {
                            Outcome::Handled
                        } else {
                            Outcome::Duplicate
                        }
                    })
                    .collect());
            }
            let mut new = record_batch(tx, sub, events).await?;
            let mut outcomes = Vec::with_capacity(events.len());
            let mut todo = Vec::with_capacity(new.len());
            for event in events.iter().copied() {
                if new.remove(&event.id) {
                    todo.push(event);
                    outcomes.push(Outcome::Handled);
                } else {
                    outcomes.push(Outcome::Duplicate);
                }
            }
            sub.handle_many(tx, &todo).await?;
            Ok(outcomes)
        })
        .await;
    match fast {
        Err(e) if is_permanent(&e) => {}
        other => return other,
    }
    conn.transaction::<_, AppError, _>(async |tx| {
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(handle_once(tx, sub, event).await?);
        }
        Ok(outcomes)
    })
    .await
}

#[derive(diesel::QueryableByName)]
struct Recorded {
    #[diesel(sql_type = SqlUuid)]
    event_id: uuid::Uuid,
}

/// Records the batch's events as handled by `sub` in one statement; returns the ids recorded now
/// (those not handled before).
async fn record_batch(
    conn: &mut AsyncPgConnection,
    sub: &dyn Subscriber,
    events: &[&EventEnvelope],
) -> AppResult<std::collections::HashSet<uuid::Uuid>> {
    let schema = sub.schema();
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
    let accounts: Vec<i64> = events.iter().map(|e| e.account_id.0).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let rows: Vec<Recorded> = crate::sql::query(format!(
        "INSERT INTO {schema}.inbox (subscriber, event_id, account_id, event_type, outcome)
         SELECT $1, e, a, t, 'done' FROM unnest($2::uuid[], $3::bigint[], $4::text[]) AS x(e, a, t)
         ON CONFLICT DO NOTHING RETURNING event_id"
    ))
    .bind::<Text, _>(sub.name())
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<BigInt>, _>(&accounts)
    .bind::<Array<Text>, _>(&types)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.event_id).collect())
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
