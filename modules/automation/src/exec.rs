//! Doing runs: the job workers take due runs and deliveries (`take_due`) and do each run's
//! actions in order, recording each step, as a robot whose every call carries the action's
//! command id (so a retried action does not act twice, and what it causes is traced to the run).

use std::time::Duration;

use activities_api::{EntityRef, NewNote, NewTask, TaskId, TaskQuery, TaskTypeId};
use automation_api::events::RunFinished;
use automation_api::*;
use chrono::{DateTime, Utc};
use deals_api::{BulkAction, Deal, DealId, DealPatch, MoveTo, StageId};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Double, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::events::EventEnvelope;
use kernel::inbox::is_permanent;
use kernel::paging::PageRequest;
use kernel::{AccountId, AppError, AppResult, Caller, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::service::Inner;

/// Attempts of a run whose actions fail in a way a retry may cure (the other modules are
/// unreachable, the database is busy); the waits double from 2 s up to an hour.
pub(crate) const MAX_RUN_ATTEMPTS: i32 = 8;

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    account_id: i64,
}

const RUNS_DUE: [&str; 2] = [
    "WITH due AS (SELECT id FROM automation.runs
                   WHERE finished_at IS NULL AND run_at <= now() AND status = 'pending'
                   ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE automation.runs r SET status = 'queued', queued_at = now() FROM due WHERE r.id = due.id
     RETURNING r.id, r.account_id",
    "WITH due AS (SELECT id FROM automation.runs
                   WHERE finished_at IS NULL AND run_at <= now() AND status IN ('queued', 'running')
                     AND queued_at < now() - make_interval(secs => $2)
                   LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE automation.runs r SET status = 'queued', queued_at = now() FROM due WHERE r.id = due.id
     RETURNING r.id, r.account_id",
];

const DELIVERIES_DUE: [&str; 2] = [
    "WITH due AS (SELECT id FROM automation.deliveries WHERE status = 'pending' AND next_at <= now()
                   ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE automation.deliveries d SET status = 'queued', queued_at = now() FROM due WHERE d.id = due.id
     RETURNING d.id, d.account_id",
    "WITH due AS (SELECT id FROM automation.deliveries WHERE status IN ('queued', 'sending')
                     AND queued_at < now() - make_interval(secs => $2)
                   LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE automation.deliveries d SET status = 'queued', queued_at = now() FROM due WHERE d.id = due.id
     RETURNING d.id, d.account_id",
];

/// Due work (the first statement), then (when `sweep`) work handed out long ago and never
/// finished.
async fn take(
    conn: &mut AsyncPgConnection,
    statements: [&str; 2],
    limit: i64,
    stale: f64,
    sweep: bool,
) -> AppResult<Vec<Taken>> {
    let mut taken: Vec<Taken> = kernel::sql::query(statements[0])
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    let left = limit - taken.len() as i64;
    if sweep && left > 0 {
        let again: Vec<Taken> = kernel::sql::query(statements[1])
            .bind::<BigInt, _>(left)
            .bind::<Double, _>(stale)
            .load(conn)
            .await?;
        taken.extend(again);
    }
    Ok(taken)
}

/// Marks up to `limit` due runs and deliveries as queued (and, when `sweep`, hands out again
/// work queued long ago and never finished), returning them.
pub(crate) async fn take_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
    requeue_after: Duration,
    sweep: bool,
) -> AppResult<Vec<Work>> {
    let stale = requeue_after.as_secs_f64();
    let runs = take(conn, RUNS_DUE, limit, stale, sweep).await?;
    let deliveries = take(conn, DELIVERIES_DUE, limit, stale, sweep).await?;
    // Bot runs due now (started, replied to, or their wait is over), leased until handed out
    // again if the job is lost.
    let bots: Vec<Taken> = kernel::sql::query(
        "WITH due AS (SELECT id FROM automation.bot_runs WHERE status IN ('running', 'waiting') AND due_at <= now()
                       ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE automation.bot_runs b SET queued_at = now(), due_at = now() + make_interval(secs => $2)
           FROM due WHERE b.id = due.id
         RETURNING b.id, b.account_id",
    )
    .bind::<BigInt, _>(limit)
    .bind::<Double, _>(stale)
    .load(conn)
    .await?;
    Ok(runs
        .into_iter()
        .map(|r| Work::Run {
            account_id: AccountId(r.account_id),
            run_id: RunId(r.id),
        })
        .chain(deliveries.into_iter().map(|d| Work::Deliver {
            account_id: AccountId(d.account_id),
            delivery_id: DeliveryId(d.id),
        }))
        .chain(bots.into_iter().map(|b| Work::Bot {
            account_id: AccountId(b.account_id),
            bot_run_id: BotRunId(b.id),
        }))
        .collect())
}

