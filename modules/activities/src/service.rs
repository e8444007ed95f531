//! The `Activities` trait over the activities schema. Records (deals, contacts, companies) are
//! asked of their modules, through their contracts, whether the caller may see and change them.

use std::collections::HashMap;
use std::sync::Arc;

use accounts_api::access::{self, Scope};
use accounts_api::{Accounts, Action};
use activities_api::events::{NoteAdded, TaskCompleted, TaskCreated, TaskDue};
use activities_api::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contacts_api::{CompanyId, ContactId, Contacts};
use deals_api::{DealId, Deals};
use diesel::pg::Pg;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, RunQueryDsl};
use kernel::db::DbPool;
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::paging::{Cursor, Page, PageRequest};
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, UserId, outbox};
use serde_json::Value;

use crate::rows::*;

pub struct ActivitiesService {
    pool: DbPool,
    accounts: Arc<dyn Accounts>,
    deals: Arc<dyn Deals>,
    contacts: Arc<dyn Contacts>,
}

const MAX_NOTE: usize = 20_000;
const MAX_TASK_TEXT: usize = 5_000;

fn rights_of(kind: EntityKind) -> accounts_api::Entity {
    match kind {
        EntityKind::Deal => accounts_api::Entity::Deals,
        EntityKind::Contact => accounts_api::Entity::Contacts,
        EntityKind::Company => accounts_api::Entity::Companies,
    }
}

fn actor_of(caller: Caller) -> i64 {
    caller.actor.user_id().map(|u| u.0).unwrap_or(0)
}

fn envelope<E: DomainEvent>(caller: Caller, e: &E) -> AppResult<EventEnvelope> {
    EventEnvelope::new(caller, e)
}

/// Event types a record's timeline leaves out: the notes and tasks are shown themselves.
const SHOWN_ELSEWHERE: [&str; 3] = [NoteAdded::TYPE, TaskCreated::TYPE, TaskCompleted::TYPE];

/// A task checked and ready to insert.
struct ReadyTask {
    entity: Option<EntityRef>,
    task_type_id: TaskTypeId,
    text: String,
    due_at: DateTime<Utc>,
    whole_day: bool,
    responsible: UserId,
}

impl ReadyTask {
    fn event(&self, id: i64) -> TaskCreated {
        TaskCreated {
            task_id: TaskId(id),
            entity: self.entity,
            text: self.text.clone(),
            due_at: self.due_at,
            responsible_user_id: self.responsible,
        }
    }
}

impl ActivitiesService {
    pub fn new(
        pool: DbPool,
        accounts: Arc<dyn Accounts>,
        deals: Arc<dyn Deals>,
        contacts: Arc<dyn Contacts>,
    ) -> ActivitiesService {
        ActivitiesService {
            pool,
            accounts,
            deals,
            contacts,
        }
    }

    async fn conn(&self) -> AppResult<kernel::db::DbConn> {
        Ok(self.pool.get().await?)
    }

    /// The record's responsible user, if the caller may see it (else `NotFound`).
    async fn record(&self, caller: Caller, e: EntityRef) -> AppResult<UserId> {
        match e.kind {
            EntityKind::Deal => Ok(self
                .deals
                .deal(caller, DealId(e.id))
                .await?
                .responsible_user_id),
            EntityKind::Contact => Ok(self
                .contacts
                .contact(caller, ContactId(e.id))
                .await?
                .responsible_user_id),
            EntityKind::Company => Ok(self
                .contacts
                .company(caller, CompanyId(e.id))
                .await?
                .responsible_user_id),
        }
    }

    /// Whether the caller may see the record (`NotFound` if not): for a deal one light query,
    /// as the timeline asks on every page.
    async fn visible(&self, caller: Caller, e: EntityRef) -> AppResult<()> {
        match e.kind {
            EntityKind::Deal => {
                if self
                    .deals
                    .visible_deals(caller, vec![DealId(e.id)])
                    .await?
                    .is_empty()
                {
                    Err(AppError::not_found("deal"))
                } else {
                    Ok(())
                }
            }
            _ => self.record(caller, e).await.map(|_| ()),
        }
    }

    /// The record as a form field: one that does not exist, or is not the caller's to see, is
    /// refused as a bad value.
    async fn linked_record(&self, caller: Caller, e: EntityRef) -> AppResult<UserId> {
        self.record(caller, e).await.map_err(|err| {
            if err.code == ErrorCode::NotFound {
                AppError::validation(
                    "entity",
                    "not_found",
                    &format!("no such {}", e.kind.as_str()),
                )
            } else {
                err
            }
        })
    }

