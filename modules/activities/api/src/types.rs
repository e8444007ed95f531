use chrono::{DateTime, Utc};
use kernel::{UserId, typed_id};
use serde::{Deserialize, Serialize};

typed_id!(NoteId);
typed_id!(TaskId);
typed_id!(TaskTypeId);

/// What a note or a task is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    Deal,
    Contact,
    Company,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Deal => "deal",
            EntityKind::Contact => "contact",
            EntityKind::Company => "company",
        }
    }

    pub fn parse(s: &str) -> Option<EntityKind> {
        match s {
            "deal" => Some(EntityKind::Deal),
            "contact" => Some(EntityKind::Contact),
            "company" => Some(EntityKind::Company),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: EntityKind,
    pub id: i64,
}

impl EntityRef {
    pub fn deal(id: i64) -> EntityRef {
        EntityRef {
            kind: EntityKind::Deal,
            id,
        }
    }
}

/// amoCRM's note types (`note_type` in API v4).
pub const NOTE_TYPES: [&str; 8] = [
    "common",
    "call_in",
    "call_out",
    "service_message",
    "sms_in",
    "sms_out",
    "geolocation",
    "extended_service_message",
];

/// A call's details, as amoCRM keeps them in a call note's `params`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallParams {
    pub phone: String,
    /// Seconds.
    pub duration: i64,
    /// e.g. "answered", "no answer", "busy".
    pub call_result: String,
    /// A recording's address.
    pub link: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: NoteId,
    pub entity: EntityRef,
    pub note_type: String,
    pub text: String,
    pub params: serde_json::Value,
    pub pinned: bool,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNote {
    pub entity: EntityRef,
    /// "common" when empty.
    #[serde(default)]
    pub note_type: String,
    #[serde(default)]
    pub text: String,
    /// For call notes.
    #[serde(default)]
    pub call: Option<CallParams>,
}

/// Which notes `Activities::notes` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteQuery {
    pub kind: EntityKind,
    pub entity_id: Option<i64>,
    #[serde(default)]
    pub ids: Vec<i64>,
    #[serde(default)]
    pub note_types: Vec<String>,
    /// From 1.
    pub page: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskType {
    pub id: TaskTypeId,
    pub name: String,
    /// Follow-up (1), meeting (2) and call (3) are everyone's.
    pub builtin: bool,
}

pub const FOLLOW_UP: TaskTypeId = TaskTypeId(1);
pub const MEETING: TaskTypeId = TaskTypeId(2);
pub const CALL: TaskTypeId = TaskTypeId(3);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub entity: Option<EntityRef>,
    pub task_type_id: TaskTypeId,
    pub text: String,
    pub due_at: DateTime<Utc>,
    pub whole_day: bool,
    pub responsible_user_id: UserId,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
}

impl Task {
    /// Open and past its due time (a whole-day task, past the end of its day).
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.completed_at.is_none()
            && if self.whole_day {
                self.due_at + chrono::TimeDelta::days(1) <= now
            } else {
                self.due_at < now
            }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub entity: Option<EntityRef>,
    pub task_type_id: TaskTypeId,
    pub text: String,
    pub due_at: DateTime<Utc>,
    #[serde(default)]
    pub whole_day: bool,
    /// The caller when not given.
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
}

/// A change to a task: `None` leaves a property as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPatch {
    pub text: Option<String>,
    pub task_type_id: Option<TaskTypeId>,
    pub due_at: Option<DateTime<Utc>>,
    pub whole_day: Option<bool>,
    pub responsible_user_id: Option<UserId>,
}

/// Which tasks a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskQuery {
    /// One user's tasks (else all the caller may see).
    pub responsible: Option<UserId>,
    /// Completed tasks (newest first) instead of open ones (by due time).
    pub done: bool,
    /// Open tasks due before this time (e.g. the end of a week view).
    pub due_before: Option<DateTime<Utc>>,
    pub entity: Option<EntityRef>,
}

/// Who did something: a user, a robot, an integration or the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRef {
    pub kind: String,
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: i64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: ActorRef,
    pub entity: Option<EntityRef>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub payload: serde_json::Value,
}

/// An entry of another system's event log, brought over by an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedLog {
    /// Unique per entry of the source (the same key is written once).
    pub key: uuid::Uuid,
    /// `amocrm.<amoCRM's type>`, e.g. `amocrm.lead_status_changed`.
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// Who did it here (`None`: the system).
    pub user: Option<kernel::UserId>,
    pub entity: Option<EntityRef>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub payload: serde_json::Value,
}

/// The prefix of the event types of imported log entries.
pub const IMPORTED_PREFIX: &str = "amocrm.";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogFilter {
    pub entity: Option<EntityKind>,
    pub event_type: Option<String>,
    pub user: Option<UserId>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Any of these types (besides `event_type`).
    pub event_types: Vec<String>,
    /// About any of these kinds of record.
    pub entities: Vec<EntityKind>,
    /// About any of these records (of `entity`'s kind).
    pub entity_ids: Vec<i64>,
    /// Done by any of these users (0: robots and the system).
    pub users: Vec<i64>,
    pub ids: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TimelineItem {
    Note(Note),
    Task(Task),
    Event(LogEntry),
}

impl TimelineItem {
    /// When it happened: a note's or a task's creation, an event's occurrence.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            TimelineItem::Note(n) => n.created_at,
            TimelineItem::Task(t) => t.created_at,
            TimelineItem::Event(e) => e.occurred_at,
        }
    }
}

/// A page of a record's timeline; pinned notes come with the first page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub pinned: Vec<Note>,
    pub items: Vec<TimelineItem>,
    pub next: Option<kernel::paging::Cursor>,
}

/// Notes or tasks: the records of this module an import restores the history of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    Note,
    Task,
}
