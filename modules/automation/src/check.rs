//! Checking a trigger before it is saved, and its conditions against a deal when it fires.

use activities_api::TaskType;
use automation_api::*;
use deals_api::{CustomField, Deal, Pipeline};
use kernel::fields::{FieldType, clean_tags, display, normalize};
use kernel::{AppError, FieldError};

pub(crate) const MAX_NAME: usize = 255;
pub(crate) const MAX_TEXT: usize = 2_000;
/// A year, in minutes: the longest delay, due time or date offset.
pub(crate) const MAX_MINUTES: i64 = 525_600;

fn err(errors: &mut Vec<FieldError>, field: String, code: &str, message: String) {
    errors.push(FieldError {
        field,
        code: code.into(),
        message,
    });
}

/// Where a text field of a trigger (or action) names an account's field: `name`, `price`, `tags`
/// or a custom field's id.
fn field_def(fields: &[CustomField], id: i64) -> Option<&CustomField> {
    fields.iter().find(|f| f.id.0 == id)
}

/// What the caller told us about the account, for checking a draft.
pub(crate) struct Known<'a> {
    pub pipeline: &'a Pipeline,
    pub fields: &'a [CustomField],
    pub task_types: &'a [TaskType],
    /// Active users of the account.
    pub users: &'a [i64],
    /// The account's contact segments.
    pub segments: &'a [i64],
    pub allow_private: bool,
    /// Whether an SMTP server is configured.
    pub email: bool,
    /// The account's bots.
    pub bots: &'a [i64],
}

/// Checks and tidies a draft; every problem is reported at once, by field.
pub(crate) fn trigger(mut d: TriggerDraft, k: &Known) -> Result<TriggerDraft, AppError> {
    let mut errors = Vec::new();
    let e = &mut errors;
    d.name = d.name.trim().to_string();
    if d.name.is_empty() {
        err(
            e,
            "name".into(),
            "required",
            "give the trigger a name".into(),
        );
    } else if d.name.chars().count() > MAX_NAME {
        err(
            e,
            "name".into(),
            "too_long",
            format!("at most {MAX_NAME} characters"),
        );
    }
    let in_pipeline = |id: i64| k.pipeline.stages.iter().any(|s| s.id.0 == id);
    if !in_pipeline(d.stage_id) {
        err(
            e,
            "stage_id".into(),
            "unknown_stage",
            format!("stage {} is not a stage of this pipeline", d.stage_id),
        );
    }
    match &d.when {
        When::FieldChanged { field } => {
            let known = matches!(field.as_str(), "name" | "price" | "tags")
                || field
                    .parse::<i64>()
                    .ok()
                    .is_some_and(|id| field_def(k.fields, id).is_some());
            if !known {
                err(
                    e,
                    "when.field".into(),
                    "unknown_field",
                    format!(
                        "no field \u{ab}{field}\u{bb}: name, price, tags or a custom field's id"
                    ),
                );
            }
        }
        When::DateField {
            field_id,
            offset_minutes,
        } => {
            match field_def(k.fields, *field_id) {
                None => err(
                    e,
                    "when.field_id".into(),
                    "unknown_field",
                    format!("no custom field {field_id}"),
                ),
                Some(f) if !matches!(f.field_type, FieldType::Date | FieldType::DateTime) => err(
                    e,
                    "when.field_id".into(),
                    "not_a_date",
                    format!("\u{ab}{}\u{bb} is not a date field", f.name),
                ),
                Some(_) => {}
            }
            if offset_minutes.abs() > MAX_MINUTES {
                err(
                    e,
                    "when.offset_minutes".into(),
                    "out_of_range",
                    "at most a year before or after".into(),
                );
            }
        }
        _ => {}
    }
    if d.conditions.len() > MAX_CONDITIONS {
        err(
            e,
            "conditions".into(),
            "too_many",
            format!("at most {MAX_CONDITIONS} conditions"),
        );
    }
    for (i, c) in d.conditions.iter_mut().enumerate() {
        condition(c, format!("conditions.{i}"), k, e);
    }
    match d.delay {
        Delay::Now => {}
        Delay::After { minutes } => {
            if !(1..=MAX_MINUTES).contains(&minutes) {
                err(
                    e,
                    "delay".into(),
                    "out_of_range",
                    "a delay is from one minute to a year".into(),
                );
            }
        }
        Delay::AtTime { hour, minute } => {
            if hour > 23 || minute > 59 {
                err(
                    e,
                    "delay".into(),
                    "bad_time",
                    "a time of day is 00:00 to 23:59".into(),
                );
            }
        }
    }
    if d.actions.is_empty() {
        err(
            e,
            "actions".into(),
            "required",
            "add at least one action".into(),
        );
    } else if d.actions.len() > MAX_ACTIONS {
        err(
            e,
            "actions".into(),
            "too_many",
            format!("at most {MAX_ACTIONS} actions"),
        );
    }
    let trigger_stage = d.stage_id;
    for (i, a) in d.actions.iter_mut().enumerate() {
        action(a, format!("actions.{i}"), Some(trigger_stage), k, e);
    }
    if errors.is_empty() {
        Ok(d)
    } else {
        Err(AppError::from_fields(errors))
    }
}

