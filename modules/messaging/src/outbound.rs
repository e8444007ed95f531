//! Outgoing: messages are queued in the conversation, then a job worker sends a conversation's
//! queue in order — paced per channel and per chat, retried after `retry_after` or a backoff when
//! the provider says "later", failed with the provider's reason when it says "never". A message
//! is handed to the provider at most once: one found half-sent after a crash is failed, not
//! repeated.

use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use kernel::events::EventEnvelope;
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode};
use messaging_api::events::{MessageFailed, MessageSent};
use messaging_api::*;

use crate::provider::{Endpoint, OutFile, Outgoing, SendOutcome};
use crate::rows::IdRow;
use crate::service::{Inner, field_error};

#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Text)]
    external_chat: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_incoming_at: Option<chrono::DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    deal_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    contact_id: Option<i64>,
}

#[derive(QueryableByName)]
struct Next {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    text: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    template: Option<serde_json::Value>,
    #[diesel(sql_type = Jsonb)]
    buttons: serde_json::Value,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<BigInt>)]
    author_user_id: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    has_file: bool,
}

/// Messages one job sends before it hands the conversation back (others get their turn).
const PER_TURN: usize = 100;
const TURN: Duration = Duration::from_secs(60);
/// How long a worker holds a conversation without news (a crashed worker's hold expires).
const HOLD_SECS: f64 = 90.0;

#[derive(QueryableByName)]
struct SlotWait {
    #[diesel(sql_type = diesel::sql_types::Double)]
    secs: f64,
}

impl Inner {
    /// Takes the channel's next send slot, shared by all processes (sends spaced 3 % over
    /// 1/`rate` apart, as the in-process limiter spaces them): how long to wait for it. Times
    /// are the database's, so the processes' clocks need not agree.
    async fn channel_slot(&self, channel: i64, rate: i32) -> AppResult<Duration> {
        let spacing = crate::service::Pacing::spacing(rate).as_secs_f64();
        let mut conn = self.conn().await?;
        let w: SlotWait = kernel::sql::query(
            "INSERT INTO messaging.channel_pace AS p (channel_id, next_at)
             VALUES ($1, clock_timestamp() + make_interval(secs => $2))
             ON CONFLICT (channel_id) DO UPDATE
                SET next_at = greatest(p.next_at, clock_timestamp()) + make_interval(secs => $2)
             RETURNING greatest(0, extract(epoch FROM p.next_at - clock_timestamp()) - $2)::float8 AS secs",
        )
        .bind::<BigInt, _>(channel)
        .bind::<diesel::sql_types::Double, _>(spacing)
        .get_result(&mut conn)
        .await?;
        Ok(Duration::from_secs_f64(w.secs.clamp(0.0, 60.0)))
    }

