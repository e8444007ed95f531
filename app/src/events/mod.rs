//! The event backbone: outbox relay → bus → subscribers (each through its inbox).
//!
//! Two buses: PostgreSQL (default; nothing else to run), where each subscriber has its own apalis
//! queue `events.<subscriber>`, and RabbitMQ (several processes or hosts), a durable topic
//! exchange with a durable queue per subscriber, publisher confirms and manual acks. Either way a
//! slow subscriber holds up only its own queue, delivery is at least once, and the subscriber's
//! inbox makes handling exactly once.

pub mod amqp;
pub mod pg;
pub mod probe;
pub mod relay;

use std::sync::Arc;

use async_trait::async_trait;
use kernel::AppResult;
use kernel::events::EventEnvelope;
use kernel::inbox::Subscriber;

#[async_trait]
pub trait Bus: Send + Sync {
    /// Returns once the bus has durably accepted every event of the batch.
    async fn publish(&self, events: &[EventEnvelope]) -> AppResult<()>;
}

/// The subscribers of this process, fixed at start.
pub type Subscribers = Arc<Vec<Arc<dyn Subscriber>>>;
