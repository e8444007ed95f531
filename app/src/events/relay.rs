//! The outbox relay: claims unpublished events (`FOR UPDATE SKIP LOCKED`, so several relays in
//! several processes never publish the same row twice at once), publishes them, and marks them
//! published before committing. Woken by `NOTIFY voronka_outbox` from the outbox trigger, with a
//! one-second safety poll. A crash between publishing and committing republishes the batch:
//! subscribers' inboxes absorb the duplicates.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::{FutureExt, StreamExt};
use kernel::db::DbPool;
use kernel::{AppError, outbox};
use tokio::sync::watch;

use super::Bus;
use crate::metrics::Metrics;

pub const BATCH: i64 = 500;

pub struct Relay {
    pub db_url: String,
    pub pool: DbPool,
    pub schemas: Vec<&'static str>,
    pub bus: Arc<dyn Bus>,
    pub metrics: Metrics,
    /// After a wake-up, how long the relay lets further commits gather before it claims them
    /// (`[events] gather_ms`): under load, one claim and one delivery per subscriber then carry
    /// many events instead of one each.
    pub gather: Duration,
}

impl Relay {
    /// Publishes one batch from each of `schemas` in one transaction and one publication (each
    /// subscriber gets one delivery for all of them); returns how many rows it took from each.
    pub async fn publish_batch(&self, schemas: &[&'static str]) -> Result<Vec<usize>, AppError> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            // One statement claims from every outbox, one marks them all published: under
            // load each round trip of this loop waits for a core, and every event waits for
            // the loop.
            let mut events = Vec::new();
            let mut claims = Vec::with_capacity(schemas.len());
            for (schema, claimed) in schemas
                .iter()
                .zip(outbox::claim_many(tx, schemas, BATCH).await?)
            {
                for (seq, reason) in &claimed.unreadable {
                    tracing::error!(schema, seq, reason, "unreadable outbox row skipped");
                    self.metrics.events_unreadable.inc();
                }
                events.extend(claimed.events);
                claims.push(claimed.seqs);
            }
            if !events.is_empty() {
                self.bus.publish(&events).await?;
            }
            let marks: Vec<(&str, &[i64])> = schemas
                .iter()
                .zip(&claims)
                .map(|(schema, seqs)| (*schema, seqs.as_slice()))
                .collect();
            outbox::mark_published_many(tx, &marks).await?;
            self.metrics.events_published.inc_by(events.len() as u64);
            Ok(claims.iter().map(Vec::len).collect())
        })
        .await
    }

    /// Publishes everything unpublished; returns how many rows it took.
    async fn drain(&self) -> Result<usize, AppError> {
        let mut total = 0;
        let mut pending = {
            let mut conn = self.pool.get().await?;
            outbox::pending(&mut conn, &self.schemas).await?
        };
        // A short batch means that outbox is drained: no empty claim to find that out.
        while !pending.is_empty() {
            let taken = self.publish_batch(&pending).await?;
            total += taken.iter().sum::<usize>();
            pending = pending
                .into_iter()
                .zip(taken)
                .filter(|(_, n)| *n as i64 >= BATCH)
                .map(|(s, _)| s)
                .collect();
        }
        Ok(total)
    }

    async fn set_awake(&self, awake: bool) -> Result<(), AppError> {
        let mut conn = self.pool.get().await?;
        for schema in &self.schemas {
            outbox::set_relay_awake(&mut conn, schema, awake).await?;
        }
        Ok(())
    }

    /// Drains the outboxes; while events keep coming, keeps draining every few milliseconds
    /// with the "awake" flag up, so that writers skip their NOTIFY (see
    /// `outbox::set_relay_awake`). Takes the flag down and drains once more before it returns.
    /// Returns whether it published anything.
    async fn work(&self, stop: &watch::Receiver<bool>) -> Result<bool, AppError> {
        if self.drain().await? == 0 {
            return Ok(false);
        }
        self.set_awake(true).await?;
        let busy = async {
            while !*stop.borrow() {
                tokio::time::sleep(self.gather).await;
                if self.drain().await? == 0 {
                    break;
                }
            }
            Ok::<_, AppError>(())
        }
        .await;
        let lowered = self.set_awake(false).await;
        busy?;
        lowered?;
        // Rows of transactions that saw the flag up send no NOTIFY: give those in flight a
        // moment to commit, then take them. (Later stragglers are found by the short polls
        // that follow a busy spell.)
        tokio::time::sleep(self.gather).await;
        self.drain().await?;
        Ok(true)
    }

    /// Removes events published more than a week ago, at most once an hour.
    async fn prune(&self, last: &mut Option<tokio::time::Instant>) {
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(3600)) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        let Ok(mut conn) = self.pool.get().await else {
            return;
        };
        for schema in &self.schemas {
            match outbox::prune(&mut conn, schema, 7).await {
                Ok(n) if n > 0 => {
                    tracing::info!(schema, removed = n, "published outbox rows pruned")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(schema, error = %e, "pruning the outbox failed"),
            }
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let mut pruned = None;
        let mut last_busy: Option<tokio::time::Instant> = None;
        'outer: loop {
            let mut listener = match AsyncPgConnection::establish(&self.db_url).await {
                Ok(mut c) => match c
                    .batch_execute(&format!("LISTEN {}", outbox::NOTIFY_CHANNEL))
                    .await
                {
                    Ok(()) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "relay cannot LISTEN; polling");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "relay cannot connect for LISTEN; polling");
                    None
                }
            };
            loop {
                self.prune(&mut pruned).await;
                match self.work(&stop).await {
                    Ok(busy) => {
                        failures = 0;
                        if busy {
                            last_busy = Some(tokio::time::Instant::now());
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        self.metrics.relay_errors.inc();
                        tracing::warn!(error = %e, failures, "relay could not publish; will retry");
                    }
                }
                let pause = if failures == 0 {
                    // Poll often for a while after a busy spell (a writer that saw the flag up
                    // just before it came down sent no NOTIFY), rarely once things are quiet.
                    if last_busy.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
                        Duration::from_millis(20)
                    } else {
                        Duration::from_secs(1)
                    }
                } else {
                    Duration::from_millis(200 * u64::from(failures.min(25)))
                };
                let woken = async {
                    match listener.as_mut() {
                        Some(l) => std::pin::pin!(l.notifications_stream())
                            .next()
                            .await
                            .map(|n| n.is_ok())
                            .unwrap_or(false),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.changed() => break 'outer,
                    _ = tokio::time::sleep(pause) => {}
                    alive = woken => {
                        if !alive {
                            // The listening connection died: reconnect it.
                            continue 'outer;
                        }
                        tokio::time::sleep(self.gather).await;
                        // The wake-ups of the commits gathered meanwhile are covered by the
                        // drain that follows.
                        if let Some(l) = listener.as_mut() {
                            let mut pending = std::pin::pin!(l.notifications_stream());
                            while let Some(Some(Ok(_))) = pending.next().now_or_never() {}
                        }
                    }
                }
                if *stop.borrow() {
                    break 'outer;
                }
            }
        }
        tracing::info!("relay stopped");
    }
}