pub(crate) fn finished_event(
    account: AccountId,
    trigger: i64,
    run: Uuid,
    deal: i64,
    status: &str,
    error: Option<String>,
    name: &str,
) -> AppResult<EventEnvelope> {
    EventEnvelope::new(
        Caller::robot(account, trigger, run),
        &RunFinished {
            run_id: RunId(run),
            trigger_id: TriggerId(trigger),
            trigger_name: name.to_string(),
            deal_id: deal,
            status: status.to_string(),
            error,
        },
    )
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    account_id: i64,
    #[diesel(sql_type = BigInt)]
    trigger_id: i64,
    #[diesel(sql_type = BigInt)]
    deal_id: i64,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    run_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Jsonb)]
    steps: Value,
    #[diesel(sql_type = Jsonb)]
    state: Value,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    depth: i32,
}

#[derive(QueryableByName)]
struct StatusRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
}

/// How a run ends, to be written with others in one statement (`Inner::end_runs`).
pub(crate) struct Ending {
    account: AccountId,
    run: Uuid,
    status: RunStatus,
    error: Option<String>,
    steps: Value,
    state: Value,
    /// RunFinished, for the timeline (none for a skipped run).
    event: Option<EventEnvelope>,
}

#[allow(clippy::too_many_arguments)]
fn ending(
    account: AccountId,
    run: Uuid,
    trigger: Option<&Trigger>,
    deal: i64,
    status: RunStatus,
    error: Option<String>,
    steps: &[Step],
    state: &Value,
) -> AppResult<Ending> {
    let event = match (trigger, status) {
        (Some(t), RunStatus::Done | RunStatus::Failed) => Some(finished_event(
            account,
            t.id.0,
            run,
            deal,
            status.as_str(),
            error.clone(),
            &t.name,
        )?),
        _ => None,
    };
    Ok(Ending {
        account,
        run,
        status,
        error,
        steps: serde_json::to_value(steps).unwrap_or_default(),
        state: state.clone(),
        event,
    })
}

/// A claimed run's outcome: ended (to be written), or already written (put back to wait).
enum Outcome {
    Ended(Box<Ending>),
    Waiting(RunStatus),
}

/// `{{deal.name}}`, `{{deal.price}}`, `{{deal.id}}` and `{{stage.name}}` in a text.
pub(crate) fn render(text: &str, deal: &Deal, stage: &str) -> String {
    text.replace("{{deal.name}}", &deal.name)
        .replace("{{deal.price}}", &deal.price.to_string())
        .replace("{{deal.id}}", &deal.id.0.to_string())
        .replace("{{stage.name}}", stage)
}

/// What an action runs with: the account, the robot (a trigger or a bot) and its run.
pub(crate) struct Ctx {
    pub account: AccountId,
    /// The robot's id (as `Actor::Robot`), its name, and whether it is a trigger or a bot.
    pub robot: i64,
    pub robot_name: String,
    pub kind: &'static str,
    /// The key of round-robin rotations (a trigger's id, a bot's id negated).
    pub rotation: i64,
    /// How deep the chain of robots behind this run is (a bot it starts inherits it).
    pub depth: i32,
    pub run: Uuid,
    pub deal: Deal,
    pub state: Value,
    pub stage_name: String,
}

