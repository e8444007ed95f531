//! Settings → Integrations (administrators): OAuth 2.0 clients for amoCRM-compatible
//! integrations. The client secret is shown once.

use accounts_api::{NewOAuthClient, OAuthClient};
use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use serde::Deserialize;

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::{FormErrors, form_status, html, is_form_error, see_other};

#[derive(Template)]
#[template(path = "settings/integrations.html")]
struct IntegrationsTpl<'a> {
    ctx: &'a Ctx,
    clients: Vec<OAuthClient>,
    created: Option<NewOAuthClient>,
    errors: FormErrors,
    form_name: String,
    form_uri: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IntegrationForm {
    name: String,
    redirect_uri: String,
}

async fn render(
    ctx: &Ctx,
    state: &AppState,
    status: StatusCode,
    created: Option<NewOAuthClient>,
    errors: FormErrors,
    form: &IntegrationForm,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let clients = state.modules.accounts.oauth_clients(caller).await?;
    html(
        status,
        &IntegrationsTpl {
            ctx,
            clients,
            created,
            errors,
            form_name: form.name.clone(),
            form_uri: form.redirect_uri.clone(),
        },
    )
}

pub async fn list(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    render(
        &ctx,
        &state,
        StatusCode::OK,
        None,
        FormErrors::none(),
        &IntegrationForm::default(),
    )
    .await
}

pub async fn create(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<IntegrationForm>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    match state
        .modules
        .accounts
        .create_oauth_client(caller, &form.name, &form.redirect_uri)
        .await
    {
        Ok(new) => {
            render(
                &ctx,
                &state,
                StatusCode::OK,
                Some(new),
                FormErrors::none(),
                &IntegrationForm::default(),
            )
            .await
        }
        Err(e) if is_form_error(&e) => {
            render(
                &ctx,
                &state,
                form_status(&e),
                None,
                FormErrors::from_error(&e),
                &form,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.require_admin()?;
    state
        .modules
        .accounts
        .delete_oauth_client(caller, *path)
        .await?;
    see_other("/settings/integrations", Some("integrations.deleted"))
}
