//! The messaging module's service: the `Messaging` trait over channels, conversations, messages,
//! templates and notifications. Webhooks are in `inbound`, sending in `outbound`.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts_api::{Accounts, Action, Entity};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contacts_api::Contacts;
use deals_api::Deals;
use diesel::OptionalExtension;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Integer, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use kernel::db::DbPool;
use kernel::paging::{Cursor, Page, PageRequest};
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode};
use messaging_api::*;

use crate::crypto::{Sealer, Secrets};
use crate::rows::*;

/// How the module behaves; `[messaging]` in config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Encrypts channel credentials at rest.
    pub credentials_key: [u8; 32],
    /// Work handed to a worker and not finished in this time (a lost job) is handed out again.
    pub requeue_after: Duration,
    /// One provider call's limit.
    pub send_timeout: Duration,
    /// Attempts at one message before it fails for good.
    pub max_send_attempts: i32,
    /// The first retry's wait when the provider gives none; it doubles, up to five minutes.
    pub retry_base: Duration,
    /// Days processed webhook bodies are kept.
    pub keep_days: i32,
    /// Messages to one chat: one per this interval, with bursts of `chat_burst` (Telegram's "one
    /// per second"; WhatsApp allows about one per 6 s to a pair, with bursts).
    pub chat_interval: Duration,
    pub chat_burst: u32,
    /// How long a user's view scope (whose conversations they see) is reused: set when the
    /// accounts module is another process's (one call less per request); `None` asks each time.
    pub scope_ttl: Option<Duration>,
    /// The address providers reach this server at: files sent to clients are fetched from
    /// links under it. `None`: files cannot be sent.
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            credentials_key: [0; 32],
            requeue_after: Duration::from_secs(120),
            send_timeout: Duration::from_secs(15),
            max_send_attempts: 10,
            retry_base: Duration::from_secs(2),
            keep_days: 7,
            chat_interval: Duration::from_secs(1),
            chat_burst: 3,
            scope_ttl: None,
            public_url: None,
        }
    }
}

/// Per-process pacing: one limiter per channel (its rate) and one keyed by conversation (the
/// channel's rate across processes is kept by its slot row, `Inner::channel_slot`).
pub(crate) struct Pacing {
    channels: Mutex<std::collections::HashMap<i64, (i32, Arc<DefaultDirectRateLimiter>)>>,
    pub chats: DefaultKeyedRateLimiter<i64>,
}

