//! Events the automation module publishes (through its outbox).

use kernel::events::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{RunId, TriggerId};

/// A trigger's run on a deal ended: done, failed (with the error) or cut as a loop. Shown in the
/// deal's timeline (the event log keeps it under the deal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFinished {
    pub run_id: RunId,
    pub trigger_id: TriggerId,
    pub trigger_name: String,
    pub deal_id: i64,
    pub status: String,
    pub error: Option<String>,
}

impl DomainEvent for RunFinished {
    const TYPE: &'static str = "automation.run_finished";
}
