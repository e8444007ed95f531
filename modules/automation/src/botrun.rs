//! Bots at work: a run per bot and deal that goes through the steps — messages through the
//! messaging module, waits for the client's reply (or the timeout), branches, actions — keeping
//! its step, the last reply and what it did. The job workers advance it (`advance`); a reply
//! (`BotReplies`) or the end of a wait makes it due again.

use std::sync::Arc;

use async_trait::async_trait;
use automation_api::*;
use chrono::{DateTime, Utc};
use deals_api::DealId;
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::{Subscriber, is_permanent};
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode};
use messaging_api::events::MessageReceived;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::exec::Ctx;
use crate::service::{Inner, notify};

/// Steps one advance may take without waiting (the checks on save forbid endless loops; this
/// is the belt to those braces).
const MAX_STEPS_AT_ONCE: usize = 200;

/// The ids a bot run's command ids can have (all but its last two bytes are the run's).
pub(crate) fn key_range(key: Uuid) -> (Uuid, Uuid) {
    let (mut lo, mut hi) = (*key.as_bytes(), *key.as_bytes());
    lo[14] = 0;
    lo[15] = 0;
    hi[14] = 0xff;
    hi[15] = 0xff;
    (Uuid::from_bytes(lo), Uuid::from_bytes(hi))
}

/// The command id of a bot run's `n`-th thing done (a message, an action): the same on a retry.
fn bot_key(run: Uuid, n: usize) -> Uuid {
    let mut b = *run.as_bytes();
    let n = (n as u16).wrapping_add(1).to_be_bytes();
    b[14] = n[0];
    b[15] = n[1];
    Uuid::from_bytes(b)
}

#[derive(QueryableByName)]
struct RunRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    bot_id: i64,
    #[diesel(sql_type = Text)]
    bot_name: String,
    #[diesel(sql_type = BigInt)]
    deal_id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    step: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    due_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    reply: Option<String>,
    #[diesel(sql_type = Jsonb)]
    history: Value,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

const RUN_COLUMNS: &str = "r.id, r.bot_id, coalesce(b.name, '') AS bot_name, r.deal_id, r.status, r.step, r.due_at, \
     r.reply, r.history, r.error, r.created_at, r.updated_at";

