//! The automation module's service: triggers, runs and webhooks behind `Automation`.

use std::sync::Arc;
use std::time::Duration;

use accounts_api::Accounts;
use activities_api::Activities;
use async_trait::async_trait;
use automation_api::*;
use chrono::{DateTime, Datelike, Days, NaiveTime, Utc, Weekday};
use contacts_api::Contacts;
use deals_api::{DealId, Deals, PipelineId};
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::DbPool;
use kernel::paging::{Cursor, Page, PageRequest};
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, UserId};

use crate::rows::*;

/// How the module behaves; `[automation]` in config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runs caused by a chain of more robots' runs than this are cut (a loop), with a warning.
    pub max_depth: i32,
    /// Let webhooks reach loopback, private and link-local addresses (off: the SSRF guard).
    pub allow_private_destinations: bool,
    pub webhook_timeout: Duration,
    /// Attempts per delivery before it is given up.
    pub webhook_max_attempts: i32,
    /// The first retry's wait; each next one doubles, up to an hour.
    pub webhook_backoff: Duration,
    /// A webhook whose deliveries failed this many times in a row is switched off.
    pub webhook_disable_after: i32,
    /// Working hours (UTC), Monday to Friday: from, to.
    pub work_day: (NaiveTime, NaiveTime),
    /// Work handed to a worker and not finished in this time (a lost job) is handed out again.
    pub requeue_after: Duration,
    /// The SMTP server for robots' e-mails (`smtp://host:port`, `smtps://user:pass@host`, …);
    /// without it the e-mail action cannot be chosen.
    pub smtp_url: Option<String>,
    /// The sender of robots' e-mails.
    pub email_from: String,
    /// Days finished runs and deliveries are kept (their history and the delivery log).
    pub keep_days: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_depth: 5,
            allow_private_destinations: false,
            webhook_timeout: Duration::from_secs(10),
            webhook_max_attempts: 8,
            webhook_backoff: Duration::from_secs(30),
            webhook_disable_after: 50,
            work_day: (
                NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
                NaiveTime::from_hms_opt(18, 0, 0).unwrap_or_default(),
            ),
            requeue_after: Duration::from_secs(300),
            smtp_url: None,
            email_from: "Voronka <robot@localhost>".into(),
            keep_days: 90,
        }
    }
}

pub(crate) struct Inner {
    pub pool: DbPool,
    pub accounts: Arc<dyn Accounts>,
    pub deals: Arc<dyn Deals>,
    pub activities: Arc<dyn Activities>,
    pub contacts: Arc<dyn Contacts>,
    /// Absent in a build without the messaging module: bots' messages then fail, saying so.
    pub messaging: Option<Arc<dyn messaging_api::Chats>>,
    pub settings: Settings,
    pub http: reqwest::Client,
    pub mailer: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    /// When `take_due` last looked for work handed out long ago and never finished (a sweep
    /// that scans the queued runs, done every half `requeue_after` at most, not on every call).
    pub stale_swept: std::sync::Mutex<Option<std::time::Instant>>,
    /// Robots' tasks, created together.
    pub tasks: crate::gather::TaskGatherer,
    /// Runs due now recorded by this process's trigger matcher, by the event that started
    /// them, to be done as soon as their transaction has committed (`after_commit`).
    pub fresh:
        std::sync::Mutex<std::collections::HashMap<uuid::Uuid, Vec<(AccountId, uuid::Uuid)>>>,
}

#[derive(Clone)]
pub struct AutomationService {
    pub(crate) inner: Arc<Inner>,
}

