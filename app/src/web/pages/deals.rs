//! Deals → the board: a pipeline's columns with their exact totals and first cards, more cards
//! per column on demand, and quick-add at the top of a column. (Dragging cards comes next.)

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use deals_api::{
    BoardColumn, Deal, NewDeal, Pipeline, PipelineId, Stage, StageId, StageKind, Totals,
};
use kernel::money::{Currency, Money};
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppError, Caller};
use serde::Deserialize;

use super::{FormErrors, html, is_form_error, ok, see_other};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;

const CARDS_PER_PAGE: u32 = 25;

pub struct CardView {
    pub id: i64,
    pub name: String,
    pub budget: String,
    pub responsible: String,
}

pub struct ColumnView {
    pub stage: Stage,
    pub totals: Totals,
    pub budget: String,
    pub cards: Vec<CardView>,
    pub next: Option<String>,
    pub can_add: bool,
}

#[derive(Template)]
#[template(path = "deals/board.html")]
struct BoardTpl<'a> {
    ctx: &'a Ctx,
    pipeline: &'a Pipeline,
    pipelines: Vec<Pipeline>,
    columns: Vec<ColumnView>,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "deals/_cards.html")]
struct CardsTpl<'a> {
    ctx: &'a Ctx,
    pipeline: &'a PipelineRef,
    col: ColumnView,
}

pub struct PipelineRef {
    pub id: PipelineId,
}

#[derive(Template)]
#[template(path = "deals/empty.html")]
struct EmptyTpl<'a> {
    ctx: &'a Ctx,
}

struct Names {
    users: HashMap<i64, String>,
    currency: Currency,
}

impl Names {
    async fn load(state: &AppState, ctx: &Ctx, caller: Caller) -> Result<Names, AppError> {
        let users = state
            .modules
            .accounts
            .list_users(caller, PageRequest::new(None, Some(250)))
            .await?;
        let currency = ctx
            .account()
            .and_then(|a| a.currency.parse().ok())
            .unwrap_or(Currency::RUB);
        Ok(Names {
            users: users.items.into_iter().map(|u| (u.id.0, u.name)).collect(),
            currency,
        })
    }

    fn money(&self, whole: i64) -> String {
        Money::from_whole_units(whole, self.currency)
            .map(|m| m.to_string())
            .unwrap_or_else(|| whole.to_string())
    }

    fn card(&self, d: Deal) -> CardView {
        CardView {
            id: d.id.0,
            budget: self.money(d.price),
            responsible: self
                .users
                .get(&d.responsible_user_id.0)
                .cloned()
                .unwrap_or_default(),
            name: d.name,
        }
    }

    fn column(&self, c: BoardColumn) -> ColumnView {
        ColumnView {
            budget: self.money(c.totals.budget),
            can_add: c.stage.kind == StageKind::Open || c.stage.kind == StageKind::Incoming,
            next: c.deals.next.as_ref().map(|n| n.as_str().to_string()),
            cards: c.deals.items.into_iter().map(|d| self.card(d)).collect(),
            totals: c.totals,
            stage: c.stage,
        }
    }
}

pub async fn index(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    let caller = ctx.caller()?;
    match state.modules.deals.pipelines(caller).await?.first() {
        Some(p) => see_other(&format!("/deals/pipelines/{}", p.id), None),
        None => ok(&EmptyTpl { ctx: &ctx }),
    }
}

async fn render_board(
    ctx: &Ctx,
    state: &AppState,
    id: PipelineId,
    status: StatusCode,
    errors: FormErrors,
) -> PageResult {
    let caller = ctx.caller()?;
    let deals = &state.modules.deals;
    let pipeline = deals.pipeline(caller, id).await?;
    let board = deals
        .board(caller, id, PageRequest::new(None, Some(CARDS_PER_PAGE)))
        .await?;
    let names = Names::load(state, ctx, caller).await?;
    let pipelines = deals.pipelines(caller).await?;
    let columns = board.into_iter().map(|c| names.column(c)).collect();
    html(
        status,
        &BoardTpl {
            ctx,
            pipeline: &pipeline,
            pipelines,
            columns,
            errors,
        },
    )
}

pub async fn board(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    render_board(
        &ctx,
        &state,
        PipelineId(*path),
        StatusCode::OK,
        FormErrors::none(),
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct MoreQuery {
    after: Option<String>,
}

/// The next cards of one column (an htmx fragment that replaces the "Show more" button).
pub async fn more(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    q: web::Query<MoreQuery>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (pipeline, stage) = (PipelineId(path.0), StageId(path.1));
    let deals = &state.modules.deals;
    let page = deals
        .column(
            caller,
            pipeline,
            stage,
            q.after.clone().map(Cursor::from_string),
            CARDS_PER_PAGE,
        )
        .await?;
    let p = deals.pipeline(caller, pipeline).await?;
    let stage = p
        .stages
        .into_iter()
        .find(|s| s.id == stage)
        .ok_or_else(|| AppError::not_found("stage"))?;
    let names = Names::load(&state, &ctx, caller).await?;
    let col = ColumnView {
        budget: String::new(),
        can_add: false,
        next: page.next.as_ref().map(|n| n.as_str().to_string()),
        cards: page.items.into_iter().map(|d| names.card(d)).collect(),
        totals: Totals::default(),
        stage,
    };
    ok(&CardsTpl {
        ctx: &ctx,
        pipeline: &PipelineRef { id: pipeline },
        col,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct QuickAdd {
    name: String,
    price: String,
    stage_id: i64,
}

pub async fn quick_add(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<QuickAdd>,
) -> PageResult {
    let caller = ctx.caller()?;
    let pipeline = PipelineId(*path);
    let result = async {
        let price = match form.price.trim() {
            "" => 0,
            p => p.parse::<i64>().map_err(|_| {
                AppError::validation("price", "invalid", "the budget is a whole number")
            })?,
        };
        let new = NewDeal {
            name: form.name.clone(),
            price,
            pipeline_id: pipeline,
            stage_id: Some(StageId(form.stage_id)),
            responsible_user_id: None,
        };
        state.modules.deals.create_deal(caller, new).await
    }
    .await;
    match result {
        Ok(_) => see_other(
            &format!("/deals/pipelines/{pipeline}"),
            Some("deals.created"),
        ),
        Err(e) if is_form_error(&e) => {
            render_board(
                &ctx,
                &state,
                pipeline,
                super::form_status(&e),
                FormErrors::from_error(&e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
