//! Deals: the board (columns with totals, cards, drag and drop, filters, saved filters, won/lost
//! drop zones), the list with bulk actions, and the deal page.

pub mod deal;
pub mod filter;
pub mod list;

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use deals_api::{
    BoardColumn, CustomField, Deal, DealFilter, DealId, FieldType, LossReason, LossReasonId,
    MoveTo, NewDeal, Pipeline, PipelineId, SavedFilter, SavedFilterId, Stage, StageId, StageKind,
    Tag, Totals,
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

pub struct TagView {
    pub id: i64,
    pub name: String,
}

pub struct CardView {
    pub id: i64,
    pub name: String,
    pub budget: String,
    pub responsible: String,
    pub contact: Option<String>,
    pub tags: Vec<TagView>,
    /// The nearest open task: when it is due, its text, whether it is overdue.
    pub task: Option<(String, String, bool)>,
    /// An open deal with no open task (amoCRM's warning mark).
    pub needs_task: bool,
}

pub struct ColumnView {
    pub stage: Stage,
    pub totals: String,
    pub cards: Vec<CardView>,
    pub next: Option<String>,
    pub can_add: bool,
}

#[derive(Clone)]
pub struct UserOption {
    pub id: i64,
    pub name: String,
}

/// A custom field in the filter bar or on the deal page.
pub struct FieldView {
    pub id: i64,
    pub name: String,
    pub kind: &'static str,
    pub choices: Vec<(i64, String)>,
}

impl FieldView {
    /// A field of any module (deals, contacts, companies).
    pub fn of<D: kernel::fields::FieldDef>(f: &D) -> FieldView {
        FieldView {
            id: f.field_id(),
            name: f.field_name().to_string(),
            kind: f.field_type().as_str(),
            choices: f
                .field_enums()
                .iter()
                .map(|e| (e.id, e.value.clone()))
                .collect(),
        }
    }
}

/// The filter bar's state: the query pairs and what its lists offer.
pub struct FilterBar {
    pub pairs: Vec<(String, String)>,
    pub query: String,
    pub users: Vec<UserOption>,
    pub tags: Vec<Tag>,
    pub fields: Vec<FieldView>,
    pub saved: Vec<SavedFilter>,
    pub active: bool,
}

impl FilterBar {
    pub fn get(&self, key: &str) -> &str {
        filter::get(&self.pairs, key)
    }

    pub fn has(&self, key: &str, value: &i64) -> bool {
        filter::has(&self.pairs, key, &value.to_string())
    }

    pub fn has_str(&self, key: &str, value: &str) -> bool {
        filter::has(&self.pairs, key, value)
    }

    pub fn cf(&self, id: &i64) -> &str {
        filter::get(&self.pairs, &format!("cf_{id}"))
    }

    /// `?<filter>` or nothing.
    pub fn suffix(&self) -> String {
        if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        }
    }

    /// `&<filter>` or nothing (after another parameter).
    pub fn and(&self) -> String {
        if self.query.is_empty() {
            String::new()
        } else {
            format!("&{}", self.query)
        }
    }
}

#[derive(Template)]
#[template(path = "deals/board.html")]
struct BoardTpl<'a> {
    ctx: &'a Ctx,
    pipeline: &'a Pipeline,
    pipelines: Vec<Pipeline>,
    columns: Vec<ColumnView>,
    closing: Vec<ColumnView>,
    reasons: Vec<LossReason>,
    bar: FilterBar,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "deals/_cards.html")]
struct CardsTpl<'a> {
    ctx: &'a Ctx,
    pipeline: &'a PipelineRef,
    col: ColumnView,
    bar: FilterBar,
}

pub struct PipelineRef {
    pub id: PipelineId,
}

#[derive(Template)]
#[template(path = "deals/empty.html")]
struct EmptyTpl<'a> {
    ctx: &'a Ctx,
}

/// Names and formats shared by the deal views: users by id, the account's currency.
pub struct Names {
    pub users: HashMap<i64, String>,
    /// Main contacts of the deals on screen, by id (filled by `with_contacts`).
    pub contacts: HashMap<i64, String>,
    /// The nearest open task of each deal on screen (filled by `with_tasks`).
    pub tasks: HashMap<i64, activities_api::Task>,
    pub user_list: Vec<UserOption>,
    pub currency: Currency,
}

