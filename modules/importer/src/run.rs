//! The import: reads an amoCRM account (see [`crate::amo`]) and writes it into a Voronka
//! account through the other modules' traits, as the system.
//!
//! - **Ids mapped.** Every record brought over is kept in `importer.ids` (amoCRM id → Voronka
//!   id), so a rerun updates what the first run made instead of making it again.
//! - **Resumable.** Definitions (users, pipelines, fields, …) are cheap and are walked again on
//!   every run. Records are read page by page; the run's progress (the steps done, the last page
//!   written, the counts) is saved after each page, and a new start goes on from the next page.
//! - **Exactly once.** Each record is created with a request key derived from the target
//!   account, the source and the amoCRM id (the caller's cause), which the modules keep with the
//!   row: a create repeated after a crash returns the record made the first time.
//! - **History kept.** Creation and change times and authors are set afterwards through each
//!   module's `restore_provenance`.
//! - **Nothing dropped silently.** What Voronka cannot represent, and every record a module
//!   refused, is listed in the report with the reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use accounts_api::{Accounts, GroupId, Lang, NewUser, UserPatch};
use activities_api::{
    Activities, CallParams, EntityKind, EntityRef, IMPORTED_PREFIX, ImportedLog, NewNote, NewTask,
    NoteId, Record, TaskId, TaskPatch, TaskTypeId,
};
use chrono::{DateTime, Utc};
use contacts_api::{CompanyId, CompanyPatch, ContactId, ContactPatch, Contacts, Entity, Reach};
use deals_api::{DealId, DealPatch, Deals, LossReasonId, MoveTo, NewDeal, PipelineId, StageId};
use futures_util::StreamExt;
use kernel::fields::{FieldEnum, FieldType};
use kernel::provenance::Provenance;
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::amo::{AmoClient, AmoError};
use crate::store::Store;
use crate::survey::counterpart;

/// The namespace of the request keys the import creates records with.
const KEYS: uuid::Uuid = uuid::Uuid::from_u128(0x5f0c_7a1e_2b4d_4c8e_9a61_3e7d_0b2c_1f48);

/// Something the import did not bring over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    pub entity: String,
    pub id: i64,
    pub reason: String,
}

/// Where a run stands; saved after each step and each page of records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Steps finished.
    pub done: Vec<String>,
    /// The step under way and the last page of it written.
    pub step: String,
    pub page: u32,
    pub read: BTreeMap<String, u64>,
    pub created: BTreeMap<String, u64>,
    pub updated: BTreeMap<String, u64>,
    pub skipped: Vec<Skip>,
    /// Values of fields without a counterpart left behind, by "entity|field id".
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
    /// Requests made and seconds spent over every start of the run.
    pub requests: u64,
    pub seconds: f64,
}

impl Progress {
    fn add(map: &mut BTreeMap<String, u64>, entity: &str, n: u64) {
        if n > 0 {
            *map.entry(entity.to_string()).or_default() += n;
        }
    }

    /// How far the run is (0–100), by steps: those done, and half of the one under way once
    /// it has written a page.
    pub fn percent(&self) -> u32 {
        let done = STEPS
            .iter()
            .filter(|s| self.done.iter().any(|d| d == *s))
            .count() as f64;
        let under_way = if !self.step.is_empty() && self.page > 0 {
            0.5
        } else {
            0.0
        };
        (((done + under_way) / STEPS.len() as f64) * 100.0).round() as u32
    }

    /// The final report: per entity read, created, updated; then every skipped item.
    pub fn report(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "  {:<28} {:>9} {:>9} {:>9}\n",
            "entity", "read", "created", "updated"
        ));
        let mut entities: Vec<&String> = self.read.keys().collect();
        for e in self.created.keys().chain(self.updated.keys()) {
            if !entities.contains(&e) {
                entities.push(e);
            }
        }
        for e in entities {
            let n = |m: &BTreeMap<String, u64>| m.get(e).copied().unwrap_or(0);
            out.push_str(&format!(
                "  {:<28} {:>9} {:>9} {:>9}\n",
                e,
                n(&self.read),
                n(&self.created),
                n(&self.updated)
            ));
        }
        if self.skipped.is_empty() {
            out.push_str("skipped: nothing\n");
        } else {
            out.push_str(&format!("skipped ({}):\n", self.skipped.len()));
            for s in &self.skipped {
                out.push_str(&format!("  {} {}: {}\n", s.entity, s.id, s.reason));
            }
        }
        out.push_str(&format!(
            "read with {} requests in {:.1} s ({:.2}/s)\n",
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds.max(0.001)
        ));
        out
    }
}

#[derive(Debug)]
pub enum ImportError {
    Amo(AmoError),
    App(AppError),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Amo(e) => write!(f, "{e}"),
            ImportError::App(e) => write!(f, "writing into Voronka: {e}"),
        }
    }
}

impl std::error::Error for ImportError {}

impl From<AmoError> for ImportError {
    fn from(e: AmoError) -> Self {
        ImportError::Amo(e)
    }
}

impl From<AppError> for ImportError {
    fn from(e: AppError) -> Self {
        ImportError::App(e)
    }
}

type Result<T> = std::result::Result<T, ImportError>;

/// The modules the import writes into.
#[derive(Clone)]
pub struct Targets {
    pub accounts: Arc<dyn Accounts>,
    pub deals: Arc<dyn Deals>,
    pub contacts: Arc<dyn Contacts>,
    pub activities: Arc<dyn Activities>,
}

pub struct Importer {
    store: Store,
    t: Targets,
}

/// The steps of a run, in order: definitions first, then the records that refer to them.
const STEPS: [&str; 14] = [
    "users",
    "pipelines",
    "loss_reasons",
    "fields",
    "tags",
    "task_types",
    "companies",
    "contacts",
    "leads",
    "leads/notes",
    "contacts/notes",
    "companies/notes",
    "tasks",
    "events",
];

/// Records written at once within a page.
const WRITES_AT_ONCE: usize = 8;

/// New records are written several at a time; a page with updates (a rerun) one by one: updates
/// of records linked to the same others were seen to fail under load when run at once.
fn at_once(any_update: bool) -> usize {
    if any_update { 1 } else { WRITES_AT_ONCE }
}

/// A lead as it is to be written.
struct LeadPlan<'r> {
    r: &'r Value,
    amo: i64,
    /// Ours, when an earlier run brought it.
    local: Option<i64>,
    pipeline: i64,
    stage: i64,
    loss_reason: Option<i64>,
    deal: NewDeal,
}

/// A contact as it is to be written.
struct ContactPlan<'r> {
    r: &'r Value,
    amo: i64,
    local: Option<i64>,
    contact: contacts_api::NewContact,
}

struct LeadWritten {
    local: i64,
    created: bool,
    /// Why its stage could not be set.
    not_moved: Option<String>,
}

/// What a run ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: i64,
    /// Whether it went on from an earlier start that stopped.
    pub resumed: bool,
    pub progress: Progress,
}

/// One of our field definitions, as the fields step compares and updates them.
#[derive(Clone)]
struct Ours {
    id: i64,
    name: String,
    ty: FieldType,
    enums: Vec<FieldEnum>,
    group: Option<i64>,
    required: Vec<deals_api::RequiredAt>,
}

/// One custom field of amoCRM's as it lands here.
#[derive(Debug, Clone)]
enum Landing {
    /// A field of ours.
    Field { id: i64, ty: FieldType },
    /// A part of the record itself (`PHONE`, `EMAIL`, `POSITION`, `WEB`, `ADDRESS`).
    Part(&'static str),
    /// Nothing: the type has no counterpart (the values are counted and reported).
    Nowhere { name: String, ty: String },
}

/// A run under way.
struct Job<'a> {
    imp: &'a Importer,
    client: &'a AmoClient,
    account: AccountId,
    source: String,
    run: i64,
    progress: Progress,
    ids: HashMap<(String, i64), i64>,
    /// By (records' entity, amoCRM field id).
    fields: HashMap<(String, i64), Landing>,
    /// amoCRM enum id → ours, by records' entity.
    enums: HashMap<(String, i64), i64>,
    /// Who owns records whose amoCRM user is not known here: the account's first admin.
    fallback: UserId,
    /// Whether the current step's definitions count (not on a walk repeated by a resume).
    counting: bool,
}

