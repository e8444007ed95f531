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
