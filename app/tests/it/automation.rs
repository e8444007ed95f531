//! Automation: triggers checked on save, runs done by the real workers (once, after a restart,
//! cut in a loop), and webhooks delivered to a local receiver (signed, retried, guarded).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use activities_api::{CALL, EntityRef, TaskQuery};
use automation_api::*;
use deals_api::{DealId, MoveTo, NewDeal, NewPipeline, NewStage, Pipeline};
use kernel::paging::PageRequest;
use kernel::{Caller, ErrorCode};

use crate::support::{TestApp, spawn_app_with_workers_and, start_backbone};

/// A pipeline with stages A, B and C (the ids of A, B and C).
async fn pipeline(app: &TestApp, caller: Caller) -> (Pipeline, [i64; 3]) {
    let p = app
        .state
        .modules
        .deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Sales".into(),
                stages: ["A", "B", "C"]
                    .iter()
                    .map(|n| NewStage {
                        name: n.to_string(),
                        color: "#99ccff".into(),
                    })
                    .collect(),
            },
        )
        .await
        .unwrap();
    let id = |n: &str| p.stages.iter().find(|s| s.name == n).unwrap().id.0;
    let ids = [id("A"), id("B"), id("C")];
    (p, ids)
}

fn draft(p: &Pipeline, stage: i64, when: When, actions: Vec<Action>) -> TriggerDraft {
    TriggerDraft {
        name: "Robot".into(),
        pipeline_id: p.id.0,
        stage_id: stage,
        when,
        conditions: vec![],
        delay: Delay::Now,
        working_hours: false,
        actions,
        enabled: true,
    }
}

