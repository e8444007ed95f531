//! Imports from amoCRM, wired to this process's modules (see the `importer` module): the
//! command line's, and those started from the settings as a background job.

use std::sync::Arc;

use apalis::prelude::{Attempt, BoxDynError, Data, TaskId};
use importer::{
    AmoClient, AmoError, ClientOptions, ImportError, Importer, OAuthClient, Outcome, Progress,
    Targets, TokenSink, Tokens,
};
use kernel::{AccountId, AppError, Caller, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::jobs::{JobStore, RetryPolicy};

use crate::state::AppState;

/// The importer writing into this process's modules (local or remote).
pub fn importer(state: &AppState) -> Importer {
    Importer::new(
        state.pool.clone(),
        Targets {
            accounts: state.modules.accounts.clone(),
            deals: state.modules.deals.clone(),
            contacts: state.modules.contacts.clone(),
            activities: state.modules.activities.clone(),
        },
    )
}

/// Imports (or goes on importing) the amoCRM account `client` reads into `account`.
pub async fn run(
    state: &AppState,
    client: &AmoClient,
    account: AccountId,
    on_page: impl FnMut(&Progress),
) -> Result<Outcome, ImportError> {
    importer(state).run(client, account, on_page).await
}

/// The queue of imports started from the settings.
pub const IMPORT_RUNS: &str = "importer.runs";

/// An import started from the settings: the run (queued in the importer's table with its
/// token) to do or go on with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportJob {
    pub account_id: i64,
    pub run_id: i64,
}

pub struct ImportCtx {
    pub importer: Importer,
    pub jobs: JobStore,
    pub retry: RetryPolicy,
}

/// How an import started from the settings reaches the amoCRM account.
pub enum Access {
    /// A long-lived token.
    Token(String),
    /// An integration's OAuth code flow: the code of its consent redirect is traded at once
    /// (a wrong secret or a stale code is told on the form), and the rotating token pair is
    /// kept with the run.
    OAuth {
        client_id: String,
        client_secret: String,
        redirect_uri: String,
        code: String,
    },
}

/// Queues an import of the amoCRM account at `base_url` into `caller`'s account (administrators
/// only): the unfinished run goes on, else a new one begins.
pub async fn start(
    state: &AppState,
    caller: Caller,
    base_url: &str,
    access: Access,
) -> Result<i64, AppError> {
    let Some(user) = caller.actor.user_id() else {
        return Err(AppError::forbidden("only administrators may do this"));
    };
    accounts_api::access::system_or_admin(state.modules.accounts.as_ref(), caller).await?;
    // The address first (its error belongs to its field whatever the access).
    let probe = AmoClient::new(base_url, "probe", ClientOptions::default())
        .map_err(|e| AppError::validation("base_url", "not_a_url", &e))?;
    let source = probe.base_url().to_lowercase();
    let (token, oauth) = match access {
        Access::Token(token) => {
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(AppError::validation(
                    "token",
                    "required",
                    "the amoCRM long-lived token is required",
                ));
            }
            (token, None)
        }
        Access::OAuth {
            client_id,
            client_secret,
            redirect_uri,
            code,
        } => {
            let mut errors = Vec::new();
            for (field, v) in [
                ("client_id", &client_id),
                ("client_secret", &client_secret),
                ("redirect_uri", &redirect_uri),
                ("code", &code),
            ] {
                if v.trim().is_empty() {
                    errors.push(kernel::FieldError {
                        field: field.into(),
                        code: "required".into(),
                        message: format!("the integration's {field} is required"),
                    });
                }
            }
            if !errors.is_empty() {
                return Err(AppError::from_fields(errors));
            }
            let integration = OAuthClient {
                client_id: client_id.trim().to_string(),
                client_secret: client_secret.trim().to_string(),
                redirect_uri: redirect_uri.trim().to_string(),
                token_file: None,
                sink: None,
            };
            let client = AmoClient::with_oauth(
                base_url,
                integration.clone(),
                Some(code.trim()),
                ClientOptions::default(),
            )
            .await
            .map_err(|e| {
                tracing::info!(source = %source, error = %e, "amoCRM OAuth exchange refused");
                AppError::validation("code", "oauth_refused", &e)
            })?;
            let tokens = client
                .oauth_tokens()
                .await
                .ok_or_else(|| AppError::internal("the OAuth client has no tokens"))?;
            let kept = serde_json::json!({
                "client_id": integration.client_id,
                "client_secret": integration.client_secret,
                "redirect_uri": integration.redirect_uri,
                "refresh_token": tokens.refresh_token,
            });
            (tokens.access_token, Some(kept))
        }
    };
    let Some(jobs) = state.jobs.as_ref() else {
        return Err(AppError::new(
            ErrorCode::Unavailable,
            "background jobs are not running in this process",
        ));
    };
    let store = importer(state).store().clone();
    let run = store
        .queue(caller.account_id, &source, &token, oauth.as_ref(), user.0)
        .await?;
    let job = ImportJob {
        account_id: caller.account_id.0,
        run_id: run,
    };
    if let Err(e) = jobs
        .enqueue(IMPORT_RUNS, job, None, state.config.retry_policy())
        .await
    {
        let _ = store.give_up(run, "the job could not be queued").await;
        return Err(AppError::new(ErrorCode::Unavailable, e));
    }
    tracing::info!(run, source = %source, "amoCRM import queued");
    Ok(run)
}

