//! The activities module: notes, tasks, the event log and the timeline, over the trait and the
//! pages; rights and tenancy.

use activities_api::*;
use chrono::{TimeDelta, Utc};
use deals_api::{NewDeal, NewPipeline, NewStage};
use kernel::{Caller, ErrorCode};

use crate::support::{TestApp, location, spawn_app};

async fn deal(app: &TestApp, caller: Caller, name: &str) -> i64 {
    let d = &app.state.modules.deals;
    let p = match d.pipelines(caller).await.unwrap().into_iter().next() {
        Some(p) => p,
        None => d
            .create_pipeline(
                caller,
                NewPipeline {
                    name: "Sales".into(),
                    stages: vec![NewStage {
                        name: "Talks".into(),
                        color: "#99ccff".into(),
                    }],
                },
            )
            .await
            .unwrap(),
    };
    d.create_deal(caller, NewDeal::new(p.id, name))
        .await
        .unwrap()
        .id
        .0
}

fn task(entity: Option<EntityRef>, text: &str, due_in_hours: i64) -> NewTask {
    NewTask {
        entity,
        task_type_id: CALL,
        text: text.into(),
        due_at: Utc::now() + TimeDelta::hours(due_in_hours),
        whole_day: false,
        responsible_user_id: None,
    }
}

#[tokio::test]
async fn notes_and_tasks_make_a_deals_timeline_and_bad_ones_are_refused() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let a = &app.state.modules.activities;
    let d = EntityRef::deal(deal(&app, caller, "Order").await);

    let note = a
        .add_note(
            caller,
            NewNote {
                entity: d,
                note_type: String::new(),
                text: " Asked for a discount ".into(),
                call: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (note.note_type.as_str(), note.text.as_str()),
        ("common", "Asked for a discount")
    );
    let call = a
        .add_note(
            caller,
            NewNote {
                entity: d,
                note_type: "call_out".into(),
                text: String::new(),
                call: Some(CallParams {
                    phone: "+79161234567".into(),
                    duration: 95,
                    call_result: "answered".into(),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    assert_eq!(call.params["duration"], 95);
    for (bad, field) in [
        (
            NewNote {
                entity: d,
                note_type: "common".into(),
                text: "  ".into(),
                call: None,
            },
            "text",
        ),
        (
            NewNote {
                entity: d,
                note_type: "telepathy".into(),
                text: "x".into(),
                call: None,
            },
            "note_type",
        ),
    ] {
        let e = a.add_note(caller, bad).await.unwrap_err();
        assert!(e.field(field).is_some(), "{e:?}");
    }

    // Due yesterday: accepted, overdue.
    let late = a
        .create_task(caller, task(Some(d), "Call back", -24))
        .await
        .unwrap();
    assert!(late.is_overdue(Utc::now()));
    let soon = a
        .create_task(caller, task(Some(d), "Send the offer", 2))
        .await
        .unwrap();
    assert!(!soon.is_overdue(Utc::now()));

    // Linked to a deal of another account, or to none that exists: refused, nothing written.
    let other = app.tenant("Globex").await;
    let theirs =
        EntityRef::deal(deal(&app, Caller::user(other.account, other.admin.id), "Theirs").await);
    for target in [theirs, EntityRef::deal(999_999)] {
        let e = a
            .create_task(caller, task(Some(target), "Sneak", 1))
            .await
            .unwrap_err();
        assert_eq!(
            e.field("entity").map(|f| f.code.as_str()),
            Some("not_found"),
            "{e:?}"
        );
        let e = a
            .add_note(
                caller,
                NewNote {
                    entity: target,
                    note_type: String::new(),
                    text: "x".into(),
                    call: None,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation);
    }
    let e = a
        .create_task(
            caller,
            NewTask {
                task_type_id: TaskTypeId(424242),
                ..task(Some(d), "Odd type", 1)
            },
        )
        .await
        .unwrap_err();
    assert!(e.field("task_type_id").is_some());
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.tasks")
            .await,
        2
    );

    // Complete one; pin the first note.
    let done = a
        .complete_task(caller, late.id, "Agreed on Friday")
        .await
        .unwrap();
    assert!(done.completed_at.is_some() && !done.is_overdue(Utc::now()));
    a.pin_note(caller, note.id, true).await.unwrap();
    let tl = a
        .timeline(caller, d, kernel::paging::PageRequest::default())
        .await
        .unwrap();
    assert_eq!(tl.pinned.len(), 1);
    let kinds: Vec<&str> = tl
        .items
        .iter()
        .map(|i| match i {
            TimelineItem::Note(_) => "note",
            TimelineItem::Task(_) => "task",
            TimelineItem::Event(_) => "event",
        })
        .collect();
    assert_eq!(
        kinds,
        ["task", "task", "note"],
        "newest first, the pinned note on top"
    );
    let completed = tl.items.iter().find_map(|i| match i {
        TimelineItem::Task(t) if t.id == late.id => Some(t),
        _ => None,
    });
    assert_eq!(completed.unwrap().result, "Agreed on Friday");
    // Events of the module went out with the changes.
    for (kind, n) in [
        ("activities.note_added", 2),
        ("activities.task_created", 2),
        ("activities.task_completed", 1),
    ] {
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) AS n FROM activities.outbox WHERE event_type = '{kind}'"
            ))
            .await,
            n,
            "{kind}"
        );
    }
    // The tasks list: open ones by due time; completed ones apart.
    let open = a
        .tasks(
            caller,
            &TaskQuery::default(),
            kernel::paging::PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        open.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [soon.id]
    );
    let closed = a
        .tasks(
            caller,
            &TaskQuery {
                done: true,
                ..Default::default()
            },
            kernel::paging::PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(closed.items[0].id, late.id);
    // The board's nearest task, in one call.
    let near = a.nearest_tasks(caller, vec![d.id, 12345]).await.unwrap();
    assert_eq!(near.len(), 1);
    assert_eq!(near[&d.id].id, soon.id);

    // TaskDue once per task, when its time has come.
    let again = a.reopen_task(caller, late.id).await.unwrap();
    assert!(again.is_overdue(Utc::now()));
    assert_eq!(a.publish_due(Some(t.account)).await.unwrap(), 1);
    assert_eq!(a.publish_due(Some(t.account)).await.unwrap(), 0);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM activities.outbox WHERE event_type = 'activities.task_due'"
        )
        .await,
        1
    );
}

