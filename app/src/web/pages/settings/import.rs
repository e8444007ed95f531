//! Settings → Import from amoCRM: start an import of a whole amoCRM / Kommo account (its base
//! URL and a long-lived token) as a background job, and follow it: a progress bar, the counts per
//! entity and the log of what was skipped, refreshed while it runs. Administrators only.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use importer::Run;
use kernel::ErrorCode;
use serde::Deserialize;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, ok, see_other};

/// At most this many skipped items are listed on the page (the count says how many in all).
const SKIPPED_SHOWN: usize = 200;

/// A run as the page shows it.
pub struct RunView {
    pub id: i64,
    pub source: String,
    pub state: String,
    pub under_way: bool,
    pub percent: u32,
    pub step: String,
    pub page: u32,
    pub started: String,
    pub updated: String,
    pub error: Option<String>,
    /// (entity, read, created, updated)
    pub counts: Vec<(String, u64, u64, u64)>,
    pub skipped: Vec<String>,
    pub skipped_total: usize,
    pub requests: u64,
    pub seconds: String,
}

impl RunView {
    fn of(run: Run) -> RunView {
        let p = &run.progress;
        let mut entities: Vec<&String> = p.read.keys().collect();
        for e in p.created.keys().chain(p.updated.keys()) {
            if !entities.contains(&e) {
                entities.push(e);
            }
        }
        let n =
            |m: &std::collections::BTreeMap<String, u64>, e: &str| m.get(e).copied().unwrap_or(0);
        let counts = entities
            .into_iter()
            .map(|e| (e.clone(), n(&p.read, e), n(&p.created, e), n(&p.updated, e)))
            .collect();
        let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        RunView {
            id: run.id,
            under_way: run.state == "queued" || run.state == "running",
            percent: if run.state == "done" {
                100
            } else {
                p.percent()
            },
            step: p.step.clone(),
            page: p.page,
            started: at(run.started_at),
            updated: at(run.updated_at),
            error: run.error.clone(),
            counts,
            skipped: p
                .skipped
                .iter()
                .take(SKIPPED_SHOWN)
                .map(|s| format!("{} {}: {}", s.entity, s.id, s.reason))
                .collect(),
            skipped_total: p.skipped.len(),
            requests: p.requests,
            seconds: format!("{:.0}", p.seconds),
            source: run.source,
            state: run.state,
        }
    }
}

#[derive(Template)]
#[template(path = "settings/import.html")]
struct ImportTpl<'a> {
    ctx: &'a Ctx,
    errors: FormErrors,
    form: Shown,
    run: Option<RunView>,
    earlier: Vec<RunView>,
}

#[derive(Template)]
#[template(path = "settings/_import_run.html")]
struct RunTpl<'a> {
    ctx: &'a Ctx,
    run: Option<RunView>,
}

async fn runs(ctx: &Ctx, state: &AppState) -> Result<Vec<RunView>, kernel::AppError> {
    let caller = ctx.require_admin()?;
    let store = crate::import::importer(state).store().clone();
    Ok(store
        .runs(caller.account_id, 10)
        .await?
        .into_iter()
        .map(RunView::of)
        .collect())
}

/// What the form shows again after an error (never the token, the secret or the code).
#[derive(Default)]
pub struct Shown {
    pub base_url: String,
    pub oauth: bool,
    pub client_id: String,
    pub redirect_uri: String,
}

async fn render(
    ctx: &Ctx,
    state: &AppState,
    status: StatusCode,
    errors: FormErrors,
    form: Shown,
) -> PageResult {
    let mut all = runs(ctx, state).await?.into_iter();
    let run = all.next();
    html(
        status,
        &ImportTpl {
            ctx,
            errors,
            form,
            run,
            earlier: all.collect(),
        },
    )
}

pub async fn page(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render(
        &ctx,
        &state,
        StatusCode::OK,
        FormErrors::none(),
        Shown::default(),
    )
    .await
}

/// The latest run alone (the page polls it while the run is under way).
pub async fn status(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    let run = runs(&ctx, &state).await?.into_iter().next();
    ok(&RunTpl { ctx: &ctx, run })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ImportForm {
    base_url: String,
    /// "token" (a long-lived token) or "oauth" (an integration's code flow).
    access: String,
    token: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    code: String,
}

pub async fn start(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<ImportForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let oauth = form.access == "oauth";
    let access = if oauth {
        crate::import::Access::OAuth {
            client_id: form.client_id.clone(),
            client_secret: form.client_secret.clone(),
            redirect_uri: form.redirect_uri.clone(),
            code: form.code.clone(),
        }
    } else {
        crate::import::Access::Token(form.token.clone())
    };
    match crate::import::start(&state, caller, &form.base_url, access).await {
        Ok(_) => see_other("/settings/import", Some("amo_import.queued")),
        Err(e) if is_form_error(&e) => {
            let mut errors = FormErrors::from_error(&e);
            if e.code == ErrorCode::Conflict {
                errors.general = Some("amo_import.busy");
            }
            // The token, the secret and the code are never shown again: typed in anew.
            let shown = Shown {
                base_url: form.base_url.clone(),
                oauth,
                client_id: form.client_id.clone(),
                redirect_uri: form.redirect_uri.clone(),
            };
            render(&ctx, &state, form_status(&e), errors, shown).await
        }
        Err(e) => Err(e.into()),
    }
}
