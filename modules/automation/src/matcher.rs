//! Starting triggers: a subscriber to deal events that records, in the same transaction as the
//! event's inbox row, one run per matching trigger (once per trigger and event), due when the
//! trigger's delay says. Runs due at once are done by the process that handled the event, right
//! after its transaction commits (`after_commit`); the job workers do the others.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use deals_api::events::{
    DealCreated, DealDeleted, DealResponsibleChanged, DealStageChanged, DealUpdated,
};
use deals_api::{Deal, DealId};
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::{AccountId, Actor, AppResult, Caller};
use messaging_api::events::MessageReceived;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::rows::{AccountTriggerRow, TRIGGER_COLUMNS};
use crate::service::{Inner, schedule};
use automation_api::{Trigger, When};

pub struct TriggerMatcher {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) const EVENTS: &[&str] = &[
    DealCreated::TYPE,
    DealStageChanged::TYPE,
    DealResponsibleChanged::TYPE,
    DealUpdated::TYPE,
    DealDeleted::TYPE,
    MessageReceived::TYPE,
];

/// A date field's value as a time: a date (its midnight, UTC), an RFC 3339 time, or unix seconds.
pub(crate) fn date_value(v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v? {
        Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .or_else(|| {
                DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }),
        Value::Number(n) => n.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)),
        _ => None,
    }
}

/// When a date-field trigger on `deal` is due, if that is still to come.
pub(crate) fn date_due(trigger: &Trigger, deal: &Deal) -> Option<DateTime<Utc>> {
    let When::DateField {
        field_id,
        offset_minutes,
    } = &trigger.when
    else {
        return None;
    };
    let at = date_value(deal.custom_fields.get(&field_id.to_string()))?
        + chrono::Duration::minutes(*offset_minutes);
    (at > Utc::now()).then_some(at)
}

/// Whether a change (DealUpdated's `after`) touches the field a trigger watches.
fn touches(after: &Value, field: &str) -> bool {
    match field {
        "name" | "price" => after.get(field).is_some(),
        "tags" => after.get("tag_ids").is_some(),
        id => after.get("custom_fields").and_then(|c| c.get(id)).is_some(),
    }
}

/// The warning of a run not started because the chain of robots behind it is too deep.
fn loop_cut(depth: i32, max_depth: i32) -> String {
    format!(
        "loop cut: this change was made by a chain of {} robots' runs (the limit is {max_depth}; [automation] max_depth)",
        depth - 1
    )
}

#[derive(QueryableByName)]
struct Depth {
    #[diesel(sql_type = Integer)]
    depth: i32,
}

struct NewRun {
    trigger: i64,
    name: String,
    run_at: DateTime<Utc>,
    state: Value,
    /// Done by this process right after the event's transaction commits, when due by then
    /// (see [`done_at_once`]); otherwise handed out by the dispatcher.
    at_once: bool,
}

impl NewRun {
    /// A run of `t`, due at `run_at`.
    fn of(t: &Trigger, run_at: DateTime<Utc>, state: Value) -> NewRun {
        NewRun {
            trigger: t.id.0,
            name: t.name.clone(),
            run_at,
            state,
            at_once: done_at_once(t),
        }
    }
}

/// Whether a trigger's run due now is done right after the transaction that recorded it (by
/// the process that handled the event), rather than handed out by the dispatcher: when none
/// of its actions waits on another server (an e-mail is sent while the action runs; a webhook
/// or a chat message is only queued).
fn done_at_once(t: &Trigger) -> bool {
    !t.actions
        .iter()
        .any(|a| matches!(a, automation_api::Action::SendEmail { .. }))
}

/// Most events whose runs wait in `Inner::fresh`: entries of transactions that rolled back are
/// never taken, and past this many they are dropped (their runs, if they were recorded after
/// all, are handed out by the dispatcher).
const MOST_FRESH: usize = 10_000;

/// The enabled triggers of the accounts a batch of events is about, each account's read once.
#[derive(Default)]
struct Known {
    triggers: std::collections::HashMap<i64, Vec<Trigger>>,
}

impl Known {
    /// Reads the enabled triggers of `accounts`, in one statement.
    async fn read(conn: &mut AsyncPgConnection, accounts: &[i64]) -> AppResult<Known> {
        let mut missing: Vec<i64> = accounts.to_vec();
        missing.sort_unstable();
        missing.dedup();
        let mut known = Known::default();
        let rows: Vec<AccountTriggerRow> = kernel::sql::query(format!(
            "SELECT t.account_id, {TRIGGER_COLUMNS} FROM automation.triggers t
              WHERE t.account_id = ANY($1) AND t.enabled
              ORDER BY t.id"
        ))
        .bind::<Array<BigInt>, _>(&missing)
        .load(conn)
        .await?;
        for r in rows {
            let t = r.trigger.trigger(0)?;
            known.triggers.entry(r.account_id).or_default().push(t);
        }
        Ok(known)
    }