fn task_action(text: &str) -> Action {
    Action::CreateTask {
        task_type_id: CALL.0,
        text: text.into(),
        due_in_minutes: 60,
    }
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn move_to(app: &TestApp, caller: Caller, deal: DealId, stage: i64) {
    app.state
        .modules
        .deals
        .move_deal(
            caller,
            deal,
            MoveTo {
                stage_id: deals_api::StageId(stage),
                after: None,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap();
}

async fn runs(app: &TestApp, caller: Caller, deal: DealId) -> Vec<Run> {
    app.state
        .modules
        .automation
        .runs(
            caller,
            RunQuery {
                deal: Some(deal.0),
                trigger: None,
            },
            PageRequest::new(None, Some(100)),
        )
        .await
        .unwrap()
        .items
}

async fn open_tasks(app: &TestApp, caller: Caller, deal: DealId) -> Vec<activities_api::Task> {
    app.state
        .modules
        .activities
        .tasks(
            caller,
            &TaskQuery {
                entity: Some(EntityRef::deal(deal.0)),
                ..TaskQuery::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap()
        .items
}

/// The stage change of `deal` as it sits in the deals' outbox (to hand it to a subscriber again).
async fn stage_change_of(app: &TestApp, deal: Option<DealId>) -> kernel::events::EventEnvelope {
    let of_deal = deal
        .map(|d| format!(" AND (payload->>'deal_id')::bigint = {}", d.0))
        .unwrap_or_default();
    serde_json::from_str(
        &app.text_row(&format!(
            "SELECT row_to_json(o)::text AS v FROM deals.outbox o \
              WHERE event_type = 'deals.deal_stage_changed'{of_deal}"
        ))
        .await,
    )
    .unwrap()
}

/// The subscriber `name` and the process that runs it: the app, or automation's service when
/// the module runs remote.
fn subscriber<'a>(
    app: &'a TestApp,
    name: &str,
) -> (
    Arc<dyn kernel::inbox::Subscriber>,
    &'a actix_web::web::Data<voronka::state::AppState>,
) {
    std::iter::once(&app.state)
        .chain(app.service.iter())
        .find_map(|s| {
            voronka::server::subscribers(&s.modules)
                .iter()
                .find(|x| x.name() == name)
                .cloned()
                .map(|f| (f, s))
        })
        .unwrap()
}

/// Hands `event` to the subscriber `name` twice, as a redelivery does.
async fn deliver_twice(app: &TestApp, name: &str, event: &kernel::events::EventEnvelope) {
    let (sub, owner) = subscriber(app, name);
    let mut conn = owner.pool.get().await.unwrap();
    for _ in 0..2 {
        kernel::inbox::handle_batch(&mut conn, &*sub, std::slice::from_ref(event))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn invalid_triggers_are_refused_with_a_clear_message_and_nothing_is_saved() {
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [a, b, _]) = pipeline(&app, admin).await;

    let refused = |r: Result<Trigger, kernel::AppError>| r.expect_err("refused");
    // An unknown stage, for the trigger and for a move.
    let e = refused(
        auto.save_trigger(
            admin,
            None,
            draft(&p, 999_999, When::MovedTo, vec![task_action("x")]),
        )
        .await,
    );
    assert_eq!(e.code, ErrorCode::Validation);
    assert_eq!(e.field("stage_id").unwrap().code, "unknown_stage");
    let e = refused(
        auto.save_trigger(
            admin,
            None,
            draft(
                &p,
                a,
                When::MovedTo,
                vec![Action::MoveTo { stage_id: 424242 }],
            ),
        )
        .await,
    );
    assert_eq!(e.field("actions.0").unwrap().code, "unknown_stage");
    // An unknown field: watched, set and compared.
    let e = refused(
        auto.save_trigger(
            admin,
            None,
            draft(
                &p,
                a,
                When::FieldChanged {
                    field: "777".into(),
                },
                vec![Action::SetField {
                    field_id: 778,
                    value: "x".into(),
                }],
            ),
        )
        .await,
    );
    assert_eq!(e.field("when.field").unwrap().code, "unknown_field");
    assert_eq!(e.field("actions.0").unwrap().code, "unknown_field");
    assert!(e.field("when.field").unwrap().message.contains("777"));
    // An unknown task type, no actions, a private webhook (the guard is on by default).
    let e = refused(
        auto.save_trigger(
            admin,
            None,
            draft(
                &p,
                b,
                When::MovedTo,
                vec![
                    Action::CreateTask {
                        task_type_id: 31337,
                        text: "Call".into(),
                        due_in_minutes: 0,
                    },
                    Action::Webhook {
                        url: "http://169.254.169.254/latest".into(),
                    },
                ],
            ),
        )
        .await,
    );
    assert_eq!(e.field("actions.0").unwrap().code, "unknown_task_type");
    assert_eq!(e.field("actions.1").unwrap().code, "bad_url");
    assert!(
        e.field("actions.1")
            .unwrap()
            .message
            .contains("allow_private_destinations")
    );
    let e = refused(
        auto.save_trigger(admin, None, draft(&p, b, When::MovedTo, vec![]))
            .await,
    );
    assert_eq!(e.field("actions").unwrap().code, "required");
    // A pipeline of another account is unknown here.
    let other = app.tenant("Other").await;
    let other_admin = Caller::user(other.account, other.admin.id);
    let e = refused(
        auto.save_trigger(
            other_admin,
            None,
            draft(&p, a, When::MovedTo, vec![task_action("x")]),
        )
        .await,
    );
    assert_eq!(e.field("pipeline_id").unwrap().code, "unknown_pipeline");
    // A member may not set up robots.
    let member = app.member(&t, "manager@acme.test").await;
    let e = refused(
        auto.save_trigger(
            Caller::user(t.account, member.id),
            None,
            draft(&p, a, When::MovedTo, vec![task_action("x")]),
        )
        .await,
    );
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(auto.triggers(admin, p.id).await.unwrap().is_empty());
    assert_eq!(
        app.count("SELECT count(*) AS n FROM automation.triggers")
            .await,
        0
    );

    // A good one is saved as given, and can be switched off and deleted.
    let saved = auto
        .save_trigger(
            admin,
            None,
            draft(
                &p,
                b,
                When::MovedTo,
                vec![task_action(" Call {{deal.name}} ")],
            ),
        )
        .await
        .unwrap();
    assert_eq!(saved.actions, vec![task_action("Call {{deal.name}}")]);
    assert!(
        !auto
            .set_trigger_enabled(admin, saved.id, false)
            .await
            .unwrap()
            .enabled
    );
    assert_eq!(
        auto.trigger(other_admin, saved.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    auto.delete_trigger(admin, saved.id).await.unwrap();
    assert!(auto.triggers(admin, p.id).await.unwrap().is_empty());
    backbone.stop().await;
}

#[tokio::test]
async fn entering_a_stage_creates_the_task_once_as_a_robot_and_the_run_is_in_the_timeline() {
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    let trigger = auto
        .save_trigger(
            admin,
            None,
            TriggerDraft {
                conditions: vec![Condition::BudgetAtLeast { amount: 100 }],
                ..draft(
                    &p,
                    b,
                    When::MovedTo,
                    vec![
                        task_action("Call about {{deal.name}} in {{stage.name}}"),
                        Action::AddNote {
                            text: "Robot was here".into(),
                        },
                        Action::AddTags {
                            tags: vec!["hot".into()],
                        },
                    ],
                )
            },
        )
        .await
        .unwrap();
    let deals = &app.state.modules.deals;
    let cheap = deals
        .create_deal(admin, NewDeal::new(p.id, "Cheap"))
        .await
        .unwrap();
    let big = deals
        .create_deal(
            admin,
            NewDeal {
                price: 500,
                ..NewDeal::new(p.id, "Big order")
            },
        )
        .await
        .unwrap();
    move_to(&app, admin, cheap.id, b).await;
    move_to(&app, admin, big.id, b).await;
    wait_until("the big deal's run", || async {
        runs(&app, admin, big.id)
            .await
            .first()
            .is_some_and(|r| r.status == RunStatus::Done)
    })
    .await;
    wait_until("the cheap deal's run", || async {
        runs(&app, admin, cheap.id)
            .await
            .first()
            .is_some_and(|r| r.status == RunStatus::Skipped)
    })
    .await;
    let run = runs(&app, admin, big.id).await.remove(0);
    assert_eq!(run.trigger_id, trigger.id);
    assert_eq!(run.steps.len(), 3);
    assert!(run.steps.iter().all(|s| s.ok), "{:?}", run.steps);
    let tasks = open_tasks(&app, admin, big.id).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].text, "Call about Big order in B");
    assert_eq!(tasks[0].responsible_user_id, t.admin.id);
    assert!(open_tasks(&app, admin, cheap.id).await.is_empty());
    let big_now = deals.deal(admin, big.id).await.unwrap();
    assert_eq!(
        big_now
            .tags
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["hot"]
    );
    let skipped = runs(&app, admin, cheap.id).await.remove(0);
    assert_eq!(
        skipped.error.as_deref(),
        Some("the deal does not meet the conditions")
    );

    // Redelivered: the run is done, nothing happens twice — also when a worker dies after the
    // actions and the run is handed out again.
    assert_eq!(
        auto.execute(t.account, run.id).await.unwrap(),
        RunStatus::Done
    );
    app.sql(&format!(
        "UPDATE automation.runs SET status = 'queued', steps = '[]' WHERE id = '{}'",
        run.id.0
    ))
    .await;
    assert_eq!(
        auto.execute(t.account, run.id).await.unwrap(),
        RunStatus::Done
    );
    assert_eq!(open_tasks(&app, admin, big.id).await.len(), 1);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM activities.notes WHERE entity_id = {}",
            big.id.0
        ))
        .await,
        1
    );
    // The stage change handed to the trigger matcher again (twice) starts no second run; the
    // matcher keeps no inbox rows (a run is unique per trigger and event).
    deliver_twice(
        &app,
        "automation.triggers",
        &stage_change_of(&app, Some(big.id)).await,
    )
    .await;
    assert_eq!(runs(&app, admin, big.id).await.len(), 1);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM automation.inbox WHERE subscriber = 'automation.triggers'"
        )
        .await,
        0
    );
    // The robot is the actor of what it did, and the run is in the deal's timeline.
    wait_until("the run in the log", || async {
        app.count(&format!(
            "SELECT count(*) AS n FROM activities.log WHERE entity = 'deal' AND entity_id = {} \
               AND event_type = 'automation.run_finished'",
            big.id.0
        ))
        .await
            >= 1
    })
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM activities.log WHERE event_type = 'activities.task_created' \
               AND actor_kind = 'robot' AND actor_id = {}",
            trigger.id.0
        ))
        .await,
        1
    );
    // Another account sees none of it.
    let other = app.tenant("Other").await;
    let other_admin = Caller::user(other.account, other.admin.id);
    assert_eq!(
        auto.runs(
            other_admin,
            RunQuery {
                deal: Some(big.id.0),
                trigger: None
            },
            PageRequest::default()
        )
        .await
        .unwrap_err()
        .code,
        ErrorCode::NotFound
    );
    backbone.stop().await;
}