/// Does (or goes on with) a run queued from the settings. A refused token or an answer no retry
/// can change ends it as failed; the network or the database failing makes the job retry with
/// the backoff, and the retry resumes from the last page written.
pub async fn run_job(
    job: ImportJob,
    ctx: Data<Arc<ImportCtx>>,
    id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let account = AccountId(job.account_id);
    let store = ctx.importer.store();
    let Some(run) = store.run(account, job.run_id).await? else {
        return Ok(());
    };
    if run.state == "done" {
        return Ok(());
    }
    let Some((token, oauth)) = store.token(run.id).await? else {
        store
            .give_up(
                run.id,
                "the run has no token: start it again from the settings",
            )
            .await?;
        return Ok(());
    };
    let client = match oauth {
        None => AmoClient::new(&run.source, &token, ClientOptions::default()),
        Some(o) => {
            let text = |k: &str| o[k].as_str().unwrap_or_default().to_string();
            // The pair rotates at every renewal: each new one is kept with the run at once, so
            // a retry (or a restart) goes on with it.
            let keep = store.clone();
            let run_id = run.id;
            let sink = TokenSink(Arc::new(move |t: Tokens| {
                let keep = keep.clone();
                Box::pin(async move {
                    keep.save_tokens(run_id, &t.access_token, &t.refresh_token)
                        .await
                        .map_err(|e| format!("the renewed tokens could not be kept: {e}"))
                })
            }));
            AmoClient::resume_oauth(
                &run.source,
                OAuthClient {
                    client_id: text("client_id"),
                    client_secret: text("client_secret"),
                    redirect_uri: text("redirect_uri"),
                    token_file: None,
                    sink: Some(sink),
                },
                Tokens {
                    access_token: token,
                    refresh_token: text("refresh_token"),
                },
                ClientOptions::default(),
            )
        }
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            store.give_up(run.id, &e).await?;
            return Ok(());
        }
    };
    match ctx.importer.run(&client, account, |_| {}).await {
        Ok(outcome) => {
            tracing::info!(
                run = outcome.run,
                requests = outcome.progress.requests,
                skipped = outcome.progress.skipped.len(),
                "amoCRM import finished"
            );
            Ok(())
        }
        Err(e) => {
            let retryable = matches!(
                e,
                ImportError::Amo(AmoError::Unreachable { .. })
                    | ImportError::App(AppError {
                        code: ErrorCode::Unavailable | ErrorCode::Internal,
                        ..
                    })
            );
            let last = attempt.current() as i32 >= ctx.retry.max_attempts;
            tracing::warn!(run = run.id, error = %e, retryable, "amoCRM import stopped");
            if !retryable || last {
                store.give_up(run.id, &e.to_string()).await?;
                return Ok(());
            }
            store.requeue(run.id, &e.to_string()).await?;
            if let Some(abort) =
                crate::jobs::after_failure(&ctx.jobs, ctx.retry, &id, &attempt, e.to_string()).await
            {
                let _ = store.give_up(run.id, &e.to_string()).await;
                return Err(abort);
            }
            Err(Box::new(e))
        }
    }
}
