//! When contacts were last contacted, learned from the activities module's events: a call or an
//! SMS noted on a contact, on a company (its people), or on a deal (the deal's contacts, as
//! `deal_refs` knows them), moves their `last_contacted_at` forward (never back).

use activities_api::EntityKind;
use activities_api::events::NoteAdded;
use async_trait::async_trait;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::AppResult;
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;

/// Note types that are a conversation with the client.
const CONTACT_NOTES: [&str; 4] = ["call_in", "call_out", "sms_in", "sms_out"];

pub struct Contacted;

#[async_trait]
impl Subscriber for Contacted {
    fn name(&self) -> &str {
        "contacts.contacted"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[NoteAdded::TYPE]
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        let note: NoteAdded = event.decode()?;
        if !CONTACT_NOTES.contains(&note.note_type.as_str()) {
            return Ok(());
        }
        let who = match note.entity.kind {
            EntityKind::Contact => "SELECT $2::bigint AS id",
            EntityKind::Company => {
                "SELECT contact_id AS id FROM contacts.contact_companies WHERE account_id = $1 AND company_id = $2"
            }
            EntityKind::Deal => {
                "SELECT unnest(contact_ids) AS id FROM contacts.deal_refs WHERE account_id = $1 AND deal_id = $2"
            }
        };
        kernel::sql::query(format!(
            "UPDATE contacts.contacts SET last_contacted_at = $3
              WHERE account_id = $1 AND id IN ({who}) AND deleted_at IS NULL
                AND (last_contacted_at IS NULL OR last_contacted_at < $3)"
        ))
        .bind::<BigInt, _>(event.account_id.0)
        .bind::<BigInt, _>(note.entity.id)
        .bind::<Timestamptz, _>(event.occurred_at)
        .execute(conn)
        .await?;
        Ok(())
    }
}