/// A run due now is done by the process that handled its event, as soon as the event's
/// transaction has committed: no job and no dispatcher on the way. Handled again, the event
/// adds nothing.
#[tokio::test]
async fn a_run_due_now_is_done_as_soon_as_its_event_is_handled() {
    // No workers: nothing but the event's handling does the run.
    let app = crate::support::spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    app.state
        .modules
        .automation
        .save_trigger(
            admin,
            None,
            draft(
                &p,
                b,
                When::MovedTo,
                vec![task_action("Call about {{deal.name}}")],
            ),
        )
        .await
        .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Quick"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    let event = stage_change_of(&app, Some(deal.id)).await;
    let (sub, owner) = subscriber(&app, "automation.triggers");
    let mut conn = owner.pool.get().await.unwrap();
    for _ in 0..2 {
        kernel::inbox::handle_batch(&mut conn, &*sub, std::slice::from_ref(&event))
            .await
            .unwrap();
        // Committed: recorded and due, and done only once the transaction is over.
        let recorded = runs(&app, admin, deal.id).await;
        assert_eq!(recorded.len(), 1);
        sub.after_commit(std::slice::from_ref(&event)).await;
        let done = runs(&app, admin, deal.id).await;
        assert_eq!(done.len(), 1, "the event handled again adds no run");
        assert_eq!(done[0].status, RunStatus::Done, "{:?}", done[0]);
        let tasks = open_tasks(&app, admin, deal.id).await;
        assert_eq!(tasks.len(), 1, "one task, however often the event comes");
        assert_eq!(tasks[0].text, "Call about Quick");
    }
    // Nothing was left for the dispatcher to hand out.
    assert!(
        owner
            .modules
            .automation
            .take_due(100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_delayed_action_survives_a_restart_and_runs_once() {
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    auto.save_trigger(
        admin,
        None,
        TriggerDraft {
            delay: Delay::After { minutes: 30 },
            ..draft(&p, b, When::MovedTo, vec![task_action("Follow up")])
        },
    )
    .await
    .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Order"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    wait_until("the run recorded", || async {
        runs(&app, admin, deal.id)
            .await
            .first()
            .is_some_and(|r| r.status == RunStatus::Pending)
    })
    .await;
    let run = runs(&app, admin, deal.id).await.remove(0);
    assert!(run.run_at > chrono::Utc::now() + chrono::Duration::minutes(29));
    // The process stops; while it is down, the delay runs out.
    backbone.stop().await;
    app.sql("UPDATE automation.runs SET run_at = now() - interval '1 second'")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(open_tasks(&app, admin, deal.id).await.is_empty());
    // A new process does it, once.
    let backbone = start_backbone(&app).await;
    wait_until("the delayed run", || async {
        runs(&app, admin, deal.id)
            .await
            .first()
            .is_some_and(|r| r.status == RunStatus::Done)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(open_tasks(&app, admin, deal.id).await.len(), 1);
    assert_eq!(runs(&app, admin, deal.id).await.len(), 1);

    // A worker that died mid-run: its run is handed out again after `requeue_after` and
    // finishes without doing the finished action twice.
    app.sql(&format!(
        "UPDATE automation.runs SET status = 'running', finished_at = NULL, queued_at = now() - interval '1 hour'
          WHERE id = '{}'",
        run.id.0
    ))
    .await;
    wait_until("the requeued run", || async {
        runs(&app, admin, deal.id)
            .await
            .first()
            .is_some_and(|r| r.status == RunStatus::Done)
    })
    .await;
    assert_eq!(open_tasks(&app, admin, deal.id).await.len(), 1);
    backbone.stop().await;
}

#[tokio::test]
async fn a_trigger_loop_is_cut_at_the_configured_depth_with_a_warning() {
    let (app, backbone) = spawn_app_with_workers_and(|c| c.automation.max_depth = 3).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, c]) = pipeline(&app, admin).await;
    auto.save_trigger(
        admin,
        None,
        draft(&p, b, When::MovedTo, vec![Action::MoveTo { stage_id: c }]),
    )
    .await
    .unwrap();
    let back_to_b = auto
        .save_trigger(
            admin,
            None,
            draft(&p, c, When::MovedTo, vec![Action::MoveTo { stage_id: b }]),
        )
        .await
        .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Ping-pong"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    wait_until("the cut", || async {
        runs(&app, admin, deal.id)
            .await
            .iter()
            .any(|r| r.status == RunStatus::Cut)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = runs(&app, admin, deal.id).await;
    let mut depths: Vec<(i32, RunStatus)> = all.iter().map(|r| (r.depth, r.status)).collect();
    depths.sort_by_key(|d| d.0);
    assert_eq!(
        depths,
        [
            (1, RunStatus::Done),
            (2, RunStatus::Done),
            (3, RunStatus::Done),
            (4, RunStatus::Cut)
        ]
    );
    let cut = all.iter().find(|r| r.status == RunStatus::Cut).unwrap();
    assert!(cut.error.as_deref().unwrap().contains("max_depth"));
    assert_eq!(cut.trigger_id, back_to_b.id);
    // The deal stayed where the last robot left it (B → C → B → C).
    let now = app.state.modules.deals.deal(admin, deal.id).await.unwrap();
    assert_eq!(now.stage_id.0, c);
    wait_until("the warning in the timeline", || async {
        app.count(&format!(
            "SELECT count(*) AS n FROM activities.log WHERE entity_id = {} AND event_type = 'automation.run_finished' \
               AND payload->>'status' = 'cut'",
            deal.id.0
        ))
        .await
            == 1
    })
    .await;
    backbone.stop().await;
}

/// What the receiver got: (status it answered, signature header, content type, body).
type Seen = Arc<Mutex<Vec<(u16, String, String, String)>>>;

/// A local webhook receiver: answers 500 to the first `fail` requests, then 200; keeps every
/// request's body and signature header.
async fn receiver(fail: usize) -> (String, Seen) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/hook",
            web::post().to(
                move |req: HttpRequest, body: web::Bytes, seen: web::Data<Seen>| {
                    let mut seen = seen.lock().unwrap();
                    let status = if seen.len() < fail { 500 } else { 200 };
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    seen.push((
                        status,
                        header("x-voronka-signature"),
                        header("content-type"),
                        String::from_utf8_lossy(&body).to_string(),
                    ));
                    async move {
                        if status == 200 {
                            HttpResponse::Ok().body("thanks")
                        } else {
                            HttpResponse::InternalServerError().body("try again later")
                        }
                    }
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, seen)
}

#[tokio::test]
async fn a_webhook_that_fails_twice_then_succeeds_gets_one_signed_successful_delivery() {
    let (app, backbone) = spawn_app_with_workers_and(|c| {
        c.automation.allow_private_destinations = true;
        c.automation.webhook_backoff_ms = 100;
    })
    .await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    let (url, seen) = receiver(2).await;
    let hook = auto
        .save_webhook(
            admin,
            None,
            WebhookDraft {
                url: url.clone(),
                events: vec!["status_lead".into()],
                format: PayloadFormat::Json,
                enabled: true,
            },
        )
        .await
        .unwrap();
    let (form_url, form_seen) = receiver(0).await;
    auto.save_webhook(
        admin,
        None,
        WebhookDraft {
            url: form_url,
            events: vec!["status_lead".into(), "add_lead".into()],
            format: PayloadFormat::Form,
            enabled: true,
        },
    )
    .await
    .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Order"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    wait_until("the delivery", || async {
        seen.lock().unwrap().iter().any(|s| s.0 == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        [500, 500, 200],
        "exactly one successful delivery"
    );
    let (_, signature, content_type, body) = &got[2];
    assert_eq!(content_type, "application/json");
    assert_eq!(
        signature,
        &automation::signature_of(&hook.secret, body.as_bytes())
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["event"], "status_lead");
    assert_eq!(json["data"]["deal_id"], deal.id.0);
    assert_eq!(json["data"]["to_stage_id"], b);
    // The same body every time (fixed when the event was handled).
    assert!(got.iter().all(|g| g.3 == *body));
    let log = auto
        .deliveries(admin, Some(hook.id), PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, DeliveryStatus::Delivered);
    assert_eq!(log[0].attempts, 3);
    assert_eq!(log[0].last_status_code, Some(200));
    assert_eq!(log[0].last_response.as_deref(), Some("thanks"));
    // The stage change delivered to the webhooks' subscriber again (twice) queues nothing new;
    // that subscriber keeps no inbox rows (a delivery is unique per subscription and event).
    let moved = stage_change_of(&app, None).await;
    let deliveries_of_move = format!(
        "SELECT count(*) AS n FROM automation.deliveries WHERE event_id = '{}'",
        moved.id
    );
    assert_eq!(app.count(&deliveries_of_move).await, 2);
    deliver_twice(&app, "automation.webhooks", &moved).await;
    assert_eq!(app.count(&deliveries_of_move).await, 2);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM automation.inbox WHERE subscriber = 'automation.webhooks'"
        )
        .await,
        0
    );
    // amoCRM's form format, for the other subscription: one add and one status change.
    wait_until("the form deliveries", || async {
        form_seen.lock().unwrap().len() == 2
    })
    .await;
    let forms = form_seen.lock().unwrap().clone();
    let bodies: Vec<&str> = forms.iter().map(|f| f.3.as_str()).collect();
    assert!(
        forms
            .iter()
            .all(|f| f.2 == "application/x-www-form-urlencoded")
    );
    assert!(bodies.iter().any(|b| b.starts_with(&format!(
        "leads%5Badd%5D%5B0%5D%5Bid%5D={}&leads%5Badd%5D%5B0%5D%5Bname%5D=Order",
        deal.id.0
    ))));
    assert!(
        bodies
            .iter()
            .any(|body| body.contains(&format!("leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D={b}")))
    );
    backbone.stop().await;
}