/// Checks and tidies one condition; `f` names it in errors.
pub(crate) fn condition(c: &mut Condition, f: String, k: &Known, e: &mut Vec<FieldError>) {
    match c {
        Condition::BudgetAtLeast { amount } | Condition::BudgetAtMost { amount } => {
            if *amount < 0 {
                err(e, f, "negative", "a budget cannot be negative".into());
            }
        }
        Condition::HasTag { tag } | Condition::LacksTag { tag } => {
            *tag = tag.trim().to_string();
            if tag.is_empty() {
                err(e, f, "required", "name the tag".into());
            }
        }
        Condition::NameContains { text } => {
            *text = text.trim().to_string();
            if text.is_empty() {
                err(e, f, "required", "say what the name should contain".into());
            }
        }
        Condition::ContactInSegment { segment_id } => {
            if !k.segments.contains(segment_id) {
                err(e, f, "unknown_segment", format!("no segment {segment_id}"));
            }
        }
        Condition::ResponsibleIn { user_ids } => {
            if user_ids.is_empty() {
                err(e, f, "required", "choose at least one user".into());
            } else if let Some(u) = user_ids.iter().find(|u| !k.users.contains(u)) {
                err(e, f, "unknown_user", format!("no active user {u}"));
            }
        }
        Condition::Field {
            field_id,
            op,
            value,
        } => {
            *value = value.trim().to_string();
            if field_def(k.fields, *field_id).is_none() {
                err(e, f, "unknown_field", format!("no custom field {field_id}"));
            } else if matches!(op, FieldOp::Equals | FieldOp::NotEquals | FieldOp::Contains)
                && value.is_empty()
            {
                err(e, f, "required", "give the value to compare with".into());
            }
        }
    }
}

