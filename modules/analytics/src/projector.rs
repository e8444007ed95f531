//! The read model's event handler: deals, their stage stays, incoming leads' channels and the
//! activity that the reports count. At least once in, exactly once applied (the inbox), and
//! independent of the order in which one deal's events arrive (workers run side by side).

use activities_api::events::{NoteAdded, TaskCompleted, TaskCreated};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contacts_api::events::{CompanyCreated, ContactCreated};
use deals_api::events::{
    DealCreated, DealDeleted, DealResponsibleChanged, DealRestored, DealStageChanged, DealUpdated,
};
use diesel::sql_types::{
    Array, BigInt, Bool, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::{AppError, AppResult};
use messaging_api::events::{IncomingLeadCreated, MessageReceived, MessageSent};
use serde_json::Value;
use std::collections::HashMap;

pub struct Projector;

/// A CTE marking every day a deal's roll-ups count it on (its creation, closing, stays) as
/// dirty, over `$1` account and `$2` deal. Today and yesterday are never rolled up, so they are
/// not marked (and the hot "today" key is never fought over).
const MARK_DEAL: &str = "mark AS (
    INSERT INTO analytics.dirty (account_id, day)
    SELECT DISTINCT $1::bigint, (x.t AT TIME ZONE 'UTC')::date FROM (
        SELECT created_at AS t FROM analytics.deals WHERE account_id = $1 AND deal_id = $2
        UNION ALL SELECT closed_at FROM analytics.deals WHERE account_id = $1 AND deal_id = $2
        UNION ALL SELECT entered_at FROM analytics.stays WHERE account_id = $1 AND deal_id = $2
        UNION ALL SELECT left_at FROM analytics.stays WHERE account_id = $1 AND deal_id = $2
        {EXTRA}) x
    WHERE x.t < (now() AT TIME ZONE 'UTC')::date - 1
    ON CONFLICT DO NOTHING)";

/// [`MARK_DEAL`] with no other day.
fn mark_deal() -> String {
    MARK_DEAL.replace("{EXTRA}", "")
}

/// 0 open, 1 won, 2 lost: by the system stages' fixed ids.
pub(crate) fn outcome_of(stage: i64) -> i16 {
    if stage == deals_api::WON.0 {
        1
    } else if stage == deals_api::LOST.0 {
        2
    } else {
        0
    }
}

const TYPES: &[&str] = &[
    DealCreated::TYPE,
    DealStageChanged::TYPE,
    DealUpdated::TYPE,
    DealResponsibleChanged::TYPE,
    DealDeleted::TYPE,
    DealRestored::TYPE,
    IncomingLeadCreated::TYPE,
    MessageReceived::TYPE,
    MessageSent::TYPE,
    TaskCreated::TYPE,
    TaskCompleted::TYPE,
    NoteAdded::TYPE,
    ContactCreated::TYPE,
    CompanyCreated::TYPE,
];

/// A deal event that came before the deal's creation was seen (workers run side by side): retry.
fn not_yet(deal: i64) -> AppError {
    AppError::internal(format!("analytics: deal {deal} not projected yet"))
}

#[async_trait]
impl Subscriber for Projector {
    fn name(&self) -> &str {
        "analytics.facts"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        TYPES
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, e: &EventEnvelope) -> AppResult<()> {
        self.handle_many(conn, &[e]).await
    }

