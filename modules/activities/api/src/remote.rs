//! Remote mode: the activities module's trait over HTTP, for when the module runs as its own
//! service (`[modules.activities] mode = "remote"`). The client and the service's dispatcher are both
//! written by [`kernel::remote_trait!`] from the one list below, which must name every method of
//! the trait (the compiler refuses the client otherwise).

#![allow(clippy::too_many_arguments, unused_imports)]

use kernel::paging::{Page, PageRequest};
use kernel::remote::RemoteClient;
use kernel::{AccountId, AppResult, Caller};
use std::collections::HashMap;

use super::*;

/// The activities module's trait, answered by its service.
pub struct ActivitiesClient {
    remote: RemoteClient,
}

impl ActivitiesClient {
    pub fn new(remote: RemoteClient) -> ActivitiesClient {
        ActivitiesClient { remote }
    }
}

kernel::remote_trait! {
    impl Activities for ActivitiesClient, dispatch dispatch_activities, methods ACTIVITIES_METHODS {
            write fn add_note(caller: Caller, new: NewNote) -> Note;
            read fn note(caller: Caller, id: NoteId) -> Note;
            read fn notes(caller: Caller, query: &NoteQuery as NoteQuery) -> (Vec<Note>, bool);
            write fn update_note(caller: Caller, id: NoteId, new: NewNote) -> Note;
            write fn pin_note(caller: Caller, id: NoteId, pinned: bool) -> Note;
            write fn delete_note(caller: Caller, id: NoteId) -> ();
            read fn task_types(caller: Caller) -> Vec<TaskType>;
            write fn import_log(caller: Caller, entries: Vec<ImportedLog>) -> usize;
            write fn restore_provenance(caller: Caller, record: Record, items: Vec<kernel::provenance::Provenance>) -> usize;
            write fn add_task_type(caller: Caller, name: &str as String) -> TaskType;
            write fn create_task(caller: Caller, new: NewTask) -> Task;
            write fn create_tasks(tasks: Vec<(Caller, NewTask)>) -> Vec<Task>;
            read fn task(caller: Caller, id: TaskId) -> Task;
            write fn complete_task(caller: Caller, id: TaskId, result: &str as String) -> Task;
            write fn reopen_task(caller: Caller, id: TaskId) -> Task;
            write fn update_task(caller: Caller, id: TaskId, patch: TaskPatch) -> Task;
            read fn tasks(caller: Caller, query: &TaskQuery as TaskQuery, page: PageRequest) -> Page<Task>;
            read fn nearest_tasks(caller: Caller, deals: Vec<i64>) -> HashMap<i64, Task>;
            write fn seed_activities(caller: Caller, first: i64, last: i64, log_entries: i64, users: Vec<kernel::UserId>) -> ();
            write fn publish_due(account: Option<AccountId>) -> usize;
            read fn events(caller: Caller, filter: &LogFilter as LogFilter, page: PageRequest) -> Page<LogEntry>;
            read fn timeline(caller: Caller, entity: EntityRef, page: PageRequest) -> Timeline;
    }
}
