//! The deals module's contract: pipelines and their stages, loss reasons, deals, the board.
//!
//! Every call takes a [`Caller`]; reads are scoped to the caller's account and to what the
//! caller's rights let them see (all, their group's, their own, or nothing).

pub mod events;
pub mod remote;
mod types;

use async_trait::async_trait;
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppResult, Caller, UserId};

pub use types::*;

#[async_trait]
pub trait Deals: Send + Sync {
    // --- pipelines and stages -----------------------------------------------------------------
    /// Creates a pipeline with the system stages "Incoming leads" (first), the given open
    /// stages, "Closed – won" (142) and "Closed – lost" (143).
    async fn create_pipeline(&self, caller: Caller, new: NewPipeline) -> AppResult<Pipeline>;
    async fn pipelines(&self, caller: Caller) -> AppResult<Vec<Pipeline>>;
    async fn pipeline(&self, caller: Caller, id: PipelineId) -> AppResult<Pipeline>;
    async fn add_stage(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        new: NewStage,
    ) -> AppResult<Stage>;
    async fn update_stage(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        stage: StageId,
        new: NewStage,
    ) -> AppResult<Stage>;
    /// Puts the open stages in the given order (system stages keep their places).
    async fn reorder_stages(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        order: Vec<StageId>,
    ) -> AppResult<Pipeline>;
    /// Deletes an open stage after moving its deals to `move_to` (a stage of the same pipeline).
    async fn delete_stage(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        stage: StageId,
        move_to: StageId,
    ) -> AppResult<()>;

    /// Renames a pipeline, changes its place in the list, or makes it the main one (an account
    /// has exactly one main pipeline: making one main unmarks the other).
    async fn update_pipeline(
        &self,
        caller: Caller,
        id: PipelineId,
        patch: PipelinePatch,
    ) -> AppResult<Pipeline>;
    /// Deletes a pipeline with its stages. Refused for the main pipeline and for a pipeline that
    /// holds deals (deleted ones too, as they can be restored).
    async fn delete_pipeline(&self, caller: Caller, id: PipelineId) -> AppResult<()>;

    // --- loss reasons -------------------------------------------------------------------------
    async fn loss_reasons(&self, caller: Caller) -> AppResult<Vec<LossReason>>;
    async fn create_loss_reason(&self, caller: Caller, name: &str) -> AppResult<LossReason>;
    async fn update_loss_reason(
        &self,
        caller: Caller,
        id: LossReasonId,
        name: &str,
    ) -> AppResult<LossReason>;
    /// Deletes a reason no deal gives (refused while a deal, deleted or not, gives it).
    async fn delete_loss_reason(&self, caller: Caller, id: LossReasonId) -> AppResult<()>;

    // --- deals --------------------------------------------------------------------------------
    async fn create_deal(&self, caller: Caller, new: NewDeal) -> AppResult<Deal>;
    /// Creates deals in one transaction: all of them, or none (up to [`MAX_BULK`]); in order.
    async fn create_deals(&self, caller: Caller, news: Vec<NewDeal>) -> AppResult<Vec<Deal>>;
    async fn deal(&self, caller: Caller, id: DealId) -> AppResult<Deal>;
    /// The deal a command with request key `key` (a caller's cause) created, deleted or not, if
    /// any and if the caller may see it: lets a caller that may have crashed after the create
    /// learn whether it happened.
    async fn requested_deal(&self, caller: Caller, key: uuid::Uuid) -> AppResult<Option<Deal>>;
    /// Which of the given deals the caller may see (one query; others' and unknown ones are
    /// left out), e.g. to show only the tasks of visible deals.
    async fn visible_deals(&self, caller: Caller, ids: Vec<DealId>) -> AppResult<Vec<DealId>>;
    /// How many open (not closed, not deleted) deals each of the given users is responsible for
    /// (users with none are left out); e.g. to assign a deal to the least loaded manager.
    async fn open_deal_counts(
        &self,
        caller: Caller,
        users: Vec<UserId>,
    ) -> AppResult<Vec<(UserId, i64)>>;
    /// Changes a deal's name, budget or responsible user (`None` leaves a field as it is).
    async fn update_deal(&self, caller: Caller, id: DealId, patch: DealPatch) -> AppResult<Deal>;
    /// Soft-deletes a deal: it leaves the board, the lists and the totals, and can be restored.
    async fn delete_deal(&self, caller: Caller, id: DealId) -> AppResult<()>;
    async fn restore_deal(&self, caller: Caller, id: DealId) -> AppResult<Deal>;
    /// Moves a deal to a stage (of its pipeline) and a place in that column.
    async fn move_deal(&self, caller: Caller, id: DealId, to: MoveTo) -> AppResult<Deal>;
    /// Moves a deal to another pipeline: into `stage` there (its first open stage when `None`),
    /// on top of that column, with the stage history, totals and a stage-changed event naming
    /// the new pipeline, as any move.
    async fn move_deal_to_pipeline(
        &self,
        caller: Caller,
        id: DealId,
        pipeline: PipelineId,
        stage: Option<StageId>,
        loss_reason_id: Option<LossReasonId>,
    ) -> AppResult<Deal>;

    /// Fills a pipeline with `count` generated deals spread over its open stages and the given
    /// users, with their stage history and totals, in set-based statements (for benchmarks and
    /// demos). Administrators only.
    async fn seed_deals(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        count: i64,
        users: Vec<kernel::UserId>,
    ) -> AppResult<Seeded>;

