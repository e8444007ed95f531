//! Domain events: what happened, told to whoever subscribes.
//!
//! A module appends events to its own outbox in the same transaction as the change they report
//! (`outbox::append`); a relay publishes them to the bus; each subscriber handles each event once
//! (`inbox::handle_once`). Delivery is at least once; handling is exactly once per subscriber.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AccountId, Actor, AppError, AppResult, Caller, ErrorCode};

/// A typed event payload. `TYPE` is stable and namespaced by module (`accounts.user_created`);
/// `VERSION` grows when the payload changes incompatibly.
pub trait DomainEvent: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    const VERSION: i32 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// UUIDv7: unique, and ordered by creation time.
    pub id: Uuid,
    pub account_id: AccountId,
    pub event_type: String,
    pub version: i32,
    pub actor: Actor,
    pub occurred_at: DateTime<Utc>,
    /// The event (or command) that caused this one: lets chains of robots be traced and loops cut.
    pub causation_id: Option<Uuid>,
    pub payload: serde_json::Value,
}

impl EventEnvelope {
    pub fn new<E: DomainEvent>(caller: Caller, event: &E) -> AppResult<EventEnvelope> {
        Ok(EventEnvelope {
            id: Uuid::now_v7(),
            account_id: caller.account_id,
            event_type: E::TYPE.to_string(),
            version: E::VERSION,
            actor: caller.actor,
            occurred_at: Utc::now(),
            causation_id: caller.cause,
            payload: serde_json::to_value(event)
                .map_err(|e| AppError::internal(format!("encoding {}: {e}", E::TYPE)))?,
        })
    }

    pub fn caused_by(mut self, cause: Uuid) -> EventEnvelope {
        self.causation_id = Some(cause);
        self
    }

    pub fn is<E: DomainEvent>(&self) -> bool {
        self.event_type == E::TYPE
    }

    /// The typed payload; a mismatched type or version, or a payload that does not parse, is a
    /// `BadRequest` (the event is malformed for this reader, retrying will not help).
    pub fn decode<E: DomainEvent>(&self) -> AppResult<E> {
        if self.event_type != E::TYPE || self.version != E::VERSION {
            return Err(AppError::new(
                ErrorCode::BadRequest,
                format!(
                    "expected {} v{}, got {} v{}",
                    E::TYPE,
                    E::VERSION,
                    self.event_type,
                    self.version
                ),
            ));
        }
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            AppError::new(
                ErrorCode::BadRequest,
                format!("malformed {} payload: {e}", E::TYPE),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserId;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pinged {
        n: i32,
    }
    impl DomainEvent for Pinged {
        const TYPE: &'static str = "test.pinged";
    }

    #[test]
    fn envelopes_carry_type_actor_and_cause() {
        let caller = Caller::user(AccountId(1), UserId(2));
        let cause = Uuid::now_v7();
        let e = EventEnvelope::new(caller, &Pinged { n: 3 })
            .unwrap()
            .caused_by(cause);
        assert_eq!(e.id.get_version_num(), 7);
        assert_eq!(e.causation_id, Some(cause));
        assert!(e.is::<Pinged>());
        assert_eq!(e.decode::<Pinged>().unwrap(), Pinged { n: 3 });
        let mut bad = e.clone();
        bad.payload = serde_json::json!({"n": "three"});
        assert_eq!(
            bad.decode::<Pinged>().unwrap_err().code,
            ErrorCode::BadRequest
        );
        let mut newer = e;
        newer.version = 2;
        assert!(newer.decode::<Pinged>().is_err());
    }
}
