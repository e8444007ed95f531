//! Automation pages: a pipeline's Digital Pipeline screen (a column per stage with its triggers),
//! the trigger editor, a trigger's run history, starting a manual trigger on a deal, and
//! Settings → Webhooks with the delivery log. Everything goes through the `Automation` trait.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use automation_api::*;
use deals_api::{DealId, Pipeline, PipelineId};
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppError, Caller};

use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::deals::filter::get;
use crate::web::pages::{html, is_form_error, see_other};

/// A problem with one part of a form: where, the i18n key of the kind, the module's words.
pub struct Problem {
    pub field: String,
    pub key: String,
    pub detail: String,
}

fn problems(e: &AppError) -> Vec<Problem> {
    e.fields
        .iter()
        .map(|f| Problem {
            field: f.field.clone(),
            key: format!("field.{}", f.code),
            detail: f.message.clone(),
        })
        .collect()
}

pub struct Option2 {
    pub value: String,
    pub label: String,
}

fn opt(value: impl ToString, label: impl Into<String>) -> Option2 {
    Option2 {
        value: value.to_string(),
        label: label.into(),
    }
}

/// A trigger as the screen shows it.
pub struct Card {
    pub id: i64,
    pub name: String,
    pub when: String,
    pub delay: String,
    pub actions: Vec<String>,
    pub conditions: usize,
    pub enabled: bool,
    pub failed_recently: i64,
}

pub struct Column {
    pub id: i64,
    pub name: String,
    pub color: String,
    pub cards: Vec<Card>,
}

#[derive(Template)]
#[template(path = "automation/board.html")]
struct BoardTpl<'a> {
    ctx: &'a Ctx,
    pipelines: Vec<(i64, String)>,
    pipeline: i64,
    columns: Vec<Column>,
}

fn delay_text(ctx: &Ctx, d: &Delay, working_hours: bool) -> String {
    let mut s = match d {
        Delay::Now => ctx.t("automation.delay.now").to_string(),
        Delay::After { minutes } => format!(
            "{} {minutes} {}",
            ctx.t("automation.delay.after"),
            ctx.t("automation.minutes")
        ),
        Delay::AtTime { hour, minute } => format!(
            "{} {hour:02}:{minute:02} UTC",
            ctx.t("automation.delay.at_time")
        ),
    };
    if working_hours {
        s.push_str(", ");
        s.push_str(ctx.t("automation.working_hours"));
    }
    s
}

/// The message key of an action's name, by its code (`None` for a code this version does not
/// know, as a run recorded by a newer one could hold).
fn action_key(code: &str) -> Option<&'static str> {
    Some(match code {
        "create_task" => "automation.action.create_task",
        "move_to" => "automation.action.move_to",
        "set_responsible" => "automation.action.set_responsible",
        "set_field" => "automation.action.set_field",
        "add_tags" => "automation.action.add_tags",
        "remove_tags" => "automation.action.remove_tags",
        "add_note" => "automation.action.add_note",
        "send_message" => "automation.action.send_message",
        "complete_tasks" => "automation.action.complete_tasks",
        "send_email" => "automation.action.send_email",
        "start_bot" => "automation.action.start_bot",
        "webhook" => "automation.action.webhook",
        _ => return None,
    })
}

/// An action's name in the reader's language (its code, when this version does not know it).
fn action_name(ctx: &Ctx, code: &str) -> String {
    action_key(code).map_or(code.to_string(), |k| ctx.t(k).to_string())
}

fn action_text(ctx: &Ctx, p: &Pipeline, a: &Action) -> String {
    let stage = |id: i64| {
        p.stages
            .iter()
            .find(|s| s.id.0 == id)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let label = action_name(ctx, a.code());
    let detail = match a {
        Action::CreateTask { text, .. }
        | Action::AddNote { text }
        | Action::SendMessage { text } => text.clone(),
        Action::MoveTo { stage_id } => stage(*stage_id),
        Action::AddTags { tags } | Action::RemoveTags { tags } => tags.join(", "),
        Action::Webhook { url } => url.clone(),
        Action::SetField { field_id, value } => format!("#{field_id} = {value}"),
        Action::SetResponsible { user_ids, .. } => format!("{} users", user_ids.len()),
        Action::CompleteTasks { result } => result.clone(),
        Action::SendEmail { subject, .. } => subject.clone(),
        Action::StartBot { bot_id } => format!("#{bot_id}"),
    };
    format!("{label}: {detail}")
}

fn when_key(w: &When) -> &'static str {
    match w {
        When::Created => "automation.when.created",
        When::MovedTo => "automation.when.moved_to",
        When::CreatedOrMoved => "automation.when.created_or_moved",
        When::ResponsibleChanged => "automation.when.responsible_changed",
        When::FieldChanged { .. } => "automation.when.field_changed",
        When::DateField { .. } => "automation.when.date_field",
        When::MessageReceived => "automation.when.message_received",
        When::Manual => "automation.when.manual",
    }
}

async fn pipeline_of(
    state: &AppState,
    caller: Caller,
    id: Option<i64>,
) -> Result<(Vec<Pipeline>, Pipeline), AppError> {
    let all = state.modules.deals.pipelines(caller).await?;
    let chosen = match id {
        Some(id) => all.iter().find(|p| p.id.0 == id).cloned(),
        None => all.first().cloned(),
    }
    .ok_or_else(|| AppError::not_found("pipeline"))?;
    Ok((all, chosen))
}

#[derive(serde::Deserialize)]
pub struct BoardQuery {
    pipeline: Option<i64>,
}