impl RunRow {
    fn run(self) -> BotRun {
        let status = BotRunStatus::parse(&self.status);
        BotRun {
            id: BotRunId(self.id),
            bot_id: BotId(self.bot_id),
            bot_name: self.bot_name,
            deal_id: self.deal_id,
            status,
            step: self.step.max(0) as usize,
            waiting_until: (status == BotRunStatus::Waiting)
                .then_some(self.due_at)
                .flatten(),
            reply: self.reply,
            history: serde_json::from_value(self.history).unwrap_or_default(),
            error: self.error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Where a run is while a worker advances it.
struct At {
    account: AccountId,
    id: Uuid,
    step: usize,
    history: Vec<BotEvent>,
}

fn event(step: usize, kind: &str, detail: impl Into<String>) -> BotEvent {
    BotEvent {
        at: Utc::now(),
        step,
        kind: kind.into(),
        detail: detail.into(),
    }
}

/// Records a new run of `bot` on `deal`, due now; None when the bot already talks on the deal
/// (or this id was recorded before).
pub(crate) async fn insert_run(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    bot: i64,
    deal: i64,
    id: Uuid,
    depth: i32,
) -> AppResult<Option<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let row: Option<Id> = kernel::sql::query(
        "INSERT INTO automation.bot_runs (id, account_id, bot_id, deal_id, status, due_at, depth)
         SELECT $1, $2, $3, $4, 'running', now(), $5
          WHERE EXISTS (SELECT 1 FROM automation.bots WHERE account_id = $2 AND id = $3)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(account.0)
    .bind::<BigInt, _>(bot)
    .bind::<BigInt, _>(deal)
    .bind::<Integer, _>(depth)
    .get_result(conn)
    .await
    .optional()?;
    if row.is_some() {
        notify(conn).await?;
    }
    Ok(row.map(|r| r.id))
}

impl Inner {
    async fn load_run(&self, account: AccountId, id: Uuid) -> AppResult<Option<BotRun>> {
        let mut conn = self.conn().await?;
        let row: Option<RunRow> = kernel::sql::query(format!(
            "SELECT {RUN_COLUMNS} FROM automation.bot_runs r
               LEFT JOIN automation.bots b ON b.account_id = r.account_id AND b.id = r.bot_id
              WHERE r.account_id = $1 AND r.id = $2"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?;
        Ok(row.map(RunRow::run))
    }

    async fn may_change(&self, caller: Caller, deal: i64) -> AppResult<()> {
        if self
            .deals
            .visible_deals(caller, vec![DealId(deal)])
            .await?
            .is_empty()
        {
            return Err(AppError::not_found("deal"));
        }
        Ok(())
    }

    pub(crate) async fn start_bot(
        &self,
        caller: Caller,
        bot: BotId,
        deal: DealId,
    ) -> AppResult<BotRun> {
        self.may_change(caller, deal.0).await?;
        let b = self.bot(caller, bot).await?;
        let mut conn = self.conn().await?;
        let id = insert_run(
            &mut conn,
            caller.account_id,
            b.id.0,
            deal.0,
            crate::new_run_id(),
            1,
        )
        .await?
        .ok_or_else(|| {
            AppError::validation(
                "bot",
                "already_running",
                "this bot is already talking on the deal",
            )
        })?;
        self.load_run(caller.account_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("bot run"))
    }

    pub(crate) async fn bot_runs(&self, caller: Caller, deal: DealId) -> AppResult<Vec<BotRun>> {
        self.may_change(caller, deal.0).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<RunRow> = kernel::sql::query(format!(
            "SELECT {RUN_COLUMNS} FROM automation.bot_runs r
               LEFT JOIN automation.bots b ON b.account_id = r.account_id AND b.id = r.bot_id
              WHERE r.account_id = $1 AND r.deal_id = $2
              ORDER BY r.created_at DESC LIMIT 50"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(deal.0)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(RunRow::run).collect())
    }

    pub(crate) async fn stop_bot_run(&self, caller: Caller, id: BotRunId) -> AppResult<BotRun> {
        let run = self
            .load_run(caller.account_id, id.0)
            .await?
            .ok_or_else(|| AppError::not_found("bot run"))?;
        self.may_change(caller, run.deal_id).await?;
        let who = caller
            .actor
            .user_id()
            .map(|u| format!("user {}", u.0))
            .unwrap_or_else(|| "the system".into());
        let mut conn = self.conn().await?;
        let n = kernel::sql::query(
            "UPDATE automation.bot_runs
                SET status = 'stopped', due_at = NULL, updated_at = now(),
                    history = history || jsonb_build_array($3::jsonb)
              WHERE account_id = $1 AND id = $2 AND status IN ('running', 'waiting')",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<SqlUuid, _>(id.0)
        .bind::<Jsonb, _>(json!(event(
            run.step,
            "stopped",
            format!("stopped by {who}")
        )))
        .execute(&mut conn)
        .await?;
        if n == 0 {
            return Err(AppError::validation(
                "status",
                "not_running",
                "this bot run has ended",
            ));
        }
        self.load_run(caller.account_id, id.0)
            .await?
            .ok_or_else(|| AppError::not_found("bot run"))
    }

    /// Writes where a run is: its status, its step and what it did, the reply to keep, and when
    /// it is due.
    async fn save_at(
        &self,
        at: &At,
        status: BotRunStatus,
        reply: Option<&str>,
        due_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> AppResult<BotRunStatus> {
        let mut conn = self.conn().await?;
        kernel::sql::query(
            "UPDATE automation.bot_runs
                SET status = $3, step = $4, reply = $5, due_at = $6, history = $7, error = $8,
                    queued_at = NULL, updated_at = now()
              WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(at.account.0)
        .bind::<SqlUuid, _>(at.id)
        .bind::<Text, _>(status.as_str())
        .bind::<Integer, _>(at.step as i32)
        .bind::<Nullable<Text>, _>(reply)
        .bind::<Nullable<Timestamptz>, _>(due_at)
        .bind::<Jsonb, _>(serde_json::to_value(&at.history).unwrap_or_default())
        .bind::<Nullable<Text>, _>(error)
        .execute(&mut conn)
        .await?;
        Ok(status)
    }

    /// Ends the run with `kind` and `detail` as the last thing it did.
    async fn end(&self, at: &mut At, kind: &str, detail: &str) -> AppResult<BotRunStatus> {
        at.history.push(event(at.step, kind, detail));
        self.save_at(at, BotRunStatus::Done, None, None, None).await
    }

    /// Ends the run as failed at its step, saying why in its history and as its error.
    async fn fail(&self, at: &mut At, why: &str) -> AppResult<BotRunStatus> {
        at.history.push(event(at.step, "failed", why));
        self.save_at(at, BotRunStatus::Failed, None, None, Some(why))
            .await
    }

    pub(crate) async fn advance(&self, account: AccountId, id: Uuid) -> AppResult<BotRunStatus> {
        #[derive(QueryableByName)]
        struct Taken {
            #[diesel(sql_type = Text)]
            was: String,
            #[diesel(sql_type = Integer)]
            depth: i32,
        }
        let mut conn = self.conn().await?;
        // Taken by this worker: handed out (queued_at set) and still going or waiting.
        let taken: Option<Taken> = kernel::sql::query(
            "UPDATE automation.bot_runs r SET queued_at = NULL, due_at = NULL, status = 'running'
               FROM (SELECT id, status FROM automation.bot_runs
                      WHERE account_id = $1 AND id = $2 AND status IN ('running', 'waiting')
                        AND queued_at IS NOT NULL FOR UPDATE) old
              WHERE r.id = old.id RETURNING old.status AS was, r.depth",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?;
        drop(conn);
        let Some(taken) = taken else {
            return Ok(self
                .load_run(account, id)
                .await?
                .map(|r| r.status)
                .unwrap_or(BotRunStatus::Failed));
        };
        let run = self
            .load_run(account, id)
            .await?
            .ok_or_else(|| AppError::not_found("bot run"))?;
        let mut at = At {
            account,
            id,
            step: run.step,
            history: run.history,
        };
        let mut reply = run.reply;
        let caller = Caller::robot(account, run.bot_id.0, id);
        let bot = match self.bot(caller, run.bot_id).await {
            Ok(b) => b,
            Err(e) if e.code == ErrorCode::NotFound => {
                let why = Some("the bot was deleted");
                return self
                    .save_at(&at, BotRunStatus::Failed, None, None, why)
                    .await;
            }
            Err(e) => return self.later(account, id, e).await,
        };
        let deal = match self.deals.deal(caller, DealId(run.deal_id)).await {
            Ok(d) => d,
            Err(e) if e.code == ErrorCode::NotFound => {
                let why = Some("the deal was deleted");
                return self
                    .save_at(&at, BotRunStatus::Failed, None, None, why)
                    .await;
            }
            Err(e) => return self.later(account, id, e).await,
        };
        let mut ctx = Ctx {
            account,
            robot: bot.id.0,
            robot_name: bot.name.clone(),
            kind: "bot",
            rotation: -bot.id.0,
            depth: taken.depth,
            run: id,
            deal,
            state: json!({}),
            stage_name: String::new(),
        };
        // A wait that was handed out while still waiting has timed out.
        if taken.was == "waiting" {
            match bot.steps.get(at.step) {
                Some(BotStep::WaitReply {
                    on_timeout: Some(to),
                    ..
                }) => {
                    let detail = format!("no reply; on to step {}", to + 1);
                    at.history.push(event(at.step, "timeout", detail));
                    at.step = *to;
                }
                _ => return self.end(&mut at, "timeout", "no reply; the bot ends").await,
            }
        }
        for _ in 0..MAX_STEPS_AT_ONCE {
            let Some(s) = bot.steps.get(at.step).cloned() else {
                at.history
                    .push(event(at.step, "done", "the last step is done"));
                return self
                    .save_at(&at, BotRunStatus::Done, reply.as_deref(), None, None)
                    .await;
            };
            let key = bot_key(id, at.history.len());
            let step = at.step;
            match s {
                BotStep::Message { text, buttons } => {
                    let Some(messaging) = &self.messaging else {
                        let why = "chat messages need the messaging module, which is not part of this build";
                        return self.fail(&mut at, why).await;
                    };
                    let text = crate::exec::render(&text, &ctx.deal, "");
                    let to = Caller::robot(account, bot.id.0, key);
                    match messaging
                        .send_to_deal(to, ctx.deal.id.0, &text, &buttons)
                        .await
                    {
                        Ok(q) => {
                            let detail = format!("message #{} queued: {text}", q.message_id);
                            at.history.push(event(step, "message", detail));
                            at.step += 1;
                        }
                        Err(e) if is_permanent(&e) => return self.fail(&mut at, &e.message).await,
                        Err(e) => return self.keep_and_later(&at, reply.as_deref(), e).await,
                    }
                }
                BotStep::WaitReply {
                    timeout_minutes, ..
                } => {
                    let replied = taken.was == "running"
                        && at
                            .history
                            .last()
                            .is_some_and(|h| h.kind == "waiting" && h.step == step);
                    match reply.clone() {
                        Some(r) if replied => {
                            at.history.push(event(step, "reply", r));
                            at.step += 1;
                        }
                        _ => {
                            let until = Utc::now() + chrono::Duration::minutes(timeout_minutes);
                            let detail =
                                format!("for a reply until {}", until.format("%Y-%m-%d %H:%M UTC"));
                            at.history.push(event(step, "waiting", detail));
                            return self
                                .save_at(&at, BotRunStatus::Waiting, None, Some(until), None)
                                .await;
                        }
                    }
                }
                BotStep::Branch { rules, otherwise } => {
                    let said = reply.as_deref().unwrap_or_default().trim().to_lowercase();
                    let mut hit = None;
                    for r in &rules {
                        let matched = match &r.when {
                            Match::ReplyIs { text } => said == text.trim().to_lowercase(),
                            Match::ReplyContains { text } => {
                                said.contains(&text.trim().to_lowercase())
                            }
                            Match::Deal { condition } => {
                                let one = std::slice::from_ref(condition);
                                match self.meets(caller, one, &ctx.deal).await {
                                    Ok(m) => m,
                                    Err(e) => {
                                        return self.keep_and_later(&at, reply.as_deref(), e).await;
                                    }
                                }
                            }
                        };
                        if matched {
                            hit = Some(r);
                            break;
                        }
                    }
                    let to = hit.map(|r| r.goto).or(otherwise).unwrap_or(step + 1);
                    let detail = match hit {
                        Some(_) => format!("matched; on to step {}", to + 1),
                        None => format!("no rule matched; on to step {}", to + 1),
                    };
                    at.history.push(event(step, "branch", detail));
                    at.step = to;
                }
                BotStep::Act { action } => match self.act(&mut ctx, key, step, &action).await {
                    Ok(detail) => {
                        at.history.push(event(step, action.code(), detail));
                        at.step += 1;
                    }
                    Err(e) if is_permanent(&e) => {
                        let why = <[_]>::first(&e.fields)
                            .map(|f| format!("{}: {}", e.message, f.message))
                            .unwrap_or_else(|| e.message.clone());
                        return self.fail(&mut at, &why).await;
                    }
                    Err(e) => return self.keep_and_later(&at, reply.as_deref(), e).await,
                },
                BotStep::Jump { to } => {
                    at.history
                        .push(event(step, "jump", format!("to step {}", to + 1)));
                    at.step = to;
                }
                BotStep::Stop => return self.end(&mut at, "stop", "the bot ends").await,
            }
            // A reply is used by the steps right after the wait, then forgotten.
            if !matches!(bot.steps.get(at.step), Some(BotStep::Branch { .. })) {
                reply = None;
            }
        }
        let why = Some("too many steps without a wait");
        self.save_at(&at, BotRunStatus::Failed, None, None, why)
            .await
    }

    /// Tries again in a while (the run stays where it is).
    async fn later(&self, account: AccountId, id: Uuid, e: AppError) -> AppResult<BotRunStatus> {
        let mut conn = self.conn().await?;
        kernel::sql::query(
            "UPDATE automation.bot_runs SET due_at = now() + interval '30 seconds', queued_at = NULL
              WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(id)
        .execute(&mut conn)
        .await?;
        tracing::warn!(bot_run = %id, error = %e, "bot run will try again");
        Ok(BotRunStatus::Running)
    }

    /// Keeps where the run got to (and the reply it still needs), and tries again in a while.
    async fn keep_and_later(
        &self,
        at: &At,
        reply: Option<&str>,
        e: AppError,
    ) -> AppResult<BotRunStatus> {
        self.save_at(at, BotRunStatus::Running, reply, None, None)
            .await?;
        self.later(at.account, at.id, e).await
    }
}

/// Hands the client's reply to the bots waiting on the deal, which go on at once.
pub struct BotReplies {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) const REPLY_EVENTS: &[&str] = &[MessageReceived::TYPE];

#[async_trait]
impl Subscriber for BotReplies {
    fn name(&self) -> &str {
        "automation.bot_replies"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        REPLY_EVENTS
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        let _ = &self.inner;
        let m: MessageReceived = event.decode()?;
        let Some(deal) = m.deal_id else {
            return Ok(());
        };
        let n = kernel::sql::query(
            "UPDATE automation.bot_runs SET reply = $3, status = 'running', due_at = now(), updated_at = now()
              WHERE account_id = $1 AND deal_id = $2 AND status = 'waiting'",
        )
        .bind::<BigInt, _>(event.account_id.0)
        .bind::<BigInt, _>(deal)
        .bind::<Text, _>(&m.text)
        .execute(conn)
        .await?;
        if n > 0 {
            notify(conn).await?;
        }
        Ok(())
    }
}