impl Pacing {
    fn new(s: &Settings) -> Pacing {
        let burst = NonZeroU32::new(s.chat_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(s.chat_interval.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Pacing {
            channels: Mutex::new(Default::default()),
            chats: RateLimiter::keyed(quota),
        }
    }

    /// The time between two sends on a channel of `rate` per second: 3 % over 1/rate, since
    /// sends spaced exactly 1/rate apart reach the provider with a few milliseconds of jitter,
    /// and a sliding second could then count one too many.
    pub fn spacing(rate: i32) -> Duration {
        Duration::from_secs_f64(1.03 / f64::from(rate.max(1)))
    }

    /// The channel's limiter: evenly spaced sends just under `rate` per second (no burst, so no
    /// second ever holds more than `rate`).
    pub fn channel(&self, id: i64, rate: i32) -> Arc<DefaultDirectRateLimiter> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((r, l)) = map.get(&id)
            && *r == rate
        {
            return l.clone();
        }
        let quota = Quota::with_period(Pacing::spacing(rate))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        let limiter = Arc::new(RateLimiter::direct(quota));
        map.insert(id, (rate, limiter.clone()));
        limiter
    }
}

/// A channel as the hot paths need it: its row and opened credentials.
pub(crate) struct LiveChannel {
    pub row: ChannelRow,
    pub secrets: Secrets,
}

pub(crate) struct Inner {
    pub pool: DbPool,
    pub accounts: Arc<dyn Accounts>,
    pub deals: Arc<dyn Deals>,
    pub contacts: Arc<dyn Contacts>,
    pub settings: Settings,
    pub sealer: Sealer,
    pub http: reqwest::Client,
    pub pacing: Pacing,
    /// Webhooks processed at once: each holds a transaction while it asks the contacts and
    /// deals modules (another connection each), so at most a third of the pool.
    pub processing: tokio::sync::Semaphore,
    /// Wakes this process's dispatcher (no NOTIFY round trip per webhook).
    pub wake: Arc<tokio::sync::Notify>,
    /// Channels by webhook key (the webhook's one lookup).
    pub by_key: moka::future::Cache<String, Arc<LiveChannel>>,
    /// Channels by id (senders).
    pub by_id: moka::future::Cache<i64, Arc<LiveChannel>>,
    /// (channel, the client's id) → (identity, contact).
    pub identities: moka::future::Cache<(i64, String), (i64, i64)>,
    /// (account, user) → the users whose conversations they see, for `Settings::scope_ttl`.
    pub scopes: moka::future::Cache<(i64, i64), Option<Vec<i64>>>,
}

#[derive(Clone)]
pub struct MessagingService {
    pub(crate) inner: Arc<Inner>,
}

impl MessagingService {
    pub fn new(
        pool: DbPool,
        accounts: Arc<dyn Accounts>,
        deals: Arc<dyn Deals>,
        contacts: Arc<dyn Contacts>,
        settings: Settings,
    ) -> MessagingService {
        let http = reqwest::Client::builder()
            .timeout(settings.send_timeout)
            .connect_timeout(settings.send_timeout)
            .user_agent(concat!("Voronka/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let scope_ttl = settings.scope_ttl;
        MessagingService {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                accounts,
                deals,
                contacts,
                sealer: Sealer::new(&settings.credentials_key),
                pacing: Pacing::new(&settings),
                processing: tokio::sync::Semaphore::new((pool.status().max_size / 3).max(1)),
                wake: Arc::new(tokio::sync::Notify::new()),
                settings,
                http,
                by_key: moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(Duration::from_secs(300))
                    .build(),
                by_id: moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(Duration::from_secs(300))
                    .build(),
                identities: moka::future::Cache::builder()
                    .max_capacity(200_000)
                    .time_to_live(Duration::from_secs(600))
                    .build(),
                scopes: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(scope_ttl.unwrap_or(Duration::from_secs(1)))
                    .build(),
            }),
        }
    }

    /// The subscriber that keeps notifications and conversations' assignees.
    pub fn notifier(&self) -> crate::Notifier {
        crate::Notifier
    }
}

impl Inner {
    pub(crate) async fn conn(&self) -> AppResult<kernel::db::DbConn> {
        Ok(self.pool.get().await?)
    }

    pub(crate) async fn require_admin(&self, caller: Caller) -> AppResult<()> {
        let Some(me) = caller.actor.user_id() else {
            return Ok(());
        };
        let user = self.accounts.user(caller, me).await?;
        if user.is_admin && user.is_active {
            Ok(())
        } else {
            Err(AppError::forbidden("only administrators connect channels"))
        }
    }

    /// The users whose conversations the caller may see (`None`: all).
    pub(crate) async fn visible_users(&self, caller: Caller) -> AppResult<Option<Vec<i64>>> {
        let key = caller
            .actor
            .user_id()
            .filter(|_| self.settings.scope_ttl.is_some())
            .map(|u| (caller.account_id.0, u.0));
        if let Some(key) = key
            && let Some(hit) = self.scopes.get(&key).await
        {
            return Ok(hit);
        }
        let ids = accounts_api::access::scope(&*self.accounts, caller, Entity::Deals, Action::View)
            .await?
            .ids();
        // Only a granted scope is kept: a refusal is asked again next time.
        if let Some(key) = key {
            self.scopes.insert(key, ids.clone()).await;
        }
        Ok(ids)
    }

    pub(crate) async fn live_by_key(&self, key: &str) -> AppResult<Option<Arc<LiveChannel>>> {
        if let Some(c) = self.by_key.get(key).await {
            return Ok(Some(c));
        }
        let mut conn = self.conn().await?;
        let row: Option<ChannelRow> = kernel::sql::query(format!(
            "SELECT {CHANNEL_COLUMNS} FROM messaging.channels WHERE webhook_key = $1 AND deleted_at IS NULL"
        ))
        .bind::<Text, _>(key)
        .get_result(&mut conn)
        .await
        .optional()?;
        let Some(row) = row else { return Ok(None) };
        let live = Arc::new(LiveChannel {
            secrets: self.sealer.open(&row.credentials)?,
            row,
        });
        self.by_key.insert(key.to_string(), live.clone()).await;
        Ok(Some(live))
    }