pub async fn board(ctx: Ctx, state: web::Data<AppState>, q: web::Query<BoardQuery>) -> PageResult {
    let caller = ctx.caller()?;
    let (all, p) = pipeline_of(&state, caller, q.pipeline).await?;
    let triggers = state.modules.automation.triggers(caller, p.id).await?;
    let columns = p
        .stages
        .iter()
        .map(|s| Column {
            id: s.id.0,
            name: s.name.clone(),
            color: s.color.clone(),
            cards: triggers
                .iter()
                .filter(|t| t.stage_id == s.id.0)
                .map(|t| Card {
                    id: t.id.0,
                    name: t.name.clone(),
                    when: ctx.t(when_key(&t.when)).to_string(),
                    delay: delay_text(&ctx, &t.delay, t.working_hours),
                    actions: t.actions.iter().map(|a| action_text(&ctx, &p, a)).collect(),
                    conditions: t.conditions.len(),
                    enabled: t.enabled,
                    failed_recently: t.failed_recently,
                })
                .collect(),
        })
        .collect();
    html(
        StatusCode::OK,
        &BoardTpl {
            ctx: &ctx,
            pipelines: all.iter().map(|p| (p.id.0, p.name.clone())).collect(),
            pipeline: p.id.0,
            columns,
        },
    )
}

// --- the trigger editor -------------------------------------------------------------------------

/// One action row of the form, as strings.
#[derive(Default, Clone)]
pub struct Row {
    pub kind: String,
    pub text: String,
    pub stage: String,
    pub task_type: String,
    pub due: String,
    pub assign: String,
    pub users: Vec<String>,
    pub field: String,
    pub value: String,
    pub tags: String,
    pub url: String,
    pub email_to: String,
    pub address: String,
    pub subject: String,
    pub bot: String,
}

impl Row {
    pub fn has_user(&self, id: &str) -> bool {
        self.users.iter().any(|u| u == id)
    }
}

/// The whole form, as strings (what was typed, to show again).
#[derive(Default)]
pub struct Form {
    pub name: String,
    pub stage: String,
    pub when: String,
    pub when_field: String,
    pub date_field: String,
    pub offset: String,
    pub delay: String,
    pub delay_minutes: String,
    pub delay_time: String,
    pub working_hours: bool,
    pub budget_min: String,
    pub budget_max: String,
    pub has_tag: String,
    pub lacks_tag: String,
    pub name_contains: String,
    pub cond_field: String,
    pub cond_op: String,
    pub cond_value: String,
    pub segment: String,
    pub enabled: bool,
    pub rows: Vec<Row>,
}

const ROWS: usize = 5;

impl Form {
    fn from_trigger(t: &Trigger) -> Form {
        let mut f = Form {
            name: t.name.clone(),
            stage: t.stage_id.to_string(),
            when: t.when.code().to_string(),
            enabled: t.enabled,
            working_hours: t.working_hours,
            ..Form::default()
        };
        match &t.when {
            When::FieldChanged { field } => f.when_field = field.clone(),
            When::DateField {
                field_id,
                offset_minutes,
            } => {
                f.date_field = field_id.to_string();
                f.offset = offset_minutes.to_string();
            }
            _ => {}
        }
        match t.delay {
            Delay::Now => f.delay = "now".into(),
            Delay::After { minutes } => {
                f.delay = "after".into();
                f.delay_minutes = minutes.to_string();
            }
            Delay::AtTime { hour, minute } => {
                f.delay = "at_time".into();
                f.delay_time = format!("{hour:02}:{minute:02}");
            }
        }
        for c in &t.conditions {
            match c {
                Condition::BudgetAtLeast { amount } => f.budget_min = amount.to_string(),
                Condition::BudgetAtMost { amount } => f.budget_max = amount.to_string(),
                Condition::HasTag { tag } => f.has_tag = tag.clone(),
                Condition::LacksTag { tag } => f.lacks_tag = tag.clone(),
                Condition::NameContains { text } => f.name_contains = text.clone(),
                Condition::Field {
                    field_id,
                    op,
                    value,
                } => {
                    f.cond_field = field_id.to_string();
                    f.cond_op = serde_json::to_value(op)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    f.cond_value = value.clone();
                }
                Condition::ContactInSegment { segment_id } => f.segment = segment_id.to_string(),
                Condition::ResponsibleIn { .. } => {}
            }
        }
        for a in &t.actions {
            let mut r = Row {
                kind: a.code().into(),
                ..Row::default()
            };
            match a {
                Action::CreateTask {
                    task_type_id,
                    text,
                    due_in_minutes,
                } => {
                    r.task_type = task_type_id.to_string();
                    r.text = text.clone();
                    r.due = due_in_minutes.to_string();
                }
                Action::MoveTo { stage_id } => r.stage = stage_id.to_string(),
                Action::SetResponsible { assign, user_ids } => {
                    r.assign = serde_json::to_value(assign)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    r.users = user_ids.iter().map(|u| u.to_string()).collect();
                }
                Action::SetField { field_id, value } => {
                    r.field = field_id.to_string();
                    r.value = value.clone();
                }
                Action::AddTags { tags } | Action::RemoveTags { tags } => r.tags = tags.join(", "),
                Action::AddNote { text } | Action::SendMessage { text } => r.text = text.clone(),
                Action::CompleteTasks { result } => r.text = result.clone(),
                Action::Webhook { url } => r.url = url.clone(),
                Action::StartBot { bot_id } => r.bot = bot_id.to_string(),
                Action::SendEmail {
                    to,
                    address,
                    subject,
                    body,
                } => {
                    r.email_to = serde_json::to_value(to)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    r.address = address.clone();
                    r.subject = subject.clone();
                    r.text = body.clone();
                }
            }
            f.rows.push(r);
        }
        f.pad();
        f
    }

    fn pad(&mut self) {
        let want = (self.rows.iter().filter(|r| !r.kind.is_empty()).count() + 2).max(ROWS);
        self.rows.retain(|r| !r.kind.is_empty());
        while self.rows.len() < want {
            self.rows.push(Row::default());
        }
    }

