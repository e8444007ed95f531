//! Remote mode: the automation module's trait over HTTP, for when the module runs as its own
//! service (`[modules.automation] mode = "remote"`). The client and the service's dispatcher are both
//! written by [`kernel::remote_trait!`] from the one list below, which must name every method of
//! the trait (the compiler refuses the client otherwise).

#![allow(clippy::too_many_arguments, unused_imports)]

use deals_api::{DealId, PipelineId};
use kernel::paging::{Page, PageRequest};
use kernel::remote::RemoteClient;
use kernel::{AccountId, AppResult, Caller};

use super::*;

/// The automation module's trait, answered by its service.
pub struct AutomationClient {
    remote: RemoteClient,
}

impl AutomationClient {
    pub fn new(remote: RemoteClient) -> AutomationClient {
        AutomationClient { remote }
    }
}

kernel::remote_trait! {
    impl Automation for AutomationClient, dispatch dispatch_automation, methods AUTOMATION_METHODS {
            read fn triggers(caller: Caller, pipeline: PipelineId) -> Vec<Trigger>;
            read fn trigger(caller: Caller, id: TriggerId) -> Trigger;
            write fn save_trigger(caller: Caller, id: Option<TriggerId>, draft: TriggerDraft) -> Trigger;
            write fn set_trigger_enabled(caller: Caller, id: TriggerId, enabled: bool) -> Trigger;
            write fn delete_trigger(caller: Caller, id: TriggerId) -> ();
            read fn run_manual(caller: Caller, id: TriggerId, deals: Vec<DealId>) -> usize;
            read fn runs(caller: Caller, query: RunQuery, page: PageRequest) -> Page<Run>;
            write fn take_due(limit: i64) -> Vec<Work>;
            write fn execute(account: AccountId, run: RunId) -> RunStatus;
            write fn execute_many(runs: Vec<(AccountId, RunId)>) -> Vec<RunStatus>;
            write fn clean_up() -> u64;
            write fn give_up(account: AccountId, run: RunId, reason: &str as String) -> ();
            read fn bots(caller: Caller) -> Vec<Bot>;
            read fn bot(caller: Caller, id: BotId) -> Bot;
            write fn save_bot(caller: Caller, id: Option<BotId>, draft: BotDraft) -> Bot;
            write fn delete_bot(caller: Caller, id: BotId) -> ();
            write fn start_bot(caller: Caller, bot: BotId, deal: DealId) -> BotRun;
            read fn bot_runs(caller: Caller, deal: DealId) -> Vec<BotRun>;
            write fn stop_bot_run(caller: Caller, id: BotRunId) -> BotRun;
            write fn advance_bot(account: AccountId, id: BotRunId) -> BotRunStatus;
            read fn webhooks(caller: Caller) -> Vec<Webhook>;
            write fn save_webhook(caller: Caller, id: Option<WebhookId>, draft: WebhookDraft) -> Webhook;
            write fn delete_webhook(caller: Caller, id: WebhookId) -> ();
            read fn deliveries(caller: Caller, webhook: Option<WebhookId>, page: PageRequest) -> Page<Delivery>;
            write fn deliver(account: AccountId, delivery: DeliveryId) -> DeliveryStatus;
    }
}