    pub(crate) async fn live_by_id(&self, id: i64) -> AppResult<Arc<LiveChannel>> {
        if let Some(c) = self.by_id.get(&id).await {
            return Ok(c);
        }
        let mut conn = self.conn().await?;
        let row: ChannelRow = kernel::sql::query(format!(
            "SELECT {CHANNEL_COLUMNS} FROM messaging.channels WHERE id = $1"
        ))
        .bind::<BigInt, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("channel"))?;
        let live = Arc::new(LiveChannel {
            secrets: self.sealer.open(&row.credentials)?,
            row,
        });
        self.by_id.insert(id, live.clone()).await;
        Ok(live)
    }

    pub(crate) async fn forget_channel(&self, row: &ChannelRow) {
        self.by_key.invalidate(&row.webhook_key).await;
        self.by_id.invalidate(&row.id).await;
    }

    async fn channel_row(&self, caller: Caller, id: i64) -> AppResult<ChannelRow> {
        let mut conn = self.conn().await?;
        kernel::sql::query(format!(
            "SELECT {CHANNEL_COLUMNS} FROM messaging.channels WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("channel"))
    }

    pub(crate) async fn conversation_row(
        &self,
        caller: Caller,
        id: i64,
    ) -> AppResult<Conversation> {
        let visible = self.visible_users(caller).await?;
        let mut conn = self.conn().await?;
        let row: Option<ConversationRow> = kernel::sql::query(format!(
            "{CONVERSATION_SELECT} WHERE c.account_id = $1 AND c.id = $2
                AND ($3::bigint[] IS NULL OR c.assigned_user_id = ANY($3))"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id)
        .bind::<Nullable<Array<BigInt>>, _>(visible)
        .get_result(&mut conn)
        .await
        .optional()?;
        row.map(Conversation::from)
            .ok_or_else(|| AppError::not_found("conversation"))
    }

    async fn create_channel(&self, caller: Caller, new: NewChannel) -> AppResult<Channel> {
        self.require_admin(caller).await?;
        let mut errors = Vec::new();
        let mut bad = |f: &str, c: &str, m: &str| errors.push(field_error(f, c, m));
        let provider = new.provider;
        if provider.is_none() {
            bad(
                "provider",
                "required",
                "choose Telegram, WhatsApp or Instagram",
            );
        }
        let name = new.name.trim().to_string();
        if name.chars().count() > 100 {
            bad("name", "too_long", "at most 100 characters");
        }
        let token = new.token.trim().to_string();
        if token.is_empty() {
            bad("token", "required", "the token is required");
        }
        let external_id = new.external_id.trim().to_string();
        let app_secret = new.app_secret.trim().to_string();
        let verify_token = new.verify_token.trim().to_string();
        if matches!(provider, Some(Provider::Whatsapp | Provider::Instagram)) {
            if external_id.is_empty() {
                bad(
                    "external_id",
                    "required",
                    "the phone number id (WhatsApp) or the Instagram account id is required",
                );
            }
            if app_secret.is_empty() {
                bad(
                    "app_secret",
                    "required",
                    "the app secret is required to check webhooks",
                );
            }
            if verify_token.is_empty() {
                bad(
                    "verify_token",
                    "required",
                    "the verify token is required for the subscription check",
                );
            }
        }
        let rate = new.rate_per_second.unwrap_or(0);
        if !(0..=1000).contains(&rate) {
            bad(
                "rate_per_second",
                "out_of_range",
                "from 1 to 1000 messages per second",
            );
        }
        let base_url = new.base_url.trim().trim_end_matches('/').to_string();
        if !(base_url.is_empty()
            || base_url.starts_with("http://")
            || base_url.starts_with("https://"))
        {
            bad("base_url", "invalid", "an http:// or https:// address");
        }
        let api_version = match new.api_version.trim() {
            "" => "v21.0".to_string(),
            v if v.starts_with('v') && v.len() <= 10 => v.to_string(),
            _ => {
                bad("api_version", "invalid", "like v21.0");
                String::new()
            }
        };
        let pipelines = self.deals.pipelines(caller).await?;
        let pipeline = match new.pipeline_id {
            Some(p) => pipelines.iter().find(|x| x.id.0 == p),
            None => <[_]>::first(&pipelines),
        };
        if pipeline.is_none() {
            bad("pipeline_id", "unknown", "no such pipeline");
        }
        let responsible = match new
            .responsible_user_id
            .or(caller.actor.user_id().map(|u| u.0))
        {
            Some(u) => match self.accounts.user(caller, kernel::UserId(u)).await {
                Ok(user) if user.is_active => Some(u),
                _ => {
                    bad("responsible_user_id", "unknown", "no such active user");
                    None
                }
            },
            None => {
                bad(
                    "responsible_user_id",
                    "required",
                    "choose who gets the incoming leads",
                );
                None
            }
        };
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        let (Some(provider), Some(pipeline), Some(responsible)) = (provider, pipeline, responsible)
        else {
            return Err(AppError::validation(
                "provider",
                "required",
                "incomplete channel",
            ));
        };
        let base_url = if base_url.is_empty() {
            provider.default_base_url().to_string()
        } else {
            base_url
        };
        let webhook_key = crate::inbound::random_key(24);
        let secret_token = crate::inbound::random_key(32);
        // Telegram: the token must work, and the webhook is registered with a secret token.
        let (external_id, name) = match provider {
            Provider::Telegram => {
                let username = crate::provider::telegram_me(&self.http, &base_url, &token)
                    .await
                    .map_err(|e| AppError::validation("token", "refused", &e))?;
                if let Some(base) = new.webhook_base.as_deref().filter(|b| !b.is_empty()) {
                    let url = format!(
                        "{}/hooks/telegram/{webhook_key}",
                        base.trim_end_matches('/')
                    );
                    crate::provider::telegram_set_webhook(
                        &self.http,
                        &base_url,
                        &token,
                        &url,
                        &secret_token,
                    )
                    .await
                    .map_err(|e| AppError::validation("token", "webhook", &e))?;
                }
                let name = if name.is_empty() {
                    format!("@{username}")
                } else {
                    name
                };
                (username, name)
            }
            p => {
                // The token must open the number or account it is for.
                let shown = crate::provider::meta_object(
                    &self.http,
                    &base_url,
                    &api_version,
                    &external_id,
                    &token,
                )
                .await
                .map_err(|e| AppError::validation("token", "refused", &e))?;
                let name = if !name.is_empty() {
                    name
                } else if !shown.is_empty() {
                    shown
                } else {
                    let kind = if p == Provider::Whatsapp {
                        "WhatsApp"
                    } else {
                        "Instagram"
                    };
                    format!("{kind} {external_id}")
                };
                (external_id, name)
            }
        };
        let sealed = self.sealer.seal(&Secrets {
            token,
            app_secret,
            verify_token,
            secret_token,
        })?;
        let rate = if rate == 0 {
            provider.default_rate() as i32
        } else {
            rate
        };
        let mut conn = self.conn().await?;
        let row: Result<ChannelRow, diesel::result::Error> = kernel::sql::query(format!(
            "INSERT INTO messaging.channels (account_id, provider, name, webhook_key, external_id, base_url, api_version,
                                            credentials, pipeline_id, responsible_user_id, rate_per_second, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             RETURNING {CHANNEL_COLUMNS}"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Text, _>(provider.as_str())
        .bind::<Text, _>(&name)
        .bind::<Text, _>(&webhook_key)
        .bind::<Text, _>(&external_id)
        .bind::<Text, _>(&base_url)
        .bind::<Text, _>(&api_version)
        .bind::<Bytea, _>(&sealed)
        .bind::<BigInt, _>(pipeline.id.0)
        .bind::<BigInt, _>(responsible)
        .bind::<Integer, _>(rate)
        .bind::<BigInt, _>(caller.actor.user_id().map(|u| u.0).unwrap_or(0))
        .get_result(&mut conn)
        .await;
        match row {
            Ok(r) => Ok(r.into_channel()),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Err(AppError::validation(
                "external_id",
                "taken",
                "this bot, number or account is already connected",
            )),
            Err(e) => Err(e.into()),
        }
    }
}

pub(crate) fn field_error(field: &str, code: &str, message: &str) -> kernel::FieldError {
    kernel::FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

/// `{{contact.name}}`-style variables in a template's body, filled from `vars`; unknown ones are
/// left as written.
pub fn fill(body: &str, vars: &[(&str, String)]) -> String {
    let mut out = body.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

#[async_trait]
impl Chats for MessagingService {
    async fn send_to_deal(
        &self,
        caller: Caller,
        deal: i64,
        text: &str,
        buttons: &[String],
    ) -> AppResult<Queued> {
        let inner = &self.inner;
        let conversation = {
            let mut conn = inner.conn().await?;
            kernel::sql::query(
                "SELECT id FROM messaging.conversations WHERE account_id = $1 AND deal_id = $2
                  ORDER BY last_incoming_at DESC NULLS LAST, id DESC LIMIT 1",
            )
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(deal)
            .get_result::<IdRow>(&mut conn)
            .await
            .optional()?
        };
        let Some(conversation) = conversation else {
            return Err(AppError::new(
                ErrorCode::Validation,
                "the deal has no chat: the client has not written through any channel",
            ));
        };
        inner
            .queue(
                caller,
                conversation.id,
                OutgoingMessage {
                    text: text.to_string(),
                    template: None,
                    buttons: buttons.to_vec(),
                    key: caller.cause,
                    file: None,
                },
            )
            .await
    }
}

/// Conversations one `Work::Sends` job sends to at once.
const SENDS_AT_ONCE: usize = 16;

#[async_trait]
impl Messaging for MessagingService {
    async fn channels(&self, caller: Caller) -> AppResult<Vec<Channel>> {
        let mut conn = self.inner.conn().await?;
        let rows: Vec<ChannelRow> = kernel::sql::query(format!(
            "SELECT {CHANNEL_COLUMNS} FROM messaging.channels WHERE account_id = $1 AND deleted_at IS NULL ORDER BY id"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(ChannelRow::into_channel).collect())
    }

    async fn channel(&self, caller: Caller, id: i64) -> AppResult<Channel> {
        Ok(self.inner.channel_row(caller, id).await?.into_channel())
    }

    async fn create_channel(&self, caller: Caller, new: NewChannel) -> AppResult<Channel> {
        self.inner.create_channel(caller, new).await
    }

    async fn set_channel_active(
        &self,
        caller: Caller,
        id: i64,
        active: bool,
    ) -> AppResult<Channel> {
        self.inner.require_admin(caller).await?;
        let old = self.inner.channel_row(caller, id).await?;
        let mut conn = self.inner.conn().await?;
        let row: ChannelRow = kernel::sql::query(format!(
            "UPDATE messaging.channels SET active = $3, error = CASE WHEN $3 THEN NULL ELSE error END
              WHERE account_id = $1 AND id = $2 RETURNING {CHANNEL_COLUMNS}"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id)
        .bind::<Bool, _>(active)
        .get_result(&mut conn)
        .await?;
        self.inner.forget_channel(&old).await;
        Ok(row.into_channel())
    }

    async fn delete_channel(&self, caller: Caller, id: i64) -> AppResult<()> {
        self.inner.require_admin(caller).await?;
        let old = self.inner.channel_row(caller, id).await?;
        let mut conn = self.inner.conn().await?;
        // The row stays (its conversations keep their history); its webhook stops answering.
        kernel::sql::query(
            "UPDATE messaging.channels SET deleted_at = now(), active = false WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id)
        .execute(&mut conn)
        .await?;
        self.inner.forget_channel(&old).await;
        Ok(())
    }

    async fn conversations(
        &self,
        caller: Caller,
        filter: &ConversationFilter,
        page: PageRequest,
    ) -> AppResult<Page<Conversation>> {
        let visible = self.inner.visible_users(caller).await?;
        let after: Option<(DateTime<Utc>, i64)> =
            page.after.as_ref().map(Cursor::decode).transpose()?;
        let mine = if filter.mine {
            caller.actor.user_id().map(|u| u.0)
        } else {
            None
        };
        let mut conn = self.inner.conn().await?;
        let rows: Vec<ConversationRow> = kernel::sql::query(format!(
            "{CONVERSATION_SELECT}
              WHERE c.account_id = $1
                AND ($2::bigint[] IS NULL OR c.assigned_user_id = ANY($2))
                AND ($3::bigint IS NULL OR c.assigned_user_id = $3)
                AND (NOT $4 OR c.unread > 0)
                AND ($5::bigint IS NULL OR c.channel_id = $5)
                AND ($6::text IS NULL OR ch.provider = $6)
                AND ($7::timestamptz IS NULL OR (c.last_message_at, c.id) < ($7, $8))
              ORDER BY c.last_message_at DESC, c.id DESC
              LIMIT $9"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Nullable<Array<BigInt>>, _>(visible)
        .bind::<Nullable<BigInt>, _>(mine)
        .bind::<Bool, _>(filter.unread_only)
        .bind::<Nullable<BigInt>, _>(filter.channel_id)
        .bind::<Nullable<Text>, _>(filter.provider.map(Provider::as_str))
        .bind::<Nullable<Timestamptz>, _>(after.map(|a| a.0))
        .bind::<BigInt, _>(after.map(|a| a.1).unwrap_or(0))
        .bind::<BigInt, _>(page.fetch_limit())
        .load(&mut conn)
        .await?;
        let items: Vec<Conversation> = rows.into_iter().map(Conversation::from).collect();
        Ok(Page::from_rows(items, &page, |c| (c.last_message_at, c.id)))
    }

    async fn conversation(&self, caller: Caller, id: i64) -> AppResult<Conversation> {
        self.inner.conversation_row(caller, id).await
    }

    async fn conversation_of_deal(
        &self,
        caller: Caller,
        deal: i64,
    ) -> AppResult<Option<Conversation>> {
        let visible = self.inner.visible_users(caller).await?;
        let mut conn = self.inner.conn().await?;
        let row: Option<ConversationRow> = kernel::sql::query(format!(
            "{CONVERSATION_SELECT} WHERE c.account_id = $1 AND c.deal_id = $2
                AND ($3::bigint[] IS NULL OR c.assigned_user_id = ANY($3))
              ORDER BY c.last_message_at DESC, c.id DESC LIMIT 1"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(deal)
        .bind::<Nullable<Array<BigInt>>, _>(visible)
        .get_result(&mut conn)
        .await
        .optional()?;
        Ok(row.map(Conversation::from))
    }

    async fn messages(
        &self,
        caller: Caller,
        conversation: i64,
        after: Option<i64>,
        limit: u32,
    ) -> AppResult<Vec<Message>> {
        self.inner.conversation_row(caller, conversation).await?;
        let limit = limit.clamp(1, 500) as i64;
        let mut conn = self.inner.conn().await?;
        let mut rows: Vec<MessageRow> = match after {
            Some(a) => {
                kernel::sql::query(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messaging.messages
                      WHERE account_id = $1 AND conversation_id = $2 AND id > $3 ORDER BY id LIMIT $4"
                ))
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(conversation)
                .bind::<BigInt, _>(a)
                .bind::<BigInt, _>(limit)
                .load(&mut conn)
                .await?
            }
            None => {
                let mut r: Vec<MessageRow> = kernel::sql::query(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messaging.messages
                      WHERE account_id = $1 AND conversation_id = $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(conversation)
                .bind::<BigInt, _>(limit)
                .load(&mut conn)
                .await?;
                r.reverse();
                r
            }
        };
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut files = self.inner.attachments_of(&ids).await?;
        Ok(rows
            .drain(..)
            .map(|r| {
                let mut m = Message::from(r);
                m.attachments = files.remove(&m.id).unwrap_or_default();
                m
            })
            .collect())
    }

    async fn send(
        &self,
        caller: Caller,
        conversation: i64,
        message: OutgoingMessage,
    ) -> AppResult<Queued> {
        self.inner.conversation_row(caller, conversation).await?;
        self.inner.queue(caller, conversation, message).await
    }

    async fn attachment(&self, caller: Caller, id: i64) -> AppResult<FileContent> {
        self.inner.attachment(caller, id).await
    }

    async fn linked_attachment(&self, id: i64, token: &str) -> AppResult<FileContent> {
        self.inner.linked_attachment(id, token).await
    }

    async fn mark_read(&self, caller: Caller, conversation: i64) -> AppResult<()> {
        self.inner.conversation_row(caller, conversation).await?;
        let mut conn = self.inner.conn().await?;
        kernel::sql::query(
            "UPDATE messaging.conversations SET unread = 0 WHERE account_id = $1 AND id = $2 AND unread > 0",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(conversation)
        .execute(&mut conn)
        .await?;
        if let Some(me) = caller.actor.user_id() {
            kernel::sql::query(
                "UPDATE messaging.notifications SET read_at = now()
                  WHERE account_id = $1 AND user_id = $2 AND about = $3 AND read_at IS NULL",
            )
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(me.0)
            .bind::<Text, _>(format!("conversation:{conversation}"))
            .execute(&mut conn)
            .await?;
        }
        Ok(())
    }

    async fn link_deal(
        &self,
        caller: Caller,
        conversation: i64,
        deal: Option<i64>,
    ) -> AppResult<Conversation> {
        let current = self.inner.conversation_row(caller, conversation).await?;
        // The deal must exist and be one the caller may see; the chat follows its responsible.
        let assigned = match deal {
            Some(d) => {
                self.inner
                    .deals
                    .deal(caller, deals_api::DealId(d))
                    .await?
                    .responsible_user_id
                    .0
            }
            None => current.assigned_user_id,
        };
        let mut conn = self.inner.conn().await?;
        kernel::sql::query(
            "UPDATE messaging.conversations SET deal_id = $3, assigned_user_id = $4 WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(conversation)
        .bind::<Nullable<BigInt>, _>(deal)
        .bind::<BigInt, _>(assigned)
        .execute(&mut conn)
        .await?;
        drop(conn);
        self.inner.conversation_row(caller, conversation).await
    }

    async fn unread_conversations(&self, caller: Caller) -> AppResult<i64> {
        let visible = self.inner.visible_users(caller).await?;
        let mut conn = self.inner.conn().await?;
        let n: CountRow = kernel::sql::query(
            "SELECT count(*) AS n FROM messaging.conversations
              WHERE account_id = $1 AND unread > 0 AND ($2::bigint[] IS NULL OR assigned_user_id = ANY($2))",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Nullable<Array<BigInt>>, _>(visible)
        .get_result(&mut conn)
        .await?;
        Ok(n.n)
    }

    async fn templates(&self, caller: Caller) -> AppResult<Vec<Template>> {
        let mut conn = self.inner.conn().await?;
        let rows: Vec<TemplateRow> = kernel::sql::query(
            "SELECT id, name, body, whatsapp_name, whatsapp_language FROM messaging.templates
              WHERE account_id = $1 ORDER BY lower(name)",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(Template::from).collect())
    }

    async fn save_template(&self, caller: Caller, new: NewTemplate) -> AppResult<Template> {
        self.inner.require_admin(caller).await?;
        let name = new.name.trim();
        let body = new.body.trim();
        let mut errors = Vec::new();
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(field_error(
                "name",
                "required",
                "a name of up to 100 characters",
            ));
        }
        if body.is_empty() || body.chars().count() > 4096 {
            errors.push(field_error(
                "body",
                "required",
                "a text of up to 4096 characters",
            ));
        }
        let wa = new.whatsapp_name.trim();
        if !wa.is_empty()
            && !wa
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            errors.push(field_error(
                "whatsapp_name",
                "invalid",
                "WhatsApp template names are lower-case letters, digits and underscores",
            ));
        }
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        let language = match new.whatsapp_language.trim() {
            "" => "en_US",
            l => l,
        };
        let mut conn = self.inner.conn().await?;
        let result: Result<TemplateRow, diesel::result::Error> = match new.id {
            Some(id) => kernel::sql::query(
                "UPDATE messaging.templates SET name = $3, body = $4, whatsapp_name = NULLIF($5, ''), whatsapp_language = $6
                  WHERE account_id = $1 AND id = $2
                  RETURNING id, name, body, whatsapp_name, whatsapp_language",
            )
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(id)
            .bind::<Text, _>(name)
            .bind::<Text, _>(body)
            .bind::<Text, _>(wa)
            .bind::<Text, _>(language)
            .get_result(&mut conn)
            .await,
            None => kernel::sql::query(
                "INSERT INTO messaging.templates (account_id, name, body, whatsapp_name, whatsapp_language)
                 VALUES ($1, $2, $3, NULLIF($4, ''), $5)
                 RETURNING id, name, body, whatsapp_name, whatsapp_language",
            )
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<Text, _>(name)
            .bind::<Text, _>(body)
            .bind::<Text, _>(wa)
            .bind::<Text, _>(language)
            .get_result(&mut conn)
            .await,
        };
        match result {
            Ok(r) => Ok(r.into()),
            Err(diesel::result::Error::NotFound) => Err(AppError::not_found("template")),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Err(AppError::validation(
                "name",
                "taken",
                "a template with this name exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_template(&self, caller: Caller, id: i64) -> AppResult<()> {
        self.inner.require_admin(caller).await?;
        let mut conn = self.inner.conn().await?;
        let n =
            kernel::sql::query("DELETE FROM messaging.templates WHERE account_id = $1 AND id = $2")
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(id)
                .execute(&mut conn)
                .await?;
        if n == 0 {
            return Err(AppError::not_found("template"));
        }
        Ok(())
    }

    async fn notifications(&self, caller: Caller, limit: u32) -> AppResult<Vec<Notification>> {
        let Some(me) = caller.actor.user_id() else {
            return Ok(Vec::new());
        };
        let mut conn = self.inner.conn().await?;
        let rows: Vec<NotificationRow> = kernel::sql::query(
            "SELECT id, kind, text, link, read_at, created_at FROM messaging.notifications
              WHERE account_id = $1 AND user_id = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(me.0)
        .bind::<BigInt, _>(limit.clamp(1, 200) as i64)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(Notification::from).collect())
    }

    async fn unread_notifications(&self, caller: Caller) -> AppResult<i64> {
        let Some(me) = caller.actor.user_id() else {
            return Ok(0);
        };
        let mut conn = self.inner.conn().await?;
        let n: CountRow = kernel::sql::query(
            "SELECT count(*) AS n FROM messaging.notifications WHERE account_id = $1 AND user_id = $2 AND read_at IS NULL",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(me.0)
        .get_result(&mut conn)
        .await?;
        Ok(n.n)
    }

    async fn read_notifications(&self, caller: Caller) -> AppResult<()> {
        let Some(me) = caller.actor.user_id() else {
            return Ok(());
        };
        let mut conn = self.inner.conn().await?;
        kernel::sql::query(
            "UPDATE messaging.notifications SET read_at = now() WHERE account_id = $1 AND user_id = $2 AND read_at IS NULL",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(me.0)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    async fn receive(&self, inbound: Inbound) -> AppResult<Received> {
        self.inner.receive(inbound).await
    }

    async fn verify_subscription(
        &self,
        provider: Provider,
        webhook_key: &str,
        mode: &str,
        verify_token: &str,
        challenge: &str,
    ) -> AppResult<String> {
        self.inner
            .verify_subscription(provider, webhook_key, mode, verify_token, challenge)
            .await
    }

    fn work_signal(&self) -> Arc<tokio::sync::Notify> {
        self.inner.wake.clone()
    }

    async fn take_due(&self, limit: i64) -> AppResult<Vec<Work>> {
        self.inner.take_due(limit).await
    }

    async fn process(&self, work: Work) -> AppResult<()> {
        match work {
            Work::Inbound { id } => self.inner.process_inbound(id).await,
            Work::Fetch { id } => self.inner.process_fetch(id).await,
            Work::Send {
                account_id,
                conversation_id,
            } => self.inner.send_queued(account_id, conversation_id).await,
            Work::Sends { conversations } => {
                use futures_util::StreamExt;
                // Each conversation in order; several at once (most of the time is waiting).
                let failures: Vec<AppError> = futures_util::stream::iter(conversations)
                    .map(|(a, c)| self.inner.send_queued(a, c))
                    .buffer_unordered(SENDS_AT_ONCE)
                    .filter_map(|r| async move { r.err() })
                    .collect()
                    .await;
                failures.into_iter().next().map_or(Ok(()), Err)
            }
        }
    }

    async fn clean_up(&self) -> AppResult<usize> {
        let mut conn = self.inner.conn().await?;
        let n = kernel::sql::query(
            "UPDATE messaging.inbound SET body = NULL
              WHERE id IN (SELECT id FROM messaging.inbound
                            WHERE body IS NOT NULL AND status = 'done'
                              AND processed_at < now() - make_interval(days => $1)
                            LIMIT 10000)",
        )
        .bind::<Integer, _>(self.inner.settings.keep_days)
        .execute(&mut conn)
        .await?;
        Ok(n)
    }

    async fn account_channels(&self, account: AccountId) -> AppResult<Vec<Channel>> {
        self.channels(Caller::system(account)).await
    }
}