/// Passes events to the event log but refuses one, as a subscriber refuses an event it can
/// never handle.
struct RefusesOne(uuid::Uuid);

#[async_trait::async_trait]
impl kernel::inbox::Subscriber for RefusesOne {
    fn name(&self) -> &str {
        "test.refuses_one"
    }
    fn schema(&self) -> &'static str {
        "activities"
    }
    fn event_types(&self) -> &'static [&'static str] {
        &["*"]
    }
    async fn handle(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        event: &kernel::events::EventEnvelope,
    ) -> kernel::AppResult<()> {
        if event.id == self.0 {
            return Err(kernel::AppError::new(
                ErrorCode::BadRequest,
                "cannot read it",
            ));
        }
        activities::EventLog.handle(conn, event).await
    }
}

#[tokio::test]
async fn a_batch_with_a_refused_event_handles_the_others_once() {
    use kernel::inbox::{Outcome, Subscriber, handle_batch};
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    for name in ["One", "Two", "Three"] {
        deal(&app, caller, name).await;
    }
    let mut conn = app.state.pool.get().await.unwrap();
    let events: Vec<kernel::events::EventEnvelope> =
        crate::support::claim_events(&mut conn, "deals", 100)
            .await
            .into_iter()
            .filter(|e| e.event_type == "deals.deal_created")
            .collect();
    assert_eq!(events.len(), 3);
    let sub = RefusesOne(events[1].id);
    // The same event twice in one batch is handled once.
    let mut batch = events.clone();
    batch.push(events[0].clone());
    let outcomes = handle_batch(&mut conn, &sub, &batch).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Handled,
            Outcome::Rejected("cannot read it".into()),
            Outcome::Handled,
            Outcome::Duplicate
        ]
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.log").await,
        2
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM activities.inbox WHERE subscriber = 'test.refuses_one' AND outcome = 'failed'"
        )
        .await,
        1
    );
    // Delivered again: nothing is handled twice, the refused event is not tried again.
    let again = handle_batch(&mut conn, &sub, &events).await.unwrap();
    assert_eq!(again, vec![Outcome::Duplicate; 3]);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.log").await,
        2
    );
    // The log itself keeps each event once, without inbox rows: of the batch, only the event
    // the other subscriber refused is new to it.
    let log_only: &dyn Subscriber = &activities::EventLog;
    let fresh = handle_batch(&mut conn, log_only, &batch).await.unwrap();
    assert_eq!(
        fresh,
        vec![
            Outcome::Duplicate,
            Outcome::Handled,
            Outcome::Duplicate,
            Outcome::Duplicate
        ]
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.log").await,
        3
    );
    assert_eq!(
        handle_batch(&mut conn, log_only, &batch).await.unwrap(),
        vec![Outcome::Duplicate; 4]
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.inbox WHERE subscriber = 'activities.log'")
            .await,
        0
    );
}

