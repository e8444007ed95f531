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
    let row: Option<Id> = diesel::sql_query(
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
        let row: Option<RunRow> = diesel::sql_query(format!(
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
        let rows: Vec<RunRow> = diesel::sql_query(format!(
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
        let n = diesel::sql_query(
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

    /// Writes where a run is: its status, step, last reply, when it is due, what it did.
    #[allow(clippy::too_many_arguments)]
    async fn save_run(
        &self,
        account: AccountId,
        id: Uuid,
        status: BotRunStatus,
        step: usize,
        reply: Option<&str>,
        due_at: Option<DateTime<Utc>>,
        history: &[BotEvent],
        error: Option<&str>,
    ) -> AppResult<BotRunStatus> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "UPDATE automation.bot_runs
                SET status = $3, step = $4, reply = $5, due_at = $6, history = $7, error = $8,
                    queued_at = NULL, updated_at = now()
              WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(status.as_str())
        .bind::<Integer, _>(step as i32)
        .bind::<Nullable<Text>, _>(reply)
        .bind::<Nullable<Timestamptz>, _>(due_at)
        .bind::<Jsonb, _>(serde_json::to_value(history).unwrap_or_default())
        .bind::<Nullable<Text>, _>(error)
        .execute(&mut conn)
        .await?;
        Ok(status)
    }

    pub(crate) async fn advance(&self, account: AccountId, id: Uuid) -> AppResult<BotRunStatus> {
        #[derive(QueryableByName)]
        struct Was {
            #[diesel(sql_type = Text)]
            was: String,
        }
        let mut conn = self.conn().await?;
        // Taken by this worker: handed out (queued_at set) and still going or waiting.
        let was: Option<Was> = diesel::sql_query(
            "UPDATE automation.bot_runs r SET queued_at = NULL, due_at = NULL, status = 'running'
               FROM (SELECT id, status FROM automation.bot_runs
                      WHERE account_id = $1 AND id = $2 AND status IN ('running', 'waiting')
                        AND queued_at IS NOT NULL FOR UPDATE) old
              WHERE r.id = old.id RETURNING old.status AS was",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?;
        drop(conn);
        let Some(was) = was else {
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
        let run_depth = {
            #[derive(QueryableByName)]
            struct D {
                #[diesel(sql_type = Integer)]
                depth: i32,
            }
            let mut conn = self.conn().await?;
            diesel::sql_query(
                "SELECT depth FROM automation.bot_runs WHERE account_id = $1 AND id = $2",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<SqlUuid, _>(id)
            .get_result::<D>(&mut conn)
            .await?
            .depth
        };
        let mut history = run.history.clone();
        let mut step = run.step;
        let mut reply = run.reply.clone();
        let caller = Caller::robot(account, run.bot_id.0, id);
        let bot = match self.bot(caller, run.bot_id).await {
            Ok(b) => b,
            Err(e) if e.code == ErrorCode::NotFound => {
                let msg = "the bot was deleted";
                return self
                    .save_run(
                        account,
                        id,
                        BotRunStatus::Failed,
                        step,
                        None,
                        None,
                        &history,
                        Some(msg),
                    )
                    .await;
            }
            Err(e) => return self.later(account, id, e).await,
        };
        let deal = match self.deals.deal(caller, DealId(run.deal_id)).await {
            Ok(d) => d,
            Err(e) if e.code == ErrorCode::NotFound => {
                let msg = "the deal was deleted";
                return self
                    .save_run(
                        account,
                        id,
                        BotRunStatus::Failed,
                        step,
                        None,
                        None,
                        &history,
                        Some(msg),
                    )
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
            depth: run_depth,
            run: id,
            deal,
            state: json!({}),
            stage_name: String::new(),
        };
        // A wait that was handed out while still waiting has timed out.
        if was.was == "waiting" {
            let on_timeout = match bot.steps.get(step) {
                Some(BotStep::WaitReply { on_timeout, .. }) => *on_timeout,
                _ => None,
            };
            match on_timeout {
                Some(to) => {
                    history.push(event(
                        step,
                        "timeout",
                        format!("no reply; on to step {}", to + 1),
                    ));
                    step = to;
                }
                None => {
                    history.push(event(step, "timeout", "no reply; the bot ends"));
                    return self
                        .save_run(
                            account,
                            id,
                            BotRunStatus::Done,
                            step,
                            None,
                            None,
                            &history,
                            None,
                        )
                        .await;
                }
            }
        }
        for _ in 0..MAX_STEPS_AT_ONCE {
            let Some(s) = bot.steps.get(step).cloned() else {
                history.push(event(step, "done", "the last step is done"));
                return self
                    .save_run(
                        account,
                        id,
                        BotRunStatus::Done,
                        step,
                        reply.as_deref(),
                        None,
                        &history,
                        None,
                    )
                    .await;
            };
            let key = bot_key(id, history.len());
            match s {
                BotStep::Message { text, buttons } => {
                    let Some(messaging) = &self.messaging else {
                        let msg = "chat messages need the messaging module, which is not part of this build";
                        history.push(event(step, "failed", msg));
                        return self
                            .save_run(
                                account,
                                id,
                                BotRunStatus::Failed,
                                step,
                                None,
                                None,
                                &history,
                                Some(msg),
                            )
                            .await;
                    };
                    let text = crate::exec::render(&text, &ctx.deal, "");
                    match messaging
                        .send_to_deal(
                            Caller::robot(account, bot.id.0, key),
                            ctx.deal.id.0,
                            &text,
                            &buttons,
                        )
                        .await
                    {
                        Ok(q) => {
                            history.push(event(
                                step,
                                "message",
                                format!("message #{} queued: {text}", q.message_id),
                            ));
                            step += 1;
                        }
                        Err(e) if is_permanent(&e) => {
                            history.push(event(step, "failed", e.message.clone()));
                            return self
                                .save_run(
                                    account,
                                    id,
                                    BotRunStatus::Failed,
                                    step,
                                    None,
                                    None,
                                    &history,
                                    Some(&e.message),
                                )
                                .await;
                        }
                        Err(e) => {
                            return self
                                .keep_and_later(account, id, step, reply.as_deref(), &history, e)
                                .await;
                        }
                    }
                }
                BotStep::WaitReply {
                    timeout_minutes, ..
                } => {
                    if was.was == "running"
                        && reply.is_some()
                        && history
                            .last()
                            .is_some_and(|h| h.kind == "waiting" && h.step == step)
                    {
                        let r = reply.clone().unwrap_or_default();
                        history.push(event(step, "reply", r));
                        step += 1;
                    } else {
                        let until = Utc::now() + chrono::Duration::minutes(timeout_minutes);
                        history.push(event(
                            step,
                            "waiting",
                            format!("for a reply until {}", until.format("%Y-%m-%d %H:%M UTC")),
                        ));
                        return self
                            .save_run(
                                account,
                                id,
                                BotRunStatus::Waiting,
                                step,
                                None,
                                Some(until),
                                &history,
                                None,
                            )
                            .await;
                    }
                }
                BotStep::Branch { rules, otherwise } => {
                    let said = reply.as_deref().unwrap_or_default().trim().to_lowercase();
                    let fields = if rules.iter().any(|r| matches!(&r.when, Match::Deal { condition } if crate::check::needs_fields(std::slice::from_ref(condition)))) {
                        match self.deals.custom_fields(caller).await {
                            Ok(f) => f,
                            Err(e) => return self.keep_and_later(account, id, step, reply.as_deref(), &history, e).await,
                        }
                    } else {
                        Vec::new()
                    };
                    let hit = rules.iter().find(|r| match &r.when {
                        Match::ReplyIs { text } => said == text.trim().to_lowercase(),
                        Match::ReplyContains { text } => said.contains(&text.trim().to_lowercase()),
                        Match::Deal { condition } => {
                            crate::check::holds(std::slice::from_ref(condition), &ctx.deal, &fields)
                        }
                    });
                    let to = hit.map(|r| r.goto).or(otherwise).unwrap_or(step + 1);
                    history.push(event(
                        step,
                        "branch",
                        match hit {
                            Some(_) => format!("matched; on to step {}", to + 1),
                            None => format!("no rule matched; on to step {}", to + 1),
                        },
                    ));
                    step = to;
                }
                BotStep::Act { action } => match self.act(&mut ctx, key, step, &action).await {
                    Ok(detail) => {
                        history.push(event(step, action.code(), detail));
                        step += 1;
                    }
                    Err(e) if is_permanent(&e) => {
                        let msg = <[_]>::first(&e.fields)
                            .map(|f| format!("{}: {}", e.message, f.message))
                            .unwrap_or_else(|| e.message.clone());
                        history.push(event(step, "failed", msg.clone()));
                        return self
                            .save_run(
                                account,
                                id,
                                BotRunStatus::Failed,
                                step,
                                None,
                                None,
                                &history,
                                Some(&msg),
                            )
                            .await;
                    }
                    Err(e) => {
                        return self
                            .keep_and_later(account, id, step, reply.as_deref(), &history, e)
                            .await;
                    }
                },
                BotStep::Jump { to } => {
                    history.push(event(step, "jump", format!("to step {}", to + 1)));
                    step = to;
                }
                BotStep::Stop => {
                    history.push(event(step, "stop", "the bot ends"));
                    return self
                        .save_run(
                            account,
                            id,
                            BotRunStatus::Done,
                            step,
                            None,
                            None,
                            &history,
                            None,
                        )
                        .await;
                }
            }
            // A reply is used by the steps right after the wait, then forgotten.
            if !matches!(bot.steps.get(step), Some(BotStep::Branch { .. })) {
                reply = None;
            }
        }
        let msg = "too many steps without a wait";
        self.save_run(
            account,
            id,
            BotRunStatus::Failed,
            step,
            None,
            None,
            &history,
            Some(msg),
        )
        .await
    }

    /// Tries again in a while (the run stays where it is).
    async fn later(&self, account: AccountId, id: Uuid, e: AppError) -> AppResult<BotRunStatus> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
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

    async fn keep_and_later(
        &self,
        account: AccountId,
        id: Uuid,
        step: usize,
        reply: Option<&str>,
        history: &[BotEvent],
        e: AppError,
    ) -> AppResult<BotRunStatus> {
        self.save_run(
            account,
            id,
            BotRunStatus::Running,
            step,
            reply,
            None,
            history,
            None,
        )
        .await?;
        self.later(account, id, e).await
    }
}

/// Hands the client's reply to the bots waiting on the deal, which go on at once.
pub struct BotReplies {
    pub(crate) inner: Arc<Inner>,
}

const REPLY_EVENTS: &[&str] = &[MessageReceived::TYPE];

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
        let n = diesel::sql_query(
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
