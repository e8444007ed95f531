//! Modules' background work run as apalis jobs: imports and exports of contacts and companies.
//! The web handler queues a job after the module has recorded the import or export; the
//! worker calls the module, which resumes from what it recorded (a retried or re-run job never
//! does a row twice).

use std::sync::Arc;

use apalis::prelude::*;
use contacts_api::{Contacts, ExportId, ImportId};
use kernel::{AccountId, AppError, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::jobs::{self, JobStore, RetryPolicy};

/// The queue of contacts' imports and exports.
pub const CONTACT_FILES: &str = "contacts.files";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ContactFiles {
    Import { account_id: i64, import_id: i64 },
    Export { account_id: i64, export_id: i64 },
}

pub struct WorkCtx {
    pub contacts: Arc<dyn Contacts>,
    pub jobs: JobStore,
    pub retry: RetryPolicy,
}

/// Queues a job; a store that cannot take it is "unavailable" (the caller shows that, and the
/// import or export can be started again).
pub async fn enqueue(
    jobs: Option<&JobStore>,
    retry: RetryPolicy,
    job: ContactFiles,
) -> Result<(), AppError> {
    let Some(jobs) = jobs else {
        return Err(AppError::new(
            ErrorCode::Unavailable,
            "background jobs are not running in this process",
        ));
    };
    jobs.enqueue(CONTACT_FILES, job, None, retry)
        .await
        .map_err(|e| AppError::new(ErrorCode::Unavailable, e))
}

pub async fn run_contact_files(
    job: ContactFiles,
    ctx: Data<Arc<WorkCtx>>,
    id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let result = match job {
        ContactFiles::Import {
            account_id,
            import_id,
        } => ctx
            .contacts
            .run_import(AccountId(account_id), ImportId(import_id))
            .await
            .map(|i| {
                tracing::info!(
                    import = i.id.0,
                    status = i.status.as_str(),
                    created = i.created,
                    updated = i.updated,
                    skipped = i.skipped,
                    failed = i.failed,
                    "import finished"
                )
            }),
        ContactFiles::Export {
            account_id,
            export_id,
        } => ctx
            .contacts
            .run_export(AccountId(account_id), ExportId(export_id))
            .await
            .map(|e| {
                tracing::info!(
                    export = e.id.0,
                    status = e.status.as_str(),
                    rows = e.rows,
                    "export finished"
                )
            }),
    };
    if let Err(e) = &result {
        tracing::warn!(error = %e, "contacts file job failed; will retry");
        if let Some(abort) =
            jobs::after_failure(&ctx.jobs, ctx.retry, &id, &attempt, e.to_string()).await
        {
            return Err(abort);
        }
    }
    result.map_err(|e| Box::new(e) as BoxDynError)
}

/// The queue of automation's runs and webhook deliveries.
pub const AUTOMATION_WORK: &str = "automation.work";
/// Runs handed to one job (the module reads and writes them together, and does several at once).
const RUNS_PER_JOB: usize = 32;

pub struct AutomationCtx {
    pub automation: Arc<dyn automation_api::Automation>,
    pub jobs: JobStore,
    pub retry: RetryPolicy,
}

/// Does one run of a trigger or one webhook delivery attempt. A run that fails in a way a retry
/// may cure is retried with the job backoff (resuming after its last finished action); after the
/// last attempt it is ended as failed, with the error, and the job goes to the dead list.
pub async fn run_automation(
    job: automation_api::Work,
    ctx: Data<Arc<AutomationCtx>>,
    id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    use automation_api::Work;
    let result = match job.clone() {
        Work::Runs { runs } => ctx.automation.execute_many(runs).await.map(|done| {
            tracing::debug!(runs = done.len(), "automation runs");
        }),
        Work::Bot {
            account_id,
            bot_run_id,
        } => ctx
            .automation
            .advance_bot(account_id, bot_run_id)
            .await
            .map(|s| tracing::debug!(bot_run = %bot_run_id.0, status = s.as_str(), "bot run")),
        Work::Run { account_id, run_id } => ctx
            .automation
            .execute(account_id, run_id)
            .await
            .map(|s| tracing::debug!(run = %run_id.0, status = s.as_str(), "automation run")),
        Work::Deliver {
            account_id,
            delivery_id,
        } => ctx.automation.deliver(account_id, delivery_id).await.map(
            |s| tracing::debug!(delivery = %delivery_id.0, status = s.as_str(), "webhook delivery"),
        ),
    };
    if let Err(e) = &result {
        tracing::warn!(error = %e, "automation job failed; will retry");
        if attempt.current() as i32 >= ctx.retry.max_attempts
            && let Work::Run { account_id, run_id } = job
            && let Err(g) = ctx
                .automation
                .give_up(
                    account_id,
                    run_id,
                    &format!("gave up after {} attempts: {e}", attempt.current()),
                )
                .await
        {
            tracing::warn!(error = %g, "could not end the run as failed");
        }
        if let Some(abort) =
            jobs::after_failure(&ctx.jobs, ctx.retry, &id, &attempt, e.to_string()).await
        {
            return Err(abort);
        }
    }
    result.map_err(|e| Box::new(e) as BoxDynError)
}

/// Turns NOTIFYs on `channel` into wake-ups (reconnecting when the connection drops) until
/// `stop`.
fn spawn_listener(
    db_url: String,
    channel: &'static str,
    wake: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect(&db_url).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, channel, "cannot LISTEN; sweeping only");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => continue,
                    }
                }
            };
            if let Err(e) = listener.listen(channel).await {
                tracing::warn!(error = %e, channel, "cannot LISTEN; sweeping only");
                continue;
            }
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    n = listener.recv() => match n {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, channel, "LISTEN connection lost; reconnecting");
                            break;
                        }
                    },
                }
            }
        }
    })
}

