//! Who did something: every change and every event names its actor.

use serde::{Deserialize, Serialize};

use crate::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A person signed in to the UI, or an API token acting for them.
    User { id: UserId },
    /// An automation robot (a stage trigger or a bot) identified by its trigger or bot id.
    Robot { id: i64 },
    /// An external integration (OAuth client) acting for a user.
    Integration { id: i64, user: UserId },
    /// Voronka itself: migrations, maintenance, imports. `import` marks records brought over
    /// by an import: robots do not react to those (an import neither messages clients nor
    /// makes tasks; the records are as they were where they came from).
    System {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        import: bool,
    },
}

impl Actor {
    /// The user to attribute the change to, if there is one (amoCRM shows 0 for robots).
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Actor::User { id } => Some(*id),
            Actor::Integration { user, .. } => Some(*user),
            Actor::Robot { .. } | Actor::System { .. } => None,
        }
    }

    /// Whether this is an import bringing records over as they were (fields required at a
    /// stage do not hold them back: the source had them there without the value).
    pub fn is_import(&self) -> bool {
        matches!(self, Actor::System { import: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_round_trips_through_json() {
        for a in [
            Actor::User { id: UserId(7) },
            Actor::Robot { id: 3 },
            Actor::Integration {
                id: 9,
                user: UserId(7),
            },
            Actor::System { import: false },
            Actor::System { import: true },
        ] {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Actor>(&json).unwrap(), a);
        }
        assert_eq!(Actor::Robot { id: 1 }.user_id(), None);
        assert_eq!(
            Actor::Integration {
                id: 1,
                user: UserId(5)
            }
            .user_id(),
            Some(UserId(5))
        );
    }
}

/// Who is asking, in which account: passed to every module call that reads or changes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub account_id: crate::AccountId,
    pub actor: Actor,
    /// The event or command this call is made on behalf of: events the call causes carry it as
    /// their `causation_id` (so chains of robots can be traced and loops cut), and a module may
    /// use it to make a robot's repeated command do nothing the second time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<uuid::Uuid>,
}

impl Caller {
    pub fn user(account_id: crate::AccountId, user: UserId) -> Caller {
        Caller {
            account_id,
            actor: Actor::User { id: user },
            cause: None,
        }
    }

    pub fn system(account_id: crate::AccountId) -> Caller {
        Caller {
            account_id,
            actor: Actor::System { import: false },
            cause: None,
        }
    }

    /// An import bringing records over (the system, marked so that robots leave them be).
    pub fn importing(account_id: crate::AccountId) -> Caller {
        Caller {
            account_id,
            actor: Actor::System { import: true },
            cause: None,
        }
    }

    /// The same caller acting on behalf of `cause` (an event, or a command whose request key
    /// makes a repeat do nothing the second time).
    pub fn caused_by(self, cause: uuid::Uuid) -> Caller {
        Caller {
            cause: Some(cause),
            ..self
        }
    }

    /// A robot (stage trigger `robot`, or a bot) acting on behalf of `cause`.
    pub fn robot(account_id: crate::AccountId, robot: i64, cause: uuid::Uuid) -> Caller {
        Caller {
            account_id,
            actor: Actor::Robot { id: robot },
            cause: Some(cause),
        }
    }
}
