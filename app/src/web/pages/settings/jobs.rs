//! Settings → Background jobs: queue figures, dead jobs with their last error, run again or
//! discard. Administrators only. The job store is shared by all accounts of this installation,
//! so only administrators of the installation's accounts see figures; no job payload is shown.

use actix_web::web;
use askama::Template;
use kernel::AppError;

use crate::jobs::{self, DeadJob, QueueStats};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{ok, see_other};

#[derive(Template)]
#[template(path = "settings/jobs.html")]
struct JobsTpl<'a> {
    ctx: &'a Ctx,
    available: bool,
    queues: Vec<QueueStats>,
    dead: Vec<DeadJob>,
}

fn db_error(e: jobs::StoreError) -> AppError {
    tracing::error!(error = %e, "job store query failed");
    AppError::new(
        kernel::ErrorCode::Unavailable,
        "the job store is not reachable",
    )
}

pub async fn list(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    ctx.require_admin()?;
    let Some(pool) = &state.jobs else {
        return ok(&JobsTpl {
            ctx: &ctx,
            available: false,
            queues: Vec::new(),
            dead: Vec::new(),
        });
    };
    let queues = pool.queue_stats().await.map_err(db_error)?;
    let dead = pool.dead_jobs(100).await.map_err(db_error)?;
    ok(&JobsTpl {
        ctx: &ctx,
        available: true,
        queues,
        dead,
    })
}

pub async fn retry(ctx: Ctx, state: web::Data<AppState>, path: web::Path<String>) -> PageResult {
    ctx.require_admin()?;
    let pool = state
        .jobs
        .as_ref()
        .ok_or_else(|| AppError::not_found("job"))?;
    if !pool.retry_dead(&path).await.map_err(db_error)? {
        return Err(AppError::not_found("dead job").into());
    }
    tracing::info!(job = %path, "dead job sent to run again");
    see_other("/settings/jobs", Some("jobs.retried"))
}

pub async fn discard(ctx: Ctx, state: web::Data<AppState>, path: web::Path<String>) -> PageResult {
    ctx.require_admin()?;
    let pool = state
        .jobs
        .as_ref()
        .ok_or_else(|| AppError::not_found("job"))?;
    if !pool.discard_dead(&path).await.map_err(db_error)? {
        return Err(AppError::not_found("dead job").into());
    }
    tracing::info!(job = %path, "dead job discarded");
    see_other("/settings/jobs", Some("jobs.discarded"))
}