impl AutomationService {
    pub fn new(
        pool: DbPool,
        accounts: Arc<dyn Accounts>,
        deals: Arc<dyn Deals>,
        activities: Arc<dyn Activities>,
        contacts: Arc<dyn Contacts>,
        messaging: Option<Arc<dyn messaging_api::Chats>>,
        settings: Settings,
    ) -> AutomationService {
        let http = reqwest::Client::builder()
            .timeout(settings.webhook_timeout)
            .connect_timeout(settings.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(crate::guard::GuardedResolver {
                allow_private: settings.allow_private_destinations,
            }))
            .user_agent(concat!("Voronka-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let mailer = settings.smtp_url.as_deref().and_then(|url| match mailer(url) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(error = %e, "automation: the SMTP URL is not usable; e-mails are off");
                None
            }
        });
        AutomationService {
            inner: Arc::new(Inner {
                pool,
                accounts,
                deals,
                activities,
                contacts,
                messaging,
                settings,
                http,
                mailer,
                stale_swept: std::sync::Mutex::new(None),
                tasks: Default::default(),
                fresh: Default::default(),
            }),
        }
    }

    /// The subscriber that starts triggers from deal events.
    pub fn matcher(&self) -> crate::TriggerMatcher {
        crate::TriggerMatcher {
            inner: self.inner.clone(),
        }
    }

    /// The subscriber that hands clients' replies to waiting bots.
    pub fn bot_replies(&self) -> crate::BotReplies {
        crate::BotReplies {
            inner: self.inner.clone(),
        }
    }

    /// The subscriber that turns events into webhook deliveries.
    pub fn webhook_feed(&self) -> crate::WebhookFeed {
        crate::WebhookFeed {
            inner: self.inner.clone(),
        }
    }
}

impl Inner {
    pub(crate) async fn conn(&self) -> AppResult<kernel::db::DbConn> {
        Ok(self.pool.get().await?)
    }

    /// The caller must be an administrator (or the system, or a robot).
    pub(crate) async fn require_admin(&self, caller: Caller) -> AppResult<()> {
        let Some(me) = caller.actor.user_id() else {
            return Ok(());
        };
        let user = self.accounts.user(caller, me).await?;
        if user.is_admin && user.is_active {
            Ok(())
        } else {
            Err(AppError::forbidden("only administrators set up automation"))
        }
    }

    /// The caller must be an active user of the account (or the system, or a robot).
    pub(crate) async fn accounts_member(&self, caller: Caller) -> AppResult<()> {
        let Some(me) = caller.actor.user_id() else {
            return Ok(());
        };
        if self.accounts.user(caller, me).await?.is_active {
            Ok(())
        } else {
            Err(AppError::forbidden("this user is not active"))
        }
    }