impl Importer {
    pub fn new(pool: kernel::db::DbPool, targets: Targets) -> Importer {
        Importer {
            store: Store::new(pool),
            t: targets,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Imports (or goes on importing, or updates) the amoCRM account `client` reads into
    /// `account`. `on_page` is told after each step and page (for a progress display).
    pub async fn run(
        &self,
        client: &AmoClient,
        account: AccountId,
        mut on_page: impl FnMut(&Progress),
    ) -> Result<Outcome> {
        let source = client.base_url().to_lowercase();
        let (run, resumed) = self.store.open_run(account, &source).await?;
        let system = Caller::importing(account);
        let fallback = self.fallback_user(system).await?;
        let mut job = Job {
            imp: self,
            client,
            account,
            source: source.clone(),
            run: run.id,
            progress: run.progress,
            ids: self.store.ids(account, &source).await?,
            fields: HashMap::new(),
            enums: HashMap::new(),
            fallback,
            counting: true,
        };
        let result = job.all(&mut on_page).await;
        match &result {
            Ok(()) => self.store.finish(run.id, None).await?,
            Err(e) => {
                let _ = self.store.finish(run.id, Some(&e.to_string())).await;
            }
        }
        result?;
        Ok(Outcome {
            run: run.id,
            resumed,
            progress: job.progress,
        })
    }

    /// The account's first active administrator: records whose owner cannot be found.
    async fn fallback_user(&self, system: Caller) -> AppResult<UserId> {
        let page = self
            .t
            .accounts
            .list_users(system, kernel::paging::PageRequest::new(None, Some(250)))
            .await?;
        page.items
            .iter()
            .find(|u| u.is_admin && u.is_active)
            .map(|u| u.id)
            .ok_or_else(|| {
                AppError::validation(
                    "account",
                    "no_admin",
                    "the Voronka account has no active administrator",
                )
            })
    }
}

fn id_of(v: &Value) -> i64 {
    v.get("id").and_then(Value::as_i64).unwrap_or(0)
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn time_of(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)
        .and_then(Value::as_i64)
        .filter(|t| *t > 0)
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// A module's refusal of one record (it is skipped and reported); anything else stops the
/// run, which can be started again.
fn refused(e: &AppError) -> bool {
    matches!(
        e.code,
        ErrorCode::Validation | ErrorCode::NotFound | ErrorCode::Conflict
    )
}

fn color_of(v: &Value) -> String {
    let c = str_of(v, "color").trim().to_lowercase();
    if c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit()) {
        c
    } else {
        "#99ccff".into()
    }
}

impl Job<'_> {
    fn key(&self, entity: &str, amo_id: i64) -> Caller {
        let name = format!("{}|{}|{entity}|{amo_id}", self.account.0, self.source);
        Caller::importing(self.account).caused_by(uuid::Uuid::new_v5(&KEYS, name.as_bytes()))
    }

    fn system(&self) -> Caller {
        Caller::importing(self.account)
    }

    fn local(&self, entity: &str, amo_id: i64) -> Option<i64> {
        self.ids.get(&(entity.to_string(), amo_id)).copied()
    }

    fn skip(&mut self, entity: &str, id: i64, reason: impl Into<String>) {
        self.progress.skipped.push(Skip {
            entity: entity.into(),
            id,
            reason: reason.into(),
        });
    }

    async fn remember(&mut self, entity: &str, pairs: &[(i64, i64)]) -> Result<()> {
        self.imp
            .store
            .map(self.account, &self.source, entity, pairs)
            .await?;
        for (a, l) in pairs {
            self.ids.insert((entity.to_string(), *a), *l);
        }
        Ok(())
    }

    /// The user a record of amoCRM's user `amo` belongs to here.
    fn user(&self, amo: i64) -> Option<UserId> {
        self.local("users", amo).map(UserId)
    }

    /// The author of a record (0, the system, when amoCRM's is not known).
    fn author(&self, amo: i64) -> i64 {
        self.local("users", amo).unwrap_or(0)
    }

    fn provenance(&self, local: i64, v: &Value, closed_at: Option<DateTime<Utc>>) -> Provenance {
        let created = time_of(v, "created_at").unwrap_or_else(Utc::now);
        let updated = time_of(v, "updated_at").unwrap_or(created).max(created);
        let created_by = self.author(v.get("created_by").and_then(Value::as_i64).unwrap_or(0));
        let updated_by = match v.get("updated_by").and_then(Value::as_i64) {
            Some(u) => self.author(u),
            None => created_by,
        };
        Provenance {
            id: local,
            created_at: created,
            updated_at: updated,
            created_by,
            updated_by,
            closed_at,
        }
    }

    async fn all(&mut self, on_page: &mut impl FnMut(&Progress)) -> Result<()> {
        let started = Instant::now();
        let seconds_before = self.progress.seconds;
        let requests_before = self.progress.requests;
        let traffic_before = self.client.traffic().requests;
        for step in STEPS {
            let done = self.progress.done.iter().any(|d| d == step);
            if done && !is_definition(step) {
                continue;
            }
            // Definitions done already are walked again (for their ids) without moving the
            // point a resume goes on from.
            self.counting = !done;
            if !done && self.progress.step != step {
                self.progress.step = step.to_string();
                self.progress.page = 0;
            }
            match step {
                "users" => self.users().await?,
                "pipelines" => self.pipelines().await?,
                "loss_reasons" => self.loss_reasons().await?,
                "fields" => self.fields().await?,
                "tags" => self.tags().await?,
                "task_types" => self.task_types().await?,
                _ => {
                    // Records: page by page from where an earlier start stopped. The next page
                    // is read while this one is written, so that reading at amoCRM's pace and
                    // writing here overlap (it is written only after this one's checkpoint).
                    let client = self.client;
                    let (path, key, extra) = records_path(step);
                    let mut page = self.progress.page + 1;
                    let mut got = client.page(&path, key, page, &extra).await?;
                    loop {
                        let n = got.items.len() as u64;
                        Progress::add(&mut self.progress.read, step, n);
                        let more = got.more;
                        let items = std::mem::take(&mut got.items);
                        let write = async {
                            match step {
                                "companies" => self.companies(items).await,
                                "contacts" => self.contacts(items).await,
                                "leads" => self.leads(items).await,
                                "tasks" => self.tasks(items).await,
                                "events" => self.events(items).await,
                                _ => self.notes(step, items).await,
                            }
                        };
                        let next = async {
                            if more {
                                client.page(&path, key, page + 1, &extra).await.map(Some)
                            } else {
                                Ok(None)
                            }
                        };
                        let (written, next) = tokio::join!(write, next);
                        written?;
                        self.progress.page = page;
                        self.checkpoint(started, seconds_before, requests_before, traffic_before)
                            .await?;
                        on_page(&self.progress);
                        match next? {
                            Some(n) => got = n,
                            None => break,
                        }
                        page += 1;
                    }
                }
            }
            if self.counting {
                self.progress.done.push(step.to_string());
                self.progress.step.clear();
                self.progress.page = 0;
            }
            if step == "leads" || step == "contacts" || step == "companies" {
                self.report_dropped(step);
            }
            if step == "events" {
                self.report_events_left();
            }
            self.checkpoint(started, seconds_before, requests_before, traffic_before)
                .await?;
            on_page(&self.progress);
        }
        Ok(())
    }

    async fn checkpoint(
        &mut self,
        started: Instant,
        seconds_before: f64,
        requests_before: u64,
        traffic_before: u64,
    ) -> Result<()> {
        self.progress.seconds = seconds_before + started.elapsed().as_secs_f64();
        self.progress.requests =
            requests_before + (self.client.traffic().requests - traffic_before);
        self.imp.store.save(self.run, &self.progress).await?;
        Ok(())
    }

    fn report_dropped(&mut self, entity: &str) {
        let prefix = format!("{entity}|");
        let dropped: Vec<(String, u64)> = self
            .progress
            .dropped
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        for (k, n) in dropped {
            self.progress.dropped.remove(&k);
            let field: i64 = k[prefix.len()..].parse().unwrap_or(0);
            let (name, ty) = match self.fields.get(&(entity.to_string(), field)) {
                Some(Landing::Nowhere { name, ty }) => (name.clone(), ty.clone()),
                _ => (String::new(), String::new()),
            };
            let reason = format!(
                "{n} value(s) of field {name:?} ({ty}) are left behind: Voronka has no such field type"
            );
            self.skip(&format!("{entity}/values"), field, reason);
        }
    }

    // --- definitions ------------------------------------------------------------------------

    async fn users(&mut self) -> Result<()> {
        let system = self.system();
        // Groups first: users belong to them.
        let account = self
            .client
            .get("/api/v4/account", &[("with", "users_groups".into())])
            .await?;
        let groups: Vec<Value> = account
            .as_ref()
            .and_then(|a| a.pointer("/_embedded/users_groups"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut ours = self.imp.t.accounts.list_groups(system).await?;
        let mut pairs = Vec::new();
        for g in &groups {
            let (id, name) = (id_of(g), str_of(g, "name").trim().to_string());
            // Group 0 is amoCRM's "main" group: users without a group here.
            if id == 0 || name.is_empty() {
                continue;
            }
            let local = match ours.iter().find(|o| o.name.eq_ignore_ascii_case(&name)) {
                Some(o) => o.id.0,
                None => {
                    let made = self.imp.t.accounts.create_group(system, &name).await?;
                    if self.counting {
                        Progress::add(&mut self.progress.created, "groups", 1);
                    }
                    let id = made.id.0;
                    ours.push(made);
                    id
                }
            };
            pairs.push((id, local));
        }
        if self.counting {
            Progress::add(&mut self.progress.read, "groups", pairs.len() as u64);
        }
        self.remember("groups", &pairs).await?;

        let mut page = 1;
        loop {
            let got = self
                .client
                .page("/api/v4/users", "users", page, &[])
                .await?;
            if self.counting {
                Progress::add(&mut self.progress.read, "users", got.items.len() as u64);
            }
            let mut pairs = Vec::new();
            for u in &got.items {
                let amo = id_of(u);
                if self.local("users", amo).is_some() {
                    continue;
                }
                match self.user_for(u).await? {
                    Some(local) => pairs.push((amo, local)),
                    None => continue,
                }
            }
            self.remember("users", &pairs).await?;
            if !got.more {
                break;
            }
            page += 1;
        }
        Ok(())
    }

    /// The user of ours for amoCRM's `u`: the account's user with that e-mail, or a new,
    /// inactive one (it can sign in once an administrator activates it and sets a password).
    async fn user_for(&mut self, u: &Value) -> Result<Option<i64>> {
        let system = self.system();
        let amo = id_of(u);
        let name = {
            let n = str_of(u, "name").trim();
            if n.is_empty() {
                format!("amoCRM user {amo}")
            } else {
                n.to_string()
            }
        };
        let email = str_of(u, "email").trim().to_lowercase();
        let found = if email.is_empty() {
            None
        } else {
            self.imp.t.accounts.find_user_by_email(&email).await?
        };
        if let Some(f) = &found
            && f.account_id == self.account
        {
            return Ok(Some(f.id.0));
        }
        let taken = found.is_some();
        let address = if email.is_empty() || taken {
            let placeholder = format!("amocrm-{amo}@import.invalid");
            self.skip(
                "users",
                amo,
                if email.is_empty() {
                    format!("{name:?} has no e-mail: created inactive as {placeholder}; set a real e-mail before activating")
                } else {
                    format!("{email} belongs to a user of another Voronka account: {name:?} created inactive as {placeholder}")
                },
            );
            placeholder
        } else {
            email
        };
        if let Some(found) = self.imp.t.accounts.find_user_by_email(&address).await?
            && found.account_id == self.account
        {
            return Ok(Some(found.id.0));
        }
        let group = u
            .pointer("/rights/group_id")
            .and_then(Value::as_i64)
            .and_then(|g| self.local("groups", g))
            .map(GroupId);
        let lang = match str_of(u, "lang") {
            "ru" => Lang::Ru,
            _ => Lang::En,
        };
        let made = self
            .imp
            .t
            .accounts
            .create_user(
                system,
                NewUser {
                    name,
                    email: address,
                    // Nobody knows it: the user signs in after an administrator sets one.
                    password: format!(
                        "{}{}",
                        uuid::Uuid::new_v4().simple(),
                        uuid::Uuid::new_v4().simple()
                    ),
                    is_admin: u
                        .pointer("/rights/is_admin")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    lang,
                    time_zone: "UTC".into(),
                    group_id: group,
                    role_id: None,
                },
            )
            .await;
        let made = match made {
            Ok(m) => m,
            Err(e) if refused(&e) => {
                self.skip("users", amo, format!("refused: {e}"));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        self.imp
            .t
            .accounts
            .update_user(
                system,
                made.id,
                UserPatch {
                    is_active: Some(false),
                    ..UserPatch::default()
                },
            )
            .await?;
        Progress::add(&mut self.progress.created, "users", 1);
        Ok(Some(made.id.0))
    }

    async fn pipelines(&mut self) -> Result<()> {
        let system = self.system();
        let mut page = 1;
        loop {
            let got = self
                .client
                .page("/api/v4/leads/pipelines", "pipelines", page, &[])
                .await?;
            if self.counting {
                Progress::add(&mut self.progress.read, "pipelines", got.items.len() as u64);
            }
            for p in &got.items {
                let amo = id_of(p);
                let mut statuses: Vec<Value> = p
                    .pointer("/_embedded/statuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                statuses.sort_by_key(|s| s.get("sort").and_then(Value::as_i64).unwrap_or(0));
                let is_open = |s: &Value| {
                    ![142, 143].contains(&id_of(s))
                        && s.get("type").and_then(Value::as_i64) != Some(1)
                };
                if self.counting {
                    Progress::add(&mut self.progress.read, "statuses", statuses.len() as u64);
                }
                let pipeline = match self.local("pipelines", amo) {
                    Some(local) => self.imp.t.deals.pipeline(system, PipelineId(local)).await?,
                    None => {
                        let name = str_of(p, "name").trim().to_string();
                        let made = self
                            .imp
                            .t
                            .deals
                            .create_pipeline(
                                system,
                                deals_api::NewPipeline {
                                    name: if name.is_empty() {
                                        format!("Pipeline {amo}")
                                    } else {
                                        name
                                    },
                                    stages: statuses
                                        .iter()
                                        .filter(|s| is_open(s))
                                        .map(|s| deals_api::NewStage {
                                            name: str_of(s, "name").trim().to_string(),
                                            color: color_of(s),
                                        })
                                        .collect(),
                                },
                            )
                            .await?;
                        Progress::add(&mut self.progress.created, "pipelines", 1);
                        // Its open stages are the amoCRM ones, in order.
                        let open: Vec<i64> = made
                            .stages
                            .iter()
                            .filter(|s| s.kind == deals_api::StageKind::Open)
                            .map(|s| s.id.0)
                            .collect();
                        let pairs: Vec<(i64, i64)> = statuses
                            .iter()
                            .filter(|s| is_open(s))
                            .map(id_of)
                            .zip(open)
                            .collect();
                        Progress::add(
                            &mut self.progress.created,
                            "statuses",
                            pairs.len() as u64 + 3,
                        );
                        self.remember("statuses", &pairs).await?;
                        self.remember("pipelines", &[(amo, made.id.0)]).await?;
                        made
                    }
                };
                // The system stages, and open stages added in amoCRM since the last run.
                let mut pairs = Vec::new();
                for s in &statuses {
                    let sid = id_of(s);
                    if [142, 143].contains(&sid) {
                        continue;
                    }
                    if s.get("type").and_then(Value::as_i64) == Some(1) {
                        if let Some(incoming) = pipeline
                            .stages
                            .iter()
                            .find(|st| st.kind == deals_api::StageKind::Incoming)
                        {
                            pairs.push((sid, incoming.id.0));
                        }
                        continue;
                    }
                    if self.local("statuses", sid).is_none() {
                        let made = self
                            .imp
                            .t
                            .deals
                            .add_stage(
                                system,
                                pipeline.id,
                                deals_api::NewStage {
                                    name: str_of(s, "name").trim().to_string(),
                                    color: color_of(s),
                                },
                            )
                            .await?;
                        Progress::add(&mut self.progress.created, "statuses", 1);
                        pairs.push((sid, made.id.0));
                    }
                }
                self.remember("statuses", &pairs).await?;
            }
            if !got.more {
                break;
            }
            page += 1;
        }
        Ok(())
    }

    async fn loss_reasons(&mut self) -> Result<()> {
        let system = self.system();
        let mut ours = self.imp.t.deals.loss_reasons(system).await?;
        let mut page = 1;
        loop {
            let got = self
                .client
                .page("/api/v4/leads/loss_reasons", "loss_reasons", page, &[])
                .await?;
            if self.counting {
                Progress::add(
                    &mut self.progress.read,
                    "loss_reasons",
                    got.items.len() as u64,
                );
            }
            let mut pairs = Vec::new();
            for r in &got.items {
                let name = str_of(r, "name").trim().to_string();
                let local = match ours.iter().find(|o| o.name.eq_ignore_ascii_case(&name)) {
                    Some(o) => o.id.0,
                    None => match self.imp.t.deals.create_loss_reason(system, &name).await {
                        Ok(made) => {
                            Progress::add(&mut self.progress.created, "loss_reasons", 1);
                            let id = made.id.0;
                            ours.push(made);
                            id
                        }
                        Err(e) if refused(&e) => {
                            self.skip("loss_reasons", id_of(r), format!("refused: {e}"));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    },
                };
                pairs.push((id_of(r), local));
            }
            self.remember("loss_reasons", &pairs).await?;
            if !got.more {
                break;
            }
            page += 1;
        }
        Ok(())
    }

    async fn fields(&mut self) -> Result<()> {
        let system = self.system();
        for e in ["leads", "contacts", "companies"] {
            let entity = match e {
                "contacts" => Some(Entity::Contact),
                "companies" => Some(Entity::Company),
                _ => None,
            };
            // Ours, to reuse a field of the same name and type.
            let mut ours: Vec<Ours> = match entity {
                None => self
                    .imp
                    .t
                    .deals
                    .custom_fields(system)
                    .await?
                    .into_iter()
                    .map(|f| Ours {
                        id: f.id.0,
                        name: f.name,
                        ty: f.field_type,
                        enums: f.enums,
                        group: f.group_id,
                        required: f.required_statuses,
                    })
                    .collect(),
                Some(en) => self
                    .imp
                    .t
                    .contacts
                    .custom_fields(system, en)
                    .await?
                    .into_iter()
                    .map(|f| Ours {
                        id: f.id.0,
                        name: f.name,
                        ty: f.field_type,
                        enums: f.enums,
                        group: f.group_id,
                        required: Vec::new(),
                    })
                    .collect(),
            };
            let groups = self.field_groups(e, entity).await?;
            let mut page = 1;
            loop {
                let path = format!("/api/v4/{e}/custom_fields");
                let got = self.client.page(&path, "custom_fields", page, &[]).await?;
                if self.counting {
                    Progress::add(
                        &mut self.progress.read,
                        &format!("{e}/custom_fields"),
                        got.items.len() as u64,
                    );
                }
                let mut pairs = Vec::new();
                for f in &got.items {
                    let amo = id_of(f);
                    let name = str_of(f, "name").trim().to_string();
                    let t = str_of(f, "type");
                    let code = f.get("code").and_then(Value::as_str);
                    let part = match (e, code) {
                        ("contacts" | "companies", Some("PHONE")) => Some("PHONE"),
                        ("contacts" | "companies", Some("EMAIL")) => Some("EMAIL"),
                        ("contacts", Some("POSITION")) => Some("POSITION"),
                        ("companies", Some("WEB")) => Some("WEB"),
                        ("companies", Some("ADDRESS")) => Some("ADDRESS"),
                        _ => None,
                    };
                    if let Some(part) = part {
                        self.fields
                            .insert((e.to_string(), amo), Landing::Part(part));
                        continue;
                    }
                    let Some(ty) = counterpart(t, code)
                        .filter(|c| !["phones", "emails"].contains(c))
                        .and_then(FieldType::parse)
                    else {
                        if self.counting {
                            self.skip(
                                &format!("{e}/custom_fields"),
                                amo,
                                format!("field {name:?} is of type {t:?}, which Voronka has no counterpart for: neither it nor its values are imported"),
                            );
                        }
                        self.fields.insert(
                            (e.to_string(), amo),
                            Landing::Nowhere {
                                name,
                                ty: t.to_string(),
                            },
                        );
                        continue;
                    };
                    let amo_enums: Vec<(i64, String)> = f
                        .get("enums")
                        .and_then(Value::as_array)
                        .map(|a| {
                            let mut a = a.clone();
                            a.sort_by_key(|x| x.get("sort").and_then(Value::as_i64).unwrap_or(0));
                            a.iter()
                                .map(|x| (id_of(x), str_of(x, "value").to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mapped = self.local(&format!("fields:{e}"), amo);
                    let group = match f.get("group_id") {
                        Some(Value::String(g)) => groups.get(g.as_str()).copied(),
                        Some(Value::Number(g)) => groups.get(g.to_string().as_str()).copied(),
                        _ => None,
                    };
                    let required = self.required_at(e, amo, &name, f);
                    let existing = ours
                        .iter()
                        .find(|o| {
                            Some(o.id) == mapped
                                || (mapped.is_none()
                                    && o.name.eq_ignore_ascii_case(&name)
                                    && o.ty == ty)
                        })
                        .cloned();
                    let (id, enums) = match existing {
                        Some(o) if o.group == group && o.required == required => (o.id, o.enums),
                        // A rerun puts a field in its (new) group, required where amoCRM says.
                        Some(o) => {
                            self.regroup(entity, &o, group, &required).await?;
                            (o.id, o.enums)
                        }
                        None => {
                            let enum_texts: Vec<String> =
                                amo_enums.iter().map(|x| x.1.clone()).collect();
                            let made = match entity {
                                None => self
                                    .imp
                                    .t
                                    .deals
                                    .create_custom_field(
                                        system,
                                        deals_api::NewCustomField {
                                            name: name.clone(),
                                            field_type: ty,
                                            enums: enum_texts,
                                            required_statuses: required.clone(),
                                            group_id: group,
                                        },
                                    )
                                    .await
                                    .map(|f| (f.id.0, f.enums)),
                                Some(en) => self
                                    .imp
                                    .t
                                    .contacts
                                    .create_custom_field(
                                        system,
                                        en,
                                        contacts_api::NewCustomField {
                                            name: name.clone(),
                                            field_type: ty,
                                            enums: enum_texts,
                                            group_id: group,
                                        },
                                    )
                                    .await
                                    .map(|f| (f.id.0, f.enums)),
                            };
                            match made {
                                Ok((id, enums)) => {
                                    Progress::add(
                                        &mut self.progress.created,
                                        &format!("{e}/custom_fields"),
                                        1,
                                    );
                                    ours.push(Ours {
                                        id,
                                        name: name.clone(),
                                        ty,
                                        enums: enums.clone(),
                                        group,
                                        required,
                                    });
                                    (id, enums)
                                }
                                Err(err) if refused(&err) => {
                                    self.skip(
                                        &format!("{e}/custom_fields"),
                                        amo,
                                        format!("refused: {err}"),
                                    );
                                    self.fields.insert(
                                        (e.to_string(), amo),
                                        Landing::Nowhere {
                                            name,
                                            ty: t.to_string(),
                                        },
                                    );
                                    continue;
                                }
                                Err(err) => return Err(err.into()),
                            }
                        }
                    };
                    // Choices by text (ours keep amoCRM's order and texts).
                    for (amo_enum, text) in &amo_enums {
                        if let Some(o) = enums.iter().find(|x| x.value.eq_ignore_ascii_case(text)) {
                            self.enums.insert((e.to_string(), *amo_enum), o.id);
                        }
                    }
                    self.fields
                        .insert((e.to_string(), amo), Landing::Field { id, ty });
                    pairs.push((amo, id));
                }
                self.remember(&format!("fields:{e}"), &pairs).await?;
                if !got.more {
                    break;
                }
                page += 1;
            }
        }
        Ok(())
    }

    /// amoCRM's field groups of an entity type, matched to ours by name (created when missing),
    /// as amoCRM's group id → ours.
    async fn field_groups(
        &mut self,
        e: &str,
        entity: Option<Entity>,
    ) -> Result<HashMap<String, i64>> {
        let system = self.system();
        let mut theirs: Vec<Value> = Vec::new();
        self.client
            .each_page(
                &format!("/api/v4/{e}/custom_fields/groups"),
                "custom_field_groups",
                &[],
                1,
                |_, items| {
                    theirs.extend(items);
                    async { Ok(()) }
                },
            )
            .await?;
        let key = format!("{e}/custom_field_groups");
        if self.counting {
            Progress::add(&mut self.progress.read, &key, theirs.len() as u64);
        }
        let mut ours = match entity {
            None => self.imp.t.deals.field_groups(system).await?,
            Some(en) => self.imp.t.contacts.field_groups(system, en).await?,
        };
        let mut out = HashMap::new();
        for g in &theirs {
            let amo = match g.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => continue,
            };
            let name = str_of(g, "name").trim().to_string();
            let sort = g
                .get("sort")
                .and_then(Value::as_i64)
                .and_then(|s| i32::try_from(s).ok());
            let local = match ours.iter().find(|o| o.name.eq_ignore_ascii_case(&name)) {
                Some(o) => o.id,
                None => {
                    let new = kernel::fields::NewFieldGroup {
                        name: name.clone(),
                        sort,
                    };
                    let made = match entity {
                        None => self.imp.t.deals.create_field_group(system, new).await,
                        Some(en) => {
                            self.imp
                                .t
                                .contacts
                                .create_field_group(system, en, new)
                                .await
                        }
                    };
                    match made {
                        Ok(g) => {
                            Progress::add(&mut self.progress.created, &key, 1);
                            let id = g.id;
                            ours.push(g);
                            id
                        }
                        Err(err) if refused(&err) => {
                            if self.counting {
                                self.skip(
                                    &key,
                                    0,
                                    format!("field group {name:?} ({amo}): refused: {err}; its fields are imported into the main list"),
                                );
                            }
                            continue;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            };
            out.insert(amo, local);
        }
        Ok(out)
    }

    /// A lead field's `required_statuses`, as our stages; the ones whose pipeline or stage did
    /// not come over are reported (once, on the counting pass).
    fn required_at(
        &mut self,
        e: &str,
        amo: i64,
        name: &str,
        f: &Value,
    ) -> Vec<deals_api::RequiredAt> {
        let mut out = Vec::new();
        if e != "leads" {
            return out;
        }
        for r in f
            .get("required_statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let p = r.get("pipeline_id").and_then(Value::as_i64).unwrap_or(0);
            let st = r.get("status_id").and_then(Value::as_i64).unwrap_or(0);
            let stage = if st == 142 || st == 143 {
                Some(st)
            } else {
                self.local("statuses", st)
            };
            match (self.local("pipelines", p), stage) {
                (Some(p), Some(st)) => out.push(deals_api::RequiredAt {
                    pipeline_id: deals_api::PipelineId(p),
                    status_id: deals_api::StageId(st),
                }),
                _ if self.counting => self.skip(
                    "leads/custom_fields",
                    amo,
                    format!("field {name:?} is required at stage {st} of pipeline {p}, which was not imported: that requirement is left out"),
                ),
                _ => {}
            }
        }
        out
    }

    /// Moves one of our fields into another group (or the main list), keeping the rest of it.
    async fn regroup(
        &mut self,
        entity: Option<Entity>,
        o: &Ours,
        group: Option<i64>,
        required: &[deals_api::RequiredAt],
    ) -> Result<()> {
        let system = self.system();
        let enums: Vec<String> = o.enums.iter().map(|x| x.value.clone()).collect();
        match entity {
            None => {
                self.imp
                    .t
                    .deals
                    .update_custom_field(
                        system,
                        deals_api::FieldId(o.id),
                        deals_api::NewCustomField {
                            name: o.name.clone(),
                            field_type: o.ty,
                            enums,
                            required_statuses: required.to_vec(),
                            group_id: group,
                        },
                    )
                    .await?;
            }
            Some(_) => {
                self.imp
                    .t
                    .contacts
                    .update_custom_field(
                        system,
                        contacts_api::FieldId(o.id),
                        contacts_api::NewCustomField {
                            name: o.name.clone(),
                            field_type: o.ty,
                            enums,
                            group_id: group,
                        },
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn tags(&mut self) -> Result<()> {
        let system = self.system();
        for e in ["leads", "contacts", "companies"] {
            let mut page = 1;
            loop {
                let got = self
                    .client
                    .page(&format!("/api/v4/{e}/tags"), "tags", page, &[])
                    .await?;
                let names: Vec<String> = got
                    .items
                    .iter()
                    .map(|t| str_of(t, "name").trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                if self.counting {
                    Progress::add(
                        &mut self.progress.read,
                        &format!("{e}/tags"),
                        got.items.len() as u64,
                    );
                }
                if !names.is_empty() {
                    let n = names.len() as u64;
                    match e {
                        "leads" => {
                            self.imp.t.deals.create_tags(system, names).await?;
                        }
                        "contacts" => {
                            self.imp
                                .t
                                .contacts
                                .create_tags(system, Entity::Contact, names)
                                .await?;
                        }
                        _ => {
                            self.imp
                                .t
                                .contacts
                                .create_tags(system, Entity::Company, names)
                                .await?;
                        }
                    }
                    if self.counting {
                        Progress::add(&mut self.progress.created, &format!("{e}/tags"), n);
                    }
                }
                if !got.more {
                    break;
                }
                page += 1;
            }
        }
        Ok(())
    }

    async fn task_types(&mut self) -> Result<()> {
        let system = self.system();
        let account = self
            .client
            .get("/api/v4/account", &[("with", "task_types".into())])
            .await?;
        let types: Vec<Value> = account
            .as_ref()
            .and_then(|a| a.pointer("/_embedded/task_types"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if self.counting {
            Progress::add(&mut self.progress.read, "task_types", types.len() as u64);
        }
        let mut ours = self.imp.t.activities.task_types(system).await?;
        let mut pairs = Vec::new();
        for t in &types {
            let (amo, name) = (id_of(t), str_of(t, "name").trim().to_string());
            // amoCRM's own: 1 follow-up, 2 meeting, as ours.
            let local = if amo == 1 || amo == 2 {
                amo
            } else if let Some(o) = ours.iter().find(|o| o.name.eq_ignore_ascii_case(&name)) {
                o.id.0
            } else {
                match self.imp.t.activities.add_task_type(system, &name).await {
                    Ok(made) => {
                        Progress::add(&mut self.progress.created, "task_types", 1);
                        let id = made.id.0;
                        ours.push(made);
                        id
                    }
                    Err(e) if refused(&e) => {
                        self.skip("task_types", amo, format!("refused: {e}"));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            pairs.push((amo, local));
        }
        self.remember("task_types", &pairs).await
    }

    // --- records ----------------------------------------------------------------------------

    /// A record's `custom_fields_values`: ours by field id, and the parts of the record itself
    /// (phones, e-mails, position, web, address) by code.
    fn values(&mut self, entity: &str, r: &Value) -> (Map<String, Value>, Parts) {
        let mut out = Map::new();
        let mut parts = Parts::default();
        for v in r
            .get("custom_fields_values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let values: Vec<Value> = v
                .get("values")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let field = v.get("field_id").and_then(Value::as_i64).unwrap_or(0);
            let code = v.get("field_code").and_then(Value::as_str);
            let landing = self
                .fields
                .get(&(entity.to_string(), field))
                .cloned()
                .or(match code {
                    Some("PHONE") => Some(Landing::Part("PHONE")),
                    Some("EMAIL") => Some(Landing::Part("EMAIL")),
                    _ => None,
                });
            match landing {
                Some(Landing::Part(part)) => {
                    let text = |x: &Value| match x.get("value") {
                        Some(Value::String(s)) => s.trim().to_string(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    };
                    match part {
                        "PHONE" | "EMAIL" => {
                            let list: Vec<Reach> = values
                                .iter()
                                .filter(|x| !text(x).is_empty())
                                .map(|x| {
                                    let kinds: &[&str] = if part == "PHONE" {
                                        &contacts_api::PHONE_KINDS
                                    } else {
                                        &contacts_api::EMAIL_KINDS
                                    };
                                    // amoCRM's kinds are ours; another becomes "OTHER".
                                    let kind = match x.get("enum_code").and_then(Value::as_str) {
                                        None | Some("") => "WORK",
                                        Some(k) if kinds.contains(&k) => k,
                                        Some(_) => "OTHER",
                                    };
                                    Reach {
                                        kind: kind.to_string(),
                                        value: text(x),
                                    }
                                })
                                .collect();
                            if part == "PHONE" {
                                parts.phones.extend(list);
                            } else {
                                parts.emails.extend(list);
                            }
                        }
                        _ => {
                            let joined: Vec<String> =
                                values.iter().map(text).filter(|t| !t.is_empty()).collect();
                            parts.text.insert(part, joined.join(", "));
                        }
                    }
                }
                Some(Landing::Field { id, ty, .. }) => {
                    if let Some(value) = self.value_in(entity, ty, &values) {
                        out.insert(id.to_string(), value);
                    }
                }
                Some(Landing::Nowhere { .. }) => {
                    *self
                        .progress
                        .dropped
                        .entry(format!("{entity}|{field}"))
                        .or_default() += 1;
                }
                None => {
                    *self
                        .progress
                        .dropped
                        .entry(format!("{entity}|{field}"))
                        .or_default() += 1;
                    self.fields.insert(
                        (entity.to_string(), field),
                        Landing::Nowhere {
                            name: str_of(v, "field_name").to_string(),
                            ty: str_of(v, "field_type").to_string(),
                        },
                    );
                }
            }
        }
        (out, parts)
    }

    /// amoCRM's values of a field → what our field of type `ty` takes.
    fn value_in(&self, entity: &str, ty: FieldType, values: &[Value]) -> Option<Value> {
        let first = values.first()?;
        let value = first.get("value").cloned().unwrap_or(Value::Null);
        let enum_of = |x: &Value| {
            x.get("enum_id")
                .and_then(Value::as_i64)
                .and_then(|e| self.enums.get(&(entity.to_string(), e)).copied())
                .map(Value::from)
        };
        Some(match ty {
            FieldType::Select => enum_of(first)?,
            FieldType::Multiselect => {
                let ids: Vec<Value> = values.iter().filter_map(enum_of).collect();
                if ids.is_empty() {
                    return None;
                }
                Value::Array(ids)
            }
            FieldType::Date => match &value {
                Value::Number(n) => Value::String(
                    DateTime::from_timestamp(n.as_i64()?, 0)?
                        .format("%Y-%m-%d")
                        .to_string(),
                ),
                Value::String(s) if s.parse::<i64>().is_ok() => Value::String(
                    DateTime::from_timestamp(s.parse().ok()?, 0)?
                        .format("%Y-%m-%d")
                        .to_string(),
                ),
                other => other.clone(),
            },
            FieldType::DateTime => match &value {
                Value::Number(n) => {
                    Value::String(DateTime::from_timestamp(n.as_i64()?, 0)?.to_rfc3339())
                }
                Value::String(s) if s.parse::<i64>().is_ok() => {
                    Value::String(DateTime::from_timestamp(s.parse().ok()?, 0)?.to_rfc3339())
                }
                other => other.clone(),
            },
            FieldType::Numeric => match &value {
                Value::Number(n) => Value::String(n.to_string()),
                other => other.clone(),
            },
            FieldType::Checkbox => match &value {
                Value::Bool(_) => value.clone(),
                Value::Number(n) => Value::Bool(n.as_i64() != Some(0)),
                Value::String(s) => Value::Bool(matches!(s.as_str(), "1" | "true")),
                _ => return None,
            },
            FieldType::Textarea if values.len() > 1 => Value::String(
                values
                    .iter()
                    .filter_map(|x| x.get("value").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => match &value {
                Value::Null => return None,
                Value::String(_) => value.clone(),
                other => Value::String(other.to_string()),
            },
        })
    }

    fn tag_names(r: &Value) -> Vec<String> {
        r.pointer("/_embedded/tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|t| str_of(t, "name").trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn responsible(&mut self, entity: &str, r: &Value) -> UserId {
        let amo = r
            .get("responsible_user_id")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        match self.user(amo) {
            Some(u) => u,
            None => {
                let fallback = self.fallback;
                self.skip(
                    entity,
                    id_of(r),
                    format!(
                        "responsible user {amo} is not known here: given to user {}",
                        fallback.0
                    ),
                );
                fallback
            }
        }
    }

    async fn companies(&mut self, items: Vec<Value>) -> Result<()> {
        let mut pairs = Vec::new();
        let mut history = Vec::new();
        for r in &items {
            let amo = id_of(r);
            let (custom, parts) = self.values("companies", r);
            let responsible = self.responsible("companies", r);
            let name = str_of(r, "name").trim().to_string();
            let tags = Self::tag_names(r);
            let local = match self.local("companies", amo) {
                Some(local) => {
                    let done = self
                        .imp
                        .t
                        .contacts
                        .update_company(
                            self.system(),
                            CompanyId(local),
                            CompanyPatch {
                                name: Some(name),
                                web: Some(parts.text.get("WEB").cloned().unwrap_or_default()),
                                address: Some(
                                    parts.text.get("ADDRESS").cloned().unwrap_or_default(),
                                ),
                                responsible_user_id: Some(responsible),
                                phones: Some(parts.phones),
                                emails: Some(parts.emails),
                                tags: Some(tags),
                                custom_fields: Some(custom),
                            },
                        )
                        .await;
                    match done {
                        Ok(_) => {
                            Progress::add(&mut self.progress.updated, "companies", 1);
                            local
                        }
                        Err(e) if refused(&e) => {
                            self.skip("companies", amo, format!("not updated: {e}"));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    let made = self
                        .imp
                        .t
                        .contacts
                        .create_company(
                            self.key("companies", amo),
                            contacts_api::NewCompany {
                                name,
                                web: parts.text.get("WEB").cloned().unwrap_or_default(),
                                address: parts.text.get("ADDRESS").cloned().unwrap_or_default(),
                                responsible_user_id: Some(responsible),
                                phones: parts.phones,
                                emails: parts.emails,
                                tags,
                                custom_fields: custom,
                            },
                        )
                        .await;
                    match made {
                        Ok(c) => {
                            Progress::add(&mut self.progress.created, "companies", 1);
                            c.id.0
                        }
                        Err(e) if refused(&e) => {
                            self.skip("companies", amo, format!("refused: {e}"));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            pairs.push((amo, local));
            history.push(self.provenance(local, r, None));
        }
        self.remember("companies", &pairs).await?;
        self.imp
            .t
            .contacts
            .restore_provenance(self.system(), Entity::Company, history)
            .await?;
        Ok(())
    }

    async fn contacts(&mut self, items: Vec<Value>) -> Result<()> {
        // Planned in order, written several at a time, applied in order (as leads are).
        let mut plans = Vec::new();
        for r in &items {
            let amo = id_of(r);
            let (custom, parts) = self.values("contacts", r);
            let responsible = self.responsible("contacts", r);
            let (mut first, last) = (
                str_of(r, "first_name").trim().to_string(),
                str_of(r, "last_name").trim().to_string(),
            );
            if first.is_empty() && last.is_empty() {
                first = str_of(r, "name").trim().to_string();
            }
            let company_ids: Vec<CompanyId> = r
                .pointer("/_embedded/companies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| self.local("companies", id_of(c)))
                .map(CompanyId)
                .collect();
            plans.push(ContactPlan {
                r,
                amo,
                local: self.local("contacts", amo),
                contact: contacts_api::NewContact {
                    first_name: first,
                    last_name: last,
                    position: parts.text.get("POSITION").cloned().unwrap_or_default(),
                    responsible_user_id: Some(responsible),
                    phones: parts.phones,
                    emails: parts.emails,
                    tags: Self::tag_names(r),
                    custom_fields: custom,
                    company_ids,
                },
            });
        }
        let this = &*self;
        let mut writes = Vec::with_capacity(plans.len());
        for plan in &plans {
            writes.push(this.write_contact(plan));
        }
        let results: Vec<std::result::Result<i64, AppError>> = futures_util::stream::iter(writes)
            .buffered(at_once(plans.iter().any(|p| p.local.is_some())))
            .collect()
            .await;
        let mut pairs = Vec::new();
        let mut history = Vec::new();
        for (plan, w) in plans.into_iter().zip(results) {
            match w {
                Ok(local) => {
                    let counter = if plan.local.is_some() {
                        &mut self.progress.updated
                    } else {
                        &mut self.progress.created
                    };
                    Progress::add(counter, "contacts", 1);
                    pairs.push((plan.amo, local));
                    history.push(self.provenance(local, plan.r, None));
                }
                Err(e) if refused(&e) => {
                    let what = if plan.local.is_some() {
                        "not updated"
                    } else {
                        "refused"
                    };
                    self.skip("contacts", plan.amo, format!("{what}: {e}"));
                }
                Err(e) => {
                    self.remember("contacts", &pairs).await?;
                    return Err(e.into());
                }
            }
        }
        self.remember("contacts", &pairs).await?;
        self.imp
            .t
            .contacts
            .restore_provenance(self.system(), Entity::Contact, history)
            .await?;
        Ok(())
    }

    /// Creates (or updates, on a rerun, adding its companies) one contact; its id.
    async fn write_contact(&self, plan: &ContactPlan<'_>) -> std::result::Result<i64, AppError> {
        let contacts = &self.imp.t.contacts;
        let c = plan.contact.clone();
        match plan.local {
            Some(local) => {
                contacts
                    .update_contact(
                        self.system(),
                        ContactId(local),
                        ContactPatch {
                            first_name: Some(c.first_name),
                            last_name: Some(c.last_name),
                            position: Some(c.position),
                            responsible_user_id: c.responsible_user_id,
                            phones: Some(c.phones),
                            emails: Some(c.emails),
                            tags: Some(c.tags),
                            custom_fields: Some(c.custom_fields),
                        },
                    )
                    .await?;
                for company in c.company_ids {
                    contacts
                        .link(self.system(), ContactId(local), company)
                        .await?;
                }
                Ok(local)
            }
            None => Ok(contacts
                .create_contact(self.key("contacts", plan.amo), c)
                .await?
                .id
                .0),
        }
    }

    async fn leads(&mut self, items: Vec<Value>) -> Result<()> {
        // First what each lead becomes (in order: skips and dropped values are counted here),
        // then the writes, several at a time (each is a transaction of its own: one after another
        // they would keep the import well behind amoCRM's pace), then the outcomes in order.
        let mut plans = Vec::new();
        for r in &items {
            let amo = id_of(r);
            let Some(pipeline) = self.local(
                "pipelines",
                r.get("pipeline_id").and_then(Value::as_i64).unwrap_or(0),
            ) else {
                self.skip("leads", amo, "its pipeline was not imported");
                continue;
            };
            let status = r.get("status_id").and_then(Value::as_i64).unwrap_or(0);
            let stage = if status == 142 || status == 143 {
                Some(status)
            } else {
                self.local("statuses", status)
            };
            let Some(stage) = stage else {
                self.skip("leads", amo, format!("its stage {status} was not imported"));
                continue;
            };
            let (custom, _) = self.values("leads", r);
            let responsible = self.responsible("leads", r);
            let mut contacts: Vec<(bool, i64)> = r
                .pointer("/_embedded/contacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    self.local("contacts", id_of(c)).map(|l| {
                        (
                            c.get("is_main").and_then(Value::as_bool).unwrap_or(false),
                            l,
                        )
                    })
                })
                .collect();
            contacts.sort_by_key(|(main, _)| !*main);
            let main = contacts.iter().find(|(m, _)| *m).map(|(_, l)| *l);
            let contact_ids: Vec<i64> = contacts.iter().map(|(_, l)| *l).collect();
            let company_ids: Vec<i64> = r
                .pointer("/_embedded/companies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| self.local("companies", id_of(c)))
                .collect();
            let mut name = str_of(r, "name").trim().to_string();
            if name.is_empty() {
                name = format!("Lead #{amo}");
            }
            let loss_reason = r
                .get("loss_reason_id")
                .and_then(Value::as_i64)
                .and_then(|l| self.local("loss_reasons", l))
                .filter(|_| stage == 143);
            plans.push(LeadPlan {
                r,
                amo,
                local: self.local("leads", amo),
                pipeline,
                stage,
                loss_reason,
                deal: NewDeal {
                    name,
                    price: r.get("price").and_then(Value::as_i64).unwrap_or(0),
                    pipeline_id: PipelineId(pipeline),
                    stage_id: Some(StageId(stage)),
                    responsible_user_id: Some(responsible),
                    tags: Self::tag_names(r),
                    custom_fields: custom,
                    contact_ids,
                    main_contact_id: main,
                    company_ids,
                },
            });
        }
        let this = &*self;
        let mut writes = Vec::with_capacity(plans.len());
        for plan in &plans {
            writes.push(this.write_lead(plan));
        }
        let results: Vec<std::result::Result<LeadWritten, AppError>> =
            futures_util::stream::iter(writes)
                .buffered(at_once(plans.iter().any(|p| p.local.is_some())))
                .collect()
                .await;
        let written: Vec<(LeadPlan, std::result::Result<LeadWritten, AppError>)> =
            plans.into_iter().zip(results).collect();
        let mut pairs = Vec::new();
        let mut history = Vec::new();
        for (plan, w) in written {
            match w {
                Ok(w) => {
                    let counter = if w.created {
                        &mut self.progress.created
                    } else {
                        &mut self.progress.updated
                    };
                    Progress::add(counter, "leads", 1);
                    if let Some(e) = w.not_moved {
                        self.skip("leads", plan.amo, format!("stage not set: {e}"));
                    }
                    pairs.push((plan.amo, w.local));
                    history.push(self.provenance(w.local, plan.r, time_of(plan.r, "closed_at")));
                }
                Err(e) if refused(&e) => {
                    let what = if plan.local.is_some() {
                        "not updated"
                    } else {
                        "refused"
                    };
                    self.skip("leads", plan.amo, format!("{what}: {e}"));
                }
                Err(e) => {
                    // What was written before stays mapped: a resume finds it by its key.
                    self.remember("leads", &pairs).await?;
                    return Err(e.into());
                }
            }
        }
        self.remember("leads", &pairs).await?;
        self.imp
            .t
            .deals
            .restore_provenance(self.system(), history)
            .await?;
        Ok(())
    }

    /// Creates (or updates, on a rerun) one lead, and puts it in its stage. A refusal to set
    /// the stage is reported, not fatal.
    async fn write_lead(&self, plan: &LeadPlan<'_>) -> std::result::Result<LeadWritten, AppError> {
        let deals = &self.imp.t.deals;
        let d = plan.deal.clone();
        let (local, created, current) = match plan.local {
            Some(local) => {
                let d = deals
                    .update_deal(
                        self.system(),
                        DealId(local),
                        DealPatch {
                            name: Some(d.name),
                            price: Some(d.price),
                            responsible_user_id: d.responsible_user_id,
                            tags: Some(d.tags),
                            custom_fields: Some(d.custom_fields),
                            contact_ids: Some(d.contact_ids),
                            main_contact_id: Some(d.main_contact_id),
                            company_ids: Some(d.company_ids),
                        },
                    )
                    .await?;
                (
                    local,
                    false,
                    (d.pipeline_id.0, d.stage_id.0, d.loss_reason_id.map(|l| l.0)),
                )
            }
            None => {
                let d = deals.create_deal(self.key("leads", plan.amo), d).await?;
                (
                    d.id.0,
                    true,
                    (d.pipeline_id.0, d.stage_id.0, d.loss_reason_id.map(|l| l.0)),
                )
            }
        };
        // A stage changed in amoCRM since the last run, or a loss reason to set.
        let (pipeline, stage, loss_reason) = (plan.pipeline, plan.stage, plan.loss_reason);
        let mut not_moved = None;
        if current != (pipeline, stage, loss_reason)
            && !(stage == 143 && loss_reason.is_none() && current.1 == 143)
        {
            let moved = if current.0 == pipeline {
                deals
                    .move_deal(
                        self.system(),
                        DealId(local),
                        MoveTo {
                            stage_id: StageId(stage),
                            after: None,
                            loss_reason_id: loss_reason.map(LossReasonId),
                        },
                    )
                    .await
            } else {
                deals
                    .move_deal_to_pipeline(
                        self.system(),
                        DealId(local),
                        PipelineId(pipeline),
                        Some(StageId(stage)),
                        loss_reason.map(LossReasonId),
                    )
                    .await
            };
            match moved {
                Ok(_) => {}
                Err(e) if refused(&e) => not_moved = Some(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Ok(LeadWritten {
            local,
            created,
            not_moved,
        })
    }

    /// A page of amoCRM's event log, into the timeline of the records it is about (with its own
    /// time and author). Entries about what Voronka's log does not keep (tasks, customers…) or
    /// about records that did not come over are counted, and reported once at the end.
    async fn events(&mut self, items: Vec<Value>) -> Result<()> {
        let mut entries = Vec::new();
        for e in &items {
            let id = match e.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => continue,
            };
            let amo_type = str_of(e, "type");
            let entity_type = str_of(e, "entity_type");
            let (records, kind) = match entity_type {
                "lead" | "leads" => ("leads", EntityKind::Deal),
                "contact" | "contacts" => ("contacts", EntityKind::Contact),
                "company" | "companies" => ("companies", EntityKind::Company),
                other => {
                    let key = format!(
                        "events|about {}",
                        if other.is_empty() { "nothing" } else { other }
                    );
                    *self.progress.dropped.entry(key).or_default() += 1;
                    continue;
                }
            };
            let amo_entity = e.get("entity_id").and_then(Value::as_i64).unwrap_or(0);
            let Some(on) = self.local(records, amo_entity) else {
                *self
                    .progress
                    .dropped
                    .entry(format!("events|of {records} that did not come over"))
                    .or_default() += 1;
                continue;
            };
            let author = e.get("created_by").and_then(Value::as_i64).unwrap_or(0);
            let name = format!("{}|{}|event|{id}", self.account.0, self.source);
            let mut payload = e.clone();
            if let Some(o) = payload.as_object_mut() {
                o.remove("_links");
                o.remove("_embedded");
            }
            entries.push(ImportedLog {
                key: uuid::Uuid::new_v5(&KEYS, name.as_bytes()),
                event_type: format!("{IMPORTED_PREFIX}{amo_type}"),
                occurred_at: time_of(e, "created_at").unwrap_or_else(Utc::now),
                user: self.user(author),
                entity: Some(EntityRef { kind, id: on }),
                before: e.get("value_before").cloned().filter(|v| !v.is_null()),
                after: e.get("value_after").cloned().filter(|v| !v.is_null()),
                payload,
            });
        }
        let asked = entries.len() as u64;
        let written = self
            .imp
            .t
            .activities
            .import_log(self.system(), entries)
            .await? as u64;
        Progress::add(&mut self.progress.created, "events", written);
        Progress::add(&mut self.progress.updated, "events", asked - written);
        Ok(())
    }

    fn report_events_left(&mut self) {
        let left: Vec<(String, u64)> = self
            .progress
            .dropped
            .iter()
            .filter(|(k, _)| k.starts_with("events|"))
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        for (k, n) in left {
            self.progress.dropped.remove(&k);
            let what = &k["events|".len()..];
            self.skip(
                "events",
                0,
                format!("{n} entries of amoCRM's event log {what} are not imported (Voronka's log keeps those of leads, contacts and companies)"),
            );
        }
    }

    async fn notes(&mut self, step: &str, items: Vec<Value>) -> Result<()> {
        let (records, kind) = match step {
            "contacts/notes" => ("contacts", EntityKind::Contact),
            "companies/notes" => ("companies", EntityKind::Company),
            _ => ("leads", EntityKind::Deal),
        };
        let mut pairs = Vec::new();
        let mut history = Vec::new();
        for n in &items {
            let amo = id_of(n);
            let entity_id = n.get("entity_id").and_then(Value::as_i64).unwrap_or(0);
            let Some(on) = self.local(records, entity_id) else {
                self.skip(
                    step,
                    amo,
                    format!("its record ({records} {entity_id}) was not imported"),
                );
                continue;
            };
            let note_type = str_of(n, "note_type").to_string();
            let params = n.get("params").cloned().unwrap_or(Value::Null);
            let call = note_type.starts_with("call_").then(|| CallParams {
                phone: str_of(&params, "phone").to_string(),
                duration: params.get("duration").and_then(Value::as_i64).unwrap_or(0),
                call_result: str_of(&params, "call_result").to_string(),
                link: str_of(&params, "link").to_string(),
                source: str_of(&params, "source").to_string(),
            });
            let new = NewNote {
                entity: EntityRef { kind, id: on },
                note_type,
                text: str_of(&params, "text").to_string(),
                call,
            };
            let local = match self.local(step, amo) {
                Some(local) => match self
                    .imp
                    .t
                    .activities
                    .update_note(self.system(), NoteId(local), new)
                    .await
                {
                    Ok(_) => {
                        Progress::add(&mut self.progress.updated, step, 1);
                        local
                    }
                    Err(e) if refused(&e) => {
                        self.skip(step, amo, format!("not updated: {e}"));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
                None => match self
                    .imp
                    .t
                    .activities
                    .add_note(self.key(step, amo), new)
                    .await
                {
                    Ok(made) => {
                        Progress::add(&mut self.progress.created, step, 1);
                        made.id.0
                    }
                    Err(e) if refused(&e) => {
                        self.skip(step, amo, format!("refused: {e}"));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            pairs.push((amo, local));
            history.push(self.provenance(local, n, None));
        }
        self.remember(step, &pairs).await?;
        self.imp
            .t
            .activities
            .restore_provenance(self.system(), Record::Note, history)
            .await?;
        Ok(())
    }

    async fn tasks(&mut self, items: Vec<Value>) -> Result<()> {
        let mut pairs = Vec::new();
        let mut history = Vec::new();
        for t in &items {
            let amo = id_of(t);
            let entity_id = t.get("entity_id").and_then(Value::as_i64).unwrap_or(0);
            let entity = match str_of(t, "entity_type") {
                "leads" => Some(("leads", EntityKind::Deal)),
                "contacts" => Some(("contacts", EntityKind::Contact)),
                "companies" => Some(("companies", EntityKind::Company)),
                _ => None,
            };
            let entity = match entity {
                Some((records, kind)) if entity_id > 0 => match self.local(records, entity_id) {
                    Some(id) => Some(EntityRef { kind, id }),
                    None => {
                        self.skip(
                            "tasks",
                            amo,
                            format!("its record ({records} {entity_id}) was not imported"),
                        );
                        continue;
                    }
                },
                _ => None,
            };
            let amo_type = t.get("task_type_id").and_then(Value::as_i64).unwrap_or(1);
            let task_type = TaskTypeId(self.local("task_types", amo_type).unwrap_or(1));
            let responsible = self.responsible("tasks", t);
            let due = time_of(t, "complete_till").unwrap_or_else(Utc::now);
            let mut text = str_of(t, "text").trim().to_string();
            if text.is_empty() {
                text = "—".into();
            }
            let completed = t
                .get("is_completed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let result = t
                .pointer("/result/text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let local = match self.local("tasks", amo) {
                Some(local) => {
                    let patch = TaskPatch {
                        text: Some(text),
                        task_type_id: Some(task_type),
                        due_at: Some(due),
                        whole_day: None,
                        responsible_user_id: Some(responsible),
                    };
                    match self
                        .imp
                        .t
                        .activities
                        .update_task(self.system(), TaskId(local), patch)
                        .await
                    {
                        Ok(_) => {
                            Progress::add(&mut self.progress.updated, "tasks", 1);
                            local
                        }
                        Err(e) if refused(&e) => {
                            self.skip("tasks", amo, format!("not updated: {e}"));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    let new = NewTask {
                        entity,
                        task_type_id: task_type,
                        text,
                        due_at: due,
                        whole_day: false,
                        responsible_user_id: Some(responsible),
                    };
                    match self
                        .imp
                        .t
                        .activities
                        .create_task(self.key("tasks", amo), new)
                        .await
                    {
                        Ok(made) => {
                            Progress::add(&mut self.progress.created, "tasks", 1);
                            made.id.0
                        }
                        Err(e) if refused(&e) => {
                            self.skip("tasks", amo, format!("refused: {e}"));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if completed {
                let task = self
                    .imp
                    .t
                    .activities
                    .task(self.system(), TaskId(local))
                    .await?;
                if task.completed_at.is_none() {
                    match self
                        .imp
                        .t
                        .activities
                        .complete_task(self.system(), TaskId(local), &result)
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if refused(&e) => {
                            self.skip("tasks", amo, format!("not completed: {e}"))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let closed = completed.then(|| time_of(t, "updated_at")).flatten();
            pairs.push((amo, local));
            history.push(self.provenance(local, t, closed));
        }
        self.remember("tasks", &pairs).await?;
        self.imp
            .t
            .activities
            .restore_provenance(self.system(), Record::Task, history)
            .await?;
        Ok(())
    }
}

/// The parts of a contact or company that amoCRM keeps as fields with a code.
#[derive(Debug, Default)]
struct Parts {
    phones: Vec<Reach>,
    emails: Vec<Reach>,
    text: HashMap<&'static str, String>,
}

fn is_definition(step: &str) -> bool {
    matches!(
        step,
        "users" | "pipelines" | "loss_reasons" | "fields" | "tags" | "task_types"
    )
}

/// The list a records step reads, in id order so that pages stay put while it is read.
fn records_path(step: &str) -> (String, &'static str, Vec<(&'static str, String)>) {
    let order = ("order[id]", "asc".to_string());
    match step {
        "companies" => ("/api/v4/companies".into(), "companies", vec![order]),
        "contacts" => (
            "/api/v4/contacts".into(),
            "contacts",
            vec![("with", "companies".into()), order],
        ),
        "leads" => (
            "/api/v4/leads".into(),
            "leads",
            vec![("with", "contacts".into()), order],
        ),
        "tasks" => ("/api/v4/tasks".into(), "tasks", vec![order]),
        // amoCRM's event list takes no order (newest first).
        "events" => ("/api/v4/events".into(), "events", Vec::new()),
        notes => (format!("/api/v4/{notes}"), "notes", vec![order]),
    }
}