    /// Queues a message on a conversation (the caller's access is checked by the caller).
    pub(crate) async fn queue(
        &self,
        caller: Caller,
        conversation: i64,
        message: OutgoingMessage,
    ) -> AppResult<Queued> {
        let text = message.text.trim().to_string();
        let file = message
            .file
            .as_ref()
            .map(|f| crate::files::checked_upload(f, &text))
            .transpose()?;
        if file.is_some() && message.template.is_some() {
            return Err(AppError::validation(
                "file",
                "unsupported",
                "a template message carries no file",
            ));
        }
        let mut errors = Vec::new();
        if message.template.is_none() && text.is_empty() && file.is_none() {
            errors.push(field_error("text", "required", "write a message"));
        }
        if text.chars().count() > 4096 {
            errors.push(field_error("text", "too_long", "at most 4096 characters"));
        }
        if message.buttons.len() > 10
            || message
                .buttons
                .iter()
                .any(|b| b.trim().is_empty() || b.chars().count() > 64)
        {
            errors.push(field_error(
                "buttons",
                "invalid",
                "up to 10 buttons of 1 to 64 characters",
            ));
        }
        if let Some(t) = &message.template
            && t.name.trim().is_empty()
        {
            errors.push(field_error(
                "template",
                "required",
                "the WhatsApp template's name",
            ));
        }
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        let template = message
            .template
            .as_ref()
            .map(|t| serde_json::to_value(t).unwrap_or_default());
        let text = match (&message.template, text.is_empty()) {
            (Some(t), true) => format!("[{}]", t.name),
            _ => text,
        };
        let author = caller.actor.user_id().map(|u| u.0);
        let robot = match caller.actor {
            kernel::Actor::Robot { id } => Some(id),
            _ => None,
        };
        let mut conn = self.conn().await?;
        conn.transaction::<Queued, AppError, _>(async |tx| {
            #[derive(QueryableByName)]
            struct Conv {
                #[diesel(sql_type = BigInt)]
                channel_id: i64,
                #[diesel(sql_type = Text)]
                provider: String,
            }
            let conv: Conv = kernel::sql::query(
                "SELECT c.channel_id, ch.provider FROM messaging.conversations c
                   JOIN messaging.channels ch ON ch.id = c.channel_id
                  WHERE c.account_id = $1 AND c.id = $2",
            )
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(conversation)
            .get_result(tx)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("conversation"))?;
            if message.template.is_some() && conv.provider != Provider::Whatsapp.as_str() {
                return Err(AppError::validation(
                    "template",
                    "unsupported",
                    "template messages are WhatsApp's; write a text instead",
                ));
            }
            // Instagram's attachments carry no text: the caption follows as a message of its own.
            let caption_apart =
                file.is_some() && !text.is_empty() && conv.provider == Provider::Instagram.as_str();
            let insert = |text: &str, buttons: &[String], key: Option<uuid::Uuid>| {
                kernel::sql::query(
                    "INSERT INTO messaging.messages (account_id, channel_id, conversation_id, direction, text, status,
                                                    author_user_id, robot_id, template, buttons, idempotency_key)
                     VALUES ($1, $2, $3, 'out', $4, 'queued', $5, $6, $7, $8, $9)
                     ON CONFLICT (idempotency_key) DO NOTHING
                     RETURNING id",
                )
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(conv.channel_id)
                .bind::<BigInt, _>(conversation)
                .bind::<Text, _>(text.to_string())
                .bind::<Nullable<BigInt>, _>(author)
                .bind::<Nullable<BigInt>, _>(robot)
                .bind::<Nullable<Jsonb>, _>(template.clone())
                .bind::<Jsonb, _>(serde_json::json!(buttons))
                .bind::<Nullable<SqlUuid>, _>(key)
            };
            let (first_text, first_buttons) = if caption_apart {
                ("", &[][..])
            } else {
                (text.as_str(), &message.buttons[..])
            };
            let inserted: Option<IdRow> = insert(first_text, first_buttons, message.key)
                .get_result(tx)
                .await
                .optional()?;
            let id = match inserted {
                Some(r) => r.id,
                None => {
                    // Asked before with the same key: the message queued then.
                    let existing: IdRow = kernel::sql::query(
                        "SELECT id FROM messaging.messages WHERE idempotency_key = $1 AND account_id = $2",
                    )
                    .bind::<Nullable<SqlUuid>, _>(message.key)
                    .bind::<BigInt, _>(caller.account_id.0)
                    .get_result(tx)
                    .await
                    .optional()?
                    .ok_or_else(|| AppError::new(ErrorCode::Conflict, "the idempotency key belongs to another account"))?;
                    return Ok(Queued {
                        message_id: existing.id,
                        conversation_id: conversation,
                    });
                }
            };
            if let Some(f) = &file {
                use sha2::Digest;
                kernel::sql::query(
                    "INSERT INTO messaging.attachments (account_id, message_id, kind, file_name, mime_type, size,
                                                       status, sha256, content)
                     VALUES ($1, $2, $3, $4, $5, $6, 'stored', $7, $8)",
                )
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(id)
                .bind::<Text, _>(crate::files::kind_of(&f.mime_type))
                .bind::<Text, _>(&f.file_name)
                .bind::<Text, _>(&f.mime_type)
                .bind::<BigInt, _>(f.content.len() as i64)
                .bind::<Text, _>(crate::crypto::hex(&sha2::Sha256::digest(&f.content)))
                .bind::<diesel::sql_types::Bytea, _>(&f.content)
                .execute(tx)
                .await?;
            }
            if caption_apart {
                let key = message
                    .key
                    .map(|k| uuid::Uuid::new_v5(&k, b"caption"));
                insert(&text, &message.buttons, key).execute(tx).await?;
            }
            let shown = match &file {
                Some(f) if text.is_empty() => format!("[{}]", crate::files::kind_of(&f.mime_type)),
                _ => text.clone(),
            };
            kernel::sql::query(
                "UPDATE messaging.conversations
                    SET send_at = COALESCE(send_at, now()), last_message_at = now(), last_text = $2
                  WHERE id = $1",
            )
            .bind::<BigInt, _>(conversation)
            .bind::<Text, _>(crate::inbound::preview(&shown))
            .execute(tx)
            .await?;
            Ok(Queued {
                message_id: id,
                conversation_id: conversation,
            })
        })
        .await
        .inspect(|_| self.wake.notify_one())
    }

    /// Sends a conversation's queued messages in order (one worker at a time per conversation).
    pub(crate) async fn send_queued(&self, account: AccountId, conversation: i64) -> AppResult<()> {
        let held: Option<Held> = {
            let mut conn = self.conn().await?;
            kernel::sql::query(
                "UPDATE messaging.conversations SET sending_until = now() + make_interval(secs => $3)
                  WHERE account_id = $1 AND id = $2 AND (sending_until IS NULL OR sending_until < now())
                  RETURNING channel_id, external_chat, last_incoming_at, deal_id, contact_id",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(conversation)
            .bind::<diesel::sql_types::Double, _>(HOLD_SECS)
            .get_result(&mut conn)
            .await
            .optional()?
        };
        // Another worker holds it (it hands it back when done).
        let Some(held) = held else { return Ok(()) };
        let result = self.send_turn(account, conversation, &held).await;
        let later = match &result {
            Ok(later) => *later,
            Err(_) => Some(self.settings.retry_base),
        };
        self.hand_back(conversation, later).await?;
        result.map(|_| ())
    }

    /// Sends until the queue is empty, the turn is over, or the provider says "later" (the
    /// wait is returned).
    async fn send_turn(
        &self,
        account: AccountId,
        conversation: i64,
        held: &Held,
    ) -> AppResult<Option<Duration>> {
        let started = Instant::now();
        for _ in 0..PER_TURN {
            if started.elapsed() > TURN {
                return Ok(Some(Duration::ZERO));
            }
            let next: Option<Next> = {
                let mut conn = self.conn().await?;
                kernel::sql::query(
                    "SELECT id, text, status, template, buttons, attempts, author_user_id,
                            EXISTS (SELECT 1 FROM messaging.attachments a WHERE a.message_id = m.id) AS has_file
                       FROM messaging.messages m
                      WHERE conversation_id = $1 AND status IN ('queued', 'sending') ORDER BY id LIMIT 1",
                )
                .bind::<BigInt, _>(conversation)
                .get_result(&mut conn)
                .await
                .optional()?
            };
            let Some(m) = next else { return Ok(None) };
            if m.status == "sending" {
                self.fail(account, conversation, held, m.id,
                    "the send was interrupted and its outcome is unknown; it is not repeated, so the client never gets it twice").await?;
                continue;
            }
            let channel = self.live_by_id(held.channel_id).await?;
            let provider = channel.row.provider();
            if !channel.row.active {
                self.fail(
                    account,
                    conversation,
                    held,
                    m.id,
                    "the channel is switched off",
                )
                .await?;
                continue;
            }
            if let Some(e) = &channel.row.error {
                self.fail(
                    account,
                    conversation,
                    held,
                    m.id,
                    &format!("the channel needs attention: {e}"),
                )
                .await?;
                continue;
            }
            let template: Option<TemplateSend> = m
                .template
                .clone()
                .and_then(|t| serde_json::from_value(t).ok());
            let window_open = held
                .last_incoming_at
                .is_some_and(|t| Utc::now() - t < chrono::Duration::hours(24));
            if provider.has_window() && template.is_none() && !window_open {
                self.fail(account, conversation, held, m.id,
                    "outside the 24-hour window: the client has not written in the last 24 hours; send a template").await?;
                continue;
            }
            {
                // Marked as being sent, and the hold on the conversation renewed, in one trip.
                let mut conn = self.conn().await?;
                let marked = kernel::sql::query(
                    "WITH m AS (UPDATE messaging.messages SET status = 'sending', attempts = attempts + 1
                                 WHERE id = $1 AND status = 'queued' RETURNING conversation_id)
                     UPDATE messaging.conversations SET sending_until = now() + make_interval(secs => $2)
                      WHERE id IN (SELECT conversation_id FROM m)",
                )
                .bind::<BigInt, _>(m.id)
                .bind::<diesel::sql_types::Double, _>(HOLD_SECS)
                .execute(&mut conn)
                .await?;
                if marked == 0 {
                    continue;
                }
            }
            // Pacing: the chat's, then the channel's rate — last, right before the call, so nothing
            // (a wait for a connection) can bunch sends up between the permit and the provider.
            self.pacing.chats.until_key_ready(&conversation).await;
            self.pacing
                .channel(channel.row.id, channel.row.rate_per_second)
                .until_ready()
                .await;
            // Across processes: the channel's next free slot, kept in the database. With one
            // process sending, the slot is already due; with several, they take turns.
            let wait = self
                .channel_slot(channel.row.id, channel.row.rate_per_second)
                .await?;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let buttons: Vec<String> =
                serde_json::from_value(m.buttons.clone()).unwrap_or_default();
            // Only a message with a file costs a lookup more.
            let file = match m.has_file {
                true => self
                    .attachments_of(&[m.id])
                    .await?
                    .remove(&m.id)
                    .and_then(|mut a| a.pop()),
                false => None,
            };
            let link = match &file {
                Some(f) => match self.file_link(f.id, &f.file_name) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        self.fail(account, conversation, held, m.id, &e.message)
                            .await?;
                        continue;
                    }
                },
                None => None,
            };
            let out_file = file.as_ref().zip(link.as_deref()).map(|(f, url)| OutFile {
                url,
                file_name: &f.file_name,
                mime_type: &f.mime_type,
                as_photo: crate::provider::sendable_as_photo(
                    &f.mime_type,
                    f.size.unwrap_or(0) as usize,
                ),
            });
            let outcome = crate::provider::send(
                &self.http,
                &Endpoint {
                    provider,
                    base_url: &channel.row.base_url,
                    api_version: &channel.row.api_version,
                    external_id: &channel.row.external_id,
                    token: &channel.secrets.token,
                },
                &Outgoing {
                    chat: &held.external_chat,
                    text: &m.text,
                    template: template.as_ref(),
                    buttons: &buttons,
                    file: out_file,
                },
            )
            .await;
            match outcome {
                SendOutcome::Sent(external) => {
                    self.sent(account, conversation, held, &m, &external, provider)
                        .await?;
                }
                SendOutcome::Retry { after, reason } => {
                    let attempts = m.attempts + 1;
                    if attempts >= self.settings.max_send_attempts {
                        self.fail(
                            account,
                            conversation,
                            held,
                            m.id,
                            &format!("gave up after {attempts} attempts: {reason}"),
                        )
                        .await?;
                        continue;
                    }
                    let wait = after.unwrap_or_else(|| {
                        let base = self.settings.retry_base.as_millis() as u64;
                        let exp = base
                            .saturating_mul(1 << (attempts - 1).clamp(0, 16) as u64)
                            .min(300_000);
                        let jitter = rand::random_range(0..=exp / 4 + 1);
                        Duration::from_millis(exp + jitter)
                    });
                    let mut conn = self.conn().await?;
                    kernel::sql::query(
                        "UPDATE messaging.messages SET status = 'queued', error = $2 WHERE id = $1",
                    )
                    .bind::<BigInt, _>(m.id)
                    .bind::<Text, _>(&reason)
                    .execute(&mut conn)
                    .await?;
                    tracing::info!(conversation, message = m.id, wait_ms = wait.as_millis() as u64, %reason, "provider asked to wait");
                    return Ok(Some(wait));
                }
                SendOutcome::Failed {
                    reason,
                    channel: broken,
                } => {
                    if broken {
                        let mut conn = self.conn().await?;
                        kernel::sql::query(
                            "UPDATE messaging.channels SET error = $2 WHERE id = $1",
                        )
                        .bind::<BigInt, _>(channel.row.id)
                        .bind::<Text, _>(&reason)
                        .execute(&mut conn)
                        .await?;
                        self.forget_channel(&channel.row).await;
                    }
                    self.fail(account, conversation, held, m.id, &reason)
                        .await?;
                }
            }
        }
        Ok(Some(Duration::ZERO))
    }

    async fn sent(
        &self,
        account: AccountId,
        conversation: i64,
        held: &Held,
        m: &Next,
        external: &str,
        provider: Provider,
    ) -> AppResult<()> {
        let mut conn = self.conn().await?;
        conn.transaction::<(), AppError, _>(async |tx| {
            // The provider's id is unique per channel; should it ever repeat one, the message is
            // still sent (and kept without the id) rather than left half-done.
            kernel::sql::query(
                "UPDATE messaging.messages m
                    SET status = 'sent', sent_at = now(), error = NULL,
                        external_id = CASE WHEN EXISTS (SELECT 1 FROM messaging.messages o
                                                         WHERE o.channel_id = m.channel_id AND o.external_id = $2)
                                           THEN NULL ELSE $2 END
                  WHERE id = $1",
            )
            .bind::<BigInt, _>(m.id)
            .bind::<Text, _>(external)
            .execute(tx)
            .await?;
            let event = EventEnvelope::new(
                Caller::system(account),
                &MessageSent {
                    message_id: m.id,
                    conversation_id: conversation,
                    deal_id: held.deal_id,
                    contact_id: held.contact_id,
                    text: m.text.clone(),
                    channel: provider.as_str().into(),
                    author_user_id: m.author_user_id,
                },
            )?;
            kernel::outbox::append(tx, crate::SCHEMA, &[event]).await?;
            Ok(())
        })
        .await
    }

    async fn fail(
        &self,
        account: AccountId,
        conversation: i64,
        held: &Held,
        message: i64,
        reason: &str,
    ) -> AppResult<()> {
        tracing::info!(conversation, message, %reason, "message failed");
        let mut conn = self.conn().await?;
        conn.transaction::<(), AppError, _>(async |tx| {
            kernel::sql::query(
                "UPDATE messaging.messages SET status = 'failed', error = $2 WHERE id = $1",
            )
            .bind::<BigInt, _>(message)
            .bind::<Text, _>(reason)
            .execute(tx)
            .await?;
            let event = EventEnvelope::new(
                Caller::system(account),
                &MessageFailed {
                    message_id: message,
                    conversation_id: conversation,
                    deal_id: held.deal_id,
                    contact_id: held.contact_id,
                    reason: reason.to_string(),
                },
            )?;
            kernel::outbox::append(tx, crate::SCHEMA, &[event]).await?;
            Ok(())
        })
        .await
    }

    /// Releases the conversation: due again after `later` when told, at once when messages
    /// were queued meanwhile, else nothing to do.
    async fn hand_back(&self, conversation: i64, later: Option<Duration>) -> AppResult<()> {
        let mut conn = self.conn().await?;
        conn.transaction::<(), AppError, _>(async |tx| {
            // The lock waits for a send() that is queueing on this conversation right now.
            kernel::sql::query("SELECT id FROM messaging.conversations WHERE id = $1 FOR UPDATE")
                .bind::<BigInt, _>(conversation)
                .execute(tx)
                .await?;
            let wait = later.map(|d| d.as_secs_f64());
            kernel::sql::query(
                "UPDATE messaging.conversations
                    SET send_at = CASE
                            WHEN $2::float8 IS NOT NULL THEN now() + make_interval(secs => $2)
                            WHEN EXISTS (SELECT 1 FROM messaging.messages m
                                          WHERE m.conversation_id = $1 AND m.status IN ('queued', 'sending')) THEN now()
                        END,
                        send_queued_at = NULL, sending_until = NULL
                  WHERE id = $1",
            )
            .bind::<BigInt, _>(conversation)
            .bind::<Nullable<diesel::sql_types::Double>, _>(wait)
            .execute(tx)
            .await?;
            Ok(())
        })
        .await?;
        if later.is_some_and(|d| d.is_zero()) {
            self.wake.notify_one();
        }
        Ok(())
    }
}
