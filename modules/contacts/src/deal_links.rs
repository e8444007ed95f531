//! Which contacts have an open deal, learned from the deals module: on any event about a deal,
//! the deal's contacts and whether it is open are read through the `Deals` contract and kept in
//! `contacts.deal_refs`; each affected contact's `open_deals` is counted again. Reading the
//! deal's current state (under a lock on its row here) makes late or repeated events harmless.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use deals_api::events::{DealCreated, DealDeleted, DealRestored, DealStageChanged, DealUpdated};
use deals_api::{DealId, Deals};
use diesel::sql_types::{Array, BigInt, Bool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use kernel::{AppError, AppResult, Caller, ErrorCode};

/// The subscriber; the deals module is handed to it once the modules are composed.
#[derive(Default)]
pub struct DealLinks {
    deals: OnceLock<Arc<dyn Deals>>,
}

impl DealLinks {
    pub fn new() -> DealLinks {
        DealLinks::default()
    }

    pub fn connect(&self, deals: Arc<dyn Deals>) {
        let _ = self.deals.set(deals);
    }
}

#[derive(diesel::QueryableByName)]
struct Ref {
    #[diesel(sql_type = Array<BigInt>)]
    contact_ids: Vec<i64>,
}

#[async_trait]
impl Subscriber for DealLinks {
    fn name(&self) -> &str {
        "contacts.deal_links"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[
            DealCreated::TYPE,
            DealStageChanged::TYPE,
            DealUpdated::TYPE,
            DealDeleted::TYPE,
            DealRestored::TYPE,
        ]
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        let Some(deals) = self.deals.get() else {
            return Err(AppError::new(
                ErrorCode::Unavailable,
                "the deals module is not connected yet",
            ));
        };
        let Some(deal) = event.payload.get("deal_id").and_then(|v| v.as_i64()) else {
            return Err(AppError::new(
                ErrorCode::BadRequest,
                "no deal_id in the event",
            ));
        };
        let account = event.account_id;
        // Take the deal's row here first: handlers of one deal take turns, and each reads the
        // deal as it is after the previous one.
        kernel::sql::query(
            "INSERT INTO contacts.deal_refs (account_id, deal_id, open) VALUES ($1, $2, false)
             ON CONFLICT DO NOTHING",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(deal)
        .execute(conn)
        .await?;
        let before: Ref = kernel::sql::query(
            "SELECT contact_ids FROM contacts.deal_refs WHERE account_id = $1 AND deal_id = $2 FOR UPDATE",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(deal)
        .get_result(conn)
        .await?;
        let (contacts, open) = match deals.deal(Caller::system(account), DealId(deal)).await {
            Ok(d) => (d.contact_ids, d.closed_at.is_none()),
            Err(e) if e.code == ErrorCode::NotFound => (Vec::new(), false),
            Err(e) => return Err(e),
        };
        kernel::sql::query(
            "UPDATE contacts.deal_refs SET contact_ids = $3, open = $4 WHERE account_id = $1 AND deal_id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(deal)
        .bind::<Array<BigInt>, _>(&contacts)
        .bind::<Bool, _>(open)
        .execute(conn)
        .await?;
        let mut affected = before.contact_ids;
        affected.extend(contacts);
        affected.sort_unstable();
        affected.dedup();
        if !affected.is_empty() {
            kernel::sql::query(
                "UPDATE contacts.contacts c SET open_deals = (
                        SELECT count(*) FROM contacts.deal_refs d
                         WHERE d.account_id = c.account_id AND d.open AND d.contact_ids @> ARRAY[c.id])
                  WHERE c.account_id = $1 AND c.id = ANY($2)",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<Array<BigInt>, _>(&affected)
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}
