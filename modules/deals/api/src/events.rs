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
    /// The deal's tags (absent in events written before tags were carried).
    #[serde(default)]
    pub tag_ids: Vec<i64>,
    /// The deal's contacts (absent in events written before contacts were carried: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_ids: Option<Vec<i64>>,
}

impl DomainEvent for DealCreated {
    const TYPE: &'static str = "deals.deal_created";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealStageChanged {
    pub deal_id: DealId,
    /// The pipeline the deal is in now.
    pub pipeline_id: PipelineId,
    pub from_stage_id: StageId,
    pub to_stage_id: StageId,
    pub loss_reason_id: Option<LossReasonId>,
    /// The pipeline the deal came from, when the move took it to another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_pipeline_id: Option<PipelineId>,
}

impl DomainEvent for DealStageChanged {
    const TYPE: &'static str = "deals.deal_stage_changed";
}

/// Changed fields only, before and after (`name`, `price`, `responsible_user_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealUpdated {
    pub deal_id: DealId,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl DomainEvent for DealUpdated {
    const TYPE: &'static str = "deals.deal_updated";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealResponsibleChanged {
    pub deal_id: DealId,
    pub from_user_id: UserId,
    pub to_user_id: UserId,
}

impl DomainEvent for DealResponsibleChanged {
    const TYPE: &'static str = "deals.deal_responsible_changed";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealDeleted {
    pub deal_id: DealId,
}

impl DomainEvent for DealDeleted {
    const TYPE: &'static str = "deals.deal_deleted";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealRestored {
    pub deal_id: DealId,
}

impl DomainEvent for DealRestored {
    const TYPE: &'static str = "deals.deal_restored";
}