    /// May the caller do `action` on the record (by its responsible user)?
    async fn allowed_on(&self, caller: Caller, e: EntityRef, action: Action) -> AppResult<()> {
        let responsible = self.record(caller, e).await?;
        let scope = access::scope(&*self.accounts, caller, rights_of(e.kind), action).await?;
        if scope.allows(responsible) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "no right to {} this {}",
                action.as_str(),
                e.kind.as_str()
            )))
        }
    }

    /// The tasks of records the caller may not see are left out (asked of each record's module,
    /// one call per kind).
    async fn only_visible(&self, caller: Caller, tasks: Vec<Task>) -> AppResult<Vec<Task>> {
        let refs: Vec<EntityRef> = tasks.iter().filter_map(|t| t.entity).collect();
        let seen = self.visible_set(caller, &refs).await?;
        Ok(tasks
            .into_iter()
            .filter(|t| t.entity.is_none_or(|e| seen.contains(&e)))
            .collect())
    }

    /// Which of the given records the caller may see (a few queries for the lot).
    async fn visible_set(
        &self,
        caller: Caller,
        refs: &[EntityRef],
    ) -> AppResult<std::collections::HashSet<EntityRef>> {
        let of = |k: EntityKind| -> Vec<i64> {
            let mut v: Vec<i64> = refs.iter().filter(|e| e.kind == k).map(|e| e.id).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (deal_ids, contact_ids, company_ids) = (
            of(EntityKind::Deal),
            of(EntityKind::Contact),
            of(EntityKind::Company),
        );
        let mut seen: std::collections::HashSet<EntityRef> = std::collections::HashSet::new();
        if !deal_ids.is_empty() {
            let ok = match self
                .deals
                .visible_deals(caller, deal_ids.into_iter().map(DealId).collect())
                .await
            {
                Ok(v) => v,
                Err(e) if e.code == ErrorCode::Forbidden => Vec::new(),
                Err(e) => return Err(e),
            };
            seen.extend(ok.into_iter().map(|d| EntityRef::deal(d.0)));
        }
        if !contact_ids.is_empty() {
            let ok = match self
                .contacts
                .contacts_by_id(caller, contact_ids.into_iter().map(ContactId).collect())
                .await
            {
                Ok(v) => v,
                Err(e) if e.code == ErrorCode::Forbidden => Vec::new(),
                Err(e) => return Err(e),
            };
            seen.extend(ok.into_iter().map(|c| EntityRef {
                kind: EntityKind::Contact,
                id: c.id.0,
            }));
        }
        for id in company_ids {
            let e = EntityRef {
                kind: EntityKind::Company,
                id,
            };
            if self.record(caller, e).await.is_ok() {
                seen.insert(e);
            }
        }
        Ok(seen)
    }

    async fn task_scope(&self, caller: Caller, action: Action) -> AppResult<Scope> {
        access::scope(&*self.accounts, caller, accounts_api::Entity::Tasks, action).await
    }

    /// A new task's text, type, due time and responsible user checked (the record it is for
    /// is checked by the caller); `types` keeps the account's task types once looked up.
    async fn prepare_task(
        &self,
        caller: Caller,
        new: NewTask,
        types: &mut Option<(AccountId, Vec<TaskType>)>,
    ) -> AppResult<ReadyTask> {
        self.prepare_task_with(caller, new, types, None).await
    }

    /// As [`Self::prepare_task`], with the responsible user already checked (`known`).
    async fn prepare_task_with(
        &self,
        caller: Caller,
        new: NewTask,
        types: &mut Option<(AccountId, Vec<TaskType>)>,
        known: Option<UserId>,
    ) -> AppResult<ReadyTask> {
        let text = new.text.trim().to_string();
        let mut errors = Vec::new();
        if text.is_empty() {
            errors.push(kernel::FieldError {
                field: "text".into(),
                code: "required".into(),
                message: "say what is to be done".into(),
            });
        } else if text.chars().count() > MAX_TASK_TEXT {
            errors.push(kernel::FieldError {
                field: "text".into(),
                code: "too_long".into(),
                message: format!("at most {MAX_TASK_TEXT} characters"),
            });
        }
        // The built-in types need no lookup.
        let builtin = [FOLLOW_UP, MEETING, CALL].contains(&new.task_type_id);
        if !builtin {
            if types.as_ref().is_none_or(|(a, _)| *a != caller.account_id) {
                *types = Some((caller.account_id, self.task_types(caller).await?));
            }
            let known_type = types
                .as_ref()
                .is_some_and(|(_, t)| t.iter().any(|t| t.id == new.task_type_id));
            if !known_type {
                errors.push(kernel::FieldError {
                    field: "task_type_id".into(),
                    code: "not_found".into(),
                    message: "no such task type".into(),
                });
            }
        }
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        let responsible = match known {
            Some(u) => u,
            None => {
                access::responsible(
                    &*self.accounts,
                    caller,
                    new.responsible_user_id.or(caller.actor.user_id()),
                )
                .await?
            }
        };
        // A whole-day task is due at the start of its (UTC) day.
        let due_at = if new.whole_day {
            new.due_at
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
                .unwrap_or(new.due_at)
        } else {
            new.due_at
        };
        Ok(ReadyTask {
            entity: new.entity,
            task_type_id: new.task_type_id,
            text,
            due_at,
            whole_day: new.whole_day,
            responsible,
        })
    }

    async fn load_note(&self, caller: Caller, id: NoteId) -> AppResult<Note> {
        let mut conn = self.conn().await?;
        let row: Option<NoteRow> = kernel::sql::query(format!(
            "SELECT {NOTE_COLUMNS} FROM activities.notes WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .get_result(&mut conn)
        .await
        .optional()?;
        let note = row.ok_or_else(|| AppError::not_found("note"))?.note();
        // A note is seen by whoever sees its record.
        self.visible(caller, note.entity)
            .await
            .map_err(|_| AppError::not_found("note"))?;
        Ok(note)
    }

    async fn load_task(&self, account: AccountId, id: TaskId) -> AppResult<Task> {
        let mut conn = self.conn().await?;
        let row: Option<TaskRow> = kernel::sql::query(format!(
            "SELECT {TASK_COLUMNS} FROM activities.tasks WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(id.0)
        .get_result(&mut conn)
        .await
        .optional()?;
        Ok(row.ok_or_else(|| AppError::not_found("task"))?.task())
    }

    /// A task the caller may reach with `action`: by the tasks rights on its responsible user.
    async fn reachable_task(&self, caller: Caller, id: TaskId, action: Action) -> AppResult<Task> {
        let task = self.load_task(caller.account_id, id).await?;
        let scope = self.task_scope(caller, Action::View).await?;
        if !scope.allows(task.responsible_user_id) {
            return Err(AppError::not_found("task"));
        }
        if let Some(e) = task.entity {
            self.record(caller, e)
                .await
                .map_err(|_| AppError::not_found("task"))?;
        }
        if action != Action::View {
            let scope = self.task_scope(caller, action).await?;
            if !scope.allows(task.responsible_user_id) {
                return Err(AppError::forbidden(format!(
                    "no right to {} this task",
                    action.as_str()
                )));
            }
        }
        Ok(task)
    }

    fn check_note(new: &NewNote) -> AppResult<(String, String, Value)> {
        let note_type = if new.note_type.trim().is_empty() {
            "common".to_string()
        } else {
            new.note_type.trim().to_string()
        };
        if !NOTE_TYPES.contains(&note_type.as_str()) {
            return Err(AppError::validation(
                "note_type",
                "invalid",
                "an unknown note type",
            ));
        }
        let text = new.text.trim().to_string();
        if text.chars().count() > MAX_NOTE {
            return Err(AppError::validation(
                "text",
                "too_long",
                &format!("at most {MAX_NOTE} characters"),
            ));
        }
        let is_call = note_type.starts_with("call_");
        if text.is_empty() && !is_call {
            return Err(AppError::validation("text", "required", "write the note"));
        }
        let params = match (&new.call, is_call) {
            (Some(c), true) => {
                if c.duration < 0 || c.duration > 86_400 {
                    return Err(AppError::validation(
                        "call.duration",
                        "out_of_range",
                        "0 to 86,400 seconds",
                    ));
                }
                serde_json::to_value(c).map_err(|e| AppError::internal(e.to_string()))?
            }
            (None, true) => serde_json::to_value(CallParams::default())
                .map_err(|e| AppError::internal(e.to_string()))?,
            (_, false) => Value::Object(Default::default()),
        };
        Ok((note_type, text, params))
    }
}

#[derive(QueryableByName)]
struct DueRow {
    #[diesel(sql_type = BigInt)]
    owner: i64,
    #[diesel(embed)]
    task: TaskRow,
}

/// Rows of `table` by id (none asked, no query).
async fn by_ids<R>(
    conn: &mut diesel_async::AsyncPgConnection,
    columns: &str,
    table: &str,
    account: i64,
    ids: Vec<i64>,
) -> AppResult<Vec<R>>
where
    R: QueryableByName<Pg> + Send + 'static,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(kernel::sql::query(format!(
        "SELECT {columns} FROM {table} WHERE account_id = $1 AND id = ANY($2)"
    ))
    .bind::<BigInt, _>(account)
    .bind::<Array<BigInt>, _>(ids)
    .load(conn)
    .await?)
}

fn keyset_after<K: serde::de::DeserializeOwned>(page: &PageRequest) -> AppResult<Option<K>> {
    page.after.as_ref().map(Cursor::decode).transpose()
}