    fn from_pairs(pairs: &[(String, String)]) -> Form {
        let g = |k: &str| get(pairs, k).trim().to_string();
        let mut f = Form {
            name: g("name"),
            stage: g("stage"),
            when: g("when"),
            when_field: g("when_field"),
            date_field: g("date_field"),
            offset: g("offset"),
            delay: g("delay"),
            delay_minutes: g("delay_minutes"),
            delay_time: g("delay_time"),
            working_hours: !g("working_hours").is_empty(),
            budget_min: g("budget_min"),
            budget_max: g("budget_max"),
            has_tag: g("has_tag"),
            lacks_tag: g("lacks_tag"),
            name_contains: g("name_contains"),
            cond_field: g("cond_field"),
            cond_op: g("cond_op"),
            cond_value: g("cond_value"),
            segment: g("segment"),
            enabled: !g("enabled").is_empty(),
            rows: Vec::new(),
        };
        for i in 0..20 {
            let k = |n: &str| format!("a{i}_{n}");
            if !pairs
                .iter()
                .any(|(key, _)| key.starts_with(&format!("a{i}_")))
            {
                break;
            }
            f.rows.push(Row {
                kind: g(&k("kind")),
                text: g(&k("text")),
                stage: g(&k("stage")),
                task_type: g(&k("task_type")),
                due: g(&k("due")),
                assign: g(&k("assign")),
                users: pairs
                    .iter()
                    .filter(|(key, _)| *key == k("users"))
                    .map(|(_, v)| v.clone())
                    .collect(),
                field: g(&k("field")),
                value: g(&k("value")),
                tags: g(&k("tags")),
                url: g(&k("url")),
                email_to: g(&k("email_to")),
                address: g(&k("address")),
                subject: g(&k("subject")),
                bot: g(&k("bot")),
            });
        }
        f.pad();
        f
    }

    /// The draft the module checks; what cannot even be read is a form error here.
    fn draft(&self, pipeline: i64) -> Result<TriggerDraft, AppError> {
        let mut errors: Vec<kernel::FieldError> = Vec::new();
        let mut num = |field: &str, s: &str| -> i64 {
            match s.parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    errors.push(kernel::FieldError {
                        field: field.into(),
                        code: "not_a_number".into(),
                        message: format!("\u{ab}{s}\u{bb} is not a whole number"),
                    });
                    0
                }
            }
        };
        let when = match self.when.as_str() {
            "created" => When::Created,
            "moved_to" => When::MovedTo,
            "responsible_changed" => When::ResponsibleChanged,
            "field_changed" => When::FieldChanged {
                field: self.when_field.clone(),
            },
            "date_field" => When::DateField {
                field_id: num("when.field_id", &self.date_field),
                offset_minutes: if self.offset.is_empty() {
                    0
                } else {
                    num("when.offset_minutes", &self.offset)
                },
            },
            "manual" => When::Manual,
            _ => When::CreatedOrMoved,
        };
        let delay = match self.delay.as_str() {
            "after" => Delay::After {
                minutes: num("delay", &self.delay_minutes),
            },
            "at_time" => {
                let (h, m) = self.delay_time.split_once(':').unwrap_or(("", ""));
                Delay::AtTime {
                    hour: h.parse().unwrap_or(99),
                    minute: m.parse().unwrap_or(99),
                }
            }
            _ => Delay::Now,
        };
        let mut conditions = Vec::new();
        if !self.budget_min.is_empty() {
            conditions.push(Condition::BudgetAtLeast {
                amount: num("conditions.budget_min", &self.budget_min),
            });
        }
        if !self.budget_max.is_empty() {
            conditions.push(Condition::BudgetAtMost {
                amount: num("conditions.budget_max", &self.budget_max),
            });
        }
        if !self.has_tag.is_empty() {
            conditions.push(Condition::HasTag {
                tag: self.has_tag.clone(),
            });
        }
        if !self.lacks_tag.is_empty() {
            conditions.push(Condition::LacksTag {
                tag: self.lacks_tag.clone(),
            });
        }
        if !self.name_contains.is_empty() {
            conditions.push(Condition::NameContains {
                text: self.name_contains.clone(),
            });
        }
        if !self.cond_field.is_empty() {
            let op = serde_json::from_value(serde_json::Value::String(self.cond_op.clone()))
                .unwrap_or(FieldOp::Equals);
            conditions.push(Condition::Field {
                field_id: num("conditions.field", &self.cond_field),
                op,
                value: self.cond_value.clone(),
            });
        }
        if !self.segment.is_empty() {
            conditions.push(Condition::ContactInSegment {
                segment_id: num("conditions.segment", &self.segment),
            });
        }
        let mut actions = Vec::new();
        for r in self.rows.iter().filter(|r| !r.kind.is_empty()) {
            let f = format!("actions.{}", actions.len());
            let tags = || {
                r.tags
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
            };
            actions.push(match r.kind.as_str() {
                "create_task" => Action::CreateTask {
                    task_type_id: num(&f, &r.task_type),
                    text: r.text.clone(),
                    due_in_minutes: if r.due.is_empty() { 0 } else { num(&f, &r.due) },
                },
                "move_to" => Action::MoveTo {
                    stage_id: num(&f, &r.stage),
                },
                "set_responsible" => Action::SetResponsible {
                    assign: serde_json::from_value(serde_json::Value::String(r.assign.clone()))
                        .unwrap_or(Assign::Fixed),
                    user_ids: r.users.iter().map(|u| num(&f, u)).collect(),
                },
                "set_field" => Action::SetField {
                    field_id: num(&f, &r.field),
                    value: r.value.clone(),
                },
                "add_tags" => Action::AddTags { tags: tags() },
                "remove_tags" => Action::RemoveTags { tags: tags() },
                "add_note" => Action::AddNote {
                    text: r.text.clone(),
                },
                "send_message" => Action::SendMessage {
                    text: r.text.clone(),
                },
                "start_bot" => Action::StartBot {
                    bot_id: num(&f, &r.bot),
                },
                "send_email" => Action::SendEmail {
                    to: serde_json::from_value(serde_json::Value::String(r.email_to.clone()))
                        .unwrap_or(EmailTo::Contact),
                    address: r.address.clone(),
                    subject: r.subject.clone(),
                    body: r.text.clone(),
                },
                "complete_tasks" => Action::CompleteTasks {
                    result: r.text.clone(),
                },
                _ => Action::Webhook { url: r.url.clone() },
            });
        }
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        Ok(TriggerDraft {
            name: self.name.clone(),
            pipeline_id: pipeline,
            stage_id: self.stage.parse().unwrap_or(0),
            when,
            conditions,
            delay,
            working_hours: self.working_hours,
            actions,
            enabled: self.enabled,
        })
    }
}

