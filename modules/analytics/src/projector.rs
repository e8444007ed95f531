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
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::{AppError, AppResult};
use messaging_api::events::{IncomingLeadCreated, MessageReceived, MessageSent};
use serde_json::Value;

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
        let account = e.account_id.0;
        let at = e.occurred_at;
        match e.event_type.as_str() {
            t if t == DealCreated::TYPE => {
                let d: DealCreated = e.decode()?;
                deal_created(conn, account, at, &d).await
            }
            t if t == DealStageChanged::TYPE => {
                let d: DealStageChanged = e.decode()?;
                stage_changed(conn, account, at, &d).await
            }
            t if t == DealUpdated::TYPE => {
                let d: DealUpdated = e.decode()?;
                let price = d.after.get("price").and_then(Value::as_i64);
                let tags: Option<Vec<i64>> = d
                    .after
                    .get("tag_ids")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_i64).collect());
                if price.is_none() && tags.is_none() {
                    return Ok(());
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
                found(n, d.deal_id.0)
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
                found(n, d.deal_id.0)
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
                found(n, deal)
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
                Ok(())
            }
            t if t == MessageReceived::TYPE => {
                let m: MessageReceived = e.decode()?;
                activity(conn, e, "message_in", None, m.deal_id, None).await?;
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
                Ok(())
            }
            t if t == MessageSent::TYPE => {
                let m: MessageSent = e.decode()?;
                // Only a person's answer ends the client's wait (a robot's does not).
                let waited = match m.author_user_id {
                    Some(_) => answered(conn, account, m.conversation_id, at).await?,
                    None => None,
                };
                activity(conn, e, "message_out", m.author_user_id, m.deal_id, waited).await
            }
            t if t == TaskCreated::TYPE => {
                let task: TaskCreated = e.decode()?;
                let deal = task.entity.as_ref().and_then(deal_of);
                activity(
                    conn,
                    e,
                    "task_created",
                    Some(task.responsible_user_id.0),
                    deal,
                    None,
                )
                .await
            }
            t if t == TaskCompleted::TYPE => {
                let task: TaskCompleted = e.decode()?;
                let deal = task.entity.as_ref().and_then(deal_of);
                let user = e.actor.user_id().map(|u| u.0);
                activity(conn, e, "task_completed", user, deal, None).await
            }
            t if t == NoteAdded::TYPE => {
                let note: NoteAdded = e.decode()?;
                let user = e.actor.user_id().map(|u| u.0);
                activity(conn, e, "note_added", user, deal_of(&note.entity), None).await
            }
            t if t == ContactCreated::TYPE => {
                let c: ContactCreated = e.decode()?;
                let user = Some(c.responsible_user_id.0);
                activity(conn, e, "contact_created", user, None, None).await
            }
            t if t == CompanyCreated::TYPE => {
                let c: CompanyCreated = e.decode()?;
                let user = Some(c.responsible_user_id.0);
                activity(conn, e, "company_created", user, None, None).await
            }
            _ => Ok(()),
        }
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

async fn activity(
    conn: &mut AsyncPgConnection,
    e: &EventEnvelope,
    kind: &str,
    user: Option<i64>,
    deal: Option<i64>,
    value: Option<i64>,
) -> AppResult<()> {
    kernel::sql::query(
        "WITH mark AS (INSERT INTO analytics.dirty (account_id, day)
                       SELECT $2, ($6 AT TIME ZONE 'UTC')::date
                       WHERE $6 < (now() AT TIME ZONE 'UTC')::date - 1 ON CONFLICT DO NOTHING)
         INSERT INTO analytics.activity (event_id, account_id, kind, user_id, deal_id, at, value)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind::<SqlUuid, _>(e.id)
    .bind::<BigInt, _>(e.account_id.0)
    .bind::<Text, _>(kind)
    .bind::<Nullable<BigInt>, _>(user)
    .bind::<Nullable<BigInt>, _>(deal)
    .bind::<Timestamptz, _>(e.occurred_at)
    .bind::<Nullable<BigInt>, _>(value)
    .execute(conn)
    .await?;
    Ok(())
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

async fn deal_created(
    conn: &mut AsyncPgConnection,
    account: i64,
    at: DateTime<Utc>,
    d: &DealCreated,
) -> AppResult<()> {
    let stage = d.stage_id.0;
    let outcome = outcome_of(stage);
    // The deal and its first stay (a new deal has no other stays: moves wait for it).
    kernel::sql::query(
        "WITH d AS (
             INSERT INTO analytics.deals (account_id, deal_id, pipeline_id, stage_id, stage_since,
                 responsible_user_id, price, tag_ids, source, outcome, visited, created_at, closed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                 (SELECT channel FROM analytics.sources WHERE account_id = $1 AND deal_id = $2),
                 $9, ARRAY[$4], $5, CASE WHEN $9 > 0 THEN $5 END)
             ON CONFLICT (account_id, deal_id) DO NOTHING
             RETURNING source),
         mark AS (INSERT INTO analytics.dirty (account_id, day)
                  SELECT $1, ($5 AT TIME ZONE 'UTC')::date
                  WHERE $5 < (now() AT TIME ZONE 'UTC')::date - 1 ON CONFLICT DO NOTHING)
         INSERT INTO analytics.stays (account_id, deal_id, pipeline_id, stage_id, entered_at,
             responsible_user_id, tag_ids, source)
         SELECT $1, $2, $3, $4, $5, $6, $8, d.source FROM d ON CONFLICT DO NOTHING",
    )
    .bind::<BigInt, _>(account)
    .bind::<BigInt, _>(d.deal_id.0)
    .bind::<BigInt, _>(d.pipeline_id.0)
    .bind::<BigInt, _>(stage)
    .bind::<Timestamptz, _>(at)
    .bind::<BigInt, _>(d.responsible_user_id.0)
    .bind::<BigInt, _>(d.price)
    .bind::<Array<BigInt>, _>(&d.tag_ids)
    .bind::<diesel::sql_types::SmallInt, _>(outcome)
    .execute(conn)
    .await?;
    Ok(())
}

