use chrono::{DateTime, Utc};
use kernel::paging::Page;
use kernel::typed_id;
use kernel::{AccountId, UserId};
use serde::{Deserialize, Serialize};

typed_id!(PipelineId);
typed_id!(StageId);
typed_id!(DealId);
typed_id!(LossReasonId);
typed_id!(TagId);
typed_id!(FieldId);
typed_id!(SavedFilterId);

pub use kernel::fields::{FieldEnum, FieldGroup, FieldType, NewFieldGroup};
/// Custom-field values by field id (as a string key, the way JSON objects are keyed).
pub type FieldValues = serde_json::Map<String, serde_json::Value>;

/// amoCRM's fixed ids of the closing stages, the same in every pipeline.
pub const WON: StageId = StageId(142);
pub const LOST: StageId = StageId(143);

impl StageId {
    /// Whether this is one of the closing stages ([`WON`] or [`LOST`]).
    pub fn is_closing(self) -> bool {
        self == WON || self == LOST
    }
}

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

impl Pipeline {
    /// The account's main pipeline among `all` (the first one when none is marked main).
    pub fn main_of(all: &[Pipeline]) -> Option<&Pipeline> {
        all.iter().find(|p| p.is_main).or(all.first())
    }
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

/// A change to a pipeline: `None` leaves a property as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelinePatch {
    pub name: Option<String>,
    pub sort: Option<i32>,
    pub is_main: Option<bool>,
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
    pub tags: Vec<Tag>,
    pub custom_fields: FieldValues,
    /// Contacts of the contacts module, the main one first.
    pub contact_ids: Vec<i64>,
    pub main_contact_id: Option<i64>,
    pub company_ids: Vec<i64>,
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
    /// Tag names; tags that do not exist yet are created.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub custom_fields: FieldValues,
    /// Linked contacts; `main_contact_id` (one of them, or added) comes first.
    #[serde(default)]
    pub contact_ids: Vec<i64>,
    #[serde(default)]
    pub main_contact_id: Option<i64>,
    #[serde(default)]
    pub company_ids: Vec<i64>,
}

