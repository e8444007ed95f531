//! The transactional outbox: events are rows in `<schema>.outbox`, written on the caller's
//! connection (inside its transaction), so a change and the events it causes commit or roll back
//! together. A relay claims unpublished rows with `FOR UPDATE SKIP LOCKED`, publishes them, and
//! marks them published in the same transaction as the claim.
//!
//! Each module's migrations create its outbox with [`ddl`]'s shape; an insert trigger sends
//! `NOTIFY voronka_outbox, '<schema>'` so relays wake at once instead of polling.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{
    Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::events::EventEnvelope;
use crate::{AccountId, AppError, AppResult};

pub const NOTIFY_CHANNEL: &str = "voronka_outbox";

/// Appends events to `schema`'s outbox on `conn` (use the connection of the change's transaction).
/// One statement for the whole batch.
/// The connection is shared (`&`), so the insert can be pipelined with a transaction's other
/// independent statements (diesel-async sends them together when their futures are joined).
pub async fn append(
    mut conn: &AsyncPgConnection,
    schema: &'static str,
    events: &[EventEnvelope],
) -> AppResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut actors = Vec::with_capacity(events.len());
    for e in events {
        actors.push(
            serde_json::to_value(e.actor).map_err(|err| AppError::internal(err.to_string()))?,
        );
    }
    crate::sql::query(format!(
        "INSERT INTO {schema}.outbox (id, account_id, event_type, version, actor, occurred_at, causation_id, payload)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::int[], $5::jsonb[], $6::timestamptz[], $7::uuid[], $8::jsonb[])"
    ))
    .bind::<Array<SqlUuid>, _>(events.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(events.iter().map(|e| e.account_id.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(events.iter().map(|e| e.version).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(actors)
    .bind::<Array<Timestamptz>, _>(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<SqlUuid>>, _>(events.iter().map(|e| e.causation_id).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(events.iter().map(|e| &e.payload).collect::<Vec<_>>())
    .execute(&mut conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct OutboxRow {
    /// Which of the claimed schemas the row is from.
    #[diesel(sql_type = Integer)]
    at: i32,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    account_id: i64,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Jsonb)]
    actor: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    causation_id: Option<Uuid>,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
}

/// A batch claimed by this relay: the rows stay locked until the transaction ends.
#[derive(Default)]
pub struct Claimed {
    pub seqs: Vec<i64>,
    pub events: Vec<EventEnvelope>,
    /// Rows whose envelope could not be read back (kept for the record, marked published).
    pub unreadable: Vec<(i64, String)>,
}

#[derive(QueryableByName)]
struct Pending {
    #[diesel(sql_type = Integer)]
    at: i32,
}

/// Which of `schemas` have unpublished events: one round trip, no transaction (the relay claims
/// only from those, instead of a claiming transaction per schema each time it looks).
pub async fn pending<'s>(
    conn: &mut AsyncPgConnection,
    schemas: &[&'s str],
) -> AppResult<Vec<&'s str>> {
    if schemas.is_empty() {
        return Ok(Vec::new());
    }
    let text = schemas
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "SELECT {i} AS at WHERE EXISTS (SELECT 1 FROM {s}.outbox WHERE published_at IS NULL)"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows: Vec<Pending> = crate::sql::query(text).load(conn).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| schemas.get(r.at as usize).copied())
        .collect())
}

/// Claims up to `limit` unpublished events, oldest first, skipping rows other relays hold.
/// Call inside a transaction, publish, then [`mark_published_many`] before committing.
pub async fn claim(conn: &mut AsyncPgConnection, schema: &str, limit: i64) -> AppResult<Claimed> {
    let mut claimed = claim_many(conn, &[schema], limit).await?;
    Ok(claimed.pop().unwrap_or_default())
}

/// [`claim`] from each of `schemas` (up to `limit` events from each) in one statement, so one
/// round trip however many outboxes have events: one `Claimed` per schema, in the order given.
pub async fn claim_many(
    conn: &mut AsyncPgConnection,
    schemas: &[&str],
    limit: i64,
) -> AppResult<Vec<Claimed>> {
    if schemas.is_empty() {
        return Ok(Vec::new());
    }
    let ctes = schemas
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "c{i} AS (SELECT seq, id, account_id, event_type, version, actor, occurred_at,
                                 causation_id, payload
                            FROM {s}.outbox WHERE published_at IS NULL
                           ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let rows_of = (0..schemas.len())
        .map(|i| format!("SELECT {i} AS at, * FROM c{i}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows: Vec<OutboxRow> = crate::sql::query(format!("WITH {ctes} {rows_of} ORDER BY at, seq"))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    let mut claimed: Vec<Claimed> = schemas.iter().map(|_| Claimed::default()).collect();
    for r in rows {
        let Some(c) = claimed.get_mut(r.at as usize) else {
            continue;
        };
        c.seqs.push(r.seq);
        match serde_json::from_value(r.actor) {
            Ok(actor) => c.events.push(EventEnvelope {
                id: r.id,
                account_id: AccountId(r.account_id),
                event_type: r.event_type,
                version: r.version,
                actor,
                occurred_at: r.occurred_at,
                causation_id: r.causation_id,
                payload: r.payload,
            }),
            Err(e) => c.unreadable.push((r.seq, format!("actor: {e}"))),
        }
    }
    Ok(claimed)
}

/// Marks the claimed events of each outbox published, all in one statement (one round trip).
pub async fn mark_published_many(
    conn: &mut AsyncPgConnection,
    batches: &[(&str, &[i64])],
) -> AppResult<()> {
    let batches: Vec<&(&str, &[i64])> = batches.iter().filter(|(_, s)| !s.is_empty()).collect();
    if batches.is_empty() {
        return Ok(());
    }
    let text = batches
        .iter()
        .enumerate()
        .map(|(i, (schema, _))| {
            format!(
                "u{i} AS (UPDATE {schema}.outbox SET published_at = now() WHERE seq = ANY(${}))",
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut q = crate::sql::query(format!("WITH {text} SELECT 1"));
    for (_, seqs) in &batches {
        q = q.bind::<Array<BigInt>, _>(*seqs);
    }
    q.execute(conn).await?;
    Ok(())
}

/// Removes events published more than `keep_days` ago (the bus has them; subscribers' inboxes
/// too), oldest first: the key's head, a batch at a time, until a batch removes nothing. The
/// outbox has no index on `published_at` (publishing would add an entry to it for every event);
/// rows are published roughly in key order, so the old ones are at the head.
pub async fn prune(conn: &mut AsyncPgConnection, schema: &str, keep_days: i32) -> AppResult<usize> {
    const BATCH: i64 = 5_000;
    let mut removed = 0;
    loop {
        let n = crate::sql::query(format!(
            "DELETE FROM {schema}.outbox
              WHERE seq IN (SELECT seq FROM {schema}.outbox ORDER BY seq LIMIT $2)
                AND published_at < now() - make_interval(days => $1)"
        ))
        .bind::<Integer, _>(keep_days)
        .bind::<BigInt, _>(BATCH)
        .execute(conn)
        .await?;
        if n == 0 {
            return Ok(removed);
        }
        removed += n;
    }
}

/// The outbox and inbox tables every module's migrations create in its schema (the same shape
/// everywhere, so the relay and the inbox work on any module). Documented here; each migration
/// spells it out, as a migration must not change when this code does.
/// Tells the inserting transactions whether a relay is busy draining `schema`'s outbox. While it
/// is, they skip NOTIFY: a NOTIFY takes a database-wide lock at commit, which under load
/// serialises every committing writer (it cost a third of the deal-create throughput). The relay
/// clears the flag before its last drain and sleeps; a row committed in between is found by the
/// relay's one-second safety poll at the latest.
pub async fn set_relay_awake(
    conn: &mut AsyncPgConnection,
    schema: &'static str,
    awake: bool,
) -> AppResult<()> {
    crate::sql::query(format!(
        "UPDATE {schema}.outbox_relay SET awake = $1 WHERE awake IS DISTINCT FROM $1"
    ))
    .bind::<diesel::sql_types::Bool, _>(awake)
    .execute(conn)
    .await?;
    Ok(())
}

pub fn ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE {schema}.outbox (
            seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id           UUID        NOT NULL,
            account_id   BIGINT      NOT NULL,
            event_type   TEXT        NOT NULL,
            version      INTEGER     NOT NULL,
            actor        JSONB       NOT NULL,
            occurred_at  TIMESTAMPTZ NOT NULL,
            causation_id UUID,
            payload      JSONB       NOT NULL,
            published_at TIMESTAMPTZ
        );
        CREATE INDEX outbox_unpublished_idx ON {schema}.outbox (seq) WHERE published_at IS NULL;
        CREATE TABLE {schema}.outbox_relay (
            one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
            awake BOOLEAN NOT NULL DEFAULT false
        );
        INSERT INTO {schema}.outbox_relay DEFAULT VALUES;
        CREATE FUNCTION {schema}.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT (SELECT awake FROM {schema}.outbox_relay) THEN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', '{schema}');
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER outbox_notify AFTER INSERT ON {schema}.outbox
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.outbox_notify();
        CREATE TABLE {schema}.inbox (
            subscriber   TEXT        NOT NULL,
            event_id     UUID        NOT NULL,
            account_id   BIGINT      NOT NULL,
            event_type   TEXT        NOT NULL,
            -- 'done', or 'failed' with the reason (malformed or unknown events are not retried)
            outcome      TEXT        NOT NULL,
            error        TEXT,
            handled_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (subscriber, event_id)
        );
        CREATE INDEX inbox_failed_idx ON {schema}.inbox (subscriber, handled_at) WHERE outcome = 'failed';"
    )
}