    /// A batch in a few statements: one deal's (or one conversation's) events are applied in
    /// the order given, in rounds (the first event of each deal, then the second…); within a
    /// round the deals created and the stage changes go in one statement each, the rest one by
    /// one; the activity rows (tasks, notes, messages…) go in one insert at the end.
    async fn handle_many(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<()> {
        let mut acts = Vec::new();
        let mut rounds: Vec<Vec<&EventEnvelope>> = Vec::new();
        let mut seen: HashMap<(i64, bool, i64), usize> = HashMap::new();
        for &e in events {
            if let Some(a) = activity_of(e)? {
                acts.push(a);
                continue;
            }
            let round = match order_key(e) {
                Some(k) => {
                    let n = seen.entry(k).or_insert(0);
                    *n += 1;
                    *n - 1
                }
                None => 0,
            };
            if rounds.len() <= round {
                rounds.resize_with(round + 1, Vec::new);
            }
            rounds[round].push(e);
        }
        for round in rounds {
            let mut created = Vec::new();
            let mut moved = Vec::new();
            let mut others = Vec::new();
            for e in round {
                if e.event_type == DealCreated::TYPE {
                    created.push((e.account_id.0, e.occurred_at, e.decode::<DealCreated>()?));
                } else if e.event_type == DealStageChanged::TYPE {
                    moved.push((
                        e.account_id.0,
                        e.occurred_at,
                        e.decode::<DealStageChanged>()?,
                    ));
                } else {
                    others.push(e);
                }
            }
            deals_created(conn, &created).await?;
            stages_changed(conn, &moved).await?;
            for e in others {
                if let Some(a) = other(conn, e).await? {
                    acts.push(a);
                }
            }
        }
        activities(conn, &acts).await
    }
}

/// What orders a batch's events: one deal's events (deal events, incoming leads) in the order
/// given, and one conversation's messages (a reply ends the client's wait).
fn order_key(e: &EventEnvelope) -> Option<(i64, bool, i64)> {
    let (conversation, field) =
        if e.event_type == MessageReceived::TYPE || e.event_type == MessageSent::TYPE {
            (true, "conversation_id")
        } else {
            (false, "deal_id")
        };
    let id = e.payload.get(field).and_then(Value::as_i64)?;
    Some((e.account_id.0, conversation, id))
}

/// A row of `analytics.activity`.
struct Act {
    event_id: uuid::Uuid,
    account_id: i64,
    kind: &'static str,
    user_id: Option<i64>,
    deal_id: Option<i64>,
    at: DateTime<Utc>,
    value: Option<i64>,
}

impl Act {
    fn of(
        e: &EventEnvelope,
        kind: &'static str,
        user_id: Option<i64>,
        deal_id: Option<i64>,
        value: Option<i64>,
    ) -> Act {
        Act {
            event_id: e.id,
            account_id: e.account_id.0,
            kind,
            user_id,
            deal_id,
            at: e.occurred_at,
            value,
        }
    }
}

/// The activity row of an event that only adds one (tasks, notes, contacts, companies).
fn activity_of(e: &EventEnvelope) -> AppResult<Option<Act>> {
    let t = e.event_type.as_str();
    let by = e.actor.user_id().map(|u| u.0);
    Ok(Some(if t == TaskCreated::TYPE {
        let task: TaskCreated = e.decode()?;
        let deal = task.entity.as_ref().and_then(deal_of);
        Act::of(
            e,
            "task_created",
            Some(task.responsible_user_id.0),
            deal,
            None,
        )
    } else if t == TaskCompleted::TYPE {
        let task: TaskCompleted = e.decode()?;
        let deal = task.entity.as_ref().and_then(deal_of);
        Act::of(e, "task_completed", by, deal, None)
    } else if t == NoteAdded::TYPE {
        let note: NoteAdded = e.decode()?;
        Act::of(e, "note_added", by, deal_of(&note.entity), None)
    } else if t == ContactCreated::TYPE {
        let c: ContactCreated = e.decode()?;
        Act::of(
            e,
            "contact_created",
            Some(c.responsible_user_id.0),
            None,
            None,
        )
    } else if t == CompanyCreated::TYPE {
        let c: CompanyCreated = e.decode()?;
        Act::of(
            e,
            "company_created",
            Some(c.responsible_user_id.0),
            None,
            None,
        )
    } else {
        return Ok(None);
    }))
}

/// The events handled one at a time; a message's activity row is returned, to be inserted with
/// the batch's.
async fn other(conn: &mut AsyncPgConnection, e: &EventEnvelope) -> AppResult<Option<Act>> {
    let account = e.account_id.0;
    let at = e.occurred_at;
    match e.event_type.as_str() {
        t if t == DealUpdated::TYPE => {
            let d: DealUpdated = e.decode()?;
            let price = d.after.get("price").and_then(Value::as_i64);
            let tags: Option<Vec<i64>> = d
                .after
                .get("tag_ids")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect());
            if price.is_none() && tags.is_none() {
                return Ok(None);
            }
            let n = kernel::sql::query(
                    "WITH s AS (UPDATE analytics.stays SET tag_ids = $4
                                WHERE $4 IS NOT NULL AND account_id = $1 AND deal_id = $2)
                     UPDATE analytics.deals SET price = coalesce($3, price), tag_ids = coalesce($4, tag_ids)
                     WHERE account_id = $1 AND deal_id = $2",
                )
                .bind::<BigInt, _>(account)
                .bind::<BigInt, _>(d.deal_id.0)
                .bind::<Nullable<BigInt>, _>(price)
                .bind::<Nullable<Array<BigInt>>, _>(tags)
                .execute(conn)
                .await?;
            found(n, d.deal_id.0).map(|_| None)
        }
        t if t == DealResponsibleChanged::TYPE => {
            let d: DealResponsibleChanged = e.decode()?;
            let n = kernel::sql::query(
                    format!("WITH s AS (UPDATE analytics.stays SET responsible_user_id = $3
                                WHERE account_id = $1 AND deal_id = $2), {mark}
                     UPDATE analytics.deals SET responsible_user_id = $3 WHERE account_id = $1 AND deal_id = $2", mark = mark_deal()),
                )
                .bind::<BigInt, _>(account)
                .bind::<BigInt, _>(d.deal_id.0)
                .bind::<BigInt, _>(d.to_user_id.0)
                .execute(conn)
                .await?;
            found(n, d.deal_id.0).map(|_| None)
        }
        t if t == DealDeleted::TYPE || t == DealRestored::TYPE => {
            let deal = e
                .payload
                .get("deal_id")
                .and_then(Value::as_i64)
                .ok_or_else(|| AppError::new(kernel::ErrorCode::BadRequest, "no deal_id"))?;
            let n = kernel::sql::query(
                    format!("WITH s AS (UPDATE analytics.stays SET deleted = $3 WHERE account_id = $1 AND deal_id = $2),
                          {mark}
                     UPDATE analytics.deals SET deleted = $3 WHERE account_id = $1 AND deal_id = $2", mark = mark_deal()),
                )
                .bind::<BigInt, _>(account)
                .bind::<BigInt, _>(deal)
                .bind::<Bool, _>(t == DealDeleted::TYPE)
                .execute(conn)
                .await?;
            found(n, deal).map(|_| None)
        }
        t if t == IncomingLeadCreated::TYPE => {
            let l: IncomingLeadCreated = e.decode()?;
            // Either order: the deal may be projected already, or will pick this up.
            kernel::sql::query(
                    format!("WITH s AS (INSERT INTO analytics.sources (account_id, deal_id, channel) VALUES ($1, $2, $3)
                                ON CONFLICT DO NOTHING),
                          st AS (UPDATE analytics.stays SET source = $3 WHERE account_id = $1 AND deal_id = $2),
                          {mark}
                     UPDATE analytics.deals SET source = $3 WHERE account_id = $1 AND deal_id = $2", mark = mark_deal()),
                )
                .bind::<BigInt, _>(account)
                .bind::<BigInt, _>(l.deal_id)
                .bind::<Text, _>(&l.channel)
                .execute(conn)
                .await?;
            Ok(None)
        }
        t if t == MessageReceived::TYPE => {
            let m: MessageReceived = e.decode()?;
            // The client waits from their first unanswered message.
            kernel::sql::query(
                    "INSERT INTO analytics.waiting (account_id, conversation_id, since) VALUES ($1, $2, $3)
                     ON CONFLICT (account_id, conversation_id) DO UPDATE SET since = least(analytics.waiting.since, excluded.since)",
                )
                .bind::<BigInt, _>(account)
                .bind::<BigInt, _>(m.conversation_id)
                .bind::<Timestamptz, _>(at)
                .execute(conn)
                .await?;
            Ok(Some(Act::of(e, "message_in", None, m.deal_id, None)))
        }
        t if t == MessageSent::TYPE => {
            let m: MessageSent = e.decode()?;
            // Only a person's answer ends the client's wait (a robot's does not).
            let waited = match m.author_user_id {
                Some(_) => answered(conn, account, m.conversation_id, at).await?,
                None => None,
            };
            Ok(Some(Act::of(
                e,
                "message_out",
                m.author_user_id,
                m.deal_id,
                waited,
            )))
        }
        _ => Ok(None),
    }
}

