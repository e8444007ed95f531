use chrono::{DateTime, Utc};
use kernel::paging::Page;
use kernel::typed_id;
use kernel::{AccountId, UserId};
use serde::{Deserialize, Serialize};

typed_id!(PipelineId);
typed_id!(StageId);
typed_id!(DealId);
typed_id!(LossReasonId);

/// amoCRM's fixed ids of the closing stages, the same in every pipeline.
pub const WON: StageId = StageId(142);
pub const LOST: StageId = StageId(143);

pub const MAX_PIPELINES: usize = 50;
pub const MAX_STAGES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Incoming,
    Open,
    Won,
    Lost,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Incoming => "incoming",
            StageKind::Open => "open",
            StageKind::Won => "won",
            StageKind::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<StageKind> {
        [
            StageKind::Incoming,
            StageKind::Open,
            StageKind::Won,
            StageKind::Lost,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn is_closed(self) -> bool {
        matches!(self, StageKind::Won | StageKind::Lost)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub id: StageId,
    pub pipeline_id: PipelineId,
    pub name: String,
    pub color: String,
    pub sort: i32,
    pub kind: StageKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: PipelineId,
    pub name: String,
    pub sort: i32,
    pub is_main: bool,
    /// In board order: incoming, the open stages, won, lost.
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewStage {
    pub name: String,
    /// `#rrggbb`, lower-case.
    pub color: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPipeline {
    pub name: String,
    pub stages: Vec<NewStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossReason {
    pub id: LossReasonId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    pub id: DealId,
    pub account_id: AccountId,
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    pub name: String,
    pub price: i64,
    pub responsible_user_id: UserId,
    pub position: i64,
    pub loss_reason_id: Option<LossReasonId>,
    pub created_by: i64,
    pub updated_by: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeal {
    pub name: String,
    pub price: i64,
    pub pipeline_id: PipelineId,
    /// The pipeline's first open stage when not given.
    pub stage_id: Option<StageId>,
    /// The caller when not given.
    pub responsible_user_id: Option<UserId>,
}

/// Where a deal goes: a stage, and optionally the deal it should follow in that column (none:
/// to the top). A move to "Closed – lost" needs a loss reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveTo {
    pub stage_id: StageId,
    pub after: Option<DealId>,
    pub loss_reason_id: Option<LossReasonId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub deals: i64,
    pub budget: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardColumn {
    pub stage: Stage,
    pub totals: Totals,
    pub deals: Page<Deal>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealPatch {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub responsible_user_id: Option<UserId>,
}