    /// The account's enabled triggers (read before) on one of `kinds`, in `stage` when given,
    /// by id.
    fn triggers(&self, account: AccountId, stage: Option<i64>, kinds: &[&str]) -> Vec<Trigger> {
        self.triggers
            .get(&account.0)
            .into_iter()
            .flatten()
            .filter(|t| stage.is_none_or(|s| t.stage_id == s) && kinds.contains(&t.when.code()))
            .cloned()
            .collect()
    }
}

/// A run to record for an event.
struct Planned {
    account: AccountId,
    deal_id: i64,
    event_id: uuid::Uuid,
    event_type: String,
    depth: i32,
    cut: bool,
    run: NewRun,
}

impl TriggerMatcher {
    /// The deal as it is now (robots see every deal); None when it is gone.
    async fn deal(&self, account: AccountId, id: i64) -> AppResult<Option<Deal>> {
        match self
            .inner
            .deals
            .deal(Caller::system(account), DealId(id))
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.code == kernel::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How deep the chain of robots behind this event is: 1 for a person's change, one more than
    /// the run whose action caused it.
    async fn depth(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<i32> {
        let (Actor::Robot { .. }, Some(cause)) = (event.actor, event.causation_id) else {
            return Ok(1);
        };
        // A trigger's run (its command ids differ from the run's id in the last byte), or a
        // bot's run (its command ids differ from the run's id in the last two bytes).
        let (lo, hi) = crate::botrun::key_range(cause);
        let d: Option<Depth> = kernel::sql::query(
            "SELECT depth FROM automation.runs WHERE id = $1 AND account_id = $2
             UNION ALL
             SELECT depth FROM automation.bot_runs WHERE account_id = $2 AND id BETWEEN $3 AND $4
             LIMIT 1",
        )
        .bind::<SqlUuid, _>(crate::run_of(cause))
        .bind::<BigInt, _>(event.account_id.0)
        .bind::<SqlUuid, _>(lo)
        .bind::<SqlUuid, _>(hi)
        .get_result(conn)
        .await
        .optional()?;
        Ok(d.map(|d| d.depth + 1).unwrap_or(1))
    }
}

#[async_trait]
impl Subscriber for TriggerMatcher {
    fn name(&self) -> &str {
        "automation.triggers"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENTS
    }

    /// A run is recorded once per trigger and event (`ON CONFLICT (trigger_id, event_id) DO
    /// NOTHING`, and its loop warning only when the run is new), and a deleted deal's pending runs
    /// are skipped by an update that finds nothing the second time: a redelivered event adds
    /// nothing, without an inbox row per event.
    fn deduplicates_itself(&self) -> bool {
        true
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        self.handle_many(conn, &[event]).await
    }

    /// The runs due now that the events started are done at once, by this process, instead of
    /// waiting for the dispatcher to hand them out as jobs (a hop through the job queue, and
    /// its wake-ups, on the way from a stage change to its action). If this fails or the
    /// process stops first, they are still pending and the dispatcher's next look (within a
    /// quarter of a second) hands them out; a run is claimed once whoever gets to it.
    async fn after_commit(&self, events: &[EventEnvelope]) {
        let runs: Vec<(AccountId, uuid::Uuid)> = {
            let mut fresh = self
                .inner
                .fresh
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            events
                .iter()
                .filter_map(|e| fresh.remove(&e.id))
                .flatten()
                .collect()
        };
        if runs.is_empty() {
            return;
        }
        if let Err(e) = self.inner.do_runs(&runs).await {
            tracing::warn!(error = %e, runs = runs.len(), "automation: runs due now not done at once; they are handed out as jobs");
        }
    }

    /// A batch: the accounts' triggers read once, the runs of every event recorded in one
    /// statement, at most one wake-up for the dispatcher.
    async fn handle_many(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<()> {
        let accounts: Vec<i64> = events.iter().map(|e| e.account_id.0).collect();
        let known = Known::read(conn, &accounts).await?;
        let mut planned = Vec::new();
        for event in events {
            self.plan(conn, event, &known, &mut planned).await?;
        }
        self.record(conn, planned).await
    }
}

impl TriggerMatcher {
    /// The runs `event` starts, added to `planned` (a deleted deal's pending runs are skipped
    /// here and now).
    async fn plan(
        &self,
        conn: &mut AsyncPgConnection,
        event: &EventEnvelope,
        known: &Known,
        planned: &mut Vec<Planned>,
    ) -> AppResult<()> {
        let account = event.account_id;
        let now = Utc::now();
        let s = &self.inner.settings;
        let mut runs: Vec<NewRun> = Vec::new();
        let deal_id: i64;
        if event.is::<DealDeleted>() {
            let e: DealDeleted = event.decode()?;
            kernel::sql::query(
                "UPDATE automation.runs SET status = 'skipped', error = 'the deal was deleted', finished_at = now()
                  WHERE account_id = $1 AND deal_id = $2 AND status = 'pending'",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(e.deal_id.0)
            .execute(conn)
            .await?;
            return Ok(());
        } else if matches!(event.actor, Actor::System { import: true }) {
            // Records an import brought over: no robot reacts (an import of a whole account
            // would otherwise message its clients and make tasks for every deal).
            return Ok(());
        } else if event.is::<DealCreated>() || event.is::<DealStageChanged>() {
            let (id, stage, kind) = if event.is::<DealCreated>() {
                let e: DealCreated = event.decode()?;
                (e.deal_id.0, e.stage_id.0, "created")
            } else {
                let e: DealStageChanged = event.decode()?;
                (e.deal_id.0, e.to_stage_id.0, "moved_to")
            };
            deal_id = id;
            let found = known.triggers(
                account,
                Some(stage),
                &[kind, "created_or_moved", "date_field"],
            );
            if found.is_empty() {
                return Ok(());
            }
            let mut deal: Option<Option<Deal>> = None;
            for t in found {
                if let When::DateField { .. } = t.when {
                    if deal.is_none() {
                        deal = Some(self.deal(account, id).await?);
                    }
                    if let Some(at) = deal
                        .as_ref()
                        .and_then(|d| d.as_ref())
                        .and_then(|d| date_due(&t, d))
                    {
                        runs.push(NewRun::of(&t, at, json!({"date_due": at})));
                    }
                } else {
                    runs.push(NewRun::of(
                        &t,
                        schedule(&t.delay, t.working_hours, now, s),
                        json!({}),
                    ));
                }
            }
        } else if event.is::<DealResponsibleChanged>() || event.is::<DealUpdated>() {
            let (id, after) = if event.is::<DealUpdated>() {
                let e: DealUpdated = event.decode()?;
                (e.deal_id.0, Some(e.after))
            } else {
                let e: DealResponsibleChanged = event.decode()?;
                (e.deal_id.0, None)
            };
            deal_id = id;
            let kinds: &[&str] = if after.is_some() {
                &["field_changed", "date_field"]
            } else {
                &["responsible_changed"]
            };
            let found: Vec<Trigger> = known
                .triggers(account, None, kinds)
                .into_iter()
                .filter(|t| match (&t.when, &after) {
                    (When::FieldChanged { field }, Some(a)) => touches(a, field),
                    (When::DateField { field_id, .. }, Some(a)) => {
                        touches(a, &field_id.to_string())
                    }
                    (When::ResponsibleChanged, None) => true,
                    _ => false,
                })
                .collect();
            if found.is_empty() {
                return Ok(());
            }
            let Some(deal) = self.deal(account, id).await? else {
                return Ok(());
            };
            for t in found.into_iter().filter(|t| t.stage_id == deal.stage_id.0) {
                if let When::DateField { .. } = t.when {
                    if let Some(at) = date_due(&t, &deal) {
                        runs.push(NewRun::of(&t, at, json!({"date_due": at})));
                    }
                } else {
                    runs.push(NewRun::of(
                        &t,
                        schedule(&t.delay, t.working_hours, now, s),
                        json!({}),
                    ));
                }
            }
        } else if event.is::<MessageReceived>() {
            let e: MessageReceived = event.decode()?;
            let Some(id) = e.deal_id else { return Ok(()) };
            deal_id = id;
            let found = known.triggers(account, None, &["message_received"]);
            if found.is_empty() {
                return Ok(());
            }
            let Some(deal) = self.deal(account, id).await? else {
                return Ok(());
            };
            for t in found.into_iter().filter(|t| t.stage_id == deal.stage_id.0) {
                runs.push(NewRun::of(
                    &t,
                    schedule(&t.delay, t.working_hours, now, s),
                    json!({}),
                ));
            }
        } else {
            return Ok(());
        }
        if runs.is_empty() {
            return Ok(());
        }
        let depth = self.depth(conn, event).await?;
        let cut = depth > s.max_depth;
        planned.extend(runs.into_iter().map(|run| Planned {
            account,
            deal_id,
            event_id: event.id,
            event_type: event.event_type.clone(),
            depth,
            cut,
            run,
        }));
        Ok(())
    }

    /// Records the planned runs in one statement (once per trigger and event: a redelivered
    /// event adds nothing), with the loop warnings of those cut, and wakes the dispatcher when
    /// one is due now.
    async fn record(&self, conn: &mut AsyncPgConnection, planned: Vec<Planned>) -> AppResult<()> {
        if planned.is_empty() {
            return Ok(());
        }
        let max_depth = self.inner.settings.max_depth;
        let now = Utc::now();
        let n = planned.len();
        let mut ids = Vec::with_capacity(n);
        let mut accounts = Vec::with_capacity(n);
        let mut triggers = Vec::with_capacity(n);
        let mut deals = Vec::with_capacity(n);
        let mut event_ids = Vec::with_capacity(n);
        let mut event_types = Vec::with_capacity(n);
        let mut depths = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut run_ats = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut errors = Vec::with_capacity(n);
        for p in &planned {
            ids.push(crate::new_run_id());
            accounts.push(p.account.0);
            triggers.push(p.run.trigger);
            deals.push(p.deal_id);
            event_ids.push(p.event_id);
            event_types.push(p.event_type.as_str());
            depths.push(p.depth);
            statuses.push(if p.cut { "cut" } else { "pending" });
            run_ats.push(p.run.run_at);
            states.push(&p.run.state);
            errors.push(p.cut.then(|| loop_cut(p.depth, max_depth)));
        }
        #[derive(QueryableByName)]
        struct Inserted {
            #[diesel(sql_type = SqlUuid)]
            id: uuid::Uuid,
            #[diesel(sql_type = BigInt)]
            trigger_id: i64,
            #[diesel(sql_type = SqlUuid)]
            event_id: uuid::Uuid,
        }
        let inserted: Vec<Inserted> = kernel::sql::query(
            "INSERT INTO automation.runs (id, account_id, trigger_id, deal_id, event_id, event_type, depth, status,
                                          run_at, state, error, finished_at)
             SELECT i, a, t, d, e, et, dp, st, at, js, er, CASE WHEN st = 'cut' THEN now() END
               FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::uuid[], $6::text[],
                           $7::int[], $8::text[], $9::timestamptz[], $10::jsonb[], $11::text[])
                    AS x(i, a, t, d, e, et, dp, st, at, js, er)
             ON CONFLICT (trigger_id, event_id) WHERE event_id IS NOT NULL DO NOTHING
             RETURNING id, trigger_id, event_id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<BigInt>, _>(&accounts)
        .bind::<Array<BigInt>, _>(&triggers)
        .bind::<Array<BigInt>, _>(&deals)
        .bind::<Array<SqlUuid>, _>(&event_ids)
        .bind::<Array<Text>, _>(&event_types)
        .bind::<Array<Integer>, _>(&depths)
        .bind::<Array<Text>, _>(&statuses)
        .bind::<Array<Timestamptz>, _>(&run_ats)
        .bind::<Array<Jsonb>, _>(&states)
        .bind::<Array<diesel::sql_types::Nullable<Text>>, _>(&errors)
        .load(conn)
        .await?;
        // The warnings of loops cut go to the deals' timelines and the triggers' histories.
        let mut events = Vec::new();
        let mut wake = false;
        let mut at_once: std::collections::HashMap<uuid::Uuid, Vec<(AccountId, uuid::Uuid)>> =
            Default::default();
        for r in &inserted {
            let Some(p) = planned
                .iter()
                .find(|p| p.event_id == r.event_id && p.run.trigger == r.trigger_id)
            else {
                continue;
            };
            if !p.cut {
                if p.run.run_at <= now {
                    if p.run.at_once {
                        at_once
                            .entry(p.event_id)
                            .or_default()
                            .push((p.account, r.id));
                    } else {
                        wake = true;
                    }
                }
                continue;
            }
            events.push(crate::exec::finished_event(
                p.account,
                r.trigger_id,
                r.id,
                p.deal_id,
                "cut",
                Some(loop_cut(p.depth, max_depth)),
                &p.run.name,
            )?);
            tracing::warn!(
                account = p.account.0,
                deal = p.deal_id,
                depth = p.depth,
                "automation loop cut"
            );
        }
        if !events.is_empty() {
            kernel::outbox::append(conn, crate::SCHEMA, &events).await?;
        }
        if !at_once.is_empty() {
            // Replaced, not added to: an event handled again (its first transaction rolled
            // back) has new runs.
            let mut fresh = self
                .inner
                .fresh
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if fresh.len() > MOST_FRESH {
                fresh.clear();
            }
            fresh.extend(at_once);
        }
        if wake {
            crate::service::notify(conn).await?;
        }
        Ok(())
    }
}
