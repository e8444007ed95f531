//! The RabbitMQ bus: a durable topic exchange `<namespace>.events` (routing key = event type), a
//! durable queue `<namespace>.events.<subscriber>` per subscriber bound to the types it wants,
//! persistent messages with publisher confirms, and consumers that ack only after the inbox
//! transaction commits. Unacked messages go back to the queue if a consumer dies.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use kernel::db::DbPool;
use kernel::events::EventEnvelope;
use kernel::inbox::{self, Subscriber};
use kernel::{AppError, AppResult, ErrorCode};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::{Mutex, watch};

use super::Bus;
use crate::jobs::RetryPolicy;
use crate::metrics::Metrics;

/// Deliveries handled in one transaction at most.
const BATCH: usize = 100;
/// Batches whose after-commit hook runs at once, per consumer (the next batch waits for one to
/// end past that).
const HOOKS_AT_ONCE: usize = 4;

/// The exchange of an installation (`[events] amqp_namespace`, "voronka" unless several
/// installations share one broker).
pub fn exchange(namespace: &str) -> String {
    format!("{namespace}.events")
}

pub fn queue_of(namespace: &str, subscriber: &str) -> String {
    format!("{namespace}.events.{subscriber}")
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    AppError::new(ErrorCode::Unavailable, format!("RabbitMQ: {e}"))
}

async fn connect(url: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("voronka".into()),
    )
    .await
}