impl Names {
    pub async fn load(state: &AppState, ctx: &Ctx, caller: Caller) -> Result<Names, AppError> {
        let users = state
            .modules
            .accounts
            .list_users(caller, PageRequest::new(None, Some(250)))
            .await?;
        let currency = ctx
            .account()
            .and_then(|a| a.currency.parse().ok())
            .unwrap_or(Currency::RUB);
        let active: Vec<UserOption> = users
            .items
            .iter()
            .filter(|u| u.is_active)
            .map(|u| UserOption {
                id: u.id.0,
                name: u.name.clone(),
            })
            .collect();
        Ok(Names {
            contacts: HashMap::new(),
            tasks: HashMap::new(),
            users: users.items.into_iter().map(|u| (u.id.0, u.name)).collect(),
            user_list: active,
            currency,
        })
    }

    /// Looks up the names of the main contacts of `deals` (one call to the contacts module).
    pub async fn with_contacts<'a>(
        &mut self,
        state: &AppState,
        caller: Caller,
        deals: impl Iterator<Item = &'a Deal>,
    ) {
        let ids: Vec<contacts_api::ContactId> = deals
            .filter_map(|d| d.main_contact_id)
            .map(contacts_api::ContactId)
            .collect();
        if ids.is_empty() {
            return;
        }
        if let Ok(found) = state.modules.contacts.contacts_by_id(caller, ids).await {
            self.contacts = found.into_iter().map(|c| (c.id.0, c.name)).collect();
        }
    }

    /// Looks up the nearest open task of each deal (one call to the activities module for the
    /// whole page).
    pub async fn with_tasks(&mut self, state: &AppState, caller: Caller, deals: Vec<i64>) {
        if let Ok(found) = state.modules.activities.nearest_tasks(caller, deals).await {
            self.tasks = found;
        }
    }

    pub fn money(&self, whole: i64) -> String {
        Money::from_whole_units(whole, self.currency)
            .map(|m| m.to_string())
            .unwrap_or_else(|| whole.to_string())
    }

    pub fn user(&self, id: i64) -> String {
        self.users.get(&id).cloned().unwrap_or_default()
    }

    pub fn totals(&self, t: &Totals) -> String {
        let count = if t.capped {
            format!("{}+", group_digits(t.deals))
        } else {
            group_digits(t.deals)
        };
        format!("{count} · {}", self.money(t.budget))
    }

    pub fn card(&self, d: Deal) -> CardView {
        let now = chrono::Utc::now();
        let task = self.tasks.get(&d.id.0).map(|t| {
            let due = if t.whole_day {
                t.due_at.format("%d.%m").to_string()
            } else {
                t.due_at.format("%d.%m %H:%M").to_string()
            };
            (due, t.text.clone(), t.is_overdue(now))
        });
        CardView {
            needs_task: task.is_none() && d.closed_at.is_none(),
            task,
            id: d.id.0,
            budget: self.money(d.price),
            responsible: self.user(d.responsible_user_id.0),
            contact: d.main_contact_id.map(|c| {
                self.contacts
                    .get(&c)
                    .cloned()
                    .unwrap_or_else(|| format!("#{c}"))
            }),
            tags: d
                .tags
                .into_iter()
                .map(|t| TagView {
                    id: t.id.0,
                    name: t.name,
                })
                .collect(),
            name: d.name,
        }
    }

    fn column(&self, c: BoardColumn) -> ColumnView {
        ColumnView {
            totals: self.totals(&c.totals),
            can_add: matches!(c.stage.kind, StageKind::Open | StageKind::Incoming),
            next: c.deals.next.as_ref().map(|n| n.as_str().to_string()),
            cards: c.deals.items.into_iter().map(|d| self.card(d)).collect(),
            stage: c.stage,
        }
    }
}

