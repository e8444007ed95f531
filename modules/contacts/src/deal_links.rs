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
        self.handle_many(conn, &[event]).await
    }

    /// Moves between open stages (most of a board's moves) and deals created without contacts:
    /// no job, no inbox row.
    fn ignores(&self, event: &EventEnvelope) -> bool {
        !may_change_links(event)
    }

    /// A batch: each deal once (its state now covers all its events), in five statements and
    /// one read of the deals per account, whatever the batch's size.
    async fn handle_many(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[&EventEnvelope],
    ) -> AppResult<()> {
        let Some(deals) = self.deals.get() else {
            return Err(AppError::new(
                ErrorCode::Unavailable,
                "the deals module is not connected yet",
            ));
        };
        let mut keys: Vec<(i64, i64)> = Vec::with_capacity(events.len());
        for event in events {
            if !may_change_links(event) {
                continue;
            }
            let Some(deal) = event.payload.get("deal_id").and_then(|v| v.as_i64()) else {
                return Err(AppError::new(
                    ErrorCode::BadRequest,
                    "no deal_id in the event",
                ));
            };
            keys.push((event.account_id.0, deal));
        }
        if keys.is_empty() {
            return Ok(());
        }
        // In one order everywhere, so that concurrent batches lock rows without deadlocks.
        keys.sort_unstable();
        keys.dedup();
        let accounts: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let ids: Vec<i64> = keys.iter().map(|k| k.1).collect();
        kernel::sql::query(
            "INSERT INTO contacts.deal_refs (account_id, deal_id, open)
             SELECT a, d, false FROM unnest($1::bigint[], $2::bigint[]) AS x(a, d)
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<BigInt>, _>(&accounts)
        .bind::<Array<BigInt>, _>(&ids)
        .execute(conn)
        .await?;
        #[derive(diesel::QueryableByName)]
        struct Before {
            #[diesel(sql_type = BigInt)]
            account_id: i64,
            #[diesel(sql_type = Array<BigInt>)]
            contact_ids: Vec<i64>,
        }
        let before: Vec<Before> = kernel::sql::query(
            "SELECT r.account_id, r.contact_ids FROM contacts.deal_refs r
               JOIN unnest($1::bigint[], $2::bigint[]) AS x(a, d) ON r.account_id = x.a AND r.deal_id = x.d
              ORDER BY r.account_id, r.deal_id FOR UPDATE OF r",
        )
        .bind::<Array<BigInt>, _>(&accounts)
        .bind::<Array<BigInt>, _>(&ids)
        .load(conn)
        .await?;
        // The deals as they are now, a page of ids at a time per account (a deal not found is
        // deleted: no contacts, not open).
        let mut now: std::collections::HashMap<(i64, i64), (Vec<i64>, bool)> =
            std::collections::HashMap::with_capacity(keys.len());
        let mut by_account = accounts.clone();
        by_account.dedup();
        for a in by_account {
            let mine: Vec<DealId> = keys
                .iter()
                .filter(|k| k.0 == a)
                .map(|k| DealId(k.1))
                .collect();
            let found =
                deals_api::deals_by_ids(&**deals, Caller::system(kernel::AccountId(a)), &mine)
                    .await?;
            for d in found {
                now.insert((a, d.id.0), (d.contact_ids, d.closed_at.is_none()));
            }
        }
        let mut contact_ids: Vec<String> = Vec::with_capacity(keys.len());
        let mut open: Vec<bool> = Vec::with_capacity(keys.len());
        let mut affected: Vec<(i64, i64)> = Vec::new();
        for b in &before {
            affected.extend(b.contact_ids.iter().map(|c| (b.account_id, *c)));
        }
        for k in &keys {
            let (contacts, is_open) = now.get(k).cloned().unwrap_or_default();
            affected.extend(contacts.iter().map(|c| (k.0, *c)));
            // Arrays of arrays of different lengths do not bind: each as its text form.
            contact_ids.push(format!(
                "{{{}}}",
                contacts
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            open.push(is_open);
        }
        kernel::sql::query(
            "UPDATE contacts.deal_refs r SET contact_ids = x.c::bigint[], open = x.o
               FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bool[]) AS x(a, d, c, o)
              WHERE r.account_id = x.a AND r.deal_id = x.d",
        )
        .bind::<Array<BigInt>, _>(&accounts)
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<diesel::sql_types::Text>, _>(&contact_ids)
        .bind::<Array<Bool>, _>(&open)
        .execute(conn)
        .await?;
        affected.sort_unstable();
        affected.dedup();
        if !affected.is_empty() {
            let (accounts, contacts): (Vec<i64>, Vec<i64>) = affected.into_iter().unzip();
            kernel::sql::query(
                "UPDATE contacts.contacts c SET open_deals = (
                        SELECT count(*) FROM contacts.deal_refs d
                         WHERE d.account_id = c.account_id AND d.open AND d.contact_ids @> ARRAY[c.id])
                   FROM unnest($1::bigint[], $2::bigint[]) AS x(a, i)
                  WHERE c.account_id = x.a AND c.id = x.i",
            )
            .bind::<Array<BigInt>, _>(&accounts)
            .bind::<Array<BigInt>, _>(&contacts)
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

/// Whether the event can change a deal's contacts or whether it is open. A stage change changes
/// neither unless it enters or leaves a closing stage (won or lost, whose ids every pipeline
/// shares): most moves on a board are skipped without reading the deal. A deal created without
/// contacts links nobody either. An event it cannot read is handled as any other (the deal's
/// state is read).
fn may_change_links(event: &EventEnvelope) -> bool {
    if event.event_type == DealCreated::TYPE {
        // A deal created without contacts links nobody (yet: adding one is a DealUpdated).
        return event
            .decode::<DealCreated>()
            .map_or(true, |c| c.contact_ids.is_none_or(|ids| !ids.is_empty()));
    }
    if event.event_type != DealStageChanged::TYPE {
        return true;
    }
    event.decode::<DealStageChanged>().map_or(true, |m| {
        m.from_stage_id.is_closing() || m.to_stage_id.is_closing()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deals_api::{PipelineId, StageId};

    fn moved(from: i64, to: i64) -> EventEnvelope {
        let event = DealStageChanged {
            deal_id: DealId(7),
            pipeline_id: PipelineId(1),
            from_stage_id: StageId(from),
            to_stage_id: StageId(to),
            loss_reason_id: None,
            from_pipeline_id: None,
        };
        EventEnvelope::new(Caller::system(kernel::AccountId(1)), &event).unwrap()
    }

    #[test]
    fn only_moves_into_or_out_of_a_closing_stage_can_change_links() {
        assert!(!may_change_links(&moved(5, 6)));
        assert!(may_change_links(&moved(5, 142)));
        assert!(may_change_links(&moved(143, 5)));
        let mut unreadable = moved(5, 6);
        unreadable.version = 99;
        assert!(may_change_links(&unreadable));
    }

    #[test]
    fn only_deals_created_with_contacts_or_not_saying_can_change_links() {
        let created = |contact_ids: Option<Vec<i64>>| {
            let event = DealCreated {
                deal_id: DealId(7),
                name: "Order".into(),
                price: 0,
                pipeline_id: PipelineId(1),
                stage_id: StageId(5),
                responsible_user_id: kernel::UserId(1),
                tag_ids: vec![],
                contact_ids,
            };
            EventEnvelope::new(Caller::system(kernel::AccountId(1)), &event).unwrap()
        };
        assert!(!may_change_links(&created(Some(vec![]))));
        assert!(may_change_links(&created(Some(vec![3]))));
        // Written before events carried the contacts: not known, so handled.
        let mut legacy = created(Some(vec![]));
        legacy
            .payload
            .as_object_mut()
            .unwrap()
            .remove("contact_ids");
        assert!(may_change_links(&legacy));
    }
}
