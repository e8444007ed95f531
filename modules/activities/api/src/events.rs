//! What the activities module publishes.

use chrono::{DateTime, Utc};
use kernel::UserId;
use kernel::events::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{EntityRef, NoteId, TaskId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteAdded {
    pub note_id: NoteId,
    pub entity: EntityRef,
    pub note_type: String,
    pub text: String,
}

impl DomainEvent for NoteAdded {
    const TYPE: &'static str = "activities.note_added";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_id: TaskId,
    pub entity: Option<EntityRef>,
    pub text: String,
    pub due_at: DateTime<Utc>,
    pub responsible_user_id: UserId,
}

impl DomainEvent for TaskCreated {
    const TYPE: &'static str = "activities.task_created";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {
    pub task_id: TaskId,
    pub entity: Option<EntityRef>,
    pub text: String,
    pub result: String,
}

impl DomainEvent for TaskCompleted {
    const TYPE: &'static str = "activities.task_completed";
}

/// A task's due time has come and it is still open: the reminder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDue {
    pub task_id: TaskId,
    pub entity: Option<EntityRef>,
    pub text: String,
    pub due_at: DateTime<Utc>,
    pub responsible_user_id: UserId,
}

impl DomainEvent for TaskDue {
    const TYPE: &'static str = "activities.task_due";
}