impl Inner {
    /// Ends runs in one transaction: their status, steps and error in one statement, and the
    /// RunFinished of those done or failed (for the timeline) in one outbox insert.
    async fn end_runs(&self, endings: &[Ending]) -> AppResult<()> {
        if endings.is_empty() {
            return Ok(());
        }
        let accounts: Vec<i64> = endings.iter().map(|e| e.account.0).collect();
        let runs: Vec<Uuid> = endings.iter().map(|e| e.run).collect();
        let statuses: Vec<&str> = endings.iter().map(|e| e.status.as_str()).collect();
        let errors: Vec<Option<&str>> = endings.iter().map(|e| e.error.as_deref()).collect();
        let steps: Vec<&Value> = endings.iter().map(|e| &e.steps).collect();
        let states: Vec<&Value> = endings.iter().map(|e| &e.state).collect();
        let events: Vec<EventEnvelope> = endings.iter().filter_map(|e| e.event.clone()).collect();
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            kernel::sql::query(
                "UPDATE automation.runs r SET status = x.st, error = x.er, steps = x.sp, state = x.js, finished_at = now()
                   FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
                        AS x(a, i, st, er, sp, js)
                  WHERE r.account_id = x.a AND r.id = x.i",
            )
            .bind::<Array<BigInt>, _>(&accounts)
            .bind::<Array<SqlUuid>, _>(&runs)
            .bind::<Array<Text>, _>(&statuses)
            .bind::<Array<Nullable<Text>>, _>(&errors)
            .bind::<Array<Jsonb>, _>(&steps)
            .bind::<Array<Jsonb>, _>(&states)
            .execute(tx)
            .await?;
            if !events.is_empty() {
                kernel::outbox::append(tx, crate::SCHEMA, &events).await?;
            }
            Ok(())
        })
        .await
    }

    async fn save_progress(
        &self,
        account: AccountId,
        run: Uuid,
        steps: &[Step],
        state: &Value,
        status: &str,
    ) -> AppResult<()> {
        let steps = serde_json::to_value(steps).unwrap_or_default();
        let mut conn = self.conn().await?;
        kernel::sql::query(
            "UPDATE automation.runs SET steps = $3, state = $4, status = $5 WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(run)
        .bind::<Jsonb, _>(&steps)
        .bind::<Jsonb, _>(state)
        .bind::<Text, _>(status)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn give_up(
        &self,
        account: AccountId,
        run: Uuid,
        reason: &str,
    ) -> AppResult<()> {
        let mut conn = self.conn().await?;
        kernel::sql::query(
            "UPDATE automation.runs SET status = 'failed', error = $3, finished_at = now()
              WHERE account_id = $1 AND id = $2 AND status IN ('pending', 'queued', 'running')",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(run)
        .bind::<Text, _>(reason)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn do_run(&self, account: AccountId, run: Uuid) -> AppResult<RunStatus> {
        let mut done = self.do_runs(&[(account, run)]).await?;
        done.pop().map(|(_, r)| r).unwrap_or(Ok(RunStatus::Skipped))
    }

    /// Does several runs (a job's): claimed in one statement, their triggers and deals read
    /// once, their actions done several at a time, and ended together in one transaction.
    /// Returns each run's status, or the error that puts it back to wait; `Err` when the runs'
    /// own rows cannot be written (the job is then retried; runs claimed and not ended are
    /// handed out again after `requeue_after`, and their actions do not act twice).
    pub(crate) async fn do_runs(
        &self,
        runs: &[(AccountId, Uuid)],
    ) -> AppResult<Vec<(Uuid, AppResult<RunStatus>)>> {
        use futures_util::StreamExt;
        const AT_ONCE: usize = 16;
        let accounts: Vec<i64> = runs.iter().map(|r| r.0.0).collect();
        let ids: Vec<Uuid> = runs.iter().map(|r| r.1).collect();
        let mut conn = self.conn().await?;
        let claimed: Vec<Claimed> = kernel::sql::query(
            "UPDATE automation.runs r SET status = 'running', attempts = r.attempts + 1, queued_at = now()
               FROM unnest($1::bigint[], $2::uuid[]) AS x(a, i)
              WHERE r.account_id = x.a AND r.id = x.i AND r.status IN ('queued', 'pending') AND r.run_at <= now()
              RETURNING r.id, r.account_id, r.trigger_id, r.deal_id, r.event_type, r.run_at, r.created_at,
                        r.steps, r.state, r.depth",
        )
        .bind::<Array<BigInt>, _>(&accounts)
        .bind::<Array<SqlUuid>, _>(&ids)
        .load(&mut conn)
        .await?;
        let mut out: Vec<(Uuid, AppResult<RunStatus>)> = Vec::with_capacity(runs.len());
        if claimed.len() < runs.len() {
            // Done already, taken by another worker, or not due: nothing to do for those.
            let left: Vec<Uuid> = ids
                .iter()
                .copied()
                .filter(|i| !claimed.iter().any(|c| c.id == *i))
                .collect();
            let found: Vec<StatusRow> = kernel::sql::query(
                "SELECT id, status FROM automation.runs WHERE account_id = ANY($1) AND id = ANY($2)",
            )
            .bind::<Array<BigInt>, _>(&accounts)
            .bind::<Array<SqlUuid>, _>(&left)
            .load(&mut conn)
            .await?;
            for id in left {
                let status = found
                    .iter()
                    .find(|f| f.id == id)
                    .map(|f| RunStatus::parse(&f.status))
                    .unwrap_or(RunStatus::Skipped);
                out.push((id, Ok(status)));
            }
        }
        if claimed.is_empty() {
            return Ok(out);
        }
        // The triggers, in one statement.
        let trigger_ids: Vec<i64> = claimed.iter().map(|c| c.trigger_id).collect();
        let rows: Vec<crate::rows::AccountTriggerRow> = kernel::sql::query(format!(
            "SELECT t.account_id, {} FROM automation.triggers t WHERE t.id = ANY($1)",
            crate::rows::TRIGGER_COLUMNS
        ))
        .bind::<Array<BigInt>, _>(&trigger_ids)
        .load(&mut conn)
        .await?;
        drop(conn);
        let mut triggers: Vec<(i64, Trigger)> = Vec::with_capacity(rows.len());
        for r in rows {
            triggers.push((r.account_id, r.trigger.trigger(0)?));
        }
        // The deals, one read per account.
        let mut by_account: Vec<i64> = claimed.iter().map(|c| c.account_id).collect();
        by_account.sort_unstable();
        by_account.dedup();
        let mut deals: std::collections::HashMap<(i64, i64), Deal> = Default::default();
        let mut unreadable: std::collections::HashMap<i64, AppError> = Default::default();
        for a in by_account {
            let mut wanted: Vec<DealId> = claimed
                .iter()
                .filter(|c| c.account_id == a)
                .map(|c| DealId(c.deal_id))
                .collect();
            wanted.sort_unstable_by_key(|d| d.0);
            wanted.dedup();
            match deals_api::deals_by_ids(&*self.deals, Caller::system(AccountId(a)), &wanted).await
            {
                Ok(found) => {
                    for d in found {
                        deals.insert((a, d.id.0), d);
                    }
                }
                Err(e) => {
                    unreadable.insert(a, e);
                }
            }
        }
        let deals = &deals;
        let unreadable = &unreadable;
        let triggers = &triggers;
        let results: Vec<(Uuid, AppResult<Outcome>)> = futures_util::stream::iter(claimed)
            .map(|c| async move {
                let id = c.id;
                let account = AccountId(c.account_id);
                let trigger = triggers
                    .iter()
                    .find(|(a, t)| *a == c.account_id && t.id.0 == c.trigger_id)
                    .map(|(_, t)| t.clone());
                let deal = match unreadable.get(&c.account_id) {
                    Some(e) => Err(e.clone()),
                    None => Ok(deals.get(&(c.account_id, c.deal_id)).cloned()),
                };
                (id, self.carry_out(account, c, trigger, deal).await)
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        let mut endings = Vec::with_capacity(results.len());
        let mut ended = Vec::with_capacity(results.len());
        for (id, r) in results {
            match r {
                Ok(Outcome::Ended(e)) => {
                    ended.push((id, e.status));
                    endings.push(*e);
                }
                Ok(Outcome::Waiting(s)) => out.push((id, Ok(s))),
                Err(e) => out.push((id, Err(e))),
            }
        }
        self.end_runs(&endings).await?;
        out.extend(ended.into_iter().map(|(id, s)| (id, Ok(s))));
        Ok(out)
    }

    /// Does a claimed run's remaining actions, with its trigger and deal as read for the batch
    /// (`None`: deleted; `Err`: could not be read now).
    async fn carry_out(
        &self,
        account: AccountId,
        c: Claimed,
        trigger: Option<Trigger>,
        deal: AppResult<Option<Deal>>,
    ) -> AppResult<Outcome> {
        let run = c.id;
        let mut steps: Vec<Step> = serde_json::from_value(c.steps).unwrap_or_default();
        // Ends the run as skipped, with the reason (before any action was done).
        let skip = |why: &str, steps: &[Step]| -> AppResult<Outcome> {
            Ok(Outcome::Ended(Box::new(ending(
                account,
                run,
                None,
                c.deal_id,
                RunStatus::Skipped,
                Some(why.to_string()),
                steps,
                &c.state,
            )?)))
        };
        let Some(trigger) = trigger else {
            return skip("the trigger was deleted", &steps);
        };
        if !trigger.enabled && steps.is_empty() {
            return skip("the trigger is switched off", &steps);
        }
        let reader = Caller::robot(account, trigger.id.0, run);
        let deal = match deal {
            Ok(Some(d)) => d,
            Ok(None) => return skip("the deal was deleted", &steps),
            Err(e) => {
                return self
                    .retry_later(account, run, &steps, &c.state, e)
                    .await
                    .map(Outcome::Waiting);
            }
        };
        let manual = c.event_type == "manual";
        let delayed = c.run_at > c.created_at + chrono::Duration::seconds(2);
        let why_not = if deal.pipeline_id.0 != trigger.pipeline_id {
            Some("the deal is in another pipeline")
        } else if delayed && !manual && deal.stage_id.0 != trigger.stage_id {
            Some("the deal left the stage before the delay was over")
        } else if let Some(due) = c.state.get("date_due") {
            // The date moved: the run scheduled from the new date does the work.
            deal_date_changed(&trigger, &deal, due).then_some("the date changed")
        } else {
            None
        };
        if let Some(why) = why_not {
            return skip(why, &steps);
        }
        if steps.is_empty() && !trigger.conditions.is_empty() {
            match self.meets(reader, &trigger.conditions, &deal).await {
                Ok(true) => {}
                Ok(false) => return skip("the deal does not meet the conditions", &steps),
                Err(e) => {
                    return self
                        .retry_later(account, run, &steps, &c.state, e)
                        .await
                        .map(Outcome::Waiting);
                }
            }
        }
        let needs_stage = trigger.actions.iter().any(|a| match a {
            Action::CreateTask { text, .. }
            | Action::AddNote { text }
            | Action::SendMessage { text } => text.contains("{{stage.name}}"),
            _ => false,
        });
        let stage_name = if needs_stage {
            self.deals
                .pipeline(reader, deal.pipeline_id)
                .await
                .ok()
                .and_then(|p| p.stages.into_iter().find(|s| s.id == deal.stage_id))
                .map(|s| s.name)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut ctx = Ctx {
            account,
            robot: trigger.id.0,
            robot_name: trigger.name.clone(),
            kind: "trigger",
            rotation: trigger.id.0,
            depth: c.depth,
            run,
            deal,
            state: c.state,
            stage_name,
        };
        let total = trigger.actions.len();
        for i in steps.len()..total {
            let action = &trigger.actions[i];
            match self
                .act(&mut ctx, crate::action_key(run, i), i, action)
                .await
            {
                Ok(detail) => {
                    steps.push(Step {
                        index: i,
                        action: action.code().into(),
                        ok: true,
                        detail,
                        at: Utc::now(),
                    });
                    if i + 1 < total {
                        self.save_progress(account, run, &steps, &ctx.state, "running")
                            .await?;
                    }
                }
                Err(e) if is_permanent(&e) => {
                    let message = <[_]>::first(&e.fields)
                        .map(|f| format!("{}: {}", e.message, f.message))
                        .unwrap_or_else(|| e.message.clone());
                    steps.push(Step {
                        index: i,
                        action: action.code().into(),
                        ok: false,
                        detail: message.clone(),
                        at: Utc::now(),
                    });
                    let error = format!("action {} ({}) failed: {message}", i + 1, action.code());
                    return Ok(Outcome::Ended(Box::new(ending(
                        account,
                        run,
                        Some(&trigger),
                        ctx.deal.id.0,
                        RunStatus::Failed,
                        Some(error),
                        &steps,
                        &ctx.state,
                    )?)));
                }
                Err(e) => {
                    return self
                        .retry_later(account, run, &steps, &ctx.state, e)
                        .await
                        .map(Outcome::Waiting);
                }
            }
        }
        Ok(Outcome::Ended(Box::new(ending(
            account,
            run,
            Some(&trigger),
            ctx.deal.id.0,
            RunStatus::Done,
            None,
            &steps,
            &ctx.state,
        )?)))
    }

    /// Whether the deal meets all the conditions: those on its own fields here, the one on its
    /// contact's segment asked of the contacts module (for triggers and bots' branches alike).
    pub(crate) async fn meets(
        &self,
        caller: Caller,
        conditions: &[Condition],
        deal: &Deal,
    ) -> AppResult<bool> {
        let fields = if crate::check::needs_fields(conditions) {
            self.deals.custom_fields(caller).await?
        } else {
            Vec::new()
        };
        if !crate::check::holds(conditions, deal, &fields) {
            return Ok(false);
        }
        for cond in conditions {
            let Condition::ContactInSegment { segment_id } = cond else {
                continue;
            };
            let Some(contact) = deal
                .main_contact_id
                .or(<[_]>::first(&deal.contact_ids).copied())
            else {
                return Ok(false);
            };
            match self
                .contacts
                .in_segment(
                    caller,
                    contacts_api::SegmentId(*segment_id),
                    vec![contacts_api::ContactId(contact)],
                )
                .await
            {
                Ok(found) if !found.is_empty() => {}
                Ok(_) => return Ok(false),
                Err(e) if e.code == kernel::ErrorCode::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Keeps what was done and hands the error to the job (which retries with backoff).
    async fn retry_later(
        &self,
        account: AccountId,
        run: Uuid,
        steps: &[Step],
        state: &Value,
        e: AppError,
    ) -> AppResult<RunStatus> {
        // The run itself waits and retries (its own backoff, kept in the row, so a restart does
        // not lose it); after the last attempt it fails with the error.
        let steps_json = serde_json::to_value(steps).unwrap_or_default();
        let mut conn = self.conn().await?;
        #[derive(QueryableByName)]
        struct After {
            #[diesel(sql_type = Text)]
            status: String,
        }
        let after: After = kernel::sql::query(
            "UPDATE automation.runs
                SET steps = $3, state = $4,
                    status = CASE WHEN attempts >= $5 THEN 'failed' ELSE 'pending' END,
                    error = CASE WHEN attempts >= $5 THEN $6 ELSE error END,
                    finished_at = CASE WHEN attempts >= $5 THEN now() END,
                    run_at = now() + make_interval(secs => least(3600, 2 ^ attempts))
              WHERE account_id = $1 AND id = $2 RETURNING status",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<SqlUuid, _>(run)
        .bind::<Jsonb, _>(&steps_json)
        .bind::<Jsonb, _>(state)
        .bind::<diesel::sql_types::Integer, _>(MAX_RUN_ATTEMPTS)
        .bind::<Text, _>(format!("gave up after {MAX_RUN_ATTEMPTS} attempts: {e}"))
        .get_result(&mut conn)
        .await?;
        tracing::warn!(run = %run, error = %e, status = %after.status, "automation run failed; it waits and retries");
        Ok(RunStatus::parse(&after.status))
    }

    /// Does one action; Ok says what was done.
    pub(crate) async fn act(
        &self,
        ctx: &mut Ctx,
        key: Uuid,
        i: usize,
        action: &Action,
    ) -> AppResult<String> {
        let c = Caller::robot(ctx.account, ctx.robot, key);
        let deal_id = ctx.deal.id;
        match action {
            Action::CreateTask {
                task_type_id,
                text,
                due_in_minutes,
            } => {
                let task = self
                    .tasks
                    .create(
                        &self.activities,
                        c,
                        NewTask {
                            entity: Some(EntityRef::deal(deal_id.0)),
                            task_type_id: TaskTypeId(*task_type_id),
                            text: render(text, &ctx.deal, &ctx.stage_name),
                            due_at: Utc::now() + chrono::Duration::minutes(*due_in_minutes),
                            whole_day: false,
                            responsible_user_id: Some(ctx.deal.responsible_user_id),
                        },
                    )
                    .await?;
                Ok(format!("task #{} created", task.id.0))
            }
            Action::MoveTo { stage_id } => {
                if ctx.deal.stage_id.0 == *stage_id {
                    return Ok("already in the stage".into());
                }
                ctx.deal = self
                    .deals
                    .move_deal(
                        c,
                        deal_id,
                        MoveTo {
                            stage_id: StageId(*stage_id),
                            after: None,
                            loss_reason_id: None,
                        },
                    )
                    .await?;
                Ok(format!("moved to stage {stage_id}"))
            }
            Action::SetResponsible { assign, user_ids } => {
                let key = format!("assign.{i}");
                let user = match ctx.state.get(&key).and_then(Value::as_i64) {
                    Some(u) => u,
                    None => {
                        let u = self.pick_user(c, ctx, i, *assign, user_ids).await?;
                        ctx.state[&key] = json!(u);
                        u
                    }
                };
                if ctx.deal.responsible_user_id.0 == user {
                    return Ok(format!("user {user} is already responsible"));
                }
                ctx.deal = self
                    .deals
                    .update_deal(
                        c,
                        deal_id,
                        DealPatch {
                            responsible_user_id: Some(UserId(user)),
                            ..DealPatch::default()
                        },
                    )
                    .await?;
                Ok(format!("responsible user set to {user}"))
            }
            Action::SetField { field_id, value } => {
                let mut values = serde_json::Map::new();
                values.insert(field_id.to_string(), Value::String(value.clone()));
                ctx.deal = self
                    .deals
                    .update_deal(
                        c,
                        deal_id,
                        DealPatch {
                            custom_fields: Some(values),
                            ..DealPatch::default()
                        },
                    )
                    .await?;
                Ok(format!("field {field_id} set"))
            }
            Action::AddTags { tags } => {
                self.deals
                    .bulk(c, vec![deal_id], BulkAction::AddTags { tags: tags.clone() })
                    .await?;
                Ok(format!("tags added: {}", tags.join(", ")))
            }
            Action::RemoveTags { tags } => {
                self.deals
                    .bulk(
                        c,
                        vec![deal_id],
                        BulkAction::RemoveTags { tags: tags.clone() },
                    )
                    .await?;
                Ok(format!("tags removed: {}", tags.join(", ")))
            }
            Action::SendMessage { text } => {
                let Some(messaging) = &self.messaging else {
                    return Err(AppError::new(
                        kernel::ErrorCode::Validation,
                        "chat messages need the messaging module, which is not part of this build",
                    ));
                };
                let q = messaging
                    .send_to_deal(c, deal_id.0, &render(text, &ctx.deal, &ctx.stage_name), &[])
                    .await?;
                Ok(format!("message #{} queued", q.message_id))
            }
            Action::AddNote { text } => {
                let note = self
                    .activities
                    .add_note(
                        c,
                        NewNote {
                            entity: EntityRef::deal(deal_id.0),
                            note_type: "common".into(),
                            text: render(text, &ctx.deal, &ctx.stage_name),
                            call: None,
                        },
                    )
                    .await?;
                Ok(format!("note #{} added", note.id.0))
            }
            Action::CompleteTasks { result } => {
                let mut done = 0;
                loop {
                    let page = self
                        .activities
                        .tasks(
                            c,
                            &TaskQuery {
                                entity: Some(EntityRef::deal(deal_id.0)),
                                ..TaskQuery::default()
                            },
                            PageRequest::new(None, Some(250)),
                        )
                        .await?;
                    let ids: Vec<TaskId> = page.items.iter().map(|t| t.id).collect();
                    for id in &ids {
                        self.activities.complete_task(c, *id, result).await?;
                        done += 1;
                    }
                    if page.next.is_none() || ids.is_empty() {
                        break;
                    }
                }
                Ok(format!("{done} open tasks completed"))
            }
            Action::StartBot { bot_id } => {
                let mut conn = self.conn().await?;
                Ok(
                    match crate::botrun::insert_run(
                        &mut conn,
                        ctx.account,
                        *bot_id,
                        deal_id.0,
                        key,
                        ctx.depth,
                    )
                    .await?
                    {
                        Some(run) => format!("bot {bot_id} started (run {run})"),
                        None => format!("bot {bot_id} was already talking on the deal"),
                    },
                )
            }
            Action::SendEmail {
                to,
                address,
                subject,
                body,
            } => {
                let key_name = format!("email.{i}");
                if let Some(sent) = ctx.state.get(&key_name).and_then(Value::as_str) {
                    return Ok(format!("e-mail already sent to {sent}"));
                }
                let Some(mailer) = &self.mailer else {
                    return Err(AppError::validation(
                        "smtp_url",
                        "unavailable",
                        "no SMTP server is configured ([automation] smtp_url)",
                    ));
                };
                let rcpt = match to {
                    EmailTo::Address => address.clone(),
                    EmailTo::Responsible => {
                        self.accounts
                            .user(c, ctx.deal.responsible_user_id)
                            .await?
                            .email
                    }
                    EmailTo::Contact => {
                        let Some(id) = ctx
                            .deal
                            .main_contact_id
                            .or(<[_]>::first(&ctx.deal.contact_ids).copied())
                        else {
                            return Err(AppError::validation(
                                "to",
                                "no_contact",
                                "the deal has no contact",
                            ));
                        };
                        let contact = self
                            .contacts
                            .contact(c, contacts_api::ContactId(id))
                            .await?;
                        match <[_]>::first(&contact.emails) {
                            Some(e) => e.email.clone(),
                            None => {
                                return Err(AppError::validation(
                                    "to",
                                    "no_email",
                                    "the deal's contact has no e-mail",
                                ));
                            }
                        }
                    }
                };
                let bad = |what: &str, e: String| {
                    AppError::validation("to", "invalid_email", &format!("{what}: {e}"))
                };
                let message =
                    lettre::Message::builder()
                        .from(self.settings.email_from.parse().map_err(
                            |e: lettre::address::AddressError| bad("from", e.to_string()),
                        )?)
                        .to(rcpt.parse().map_err(|e: lettre::address::AddressError| {
                            bad(&rcpt, e.to_string())
                        })?)
                        .subject(render(subject, &ctx.deal, &ctx.stage_name))
                        // The same id on every attempt: a receiver can drop a repeated message.
                        .message_id(Some(format!("<{key}@voronka>")))
                        .header(lettre::message::header::ContentType::TEXT_PLAIN)
                        .body(render(body, &ctx.deal, &ctx.stage_name))
                        .map_err(|e| bad("message", e.to_string()))?;
                use lettre::AsyncTransport;
                match mailer.send(message).await {
                    Ok(_) => {
                        ctx.state[&key_name] = json!(rcpt);
                        Ok(format!("e-mail sent to {rcpt}"))
                    }
                    Err(e) if e.is_permanent() => Err(AppError::validation(
                        "to",
                        "refused",
                        &format!("the SMTP server refused the e-mail to {rcpt}: {e}"),
                    )),
                    Err(e) => Err(AppError::new(
                        kernel::ErrorCode::Unavailable,
                        format!("SMTP: {e}"),
                    )),
                }
            }
            Action::Webhook { url } => {
                let body = json!({
                    "event": "trigger",
                    "account_id": ctx.account.0,
                    "run_id": ctx.run,
                    "robot": {"kind": ctx.kind, "id": ctx.robot, "name": ctx.robot_name},
                    "deal": ctx.deal,
                    "occurred_at": Utc::now().timestamp(),
                })
                .to_string();
                let id = self
                    .queue_delivery(
                        ctx.account,
                        None,
                        Some(ctx.run),
                        None,
                        &format!("{}.{i}", ctx.kind),
                        url,
                        "application/json",
                        &body,
                        "",
                    )
                    .await?;
                Ok(format!("webhook delivery {id} queued"))
            }
        }
    }

    async fn pick_user(
        &self,
        c: Caller,
        ctx: &Ctx,
        i: usize,
        assign: Assign,
        users: &[i64],
    ) -> AppResult<i64> {
        let first = users
            .first()
            .copied()
            .ok_or_else(|| AppError::validation("user_ids", "required", "no users to assign"))?;
        match assign {
            Assign::Fixed => Ok(first),
            Assign::RoundRobin => {
                #[derive(QueryableByName)]
                struct Next {
                    #[diesel(sql_type = BigInt)]
                    n: i64,
                }
                let mut conn = self.conn().await?;
                let next: Next = kernel::sql::query(
                    "INSERT INTO automation.rotations (trigger_id, action_index, next_index) VALUES ($1, $2, 1)
                     ON CONFLICT (trigger_id, action_index)
                     DO UPDATE SET next_index = automation.rotations.next_index + 1
                     RETURNING next_index - 1 AS n",
                )
                .bind::<BigInt, _>(ctx.rotation)
                .bind::<diesel::sql_types::Integer, _>(i as i32)
                .get_result(&mut conn)
                .await?;
                Ok(users[(next.n.rem_euclid(users.len() as i64)) as usize])
            }
            Assign::LeastLoaded => {
                let counts = self
                    .deals
                    .open_deal_counts(c, users.iter().map(|u| UserId(*u)).collect())
                    .await?;
                let load = |u: i64| {
                    counts
                        .iter()
                        .find(|(id, _)| id.0 == u)
                        .map(|(_, n)| *n)
                        .unwrap_or(0)
                };
                Ok(users
                    .iter()
                    .copied()
                    .min_by_key(|u| load(*u))
                    .unwrap_or(first))
            }
        }
    }
}

/// Whether the date a run was scheduled from is no longer the deal's.
fn deal_date_changed(trigger: &Trigger, deal: &Deal, due: &Value) -> bool {
    let scheduled = serde_json::from_value::<DateTime<Utc>>(due.clone()).ok();
    let When::DateField {
        field_id,
        offset_minutes,
    } = &trigger.when
    else {
        return false;
    };
    let now = crate::matcher::date_value(deal.custom_fields.get(&field_id.to_string()))
        .map(|d| d + chrono::Duration::minutes(*offset_minutes));
    scheduled != now
}
