//! The automation module's contract: stage triggers (amoCRM's Digital Pipeline), the runs they
//! start, and the account's outgoing webhooks with their deliveries.
//!
//! Triggers react to events from the bus; their actions run as background jobs and reach other
//! modules only through those modules' traits, acting as a robot (`Actor::Robot`) with the run as
//! the cause of every change they make.

pub mod events;
pub mod remote;
mod types;

use async_trait::async_trait;
use deals_api::{DealId, PipelineId};
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, AppResult, Caller};

pub use types::*;

#[async_trait]
pub trait Automation: Send + Sync {
    // --- triggers (administrators change them; members may read them) ------------------------
    /// The pipeline's triggers, by stage and position.
    async fn triggers(&self, caller: Caller, pipeline: PipelineId) -> AppResult<Vec<Trigger>>;
    async fn trigger(&self, caller: Caller, id: TriggerId) -> AppResult<Trigger>;
    /// Creates (`id` None) or replaces a trigger, after checking it against the pipeline, its
    /// stages, the account's fields, users and task types; nothing is saved when it is refused.
    async fn save_trigger(
        &self,
        caller: Caller,
        id: Option<TriggerId>,
        draft: TriggerDraft,
    ) -> AppResult<Trigger>;
    async fn set_trigger_enabled(
        &self,
        caller: Caller,
        id: TriggerId,
        enabled: bool,
    ) -> AppResult<Trigger>;
    async fn delete_trigger(&self, caller: Caller, id: TriggerId) -> AppResult<()>;
    /// Starts a trigger by hand on deals the caller may change (a manual trigger, or any trigger
    /// of the deals' pipeline); returns how many runs were queued.
    async fn run_manual(
        &self,
        caller: Caller,
        id: TriggerId,
        deals: Vec<DealId>,
    ) -> AppResult<usize>;

    // --- runs ----------------------------------------------------------------------------------
    /// Runs newest first, of a deal (whom the caller may see) or of a trigger.
    async fn runs(
        &self,
        caller: Caller,
        query: RunQuery,
        page: PageRequest,
    ) -> AppResult<Page<Run>>;
    /// Marks due runs and deliveries as queued and returns them, for the workers (several
    /// processes share the work: rows are taken with SKIP LOCKED). Work queued long ago and never
    /// finished (a lost job) is handed out again.
    async fn take_due(&self, limit: i64) -> AppResult<Vec<Work>>;
    /// Does a run's remaining actions. A failure that retrying may cure puts the run back to
    /// wait (with backoff, resuming after its last finished action; failed after the last
    /// attempt); one that it will not cure ends the run as failed, with the reason. An error is
    /// returned only when the run's own row cannot be written (the job is then retried).
    async fn execute(&self, account: AccountId, run: RunId) -> AppResult<RunStatus>;
    /// Does several runs as `execute` does each, with their rows, triggers and deals read and
    /// written together (a job's worth); returns their statuses in no particular order. An
    /// error (a run's own row could not be written) comes after the others were ended.
    async fn execute_many(&self, runs: Vec<(AccountId, RunId)>) -> AppResult<Vec<RunStatus>>;
    /// Removes finished runs, bot runs and deliveries older than the configured number of days,
    /// a batch at a time; returns how many went. Run every hour by the job workers.
    async fn clean_up(&self) -> AppResult<u64>;
    /// Ends a run that could not be finished after all retries.
    async fn give_up(&self, account: AccountId, run: RunId, reason: &str) -> AppResult<()>;

    // --- bots ----------------------------------------------------------------------------------
    /// The account's bots, by name. Members may read them; administrators change them.
    async fn bots(&self, caller: Caller) -> AppResult<Vec<Bot>>;
    async fn bot(&self, caller: Caller, id: BotId) -> AppResult<Bot>;
    /// Creates (`id` None) or replaces a bot after checking its steps: known stages, fields,
    /// task types and users in its actions, jumps to existing steps, and no loop of steps that
    /// never waits for a reply. Nothing is saved when it is refused.
    async fn save_bot(&self, caller: Caller, id: Option<BotId>, draft: BotDraft) -> AppResult<Bot>;
    async fn delete_bot(&self, caller: Caller, id: BotId) -> AppResult<()>;
    /// Starts a bot on a deal the caller may change (one run of a bot per deal at a time).
    async fn start_bot(&self, caller: Caller, bot: BotId, deal: DealId) -> AppResult<BotRun>;
    /// A deal's bot runs, newest first.
    async fn bot_runs(&self, caller: Caller, deal: DealId) -> AppResult<Vec<BotRun>>;
    /// Stops a running or waiting bot run.
    async fn stop_bot_run(&self, caller: Caller, id: BotRunId) -> AppResult<BotRun>;
    /// Goes on with a bot run: its steps up to the next wait or the end (for the job workers).
    async fn advance_bot(&self, account: AccountId, id: BotRunId) -> AppResult<BotRunStatus>;

    // --- webhooks ------------------------------------------------------------------------------
    async fn webhooks(&self, caller: Caller) -> AppResult<Vec<Webhook>>;
    async fn save_webhook(
        &self,
        caller: Caller,
        id: Option<WebhookId>,
        draft: WebhookDraft,
    ) -> AppResult<Webhook>;
    async fn delete_webhook(&self, caller: Caller, id: WebhookId) -> AppResult<()>;
    /// Deliveries of a webhook (or of all), newest first.
    async fn deliveries(
        &self,
        caller: Caller,
        webhook: Option<WebhookId>,
        page: PageRequest,
    ) -> AppResult<Page<Delivery>>;
    /// Makes one delivery attempt: signed, through the SSRF guard, logged. A failure schedules
    /// the next attempt with backoff (the delivery is queued again by `take_due`), and a long run
    /// of failures disables the webhook with the reason.
    async fn deliver(&self, account: AccountId, delivery: DeliveryId) -> AppResult<DeliveryStatus>;
}
