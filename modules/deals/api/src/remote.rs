//! Remote mode: the deals module's trait over HTTP, for when the module runs as its own
//! service (`[modules.deals] mode = "remote"`). The client and the service's dispatcher are both
//! written by [`kernel::remote_trait!`] from the one list below, which must name every method of
//! the trait (the compiler refuses the client otherwise).

#![allow(clippy::too_many_arguments, unused_imports)]

use kernel::paging::{Cursor, PageRequest};
use kernel::remote::RemoteClient;
use kernel::{AppResult, Caller, UserId};

use super::*;

/// The deals module's trait, answered by its service.
pub struct DealsClient {
    remote: RemoteClient,
}

impl DealsClient {
    pub fn new(remote: RemoteClient) -> DealsClient {
        DealsClient { remote }
    }
}

kernel::remote_trait! {
    impl Deals for DealsClient, dispatch dispatch_deals, methods DEALS_METHODS {
            write fn create_pipeline(caller: Caller, new: NewPipeline) -> Pipeline;
            read fn pipelines(caller: Caller) -> Vec<Pipeline>;
            read fn pipeline(caller: Caller, id: PipelineId) -> Pipeline;
            write fn add_stage(caller: Caller, pipeline: PipelineId, new: NewStage) -> Stage;
            write fn update_stage(caller: Caller, pipeline: PipelineId, stage: StageId, new: NewStage) -> Stage;
            write fn reorder_stages(caller: Caller, pipeline: PipelineId, order: Vec<StageId>) -> Pipeline;
            write fn delete_stage(caller: Caller, pipeline: PipelineId, stage: StageId, move_to: StageId) -> ();
            write fn update_pipeline(caller: Caller, id: PipelineId, patch: PipelinePatch) -> Pipeline;
            write fn delete_pipeline(caller: Caller, id: PipelineId) -> ();
            read fn loss_reasons(caller: Caller) -> Vec<LossReason>;
            write fn create_loss_reason(caller: Caller, name: &str as String) -> LossReason;
            write fn update_loss_reason(caller: Caller, id: LossReasonId, name: &str as String) -> LossReason;
            write fn delete_loss_reason(caller: Caller, id: LossReasonId) -> ();
            write fn create_deal(caller: Caller, new: NewDeal) -> Deal;
            write fn create_deals(caller: Caller, news: Vec<NewDeal>) -> Vec<Deal>;
            read fn deal(caller: Caller, id: DealId) -> Deal;
            read fn requested_deal(caller: Caller, key: uuid::Uuid) -> Option<Deal>;
            read fn visible_deals(caller: Caller, ids: Vec<DealId>) -> Vec<DealId>;
            read fn open_deal_counts(caller: Caller, users: Vec<UserId>) -> Vec<(UserId, i64)>;
            write fn update_deal(caller: Caller, id: DealId, patch: DealPatch) -> Deal;
            write fn delete_deal(caller: Caller, id: DealId) -> ();
            write fn restore_deal(caller: Caller, id: DealId) -> Deal;
            write fn move_deal(caller: Caller, id: DealId, to: MoveTo) -> Deal;
            write fn move_deal_to_pipeline(caller: Caller, id: DealId, pipeline: PipelineId, stage: Option<StageId>, loss_reason_id: Option<LossReasonId>) -> Deal;
            write fn seed_deals(caller: Caller, pipeline: PipelineId, count: i64, users: Vec<kernel::UserId>) -> Seeded;
            write fn restore_provenance(caller: Caller, items: Vec<kernel::provenance::Provenance>) -> usize;
            read fn stage_history(caller: Caller, id: DealId) -> Vec<StageVisit>;
            read fn history(caller: Caller, after: Option<DealId>, limit: u32) -> Vec<DealHistory>;
            write fn bulk(caller: Caller, ids: Vec<DealId>, action: BulkAction) -> usize;
            read fn custom_fields(caller: Caller) -> Vec<CustomField>;
            write fn create_custom_field(caller: Caller, new: NewCustomField) -> CustomField;
            write fn update_custom_field(caller: Caller, id: FieldId, new: NewCustomField) -> CustomField;
            write fn delete_custom_field(caller: Caller, id: FieldId) -> ();
            read fn field_groups(caller: Caller) -> Vec<FieldGroup>;
            write fn create_field_group(caller: Caller, new: NewFieldGroup) -> FieldGroup;
            write fn update_field_group(caller: Caller, id: i64, new: NewFieldGroup) -> FieldGroup;
            write fn delete_field_group(caller: Caller, id: i64) -> ();
            read fn tags(caller: Caller) -> Vec<Tag>;
            write fn create_tags(caller: Caller, names: Vec<String>) -> Vec<Tag>;
            read fn board(caller: Caller, pipeline: PipelineId, filter: &DealFilter as DealFilter, page: PageRequest) -> Vec<BoardColumn>;
            read fn column(caller: Caller, pipeline: PipelineId, stage: StageId, filter: &DealFilter as DealFilter, after: Option<Cursor>, limit: u32) -> kernel::paging::Page<Deal>;
            read fn list(caller: Caller, filter: &DealFilter as DealFilter, sort: ListSort, desc: bool, page: PageRequest) -> kernel::paging::Page<Deal>;
            read fn list_at(caller: Caller, filter: &DealFilter as DealFilter, sort: ListSort, desc: bool, page: u32, limit: u32) -> (Vec<Deal>, bool);
            read fn saved_filters(caller: Caller) -> Vec<SavedFilter>;
            write fn save_filter(caller: Caller, name: &str as String, query: &str as String) -> SavedFilter;
            write fn delete_saved_filter(caller: Caller, id: SavedFilterId) -> ();
    }
}
