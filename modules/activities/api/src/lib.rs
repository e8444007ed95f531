//! The activities module's contract: notes and tasks on deals, contacts and companies, the
//! account's event log, and the timeline that shows them together.
//!
//! Notes and the timeline of a record are visible to whoever may see the record (asked of its
//! module); tasks follow the tasks rights by their responsible user.

pub mod events;
pub mod remote;
mod types;

use std::collections::HashMap;

use async_trait::async_trait;
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, AppResult, Caller};

pub use types::*;

#[async_trait]
pub trait Activities: Send + Sync {
    // --- notes -------------------------------------------------------------------------------
    async fn add_note(&self, caller: Caller, new: NewNote) -> AppResult<Note>;
    /// One note, if the caller sees its record.
    async fn note(&self, caller: Caller, id: NoteId) -> AppResult<Note>;
    /// Notes of one kind of record (of one record, of some ids or types), oldest first, by
    /// page number; only those on records the caller sees. Whether more pages follow.
    async fn notes(&self, caller: Caller, query: &NoteQuery) -> AppResult<(Vec<Note>, bool)>;
    /// Changes a note's text (and a call's details); by the entity's edit right.
    async fn update_note(&self, caller: Caller, id: NoteId, new: NewNote) -> AppResult<Note>;
    async fn pin_note(&self, caller: Caller, id: NoteId, pinned: bool) -> AppResult<Note>;
    /// By the entity's delete right.
    async fn delete_note(&self, caller: Caller, id: NoteId) -> AppResult<()>;

    /// Sets when and by whom notes or tasks were made (see [`kernel::provenance`]; a completed
    /// task's `closed_at` is its completion), for records brought over by an import. Records
    /// not in the account are skipped; the number changed is returned. The system or
    /// administrators only.
    /// Writes entries of another system's event log (an import from amoCRM) into the log, with
    /// their own times and authors: the system or an administrator only. An entry's `key` keeps
    /// it once however often it is written. Returns how many were new.
    async fn import_log(&self, caller: Caller, entries: Vec<ImportedLog>) -> AppResult<usize>;
    async fn restore_provenance(
        &self,
        caller: Caller,
        record: Record,
        items: Vec<kernel::provenance::Provenance>,
    ) -> AppResult<usize>;

    // --- tasks -------------------------------------------------------------------------------
    async fn task_types(&self, caller: Caller) -> AppResult<Vec<TaskType>>;
    async fn add_task_type(&self, caller: Caller, name: &str) -> AppResult<TaskType>;
    /// A due time in the past is accepted (the task is then overdue).
    async fn create_task(&self, caller: Caller, new: NewTask) -> AppResult<Task>;
    /// Creates several tasks in one transaction (robots' actions, gathered): each caller must
    /// carry a cause (its request key: asked again, the task made then is returned). All are
    /// checked first and one refusal refuses the lot; the tasks come back in the order asked.
    async fn create_tasks(&self, tasks: Vec<(Caller, NewTask)>) -> AppResult<Vec<Task>>;
    async fn task(&self, caller: Caller, id: TaskId) -> AppResult<Task>;
    async fn complete_task(&self, caller: Caller, id: TaskId, result: &str) -> AppResult<Task>;
    async fn reopen_task(&self, caller: Caller, id: TaskId) -> AppResult<Task>;
    /// Changes a task's text, type, due time or responsible user; a new due time makes the
    /// task's due notification come again.
    async fn update_task(&self, caller: Caller, id: TaskId, patch: TaskPatch) -> AppResult<Task>;
    /// Tasks by due time (open ones; with `done`, completed ones newest first), keyset paged.
    async fn tasks(
        &self,
        caller: Caller,
        query: &TaskQuery,
        page: PageRequest,
    ) -> AppResult<Page<Task>>;
    /// For each given deal the caller may see, its open task due first (one query for a whole
    /// board page); deals with no open task are left out.
    async fn nearest_tasks(&self, caller: Caller, deals: Vec<i64>)
    -> AppResult<HashMap<i64, Task>>;
    /// Fills the account for benchmarks, set-based: `log_entries` logged events spread over the
    /// deals with ids `first..=last`, a note on every third of them and an open task (due within
    /// ten days either way) on every second. Administrators only.
    async fn seed_activities(
        &self,
        caller: Caller,
        first: i64,
        last: i64,
        log_entries: i64,
        users: Vec<kernel::UserId>,
    ) -> AppResult<()>;

    /// Publishes TaskDue for open tasks whose due time has come (once per task and due time);
    /// run every few seconds by the job workers. Returns how many were due.
    async fn publish_due(&self, account: Option<AccountId>) -> AppResult<usize>;

    // --- the log and the timeline -------------------------------------------------------------
    /// The account's event list, newest first, filtered.
    async fn events(
        &self,
        caller: Caller,
        filter: &LogFilter,
        page: PageRequest,
    ) -> AppResult<Page<LogEntry>>;
    /// Notes (pinned ones first on the first page), tasks and logged events of a record, newest
    /// first, keyset paged.
    async fn timeline(
        &self,
        caller: Caller,
        entity: EntityRef,
        page: PageRequest,
    ) -> AppResult<Timeline>;
}
