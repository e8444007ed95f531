//! The event log: a subscriber to every event of every module that keeps each one once, with
//! who did it, to which record, and the values before and after.

use std::collections::HashSet;

use async_trait::async_trait;
use contacts_api::events::{CompaniesMerged, ContactsMerged};
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::{Actor, AppResult};
use serde_json::Value;

pub struct EventLog;

#[derive(diesel::QueryableByName)]
struct Written {
    #[diesel(sql_type = SqlUuid)]
    event_id: uuid::Uuid,
}

/// The record an event is about, from its payload: a deal, a contact or a company.
pub(crate) fn entity_of(event_type: &str, payload: &Value) -> Option<(&'static str, i64)> {
    let id = |k: &str| payload.get(k).and_then(Value::as_i64);
    if let Some(e) = payload.get("entity").filter(|e| e.is_object()) {
        let kind = match e.get("kind").and_then(Value::as_str)? {
            "deal" => "deal",
            "contact" => "contact",
            "company" => "company",
            _ => return None,
        };
        return Some((kind, e.get("id").and_then(Value::as_i64)?));
    }
    match event_type {
        t if t == ContactsMerged::TYPE => id("kept").map(|i| ("contact", i)),
        t if t == CompaniesMerged::TYPE => id("kept").map(|i| ("company", i)),
        _ => id("deal_id")
            .map(|i| ("deal", i))
            .or_else(|| id("contact_id").map(|i| ("contact", i)))
            .or_else(|| id("company_id").map(|i| ("company", i))),
    }
}

pub(crate) fn actor_parts(actor: &Actor) -> (&'static str, i64) {
    match actor {
        Actor::User { id } => ("user", id.0),
        Actor::Robot { id } => ("robot", *id),
        Actor::Integration { id, .. } => ("integration", *id),
        Actor::System { .. } => ("system", 0),
    }
}

#[async_trait]
impl Subscriber for EventLog {
    fn name(&self) -> &str {
        "activities.log"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["*"]
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        self.handle_many(conn, &[event]).await
    }

    /// Each event is one log row under its unique event id, written with `ON CONFLICT DO
    /// NOTHING`: a redelivery is a no-op without an inbox row (every event of every module
    /// comes here, so that row and its index entry are worth saving).
    fn deduplicates_itself(&self) -> bool {
        true
    }

    async fn handle_many(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<()> {
        self.handle_new(conn, events).await.map(|_| ())
    }

    /// A batch in one statement (a busy account's events come in batches of dozens); the ids of
    /// the rows written now.
    async fn handle_new(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<HashSet<uuid::Uuid>> {
        let n = events.len();
        let (mut ids, mut accounts, mut types, mut times) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut actor_kinds, mut actor_ids, mut kinds, mut entity_ids) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut befores, mut afters, mut payloads) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for event in events {
            let entity = entity_of(&event.event_type, &event.payload);
            let (actor_kind, actor_id) = actor_parts(&event.actor);
            ids.push(event.id);
            accounts.push(event.account_id.0);
            types.push(event.event_type.as_str());
            times.push(event.occurred_at);
            actor_kinds.push(actor_kind);
            actor_ids.push(actor_id);
            kinds.push(entity.map(|e| e.0));
            entity_ids.push(entity.map(|e| e.1));
            befores.push(event.payload.get("before").cloned());
            afters.push(event.payload.get("after").cloned());
            payloads.push(&event.payload);
        }
        let written = kernel::sql::query(
            "INSERT INTO activities.log (event_id, account_id, event_type, occurred_at, actor_kind, actor_id,
                                         entity, entity_id, before, after, payload)
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[],
                                  $6::bigint[], $7::text[], $8::bigint[], $9::jsonb[], $10::jsonb[], $11::jsonb[])
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<BigInt>, _>(&accounts)
        .bind::<Array<Text>, _>(&types)
        .bind::<Array<Timestamptz>, _>(&times)
        .bind::<Array<Text>, _>(&actor_kinds)
        .bind::<Array<BigInt>, _>(&actor_ids)
        .bind::<Array<Nullable<Text>>, _>(&kinds)
        .bind::<Array<Nullable<BigInt>>, _>(&entity_ids)
        .bind::<Array<Nullable<Jsonb>>, _>(&befores)
        .bind::<Array<Nullable<Jsonb>>, _>(&afters)
        .bind::<Array<Jsonb>, _>(&payloads)
        .load::<Written>(conn)
        .await?;
        Ok(written.into_iter().map(|w| w.event_id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contacts_api::events::ContactLinked;
    use deals_api::events::DealUpdated;
    use serde_json::json;

    #[test]
    fn events_name_their_record() {
        assert_eq!(
            entity_of(DealUpdated::TYPE, &json!({"deal_id": 7})),
            Some(("deal", 7))
        );
        assert_eq!(
            entity_of(
                ContactLinked::TYPE,
                &json!({"contact_id": 3, "company_id": 4})
            ),
            Some(("contact", 3))
        );
        assert_eq!(
            entity_of(CompaniesMerged::TYPE, &json!({"kept": 5, "merged": [6]})),
            Some(("company", 5))
        );
        assert_eq!(
            entity_of(
                "activities.note_added",
                &json!({"entity": {"kind": "deal", "id": 9}})
            ),
            Some(("deal", 9))
        );
        assert_eq!(
            entity_of("billing.invoice_paid", &json!({"user_id": 1})),
            None
        );
    }
}
