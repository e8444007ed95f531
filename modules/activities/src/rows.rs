//! Rows as read from the activities schema, and their conversion to the contract's types.

use activities_api::*;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Jsonb, Nullable, Text, Timestamptz};
use kernel::UserId;
use serde_json::Value;

fn entity(kind: Option<&str>, id: Option<i64>) -> Option<EntityRef> {
    Some(EntityRef {
        kind: EntityKind::parse(kind?)?,
        id: id?,
    })
}

#[derive(QueryableByName)]
pub(crate) struct NoteRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub entity: String,
    #[diesel(sql_type = BigInt)]
    pub entity_id: i64,
    #[diesel(sql_type = Text)]
    pub note_type: String,
    #[diesel(sql_type = Text)]
    pub text: String,
    #[diesel(sql_type = Jsonb)]
    pub params: Value,
    #[diesel(sql_type = Bool)]
    pub pinned: bool,
    #[diesel(sql_type = BigInt)]
    pub created_by: i64,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

pub(crate) const NOTE_COLUMNS: &str =
    "id, entity, entity_id, note_type, text, params, pinned, created_by, created_at, updated_at";

impl NoteRow {
    pub fn note(self) -> Note {
        Note {
            id: NoteId(self.id),
            entity: entity(Some(&self.entity), Some(self.entity_id)).unwrap_or(EntityRef {
                kind: EntityKind::Deal,
                id: self.entity_id,
            }),
            note_type: self.note_type,
            text: self.text,
            params: self.params,
            pinned: self.pinned,
            created_by: UserId(self.created_by),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(QueryableByName)]
pub(crate) struct TaskRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub entity: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub entity_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub task_type_id: i64,
    #[diesel(sql_type = Text)]
    pub text: String,
    #[diesel(sql_type = Timestamptz)]
    pub due_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    pub whole_day: bool,
    #[diesel(sql_type = BigInt)]
    pub responsible_user_id: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub completed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    pub result: String,
    #[diesel(sql_type = BigInt)]
    pub created_by: i64,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

pub(crate) const TASK_COLUMNS: &str = "id, entity, entity_id, task_type_id, text, due_at, whole_day, responsible_user_id, completed_at, result, created_by, created_at";

impl TaskRow {
    pub fn task(self) -> Task {
        Task {
            id: TaskId(self.id),
            entity: entity(self.entity.as_deref(), self.entity_id),
            task_type_id: TaskTypeId(self.task_type_id),
            text: self.text,
            due_at: self.due_at,
            whole_day: self.whole_day,
            responsible_user_id: UserId(self.responsible_user_id),
            completed_at: self.completed_at,
            result: self.result,
            created_by: UserId(self.created_by),
            created_at: self.created_at,
        }
    }
}

#[derive(QueryableByName)]
pub(crate) struct LogRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub actor_kind: String,
    #[diesel(sql_type = BigInt)]
    pub actor_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub entity: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub entity_id: Option<i64>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub before: Option<Value>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub after: Option<Value>,
    #[diesel(sql_type = Jsonb)]
    pub payload: Value,
}

pub(crate) const LOG_COLUMNS: &str =
    "id, event_type, occurred_at, actor_kind, actor_id, entity, entity_id, before, after, payload";

impl LogRow {
    pub fn entry(self) -> LogEntry {
        LogEntry {
            id: self.id,
            event_type: self.event_type,
            occurred_at: self.occurred_at,
            actor: ActorRef {
                kind: self.actor_kind,
                id: self.actor_id,
            },
            entity: entity(self.entity.as_deref(), self.entity_id),
            before: self.before,
            after: self.after,
            payload: self.payload,
        }
    }
}
