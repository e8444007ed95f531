//! Deals follow merged contacts: when the contacts module merges contacts, every deal linked to
//! a merged one is linked to the kept one instead (its main contact too), with DealUpdated.

use async_trait::async_trait;
use contacts_api::events::ContactsMerged;
use deals_api::DealId;
use deals_api::events::DealUpdated;
use diesel::sql_types::{Array, BigInt};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::{AppResult, Caller, outbox};

pub struct ContactMerges;

#[derive(diesel::QueryableByName)]
struct Links {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Array<BigInt>)]
    contact_ids: Vec<i64>,
}

#[async_trait]
impl Subscriber for ContactMerges {
    fn name(&self) -> &str {
        "deals.contact_merges"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[ContactsMerged::TYPE]
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        let merge: ContactsMerged = event.decode()?;
        let merged: Vec<i64> = merge.merged.iter().map(|c| c.0).collect();
        let account = event.account_id.0;
        let before: Vec<Links> = diesel::sql_query(
            "SELECT id, contact_ids FROM deals.deals
              WHERE account_id = $1 AND contact_ids <> '{}' AND contact_ids && $2
              ORDER BY id FOR UPDATE",
        )
        .bind::<BigInt, _>(account)
        .bind::<Array<BigInt>, _>(&merged)
        .load(conn)
        .await?;
        if before.is_empty() {
            return Ok(());
        }
        // Each merged id becomes the kept one; a contact listed twice stays once, first place.
        let after: Vec<Links> = diesel::sql_query(
            "UPDATE deals.deals d SET
                 contact_ids = (SELECT array_agg(x ORDER BY o) FROM (
                                  SELECT DISTINCT ON (x) x, o FROM (
                                    SELECT CASE WHEN c = ANY($2) THEN $3 ELSE c END AS x, o
                                      FROM unnest(d.contact_ids) WITH ORDINALITY u(c, o)) s
                                  ORDER BY x, o) t),
                 main_contact_id = CASE WHEN d.main_contact_id = ANY($2) THEN $3 ELSE d.main_contact_id END,
                 updated_at = now()
              WHERE d.account_id = $1 AND d.id = ANY($4)
              RETURNING d.id, d.contact_ids",
        )
        .bind::<BigInt, _>(account)
        .bind::<Array<BigInt>, _>(&merged)
        .bind::<BigInt, _>(merge.kept.0)
        .bind::<Array<BigInt>, _>(before.iter().map(|b| b.id).collect::<Vec<_>>())
        .load(conn)
        .await?;
        let caller = Caller {
            account_id: event.account_id,
            actor: event.actor,
        };
        let mut events = Vec::with_capacity(after.len());
        for a in &after {
            let Some(b) = before.iter().find(|b| b.id == a.id) else {
                continue;
            };
            events.push(
                EventEnvelope::new(
                    caller,
                    &DealUpdated {
                        deal_id: DealId(a.id),
                        before: serde_json::json!({ "contact_ids": b.contact_ids }),
                        after: serde_json::json!({ "contact_ids": a.contact_ids }),
                    },
                )?
                .caused_by(event.id),
            );
        }
        outbox::append(conn, crate::SCHEMA, &events).await
    }
}