/// Checks and tidies one action (of a trigger, or a bot's step); `f` names it in errors. A move
/// may not target `own_stage` (the trigger's stage).
pub(crate) fn action(
    a: &mut Action,
    f: String,
    own_stage: Option<i64>,
    k: &Known,
    e: &mut Vec<FieldError>,
) {
    let in_pipeline = |id: i64| k.pipeline.stages.iter().any(|s| s.id.0 == id);
    match a {
        Action::CreateTask {
            task_type_id,
            text,
            due_in_minutes,
        } => {
            *text = text.trim().to_string();
            if !k.task_types.iter().any(|t| t.id.0 == *task_type_id) {
                err(
                    e,
                    f.clone(),
                    "unknown_task_type",
                    format!("no task type {task_type_id}"),
                );
            }
            if text.is_empty() {
                err(e, f.clone(), "required", "say what the task is".into());
            } else if text.chars().count() > MAX_TEXT {
                err(
                    e,
                    f.clone(),
                    "too_long",
                    format!("at most {MAX_TEXT} characters"),
                );
            }
            if !(0..=MAX_MINUTES).contains(due_in_minutes) {
                err(e, f, "out_of_range", "a task is due within a year".into());
            }
        }
        Action::MoveTo { stage_id } => {
            if !in_pipeline(*stage_id) {
                err(
                    e,
                    f,
                    "unknown_stage",
                    format!("stage {stage_id} is not a stage of this pipeline"),
                );
            } else if Some(*stage_id) == own_stage {
                err(
                    e,
                    f,
                    "same_stage",
                    "the deal is already in this stage".into(),
                );
            }
        }
        Action::SetResponsible { assign, user_ids } => {
            user_ids.sort_unstable();
            user_ids.dedup();
            if user_ids.is_empty() {
                err(e, f, "required", "choose whom to assign".into());
            } else if *assign == Assign::Fixed && user_ids.len() != 1 {
                err(e, f, "one_user", "a fixed assignment names one user".into());
            } else if let Some(u) = user_ids.iter().find(|u| !k.users.contains(u)) {
                err(e, f, "unknown_user", format!("no active user {u}"));
            }
        }
        Action::SetField { field_id, value } => match field_def(k.fields, *field_id) {
            None => err(e, f, "unknown_field", format!("no custom field {field_id}")),
            Some(def) => {
                if let Err(v) = normalize(
                    def.field_type,
                    &def.enums,
                    &serde_json::Value::String(value.clone()),
                ) {
                    err(
                        e,
                        f,
                        "bad_value",
                        format!("\u{ab}{}\u{bb}: {}", def.name, v.message),
                    );
                }
            }
        },
        Action::AddTags { tags } | Action::RemoveTags { tags } => {
            let mut tag_errors = Vec::new();
            *tags = clean_tags(tags, 50, &mut tag_errors);
            if let Some(t) = tag_errors.into_iter().next() {
                err(e, f, &t.code, t.message);
            } else if tags.is_empty() {
                err(e, f, "required", "name at least one tag".into());
            }
        }
        Action::SendMessage { text } => {
            *text = text.trim().to_string();
            if text.is_empty() {
                err(e, f, "required", "write the message".into());
            } else if text.chars().count() > 4096 {
                err(e, f, "too_long", "at most 4096 characters".into());
            }
        }
        Action::AddNote { text } => {
            *text = text.trim().to_string();
            if text.is_empty() {
                err(e, f, "required", "write the note".into());
            } else if text.chars().count() > MAX_TEXT {
                err(e, f, "too_long", format!("at most {MAX_TEXT} characters"));
            }
        }
        Action::CompleteTasks { result } => {
            *result = result.trim().to_string();
            if result.chars().count() > MAX_TEXT {
                err(e, f, "too_long", format!("at most {MAX_TEXT} characters"));
            }
        }
        Action::SendEmail {
            to,
            address,
            subject,
            body,
        } => {
            *address = address.trim().to_string();
            *subject = subject.trim().to_string();
            if !k.email {
                err(
                    e,
                    f.clone(),
                    "unavailable",
                    "no SMTP server is configured ([automation] smtp_url)".into(),
                );
            }
            if *to == EmailTo::Address
                && (address.len() > 254
                    || !address
                        .split_once('@')
                        .is_some_and(|(u, d)| !u.is_empty() && d.contains('.')))
            {
                err(
                    e,
                    f.clone(),
                    "invalid_email",
                    format!("\u{ab}{address}\u{bb} is not an e-mail address"),
                );
            }
            if subject.is_empty() {
                err(e, f.clone(), "required", "give the e-mail a subject".into());
            } else if subject.chars().count() > MAX_NAME {
                err(
                    e,
                    f.clone(),
                    "too_long",
                    format!("a subject is at most {MAX_NAME} characters"),
                );
            }
            if body.chars().count() > 10 * MAX_TEXT {
                err(
                    e,
                    f,
                    "too_long",
                    "the text is at most 20,000 characters".into(),
                );
            }
        }
        Action::StartBot { bot_id } => {
            if !k.bots.contains(bot_id) {
                err(e, f, "unknown_bot", format!("no bot {bot_id}"));
            }
        }
        Action::Webhook { url } => {
            *url = url.trim().to_string();
            if let Err(m) = crate::guard::check_url(url, k.allow_private) {
                err(e, f, "bad_url", m);
            }
        }
    }
}