#[derive(Template)]
#[template(path = "automation/trigger_form.html")]
struct FormTpl<'a> {
    ctx: &'a Ctx,
    id: Option<i64>,
    pipeline: i64,
    pipeline_name: String,
    stages: Vec<Option2>,
    fields: Vec<Option2>,
    date_fields: Vec<Option2>,
    task_types: Vec<Option2>,
    users: Vec<Option2>,
    segments: Vec<Option2>,
    bots: Vec<Option2>,
    kinds: Vec<Option2>,
    whens: Vec<Option2>,
    form: Form,
    problems: Vec<Problem>,
}

async fn form_page(
    ctx: &Ctx,
    state: &AppState,
    pipeline: i64,
    id: Option<i64>,
    form: Form,
    problems: Vec<Problem>,
    status: StatusCode,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let (_, p) = pipeline_of(state, caller, Some(pipeline)).await?;
    let fields = state.modules.deals.custom_fields(caller).await?;
    let task_types = crate::web::pages::activities::task_types(ctx, state, caller).await?;
    let segments = state.modules.contacts.segments(caller).await?;
    let bots = state.modules.automation.bots(caller).await?;
    let users = state
        .modules
        .accounts
        .list_users(caller, PageRequest::new(None, Some(250)))
        .await?;
    let tpl = FormTpl {
        ctx,
        id,
        pipeline,
        pipeline_name: p.name.clone(),
        stages: p
            .stages
            .iter()
            .map(|s| opt(s.id.0, s.name.clone()))
            .collect(),
        fields: fields.iter().map(|f| opt(f.id.0, f.name.clone())).collect(),
        date_fields: fields
            .iter()
            .filter(|f| {
                matches!(
                    f.field_type,
                    kernel::fields::FieldType::Date | kernel::fields::FieldType::DateTime
                )
            })
            .map(|f| opt(f.id.0, f.name.clone()))
            .collect(),
        task_types: task_types
            .into_iter()
            .map(|(id, name)| opt(id, name))
            .collect(),
        users: users
            .items
            .iter()
            .filter(|u| u.is_active)
            .map(|u| opt(u.id.0, u.name.clone()))
            .collect(),
        bots: bots.iter().map(|b| opt(b.id.0, b.name.clone())).collect(),
        segments: segments
            .iter()
            .map(|s| opt(s.id.0, s.name.clone()))
            .collect(),
        kinds: [
            "create_task",
            "move_to",
            "set_responsible",
            "set_field",
            "add_tags",
            "remove_tags",
            "add_note",
            "send_message",
            "complete_tasks",
            "send_email",
            "start_bot",
            "webhook",
        ]
        .iter()
        .map(|k| opt(k, ctx.t(format!("automation.action.{k}").as_str())))
        .collect(),
        whens: [
            "created_or_moved",
            "moved_to",
            "created",
            "responsible_changed",
            "field_changed",
            "date_field",
            "message_received",
            "manual",
        ]
        .iter()
        .map(|k| opt(k, ctx.t(format!("automation.when.{k}").as_str())))
        .collect(),
        form,
        problems,
    };
    html(status, &tpl)
}

#[derive(serde::Deserialize)]
pub struct NewQuery {
    pipeline: i64,
    stage: Option<i64>,
}

