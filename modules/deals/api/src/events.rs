//! Events the deals module publishes (through its outbox).

use kernel::UserId;
use kernel::events::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{DealId, LossReasonId, PipelineId, StageId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealCreated {
    pub deal_id: DealId,
    pub name: String,
    pub price: i64,
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    pub responsible_user_id: UserId,
}

impl DomainEvent for DealCreated {
    const TYPE: &'static str = "deals.deal_created";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealStageChanged {
    pub deal_id: DealId,
    pub pipeline_id: PipelineId,
    pub from_stage_id: StageId,
    pub to_stage_id: StageId,
    pub loss_reason_id: Option<LossReasonId>,
}

impl DomainEvent for DealStageChanged {
    const TYPE: &'static str = "deals.deal_stage_changed";
}