/// Whether all of a trigger's conditions hold for the deal.
pub(crate) fn holds(conditions: &[Condition], deal: &Deal, fields: &[CustomField]) -> bool {
    let lower = |s: &str| s.to_lowercase();
    conditions.iter().all(|c| match c {
        Condition::BudgetAtLeast { amount } => deal.price >= *amount,
        Condition::BudgetAtMost { amount } => deal.price <= *amount,
        Condition::HasTag { tag } => deal.tags.iter().any(|t| lower(&t.name) == lower(tag)),
        Condition::LacksTag { tag } => !deal.tags.iter().any(|t| lower(&t.name) == lower(tag)),
        Condition::NameContains { text } => lower(&deal.name).contains(&lower(text)),
        Condition::ResponsibleIn { user_ids } => user_ids.contains(&deal.responsible_user_id.0),
        // Asked of the contacts module (see `Inner::meets`).
        Condition::ContactInSegment { .. } => true,
        Condition::Field {
            field_id,
            op,
            value,
        } => {
            let shown = match (
                field_def(fields, *field_id),
                deal.custom_fields.get(&field_id.to_string()),
            ) {
                (Some(def), Some(v)) => display(def.field_type, &def.enums, v),
                _ => String::new(),
            };
            let (shown, value) = (lower(&shown), lower(value));
            match op {
                FieldOp::Equals => shown == value,
                FieldOp::NotEquals => shown != value,
                FieldOp::Contains => shown.contains(&value),
                FieldOp::Empty => shown.is_empty(),
                FieldOp::Filled => !shown.is_empty(),
            }
        }
    })
}

/// Whether the trigger needs the account's custom fields to check its conditions.
pub(crate) fn needs_fields(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| matches!(c, Condition::Field { .. }))
}

const MAX_MESSAGE: usize = 4_096;
const MAX_BUTTON: usize = 64;

/// Checks and tidies a bot: its name, every step, where steps lead, and that no loop of steps
/// can go round without waiting for a reply.
pub(crate) fn bot(mut d: BotDraft, k: &Known) -> Result<BotDraft, AppError> {
    let mut errors = Vec::new();
    let e = &mut errors;
    d.name = d.name.trim().to_string();
    if d.name.is_empty() {
        err(e, "name".into(), "required", "give the bot a name".into());
    } else if d.name.chars().count() > MAX_NAME {
        err(
            e,
            "name".into(),
            "too_long",
            format!("at most {MAX_NAME} characters"),
        );
    }
    let n = d.steps.len();
    if n == 0 {
        err(
            e,
            "steps".into(),
            "required",
            "add at least one step".into(),
        );
    } else if n > MAX_BOT_STEPS {
        err(
            e,
            "steps".into(),
            "too_many",
            format!("at most {MAX_BOT_STEPS} steps"),
        );
    }
    let target = |to: usize, e: &mut Vec<FieldError>, f: &str| {
        if to >= n {
            err(
                e,
                f.to_string(),
                "unknown_step",
                format!("there is no step {} (the bot has {n})", to + 1),
            );
        }
    };
    for (i, step) in d.steps.iter_mut().enumerate() {
        let f = format!("steps.{i}");
        match step {
            BotStep::Message { text, buttons } => {
                *text = text.trim().to_string();
                if text.is_empty() {
                    err(e, f.clone(), "required", "write the message".into());
                } else if text.chars().count() > MAX_MESSAGE {
                    err(
                        e,
                        f.clone(),
                        "too_long",
                        format!("a message is at most {MAX_MESSAGE} characters"),
                    );
                }
                buttons.iter_mut().for_each(|b| *b = b.trim().to_string());
                buttons.retain(|b| !b.is_empty());
                if buttons.len() > MAX_BUTTONS {
                    err(e, f, "too_many", format!("at most {MAX_BUTTONS} buttons"));
                } else if buttons.iter().any(|b| b.chars().count() > MAX_BUTTON) {
                    err(
                        e,
                        f,
                        "too_long",
                        format!("a button is at most {MAX_BUTTON} characters"),
                    );
                }
            }
            BotStep::WaitReply {
                timeout_minutes,
                on_timeout,
            } => {
                if !(1..=MAX_MINUTES).contains(timeout_minutes) {
                    err(
                        e,
                        f.clone(),
                        "out_of_range",
                        "wait from one minute to a year".into(),
                    );
                }
                if let Some(to) = on_timeout {
                    target(*to, e, &f);
                }
            }
            BotStep::Branch { rules, otherwise } => {
                if rules.is_empty() {
                    err(e, f.clone(), "required", "add at least one rule".into());
                }
                for (j, r) in rules.iter_mut().enumerate() {
                    let rf = format!("{f}.rules.{j}");
                    target(r.goto, e, &rf);
                    match &mut r.when {
                        Match::ReplyIs { text } | Match::ReplyContains { text } => {
                            *text = text.trim().to_string();
                            if text.is_empty() {
                                err(e, rf, "required", "give the reply to compare with".into());
                            }
                        }
                        Match::Deal { condition: c } => condition(c, rf, k, e),
                    }
                }
                if let Some(to) = otherwise {
                    target(*to, e, &f);
                }
            }
            BotStep::Act { action: a } => action(a, f, None, k, e),
            BotStep::Jump { to } => target(*to, e, &f),
            BotStep::Stop => {}
        }
    }
    if errors.is_empty()
        && let Some(cycle) = loop_without_wait(&d.steps)
    {
        let path: Vec<String> = cycle.iter().map(|i| (i + 1).to_string()).collect();
        err(
            &mut errors,
            "steps".into(),
            "loop_without_wait",
            format!(
                "steps {} repeat for ever without waiting for a reply: add a wait or a way out",
                path.join(" → ")
            ),
        );
    }
    if errors.is_empty() {
        Ok(d)
    } else {
        Err(AppError::from_fields(errors))
    }
}