fn found(rows: usize, deal: i64) -> AppResult<()> {
    if rows == 0 {
        Err(not_yet(deal))
    } else {
        Ok(())
    }
}

fn deal_of(entity: &activities_api::EntityRef) -> Option<i64> {
    (entity.kind == activities_api::EntityKind::Deal).then_some(entity.id)
}

#[derive(diesel::QueryableByName)]
struct Waited {
    #[diesel(sql_type = BigInt)]
    secs: i64,
}

/// Ends a conversation's wait (if its client was waiting before `at`): the seconds waited.
async fn answered(
    conn: &mut AsyncPgConnection,
    account: i64,
    conversation: i64,
    at: DateTime<Utc>,
) -> AppResult<Option<i64>> {
    let rows: Vec<Waited> = kernel::sql::query(
        "DELETE FROM analytics.waiting WHERE account_id = $1 AND conversation_id = $2 AND since <= $3
         RETURNING greatest(0, extract(epoch FROM $3 - since))::bigint AS secs",
    )
    .bind::<BigInt, _>(account)
    .bind::<BigInt, _>(conversation)
    .bind::<Timestamptz, _>(at)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|w| w.secs))
}

/// The batch's activity rows, in one insert (each event once).
async fn activities(conn: &mut AsyncPgConnection, acts: &[Act]) -> AppResult<()> {
    if acts.is_empty() {
        return Ok(());
    }
    kernel::sql::query(
        "WITH x AS (
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                                  $6::timestamptz[], $7::bigint[])
                 AS x(event_id, account_id, kind, user_id, deal_id, at, value)),
         mark AS (INSERT INTO analytics.dirty (account_id, day)
                  SELECT DISTINCT account_id, (at AT TIME ZONE 'UTC')::date FROM x
                  WHERE at < (now() AT TIME ZONE 'UTC')::date - 1 ON CONFLICT DO NOTHING)
         INSERT INTO analytics.activity (event_id, account_id, kind, user_id, deal_id, at, value)
         SELECT event_id, account_id, kind, user_id, deal_id, at, value FROM x
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind::<Array<SqlUuid>, _>(acts.iter().map(|a| a.event_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(acts.iter().map(|a| a.account_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(acts.iter().map(|a| a.kind).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(acts.iter().map(|a| a.user_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(acts.iter().map(|a| a.deal_id).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(acts.iter().map(|a| a.at).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(acts.iter().map(|a| a.value).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// New deals (at most one event per deal), in one statement: each deal's row and its first stay.
async fn deals_created(
    conn: &mut AsyncPgConnection,
    created: &[(i64, DateTime<Utc>, DealCreated)],
) -> AppResult<()> {
    if created.is_empty() {
        return Ok(());
    }
    let tags: Vec<String> = created
        .iter()
        .map(|(_, _, d)| {
            let ids: Vec<String> = d.tag_ids.iter().map(i64::to_string).collect();
            format!("{{{}}}", ids.join(","))
        })
        .collect();
    // A new deal has no other stays: moves wait for it.
    kernel::sql::query(
        "WITH x AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::timestamptz[], $6::bigint[], $7::bigint[], $8::text[], $9::smallint[])
                 AS x(account_id, deal_id, pipeline_id, stage_id, at, responsible_user_id, price, tags, outcome)),
         d AS (
             INSERT INTO analytics.deals (account_id, deal_id, pipeline_id, stage_id, stage_since,
                 responsible_user_id, price, tag_ids, source, outcome, visited, created_at, closed_at)
             SELECT x.account_id, x.deal_id, x.pipeline_id, x.stage_id, x.at, x.responsible_user_id,
                    x.price, x.tags::bigint[],
                    (SELECT channel FROM analytics.sources s
                      WHERE s.account_id = x.account_id AND s.deal_id = x.deal_id),
                    x.outcome, ARRAY[x.stage_id], x.at, CASE WHEN x.outcome > 0 THEN x.at END
             FROM x
             ON CONFLICT (account_id, deal_id) DO NOTHING
             RETURNING account_id, deal_id, pipeline_id, stage_id, stage_since, responsible_user_id,
                       tag_ids, source),
         mark AS (INSERT INTO analytics.dirty (account_id, day)
                  SELECT DISTINCT account_id, (at AT TIME ZONE 'UTC')::date FROM x
                  WHERE at < (now() AT TIME ZONE 'UTC')::date - 1 ON CONFLICT DO NOTHING)
         INSERT INTO analytics.stays (account_id, deal_id, pipeline_id, stage_id, entered_at,
             responsible_user_id, tag_ids, source)
         SELECT account_id, deal_id, pipeline_id, stage_id, stage_since, responsible_user_id, tag_ids,
                source FROM d
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<BigInt>, _>(created.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(created.iter().map(|c| c.2.deal_id.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(created.iter().map(|c| c.2.pipeline_id.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(created.iter().map(|c| c.2.stage_id.0).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(created.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(
        created
            .iter()
            .map(|c| c.2.responsible_user_id.0)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(created.iter().map(|c| c.2.price).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(tags)
    .bind::<Array<SmallInt>, _>(
        created
            .iter()
            .map(|c| outcome_of(c.2.stage_id.0))
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Moved {
    #[diesel(sql_type = BigInt)]
    account_id: i64,
    #[diesel(sql_type = BigInt)]
    deal_id: i64,
}

/// Stage changes (at most one per deal), in two statements.
async fn stages_changed(
    conn: &mut AsyncPgConnection,
    moved: &[(i64, DateTime<Utc>, DealStageChanged)],
) -> AppResult<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let accounts: Vec<i64> = moved.iter().map(|m| m.0).collect();
    let deals: Vec<i64> = moved.iter().map(|m| m.2.deal_id.0).collect();
    let pipelines: Vec<i64> = moved.iter().map(|m| m.2.pipeline_id.0).collect();
    let stages: Vec<i64> = moved.iter().map(|m| m.2.to_stage_id.0).collect();
    let ats: Vec<DateTime<Utc>> = moved.iter().map(|m| m.1).collect();
    // The deals' rows first: they are the locks that put one deal's moves in a line. A deal's
    // current stage follows the latest move seen; "visited" gains the stage whatever the order.
    // The day the deal was closed on until now is marked first (a reopened deal leaves it).
    let found: Vec<Moved> = kernel::sql::query(
        "WITH x AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::timestamptz[], $6::smallint[], $7::bigint[])
                 AS x(account_id, deal_id, pipeline_id, stage_id, at, outcome, loss_reason_id)),
         mark_old AS (
             INSERT INTO analytics.dirty (account_id, day)
             SELECT DISTINCT d.account_id, (t AT TIME ZONE 'UTC')::date
             FROM analytics.deals d JOIN x ON d.account_id = x.account_id AND d.deal_id = x.deal_id,
                  unnest(ARRAY[d.closed_at, d.created_at]) t
             WHERE t < (now() AT TIME ZONE 'UTC')::date - 1
             ON CONFLICT DO NOTHING)
         UPDATE analytics.deals d SET
             visited = ARRAY(SELECT DISTINCT s FROM unnest(d.visited || x.stage_id) s ORDER BY s),
             pipeline_id = CASE WHEN x.at >= d.stage_since THEN x.pipeline_id ELSE d.pipeline_id END,
             stage_id = CASE WHEN x.at >= d.stage_since THEN x.stage_id ELSE d.stage_id END,
             outcome = CASE WHEN x.at >= d.stage_since THEN x.outcome ELSE d.outcome END,
             loss_reason_id = CASE WHEN x.at >= d.stage_since THEN x.loss_reason_id ELSE d.loss_reason_id END,
             closed_at = CASE WHEN x.at < d.stage_since THEN d.closed_at
                              WHEN x.outcome = 0 THEN NULL
                              WHEN d.outcome = x.outcome THEN coalesce(d.closed_at, x.at)
                              ELSE x.at END,
             stage_since = greatest(d.stage_since, x.at)
         FROM x WHERE d.account_id = x.account_id AND d.deal_id = x.deal_id
         RETURNING d.account_id, d.deal_id",
    )
    .bind::<Array<BigInt>, _>(&accounts)
    .bind::<Array<BigInt>, _>(&deals)
    .bind::<Array<BigInt>, _>(&pipelines)
    .bind::<Array<BigInt>, _>(&stages)
    .bind::<Array<Timestamptz>, _>(&ats)
    .bind::<Array<SmallInt>, _>(stages.iter().map(|s| outcome_of(*s)).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(
        moved
            .iter()
            .map(|m| m.2.loss_reason_id.map(|r| r.0))
            .collect::<Vec<_>>(),
    )
    .load(conn)
    .await?;
    if found.len() < moved.len() {
        let have: std::collections::HashSet<(i64, i64)> =
            found.iter().map(|f| (f.account_id, f.deal_id)).collect();
        if let Some(m) = moved.iter().find(|m| !have.contains(&(m.0, m.2.deal_id.0))) {
            return Err(not_yet(m.2.deal_id.0));
        }
    }
    // With the deals' rows locked: a new stay ends where a later one (seen first) starts, and
    // the one before it ends here, whatever order the moves were seen in. The days marked: the
    // move's (the stay before it ends then, the deal may close then) and, for a move seen late,
    // the day the next stay starts (this one ends then); the deal's creation and closing days
    // were marked with the deal's update.
    kernel::sql::query(
        "WITH x AS (
             SELECT x.*, (SELECT min(s.entered_at) FROM analytics.stays s
                           WHERE s.account_id = x.account_id AND s.deal_id = x.deal_id
                             AND s.entered_at > x.at) AS next_at
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[])
                 AS x(account_id, deal_id, pipeline_id, stage_id, at)),
         mark AS (
             INSERT INTO analytics.dirty (account_id, day)
             SELECT DISTINCT x.account_id, (t AT TIME ZONE 'UTC')::date
             FROM x, unnest(ARRAY[x.at, x.next_at]) t
             WHERE t < (now() AT TIME ZONE 'UTC')::date - 1
             ON CONFLICT DO NOTHING),
         prev AS (
             UPDATE analytics.stays s SET left_at = x.at FROM x
             WHERE s.account_id = x.account_id AND s.deal_id = x.deal_id
               AND s.entered_at = (SELECT max(p.entered_at) FROM analytics.stays p
                                   WHERE p.account_id = x.account_id AND p.deal_id = x.deal_id
                                     AND p.entered_at < x.at))
         INSERT INTO analytics.stays (account_id, deal_id, pipeline_id, stage_id, entered_at, left_at,
             responsible_user_id, tag_ids, source, deleted)
         SELECT x.account_id, x.deal_id, x.pipeline_id, x.stage_id, x.at, x.next_at,
                d.responsible_user_id, d.tag_ids, d.source, d.deleted
         FROM x JOIN analytics.deals d ON d.account_id = x.account_id AND d.deal_id = x.deal_id
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<BigInt>, _>(&accounts)
    .bind::<Array<BigInt>, _>(&deals)
    .bind::<Array<BigInt>, _>(&pipelines)
    .bind::<Array<BigInt>, _>(&stages)
    .bind::<Array<Timestamptz>, _>(&ats)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_stages_decide_the_outcome() {
        assert_eq!(outcome_of(142), 1);
        assert_eq!(outcome_of(143), 2);
        assert_eq!(outcome_of(7), 0);
        assert!(Projector.wants(DealStageChanged::TYPE));
        assert!(!Projector.wants("billing.invoice_paid"));
    }
}