#[tokio::test]
async fn private_destinations_are_refused_when_saved_and_when_delivered() {
    let (app, backbone) =
        spawn_app_with_workers_and(|c| c.automation.webhook_backoff_ms = 100).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    let (url, seen) = receiver(0).await;
    let e = auto
        .save_webhook(
            admin,
            None,
            WebhookDraft {
                url: url.clone(),
                events: vec!["status_lead".into()],
                format: PayloadFormat::Json,
                enabled: true,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.field("url").unwrap().code, "bad_url");
    assert!(e.field("url").unwrap().message.contains("loopback"));
    assert!(auto.webhooks(admin).await.unwrap().is_empty());
    // Saved before the guard was on (or a name that now points inside): refused at delivery.
    app.sql(&format!(
        "INSERT INTO automation.webhooks (account_id, url, events, format, secret, created_by)
         VALUES ({}, '{url}', '{{status_lead}}', 'json', 's', 0)",
        t.account.0
    ))
    .await;
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Order"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    wait_until("the refused delivery", || async {
        auto.deliveries(admin, None, PageRequest::default())
            .await
            .unwrap()
            .items
            .first()
            .is_some_and(|d| d.status == DeliveryStatus::Failed)
    })
    .await;
    let d = auto
        .deliveries(admin, None, PageRequest::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert!(d.last_response.as_deref().unwrap().starts_with("refused:"));
    assert_eq!(d.attempts, 1, "a refusal is not retried");
    assert!(seen.lock().unwrap().is_empty());
    backbone.stop().await;
}