impl NewDeal {
    /// A deal with just a name in a pipeline (first open stage, the caller responsible).
    pub fn new(pipeline_id: PipelineId, name: impl Into<String>) -> NewDeal {
        NewDeal {
            name: name.into(),
            price: 0,
            pipeline_id,
            stage_id: None,
            responsible_user_id: None,
            tags: Vec::new(),
            custom_fields: FieldValues::new(),
            contact_ids: Vec::new(),
            main_contact_id: None,
            company_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: TagId,
    pub name: String,
}

/// A stage a deal may enter only with the field filled in (amoCRM's `required_statuses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredAt {
    pub pipeline_id: PipelineId,
    pub status_id: StageId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    pub id: FieldId,
    pub name: String,
    pub field_type: FieldType,
    pub sort: i32,
    /// The choices of a select or multiselect field, in order.
    pub enums: Vec<FieldEnum>,
    pub required_statuses: Vec<RequiredAt>,
    /// The group it is shown under (`None`: the main list).
    #[serde(default)]
    pub group_id: Option<i64>,
}

impl CustomField {
    pub fn required_at(&self, pipeline: PipelineId, stage: StageId) -> bool {
        self.required_statuses
            .iter()
            .any(|r| r.pipeline_id == pipeline && r.status_id == stage)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCustomField {
    pub name: String,
    pub field_type: FieldType,
    /// The choices' texts, in order (select and multiselect only). On an update, choices keep
    /// their ids by text; missing ones are removed.
    #[serde(default)]
    pub enums: Vec<String>,
    #[serde(default)]
    pub required_statuses: Vec<RequiredAt>,
    /// The group to show it under (`None`: the main list).
    #[serde(default)]
    pub group_id: Option<i64>,
}

/// Which deals a board, a column or the list shows. Empty parts do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealFilter {
    /// Deals of this pipeline only (the list; the board is always one pipeline).
    pub pipeline_id: Option<PipelineId>,
    /// Deals in any of these stages (the list).
    pub stages: Vec<StageId>,
    pub responsible: Vec<UserId>,
    /// Deals with any of these tags.
    pub tags: Vec<TagId>,
    /// Any part of the name (at least 2 characters to filter).
    pub query: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_to: Option<DateTime<Utc>>,
    /// Closed (won or lost) in `[closed_from, closed_to)`.
    pub closed_from: Option<DateTime<Utc>>,
    pub closed_to: Option<DateTime<Utc>>,
    /// Custom fields with this value (as `normalize` would store it; an enum id for selects).
    pub fields: Vec<(FieldId, serde_json::Value)>,
    /// Deals linked to this contact (of the contacts module).
    pub contact: Option<i64>,
    /// Deals linked to this company (of the contacts module).
    pub company: Option<i64>,
    /// Only these deals.
    #[serde(default)]
    pub ids: Vec<DealId>,
    /// Deals that have been in any of these stages (by their stage history), e.g. the deals
    /// that reached a step of a funnel.
    #[serde(default)]
    pub visited: Vec<StageId>,
    /// Deals in any of these pipelines.
    #[serde(default)]
    pub pipelines: Vec<PipelineId>,
    /// Deals in any of these (pipeline, stage) pairs (the closing stages' ids are shared by
    /// every pipeline, so a stage is named with its pipeline).
    #[serde(default)]
    pub statuses: Vec<(PipelineId, StageId)>,
    /// Budget in `[price_from, price_to]` (both ends included).
    #[serde(default)]
    pub price_from: Option<i64>,
    #[serde(default)]
    pub price_to: Option<i64>,
    /// Created by any of these users (0: by a robot or the system).
    #[serde(default)]
    pub created_by: Vec<i64>,
    #[serde(default)]
    pub updated_by: Vec<i64>,
}

impl DealFilter {
    pub fn is_empty(&self) -> bool {
        self == &DealFilter::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListSort {
    #[default]
    Created,
    Updated,
    Name,
    Price,
    Id,
}

impl ListSort {
    pub fn parse(s: &str) -> Option<ListSort> {
        match s {
            "id" => Some(ListSort::Id),
            "created_at" => Some(ListSort::Created),
            "updated_at" => Some(ListSort::Updated),
            "name" => Some(ListSort::Name),
            "price" => Some(ListSort::Price),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListSort::Created => "created_at",
            ListSort::Updated => "updated_at",
            ListSort::Name => "name",
            ListSort::Price => "price",
            ListSort::Id => "id",
        }
    }
}

/// A change applied to many deals at once, all or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum BulkAction {
    Move {
        stage_id: StageId,
        loss_reason_id: Option<LossReasonId>,
    },
    Responsible {
        user_id: UserId,
    },
    AddTags {
        tags: Vec<String>,
    },
    RemoveTags {
        tags: Vec<String>,
    },
    Delete,
}

/// The most deals one bulk action takes.
pub const MAX_BULK: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFilter {
    pub id: SavedFilterId,
    pub name: String,
    /// The filter as the board's query string.
    pub query: String,
}

/// One stay of a deal in a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageVisit {
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    pub entered_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    pub entered_by: kernel::Actor,
}

/// A deal as it stands and every stay of it in a stage (oldest first), for rebuilding read
/// models (`Deals::history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealHistory {
    pub id: DealId,
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    pub price: i64,
    pub responsible_user_id: UserId,
    pub loss_reason_id: Option<LossReasonId>,
    pub tag_ids: Vec<TagId>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub visits: Vec<StageVisit>,
}

pub const MAX_HISTORY_PAGE: u32 = 5000;

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
    /// A filtered column counts up to [`FILTERED_COUNT_CAP`]; when there are more, `deals`
    /// is the cap and `budget` the sum over those.
    pub capped: bool,
}

pub const FILTERED_COUNT_CAP: i64 = 1000;

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
    /// The whole new set of tag names.
    pub tags: Option<Vec<String>>,
    /// Values to set, by field id; a null or empty value clears the field. Other fields keep
    /// their values.
    pub custom_fields: Option<FieldValues>,
    pub contact_ids: Option<Vec<i64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "kernel::remote::some"
    )]
    pub main_contact_id: Option<Option<i64>>,
    pub company_ids: Option<Vec<i64>>,
}

/// What `seed_deals` made: how many deals, with consecutive ids from `first` to `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeded {
    pub count: i64,
    pub first: DealId,
    pub last: DealId,
}

impl kernel::fields::FieldDef for CustomField {
    fn field_id(&self) -> i64 {
        self.id.0
    }
    fn field_name(&self) -> &str {
        &self.name
    }
    fn field_type(&self) -> FieldType {
        self.field_type
    }
    fn field_enums(&self) -> &[FieldEnum] {
        &self.enums
    }
    fn field_group(&self) -> Option<i64> {
        self.group_id
    }
}
