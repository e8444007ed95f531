//! In-app notifications (the bell): a new incoming lead, a client's message on my deal, a task
//! falling due, a deal handed to me. One unread notification per subject is kept and refreshed,
//! so a chatty client makes one line, not fifty. The same subscriber keeps conversations
//! assigned to their deal's responsible user.

use activities_api::EntityKind;
use activities_api::events::TaskDue;
use async_trait::async_trait;
use deals_api::events::DealResponsibleChanged;
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::AppResult;
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::Subscriber;
use messaging_api::NotificationKind;
use messaging_api::events::{IncomingLeadCreated, MessageReceived};

pub struct Notifier;

pub(crate) const EVENTS: &[&str] = &[
    IncomingLeadCreated::TYPE,
    MessageReceived::TYPE,
    TaskDue::TYPE,
    DealResponsibleChanged::TYPE,
];

#[derive(QueryableByName)]
struct Conv {
    #[diesel(sql_type = BigInt)]
    assigned_user_id: i64,
    #[diesel(sql_type = Text)]
    title: String,
    #[diesel(sql_type = Text)]
    handle: String,
}

async fn conversation(conn: &mut AsyncPgConnection, id: i64) -> AppResult<Option<Conv>> {
    Ok(kernel::sql::query(
        "SELECT assigned_user_id, title, handle FROM messaging.conversations WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .get_result(conn)
    .await
    .optional()?)
}

/// Adds or refreshes the user's unread notification about `about`.
async fn notify(
    conn: &mut AsyncPgConnection,
    event: &EventEnvelope,
    user: i64,
    kind: NotificationKind,
    about: &str,
    text: &str,
    link: &str,
) -> AppResult<()> {
    if user <= 0
        || event.actor.user_id().is_some_and(|u| u.0 == user)
        || matches!(event.actor, kernel::Actor::System { import: true })
    {
        // Nobody to tell, the user did it himself, or an import brought it over.
        return Ok(());
    }
    kernel::sql::query(
        "INSERT INTO messaging.notifications (account_id, user_id, kind, about, text, link)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account_id, user_id, about) WHERE read_at IS NULL
         DO UPDATE SET kind = EXCLUDED.kind, text = EXCLUDED.text, link = EXCLUDED.link, created_at = now()",
    )
    .bind::<BigInt, _>(event.account_id.0)
    .bind::<BigInt, _>(user)
    .bind::<Text, _>(kind.as_str())
    .bind::<Text, _>(about)
    .bind::<Text, _>(text)
    .bind::<Text, _>(link)
    .execute(conn)
    .await?;
    Ok(())
}

fn who(c: &Conv) -> &str {
    if c.title.is_empty() {
        &c.handle
    } else {
        &c.title
    }
}

#[async_trait]
impl Subscriber for Notifier {
    fn name(&self) -> &str {
        "messaging.notifications"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENTS
    }

    async fn handle(&self, conn: &mut AsyncPgConnection, event: &EventEnvelope) -> AppResult<()> {
        let t = event.event_type.as_str();
        if t == IncomingLeadCreated::TYPE {
            let e: IncomingLeadCreated = event.decode()?;
            let name = conversation(conn, e.conversation_id)
                .await?
                .map(|c| who(&c).to_string())
                .unwrap_or_default();
            notify(
                conn,
                event,
                e.responsible_user_id,
                NotificationKind::IncomingLead,
                &format!("lead:{}", e.deal_id),
                &name,
                &format!("/inbox/{}", e.conversation_id),
            )
            .await?;
        } else if t == MessageReceived::TYPE {
            let e: MessageReceived = event.decode()?;
            if let Some(c) = conversation(conn, e.conversation_id).await? {
                let text = format!("{}: {}", who(&c), crate::inbound::preview(&e.text));
                notify(
                    conn,
                    event,
                    c.assigned_user_id,
                    NotificationKind::Message,
                    &format!("conversation:{}", e.conversation_id),
                    &text,
                    &format!("/inbox/{}", e.conversation_id),
                )
                .await?;
            }
        } else if t == TaskDue::TYPE {
            let e: TaskDue = event.decode()?;
            let link = match e.entity {
                Some(r) if r.kind == EntityKind::Deal => format!("/deals/{}", r.id),
                Some(r) if r.kind == EntityKind::Contact => format!("/contacts/{}", r.id),
                Some(r) => format!("/companies/{}", r.id),
                None => "/tasks".to_string(),
            };
            notify(
                conn,
                event,
                e.responsible_user_id.0,
                NotificationKind::TaskDue,
                &format!("task:{}", e.task_id.0),
                &e.text,
                &link,
            )
            .await?;
        } else if t == DealResponsibleChanged::TYPE {
            let e: DealResponsibleChanged = event.decode()?;
            kernel::sql::query(
                "UPDATE messaging.conversations SET assigned_user_id = $3 WHERE account_id = $1 AND deal_id = $2",
            )
            .bind::<BigInt, _>(event.account_id.0)
            .bind::<BigInt, _>(e.deal_id.0)
            .bind::<BigInt, _>(e.to_user_id.0)
            .execute(&mut *conn)
            .await?;
            notify(
                conn,
                event,
                e.to_user_id.0,
                NotificationKind::Assigned,
                &format!("assigned:{}", e.deal_id.0),
                &format!("#{}", e.deal_id.0),
                &format!("/deals/{}", e.deal_id.0),
            )
            .await?;
        }
        Ok(())
    }
}