#[async_trait]
impl Activities for ActivitiesService {
    async fn add_note(&self, caller: Caller, new: NewNote) -> AppResult<Note> {
        let (note_type, text, params) = Self::check_note(&new)?;
        self.linked_record(caller, new.entity).await?;
        self.allowed_on(caller, new.entity, Action::Edit).await?;
        let mut conn = self.conn().await?;
        if let Some(key) = caller.cause {
            let done: Option<NoteRow> = kernel::sql::query(format!(
                "SELECT {NOTE_COLUMNS} FROM activities.notes WHERE account_id = $1 AND request_key = $2"
            ))
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<diesel::sql_types::Uuid, _>(key)
            .get_result(&mut conn)
            .await
            .optional()?;
            if let Some(row) = done {
                return Ok(row.note());
            }
        }
        let row: NoteRow = conn
            .transaction::<_, AppError, _>(async |tx| {
                let row: NoteRow = kernel::sql::query(format!(
                    "INSERT INTO activities.notes (account_id, entity, entity_id, note_type, text, params, created_by, updated_by, request_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING {NOTE_COLUMNS}"
                ))
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<Text, _>(new.entity.kind.as_str())
                .bind::<BigInt, _>(new.entity.id)
                .bind::<Text, _>(&note_type)
                .bind::<Text, _>(&text)
                .bind::<Jsonb, _>(&params)
                .bind::<BigInt, _>(actor_of(caller))
                .bind::<Nullable<diesel::sql_types::Uuid>, _>(caller.cause)
                .get_result(tx)
                .await?;
                outbox::append(
                    tx,
                    crate::SCHEMA,
                    &[envelope(
                        caller,
                        &NoteAdded {
                            note_id: NoteId(row.id),
                            entity: new.entity,
                            note_type: note_type.clone(),
                            text: text.clone(),
                        },
                    )?],
                )
                .await?;
                Ok(row)
            })
            .await?;
        Ok(row.note())
    }

    async fn note(&self, caller: Caller, id: NoteId) -> AppResult<Note> {
        self.load_note(caller, id).await
    }