/// Jobs a dispatcher stores at once.
const ENQUEUE_AT_ONCE: usize = 4;

/// Hands due automation work to the job queue: at once when the module says there is some
/// (LISTEN on its channel), and every second for delayed work coming due. Several processes may
/// dispatch: the module hands each run out once.
pub async fn dispatch_automation(
    automation: Arc<dyn automation_api::Automation>,
    jobs: JobStore,
    retry: RetryPolicy,
    db_url: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use automation_api::Work;
    const BATCH: i64 = 500;
    // Notifications are read by a task of their own (never cancelled half-way) and turned into
    // wake-ups; the loop also sweeps every quarter second for delayed work coming due.
    let wake = Arc::new(tokio::sync::Notify::new());
    let listening = spawn_listener(db_url, automation::WORK_CHANNEL, wake.clone(), stop.clone());
    loop {
        let mut full = false;
        match automation.take_due(BATCH).await {
            Ok(work) => {
                full = work.len() as i64 >= BATCH;
                // Runs go in groups (one job each), deliveries one by one (each has its own
                // attempts and backoff).
                let (runs, other): (Vec<Work>, Vec<Work>) = work
                    .into_iter()
                    .partition(|w| matches!(w, Work::Run { .. }));
                let runs: Vec<(kernel::AccountId, automation_api::RunId)> = runs
                    .into_iter()
                    .filter_map(|w| match w {
                        Work::Run { account_id, run_id } => Some((account_id, run_id)),
                        _ => None,
                    })
                    .collect();
                let jobs_of = runs
                    .chunks(RUNS_PER_JOB)
                    .map(|c| Work::Runs { runs: c.to_vec() })
                    .chain(other);
                // Stored side by side (a few connections at once), not one round trip after
                // another: under load each waits for a core, and the next due work waits for
                // this loop.
                use futures_util::StreamExt;
                futures_util::stream::iter(jobs_of)
                    .for_each_concurrent(ENQUEUE_AT_ONCE, |w| {
                        let jobs = &jobs;
                        async move {
                            if let Err(e) = jobs.enqueue(AUTOMATION_WORK, w, None, retry).await {
                                // The work stays queued in the module and is handed out again
                                // later.
                                tracing::warn!(error = %e, "automation: could not queue work");
                            }
                        }
                    })
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "automation: taking due work failed; will retry"),
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
    }
    // The listener stops with the same signal.
    let _ = listening.await;
}

/// The queue of messaging's work: stored webhooks to process, conversations to send.
pub const MESSAGING_WORK: &str = "messaging.work";
/// Conversations handed to one send job.
const SENDS_PER_JOB: usize = 32;

pub struct MessagingCtx {
    pub messaging: Arc<dyn messaging_api::Messaging>,
}

/// Does one piece of messaging work. The module records failures itself (a webhook body is
/// retried later with a backoff, a message waits for its turn again), so a failed job is not
/// retried by the queue: the dispatcher hands the work out again when it is due.
pub async fn run_messaging(
    job: messaging_api::Work,
    ctx: Data<Arc<MessagingCtx>>,
) -> Result<(), BoxDynError> {
    if let Err(e) = ctx.messaging.process(job.clone()).await {
        tracing::warn!(error = %e, work = ?job, "messaging work failed; it is handed out again when due");
    }
    Ok(())
}

/// Hands due messaging work to the job queue, at once when this process stored or queued some,
/// and every quarter second.
pub async fn dispatch_messaging(
    messaging: Arc<dyn messaging_api::Messaging>,
    jobs: JobStore,
    retry: RetryPolicy,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const BATCH: i64 = 500;
    // Woken in this process by the module; work stored by other processes is found by the
    // quarter-second sweep.
    let wake = messaging.work_signal();
    loop {
        // A burst of notifications (a message queued each) is taken in one go.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let mut full = false;
        match messaging.take_due(BATCH).await {
            Ok(work) => {
                full = work.len() as i64 >= BATCH;
                // Sends go in groups (one job each, several conversations at once), stored
                // webhooks one by one.
                let (sends, other): (Vec<_>, Vec<_>) = work
                    .into_iter()
                    .partition(|w| matches!(w, messaging_api::Work::Send { .. }));
                let sends: Vec<(kernel::AccountId, i64)> = sends
                    .into_iter()
                    .filter_map(|w| match w {
                        messaging_api::Work::Send {
                            account_id,
                            conversation_id,
                        } => Some((account_id, conversation_id)),
                        _ => None,
                    })
                    .collect();
                let jobs_of = sends
                    .chunks(SENDS_PER_JOB)
                    .map(|c| messaging_api::Work::Sends {
                        conversations: c.to_vec(),
                    })
                    .chain(other);
                for w in jobs_of {
                    if let Err(e) = jobs.enqueue(MESSAGING_WORK, w, None, retry).await {
                        tracing::warn!(error = %e, "messaging: could not queue work");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "messaging: taking due work failed; will retry"),
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
    }
}
