//! Incoming: providers' webhooks checked and stored once, then processed by a job into contacts,
//! conversations, messages, incoming leads and delivery statuses.

use std::sync::Arc;

use chrono::Utc;
use deals_api::{DealFilter, ListSort, NewDeal, PipelineId, StageId, StageKind};
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Bytea, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::events::EventEnvelope;
use kernel::paging::PageRequest;
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, UserId};
use messaging_api::events::*;
use messaging_api::*;

use crate::provider::{Happening, InMessage};
use crate::service::{Inner, LiveChannel};

/// Letters and digits (Telegram's secret token allows `A-Za-z0-9_-`).
pub fn random_key(n: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[derive(QueryableByName)]
struct InboundRow {
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Nullable<Bytea>)]
    body: Option<Vec<u8>>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

#[derive(QueryableByName)]
struct DueRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    account_id: i64,
}

#[derive(QueryableByName)]
struct IdentityRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    contact_id: Option<i64>,
}

#[derive(QueryableByName)]
struct ConversationUpsert {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Bool)]
    created: bool,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Nullable<BigInt>)]
    deal_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    contact_id: Option<i64>,
}

#[derive(QueryableByName)]
struct StatusChanged {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    conversation_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    deal_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    contact_id: Option<i64>,
}

/// Attempts at one stored webhook before it is left as failed (with its error, for a look).
const MAX_INBOUND_ATTEMPTS: i32 = 10;

/// Namespace of the request keys (UUID v5) of the records messaging creates through other
/// modules: a contact per sender's identity, an incoming lead per provider message. Those
/// modules commit on their own, before messaging's transaction does; a crash in between and the
/// retry that follows find the record made the first time instead of making a second one.
const KEYS: uuid::Uuid = uuid::Uuid::from_u128(0x3c1d_52a0_8f4e_4b17_a6d9_0e2f_7b91_c5e4);

fn request_key(account: AccountId, what: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&KEYS, format!("{}|{what}", account.0).as_bytes())
}

impl Inner {
    pub(crate) async fn receive(&self, inbound: Inbound) -> AppResult<Received> {
        let channel = self
            .live_by_key(&inbound.webhook_key)
            .await?
            .filter(|c| c.row.provider() == inbound.provider)
            .ok_or_else(|| AppError::not_found("channel"))?;
        let authentic = match inbound.provider {
            Provider::Telegram => inbound
                .secret_token
                .as_deref()
                .is_some_and(|t| crate::crypto::same(t, &channel.secrets.secret_token)),
            _ => inbound.signature.as_deref().is_some_and(|s| {
                crate::crypto::meta_signature_ok(&channel.secrets.app_secret, &inbound.body, s)
            }),
        };
        if !authentic {
            return Err(AppError::unauthorized(match inbound.provider {
                Provider::Telegram => "missing or wrong X-Telegram-Bot-Api-Secret-Token",
                _ => "missing or wrong X-Hub-Signature-256",
            }));
        }
        if !channel.row.active {
            return Err(AppError::forbidden("this channel is switched off"));
        }
        let body: serde_json::Value = serde_json::from_slice(&inbound.body).map_err(|e| {
            AppError::new(ErrorCode::BadRequest, format!("the body is not JSON: {e}"))
        })?;
        if !crate::provider::well_formed(inbound.provider, &body) {
            return Err(AppError::new(
                ErrorCode::BadRequest,
                format!("not a {} webhook body", inbound.provider.as_str()),
            ));
        }
        let key = crate::provider::dedup_key(inbound.provider, &body, &inbound.body)
            .ok_or_else(|| AppError::new(ErrorCode::BadRequest, "no update id"))?;
        let mut conn = self.conn().await?;
        let stored = kernel::sql::query(
            "INSERT INTO messaging.inbound (account_id, channel_id, dedup_key, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (channel_id, dedup_key) DO NOTHING",
        )
        .bind::<BigInt, _>(channel.row.account_id)
        .bind::<BigInt, _>(channel.row.id)
        .bind::<Text, _>(&key)
        .bind::<Bytea, _>(&inbound.body)
        .execute(&mut conn)
        .await?;
        if stored == 1 {
            self.wake.notify_one();
        }
        Ok(if stored == 1 {
            Received::Stored
        } else {
            Received::Duplicate
        })
    }