    async fn notes(&self, caller: Caller, query: &NoteQuery) -> AppResult<(Vec<Note>, bool)> {
        let limit = i64::from(query.limit.clamp(1, kernel::paging::MAX_LIMIT));
        let offset = i64::from(query.page.max(1) - 1) * limit;
        let mut conn = self.conn().await?;
        let rows: Vec<NoteRow> = kernel::sql::query(format!(
            "SELECT {NOTE_COLUMNS} FROM activities.notes
              WHERE account_id = $1 AND entity = $2 AND deleted_at IS NULL
                AND ($3::bigint IS NULL OR entity_id = $3)
                AND (cardinality($4::bigint[]) = 0 OR id = ANY($4))
                AND (cardinality($5::text[]) = 0 OR note_type = ANY($5))
              ORDER BY id LIMIT $6 OFFSET $7"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Text, _>(query.kind.as_str())
        .bind::<Nullable<BigInt>, _>(query.entity_id)
        .bind::<Array<BigInt>, _>(&query.ids)
        .bind::<Array<Text>, _>(&query.note_types)
        .bind::<BigInt, _>(limit + 1)
        .bind::<BigInt, _>(offset)
        .load(&mut conn)
        .await?;
        let more = rows.len() as i64 > limit;
        let notes: Vec<Note> = rows
            .into_iter()
            .take(limit as usize)
            .map(|r| r.note())
            .collect();
        let refs: Vec<EntityRef> = notes.iter().map(|n| n.entity).collect();
        let seen = self.visible_set(caller, &refs).await?;
        Ok((
            notes
                .into_iter()
                .filter(|n| seen.contains(&n.entity))
                .collect(),
            more,
        ))
    }

    async fn update_note(&self, caller: Caller, id: NoteId, new: NewNote) -> AppResult<Note> {
        let note = self.load_note(caller, id).await?;
        let keep_call = new.call.is_none();
        let (note_type, text, mut params) = Self::check_note(&NewNote {
            entity: note.entity,
            note_type: note.note_type.clone(),
            ..new
        })?;
        // A new text alone keeps a call's details.
        if keep_call && note.note_type.starts_with("call_") {
            params = note.params.clone();
        }
        self.allowed_on(caller, note.entity, Action::Edit).await?;
        let mut conn = self.conn().await?;
        let row: NoteRow = kernel::sql::query(format!(
            "UPDATE activities.notes SET text = $3, params = $4, note_type = $5, updated_by = $6, updated_at = now()
              WHERE account_id = $1 AND id = $2 RETURNING {NOTE_COLUMNS}"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .bind::<Text, _>(&text)
        .bind::<Jsonb, _>(&params)
        .bind::<Text, _>(&note_type)
        .bind::<BigInt, _>(actor_of(caller))
        .get_result(&mut conn)
        .await?;
        Ok(row.note())
    }

    async fn pin_note(&self, caller: Caller, id: NoteId, pinned: bool) -> AppResult<Note> {
        let note = self.load_note(caller, id).await?;
        self.allowed_on(caller, note.entity, Action::Edit).await?;
        let mut conn = self.conn().await?;
        let row: NoteRow = kernel::sql::query(format!(
            "UPDATE activities.notes SET pinned = $3 WHERE account_id = $1 AND id = $2 RETURNING {NOTE_COLUMNS}"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .bind::<Bool, _>(pinned)
        .get_result(&mut conn)
        .await?;
        Ok(row.note())
    }

    async fn delete_note(&self, caller: Caller, id: NoteId) -> AppResult<()> {
        let note = self.load_note(caller, id).await?;
        self.allowed_on(caller, note.entity, Action::Delete).await?;
        let mut conn = self.conn().await?;
        kernel::sql::query(
            "UPDATE activities.notes SET deleted_at = now(), updated_by = $3 WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .bind::<BigInt, _>(actor_of(caller))
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    async fn task_types(&self, caller: Caller) -> AppResult<Vec<TaskType>> {
        self.task_scope(caller, Action::View).await?;
        #[derive(QueryableByName)]
        struct T {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            name: String,
        }
        let mut conn = self.conn().await?;
        let custom: Vec<T> = kernel::sql::query(
            "SELECT id, name FROM activities.task_types WHERE account_id = $1 ORDER BY lower(name)",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .load(&mut conn)
        .await?;
        let mut out: Vec<TaskType> = [
            (FOLLOW_UP, "follow_up"),
            (MEETING, "meeting"),
            (CALL, "call"),
        ]
        .into_iter()
        .map(|(id, name)| TaskType {
            id,
            name: name.into(),
            builtin: true,
        })
        .collect();
        out.extend(custom.into_iter().map(|t| TaskType {
            id: TaskTypeId(t.id),
            name: t.name,
            builtin: false,
        }));
        Ok(out)
    }

    async fn import_log(&self, caller: Caller, entries: Vec<ImportedLog>) -> AppResult<usize> {
        access::system_or_admin(&*self.accounts, caller).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        if let Some(e) = entries
            .iter()
            .find(|e| !e.event_type.starts_with(IMPORTED_PREFIX) || e.event_type.len() > 200)
        {
            return Err(AppError::validation(
                "event_type",
                "invalid",
                &format!(
                    "an imported entry's type starts with {IMPORTED_PREFIX}: {}",
                    e.event_type
                ),
            ));
        }
        let mut conn = self.conn().await?;
        let written = kernel::sql::query(
            "INSERT INTO activities.log (event_id, account_id, event_type, occurred_at, actor_kind, actor_id,
                                         entity, entity_id, before, after, payload)
             SELECT k, $1, t, o, CASE WHEN u IS NULL THEN 'system' ELSE 'user' END, COALESCE(u, 0), e, i, b, a, p
               FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[], $7::bigint[],
                           $8::jsonb[], $9::jsonb[], $10::jsonb[]) AS x(k, t, o, u, e, i, b, a, p)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Array<diesel::sql_types::Uuid>, _>(entries.iter().map(|e| e.key).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(entries.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(entries.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(
            entries.iter().map(|e| e.user.map(|u| u.0)).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            entries.iter().map(|e| e.entity.map(|r| r.kind.as_str())).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<BigInt>>, _>(
            entries.iter().map(|e| e.entity.map(|r| r.id)).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Jsonb>>, _>(entries.iter().map(|e| &e.before).collect::<Vec<_>>())
        .bind::<Array<Nullable<Jsonb>>, _>(entries.iter().map(|e| &e.after).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(entries.iter().map(|e| &e.payload).collect::<Vec<_>>())
        .execute(&mut conn)
        .await?;
        Ok(written)
    }

    async fn restore_provenance(
        &self,
        caller: Caller,
        record: Record,
        items: Vec<kernel::provenance::Provenance>,
    ) -> AppResult<usize> {
        kernel::provenance::check(&items)?;
        access::system_or_admin(&*self.accounts, caller).await?;
        if items.is_empty() {
            return Ok(0);
        }
        let text = match record {
            Record::Note => {
                "UPDATE activities.notes r
                    SET created_at = x.created_at, updated_at = x.updated_at,
                        created_by = x.created_by, updated_by = x.updated_by
                   FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::bigint[],
                               $6::bigint[], $7::timestamptz[])
                        AS x(id, created_at, updated_at, created_by, updated_by, closed_at)
                  WHERE r.account_id = $1 AND r.id = x.id AND r.deleted_at IS NULL"
            }
            Record::Task => {
                "UPDATE activities.tasks r
                    SET created_at = x.created_at, updated_at = x.updated_at,
                        created_by = x.created_by,
                        completed_at = CASE WHEN r.completed_at IS NULL THEN NULL
                                            ELSE coalesce(x.closed_at, r.completed_at) END,
                        completed_by = CASE WHEN r.completed_at IS NULL THEN NULL
                                            ELSE x.updated_by END
                   FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::bigint[],
                               $6::bigint[], $7::timestamptz[])
                        AS x(id, created_at, updated_at, created_by, updated_by, closed_at)
                  WHERE r.account_id = $1 AND r.id = x.id AND r.deleted_at IS NULL"
            }
        };
        let mut conn = self.conn().await?;
        let changed = kernel::sql::query(text)
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<Array<BigInt>, _>(items.iter().map(|p| p.id).collect::<Vec<_>>())
            .bind::<Array<Timestamptz>, _>(items.iter().map(|p| p.created_at).collect::<Vec<_>>())
            .bind::<Array<Timestamptz>, _>(items.iter().map(|p| p.updated_at).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(items.iter().map(|p| p.created_by).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(items.iter().map(|p| p.updated_by).collect::<Vec<_>>())
            .bind::<Array<Nullable<Timestamptz>>, _>(
                items.iter().map(|p| p.closed_at).collect::<Vec<_>>(),
            )
            .execute(&mut conn)
            .await?;
        Ok(changed)
    }

    async fn add_task_type(&self, caller: Caller, name: &str) -> AppResult<TaskType> {
        if let Some(me) = caller.actor.user_id() {
            let u = self.accounts.user(caller, me).await?;
            if !(u.is_admin && u.is_active) {
                return Err(AppError::forbidden("only administrators add task types"));
            }
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 50 {
            return Err(AppError::validation(
                "name",
                "required",
                "a name of 1 to 50 characters",
            ));
        }
        let mut conn = self.conn().await?;
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        let row: Id = kernel::sql::query(
            "INSERT INTO activities.task_types (account_id, name) VALUES ($1, $2) RETURNING id",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Text, _>(name)
        .get_result(&mut conn)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => AppError::validation("name", "taken", "a task type with this name exists"),
            other => other.into(),
        })?;
        Ok(TaskType {
            id: TaskTypeId(row.id),
            name: name.to_string(),
            builtin: false,
        })
    }

    async fn create_task(&self, caller: Caller, new: NewTask) -> AppResult<Task> {
        self.task_scope(caller, Action::Create).await?;
        let ready = self.prepare_task(caller, new, &mut None).await?;
        if let Some(e) = ready.entity {
            self.linked_record(caller, e).await?;
        }
        let mut conn = self.conn().await?;
        let row: TaskRow = conn
            .transaction::<_, AppError, _>(async |tx| {
                // A command done before (a redelivered robot's action) finds its task.
                let inserted: Option<TaskRow> = kernel::sql::query(format!(
                    "INSERT INTO activities.tasks (account_id, entity, entity_id, task_type_id, text, due_at, whole_day,
                                                   responsible_user_id, created_by, request_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (account_id, request_key) WHERE request_key IS NOT NULL DO NOTHING
                     RETURNING {TASK_COLUMNS}"
                ))
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<Nullable<Text>, _>(ready.entity.map(|e| e.kind.as_str()))
                .bind::<Nullable<BigInt>, _>(ready.entity.map(|e| e.id))
                .bind::<BigInt, _>(ready.task_type_id.0)
                .bind::<Text, _>(&ready.text)
                .bind::<Timestamptz, _>(ready.due_at)
                .bind::<Bool, _>(ready.whole_day)
                .bind::<BigInt, _>(ready.responsible.0)
                .bind::<BigInt, _>(actor_of(caller))
                .bind::<Nullable<diesel::sql_types::Uuid>, _>(caller.cause)
                .get_result(tx)
                .await
                .optional()?;
                let Some(row) = inserted else {
                    return Ok(kernel::sql::query(format!(
                        "SELECT {TASK_COLUMNS} FROM activities.tasks WHERE account_id = $1 AND request_key = $2"
                    ))
                    .bind::<BigInt, _>(caller.account_id.0)
                    .bind::<Nullable<diesel::sql_types::Uuid>, _>(caller.cause)
                    .get_result(tx)
                    .await?);
                };
                outbox::append(tx, crate::SCHEMA, &[envelope(caller, &ready.event(row.id))?])
                    .await?;
                Ok(row)
            })
            .await?;
        Ok(row.task())
    }

    async fn create_tasks(&self, tasks: Vec<(Caller, NewTask)>) -> AppResult<Vec<Task>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        if tasks.iter().any(|(c, _)| c.cause.is_none()) {
            return Err(AppError::new(
                ErrorCode::BadRequest,
                "tasks created together each need a request key (the caller's cause)",
            ));
        }
        // Checks first, all of them: one bad task refuses the lot.
        let mut types = None;
        let mut ready = Vec::with_capacity(tasks.len());
        let mut scopes: Vec<(AccountId, kernel::Actor)> = Vec::new();
        let mut responsibles: HashMap<(i64, Option<i64>, Option<UserId>), UserId> = HashMap::new();
        for (caller, new) in tasks {
            if !scopes.contains(&(caller.account_id, caller.actor)) {
                self.task_scope(caller, Action::Create).await?;
                scopes.push((caller.account_id, caller.actor));
            }
            let wanted = new.responsible_user_id;
            let memo = (
                caller.account_id.0,
                caller.actor.user_id().map(|u| u.0),
                wanted,
            );
            let known = responsibles.get(&memo).copied();
            let t = self
                .prepare_task_with(caller, new, &mut types, known)
                .await?;
            responsibles.insert(memo, t.responsible);
            ready.push((caller, t));
        }
        // The deals they are for, one query per account and actor.
        let mut groups: Vec<(Caller, Vec<DealId>)> = Vec::new();
        for (caller, t) in &ready {
            match t.entity {
                Some(e) if e.kind == EntityKind::Deal => {
                    let same = |g: &&mut (Caller, Vec<DealId>)| {
                        g.0.account_id == caller.account_id && g.0.actor == caller.actor
                    };
                    match groups.iter_mut().find(|g| same(g)) {
                        Some(g) => g.1.push(DealId(e.id)),
                        None => groups.push((*caller, vec![DealId(e.id)])),
                    }
                }
                Some(e) => {
                    self.linked_record(*caller, e).await?;
                }
                None => {}
            }
        }
        for (caller, mut ids) in groups {
            ids.sort_unstable_by_key(|d| d.0);
            ids.dedup();
            let seen = self.deals.visible_deals(caller, ids.clone()).await?;
            if seen.len() < ids.len() {
                return Err(AppError::validation("entity", "not_found", "no such deal"));
            }
        }
        let mut conn = self.conn().await?;
        let rows: Vec<(uuid::Uuid, TaskRow)> = conn
            .transaction::<_, AppError, _>(async |tx| {
                #[derive(QueryableByName)]
                struct Keyed {
                    #[diesel(sql_type = diesel::sql_types::Uuid)]
                    request_key: uuid::Uuid,
                    #[diesel(embed)]
                    row: TaskRow,
                }
                let key_of = |c: &Caller| c.cause.unwrap_or_default();
                let inserted: Vec<Keyed> = kernel::sql::query(format!(
                    "INSERT INTO activities.tasks (account_id, entity, entity_id, task_type_id, text, due_at, whole_day,
                                                   responsible_user_id, created_by, request_key)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                                          $6::timestamptz[], $7::bool[], $8::bigint[], $9::bigint[], $10::uuid[])
                     ON CONFLICT (account_id, request_key) WHERE request_key IS NOT NULL DO NOTHING
                     RETURNING request_key, {TASK_COLUMNS}"
                ))
                .bind::<Array<BigInt>, _>(ready.iter().map(|(c, _)| c.account_id.0).collect::<Vec<_>>())
                .bind::<Array<Nullable<Text>>, _>(
                    ready.iter().map(|(_, t)| t.entity.map(|e| e.kind.as_str())).collect::<Vec<_>>(),
                )
                .bind::<Array<Nullable<BigInt>>, _>(
                    ready.iter().map(|(_, t)| t.entity.map(|e| e.id)).collect::<Vec<_>>(),
                )
                .bind::<Array<BigInt>, _>(ready.iter().map(|(_, t)| t.task_type_id.0).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(ready.iter().map(|(_, t)| t.text.as_str()).collect::<Vec<_>>())
                .bind::<Array<Timestamptz>, _>(ready.iter().map(|(_, t)| t.due_at).collect::<Vec<_>>())
                .bind::<Array<Bool>, _>(ready.iter().map(|(_, t)| t.whole_day).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(ready.iter().map(|(_, t)| t.responsible.0).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(ready.iter().map(|(c, _)| actor_of(*c)).collect::<Vec<_>>())
                .bind::<Array<diesel::sql_types::Uuid>, _>(
                    ready.iter().map(|(c, _)| key_of(c)).collect::<Vec<_>>(),
                )
                .load(tx)
                .await?;
                let mut events = Vec::with_capacity(inserted.len());
                for k in &inserted {
                    if let Some((c, t)) = ready.iter().find(|(c, _)| key_of(c) == k.request_key) {
                        events.push(envelope(*c, &t.event(k.row.id))?);
                    }
                }
                outbox::append(tx, crate::SCHEMA, &events).await?;
                let mut rows: Vec<(uuid::Uuid, TaskRow)> =
                    inserted.into_iter().map(|k| (k.request_key, k.row)).collect();
                // Asked before (a redelivered robot's action): the tasks made then.
                let missing: Vec<(i64, uuid::Uuid)> = ready
                    .iter()
                    .map(|(c, _)| (c.account_id.0, key_of(c)))
                    .filter(|(_, k)| !rows.iter().any(|(r, _)| r == k))
                    .collect();
                if !missing.is_empty() {
                    let before: Vec<Keyed> = kernel::sql::query(format!(
                        "SELECT t.request_key, {} FROM activities.tasks t
                           JOIN unnest($1::bigint[], $2::uuid[]) AS x(a, k) ON t.account_id = x.a AND t.request_key = x.k",
                        TASK_COLUMNS
                            .split(", ")
                            .map(|c| format!("t.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .bind::<Array<BigInt>, _>(missing.iter().map(|m| m.0).collect::<Vec<_>>())
                    .bind::<Array<diesel::sql_types::Uuid>, _>(missing.iter().map(|m| m.1).collect::<Vec<_>>())
                    .load(tx)
                    .await?;
                    rows.extend(before.into_iter().map(|k| (k.request_key, k.row)));
                }
                Ok(rows)
            })
            .await?;
        // In the order asked.
        let by_key: HashMap<uuid::Uuid, Task> =
            rows.into_iter().map(|(k, r)| (k, r.task())).collect();
        ready
            .iter()
            .map(|(c, _)| {
                let key = c.cause.unwrap_or_default();
                by_key
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| AppError::internal("a task created together went missing"))
            })
            .collect()
    }

    async fn task(&self, caller: Caller, id: TaskId) -> AppResult<Task> {
        self.reachable_task(caller, id, Action::View).await
    }

    async fn complete_task(&self, caller: Caller, id: TaskId, result: &str) -> AppResult<Task> {
        let task = self.reachable_task(caller, id, Action::Edit).await?;
        let result = result.trim();
        if result.chars().count() > MAX_TASK_TEXT {
            return Err(AppError::validation(
                "result",
                "too_long",
                &format!("at most {MAX_TASK_TEXT} characters"),
            ));
        }
        if task.completed_at.is_some() {
            return Ok(task);
        }
        let mut conn = self.conn().await?;
        let row: TaskRow = conn
            .transaction::<_, AppError, _>(async |tx| {
                let row: TaskRow = kernel::sql::query(format!(
                    "UPDATE activities.tasks SET completed_at = now(), completed_by = $3, result = $4, updated_at = now()
                      WHERE account_id = $1 AND id = $2 AND completed_at IS NULL RETURNING {TASK_COLUMNS}"
                ))
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(id.0)
                .bind::<BigInt, _>(actor_of(caller))
                .bind::<Text, _>(result)
                .get_result(tx)
                .await?;
                outbox::append(
                    tx,
                    crate::SCHEMA,
                    &[envelope(
                        caller,
                        &TaskCompleted {
                            task_id: id,
                            entity: task.entity,
                            text: task.text.clone(),
                            result: result.to_string(),
                        },
                    )?],
                )
                .await?;
                Ok(row)
            })
            .await?;
        Ok(row.task())
    }

    async fn reopen_task(&self, caller: Caller, id: TaskId) -> AppResult<Task> {
        self.reachable_task(caller, id, Action::Edit).await?;
        let mut conn = self.conn().await?;
        let row: TaskRow = kernel::sql::query(format!(
            "UPDATE activities.tasks SET completed_at = NULL, completed_by = NULL, result = '', updated_at = now()
              WHERE account_id = $1 AND id = $2 RETURNING {TASK_COLUMNS}"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .get_result(&mut conn)
        .await?;
        Ok(row.task())
    }

    async fn update_task(&self, caller: Caller, id: TaskId, patch: TaskPatch) -> AppResult<Task> {
        let task = self.reachable_task(caller, id, Action::Edit).await?;
        let mut errors = Vec::new();
        let text = match patch.text.as_deref().map(str::trim) {
            None => task.text.clone(),
            Some("") => {
                errors.push(kernel::FieldError {
                    field: "text".into(),
                    code: "required".into(),
                    message: "say what is to be done".into(),
                });
                String::new()
            }
            Some(t) if t.chars().count() > MAX_TASK_TEXT => {
                errors.push(kernel::FieldError {
                    field: "text".into(),
                    code: "too_long".into(),
                    message: format!("at most {MAX_TASK_TEXT} characters"),
                });
                String::new()
            }
            Some(t) => t.to_string(),
        };
        let task_type = patch.task_type_id.unwrap_or(task.task_type_id);
        if task_type != task.task_type_id
            && !self
                .task_types(caller)
                .await?
                .iter()
                .any(|t| t.id == task_type)
        {
            errors.push(kernel::FieldError {
                field: "task_type_id".into(),
                code: "not_found".into(),
                message: "no such task type".into(),
            });
        }
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        let responsible = match patch.responsible_user_id {
            Some(u) if u != task.responsible_user_id => {
                access::responsible(&*self.accounts, caller, Some(u)).await?
            }
            _ => task.responsible_user_id,
        };
        let whole_day = patch.whole_day.unwrap_or(task.whole_day);
        let due = patch.due_at.unwrap_or(task.due_at);
        let due_at = if whole_day {
            due.date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
                .unwrap_or(due)
        } else {
            due
        };
        let mut conn = self.conn().await?;
        let row: TaskRow = kernel::sql::query(format!(
            "UPDATE activities.tasks SET text = $3, task_type_id = $4, due_at = $5, whole_day = $6,
                    responsible_user_id = $7,
                    due_notified = CASE WHEN due_at = $5 THEN due_notified ELSE false END,
                    updated_at = now()
              WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {TASK_COLUMNS}"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .bind::<Text, _>(&text)
        .bind::<BigInt, _>(task_type.0)
        .bind::<diesel::sql_types::Timestamptz, _>(due_at)
        .bind::<diesel::sql_types::Bool, _>(whole_day)
        .bind::<BigInt, _>(responsible.0)
        .get_result(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("task"))?;
        Ok(row.task())
    }

    async fn tasks(
        &self,
        caller: Caller,
        query: &TaskQuery,
        page: PageRequest,
    ) -> AppResult<Page<Task>> {
        let scope = self.task_scope(caller, Action::View).await?;
        let mut sql = format!(
            "SELECT {TASK_COLUMNS} FROM activities.tasks WHERE account_id = $1 AND deleted_at IS NULL"
        );
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        let users = scope.ids();
        if users.is_some() {
            sql.push_str(&format!(" AND responsible_user_id = ANY(${})", next()));
        }
        if query.responsible.is_some() {
            sql.push_str(&format!(" AND responsible_user_id = ${}", next()));
        }
        if query.entity.is_some() {
            sql.push_str(&format!(
                " AND entity = ${} AND entity_id = ${}",
                next(),
                next()
            ));
        }
        let after: Option<(DateTime<Utc>, i64)> = keyset_after(&page)?;
        if query.done {
            sql.push_str(" AND completed_at IS NOT NULL");
            if after.is_some() {
                sql.push_str(&format!(
                    " AND (completed_at, id) < (${}, ${})",
                    next(),
                    next()
                ));
            }
            sql.push_str(" ORDER BY completed_at DESC, id DESC");
        } else {
            sql.push_str(" AND completed_at IS NULL");
            if query.due_before.is_some() {
                sql.push_str(&format!(" AND due_at < ${}", next()));
            }
            if after.is_some() {
                sql.push_str(&format!(" AND (due_at, id) > (${}, ${})", next(), next()));
            }
            sql.push_str(" ORDER BY due_at, id");
        }
        sql.push_str(&format!(" LIMIT {}", page.fetch_limit()));
        let mut q: BoxedSqlQuery<'_, Pg, _> = diesel::sql_query(sql)
            .into_boxed()
            .bind::<BigInt, _>(caller.account_id.0);
        if let Some(u) = users {
            q = q.bind::<Array<BigInt>, _>(u);
        }
        if let Some(r) = query.responsible {
            q = q.bind::<BigInt, _>(r.0);
        }
        if let Some(e) = query.entity {
            q = q.bind::<Text, _>(e.kind.as_str()).bind::<BigInt, _>(e.id);
        }
        if !query.done
            && let Some(t) = query.due_before
        {
            q = q.bind::<Timestamptz, _>(t);
        }
        if let Some((t, id)) = after {
            q = q.bind::<Timestamptz, _>(t).bind::<BigInt, _>(id);
        }
        let mut conn = self.conn().await?;
        let rows: Vec<TaskRow> = q.load(&mut conn).await?;
        let done = query.done;
        let page = Page::from_rows(
            rows.into_iter().map(TaskRow::task).collect(),
            &page,
            |t: &Task| {
                (
                    if done {
                        t.completed_at.unwrap_or(t.due_at)
                    } else {
                        t.due_at
                    },
                    t.id.0,
                )
            },
        );
        Ok(Page {
            items: self.only_visible(caller, page.items).await?,
            next: page.next,
        })
    }

    async fn nearest_tasks(
        &self,
        caller: Caller,
        deals: Vec<i64>,
    ) -> AppResult<HashMap<i64, Task>> {
        if deals.is_empty() {
            return Ok(HashMap::new());
        }
        let scope = match self.task_scope(caller, Action::View).await {
            Ok(s) => s,
            Err(e) if e.code == ErrorCode::Forbidden => return Ok(HashMap::new()),
            Err(e) => return Err(e),
        };
        let mut conn = self.conn().await?;
        let rows: Vec<TaskRow> = kernel::sql::query(format!(
            "SELECT DISTINCT ON (entity_id) {TASK_COLUMNS} FROM activities.tasks
              WHERE account_id = $1 AND entity = 'deal' AND entity_id = ANY($2)
                AND deleted_at IS NULL AND completed_at IS NULL
                AND ($3::bigint[] IS NULL OR responsible_user_id = ANY($3))
              ORDER BY entity_id, due_at, id"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Array<BigInt>, _>(&deals)
        .bind::<Nullable<Array<BigInt>>, _>(scope.ids())
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.entity_id.map(|d| (d, r.task())))
            .collect())
    }

    async fn publish_due(&self, account: Option<AccountId>) -> AppResult<usize> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            // Several workers may sweep at once: each takes rows the others have not locked.
            let rows: Vec<(AccountId, Task)> = kernel::sql::query(format!(
                "WITH due AS (
                   SELECT id FROM activities.tasks
                    WHERE deleted_at IS NULL AND completed_at IS NULL AND NOT due_notified AND due_at <= now()
                      AND ($1::bigint IS NULL OR account_id = $1)
                    ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED)
                 UPDATE activities.tasks t SET due_notified = true FROM due WHERE t.id = due.id
                 RETURNING t.account_id AS owner, {}",
                TASK_COLUMNS
                    .split(", ")
                    .map(|c| format!("t.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .bind::<Nullable<BigInt>, _>(account.map(|a| a.0))
            .load::<DueRow>(tx)
            .await?
            .into_iter()
            .map(|d| (AccountId(d.owner), d.task.task()))
            .collect();
            let mut events = Vec::with_capacity(rows.len());
            for (owner, task) in &rows {
                events.push(envelope(
                    Caller::system(*owner),
                    &TaskDue {
                        task_id: task.id,
                        entity: task.entity,
                        text: task.text.clone(),
                        due_at: task.due_at,
                        responsible_user_id: task.responsible_user_id,
                    },
                )?);
            }
            outbox::append(tx, crate::SCHEMA, &events).await?;
            Ok(rows.len())
        })
        .await
    }

    async fn seed_activities(
        &self,
        caller: Caller,
        first: i64,
        last: i64,
        log_entries: i64,
        users: Vec<UserId>,
    ) -> AppResult<()> {
        if let Some(me) = caller.actor.user_id() {
            let u = self.accounts.user(caller, me).await?;
            if !(u.is_admin && u.is_active) {
                return Err(AppError::forbidden("only administrators seed data"));
            }
        }
        if first > last || users.is_empty() || !(0..=100_000_000).contains(&log_entries) {
            return Err(AppError::validation(
                "deals",
                "out_of_range",
                "a range of deal ids, users, and 0 to 100,000,000 entries",
            ));
        }
        let users: Vec<i64> = users.iter().map(|u| u.0).collect();
        let account = caller.account_id.0;
        let mut conn = self.conn().await?;
        for sql in [
            // Log entries: the oldest first, so that ids follow time as in life.
            "INSERT INTO activities.log (event_id, account_id, event_type, occurred_at, actor_kind, actor_id, entity, entity_id, before, after, payload)
             SELECT gen_random_uuid(), $1,
                    ($6::text[])[1 + g % 3],
                    now() - make_interval(secs => ($5 - g)::double precision * 10),
                    'user', ($2::bigint[])[1 + g % cardinality($2::bigint[])], 'deal', $3 + g % ($4 - $3 + 1),
                    '{\"price\": 1000}'::jsonb, '{\"price\": 2000}'::jsonb, jsonb_build_object('deal_id', $3 + g % ($4 - $3 + 1))
               FROM generate_series(1, $5) g",
            "INSERT INTO activities.notes (account_id, entity, entity_id, note_type, text, created_by, created_at)
             SELECT $1, 'deal', d, 'common', 'Seeded note ' || d, ($2::bigint[])[1 + d % cardinality($2::bigint[])],
                    now() - make_interval(mins => (d % 10000)::int)
               FROM generate_series($3, $4, 3) d WHERE $5 >= 0 AND cardinality($6::text[]) > 0",
            "INSERT INTO activities.tasks (account_id, entity, entity_id, task_type_id, text, due_at, responsible_user_id, created_by, created_at, due_notified)
             SELECT $1, 'deal', d, 1 + d % 3, 'Seeded task ' || d, now() + make_interval(hours => (d % 480)::int - 240),
                    ($2::bigint[])[1 + d % cardinality($2::bigint[])], 0, now() - make_interval(mins => (d % 20000)::int), true
               FROM generate_series($3, $4, 2) d WHERE $5 >= 0 AND cardinality($6::text[]) > 0",
        ] {
            diesel::sql_query(sql)
                .bind::<BigInt, _>(account)
                .bind::<Array<BigInt>, _>(&users)
                .bind::<BigInt, _>(first)
                .bind::<BigInt, _>(last)
                .bind::<BigInt, _>(log_entries)
                .bind::<Array<Text>, _>(vec![
                    deals_api::events::DealUpdated::TYPE,
                    deals_api::events::DealStageChanged::TYPE,
                    deals_api::events::DealResponsibleChanged::TYPE,
                ])
                .execute(&mut conn)
                .await?;
        }
        kernel::sql::query("ANALYZE activities.log, activities.notes, activities.tasks")
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    async fn events(
        &self,
        caller: Caller,
        filter: &LogFilter,
        page: PageRequest,
    ) -> AppResult<Page<LogEntry>> {
        // The whole account's log tells of records a member may not see: administrators only.
        if let Some(me) = caller.actor.user_id() {
            let u = self.accounts.user(caller, me).await?;
            if !(u.is_admin && u.is_active) {
                return Err(AppError::forbidden(
                    "only administrators see the event list",
                ));
            }
        }
        let mut sql = format!("SELECT {LOG_COLUMNS} FROM activities.log WHERE account_id = $1");
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if filter.entity.is_some() {
            sql.push_str(&format!(" AND entity = ${}", next()));
        }
        if filter.event_type.is_some() {
            sql.push_str(&format!(" AND event_type = ${}", next()));
        }
        if filter.user.is_some() {
            sql.push_str(&format!(
                " AND actor_kind = 'user' AND actor_id = ${}",
                next()
            ));
        }
        if filter.from.is_some() {
            sql.push_str(&format!(" AND occurred_at >= ${}", next()));
        }
        if filter.to.is_some() {
            sql.push_str(&format!(" AND occurred_at < ${}", next()));
        }
        if !filter.event_types.is_empty() {
            sql.push_str(&format!(" AND event_type = ANY(${})", next()));
        }
        if !filter.entities.is_empty() {
            sql.push_str(&format!(" AND entity = ANY(${})", next()));
        }
        if !filter.entity_ids.is_empty() {
            sql.push_str(&format!(" AND entity_id = ANY(${})", next()));
        }
        if !filter.users.is_empty() {
            sql.push_str(&format!(
                " AND (CASE WHEN actor_kind = 'user' THEN actor_id ELSE 0 END) = ANY(${})",
                next()
            ));
        }
        if !filter.ids.is_empty() {
            sql.push_str(&format!(" AND id = ANY(${})", next()));
        }
        let after: Option<(DateTime<Utc>, i64)> = keyset_after(&page)?;
        if after.is_some() {
            sql.push_str(&format!(
                " AND (occurred_at, id) < (${}, ${})",
                next(),
                next()
            ));
        }
        sql.push_str(&format!(
            " ORDER BY occurred_at DESC, id DESC LIMIT {}",
            page.fetch_limit()
        ));
        let mut q: BoxedSqlQuery<'_, Pg, _> = diesel::sql_query(sql)
            .into_boxed()
            .bind::<BigInt, _>(caller.account_id.0);
        if let Some(e) = filter.entity {
            q = q.bind::<Text, _>(e.as_str());
        }
        if let Some(t) = &filter.event_type {
            q = q.bind::<Text, _>(t.clone());
        }
        if let Some(u) = filter.user {
            q = q.bind::<BigInt, _>(u.0);
        }
        if let Some(t) = filter.from {
            q = q.bind::<Timestamptz, _>(t);
        }
        if let Some(t) = filter.to {
            q = q.bind::<Timestamptz, _>(t);
        }
        if !filter.event_types.is_empty() {
            q = q.bind::<Array<Text>, _>(filter.event_types.clone());
        }
        if !filter.entities.is_empty() {
            let kinds: Vec<String> = filter
                .entities
                .iter()
                .map(|e| e.as_str().to_string())
                .collect();
            q = q.bind::<Array<Text>, _>(kinds);
        }
        if !filter.entity_ids.is_empty() {
            q = q.bind::<Array<BigInt>, _>(filter.entity_ids.clone());
        }
        if !filter.users.is_empty() {
            q = q.bind::<Array<BigInt>, _>(filter.users.clone());
        }
        if !filter.ids.is_empty() {
            q = q.bind::<Array<BigInt>, _>(filter.ids.clone());
        }
        if let Some((t, id)) = after {
            q = q.bind::<Timestamptz, _>(t).bind::<BigInt, _>(id);
        }
        let mut conn = self.conn().await?;
        let rows: Vec<LogRow> = q.load(&mut conn).await?;
        Ok(Page::from_rows(
            rows.into_iter().map(LogRow::entry).collect(),
            &page,
            |e: &LogEntry| (e.occurred_at, e.id),
        ))
    }

    async fn timeline(
        &self,
        caller: Caller,
        entity: EntityRef,
        page: PageRequest,
    ) -> AppResult<Timeline> {
        self.visible(caller, entity).await?;
        let account = caller.account_id.0;
        let limit = page.fetch_limit();
        let after: Option<(DateTime<Utc>, String, i64)> = keyset_after(&page)?;
        let (t, k, i) = after.unwrap_or((DateTime::<Utc>::MAX_UTC, "~".to_string(), i64::MAX));
        #[derive(QueryableByName)]
        struct Item {
            #[diesel(sql_type = Text)]
            kind: String,
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Timestamptz)]
            at: DateTime<Utc>,
        }
        let mut conn = self.conn().await?;
        // Each source gives its newest after the cursor; the merge keeps the page's worth.
        let items: Vec<Item> = kernel::sql::query(format!(
            "SELECT kind, id, at FROM (
               (SELECT 'n'::text AS kind, id, created_at AS at FROM activities.notes
                 WHERE account_id = $1 AND entity = $2 AND entity_id = $3 AND deleted_at IS NULL AND NOT pinned
                   AND created_at <= $4 AND (created_at, 'n'::text, id) < ($4, $5, $6)
                 ORDER BY created_at DESC, id DESC LIMIT {limit})
               UNION ALL
               (SELECT 't'::text, id, created_at FROM activities.tasks
                 WHERE account_id = $1 AND entity = $2 AND entity_id = $3 AND deleted_at IS NULL
                   AND created_at <= $4 AND (created_at, 't'::text, id) < ($4, $5, $6)
                 ORDER BY created_at DESC, id DESC LIMIT {limit})
               UNION ALL
               (SELECT 'e'::text, id, occurred_at FROM activities.log
                 WHERE account_id = $1 AND entity = $2 AND entity_id = $3 AND event_type <> ALL($7)
                   AND occurred_at <= $4 AND (occurred_at, 'e'::text, id) < ($4, $5, $6)
                 ORDER BY occurred_at DESC, id DESC LIMIT {limit})
             ) x ORDER BY at DESC, kind DESC, id DESC LIMIT {limit}"
        ))
        .bind::<BigInt, _>(account)
        .bind::<Text, _>(entity.kind.as_str())
        .bind::<BigInt, _>(entity.id)
        .bind::<Timestamptz, _>(t)
        .bind::<Text, _>(&k)
        .bind::<BigInt, _>(i)
        .bind::<Array<Text>, _>(SHOWN_ELSEWHERE.to_vec())
        .load(&mut conn)
        .await?;
        let ids = |kind: &str| -> Vec<i64> {
            items
                .iter()
                .filter(|x| x.kind == kind)
                .map(|x| x.id)
                .collect()
        };
        let notes: Vec<NoteRow> = by_ids(
            &mut conn,
            NOTE_COLUMNS,
            "activities.notes",
            account,
            ids("n"),
        )
        .await?;
        let tasks: Vec<TaskRow> = by_ids(
            &mut conn,
            TASK_COLUMNS,
            "activities.tasks",
            account,
            ids("t"),
        )
        .await?;
        let logged: Vec<LogRow> =
            by_ids(&mut conn, LOG_COLUMNS, "activities.log", account, ids("e")).await?;
        let mut notes: HashMap<i64, Note> = notes.into_iter().map(|n| (n.id, n.note())).collect();
        let mut tasks: HashMap<i64, Task> = tasks.into_iter().map(|t| (t.id, t.task())).collect();
        let mut logged: HashMap<i64, LogEntry> =
            logged.into_iter().map(|e| (e.id, e.entry())).collect();
        let keys: Vec<(DateTime<Utc>, String, i64)> =
            items.iter().map(|x| (x.at, x.kind.clone(), x.id)).collect();
        let list: Vec<TimelineItem> = items
            .iter()
            .filter_map(|x| match x.kind.as_str() {
                "n" => notes.remove(&x.id).map(TimelineItem::Note),
                "t" => tasks.remove(&x.id).map(TimelineItem::Task),
                _ => logged.remove(&x.id).map(TimelineItem::Event),
            })
            .collect();
        let more = keys.len() as i64 > page.limit as i64;
        let mut list = list;
        list.truncate(page.limit as usize);
        let next = if more {
            keys.get(page.limit as usize - 1).map(Cursor::encode)
        } else {
            None
        };
        let pinned = if page.after.is_none() {
            let rows: Vec<NoteRow> = kernel::sql::query(format!(
                "SELECT {NOTE_COLUMNS} FROM activities.notes
                  WHERE account_id = $1 AND entity = $2 AND entity_id = $3 AND deleted_at IS NULL AND pinned
                  ORDER BY created_at DESC, id DESC LIMIT 20"
            ))
            .bind::<BigInt, _>(account)
            .bind::<Text, _>(entity.kind.as_str())
            .bind::<BigInt, _>(entity.id)
            .load(&mut conn)
            .await?;
            rows.into_iter().map(NoteRow::note).collect()
        } else {
            Vec::new()
        };
        Ok(Timeline {
            pinned,
            items: list,
            next,
        })
    }
}