/// Where a step can lead (a wait leads nowhere here: the reply or the timeout breaks any loop).
fn next_steps(steps: &[BotStep], i: usize) -> Vec<usize> {
    let after = if i + 1 < steps.len() {
        vec![i + 1]
    } else {
        vec![]
    };
    match &steps[i] {
        BotStep::Message { .. } | BotStep::Act { .. } => after,
        BotStep::WaitReply { .. } | BotStep::Stop => vec![],
        BotStep::Jump { to } => vec![*to],
        BotStep::Branch { rules, otherwise } => {
            let mut v: Vec<usize> = rules.iter().map(|r| r.goto).collect();
            match otherwise {
                Some(o) => v.push(*o),
                None => v.extend(after),
            }
            v
        }
    }
}

/// A loop of steps with no wait in it, as the list of its steps, if there is one.
pub(crate) fn loop_without_wait(steps: &[BotStep]) -> Option<Vec<usize>> {
    // Depth-first search from every step; a step met again while on the path closes a loop.
    let n = steps.len();
    let mut state = vec![0u8; n]; // 0 new, 1 on the path, 2 done
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        steps: &[BotStep],
        i: usize,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        path.push(i);
        for j in next_steps(steps, i) {
            if j >= steps.len() {
                continue;
            }
            if state[j] == 1 {
                let from = path.iter().position(|p| *p == j).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(j);
                return Some(cycle);
            }
            if state[j] == 0
                && let Some(c) = visit(steps, j, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    for i in 0..n {
        if state[i] == 0
            && let Some(c) = visit(steps, i, &mut state, &mut path)
        {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> BotStep {
        BotStep::Message {
            text: "Hi".into(),
            buttons: vec![],
        }
    }

    #[test]
    fn loops_without_a_wait_are_found() {
        // 0 message → 1 jump 0: a loop.
        assert_eq!(
            loop_without_wait(&[msg(), BotStep::Jump { to: 0 }]),
            Some(vec![0, 1, 0])
        );
        // With a wait in the loop it is fine.
        assert_eq!(
            loop_without_wait(&[
                msg(),
                BotStep::WaitReply {
                    timeout_minutes: 5,
                    on_timeout: None
                },
                BotStep::Jump { to: 0 }
            ]),
            None
        );
        // A branch back to itself.
        let branch = BotStep::Branch {
            rules: vec![BranchRule {
                when: Match::ReplyIs { text: "yes".into() },
                goto: 1,
            }],
            otherwise: Some(2),
        };
        assert_eq!(
            loop_without_wait(&[msg(), branch.clone(), BotStep::Stop]),
            Some(vec![1, 1])
        );
        assert_eq!(
            loop_without_wait(&[msg(), BotStep::Stop, BotStep::Jump { to: 0 }]),
            None
        );
    }
}