    pub(crate) async fn verify_subscription(
        &self,
        provider: Provider,
        webhook_key: &str,
        mode: &str,
        verify_token: &str,
        challenge: &str,
    ) -> AppResult<String> {
        let channel = self
            .live_by_key(webhook_key)
            .await?
            .filter(|c| c.row.provider() == provider && provider != Provider::Telegram)
            .ok_or_else(|| AppError::not_found("channel"))?;
        if mode != "subscribe" || !crate::crypto::same(verify_token, &channel.secrets.verify_token)
        {
            return Err(AppError::forbidden("wrong hub.mode or hub.verify_token"));
        }
        Ok(challenge.to_string())
    }

    pub(crate) async fn take_due(&self, limit: i64) -> AppResult<Vec<Work>> {
        let requeue = self.settings.requeue_after.as_secs_f64();
        let mut conn = self.conn().await?;
        let inbound: Vec<DueRow> = kernel::sql::query(
            "UPDATE messaging.inbound SET status = 'queued', queued_at = now()
              WHERE id IN (SELECT id FROM messaging.inbound
                            WHERE (status = 'pending' AND due_at <= now())
                               OR (status = 'queued' AND queued_at < now() - make_interval(secs => $2))
                            ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
              RETURNING id, account_id",
        )
        .bind::<BigInt, _>(limit)
        .bind::<diesel::sql_types::Double, _>(requeue)
        .load(&mut conn)
        .await?;
        let sends: Vec<DueRow> = kernel::sql::query(
            "UPDATE messaging.conversations SET send_queued_at = now()
              WHERE id IN (SELECT id FROM messaging.conversations
                            WHERE send_at <= now()
                              AND (send_queued_at IS NULL OR send_queued_at < now() - make_interval(secs => $2))
                            ORDER BY send_at LIMIT $1 FOR UPDATE SKIP LOCKED)
              RETURNING id, account_id",
        )
        .bind::<BigInt, _>(limit)
        .bind::<diesel::sql_types::Double, _>(requeue)
        .load(&mut conn)
        .await?;
        let fetches: Vec<DueRow> = kernel::sql::query(
            "UPDATE messaging.attachments SET status = 'queued', queued_at = now()
              WHERE id IN (SELECT id FROM messaging.attachments
                            WHERE (status = 'pending' AND due_at <= now())
                               OR (status = 'queued' AND queued_at < now() - make_interval(secs => $2))
                            ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
              RETURNING id, account_id",
        )
        .bind::<BigInt, _>(limit)
        .bind::<diesel::sql_types::Double, _>(requeue)
        .load(&mut conn)
        .await?;
        let mut inbound = inbound;
        inbound.sort_by_key(|r| r.id);
        Ok(inbound
            .into_iter()
            .map(|r| Work::Inbound { id: r.id })
            .chain(fetches.into_iter().map(|r| Work::Fetch { id: r.id }))
            .chain(sends.into_iter().map(|r| Work::Send {
                account_id: AccountId(r.account_id),
                conversation_id: r.id,
            }))
            .collect())
    }

    pub(crate) async fn process_inbound(&self, id: i64) -> AppResult<()> {
        let row: Option<InboundRow> = {
            let mut conn = self.conn().await?;
            kernel::sql::query(
                "SELECT channel_id, body, status, attempts FROM messaging.inbound WHERE id = $1",
            )
            .bind::<BigInt, _>(id)
            .get_result(&mut conn)
            .await
            .optional()?
        };
        let Some(row) = row else { return Ok(()) };
        if row.status == "done" || row.status == "failed" {
            return Ok(());
        }
        let result = {
            let _permit = self
                .processing
                .acquire()
                .await
                .map_err(|_| AppError::internal("shutting down"))?;
            self.apply_inbound(&row).await
        };
        let mut conn = self.conn().await?;
        match &result {
            Ok(()) => {
                kernel::sql::query(
                    "UPDATE messaging.inbound SET status = 'done', processed_at = now(), error = NULL WHERE id = $1",
                )
                .bind::<BigInt, _>(id)
                .execute(&mut conn)
                .await?;
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                let permanent = kernel::inbox::is_permanent(e) || attempts >= MAX_INBOUND_ATTEMPTS;
                tracing::warn!(inbound = id, attempts, permanent, error = %e, "an incoming webhook could not be processed");
                let wait = 2f64.powi(attempts.min(10));
                kernel::sql::query(
                    "UPDATE messaging.inbound
                        SET status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END, attempts = $2, error = $4,
                            due_at = now() + make_interval(secs => $5), processed_at = CASE WHEN $3 THEN now() END
                      WHERE id = $1",
                )
                .bind::<BigInt, _>(id)
                .bind::<Integer, _>(attempts)
                .bind::<Bool, _>(permanent)
                .bind::<Text, _>(e.to_string())
                .bind::<diesel::sql_types::Double, _>(wait)
                .execute(&mut conn)
                .await?;
            }
        }
        Ok(())
    }

    async fn apply_inbound(&self, row: &InboundRow) -> AppResult<()> {
        let channel = self.live_by_id(row.channel_id).await?;
        let Some(body) = &row.body else { return Ok(()) };
        let body: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| AppError::new(ErrorCode::BadRequest, e.to_string()))?;
        let provider = channel.row.provider();
        for h in crate::provider::read(provider, &body, &channel.row.external_id) {
            match h {
                Happening::Message(m) => self.take_message(&channel, m).await?,
                Happening::Status {
                    external_id,
                    status,
                    error,
                } => {
                    self.take_status(&channel, &external_id, status, error)
                        .await?
                }
            }
        }
        Ok(())
    }

    /// The identity of the message's sender, with its contact (found by the messenger's id, by
    /// the same username or phone on another channel, by phone among contacts, or created).
    async fn identity(&self, channel: &LiveChannel, m: &InMessage) -> AppResult<(i64, i64)> {
        let cache_key = (channel.row.id, m.user.clone());
        if let Some(hit) = self.identities.get(&cache_key).await {
            return Ok(hit);
        }
        let account = AccountId(channel.row.account_id);
        let provider = channel.row.provider();
        let mut conn = self.conn().await?;
        let found: IdentityRow = kernel::sql::query(
            "INSERT INTO messaging.identities (account_id, channel_id, provider, external_user_id, name, username, phone)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (channel_id, external_user_id) DO UPDATE
                SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE identities.name END,
                    username = CASE WHEN EXCLUDED.username <> '' THEN EXCLUDED.username ELSE identities.username END,
                    phone = CASE WHEN EXCLUDED.phone <> '' THEN EXCLUDED.phone ELSE identities.phone END
             RETURNING id, contact_id",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(channel.row.id)
        .bind::<Text, _>(provider.as_str())
        .bind::<Text, _>(&m.user)
        .bind::<Text, _>(&m.name)
        .bind::<Text, _>(&m.username)
        .bind::<Text, _>(&m.phone)
        .get_result(&mut conn)
        .await?;
        if let Some(contact) = found.contact_id {
            self.identities.insert(cache_key, (found.id, contact)).await;
            return Ok((found.id, contact));
        }
        // One worker finds or creates the contact; another one waits for it on the row lock.
        let identity = found.id;
        let contact = conn
            .transaction::<i64, AppError, _>(async |tx| {
                let locked: IdentityRow = kernel::sql::query(
                    "SELECT id, contact_id FROM messaging.identities WHERE id = $1 FOR UPDATE",
                )
                .bind::<BigInt, _>(identity)
                .get_result(tx)
                .await?;
                if let Some(c) = locked.contact_id {
                    return Ok(c);
                }
                let contact = self
                    .find_or_create_contact(tx, channel, m, identity)
                    .await?;
                kernel::sql::query("UPDATE messaging.identities SET contact_id = $2 WHERE id = $1")
                    .bind::<BigInt, _>(identity)
                    .bind::<BigInt, _>(contact)
                    .execute(tx)
                    .await?;
                Ok(contact)
            })
            .await?;
        self.identities.insert(cache_key, (identity, contact)).await;
        Ok((identity, contact))
    }

    async fn find_or_create_contact(
        &self,
        tx: &mut AsyncPgConnection,
        channel: &LiveChannel,
        m: &InMessage,
        identity: i64,
    ) -> AppResult<i64> {
        let account = AccountId(channel.row.account_id);
        let provider = channel.row.provider();
        #[derive(QueryableByName)]
        struct C {
            #[diesel(sql_type = BigInt)]
            contact_id: i64,
        }
        // The same person on another channel of the account: by username (Telegram's are
        // global) or by phone.
        let known: Option<C> = kernel::sql::query(
            "SELECT contact_id FROM messaging.identities
              WHERE account_id = $1 AND contact_id IS NOT NULL
                AND (($2 <> '' AND provider = $3 AND lower(username) = lower($2)) OR ($4 <> '' AND phone = $4))
              ORDER BY id LIMIT 1",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(&m.username)
        .bind::<Text, _>(provider.as_str())
        .bind::<Text, _>(&m.phone)
        .get_result(tx)
        .await
        .optional()?;
        if let Some(k) = known {
            return Ok(k.contact_id);
        }
        let system = Caller::system(account);
        let phone = (!m.phone.is_empty()).then(|| format!("+{}", m.phone));
        if let Some(p) = &phone {
            let same = self
                .contacts
                .duplicates(system, vec![p.clone()], Vec::new(), None)
                .await
                .unwrap_or_default();
            if let Some(c) = <[_]>::first(&same) {
                return Ok(c.contact_id.0);
            }
        }
        let (first, last) = match m.name.trim() {
            "" if !m.username.is_empty() => (format!("@{}", m.username), String::new()),
            "" => (
                format!("{} {}", provider_title(provider), m.user),
                String::new(),
            ),
            n => match n.split_once(' ') {
                Some((f, l)) => (f.to_string(), l.trim().to_string()),
                None => (n.to_string(), String::new()),
            },
        };
        let created = self
            .contacts
            .create_contact(
                system.caused_by(request_key(account, &format!("contact|{identity}"))),
                contacts_api::NewContact {
                    first_name: first,
                    last_name: last,
                    position: String::new(),
                    responsible_user_id: Some(UserId(channel.row.responsible_user_id)),
                    phones: phone
                        .map(|p| {
                            vec![contacts_api::Reach {
                                value: p,
                                kind: "MOB".into(),
                            }]
                        })
                        .unwrap_or_default(),
                    emails: Vec::new(),
                    tags: vec![provider_title(provider).to_string()],
                    custom_fields: Default::default(),
                    company_ids: Vec::new(),
                },
            )
            .await?;
        Ok(created.id.0)
    }

    async fn take_message(&self, channel: &Arc<LiveChannel>, m: InMessage) -> AppResult<()> {
        let has_files = !m.attachments.is_empty();
        let account = AccountId(channel.row.account_id);
        let provider = channel.row.provider();
        let (identity, contact) = self.identity(channel, &m).await?;
        let title = if m.name.is_empty() {
            m.username.clone()
        } else {
            m.name.clone()
        };
        let handle = if !m.username.is_empty() {
            format!("@{}", m.username)
        } else if !m.phone.is_empty() {
            format!("+{}", m.phone)
        } else {
            m.user.clone()
        };
        let mut conn = self.conn().await?;
        conn.transaction::<(), AppError, _>(async |tx| {
            let conversation: ConversationUpsert = kernel::sql::query(
                "INSERT INTO messaging.conversations (account_id, channel_id, identity_id, external_chat, contact_id, title, handle,
                                                     assigned_user_id, last_message_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (channel_id, external_chat) DO UPDATE
                    SET title = CASE WHEN EXCLUDED.title <> '' THEN EXCLUDED.title ELSE conversations.title END,
                        contact_id = COALESCE(conversations.contact_id, EXCLUDED.contact_id)
                 RETURNING id, (xmax = 0) AS created",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(channel.row.id)
            .bind::<BigInt, _>(identity)
            .bind::<Text, _>(&m.chat)
            .bind::<BigInt, _>(contact)
            .bind::<Text, _>(&title)
            .bind::<Text, _>(&handle)
            .bind::<BigInt, _>(channel.row.responsible_user_id)
            .bind::<Timestamptz, _>(m.at)
            .get_result(tx)
            .await?;
            let conversation_id = conversation.id;
            let inserted: Option<crate::rows::IdRow> = kernel::sql::query(
                "INSERT INTO messaging.messages (account_id, channel_id, conversation_id, direction, text, status, external_id, created_at)
                 VALUES ($1, $2, $3, 'in', $4, 'received', $5, $6)
                 ON CONFLICT (channel_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
                 RETURNING id",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(channel.row.id)
            .bind::<BigInt, _>(conversation_id)
            .bind::<Text, _>(&m.text)
            .bind::<Text, _>(&m.external_id)
            .bind::<Timestamptz, _>(m.at.min(Utc::now()))
            .get_result(tx)
            .await
            .optional()?;
            // The same provider message again: nothing changes.
            let Some(message) = inserted else { return Ok(()) };
            for a in &m.attachments {
                kernel::sql::query(
                    "INSERT INTO messaging.attachments (account_id, message_id, kind, file_name, mime_type, size,
                                                       provider_ref, status, due_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', now())",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(message.id)
                .bind::<Text, _>(&a.kind)
                .bind::<Text, _>(&a.file_name)
                .bind::<Text, _>(&a.mime_type)
                .bind::<Nullable<BigInt>, _>(a.size)
                .bind::<Text, _>(&a.reference)
                .execute(tx)
                .await?;
            }
            let locked: Locked = kernel::sql::query(
                "SELECT deal_id, contact_id FROM messaging.conversations WHERE id = $1 FOR UPDATE",
            )
            .bind::<BigInt, _>(conversation_id)
            .get_result(tx)
            .await?;
            let contact = locked.contact_id.unwrap_or(contact);
            let system = Caller::system(account);
            let mut events = Vec::new();
            let mut deal_id = locked.deal_id;
            let mut assigned = None;
            if deal_id.is_none() {
                // The incoming lead this provider message made in an attempt that did not
                // commit, if any; else the contact's open deal; else a new incoming lead.
                let key = request_key(
                    account,
                    &format!("lead|{}|{}", channel.row.id, m.external_id),
                );
                let made_before = self.deals.requested_deal(system, key).await?;
                let open = match made_before {
                    Some(_) => None,
                    None => self.open_deal_of(system, contact).await?,
                };
                if let Some(d) = open {
                    deal_id = Some(d.id.0);
                    assigned = Some(d.responsible_user_id.0);
                } else {
                    let lead = match made_before {
                        Some(lead) => lead,
                        None => {
                            self.incoming_lead(
                                system.caused_by(key),
                                channel,
                                contact,
                                &title,
                                &handle,
                            )
                                .await?
                        }
                    };
                    deal_id = Some(lead.id.0);
                    assigned = Some(lead.responsible_user_id.0);
                    events.push(EventEnvelope::new(
                        system,
                        &IncomingLeadCreated {
                            deal_id: lead.id.0,
                            conversation_id,
                            contact_id: Some(contact),
                            pipeline_id: lead.pipeline_id.0,
                            channel: provider.as_str().into(),
                            responsible_user_id: lead.responsible_user_id.0,
                        },
                    )?);
                }
            }
            kernel::sql::query(
                "UPDATE messaging.conversations
                    SET unread = unread + 1, last_text = $2, last_message_at = greatest(last_message_at, $3),
                        last_incoming_at = greatest(last_incoming_at, $3), deal_id = $4,
                        assigned_user_id = COALESCE($5, assigned_user_id), contact_id = $6
                  WHERE id = $1",
            )
            .bind::<BigInt, _>(conversation_id)
            .bind::<Text, _>(preview(&m.label()))
            .bind::<Timestamptz, _>(m.at.min(Utc::now()))
            .bind::<Nullable<BigInt>, _>(deal_id)
            .bind::<Nullable<BigInt>, _>(assigned)
            .bind::<BigInt, _>(contact)
            .execute(tx)
            .await?;
            if conversation.created {
                events.insert(
                    0,
                    EventEnvelope::new(
                        system,
                        &ConversationStarted {
                            conversation_id,
                            channel_id: channel.row.id,
                            channel: provider.as_str().into(),
                            contact_id: Some(contact),
                            deal_id,
                        },
                    )?,
                );
            }
            events.push(EventEnvelope::new(
                system,
                &MessageReceived {
                    message_id: message.id,
                    conversation_id,
                    deal_id,
                    contact_id: Some(contact),
                    text: m.label(),
                    channel: provider.as_str().into(),
                },
            )?);
            kernel::outbox::append(tx, crate::SCHEMA, &events).await?;
            Ok(())
        })
        .await?;
        if has_files {
            // Files to download.
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The contact's most recent open deal.
    async fn open_deal_of(
        &self,
        system: Caller,
        contact: i64,
    ) -> AppResult<Option<deals_api::Deal>> {
        let page = self
            .deals
            .list(
                system,
                &DealFilter {
                    contact: Some(contact),
                    ..Default::default()
                },
                ListSort::default(),
                true,
                PageRequest::new(None, Some(50)),
            )
            .await?;
        Ok(page.items.into_iter().find(|d| d.closed_at.is_none()))
    }

    /// A deal in the channel's pipeline's incoming stage (amoCRM's unsorted lead).
    async fn incoming_lead(
        &self,
        caller: Caller,
        channel: &LiveChannel,
        contact: i64,
        title: &str,
        handle: &str,
    ) -> AppResult<deals_api::Deal> {
        let account = AccountId(channel.row.account_id);
        let system = Caller::system(account);
        let pipeline = self
            .deals
            .pipeline(system, PipelineId(channel.row.pipeline_id))
            .await?;
        let stage: Option<StageId> = pipeline
            .stages
            .iter()
            .find(|s| s.kind == StageKind::Incoming)
            .map(|s| s.id);
        let who = if title.is_empty() { handle } else { title };
        let mut new = NewDeal::new(
            pipeline.id,
            format!("{}: {who}", provider_title(channel.row.provider())),
        );
        new.stage_id = stage;
        new.responsible_user_id = Some(UserId(channel.row.responsible_user_id));
        new.contact_ids = vec![contact];
        new.main_contact_id = Some(contact);
        self.deals.create_deal(caller, new).await
    }

    async fn take_status(
        &self,
        channel: &LiveChannel,
        external_id: &str,
        status: MessageStatus,
        error: Option<String>,
    ) -> AppResult<()> {
        let account = AccountId(channel.row.account_id);
        let mut conn = self.conn().await?;
        conn.transaction::<(), AppError, _>(async |tx| {
            // Forward only: sent < delivered < read; failed ends it (but never after read).
            let changed: Option<StatusChanged> = kernel::sql::query(
                "UPDATE messaging.messages m SET status = $3, error = COALESCE($4, m.error)
                   FROM messaging.conversations c
                  WHERE m.channel_id = $1 AND m.external_id = $2 AND m.direction = 'out' AND c.id = m.conversation_id
                    AND m.status <> 'failed'
                    AND (($3 = 'failed' AND m.status <> 'read')
                      OR ($3 <> 'failed' AND array_position(ARRAY['queued','sending','sent','delivered','read'], m.status)
                                           < array_position(ARRAY['queued','sending','sent','delivered','read'], $3::text)))
                  RETURNING m.id, m.conversation_id, c.deal_id, c.contact_id",
            )
            .bind::<BigInt, _>(channel.row.id)
            .bind::<Text, _>(external_id)
            .bind::<Text, _>(status.as_str())
            .bind::<Nullable<Text>, _>(&error)
            .get_result(tx)
            .await
            .optional()?;
            if let (Some(c), MessageStatus::Failed) = (changed, status) {
                let event = EventEnvelope::new(
                    Caller::system(account),
                    &MessageFailed {
                        message_id: c.id,
                        conversation_id: c.conversation_id,
                        deal_id: c.deal_id,
                        contact_id: c.contact_id,
                        reason: error.unwrap_or_else(|| "the provider reported a failure".into()),
                    },
                )?;
                kernel::outbox::append(tx, crate::SCHEMA, &[event]).await?;
            }
            Ok(())
        })
        .await
    }
}

pub(crate) fn provider_title(p: Provider) -> &'static str {
    match p {
        Provider::Telegram => "Telegram",
        Provider::Whatsapp => "WhatsApp",
        Provider::Instagram => "Instagram",
    }
}

/// The first line of a message, short enough for a list.
pub(crate) fn preview(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    s
}