#[tokio::test]
async fn the_event_log_keeps_a_redelivered_event_once() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let id = deal(&app, caller, "Order").await;
    let mut conn = app.state.pool.get().await.unwrap();
    let events = crate::support::claim_events(&mut conn, "deals", 100).await;
    let created = events
        .iter()
        .find(|e| e.event_type == "deals.deal_created")
        .expect("DealCreated");
    for expected in [
        kernel::inbox::Outcome::Handled,
        kernel::inbox::Outcome::Duplicate,
    ] {
        let outcome = kernel::inbox::handle_once(&mut conn, &activities::EventLog, created)
            .await
            .unwrap();
        assert_eq!(outcome, expected);
    }
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.log").await,
        1
    );
    let a = &app.state.modules.activities;
    let list = a
        .events(
            caller,
            &LogFilter {
                entity: Some(EntityKind::Deal),
                ..Default::default()
            },
            kernel::paging::PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].entity, Some(EntityRef::deal(id)));
    assert_eq!(list.items[0].actor.kind, "user");
    // The deal's timeline shows it.
    let tl = a
        .timeline(
            caller,
            EntityRef::deal(id),
            kernel::paging::PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(matches!(&tl.items[0], TimelineItem::Event(e) if e.event_type == "deals.deal_created"));
    // Members do not read the whole account's log.
    let m = app.member(&t, "sam@acme.test").await;
    let e = a
        .events(
            Caller::user(t.account, m.id),
            &LogFilter::default(),
            kernel::paging::PageRequest::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
}

#[tokio::test]
async fn a_user_without_rights_on_a_deal_sees_neither_its_notes_nor_its_tasks() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let a = &app.state.modules.activities;
    let m = app.member(&t, "sam@acme.test").await;
    let sam = Caller::user(t.account, m.id);
    app.limit_to_own_deals(admin, m.id).await;
    let theirs = EntityRef::deal(deal(&app, admin, "Admin's deal").await);
    a.add_note(
        admin,
        NewNote {
            entity: theirs,
            note_type: String::new(),
            text: "Secret terms".into(),
            call: None,
        },
    )
    .await
    .unwrap();
    // A task on that deal given to Sam, and one of his own without a deal.
    let on_deal = a
        .create_task(
            admin,
            NewTask {
                responsible_user_id: Some(m.id),
                ..task(Some(theirs), "Check the terms", 1)
            },
        )
        .await
        .unwrap();
    let own = a
        .create_task(sam, task(None, "Plan the week", 1))
        .await
        .unwrap();

    assert_eq!(
        a.timeline(sam, theirs, kernel::paging::PageRequest::default())
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    assert_eq!(
        a.task(sam, on_deal.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let listed = a
        .tasks(
            sam,
            &TaskQuery::default(),
            kernel::paging::PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [own.id]
    );
    let e = a
        .add_note(
            sam,
            NewNote {
                entity: theirs,
                note_type: String::new(),
                text: "Peek".into(),
                call: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Validation);
    // The admin sees both.
    assert_eq!(
        a.tasks(
            admin,
            &TaskQuery::default(),
            kernel::paging::PageRequest::default()
        )
        .await
        .unwrap()
        .items
        .len(),
        2
    );
}

#[tokio::test]
async fn the_pages_show_the_timeline_the_tasks_and_the_cards_next_task() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let id = deal(&app, caller, "Order").await;
    let other = deal(&app, caller, "Quiet deal").await;
    let c = app.signed_in(&t.admin.email).await;
    let page = format!("/deals/{id}");
    let (status, html) = c.text(&page).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("data-test=\"timeline\""), "{html}");
    let token = crate::support::csrf_in(&html).unwrap();
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let c = &c;
        let token = token.clone();
        async move {
            c.http
                .post(format!("{}{path}", c.base))
                .header("x-csrf-token", token)
                .header("hx-request", "true")
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    // A note from the composer: the timeline comes back with it.
    let res = post(
        format!("/timeline/deal/{id}/notes"),
        vec![
            ("text", "Wants delivery in May".into()),
            ("note_type", "common".into()),
        ],
    )
    .await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let fragment = res.text().await.unwrap();
    assert!(
        fragment.contains("Wants delivery in May") && !fragment.contains("<html"),
        "{fragment}"
    );
    // Edited in place.
    let note_id = app.count("SELECT max(id) AS n FROM activities.notes").await;
    let res = post(
        format!("/notes/{note_id}"),
        vec![
            ("action", "edit".into()),
            ("kind", "deal".into()),
            ("entity_id", id.to_string()),
            ("text", "Wants delivery in June".into()),
        ],
    )
    .await;
    let fragment = res.text().await.unwrap();
    assert!(
        fragment.contains("Wants delivery in June") && !fragment.contains("in May"),
        "{fragment}"
    );
    // The account's own task type, from Settings, offered by the composer.
    let res = c
        .submit(
            "/settings/task-types",
            "/settings/task-types",
            &[("name", "Site visit")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let res = c
        .submit(
            "/settings/task-types",
            "/settings/task-types",
            &[("name", "site VISIT")],
        )
        .await;
    assert_eq!(
        res.status(),
        reqwest::StatusCode::BAD_REQUEST,
        "a name is taken ignoring case"
    );
    let (_, html) = c.text(&page).await;
    assert!(html.contains(">Site visit</option>"), "{html}");
    // A task due yesterday: accepted and shown as overdue.
    let yesterday = (Utc::now() - TimeDelta::days(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let res = post(
        format!("/timeline/deal/{id}/tasks"),
        vec![
            ("text", "Call the buyer".into()),
            ("task_type_id", "3".into()),
            ("due", yesterday),
            ("responsible_user_id", t.admin.id.to_string()),
        ],
    )
    .await;
    let fragment = res.text().await.unwrap();
    assert!(
        fragment.contains("Call the buyer") && fragment.contains("overdue"),
        "{fragment}"
    );
    // An empty task: the composer says why.
    let res = post(
        format!("/timeline/deal/{id}/tasks"),
        vec![("text", "".into()), ("due", "2030-01-01T10:00".into())],
    )
    .await;
    let fragment = res.text().await.unwrap();
    assert!(
        fragment.contains("data-test=\"timeline-error\""),
        "{fragment}"
    );

    // The tasks page has it under "Overdue"; complete it there.
    let (_, html) = c.text("/tasks").await;
    let overdue = html
        .split("data-test=\"group-tasks.overdue\"")
        .nth(1)
        .unwrap_or_default()
        .split("</section>")
        .next()
        .unwrap_or_default();
    assert!(overdue.contains("Call the buyer"), "{html}");
    let (_, week) = c.text("/tasks?view=week").await;
    assert!(week.contains("data-test=\"week\"") && week.contains("Call the buyer"));
    let task_id = app.count("SELECT max(id) AS n FROM activities.tasks").await;
    // The board: the deal's next task on its card, the other deal marked as having none.
    let res = c.get("/deals").await;
    let board_path = match location(&res) {
        l if l.is_empty() => "/deals".to_string(),
        l => l,
    };
    let (_, board) = c.text(&board_path).await;
    assert!(board.contains("data-test=\"card-task\"") && board.contains("Call the buyer"));
    assert!(board.contains("data-test=\"no-task\""), "{board}");
    let _ = other;
    let res = c
        .submit(
            "/tasks",
            &format!("/tasks/{task_id}/complete"),
            &[("result", "Reached him")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/tasks"));
    let (_, html) = c.text(&page).await;
    assert!(
        html.contains("Reached him"),
        "the completion shows in the timeline"
    );
    // The event list (administrators).
    let (status, html) = c.text("/events").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("data-test=\"events\""));
}

#[tokio::test]
async fn a_long_timeline_pages_on_with_its_more_link() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let d = EntityRef::deal(deal(&app, caller, "Busy deal").await);
    for i in 0..65 {
        app.state
            .modules
            .activities
            .add_note(
                caller,
                NewNote {
                    entity: d,
                    note_type: String::new(),
                    text: format!("Note number {i}"),
                    call: None,
                },
            )
            .await
            .unwrap();
    }
    let c = app.signed_in(&t.admin.email).await;
    let more = |html: &str| {
        html.split("data-test=\"timeline-more\"")
            .next()
            .and_then(|h| h.rsplit("href=\"").next())
            .and_then(|h| h.split('"').next())
            .map(|h| h.replace("&amp;", "&"))
            .filter(|_| html.contains("data-test=\"timeline-more\""))
    };
    let (_, first) = c.text(&format!("/deals/{}", d.id)).await;
    assert!(first.contains("Note number 64") && !first.contains("Note number 34"));
    let second_url = more(&first).expect("a more link on the first page");
    let (_, second) = c.text(&second_url).await;
    assert!(second.contains("Note number 34") && !second.contains("Note number 64"));
    let third_url = more(&second).expect("a more link on the second page");
    let (_, third) = c.text(&third_url).await;
    assert!(third.contains("Note number 0"), "{third}");
    assert!(more(&third).is_none(), "the last page has no more link");
}

#[tokio::test]
async fn robots_tasks_created_together_are_made_once_and_a_bad_one_refuses_the_lot() {
    let app = spawn_app().await;
    let t = app.tenant("Robots").await;
    let admin = Caller::user(t.account, t.admin.id);
    let (d1, d2) = (
        deal(&app, admin, "First").await,
        deal(&app, admin, "Second").await,
    );
    let other = app.tenant("Other").await;
    let foreign = deal(&app, Caller::user(other.account, other.admin.id), "Theirs").await;
    let a = &app.state.modules.activities;
    let robot = |n: u128| Caller::robot(t.account, 7, uuid::Uuid::from_u128(n));
    let for_admin = |d: i64, text: &str| NewTask {
        responsible_user_id: Some(t.admin.id),
        ..task(Some(EntityRef::deal(d)), text, 1)
    };
    let asks = vec![
        (robot(1), for_admin(d1, "Call the first")),
        (robot(2), for_admin(d2, "Call the second")),
        (robot(3), for_admin(d1, "Send the first an offer")),
    ];
    let made = a.create_tasks(asks.clone()).await.unwrap();
    assert_eq!(
        made.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        [
            "Call the first",
            "Call the second",
            "Send the first an offer"
        ],
        "in the order asked"
    );
    assert_eq!(made[1].entity, Some(EntityRef::deal(d2)));
    assert_eq!(made[0].responsible_user_id, t.admin.id);
    // Asked again (a redelivered job), with one new: the three come back as they were, the new
    // one is made; each task's event once.
    let mut again = asks.clone();
    again.insert(1, (robot(4), for_admin(d2, "Meet the second")));
    let second = a.create_tasks(again).await.unwrap();
    assert_eq!(second[0].id, made[0].id);
    assert_eq!(second[2].id, made[1].id);
    assert_eq!(second[3].id, made[2].id);
    assert_eq!(second[1].text, "Meet the second");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.tasks")
            .await,
        4
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.outbox WHERE event_type = 'activities.task_created'")
            .await,
        4
    );
    // Another account's deal, an empty text, or no request key: the lot is refused, nothing made.
    let e = a
        .create_tasks(vec![
            (robot(5), for_admin(d1, "Fine")),
            (robot(6), for_admin(foreign, "Not ours")),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.field("entity").unwrap().code, "not_found");
    let e = a
        .create_tasks(vec![(robot(7), for_admin(d1, "  "))])
        .await
        .unwrap_err();
    assert_eq!(e.field("text").unwrap().code, "required");
    let e = a
        .create_tasks(vec![(admin, for_admin(d1, "No key"))])
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.tasks")
            .await,
        4
    );
}