/// 1234567 → "1 234 567" (a thin space groups the thousands in both languages).
pub fn group_digits(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The filter bar for the given query pairs.
pub async fn filter_bar(
    state: &AppState,
    caller: Caller,
    names: &Names,
    pairs: Vec<(String, String)>,
) -> Result<FilterBar, AppError> {
    let deals = &state.modules.deals;
    let query = filter::canonical(&pairs);
    Ok(FilterBar {
        active: !query.is_empty(),
        query,
        pairs,
        users: names
            .user_list
            .iter()
            .map(|u| UserOption {
                id: u.id,
                name: u.name.clone(),
            })
            .collect(),
        tags: deals.tags(caller).await?,
        fields: deals
            .custom_fields(caller)
            .await?
            .iter()
            .filter(|f| {
                matches!(
                    f.field_type,
                    FieldType::Select
                        | FieldType::Multiselect
                        | FieldType::Checkbox
                        | FieldType::Text
                )
            })
            .map(FieldView::of::<CustomField>)
            .collect(),
        saved: deals.saved_filters(caller).await?,
    })
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
    pairs: Vec<(String, String)>,
    status: StatusCode,
    errors: FormErrors,
) -> PageResult {
    let caller = ctx.caller()?;
    let deals = &state.modules.deals;
    let pipeline = deals.pipeline(caller, id).await?;
    // A filter that does not parse shows the board unfiltered with the error.
    let (filter, errors) = match filter::parse(&pairs) {
        Ok(f) => (f, errors),
        Err(e) => (DealFilter::default(), FormErrors::from_error(&e)),
    };
    let board = deals
        .board(
            caller,
            id,
            &filter,
            PageRequest::new(None, Some(CARDS_PER_PAGE)),
        )
        .await?;
    let mut names = Names::load(state, ctx, caller).await?;
    names
        .with_tasks(
            state,
            caller,
            board
                .iter()
                .flat_map(|c| c.deals.items.iter().map(|d| d.id.0))
                .collect(),
        )
        .await;
    names
        .with_contacts(
            state,
            caller,
            board.iter().flat_map(|c| c.deals.items.iter()),
        )
        .await;
    let pipelines = deals.pipelines(caller).await?;
    let (mut columns, mut closing) = (Vec::new(), Vec::new());
    for c in board {
        if c.stage.kind.is_closed() {
            closing.push(names.column(c));
        } else {
            columns.push(names.column(c));
        }
    }
    let bar = filter_bar(state, caller, &names, pairs).await?;
    html(
        status,
        &BoardTpl {
            ctx,
            pipeline: &pipeline,
            pipelines,
            columns,
            closing,
            reasons: deals.loss_reasons(caller).await?,
            bar,
            errors,
        },
    )
}

pub async fn board(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    render_board(
        &ctx,
        &state,
        PipelineId(*path),
        q.into_inner(),
        StatusCode::OK,
        FormErrors::none(),
    )
    .await
}

/// The next cards of one column (an htmx fragment that replaces the "Show more" button).
pub async fn more(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (pipeline, stage) = (PipelineId(path.0), StageId(path.1));
    let pairs = q.into_inner();
    let filter = filter::parse(&pairs)?;
    let after = filter::get(&pairs, "after");
    let deals = &state.modules.deals;
    let page = deals
        .column(
            caller,
            pipeline,
            stage,
            &filter,
            (!after.is_empty()).then(|| Cursor::from_string(after.to_string())),
            CARDS_PER_PAGE,
        )
        .await?;
    let p = deals.pipeline(caller, pipeline).await?;
    let stage = p
        .stages
        .into_iter()
        .find(|s| s.id == stage)
        .ok_or_else(|| AppError::not_found("stage"))?;
    let mut names = Names::load(&state, &ctx, caller).await?;
    names.with_contacts(&state, caller, page.items.iter()).await;
    names
        .with_tasks(&state, caller, page.items.iter().map(|d| d.id.0).collect())
        .await;
    let col = ColumnView {
        totals: String::new(),
        can_add: false,
        next: page.next.as_ref().map(|n| n.as_str().to_string()),
        cards: page.items.into_iter().map(|d| names.card(d)).collect(),
        stage,
    };
    let query = filter::canonical(&pairs);
    ok(&CardsTpl {
        ctx: &ctx,
        pipeline: &PipelineRef { id: pipeline },
        col,
        bar: FilterBar {
            active: !query.is_empty(),
            query,
            pairs,
            users: Vec::new(),
            tags: Vec::new(),
            fields: Vec::new(),
            saved: Vec::new(),
        },
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct QuickAdd {
    name: String,
    price: String,
    stage_id: i64,
    tags: String,
}

/// "a, b ,c" → ["a", "b", "c"].
pub fn split_tags(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// A budget as typed: digits, spaces allowed; empty is 0.
pub fn parse_budget(s: &str) -> Result<i64, AppError> {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{202f}')
        .collect();
    if cleaned.is_empty() {
        return Ok(0);
    }
    cleaned
        .parse::<i64>()
        .map_err(|_| AppError::validation("price", "invalid", "the budget is a whole number"))
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
        let new = NewDeal {
            price: parse_budget(&form.price)?,
            stage_id: Some(StageId(form.stage_id)),
            tags: split_tags(&form.tags),
            ..NewDeal::new(pipeline, form.name.clone())
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
                Vec::new(),
                super::form_status(&e),
                FormErrors::from_error(&e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct MoveForm {
    stage_id: i64,
    after: String,
    loss_reason_id: String,
    /// The board's filter, so that the totals sent back are the ones on screen.
    filter: String,
}

/// An error as JSON for the board's script: the code and a message in the user's language.
pub fn json_error(ctx: &Ctx, e: &AppError, fields: &[CustomField]) -> HttpResponse {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut message = ctx.t(e.code.message_key()).to_string();
    if !e.fields.is_empty() {
        message = e
            .fields
            .iter()
            .map(|f| {
                let label = match f.field.strip_prefix("custom_fields.") {
                    Some(id) => fields
                        .iter()
                        .find(|d| d.id.0.to_string() == id)
                        .map(|d| d.name.clone())
                        .unwrap_or_else(|| id.to_string()),
                    None => ctx.t(&format!("deals.f.{}", f.field)).to_string(),
                };
                format!("{label}: {}", ctx.t(&format!("field.{}", f.code)))
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    HttpResponse::build(status).json(serde_json::json!({
        "code": e.code.as_str(),
        "message": message,
        "fields": e.fields.iter().map(|f| &f.field).collect::<Vec<_>>(),
    }))
}

/// Drag and drop: moves a deal, answers with every column's totals (JSON).
pub async fn move_deal(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<MoveForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let deals = &state.modules.deals;
    let id = DealId(*path);
    let result = async {
        let after = match form.after.trim() {
            "" => None,
            a => Some(DealId(a.parse().map_err(|_| {
                AppError::validation("after", "invalid", "a deal id")
            })?)),
        };
        let loss_reason_id = match form.loss_reason_id.trim() {
            "" => None,
            r => Some(LossReasonId(r.parse().map_err(|_| {
                AppError::validation("loss_reason_id", "invalid", "a loss reason id")
            })?)),
        };
        let moved = deals
            .move_deal(
                caller,
                id,
                MoveTo {
                    stage_id: StageId(form.stage_id),
                    after,
                    loss_reason_id,
                },
            )
            .await?;
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(form.filter.trim_start_matches('?')).unwrap_or_default();
        let filter = filter::parse(&pairs).unwrap_or_default();
        let board = deals
            .board(
                caller,
                moved.pipeline_id,
                &filter,
                PageRequest::new(None, Some(1)),
            )
            .await?;
        Ok::<_, AppError>(board)
    }
    .await;
    match result {
        Ok(board) => {
            let names = Names::load(&state, &ctx, caller).await?;
            let totals: Vec<serde_json::Value> = board
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "stage_id": c.stage.id.0,
                        "deals": c.totals.deals,
                        "text": names.totals(&c.totals),
                    })
                })
                .collect();
            Ok(HttpResponse::Ok().json(serde_json::json!({ "totals": totals })))
        }
        Err(e) => {
            let fields = deals.custom_fields(caller).await.unwrap_or_default();
            Ok(json_error(&ctx, &e, &fields))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SaveFilterForm {
    name: String,
    query: String,
    back: String,
}

/// Only our own pages as a place to go back to.
pub fn safe_back(back: &str, fallback: &str) -> String {
    if back.starts_with("/deals") && !back.starts_with("//") {
        back.to_string()
    } else {
        fallback.to_string()
    }
}

pub async fn save_filter(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<SaveFilterForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let back = safe_back(&form.back, "/deals");
    match state
        .modules
        .deals
        .save_filter(caller, &form.name, form.query.trim_start_matches('?'))
        .await
    {
        Ok(_) => see_other(&back, Some("deals.filter_saved")),
        Err(e) if is_form_error(&e) => see_other(&back, Some("deals.filter_name_required")),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_filter(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<SaveFilterForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    state
        .modules
        .deals
        .delete_saved_filter(caller, SavedFilterId(*path))
        .await?;
    see_other(
        &safe_back(&form.back, "/deals"),
        Some("deals.filter_deleted"),
    )
}
