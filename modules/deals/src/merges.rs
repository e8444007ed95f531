//! Deals follow merged contacts and companies: when the contacts module merges them, every deal
//! linked to a merged one is linked to the kept one instead (its main contact too), with
//! DealUpdated.

use async_trait::async_trait;
use contacts_api::events::{CompaniesMerged, ContactsMerged};
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
    links: Vec<i64>,
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
        &[ContactsMerged::TYPE, CompaniesMerged::TYPE]
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        // The links column the merge is about, the merged ids and the kept one.
        let (column, merged, kept): (&str, Vec<i64>, i64) =
            if event.event_type == CompaniesMerged::TYPE {
                let m: CompaniesMerged = event.decode()?;
                (
                    "company_ids",
                    m.merged.iter().map(|c| c.0).collect(),
                    m.kept.0,
                )
            } else {
                let m: ContactsMerged = event.decode()?;
                (
                    "contact_ids",
                    m.merged.iter().map(|c| c.0).collect(),
                    m.kept.0,
                )
            };
        let account = event.account_id.0;
        let before: Vec<Links> = diesel::sql_query(format!(
            "SELECT id, {column} AS links FROM deals.deals
              WHERE account_id = $1 AND {column} <> '{{}}' AND {column} && $2
              ORDER BY id FOR UPDATE"
        ))
        .bind::<BigInt, _>(account)
        .bind::<Array<BigInt>, _>(&merged)
        .load(conn)
        .await?;
        if before.is_empty() {
            return Ok(());
        }
        // Each merged id becomes the kept one; an id listed twice stays once, first place.
        let main = if column == "contact_ids" {
            "main_contact_id = CASE WHEN d.main_contact_id = ANY($2) THEN $3 ELSE d.main_contact_id END,"
        } else {
            ""
        };
        let after: Vec<Links> = diesel::sql_query(format!(
            "UPDATE deals.deals d SET
                 {column} = (SELECT array_agg(x ORDER BY o) FROM (
                                  SELECT DISTINCT ON (x) x, o FROM (
                                    SELECT CASE WHEN c = ANY($2) THEN $3 ELSE c END AS x, o
                                      FROM unnest(d.{column}) WITH ORDINALITY u(c, o)) s
                                  ORDER BY x, o) t),
                 {main}
                 updated_at = now()
              WHERE d.account_id = $1 AND d.id = ANY($4)
              RETURNING d.id, d.{column} AS links"
        ))
        .bind::<BigInt, _>(account)
        .bind::<Array<BigInt>, _>(&merged)
        .bind::<BigInt, _>(kept)
        .bind::<Array<BigInt>, _>(before.iter().map(|b| b.id).collect::<Vec<_>>())
        .load(conn)
        .await?;
        let caller = Caller {
            account_id: event.account_id,
            actor: event.actor,
            cause: Some(event.id),
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
                        before: serde_json::json!({ column: b.links }),
                        after: serde_json::json!({ column: a.links }),
                    },
                )?
                .caused_by(event.id),
            );
        }
        outbox::append(conn, crate::SCHEMA, &events).await
    }
}