    /// Sets when and by whom deals were made (see [`kernel::provenance`]), for deals brought
    /// over by an import: their creation, last change and closing, and the time they entered
    /// the stage they are in when that is their only stay. Deals not in the account are
    /// skipped; the number changed is returned. The system or administrators only.
    async fn restore_provenance(
        &self,
        caller: Caller,
        items: Vec<kernel::provenance::Provenance>,
    ) -> AppResult<usize>;

    /// Every stay of a deal in a stage, oldest first.
    async fn stage_history(&self, caller: Caller, id: DealId) -> AppResult<Vec<StageVisit>>;
    /// The account's deals (deleted ones too) with ids above `after`, in id order, each with
    /// every stay in a stage: what read models are rebuilt from. Administrators, robots and the
    /// system only; at most 5,000 a call.
    async fn history(
        &self,
        caller: Caller,
        after: Option<DealId>,
        limit: u32,
    ) -> AppResult<Vec<DealHistory>>;
    /// Applies one change to the given deals in one transaction: all of them change, or none
    /// (an unknown or invisible deal refuses the whole batch). Returns how many changed.
    async fn bulk(&self, caller: Caller, ids: Vec<DealId>, action: BulkAction) -> AppResult<usize>;

    // --- custom fields and tags ---------------------------------------------------------------
    async fn custom_fields(&self, caller: Caller) -> AppResult<Vec<CustomField>>;
    async fn create_custom_field(
        &self,
        caller: Caller,
        new: NewCustomField,
    ) -> AppResult<CustomField>;
    async fn update_custom_field(
        &self,
        caller: Caller,
        id: FieldId,
        new: NewCustomField,
    ) -> AppResult<CustomField>;
    /// Deletes a field and its values on every deal.
    async fn delete_custom_field(&self, caller: Caller, id: FieldId) -> AppResult<()>;
    /// The groups deal fields are shown under, in order.
    async fn field_groups(&self, caller: Caller) -> AppResult<Vec<FieldGroup>>;
    /// Adds a group (administrators; names are unique without case).
    async fn create_field_group(&self, caller: Caller, new: NewFieldGroup)
    -> AppResult<FieldGroup>;
    /// Renames a group or moves it among the others.
    async fn update_field_group(
        &self,
        caller: Caller,
        id: i64,
        new: NewFieldGroup,
    ) -> AppResult<FieldGroup>;
    /// Deletes a group; its fields (and their values) stay, in the main list.
    async fn delete_field_group(&self, caller: Caller, id: i64) -> AppResult<()>;
    async fn tags(&self, caller: Caller) -> AppResult<Vec<Tag>>;
    /// The named tags, created when missing (names compare without case), in the order given.
    async fn create_tags(&self, caller: Caller, names: Vec<String>) -> AppResult<Vec<Tag>>;

    // --- the board and the list ---------------------------------------------------------------
    /// Every column of a pipeline with its totals (as far as the caller may see; exact without
    /// a filter, counted up to [`FILTERED_COUNT_CAP`] with one) and the first page of its deals.
    async fn board(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        filter: &DealFilter,
        page: PageRequest,
    ) -> AppResult<Vec<BoardColumn>>;
    /// The next page of one column.
    async fn column(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        stage: StageId,
        filter: &DealFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> AppResult<kernel::paging::Page<Deal>>;
    /// Deals in a table: filtered, sorted (`desc`: largest or newest first), keyset paged.
    async fn list(
        &self,
        caller: Caller,
        filter: &DealFilter,
        sort: ListSort,
        desc: bool,
        page: PageRequest,
    ) -> AppResult<kernel::paging::Page<Deal>>;

    /// Deals in a table by page number (`page` from 1, `limit` at most 250), for the public
    /// API's `page`/`limit` paging; the bool says whether a next page exists. Deep pages cost
    /// more than keyset pages ([`Deals::list`]); prefer those where the client allows.
    async fn list_at(
        &self,
        caller: Caller,
        filter: &DealFilter,
        sort: ListSort,
        desc: bool,
        page: u32,
        limit: u32,
    ) -> AppResult<(Vec<Deal>, bool)>;

    // --- saved filters (per user) -------------------------------------------------------------
    async fn saved_filters(&self, caller: Caller) -> AppResult<Vec<SavedFilter>>;
    async fn save_filter(&self, caller: Caller, name: &str, query: &str) -> AppResult<SavedFilter>;
    async fn delete_saved_filter(&self, caller: Caller, id: SavedFilterId) -> AppResult<()>;
}

/// The deals with these ids that the caller may see, in any order (ids of deleted or unseen
/// deals are left out), read a page of `MAX_LIMIT` ids at a time through [`Deals::list`].
pub async fn deals_by_ids(
    deals: &dyn Deals,
    caller: Caller,
    ids: &[DealId],
) -> AppResult<Vec<Deal>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(kernel::paging::MAX_LIMIT as usize) {
        let filter = DealFilter {
            ids: chunk.to_vec(),
            ..Default::default()
        };
        let page = PageRequest {
            after: None,
            limit: chunk.len() as u32,
        };
        found.extend(
            deals
                .list(caller, &filter, ListSort::Id, false, page)
                .await?
                .items,
        );
    }
    Ok(found)
}