pub async fn new_trigger(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<NewQuery>,
) -> PageResult {
    let mut form = Form {
        stage: q.stage.map(|s| s.to_string()).unwrap_or_default(),
        when: "created_or_moved".into(),
        delay: "now".into(),
        enabled: true,
        ..Form::default()
    };
    form.pad();
    form_page(
        &ctx,
        &state,
        q.pipeline,
        None,
        form,
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn edit_trigger(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let t = state
        .modules
        .automation
        .trigger(caller, TriggerId(*path))
        .await?;
    form_page(
        &ctx,
        &state,
        t.pipeline_id,
        Some(t.id.0),
        Form::from_trigger(&t),
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

async fn save(
    ctx: Ctx,
    state: web::Data<AppState>,
    id: Option<i64>,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let pipeline: i64 = get(&pairs, "pipeline").parse().unwrap_or(0);
    let form = Form::from_pairs(&pairs);
    let result = match form.draft(pipeline) {
        Ok(d) => {
            state
                .modules
                .automation
                .save_trigger(caller, id.map(TriggerId), d)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(t) => see_other(
            &format!("/automation?pipeline={}", t.pipeline_id),
            Some("fields.saved"),
        ),
        Err(e) if is_form_error(&e) => {
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            form_page(&ctx, &state, pipeline, id, form, problems(&e), status).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create_trigger(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save(ctx, state, None, form.into_inner()).await
}

pub async fn update_trigger(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save(ctx, state, Some(*path), form.into_inner()).await
}

pub async fn toggle_trigger(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let on = get(&form, "enabled") == "true";
    let t = state
        .modules
        .automation
        .set_trigger_enabled(caller, TriggerId(*path), on)
        .await?;
    see_other(
        &format!("/automation?pipeline={}", t.pipeline_id),
        Some("fields.saved"),
    )
}

pub async fn delete_trigger(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let t = state
        .modules
        .automation
        .trigger(caller, TriggerId(*path))
        .await?;
    state
        .modules
        .automation
        .delete_trigger(caller, t.id)
        .await?;
    see_other(
        &format!("/automation?pipeline={}", t.pipeline_id),
        Some("automation.deleted"),
    )
}

// --- run history --------------------------------------------------------------------------------

pub struct RunLine {
    pub at: String,
    pub trigger: String,
    pub trigger_id: i64,
    pub deal_id: i64,
    pub status: &'static str,
    pub depth: i32,
    pub steps: Vec<(bool, String)>,
    pub error: String,
}

/// A run's lines for the history; each step's action by its name in the reader's language.
fn lines(ctx: &Ctx, runs: Vec<Run>) -> Vec<RunLine> {
    runs.into_iter()
        .map(|r| RunLine {
            at: r.run_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            trigger: r.trigger_name,
            trigger_id: r.trigger_id.0,
            deal_id: r.deal_id,
            status: r.status.as_str(),
            depth: r.depth,
            steps: r
                .steps
                .into_iter()
                .map(|s| {
                    (
                        s.ok,
                        format!("{}: {}", action_name(ctx, &s.action), s.detail),
                    )
                })
                .collect(),
            error: r.error.unwrap_or_default(),
        })
        .collect()
}

pub struct BotRunLine {
    pub id: String,
    pub bot: String,
    pub status: &'static str,
    pub active: bool,
    pub step: usize,
    pub waiting_until: String,
    pub history: Vec<String>,
    pub error: String,
}

#[derive(Template)]
#[template(path = "automation/runs.html")]
struct RunsTpl<'a> {
    ctx: &'a Ctx,
    title: String,
    back: String,
    runs: Vec<RunLine>,
    next: Option<String>,
    /// On a deal's page: its id, its bot runs, and the bots that can be started.
    deal: Option<i64>,
    bot_runs: Vec<BotRunLine>,
    bots: Vec<(i64, String)>,
}

#[derive(serde::Deserialize)]
pub struct After {
    after: Option<String>,
}

pub async fn trigger_runs(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<After>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let t = state
        .modules
        .automation
        .trigger(caller, TriggerId(*path))
        .await?;
    let page = state
        .modules
        .automation
        .runs(
            caller,
            RunQuery {
                deal: None,
                trigger: Some(t.id),
            },
            PageRequest::new(q.after.clone().map(Cursor::from_string), Some(50)),
        )
        .await?;
    html(
        StatusCode::OK,
        &RunsTpl {
            ctx: &ctx,
            title: t.name.clone(),
            back: format!("/automation?pipeline={}", t.pipeline_id),
            runs: lines(&ctx, page.items),
            next: page
                .next
                .map(|c| format!("/automation/triggers/{}/runs?after={}", t.id.0, c.as_str())),
            deal: None,
            bot_runs: Vec::new(),
            bots: Vec::new(),
        },
    )
}

pub async fn deal_runs(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<After>,
) -> PageResult {
    let caller = ctx.caller()?;
    let deal = state.modules.deals.deal(caller, DealId(*path)).await?;
    let bot_runs = state.modules.automation.bot_runs(caller, deal.id).await?;
    let bots: Vec<(i64, String)> = state
        .modules
        .automation
        .bots(caller)
        .await?
        .into_iter()
        .filter(|b| b.pipeline_id == deal.pipeline_id.0)
        .map(|b| (b.id.0, b.name))
        .collect();
    let page = state
        .modules
        .automation
        .runs(
            caller,
            RunQuery {
                deal: Some(deal.id.0),
                trigger: None,
            },
            PageRequest::new(q.after.clone().map(Cursor::from_string), Some(50)),
        )
        .await?;
    html(
        StatusCode::OK,
        &RunsTpl {
            ctx: &ctx,
            title: deal.name.clone(),
            back: format!("/deals/{}", deal.id.0),
            runs: lines(&ctx, page.items),
            next: page
                .next
                .map(|c| format!("/deals/{}/runs?after={}", deal.id.0, c.as_str())),
            deal: Some(deal.id.0),
            bot_runs: bot_runs
                .into_iter()
                .map(|r| BotRunLine {
                    id: r.id.0.to_string(),
                    bot: r.bot_name,
                    status: r.status.as_str(),
                    active: r.status.is_active(),
                    step: r.step + 1,
                    waiting_until: r
                        .waiting_until
                        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_default(),
                    history: r
                        .history
                        .iter()
                        .map(|h| {
                            format!(
                                "{} · {} {}: {}",
                                h.at.format("%H:%M:%S"),
                                h.step + 1,
                                h.kind,
                                h.detail
                            )
                        })
                        .collect(),
                    error: r.error.unwrap_or_default(),
                })
                .collect(),
            bots,
        },
    )
}

/// Starts a trigger by hand on one deal (from its page) or on a selection (`deal` repeated).
pub async fn run_manual(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let trigger: i64 = get(&form, "trigger").parse().unwrap_or(0);
    let deals: Vec<DealId> = form
        .iter()
        .filter(|(k, _)| k == "deal")
        .filter_map(|(_, v)| v.parse().ok().map(DealId))
        .collect();
    let back = match deals.as_slice() {
        [one] => format!("/deals/{}/runs", one.0),
        _ => "/deals".to_string(),
    };
    state
        .modules
        .automation
        .run_manual(caller, TriggerId(trigger), deals)
        .await?;
    see_other(&back, Some("automation.started"))
}

/// The manual triggers of a pipeline, for the deal page's "Run a robot".
pub async fn manual_triggers(
    state: &AppState,
    caller: Caller,
    pipeline: PipelineId,
) -> Vec<(i64, String)> {
    state
        .modules
        .automation
        .triggers(caller, pipeline)
        .await
        .map(|ts| {
            ts.into_iter()
                .filter(|t| t.enabled && t.when == When::Manual)
                .map(|t| (t.id.0, t.name))
                .collect()
        })
        .unwrap_or_default()
}

// --- Settings → Webhooks ------------------------------------------------------------------------

pub struct HookLine {
    pub id: i64,
    pub url: String,
    pub events: String,
    pub format: &'static str,
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: String,
    pub failures: i32,
}

pub struct DeliveryLine {
    pub at: String,
    pub event: String,
    pub url: String,
    pub status: &'static str,
    pub attempts: i32,
    pub code: String,
    pub ms: String,
    pub response: String,
}

#[derive(Template)]
#[template(path = "settings/webhooks.html")]
struct HooksTpl<'a> {
    ctx: &'a Ctx,
    hooks: Vec<HookLine>,
    deliveries: Vec<DeliveryLine>,
    events: Vec<&'static str>,
    chosen: Vec<String>,
    url: String,
    problems: Vec<Problem>,
}

impl HooksTpl<'_> {
    fn is_chosen(&self, e: &str) -> bool {
        self.chosen.iter().any(|c| c == e)
    }
}

async fn hooks_page(
    ctx: &Ctx,
    state: &AppState,
    url: String,
    chosen: Vec<String>,
    problems: Vec<Problem>,
    status: StatusCode,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let hooks = state.modules.automation.webhooks(caller).await?;
    let deliveries = state
        .modules
        .automation
        .deliveries(caller, None, PageRequest::new(None, Some(50)))
        .await?;
    html(
        status,
        &HooksTpl {
            ctx,
            hooks: hooks
                .into_iter()
                .map(|h| HookLine {
                    id: h.id.0,
                    url: h.url,
                    events: h.events.join(", "),
                    format: h.format.as_str(),
                    secret: h.secret,
                    enabled: h.enabled,
                    disabled_reason: h.disabled_reason.unwrap_or_default(),
                    failures: h.failures_in_row,
                })
                .collect(),
            deliveries: deliveries
                .items
                .into_iter()
                .map(|d| DeliveryLine {
                    at: d.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    event: d.event,
                    url: d.url,
                    status: d.status.as_str(),
                    attempts: d.attempts,
                    code: d
                        .last_status_code
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    ms: d.last_ms.map(|c| format!("{c} ms")).unwrap_or_default(),
                    response: d.last_response.unwrap_or_default(),
                })
                .collect(),
            events: WEBHOOK_EVENTS.to_vec(),
            chosen,
            url,
            problems,
        },
    )
}

pub async fn webhooks(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    hooks_page(
        &ctx,
        &state,
        String::new(),
        Vec::new(),
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn create_webhook(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let url = get(&form, "url").to_string();
    let events: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "events")
        .map(|(_, v)| v.clone())
        .collect();
    let format = if get(&form, "format") == "form" {
        PayloadFormat::Form
    } else {
        PayloadFormat::Json
    };
    match state
        .modules
        .automation
        .save_webhook(
            caller,
            None,
            WebhookDraft {
                url: url.clone(),
                events: events.clone(),
                format,
                enabled: true,
            },
        )
        .await
    {
        Ok(_) => see_other("/settings/webhooks", Some("fields.saved")),
        Err(e) if is_form_error(&e) => {
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            hooks_page(&ctx, &state, url, events, problems(&e), status).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn toggle_webhook(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let hook = state
        .modules
        .automation
        .webhooks(caller)
        .await?
        .into_iter()
        .find(|h| h.id.0 == *path)
        .ok_or_else(|| AppError::not_found("webhook"))?;
    state
        .modules
        .automation
        .save_webhook(
            caller,
            Some(hook.id),
            WebhookDraft {
                url: hook.url,
                events: hook.events,
                format: hook.format,
                enabled: get(&form, "enabled") == "true",
            },
        )
        .await?;
    see_other("/settings/webhooks", Some("fields.saved"))
}

pub async fn delete_webhook(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    state
        .modules
        .automation
        .delete_webhook(caller, WebhookId(*path))
        .await?;
    see_other("/settings/webhooks", Some("automation.deleted"))
}

// --- bots ---------------------------------------------------------------------------------------

/// One step row of the bot form, as strings (step numbers from 1).
#[derive(Default, Clone)]
pub struct StepRow {
    pub kind: String,
    pub text: String,
    pub buttons: String,
    pub timeout: String,
    pub on_timeout: String,
    pub r1_kind: String,
    pub r1_text: String,
    pub r1_goto: String,
    pub r2_kind: String,
    pub r2_text: String,
    pub r2_goto: String,
    pub otherwise: String,
    pub act: String,
    pub tags: String,
    pub stage: String,
    pub task_type: String,
    pub to: String,
}

const STEP_ROWS: usize = 6;

fn one_based(n: Option<usize>) -> String {
    n.map(|n| (n + 1).to_string()).unwrap_or_default()
}

impl StepRow {
    fn of(s: &BotStep) -> StepRow {
        let mut r = StepRow {
            kind: s.code().into(),
            ..StepRow::default()
        };
        match s {
            BotStep::Message { text, buttons } => {
                r.text = text.clone();
                r.buttons = buttons.join(", ");
            }
            BotStep::WaitReply {
                timeout_minutes,
                on_timeout,
            } => {
                r.timeout = timeout_minutes.to_string();
                r.on_timeout = one_based(*on_timeout);
            }
            BotStep::Branch { rules, otherwise } => {
                let rule = |r: &BranchRule| match &r.when {
                    Match::ReplyIs { text } => {
                        ("is".to_string(), text.clone(), one_based(Some(r.goto)))
                    }
                    Match::ReplyContains { text } => (
                        "contains".to_string(),
                        text.clone(),
                        one_based(Some(r.goto)),
                    ),
                    Match::Deal { .. } => {
                        ("deal".to_string(), String::new(), one_based(Some(r.goto)))
                    }
                };
                if let Some(x) = rules.first() {
                    (r.r1_kind, r.r1_text, r.r1_goto) = rule(x);
                }
                if let Some(x) = rules.get(1) {
                    (r.r2_kind, r.r2_text, r.r2_goto) = rule(x);
                }
                r.otherwise = one_based(*otherwise);
            }
            BotStep::Act { action } => {
                r.act = action.code().into();
                match action {
                    Action::AddTags { tags } | Action::RemoveTags { tags } => {
                        r.tags = tags.join(", ")
                    }
                    Action::AddNote { text } => r.text = text.clone(),
                    Action::CreateTask {
                        task_type_id, text, ..
                    } => {
                        r.text = text.clone();
                        r.task_type = task_type_id.to_string();
                    }
                    Action::MoveTo { stage_id } => r.stage = stage_id.to_string(),
                    _ => {}
                }
            }
            BotStep::Jump { to } => r.to = one_based(Some(*to)),
            BotStep::Stop => {}
        }
        r
    }
}

fn pad_steps(rows: &mut Vec<StepRow>) {
    rows.retain(|r| !r.kind.is_empty());
    let want = (rows.len() + 2).max(STEP_ROWS);
    while rows.len() < want {
        rows.push(StepRow::default());
    }
}

fn step_rows(pairs: &[(String, String)]) -> Vec<StepRow> {
    let g = |k: &str| get(pairs, k).trim().to_string();
    let mut rows = Vec::new();
    for i in 0..(automation_api::MAX_BOT_STEPS + 2) {
        if !pairs.iter().any(|(k, _)| k.starts_with(&format!("s{i}_"))) {
            break;
        }
        let k = |n: &str| g(&format!("s{i}_{n}"));
        rows.push(StepRow {
            kind: k("kind"),
            text: k("text"),
            buttons: k("buttons"),
            timeout: k("timeout"),
            on_timeout: k("on_timeout"),
            r1_kind: k("r1_kind"),
            r1_text: k("r1_text"),
            r1_goto: k("r1_goto"),
            r2_kind: k("r2_kind"),
            r2_text: k("r2_text"),
            r2_goto: k("r2_goto"),
            otherwise: k("otherwise"),
            act: k("act"),
            tags: k("tags"),
            stage: k("stage"),
            task_type: k("task_type"),
            to: k("to"),
        });
    }
    rows
}

/// The steps the rows say; a step number that is not a number is a form error. Empty rows are
/// left out, and step numbers refer to the rows that are kept.
fn steps_of(rows: &[StepRow]) -> Result<Vec<BotStep>, AppError> {
    let mut errors: Vec<kernel::FieldError> = Vec::new();
    let kept: Vec<&StepRow> = rows.iter().filter(|r| !r.kind.is_empty()).collect();
    let mut steps = Vec::new();
    for (i, r) in kept.iter().enumerate() {
        let f = format!("steps.{i}");
        let mut step_no = |s: &str| -> Option<usize> {
            if s.is_empty() {
                return None;
            }
            match s.parse::<usize>() {
                Ok(n) if n >= 1 => Some(n - 1),
                _ => {
                    errors.push(kernel::FieldError {
                        field: f.clone(),
                        code: "not_a_number".into(),
                        message: format!("\u{ab}{s}\u{bb} is not a step number"),
                    });
                    None
                }
            }
        };
        let split = |s: &str| {
            s.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        };
        let step = match r.kind.as_str() {
            "message" => BotStep::Message {
                text: r.text.clone(),
                buttons: split(&r.buttons),
            },
            "wait_reply" => BotStep::WaitReply {
                timeout_minutes: r.timeout.parse().unwrap_or(0),
                on_timeout: step_no(&r.on_timeout),
            },
            "branch" => {
                let mut rules = Vec::new();
                for (kind, text, goto) in [
                    (&r.r1_kind, &r.r1_text, &r.r1_goto),
                    (&r.r2_kind, &r.r2_text, &r.r2_goto),
                ] {
                    if text.is_empty() && goto.is_empty() {
                        continue;
                    }
                    let when = if kind == "contains" {
                        Match::ReplyContains { text: text.clone() }
                    } else {
                        Match::ReplyIs { text: text.clone() }
                    };
                    rules.push(BranchRule {
                        when,
                        goto: step_no(goto).unwrap_or(usize::MAX),
                    });
                }
                BotStep::Branch {
                    rules,
                    otherwise: step_no(&r.otherwise),
                }
            }
            "act" => BotStep::Act {
                action: match r.act.as_str() {
                    "remove_tags" => Action::RemoveTags {
                        tags: split(&r.tags),
                    },
                    "add_note" => Action::AddNote {
                        text: r.text.clone(),
                    },
                    "create_task" => Action::CreateTask {
                        task_type_id: r.task_type.parse().unwrap_or(0),
                        text: r.text.clone(),
                        due_in_minutes: 60,
                    },
                    "move_to" => Action::MoveTo {
                        stage_id: r.stage.parse().unwrap_or(0),
                    },
                    _ => Action::AddTags {
                        tags: split(&r.tags),
                    },
                },
            },
            "jump" => BotStep::Jump {
                to: step_no(&r.to).unwrap_or(usize::MAX),
            },
            _ => BotStep::Stop,
        };
        steps.push(step);
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(AppError::from_fields(errors))
    }
}

#[derive(Template)]
#[template(path = "automation/bots.html")]
struct BotsTpl<'a> {
    ctx: &'a Ctx,
    bots: Vec<(i64, String, usize)>,
    pipeline: i64,
}

pub async fn bots(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    let caller = ctx.caller()?;
    let (_, p) = pipeline_of(&state, caller, None).await?;
    let bots = state.modules.automation.bots(caller).await?;
    html(
        StatusCode::OK,
        &BotsTpl {
            ctx: &ctx,
            bots: bots
                .into_iter()
                .map(|b| (b.id.0, b.name, b.steps.len()))
                .collect(),
            pipeline: p.id.0,
        },
    )
}

#[derive(Template)]
#[template(path = "automation/bot_form.html")]
struct BotFormTpl<'a> {
    ctx: &'a Ctx,
    id: Option<i64>,
    name: String,
    pipeline: i64,
    pipelines: Vec<Option2>,
    stages: Vec<Option2>,
    task_types: Vec<Option2>,
    rows: Vec<StepRow>,
    json: String,
    problems: Vec<Problem>,
}

#[allow(clippy::too_many_arguments)]
async fn bot_page(
    ctx: &Ctx,
    state: &AppState,
    id: Option<i64>,
    name: String,
    pipeline: i64,
    mut rows: Vec<StepRow>,
    json: String,
    problems: Vec<Problem>,
    status: StatusCode,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let (all, p) = pipeline_of(state, caller, Some(pipeline)).await?;
    let task_types = crate::web::pages::activities::task_types(ctx, state, caller).await?;
    pad_steps(&mut rows);
    html(
        status,
        &BotFormTpl {
            ctx,
            id,
            name,
            pipeline: p.id.0,
            pipelines: all.iter().map(|p| opt(p.id.0, p.name.clone())).collect(),
            stages: p
                .stages
                .iter()
                .map(|s| opt(s.id.0, s.name.clone()))
                .collect(),
            task_types: task_types
                .into_iter()
                .map(|(id, name)| opt(id, name))
                .collect(),
            rows,
            json,
            problems,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct BotQuery {
    pipeline: Option<i64>,
}

pub async fn new_bot(ctx: Ctx, state: web::Data<AppState>, q: web::Query<BotQuery>) -> PageResult {
    let caller = ctx.require_admin()?;
    let (_, p) = pipeline_of(&state, caller, q.pipeline).await?;
    bot_page(
        &ctx,
        &state,
        None,
        String::new(),
        p.id.0,
        Vec::new(),
        String::new(),
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn edit_bot(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.require_admin()?;
    let b = state.modules.automation.bot(caller, BotId(*path)).await?;
    let json = serde_json::to_string_pretty(&b.steps).unwrap_or_default();
    let rows = b.steps.iter().map(StepRow::of).collect();
    bot_page(
        &ctx,
        &state,
        Some(b.id.0),
        b.name,
        b.pipeline_id,
        rows,
        json,
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

async fn save_bot_form(
    ctx: Ctx,
    state: web::Data<AppState>,
    id: Option<i64>,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let caller = ctx.require_admin()?;
    let name = get(&pairs, "name").to_string();
    let pipeline: i64 = get(&pairs, "pipeline").parse().unwrap_or(0);
    let rows = step_rows(&pairs);
    // The steps as JSON, when given, win over the rows (the JSON view of the same bot).
    let json = get(&pairs, "json").trim().to_string();
    let steps = if !json.is_empty() && get(&pairs, "use_json") == "1" {
        serde_json::from_str::<Vec<BotStep>>(&json).map_err(|e| {
            AppError::validation(
                "steps",
                "bad_json",
                &format!("the steps are not valid bot JSON: {e}"),
            )
        })
    } else {
        steps_of(&rows)
    };
    let result = match steps {
        Ok(steps) => {
            state
                .modules
                .automation
                .save_bot(
                    caller,
                    id.map(BotId),
                    BotDraft {
                        name: name.clone(),
                        pipeline_id: pipeline,
                        steps,
                    },
                )
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(b) => see_other(
            &format!("/automation/bots/{}", b.id.0),
            Some("fields.saved"),
        ),
        Err(e) if is_form_error(&e) => {
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            bot_page(
                &ctx,
                &state,
                id,
                name,
                pipeline,
                rows,
                json,
                problems(&e),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create_bot(
    ctx: Ctx,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save_bot_form(ctx, state, None, form.into_inner()).await
}

pub async fn update_bot(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save_bot_form(ctx, state, Some(*path), form.into_inner()).await
}

pub async fn delete_bot(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.require_admin()?;
    state
        .modules
        .automation
        .delete_bot(caller, BotId(*path))
        .await?;
    see_other("/automation/bots", Some("automation.deleted"))
}

/// Starts a bot on a deal, from the deal's robots page.
pub async fn start_bot(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let bot: i64 = get(&form, "bot").parse().unwrap_or(0);
    state
        .modules
        .automation
        .start_bot(caller, BotId(bot), DealId(*path))
        .await?;
    see_other(
        &format!("/deals/{}/runs", *path),
        Some("automation.started"),
    )
}

/// Stops a bot talking on a deal.
pub async fn stop_bot(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<(i64, uuid::Uuid)>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (deal, run) = path.into_inner();
    state
        .modules
        .automation
        .stop_bot_run(caller, BotRunId(run))
        .await?;
    see_other(&format!("/deals/{deal}/runs"), Some("bots.stopped"))
}