async fn stage_changed(
    conn: &mut AsyncPgConnection,
    account: i64,
    at: DateTime<Utc>,
    d: &DealStageChanged,
) -> AppResult<()> {
    let to = d.to_stage_id.0;
    // The deal's row first: it is the lock that puts one deal's moves in a line. Its current
    // stage follows the latest move seen; "visited" gains the stage whatever the order.
    // The day the deal was closed on until now is marked first (a reopened deal leaves it).
    let n = kernel::sql::query(
        "WITH mark_old AS (
             INSERT INTO analytics.dirty (account_id, day)
             SELECT DISTINCT $1::bigint, (t AT TIME ZONE 'UTC')::date
             FROM analytics.deals, unnest(ARRAY[closed_at, created_at]) t
             WHERE account_id = $1 AND deal_id = $2
               AND t < (now() AT TIME ZONE 'UTC')::date - 1
             ON CONFLICT DO NOTHING)
         UPDATE analytics.deals SET
             visited = ARRAY(SELECT DISTINCT s FROM unnest(visited || $4) s ORDER BY s),
             pipeline_id = CASE WHEN $5 >= stage_since THEN $3 ELSE pipeline_id END,
             stage_id = CASE WHEN $5 >= stage_since THEN $4 ELSE stage_id END,
             outcome = CASE WHEN $5 >= stage_since THEN $6 ELSE outcome END,
             loss_reason_id = CASE WHEN $5 >= stage_since THEN $7 ELSE loss_reason_id END,
             closed_at = CASE WHEN $5 < stage_since THEN closed_at
                              WHEN $6 = 0 THEN NULL
                              WHEN outcome = $6 THEN coalesce(closed_at, $5)
                              ELSE $5 END,
             stage_since = greatest(stage_since, $5)
         WHERE account_id = $1 AND deal_id = $2",
    )
    .bind::<BigInt, _>(account)
    .bind::<BigInt, _>(d.deal_id.0)
    .bind::<BigInt, _>(d.pipeline_id.0)
    .bind::<BigInt, _>(to)
    .bind::<Timestamptz, _>(at)
    .bind::<diesel::sql_types::SmallInt, _>(outcome_of(to))
    .bind::<Nullable<BigInt>, _>(d.loss_reason_id.map(|r| r.0))
    .execute(conn)
    .await?;
    found(n, d.deal_id.0)?;
    // With the deal's row locked: the new stay ends where a later one (seen first) starts, and
    // the one before it ends here, whatever order the moves were seen in.
    kernel::sql::query(format!(
        "WITH {mark}, prev AS (
             UPDATE analytics.stays SET left_at = $5
             WHERE account_id = $1 AND deal_id = $2
               AND entered_at = (SELECT max(entered_at) FROM analytics.stays
                                 WHERE account_id = $1 AND deal_id = $2 AND entered_at < $5))
         INSERT INTO analytics.stays (account_id, deal_id, pipeline_id, stage_id, entered_at, left_at,
             responsible_user_id, tag_ids, source, deleted)
         SELECT $1, $2, $3, $4, $5,
                (SELECT min(entered_at) FROM analytics.stays
                 WHERE account_id = $1 AND deal_id = $2 AND entered_at > $5),
                d.responsible_user_id, d.tag_ids, d.source, d.deleted
         FROM analytics.deals d WHERE d.account_id = $1 AND d.deal_id = $2
         ON CONFLICT DO NOTHING",
        // The day of this move (the stay before it ends then, the deal may close then) and, for a
        // move seen late, the day the next stay starts (this one ends then); the deal's creation
        // and closing days were marked with the deal's update.
        mark = "mark AS (
             INSERT INTO analytics.dirty (account_id, day)
             SELECT DISTINCT $1::bigint, (t AT TIME ZONE 'UTC')::date
             FROM unnest(ARRAY[$5::timestamptz, (SELECT min(entered_at) FROM analytics.stays
                                   WHERE account_id = $1 AND deal_id = $2 AND entered_at > $5)]) t
             WHERE t < (now() AT TIME ZONE 'UTC')::date - 1
             ON CONFLICT DO NOTHING)",
    ))
    .bind::<BigInt, _>(account)
    .bind::<BigInt, _>(d.deal_id.0)
    .bind::<BigInt, _>(d.pipeline_id.0)
    .bind::<BigInt, _>(to)
    .bind::<Timestamptz, _>(at)
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