    /// What checking these conditions and actions, in this pipeline, needs to know of the
    /// account. An unknown pipeline (or another account's) is a form error.
    pub(crate) async fn known_parts(
        &self,
        caller: Caller,
        pipeline: i64,
        conditions: &[Condition],
        actions: &[Action],
    ) -> AppResult<Parts> {
        let pipeline = match self.deals.pipeline(caller, PipelineId(pipeline)).await {
            Ok(p) => p,
            Err(e) if e.code == ErrorCode::NotFound => {
                return Err(AppError::validation(
                    "pipeline_id",
                    "unknown_pipeline",
                    "no such pipeline",
                ));
            }
            Err(e) => return Err(e),
        };
        let mut ids: Vec<i64> = Vec::new();
        for c in conditions {
            if let Condition::ResponsibleIn { user_ids } = c {
                ids.extend(user_ids);
            }
        }
        for a in actions {
            if let Action::SetResponsible { user_ids, .. } = a {
                ids.extend(user_ids);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut users = Vec::new();
        for id in ids {
            match self.accounts.user(caller, UserId(id)).await {
                Ok(u) if u.is_active => users.push(id),
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let segments = if conditions
            .iter()
            .any(|c| matches!(c, Condition::ContactInSegment { .. }))
        {
            self.contacts
                .segments(caller)
                .await?
                .into_iter()
                .map(|s| s.id.0)
                .collect()
        } else {
            Vec::new()
        };
        let bots = if actions.iter().any(|a| matches!(a, Action::StartBot { .. })) {
            self.bots(caller)
                .await?
                .into_iter()
                .map(|b| b.id.0)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Parts {
            pipeline,
            bots,
            fields: self.deals.custom_fields(caller).await?,
            task_types: self.activities.task_types(caller).await?,
            users,
            segments,
        })
    }

    pub(crate) async fn load_trigger(
        &self,
        conn: &mut AsyncPgConnection,
        account: AccountId,
        id: TriggerId,
    ) -> AppResult<Option<Trigger>> {
        let row: Option<TriggerRow> = kernel::sql::query(format!(
            "SELECT {TRIGGER_COLUMNS} FROM automation.triggers t WHERE t.account_id = $1 AND t.id = $2"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(id.0)
        .get_result(conn)
        .await
        .optional()?;
        row.map(|r| r.trigger(0)).transpose()
    }

    /// Records runs of `trigger` on `deals` (not caused by an event) and wakes the workers.
    pub(crate) async fn insert_manual_runs(
        &self,
        account: AccountId,
        trigger: &Trigger,
        deals: &[i64],
    ) -> AppResult<usize> {
        let run_at = schedule(
            &trigger.delay,
            trigger.working_hours,
            Utc::now(),
            &self.settings,
        );
        let ids: Vec<uuid::Uuid> = deals.iter().map(|_| crate::new_run_id()).collect();
        let mut conn = self.conn().await?;
        let n = kernel::sql::query(
            "INSERT INTO automation.runs (id, account_id, trigger_id, deal_id, event_type, depth, status, run_at)
             SELECT i, $2, $3, d, 'manual', 1, 'pending', $5 FROM unnest($1::uuid[], $4::bigint[]) AS x(i, d)",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(trigger.id.0)
        .bind::<Array<BigInt>, _>(deals)
        .bind::<Timestamptz, _>(run_at)
        .execute(&mut conn)
        .await?;
        notify(&mut conn).await?;
        Ok(n)
    }
}

/// The SMTP transport for a URL (`smtp://` plain or `?tls=required`, `smtps://` TLS).
pub fn mailer(url: &str) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
        .map(|b| b.timeout(Some(Duration::from_secs(20))).build())
        .map_err(|e| format!("smtp_url: {e}"))
}

/// Whether a sender (`Name <address>` or an address) can be used for robots' e-mails.
pub fn check_sender(from: &str) -> Result<(), String> {
    from.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Wakes the job dispatchers (delivered when the surrounding transaction commits).
pub(crate) async fn notify(conn: &mut AsyncPgConnection) -> AppResult<()> {
    kernel::sql::query(format!("SELECT pg_notify('{}', '')", crate::WORK_CHANNEL))
        .execute(conn)
        .await?;
    Ok(())
}

/// When a run of a trigger with this delay, fired at `now`, is due.
pub(crate) fn schedule(
    delay: &Delay,
    working_hours: bool,
    now: DateTime<Utc>,
    s: &Settings,
) -> DateTime<Utc> {
    let at = match delay {
        Delay::Now => now,
        Delay::After { minutes } => now + chrono::Duration::minutes(*minutes),
        Delay::AtTime { hour, minute } => {
            let t = NaiveTime::from_hms_opt(*hour, *minute, 0).unwrap_or_default();
            let today = now.date_naive().and_time(t).and_utc();
            if today > now {
                today
            } else {
                today + chrono::Duration::days(1)
            }
        }
    };
    if working_hours {
        into_working_hours(at, s.work_day)
    } else {
        at
    }
}

/// `at`, or the start of the next working hours after it (Monday to Friday).
pub(crate) fn into_working_hours(
    at: DateTime<Utc>,
    (from, to): (NaiveTime, NaiveTime),
) -> DateTime<Utc> {
    let weekday = |d: chrono::NaiveDate| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
    let mut day = at.date_naive();
    let time = at.time();
    if weekday(day) && time >= from && time < to {
        return at;
    }
    if !(weekday(day) && time < from) {
        day = day.checked_add_days(Days::new(1)).unwrap_or(day);
        while !weekday(day) {
            day = day.checked_add_days(Days::new(1)).unwrap_or(day);
        }
    }
    day.and_time(from).and_utc()
}

/// The account's parts a trigger or a bot is checked against.
pub(crate) struct Parts {
    pub pipeline: deals_api::Pipeline,
    pub bots: Vec<i64>,
    pub fields: Vec<deals_api::CustomField>,
    pub task_types: Vec<activities_api::TaskType>,
    pub users: Vec<i64>,
    pub segments: Vec<i64>,
}

impl Parts {
    pub fn known<'a>(&'a self, inner: &Inner) -> crate::check::Known<'a> {
        crate::check::Known {
            pipeline: &self.pipeline,
            fields: &self.fields,
            task_types: &self.task_types,
            users: &self.users,
            segments: &self.segments,
            bots: &self.bots,
            email: inner.mailer.is_some(),
            allow_private: inner.settings.allow_private_destinations,
        }
    }
}

#[derive(QueryableByName)]
struct TriggerWithFailures {
    #[diesel(embed)]
    t: TriggerRow,
    #[diesel(sql_type = BigInt)]
    failed_recently: i64,
}

pub(crate) fn keyset_after<K: serde::de::DeserializeOwned>(
    page: &PageRequest,
) -> AppResult<Option<K>> {
    page.after.as_ref().map(Cursor::decode).transpose()
}

#[async_trait]
impl Automation for AutomationService {
    async fn triggers(&self, caller: Caller, pipeline: PipelineId) -> AppResult<Vec<Trigger>> {
        // Whoever may see the pipeline may see its robots.
        self.inner.deals.pipeline(caller, pipeline).await?;
        let mut conn = self.inner.conn().await?;
        let rows: Vec<TriggerWithFailures> = kernel::sql::query(format!(
            "SELECT {TRIGGER_COLUMNS},
                    (SELECT count(*) FROM automation.runs r
                      WHERE r.account_id = t.account_id AND r.trigger_id = t.id
                        -- the predicate of runs_failed_idx, so that the index serves the count
                        AND r.finished_at IS NOT NULL AND r.error IS NOT NULL
                        AND r.status IN ('failed', 'cut') AND r.created_at > now() - interval '7 days') AS failed_recently
               FROM automation.triggers t
              WHERE t.account_id = $1 AND t.pipeline_id = $2
              ORDER BY t.stage_id, t.id"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(pipeline.0)
        .load(&mut conn)
        .await?;
        rows.into_iter()
            .map(|r| r.t.trigger(r.failed_recently))
            .collect()
    }

    async fn trigger(&self, caller: Caller, id: TriggerId) -> AppResult<Trigger> {
        let mut conn = self.inner.conn().await?;
        let t = self
            .inner
            .load_trigger(&mut conn, caller.account_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("trigger"))?;
        drop(conn);
        self.inner
            .deals
            .pipeline(caller, PipelineId(t.pipeline_id))
            .await?;
        Ok(t)
    }

    async fn save_trigger(
        &self,
        caller: Caller,
        id: Option<TriggerId>,
        draft: TriggerDraft,
    ) -> AppResult<Trigger> {
        let inner = &self.inner;
        inner.require_admin(caller).await?;
        let parts = inner
            .known_parts(caller, draft.pipeline_id, &draft.conditions, &draft.actions)
            .await?;
        let d = crate::check::trigger(draft, &parts.known(inner))?;
        let json = |v: serde_json::Result<serde_json::Value>| {
            v.map_err(|e| AppError::internal(format!("encoding a trigger: {e}")))
        };
        let (when, conditions, delay, actions) = (
            json(serde_json::to_value(&d.when))?,
            json(serde_json::to_value(&d.conditions))?,
            json(serde_json::to_value(&d.delay))?,
            json(serde_json::to_value(&d.actions))?,
        );
        let mut conn = inner.conn().await?;
        let account = caller.account_id;
        let new_id: Option<i64> = match id {
            None => {
                let (n,): (i64,) = {
                    #[derive(QueryableByName)]
                    struct N {
                        #[diesel(sql_type = BigInt)]
                        n: i64,
                    }
                    let r: N = kernel::sql::query(
                        "SELECT count(*) AS n FROM automation.triggers WHERE account_id = $1 AND pipeline_id = $2",
                    )
                    .bind::<BigInt, _>(account.0)
                    .bind::<BigInt, _>(d.pipeline_id)
                    .get_result(&mut conn)
                    .await?;
                    (r.n,)
                };
                if n as usize >= MAX_TRIGGERS_PER_PIPELINE {
                    return Err(AppError::validation(
                        "pipeline_id",
                        "too_many",
                        &format!("a pipeline has at most {MAX_TRIGGERS_PER_PIPELINE} triggers"),
                    ));
                }
                #[derive(QueryableByName)]
                struct Id {
                    #[diesel(sql_type = BigInt)]
                    id: i64,
                }
                let r: Id = kernel::sql::query(
                    "INSERT INTO automation.triggers (account_id, pipeline_id, stage_id, name, on_event, \"when\",
                                                      conditions, delay, working_hours, actions, enabled, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(d.pipeline_id)
                .bind::<BigInt, _>(d.stage_id)
                .bind::<Text, _>(&d.name)
                .bind::<Text, _>(d.when.code())
                .bind::<Jsonb, _>(&when)
                .bind::<Jsonb, _>(&conditions)
                .bind::<Jsonb, _>(&delay)
                .bind::<Bool, _>(d.working_hours)
                .bind::<Jsonb, _>(&actions)
                .bind::<Bool, _>(d.enabled)
                .bind::<BigInt, _>(caller.actor.user_id().map(|u| u.0).unwrap_or(0))
                .get_result(&mut conn)
                .await?;
                Some(r.id)
            }
            Some(id) => {
                let n = kernel::sql::query(
                    "UPDATE automation.triggers SET pipeline_id = $3, stage_id = $4, name = $5, on_event = $6, \"when\" = $7,
                            conditions = $8, delay = $9, working_hours = $10, actions = $11, enabled = $12, updated_at = now()
                      WHERE account_id = $1 AND id = $2",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(id.0)
                .bind::<BigInt, _>(d.pipeline_id)
                .bind::<BigInt, _>(d.stage_id)
                .bind::<Text, _>(&d.name)
                .bind::<Text, _>(d.when.code())
                .bind::<Jsonb, _>(&when)
                .bind::<Jsonb, _>(&conditions)
                .bind::<Jsonb, _>(&delay)
                .bind::<Bool, _>(d.working_hours)
                .bind::<Jsonb, _>(&actions)
                .bind::<Bool, _>(d.enabled)
                .execute(&mut conn)
                .await?;
                if n == 0 {
                    return Err(AppError::not_found("trigger"));
                }
                Some(id.0)
            }
        };
        let id = TriggerId(new_id.unwrap_or_default());
        inner
            .load_trigger(&mut conn, account, id)
            .await?
            .ok_or_else(|| AppError::not_found("trigger"))
    }

    async fn set_trigger_enabled(
        &self,
        caller: Caller,
        id: TriggerId,
        enabled: bool,
    ) -> AppResult<Trigger> {
        self.inner.require_admin(caller).await?;
        let mut conn = self.inner.conn().await?;
        let n = kernel::sql::query(
            "UPDATE automation.triggers SET enabled = $3, updated_at = now() WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .bind::<Bool, _>(enabled)
        .execute(&mut conn)
        .await?;
        if n == 0 {
            return Err(AppError::not_found("trigger"));
        }
        self.inner
            .load_trigger(&mut conn, caller.account_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("trigger"))
    }

    async fn delete_trigger(&self, caller: Caller, id: TriggerId) -> AppResult<()> {
        self.inner.require_admin(caller).await?;
        let mut conn = self.inner.conn().await?;
        let n =
            kernel::sql::query("DELETE FROM automation.triggers WHERE account_id = $1 AND id = $2")
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(id.0)
                .execute(&mut conn)
                .await?;
        if n == 0 {
            return Err(AppError::not_found("trigger"));
        }
        // Waiting runs of a deleted trigger end as skipped.
        kernel::sql::query(
            "UPDATE automation.runs SET status = 'skipped', error = 'the trigger was deleted', finished_at = now()
              WHERE account_id = $1 AND trigger_id = $2 AND status = 'pending'",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    async fn run_manual(
        &self,
        caller: Caller,
        id: TriggerId,
        deals: Vec<DealId>,
    ) -> AppResult<usize> {
        let trigger = self.trigger(caller, id).await?;
        if deals.is_empty() {
            return Err(AppError::validation("deals", "required", "choose deals"));
        }
        if deals.len() > 500 {
            return Err(AppError::validation(
                "deals",
                "too_many",
                "at most 500 deals at once",
            ));
        }
        let mut visible: Vec<i64> = self
            .inner
            .deals
            .visible_deals(caller, deals)
            .await?
            .into_iter()
            .map(|d| d.0)
            .collect();
        visible.sort_unstable();
        if visible.is_empty() {
            return Err(AppError::not_found("deal"));
        }
        self.inner
            .insert_manual_runs(caller.account_id, &trigger, &visible)
            .await
    }

    async fn runs(
        &self,
        caller: Caller,
        query: RunQuery,
        page: PageRequest,
    ) -> AppResult<Page<Run>> {
        match (query.deal, query.trigger) {
            (Some(deal), _) => {
                if self
                    .inner
                    .deals
                    .visible_deals(caller, vec![DealId(deal)])
                    .await?
                    .is_empty()
                {
                    return Err(AppError::not_found("deal"));
                }
            }
            (None, Some(_)) => self.inner.require_admin(caller).await?,
            (None, None) => {
                return Err(AppError::validation(
                    "query",
                    "required",
                    "runs are listed per deal or per trigger",
                ));
            }
        }
        let after: Option<(DateTime<Utc>, uuid::Uuid)> = keyset_after(&page)?;
        let mut conn = self.inner.conn().await?;
        let rows: Vec<RunRow> = kernel::sql::query(format!(
            "SELECT {RUN_COLUMNS} FROM automation.runs r
               LEFT JOIN automation.triggers t ON t.account_id = r.account_id AND t.id = r.trigger_id
              WHERE r.account_id = $1
                AND ($2::bigint IS NULL OR r.deal_id = $2)
                AND ($3::bigint IS NULL OR r.trigger_id = $3)
                AND ($4::timestamptz IS NULL OR (r.created_at, r.id) < ($4, $5))
              ORDER BY r.created_at DESC, r.id DESC
              LIMIT $6"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Nullable<BigInt>, _>(query.deal)
        .bind::<Nullable<BigInt>, _>(query.trigger.map(|t| t.0))
        .bind::<Nullable<Timestamptz>, _>(after.map(|a| a.0))
        .bind::<SqlUuid, _>(after.map(|a| a.1).unwrap_or_default())
        .bind::<BigInt, _>(page.fetch_limit())
        .load(&mut conn)
        .await?;
        let runs: Vec<Run> = rows.into_iter().map(RunRow::run).collect();
        Ok(Page::from_rows(runs, &page, |r| (r.created_at, r.id.0)))
    }

    async fn take_due(&self, limit: i64) -> AppResult<Vec<Work>> {
        let requeue_after = self.inner.settings.requeue_after;
        let sweep = {
            let mut last = self
                .inner
                .stale_swept
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due =
                last.is_none_or(|t| t.elapsed() >= (requeue_after / 2).min(Duration::from_secs(5)));
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        let mut conn = self.inner.conn().await?;
        crate::exec::take_due(&mut conn, limit, requeue_after, sweep).await
    }

    async fn execute(&self, account: AccountId, run: RunId) -> AppResult<RunStatus> {
        self.inner.do_run(account, run.0).await
    }

    async fn execute_many(&self, runs: Vec<(AccountId, RunId)>) -> AppResult<Vec<RunStatus>> {
        let runs: Vec<(AccountId, uuid::Uuid)> = runs.into_iter().map(|(a, r)| (a, r.0)).collect();
        self.inner
            .do_runs(&runs)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    async fn clean_up(&self) -> AppResult<u64> {
        let mut conn = self.inner.conn().await?;
        let days = self.inner.settings.keep_days;
        let mut gone = 0;
        for sql in [
            "DELETE FROM automation.runs WHERE id IN (
                 SELECT id FROM automation.runs WHERE finished_at IS NOT NULL
                    AND created_at < now() - make_interval(days => $1) ORDER BY created_at LIMIT 10000)",
            "DELETE FROM automation.deliveries WHERE id IN (
                 SELECT id FROM automation.deliveries WHERE status IN ('delivered', 'failed')
                    AND created_at < now() - make_interval(days => $1) ORDER BY created_at LIMIT 10000)",
            "DELETE FROM automation.bot_runs WHERE id IN (
                 SELECT id FROM automation.bot_runs WHERE status IN ('done', 'stopped', 'failed')
                    AND updated_at < now() - make_interval(days => $1) ORDER BY updated_at LIMIT 10000)",
        ] {
            gone += diesel::sql_query(sql)
                .bind::<diesel::sql_types::Integer, _>(days)
                .execute(&mut conn)
                .await? as u64;
        }
        Ok(gone)
    }

    async fn give_up(&self, account: AccountId, run: RunId, reason: &str) -> AppResult<()> {
        self.inner.give_up(account, run.0, reason).await
    }

    async fn bots(&self, caller: Caller) -> AppResult<Vec<Bot>> {
        self.inner.bots(caller).await
    }

    async fn bot(&self, caller: Caller, id: BotId) -> AppResult<Bot> {
        self.inner.bot(caller, id).await
    }

    async fn save_bot(&self, caller: Caller, id: Option<BotId>, draft: BotDraft) -> AppResult<Bot> {
        self.inner.save_bot(caller, id, draft).await
    }

    async fn delete_bot(&self, caller: Caller, id: BotId) -> AppResult<()> {
        self.inner.delete_bot(caller, id).await
    }

    async fn start_bot(&self, caller: Caller, bot: BotId, deal: DealId) -> AppResult<BotRun> {
        self.inner.start_bot(caller, bot, deal).await
    }

    async fn bot_runs(&self, caller: Caller, deal: DealId) -> AppResult<Vec<BotRun>> {
        self.inner.bot_runs(caller, deal).await
    }

    async fn stop_bot_run(&self, caller: Caller, id: BotRunId) -> AppResult<BotRun> {
        self.inner.stop_bot_run(caller, id).await
    }

    async fn advance_bot(&self, account: AccountId, id: BotRunId) -> AppResult<BotRunStatus> {
        self.inner.advance(account, id.0).await
    }

    async fn webhooks(&self, caller: Caller) -> AppResult<Vec<Webhook>> {
        self.inner.webhooks(caller).await
    }

    async fn save_webhook(
        &self,
        caller: Caller,
        id: Option<WebhookId>,
        draft: WebhookDraft,
    ) -> AppResult<Webhook> {
        self.inner.save_webhook(caller, id, draft).await
    }

    async fn delete_webhook(&self, caller: Caller, id: WebhookId) -> AppResult<()> {
        self.inner.delete_webhook(caller, id).await
    }

    async fn deliveries(
        &self,
        caller: Caller,
        webhook: Option<WebhookId>,
        page: PageRequest,
    ) -> AppResult<Page<Delivery>> {
        self.inner.deliveries(caller, webhook, page).await
    }

    async fn deliver(&self, account: AccountId, delivery: DeliveryId) -> AppResult<DeliveryStatus> {
        self.inner.deliver(account, delivery.0).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn delays_and_working_hours() {
        let s = Settings::default();
        // Thursday 2026-11-26 20:00 UTC.
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 20, 0, 0).unwrap();
        assert_eq!(schedule(&Delay::Now, false, now, &s), now);
        assert_eq!(
            schedule(&Delay::After { minutes: 90 }, false, now, &s),
            Utc.with_ymd_and_hms(2026, 11, 26, 21, 30, 0).unwrap()
        );
        assert_eq!(
            schedule(
                &Delay::AtTime {
                    hour: 8,
                    minute: 15
                },
                false,
                now,
                &s
            ),
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 15, 0).unwrap()
        );
        // After hours on Thursday: Friday 09:00.
        assert_eq!(
            schedule(&Delay::Now, true, now, &s),
            Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap()
        );
        // Friday evening: Monday 09:00.
        let friday = Utc.with_ymd_and_hms(2026, 11, 27, 18, 0, 0).unwrap();
        assert_eq!(
            schedule(&Delay::Now, true, friday, &s),
            Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()
        );
        // Early on a weekday: that day's start; within hours: as is.
        let early = Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 0).unwrap();
        assert_eq!(
            schedule(&Delay::Now, true, early, &s),
            Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()
        );
        let noon = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        assert_eq!(schedule(&Delay::Now, true, noon, &s), noon);
    }
}