#[tokio::test]
async fn a_webhook_failing_for_long_is_switched_off_with_the_reason() {
    let (app, backbone) = spawn_app_with_workers_and(|c| {
        c.automation.allow_private_destinations = true;
        c.automation.webhook_backoff_ms = 50;
        c.automation.webhook_max_attempts = 2;
        c.automation.webhook_disable_after = 3;
    })
    .await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [a, b, _]) = pipeline(&app, admin).await;
    let (url, seen) = receiver(usize::MAX).await;
    auto.save_webhook(
        admin,
        None,
        WebhookDraft {
            url,
            events: vec!["status_lead".into()],
            format: PayloadFormat::Json,
            enabled: true,
        },
    )
    .await
    .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Order"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    move_to(&app, admin, deal.id, a).await;
    wait_until("the webhook switched off", || async {
        auto.webhooks(admin)
            .await
            .unwrap()
            .first()
            .is_some_and(|w| !w.enabled)
    })
    .await;
    let hook = auto.webhooks(admin).await.unwrap().remove(0);
    let reason = hook.disabled_reason.unwrap();
    assert!(
        reason.contains("3 failed deliveries") && reason.contains("HTTP 500"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The third failure switched it off; an attempt already on its way may still have gone.
    let sent = seen.lock().unwrap().len();
    assert!((3..=4).contains(&sent), "{sent} requests");
    // Nothing more goes out while it is off.
    move_to(&app, admin, deal.id, b).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(seen.lock().unwrap().len(), sent);
    backbone.stop().await;
}

#[tokio::test]
async fn a_segment_condition_asks_the_contacts_module_about_the_deals_contact() {
    use contacts_api::{ContactFilter, Entity, NewContact};
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let contacts = &app.state.modules.contacts;
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    let anna = contacts
        .create_contact(
            admin,
            NewContact {
                first_name: "Anna".into(),
                tags: vec!["vip".into()],
                ..NewContact::default()
            },
        )
        .await
        .unwrap();
    let bob = contacts
        .create_contact(
            admin,
            NewContact {
                first_name: "Bob".into(),
                ..NewContact::default()
            },
        )
        .await
        .unwrap();
    let vip_tag = contacts.tags(admin, Entity::Contact).await.unwrap()[0].id;
    let segment = contacts
        .save_segment(
            admin,
            "VIP",
            ContactFilter {
                tags: vec![vip_tag],
                ..ContactFilter::default()
            },
        )
        .await
        .unwrap();
    let with = |c: Condition| TriggerDraft {
        conditions: vec![c],
        ..draft(
            &p,
            b,
            When::MovedTo,
            vec![Action::AddNote {
                text: "VIP!".into(),
            }],
        )
    };
    let e = auto
        .save_trigger(
            admin,
            None,
            with(Condition::ContactInSegment { segment_id: 424242 }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.field("conditions.0").unwrap().code, "unknown_segment");
    auto.save_trigger(
        admin,
        None,
        with(Condition::ContactInSegment {
            segment_id: segment.id.0,
        }),
    )
    .await
    .unwrap();
    let deals = &app.state.modules.deals;
    let mut ids = Vec::new();
    for (name, contact) in [
        ("Anna's", Some(anna.id.0)),
        ("Bob's", Some(bob.id.0)),
        ("Nobody's", None),
    ] {
        let d = deals
            .create_deal(
                admin,
                NewDeal {
                    contact_ids: contact.into_iter().collect(),
                    ..NewDeal::new(p.id, name)
                },
            )
            .await
            .unwrap();
        move_to(&app, admin, d.id, b).await;
        ids.push(d.id);
    }
    for id in &ids {
        wait_until("the runs", || async {
            runs(&app, admin, *id)
                .await
                .first()
                .is_some_and(|r| matches!(r.status, RunStatus::Done | RunStatus::Skipped))
        })
        .await;
    }
    let statuses: Vec<RunStatus> = futures_statuses(&app, admin, &ids).await;
    assert_eq!(
        statuses,
        [RunStatus::Done, RunStatus::Skipped, RunStatus::Skipped]
    );
    backbone.stop().await;
}

async fn futures_statuses(app: &TestApp, caller: Caller, ids: &[DealId]) -> Vec<RunStatus> {
    let mut out = Vec::new();
    for id in ids {
        out.push(runs(app, caller, *id).await[0].status);
    }
    out
}

/// A local SMTP server that accepts every message and keeps (recipient, data).
async fn smtp_server() -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let keep = keep.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                let (mut rcpt, mut data, mut in_data) = (String::new(), String::new(), false);
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            keep.lock().unwrap().push((rcpt.clone(), data.clone()));
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let answer: &[u8] = if upper.starts_with("EHLO") {
                        b"250-fake\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt = line[8..].trim().trim_matches(['<', '>']).to_string();
                        b"250 ok\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        data.clear();
                        b"354 go on\r\n"
                    } else if upper.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    write.write_all(answer).await.unwrap();
                }
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn a_robot_e_mails_the_deals_contact_through_smtp_once() {
    use contacts_api::{NewContact, Reach};
    let (port, got) = smtp_server().await;
    let (app, backbone) = spawn_app_with_workers_and(|c| {
        c.automation.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.automation.email_from = "Acme robot <robot@acme.test>".into();
    })
    .await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    let anna = app
        .state
        .modules
        .contacts
        .create_contact(
            admin,
            NewContact {
                first_name: "Anna".into(),
                emails: vec![Reach {
                    kind: "WORK".into(),
                    value: "anna@client.test".into(),
                }],
                ..NewContact::default()
            },
        )
        .await
        .unwrap();
    let email = |to: EmailTo, address: &str| Action::SendEmail {
        to,
        address: address.into(),
        subject: "About {{deal.name}}".into(),
        body: "Your offer for {{deal.name}} is ready.".into(),
    };
    let e = auto
        .save_trigger(
            admin,
            None,
            draft(
                &p,
                b,
                When::MovedTo,
                vec![email(EmailTo::Address, "not an address")],
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.field("actions.0").unwrap().code, "invalid_email");
    auto.save_trigger(
        admin,
        None,
        draft(
            &p,
            b,
            When::MovedTo,
            vec![email(EmailTo::Contact, ""), email(EmailTo::Responsible, "")],
        ),
    )
    .await
    .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(
            admin,
            NewDeal {
                contact_ids: vec![anna.id.0],
                ..NewDeal::new(p.id, "Big order")
            },
        )
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    wait_until("the e-mails", || async {
        runs(&app, admin, deal.id)
            .await
            .first()
            .is_some_and(|r| r.status == RunStatus::Done)
    })
    .await;
    let run = runs(&app, admin, deal.id).await.remove(0);
    // Redelivered: nothing is sent again.
    app.sql(&format!(
        "UPDATE automation.runs SET status = 'queued', steps = '[]' WHERE id = '{}'",
        run.id.0
    ))
    .await;
    assert_eq!(
        auto.execute(t.account, run.id).await.unwrap(),
        RunStatus::Done
    );
    let mails = got.lock().unwrap().clone();
    assert_eq!(
        mails.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["anna@client.test", t.admin.email.as_str()]
    );
    assert!(
        mails[0].1.contains("Subject: About Big order"),
        "{}",
        mails[0].1
    );
    assert!(mails[0].1.contains("Your offer for Big order is ready."));
    assert!(
        mails[0]
            .1
            .contains("From: \"Acme robot\" <robot@acme.test>")
            || mails[0].1.contains("From: Acme robot <robot@acme.test>"),
        "{}",
        mails[0].1
    );
    backbone.stop().await;
}

#[tokio::test]
async fn without_an_smtp_server_the_e_mail_action_is_refused_on_save() {
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let (p, [_, b, _]) = pipeline(&app, admin).await;
    let e = app
        .state
        .modules
        .automation
        .save_trigger(
            admin,
            None,
            draft(
                &p,
                b,
                When::MovedTo,
                vec![Action::SendEmail {
                    to: EmailTo::Responsible,
                    address: String::new(),
                    subject: "Hi".into(),
                    body: String::new(),
                }],
            ),
        )
        .await
        .unwrap_err();
    let f = e.field("actions.0").unwrap();
    assert_eq!(f.code, "unavailable");
    assert!(f.message.contains("smtp_url"));
    backbone.stop().await;
}

#[tokio::test]
async fn a_manual_robot_runs_on_deals_chosen_in_the_list() {
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let (p, [a, b, _]) = pipeline(&app, admin).await;
    let robot = app
        .state
        .modules
        .automation
        .save_trigger(
            admin,
            None,
            TriggerDraft {
                name: "Follow-up call".into(),
                ..draft(&p, a, When::Manual, vec![task_action("Call {{deal.name}}")])
            },
        )
        .await
        .unwrap();
    let deals = &app.state.modules.deals;
    let one = deals
        .create_deal(admin, NewDeal::new(p.id, "One"))
        .await
        .unwrap();
    let two = deals
        .create_deal(admin, NewDeal::new(p.id, "Two"))
        .await
        .unwrap();
    let web = app.signed_in(&t.admin.email).await;
    let (status, page) = web.text("/deals/list").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Sales: Follow-up call"),
        "the robot is offered"
    );
    let res = web
        .submit(
            "/deals/list",
            "/deals/bulk",
            &[
                ("action", "robot"),
                ("trigger", &robot.id.0.to_string()),
                ("id", &one.id.0.to_string()),
                ("id", &two.id.0.to_string()),
                ("back", "/deals/list"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    for d in [one.id, two.id] {
        wait_until("the manual runs", || async {
            runs(&app, admin, d)
                .await
                .first()
                .is_some_and(|r| r.status == RunStatus::Done)
        })
        .await;
        assert_eq!(open_tasks(&app, admin, d).await.len(), 1);
    }
    // Entering the stage does not start a manual trigger.
    move_to(&app, admin, one.id, b).await;
    move_to(&app, admin, one.id, a).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(runs(&app, admin, one.id).await.len(), 1);
    backbone.stop().await;
}

fn say(text: &str, buttons: &[&str]) -> BotStep {
    BotStep::Message {
        text: text.into(),
        buttons: buttons.iter().map(|b| b.to_string()).collect(),
    }
}

#[tokio::test]
async fn bot_definitions_are_checked_on_save_and_kept_as_given() {
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, c]) = pipeline(&app, admin).await;
    let bot = |steps: Vec<BotStep>| BotDraft {
        name: "Qualifier".into(),
        pipeline_id: p.id.0,
        steps,
    };
    // A loop of steps that never waits for a reply.
    let e = auto
        .save_bot(
            admin,
            None,
            bot(vec![
                say("Hello", &[]),
                BotStep::Act {
                    action: Action::AddTags {
                        tags: vec!["x".into()],
                    },
                },
                BotStep::Jump { to: 0 },
            ]),
        )
        .await
        .unwrap_err();
    let f = e.field("steps").unwrap();
    assert_eq!(f.code, "loop_without_wait");
    assert!(f.message.contains("1 → 2 → 3 → 1"), "{}", f.message);
    // Jumps to steps that do not exist, an unknown stage, too many buttons.
    let e = auto
        .save_bot(
            admin,
            None,
            bot(vec![
                say(
                    "Pick one",
                    &[
                        "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14",
                    ],
                ),
                BotStep::WaitReply {
                    timeout_minutes: 60,
                    on_timeout: Some(9),
                },
                BotStep::Act {
                    action: Action::MoveTo { stage_id: 777_777 },
                },
                BotStep::Jump { to: 42 },
            ]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.field("steps.0").unwrap().code, "too_many");
    assert_eq!(e.field("steps.1").unwrap().code, "unknown_step");
    assert_eq!(e.field("steps.2").unwrap().code, "unknown_stage");
    assert_eq!(e.field("steps.3").unwrap().code, "unknown_step");
    assert!(auto.bots(admin).await.unwrap().is_empty());

    // A good one: ask, wait, branch on the reply, act, with a loop that waits.
    let steps = vec![
        say("Shall we call you?", &["Yes", "No"]),
        BotStep::WaitReply {
            timeout_minutes: 60,
            on_timeout: Some(5),
        },
        BotStep::Branch {
            rules: vec![
                BranchRule {
                    when: Match::ReplyIs { text: "yes".into() },
                    goto: 3,
                },
                BranchRule {
                    when: Match::ReplyIs { text: "no".into() },
                    goto: 4,
                },
            ],
            otherwise: Some(0),
        },
        BotStep::Act {
            action: Action::MoveTo { stage_id: c },
        },
        BotStep::Act {
            action: Action::MoveTo { stage_id: b },
        },
        BotStep::Stop,
    ];
    let saved = auto
        .save_bot(admin, None, bot(steps.clone()))
        .await
        .unwrap();
    assert_eq!(saved.steps, steps);
    assert_eq!(auto.bot(admin, saved.id).await.unwrap().steps, steps);
    let e = auto
        .save_bot(admin, None, bot(steps.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.field("name").unwrap().code, "taken");
    // Members read bots but do not change them; other accounts do not see them.
    let member = app.member(&t, "manager@acme.test").await;
    let m = Caller::user(t.account, member.id);
    assert_eq!(auto.bots(m).await.unwrap().len(), 1);
    assert_eq!(
        auto.save_bot(m, Some(saved.id), bot(steps.clone()))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    let other = app.tenant("Other").await;
    let o = Caller::user(other.account, other.admin.id);
    assert_eq!(
        auto.bot(o, saved.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );

    // The editor: the rows make the same bot; a loop without a wait is refused with its steps.
    let web = app.signed_in(&t.admin.email).await;
    let (status, page) = web.text(&format!("/automation/bots/{}", saved.id.0)).await;
    assert_eq!(status, 200);
    assert!(page.contains("Shall we call you?"));
    let pipeline_id = p.id.0.to_string();
    let res = web
        .submit(
            "/automation/bots/new",
            "/automation/bots",
            &[
                ("name", "Spinner"),
                ("pipeline", &pipeline_id),
                ("s0_kind", "message"),
                ("s0_text", "Hi"),
                ("s1_kind", "jump"),
                ("s1_to", "1"),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(body.contains("1 → 2 → 1"), "the loop is named");
    assert_eq!(auto.bots(admin).await.unwrap().len(), 1);

    // A trigger starts the bot on a deal entering its stage (an unknown bot is refused); the deal
    // has no chat (its client never wrote), so the bot's run stops at its first message, saying why.
    let e = auto
        .save_trigger(
            admin,
            None,
            draft(
                &p,
                b,
                When::MovedTo,
                vec![Action::StartBot { bot_id: 9999 }],
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.field("actions.0").unwrap().code, "unknown_bot");
    auto.save_trigger(
        admin,
        None,
        draft(
            &p,
            b,
            When::MovedTo,
            vec![Action::StartBot { bot_id: saved.id.0 }],
        ),
    )
    .await
    .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Chatty"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    wait_until("the bot's run", || async {
        auto.bot_runs(admin, deal.id)
            .await
            .unwrap()
            .first()
            .is_some_and(|r| r.status == BotRunStatus::Failed)
    })
    .await;
    let run = auto.bot_runs(admin, deal.id).await.unwrap().remove(0);
    assert!(run.error.unwrap().contains("has no chat"));
    let (status, page) = web.text(&format!("/deals/{}/runs", deal.id.0)).await;
    assert_eq!(status, 200);
    assert!(page.contains("Qualifier"));
    backbone.stop().await;
}

/// A message a bot sent: (deal, text, buttons, command id).
type Sent = (i64, String, Vec<String>, Option<uuid::Uuid>);

/// The messaging contract as a test double: keeps what bots send (once per command id).
#[derive(Default)]
struct Chat {
    sent: Mutex<Vec<Sent>>,
}

#[async_trait::async_trait]
impl messaging_api::Chats for Chat {
    async fn send_to_deal(
        &self,
        caller: Caller,
        deal: i64,
        text: &str,
        buttons: &[String],
    ) -> kernel::AppResult<messaging_api::Queued> {
        let mut sent = self.sent.lock().unwrap();
        if let Some(i) = sent
            .iter()
            .position(|s| s.3.is_some() && s.3 == caller.cause)
        {
            return Ok(messaging_api::Queued {
                message_id: i as i64 + 1,
                conversation_id: deal,
            });
        }
        sent.push((deal, text.to_string(), buttons.to_vec(), caller.cause));
        Ok(messaging_api::Queued {
            message_id: sent.len() as i64,
            conversation_id: deal,
        })
    }
}

/// Does the due bot work of `service` until there is none (the job workers' part).
async fn drive(service: &automation::AutomationService) {
    for _ in 0..20 {
        let work = service.take_due(100).await.unwrap();
        if work.is_empty() {
            return;
        }
        for w in work {
            if let Work::Bot {
                account_id,
                bot_run_id,
            } = w
            {
                service.advance_bot(account_id, bot_run_id).await.unwrap();
            }
        }
    }
}

async fn reply(
    app: &TestApp,
    service: &automation::AutomationService,
    account: kernel::AccountId,
    deal: DealId,
    text: &str,
) {
    use kernel::events::EventEnvelope;
    let event = EventEnvelope::new(
        Caller::system(account),
        &messaging_api::events::MessageReceived {
            message_id: 1,
            conversation_id: 1,
            deal_id: Some(deal.0),
            contact_id: None,
            text: text.into(),
            channel: "telegram".into(),
        },
    )
    .unwrap();
    let mut conn = app.state.pool.get().await.unwrap();
    kernel::inbox::handle_once(&mut conn, &service.bot_replies(), &event)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bot_asks_waits_for_the_reply_and_branches_on_it() {
    let app = crate::support::spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let chat = Arc::new(Chat::default());
    let service = automation::AutomationService::new(
        app.state.pool.clone(),
        m.accounts.clone(),
        m.deals.clone(),
        m.activities.clone(),
        m.contacts.clone(),
        Some(chat.clone()),
        automation::Settings::default(),
    );
    let (p, _) = pipeline(&app, admin).await;
    let tag = |t: &str| BotStep::Act {
        action: Action::AddTags {
            tags: vec![t.into()],
        },
    };
    let bot = service
        .save_bot(
            admin,
            None,
            BotDraft {
                name: "Qualifier".into(),
                pipeline_id: p.id.0,
                steps: vec![
                    say("Shall we call you about {{deal.name}}?", &["Yes", "No"]),
                    BotStep::WaitReply {
                        timeout_minutes: 60,
                        on_timeout: Some(7),
                    },
                    BotStep::Branch {
                        rules: vec![
                            BranchRule {
                                when: Match::ReplyIs { text: "Yes".into() },
                                goto: 3,
                            },
                            BranchRule {
                                when: Match::ReplyContains { text: "no".into() },
                                goto: 5,
                            },
                        ],
                        otherwise: Some(0),
                    },
                    tag("call-me"),
                    BotStep::Stop,
                    tag("no-call"),
                    BotStep::Stop,
                    tag("silent"),
                ],
            },
        )
        .await
        .unwrap();
    let deals = &m.deals;
    let mut ids = Vec::new();
    for name in ["Yes deal", "No deal", "Silent deal", "Stopped deal"] {
        let d = deals
            .create_deal(admin, NewDeal::new(p.id, name))
            .await
            .unwrap();
        service.start_bot(admin, bot.id, d.id).await.unwrap();
        ids.push(d.id);
    }
    // The same bot twice on a deal is refused.
    let e = service.start_bot(admin, bot.id, ids[0]).await.unwrap_err();
    assert_eq!(e.field("bot").unwrap().code, "already_running");
    drive(&service).await;
    let sent = chat.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0].1, "Shall we call you about Yes deal?");
    assert_eq!(sent[0].2, ["Yes", "No"]);
    for id in &ids {
        let run = service.bot_runs(admin, *id).await.unwrap().remove(0);
        assert_eq!((run.status, run.step), (BotRunStatus::Waiting, 1));
        assert!(run.waiting_until.is_some());
    }
    let tags = |d: DealId| async move {
        deals
            .deal(admin, d)
            .await
            .unwrap()
            .tags
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
    };
    // Replies branch; a timeout goes to its step; a stopped bot ignores replies.
    reply(&app, &service, t.account, ids[0], " yes ").await;
    reply(&app, &service, t.account, ids[1], "No, thanks").await;
    app.sql(&format!(
        "UPDATE automation.bot_runs SET due_at = now() - interval '1 second' WHERE deal_id = {}",
        ids[2].0
    ))
    .await;
    let stopped = service.bot_runs(admin, ids[3]).await.unwrap().remove(0);
    service.stop_bot_run(admin, stopped.id).await.unwrap();
    reply(&app, &service, t.account, ids[3], "yes").await;
    drive(&service).await;
    assert_eq!(tags(ids[0]).await, ["call-me"]);
    assert_eq!(tags(ids[1]).await, ["no-call"]);
    assert_eq!(tags(ids[2]).await, ["silent"]);
    assert!(tags(ids[3]).await.is_empty());
    let done = service.bot_runs(admin, ids[0]).await.unwrap().remove(0);
    assert_eq!(done.status, BotRunStatus::Done);
    let kinds: Vec<&str> = done.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["message", "waiting", "reply", "branch", "add_tags", "stop"]
    );
    assert_eq!(
        service.bot_runs(admin, ids[3]).await.unwrap()[0].status,
        BotRunStatus::Stopped
    );
    // Handed out again (a worker died after sending): nothing is sent twice.
    app.sql(&format!(
        "UPDATE automation.bot_runs SET status = 'running', step = 0, history = '[]', queued_at = now() WHERE deal_id = {}",
        ids[0].0
    ))
    .await;
    service.advance_bot(t.account, done.id).await.unwrap();
    assert_eq!(chat.sent.lock().unwrap().len(), 4, "the message went once");

    // The app's own bots on a deal without a chat say so at a message step.
    let plain = &m.automation;
    let d = deals
        .create_deal(admin, NewDeal::new(p.id, "Plain"))
        .await
        .unwrap();
    plain.start_bot(admin, bot.id, d.id).await.unwrap();
    for w in plain.take_due(100).await.unwrap() {
        if let Work::Bot {
            account_id,
            bot_run_id,
        } = w
        {
            plain.advance_bot(account_id, bot_run_id).await.unwrap();
        }
    }
    let failed = plain.bot_runs(admin, d.id).await.unwrap().remove(0);
    assert_eq!(failed.status, BotRunStatus::Failed);
    assert!(failed.error.unwrap().contains("has no chat"));
}

#[tokio::test]
async fn finished_runs_and_deliveries_go_after_the_days_kept() {
    let app = crate::support::spawn_app_with(|c| c.automation.keep_days = 30).await;
    let t = app.tenant("Acme").await;
    let a = t.account.0;
    app.sql(&format!(
        "INSERT INTO automation.runs (id, account_id, trigger_id, deal_id, event_type, status, run_at, created_at, finished_at)
         VALUES (gen_random_uuid(), {a}, 1, 1, 'x', 'done', now(), now() - interval '31 days', now() - interval '31 days'),
                (gen_random_uuid(), {a}, 1, 1, 'x', 'done', now(), now() - interval '29 days', now() - interval '29 days'),
                (gen_random_uuid(), {a}, 1, 1, 'x', 'pending', now(), now() - interval '40 days', NULL);
         INSERT INTO automation.deliveries (id, account_id, event, url, content_type, body, secret, status, max_attempts, created_at)
         VALUES (gen_random_uuid(), {a}, 'x', 'http://x', 'a', '', '', 'delivered', 1, now() - interval '31 days'),
                (gen_random_uuid(), {a}, 'x', 'http://x', 'a', '', '', 'pending', 1, now() - interval '31 days');"
    ))
    .await;
    assert_eq!(app.state.modules.automation.clean_up().await.unwrap(), 2);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM automation.runs").await,
        2,
        "recent and waiting runs stay"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM automation.deliveries")
            .await,
        1,
        "a pending delivery stays"
    );
    assert_eq!(app.state.modules.automation.clean_up().await.unwrap(), 0);
}

#[tokio::test]
async fn a_loop_through_a_bot_is_cut_like_a_loop_of_triggers() {
    let (app, backbone) = spawn_app_with_workers_and(|c| c.automation.max_depth = 3).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let auto = &app.state.modules.automation;
    let (p, [_, b, c]) = pipeline(&app, admin).await;
    let mover = auto
        .save_bot(
            admin,
            None,
            BotDraft {
                name: "Mover".into(),
                pipeline_id: p.id.0,
                steps: vec![BotStep::Act {
                    action: Action::MoveTo { stage_id: c },
                }],
            },
        )
        .await
        .unwrap();
    auto.save_trigger(
        admin,
        None,
        draft(
            &p,
            b,
            When::MovedTo,
            vec![Action::StartBot { bot_id: mover.id.0 }],
        ),
    )
    .await
    .unwrap();
    auto.save_trigger(
        admin,
        None,
        draft(&p, c, When::MovedTo, vec![Action::MoveTo { stage_id: b }]),
    )
    .await
    .unwrap();
    let deal = app
        .state
        .modules
        .deals
        .create_deal(admin, NewDeal::new(p.id, "Round and round"))
        .await
        .unwrap();
    move_to(&app, admin, deal.id, b).await;
    wait_until("the cut", || async {
        runs(&app, admin, deal.id)
            .await
            .iter()
            .any(|r| r.status == RunStatus::Cut)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut depths: Vec<(i32, RunStatus)> = runs(&app, admin, deal.id)
        .await
        .iter()
        .map(|r| (r.depth, r.status))
        .collect();
    depths.sort_by_key(|d| d.0);
    assert_eq!(
        depths,
        [
            (1, RunStatus::Done),
            (2, RunStatus::Done),
            (3, RunStatus::Done),
            (4, RunStatus::Cut)
        ]
    );
    assert_eq!(auto.bot_runs(admin, deal.id).await.unwrap().len(), 2);
    backbone.stop().await;
}

#[tokio::test]
async fn a_bots_branch_on_the_deal_asks_about_the_contacts_segment_too() {
    use contacts_api::{ContactFilter, Entity, NewContact};
    let app = crate::support::spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let (p, _) = pipeline(&app, admin).await;
    let vip = m
        .contacts
        .create_contact(
            admin,
            NewContact {
                first_name: "Anna".into(),
                tags: vec!["vip".into()],
                ..NewContact::default()
            },
        )
        .await
        .unwrap();
    let tag = m.contacts.tags(admin, Entity::Contact).await.unwrap()[0].id;
    let segment = m
        .contacts
        .save_segment(
            admin,
            "VIP",
            ContactFilter {
                tags: vec![tag],
                ..ContactFilter::default()
            },
        )
        .await
        .unwrap();
    let add = |t: &str| BotStep::Act {
        action: Action::AddTags {
            tags: vec![t.into()],
        },
    };
    let bot = m
        .automation
        .save_bot(
            admin,
            None,
            BotDraft {
                name: "Sorter".into(),
                pipeline_id: p.id.0,
                steps: vec![
                    BotStep::Branch {
                        rules: vec![BranchRule {
                            when: Match::Deal {
                                condition: Condition::ContactInSegment {
                                    segment_id: segment.id.0,
                                },
                            },
                            goto: 1,
                        }],
                        otherwise: Some(3),
                    },
                    add("vip"),
                    BotStep::Stop,
                    add("regular"),
                ],
            },
        )
        .await
        .unwrap();
    let mut deals = Vec::new();
    for contacts in [vec![vip.id.0], vec![]] {
        let d = m
            .deals
            .create_deal(
                admin,
                NewDeal {
                    contact_ids: contacts,
                    ..NewDeal::new(p.id, "Order")
                },
            )
            .await
            .unwrap();
        m.automation.start_bot(admin, bot.id, d.id).await.unwrap();
        deals.push(d.id);
    }
    for w in m.automation.take_due(100).await.unwrap() {
        if let Work::Bot {
            account_id,
            bot_run_id,
        } = w
        {
            m.automation
                .advance_bot(account_id, bot_run_id)
                .await
                .unwrap();
        }
    }
    let tags = |d: DealId| async move {
        m.deals
            .deal(admin, d)
            .await
            .unwrap()
            .tags
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(tags(deals[0]).await, ["vip"]);
    assert_eq!(tags(deals[1]).await, ["regular"]);
}