async fn declare_exchange(ch: &Channel, namespace: &str) -> Result<(), lapin::Error> {
    ch.exchange_declare(
        exchange(namespace).as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

/// Declares `sub`'s durable queue and binds it to the event types it wants; returns its name.
async fn declare_queue(
    ch: &Channel,
    namespace: &str,
    sub: &dyn Subscriber,
) -> Result<String, lapin::Error> {
    let queue = queue_of(namespace, sub.name());
    let mut args = FieldTable::default();
    if let Some(ttl) = sub.queue_ttl() {
        args.insert(
            "x-expires".into(),
            lapin::types::AMQPValue::LongUInt(ttl.as_millis().min(u32::MAX as u128) as u32),
        );
    }
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    for t in sub.event_types() {
        let key = if *t == "*" { "#" } else { t };
        ch.queue_bind(
            queue.as_str().into(),
            exchange(namespace).as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(queue)
}

/// Publishing side; reconnects on the next publish after a failure. It declares every
/// subscriber's queue before the first publish — this process's and those of modules running as
/// services elsewhere — so no event is published before a queue exists to keep it (a topic
/// exchange drops what no queue is bound for), even for a service that has not started yet.
pub struct AmqpBus {
    url: String,
    namespace: String,
    subscribers: super::Subscribers,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpBus {
    pub async fn connect(
        url: &str,
        namespace: &str,
        subscribers: super::Subscribers,
    ) -> Result<AmqpBus, String> {
        let bus = AmqpBus {
            url: url.to_string(),
            namespace: namespace.to_string(),
            subscribers,
            channel: Mutex::new(None),
        };
        bus.open()
            .await
            .map_err(|e| format!("cannot reach RabbitMQ at {}: {e}", redact(url)))?;
        Ok(bus)
    }

    async fn open(&self) -> Result<(), lapin::Error> {
        let conn = connect(&self.url).await?;
        let ch = conn.create_channel().await?;
        declare_exchange(&ch, &self.namespace).await?;
        for sub in self.subscribers.iter() {
            declare_queue(&ch, &self.namespace, &**sub).await?;
        }
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *self.channel.lock().await = Some((conn, ch));
        Ok(())
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, events: &[EventEnvelope]) -> AppResult<()> {
        if self.channel.lock().await.is_none() {
            self.open().await.map_err(unavailable)?;
        }
        let guard = self.channel.lock().await;
        let Some((_, ch)) = guard.as_ref() else {
            return Err(unavailable("not connected"));
        };
        let exchange = exchange(&self.namespace);
        let mut confirms = Vec::with_capacity(events.len());
        let mut failed: Option<String> = None;
        for e in events {
            let body = serde_json::to_vec(e).map_err(|err| AppError::internal(err.to_string()))?;
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(e.id.to_string().into())
                .with_content_type("application/json".into());
            match ch
                .basic_publish(
                    exchange.as_str().into(),
                    e.event_type.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
            {
                Ok(c) => confirms.push(c),
                Err(err) => {
                    failed = Some(err.to_string());
                    break;
                }
            }
        }
        for c in confirms {
            match c.await {
                Ok(Confirmation::Ack(_)) => {}
                Ok(other) => {
                    failed = failed.or(Some(format!("the broker did not confirm: {other:?}")))
                }
                Err(err) => failed = failed.or(Some(err.to_string())),
            }
        }
        drop(guard);
        if let Some(err) = failed {
            // Drop the channel: the next publish reconnects. The relay rolls back and retries.
            *self.channel.lock().await = None;
            return Err(unavailable(err));
        }
        Ok(())
    }
}

/// Consumes one subscriber's queue until `stop`; reconnects with backoff when the broker goes.
pub async fn consume(
    url: String,
    namespace: String,
    subscriber: Arc<dyn Subscriber>,
    db: DbPool,
    retry: RetryPolicy,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    while !*stop.borrow() {
        match consume_once(
            &url,
            &namespace,
            &subscriber,
            &db,
            retry,
            &metrics,
            &mut stop,
        )
        .await
        {
            Ok(()) => break,
            Err(e) => {
                failures += 1;
                let delay = retry.backoff(failures.min(6));
                tracing::warn!(subscriber = subscriber.name(), error = %e, ?delay, "consumer lost its broker; reconnecting");
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn consume_once(
    url: &str,
    namespace: &str,
    sub: &Arc<dyn Subscriber>,
    db: &DbPool,
    retry: RetryPolicy,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let e = |e: lapin::Error| e.to_string();
    let conn = connect(url).await.map_err(e)?;
    let ch = conn.create_channel().await.map_err(e)?;
    declare_exchange(&ch, namespace).await.map_err(e)?;
    let queue = declare_queue(&ch, namespace, &**sub).await.map_err(e)?;
    ch.basic_qos(256, BasicQosOptions::default())
        .await
        .map_err(e)?;
    let tag = format!("{}@{}", sub.name(), std::process::id());
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(e)?;
    let mut attempt = 0u32;
    let hooks = Arc::new(tokio::sync::Semaphore::new(HOOKS_AT_ONCE));
    loop {
        let first = tokio::select! {
            _ = stop.changed() => return Ok(()),
            d = consumer.next() => d,
        };
        let Some(first) = first else {
            return Err("the consumer stream ended".into());
        };
        // Take what else is already here (up to a batch): one transaction, one ack for all.
        let mut batch = vec![first.map_err(|e| e.to_string())?];
        while batch.len() < BATCH {
            match consumer.next().now_or_never() {
                Some(Some(d)) => batch.push(d.map_err(|e| e.to_string())?),
                _ => break,
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        for d in &batch {
            match serde_json::from_slice::<EventEnvelope>(&d.data) {
                Ok(ev) => events.push(ev),
                Err(err) => {
                    // Not an event at all: nothing to record it under; log it and drop it.
                    tracing::error!(subscriber = sub.name(), error = %err, "malformed message dropped");
                    metrics
                        .events_handled
                        .with_label_values(&[sub.name(), "malformed"])
                        .inc();
                }
            }
        }
        // A panic in the subscriber fails the batch like any other error (it goes back to the
        // queue after the backoff) rather than ending the consumer, which left the subscriber's
        // queue unconsumed until the process was restarted.
        let outcome = match db.get().await {
            Ok(mut c) => std::panic::AssertUnwindSafe(inbox::handle_batch(&mut c, &**sub, &events))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Err(AppError::internal(format!(
                        "the subscriber panicked: {}",
                        crate::jobs::panic_message(&*panic)
                    )))
                }),
            Err(err) => Err(AppError::from(err)),
        };
        let Some(last) = batch.last() else { continue };
        match outcome {
            Ok(outcomes) => {
                attempt = 0;
                for o in outcomes {
                    metrics
                        .events_handled
                        .with_label_values(&[sub.name(), o.label()])
                        .inc();
                }
                last.ack(BasicAckOptions { multiple: true })
                    .await
                    .map_err(e)?;
                // The hook's work (automation's runs due now) goes on beside the next batches,
                // a few batches' at a time: waited for, it held the consumer, whose rate was
                // then the hook's.
                let permit = hooks
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?;
                let sub = sub.clone();
                tokio::spawn(async move {
                    let hook = std::panic::AssertUnwindSafe(sub.after_commit(&events));
                    if let Err(panic) = hook.catch_unwind().await {
                        // The events are handled; what the hook left undone its module finds
                        // by its own means.
                        tracing::error!(
                            subscriber = sub.name(),
                            panic = crate::jobs::panic_message(&*panic),
                            "the subscriber panicked after its batch committed"
                        );
                    }
                    drop(permit);
                });
            }
            Err(err) => {
                attempt += 1;
                let delay = retry.backoff(attempt);
                tracing::warn!(subscriber = sub.name(), events = events.len(), error = %err, ?delay, "handling failed; requeued");
                tokio::time::sleep(delay.min(Duration::from_secs(60))).await;
                last.nack(BasicNackOptions {
                    requeue: true,
                    multiple: true,
                })
                .await
                .map_err(e)?;
            }
        }
    }
}
