//! The deals module through its trait: pipelines and stages, validation, the board's totals,
//! moves (positions, history, events), rights, and concurrent moves.

use accounts_api::{Action, Entity, Level, Rights, UserPatch};
use deals_api::*;
use kernel::paging::PageRequest;
use kernel::{Caller, ErrorCode};

use crate::support::{TestApp, spawn_app};

fn stages(names: &[&str]) -> Vec<NewStage> {
    names
        .iter()
        .map(|n| NewStage {
            name: n.to_string(),
            color: "#99ccff".into(),
        })
        .collect()
}

async fn sales_pipeline(app: &TestApp, caller: Caller) -> Pipeline {
    app.state
        .modules
        .deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Sales".into(),
                stages: stages(&["First contact", "Negotiation", "Invoice"]),
            },
        )
        .await
        .unwrap()
}

/// A tenant's admin, and a fresh sales pipeline with its first two own stages.
async fn sales_setup(app: &TestApp, tenant: &str) -> (Caller, Pipeline, StageId, StageId) {
    let t = app.tenant(tenant).await;
    let caller = Caller::user(t.account, t.admin.id);
    let p = sales_pipeline(app, caller).await;
    let (first, second) = (p.stages[1].id, p.stages[2].id);
    (caller, p, first, second)
}

/// The pipeline's board, unfiltered.
async fn board_of(app: &TestApp, caller: Caller, p: &Pipeline) -> Vec<BoardColumn> {
    app.state
        .modules
        .deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap()
}

/// A move to `stage_id`, at the top or right after `after`.
fn move_to(stage_id: StageId, after: Option<DealId>) -> MoveTo {
    MoveTo {
        stage_id,
        after,
        loss_reason_id: None,
    }
}

fn new_deal(p: &Pipeline, name: &str, price: i64) -> NewDeal {
    NewDeal {
        price,
        ..NewDeal::new(p.id, name)
    }
}

#[tokio::test]
async fn a_pipeline_has_the_system_stages_around_its_own() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let p = sales_pipeline(&app, caller).await;
    let kinds: Vec<StageKind> = p.stages.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            StageKind::Incoming,
            StageKind::Open,
            StageKind::Open,
            StageKind::Open,
            StageKind::Won,
            StageKind::Lost
        ]
    );
    assert_eq!(p.stages[4].id, WON);
    assert_eq!(p.stages[5].id, LOST);
    assert!(p.is_main);
    // A second pipeline has its own 142 and 143.
    let other = app
        .state
        .modules
        .deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Partners".into(),
                stages: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        other
            .stages
            .iter()
            .filter(|s| s.id == WON || s.id == LOST)
            .count(),
        2
    );

    // Reorder and delete a stage (its deals move first).
    let deals = &app.state.modules.deals;
    let open: Vec<StageId> = p
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .map(|s| s.id)
        .collect();
    let d = deals
        .create_deal(
            caller,
            NewDeal {
                stage_id: Some(open[2]),
                ..new_deal(&p, "Big one", 1000)
            },
        )
        .await
        .unwrap();
    let reordered = deals
        .reorder_stages(caller, p.id, vec![open[2], open[0], open[1]])
        .await
        .unwrap();
    assert_eq!(reordered.stages[1].id, open[2]);
    let bad = deals
        .reorder_stages(caller, p.id, vec![open[0]])
        .await
        .unwrap_err();
    assert_eq!(bad.code, ErrorCode::Validation);
    deals
        .delete_stage(caller, p.id, open[2], open[0])
        .await
        .unwrap();
    assert_eq!(deals.deal(caller, d.id).await.unwrap().stage_id, open[0]);
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    let col = board.iter().find(|c| c.stage.id == open[0]).unwrap();
    assert_eq!((col.totals.deals, col.totals.budget), (1, 1000));
    assert!(
        deals
            .delete_stage(caller, p.id, WON, open[0])
            .await
            .is_err(),
        "system stages stay"
    );
}

#[tokio::test]
async fn invalid_deals_are_refused_with_a_clear_message_and_change_nothing() {
    let app = spawn_app().await;
    let a = app.tenant("Alpha").await;
    let b = app.tenant("Beta").await;
    let ca = Caller::user(a.account, a.admin.id);
    let cb = Caller::user(b.account, b.admin.id);
    let deals = &app.state.modules.deals;
    let pa = sales_pipeline(&app, ca).await;
    let pa2 = deals
        .create_pipeline(
            ca,
            NewPipeline {
                name: "Second".into(),
                stages: stages(&["Other"]),
            },
        )
        .await
        .unwrap();
    let pb = sales_pipeline(&app, cb).await;
    let cases = [
        (new_deal(&pa, "  ", 10), "name"),
        (new_deal(&pa, "Negative", -1), "price"),
        (
            NewDeal {
                stage_id: Some(StageId(999_999)),
                ..new_deal(&pa, "Unknown stage", 1)
            },
            "stage_id",
        ),
        (
            NewDeal {
                stage_id: Some(pa2.stages[1].id),
                ..new_deal(&pa, "Other pipeline's stage", 1)
            },
            "stage_id",
        ),
        (
            NewDeal {
                stage_id: Some(pb.stages[1].id),
                ..new_deal(&pa, "Other account's stage", 1)
            },
            "stage_id",
        ),
        (
            NewDeal {
                pipeline_id: pb.id,
                ..new_deal(&pa, "Other account's pipeline", 1)
            },
            "pipeline_id",
        ),
        (
            NewDeal {
                responsible_user_id: Some(b.admin.id),
                ..new_deal(&pa, "Other account's user", 1)
            },
            "responsible_user_id",
        ),
    ];
    for (new, field) in cases {
        let name = new.name.clone();
        let err = deals.create_deal(ca, new).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation, "{name}: {err}");
        assert!(
            err.field(field).is_some(),
            "{name}: the error names {field}: {err}"
        );
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM deals.deals").await, 0);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_created'")
            .await,
        0
    );
    let bad_color = deals
        .create_pipeline(
            ca,
            NewPipeline {
                name: "X".into(),
                stages: vec![NewStage {
                    name: "S".into(),
                    color: "red".into(),
                }],
            },
        )
        .await;
    assert!(bad_color.unwrap_err().field("stages.0.color").is_some());
}

#[tokio::test]
async fn moves_keep_order_history_totals_and_events() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = sales_pipeline(&app, caller).await;
    let first = p.stages[1].id;
    let second = p.stages[2].id;
    let a = deals
        .create_deal(caller, new_deal(&p, "A", 100))
        .await
        .unwrap();
    let b = deals
        .create_deal(caller, new_deal(&p, "B", 200))
        .await
        .unwrap();
    let c = deals
        .create_deal(caller, new_deal(&p, "C", 300))
        .await
        .unwrap();
    let order = |cols: &[BoardColumn], stage: StageId| -> Vec<String> {
        cols.iter()
            .find(|c| c.stage.id == stage)
            .unwrap()
            .deals
            .items
            .iter()
            .map(|d| d.name.clone())
            .collect()
    };
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        order(&board, first),
        ["C", "B", "A"],
        "new deals go to the top"
    );
    // Within the column: A after C.
    deals
        .move_deal(
            caller,
            a.id,
            MoveTo {
                stage_id: first,
                after: Some(c.id),
                loss_reason_id: None,
            },
        )
        .await
        .unwrap();
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(order(&board, first), ["C", "A", "B"]);
    // To the next stage, then lost (a reason is required).
    deals
        .move_deal(
            caller,
            b.id,
            MoveTo {
                stage_id: second,
                after: None,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap();
    let err = deals
        .move_deal(
            caller,
            c.id,
            MoveTo {
                stage_id: LOST,
                after: None,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.field("loss_reason_id").is_some());
    let reason = deals
        .create_loss_reason(caller, "Too expensive")
        .await
        .unwrap();
    let lost = deals
        .move_deal(
            caller,
            c.id,
            MoveTo {
                stage_id: LOST,
                after: None,
                loss_reason_id: Some(reason.id),
            },
        )
        .await
        .unwrap();
    assert!(lost.closed_at.is_some());
    assert_eq!(lost.loss_reason_id, Some(reason.id));
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    let totals = |stage: StageId| board.iter().find(|c| c.stage.id == stage).unwrap().totals;
    assert_eq!(
        totals(first),
        Totals {
            deals: 1,
            budget: 100,
            capped: false,
        }
    );
    assert_eq!(
        totals(second),
        Totals {
            deals: 1,
            budget: 200,
            capped: false,
        }
    );
    assert_eq!(
        totals(LOST),
        Totals {
            deals: 1,
            budget: 300,
            capped: false,
        }
    );
    // A stage of another pipeline is refused.
    let other = deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Other".into(),
                stages: stages(&["X"]),
            },
        )
        .await
        .unwrap();
    let err = deals
        .move_deal(
            caller,
            a.id,
            MoveTo {
                stage_id: other.stages[1].id,
                after: None,
                loss_reason_id: None,
            },
        )
        .await;
    assert_eq!(err.unwrap_err().code, ErrorCode::Validation);
    // History: C entered the first stage, then lost; events in the outbox.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.stage_history WHERE deal_id = {}",
            c.id
        ))
        .await,
        2
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.stage_history WHERE deal_id = {} AND left_at IS NULL",
            c.id
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_stage_changed'"
        )
        .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_created'")
            .await,
        3
    );
}

/// The move to the top of a stage runs as one statement (the `deals.move_deal` function); its
/// effects are those of the checked move, which takes the rest (after a deal, lost, the same stage).
#[tokio::test]
async fn a_move_to_the_top_in_one_statement_has_the_checked_moves_effects() {
    let app = spawn_app().await;
    let (caller, p, first, second) = sales_setup(&app, "Acme").await;
    let account = caller.account_id;
    let admin = caller.actor.user_id().expect("a user");
    let cause = uuid::Uuid::now_v7();
    let robot = Caller::robot(account, 7, cause);
    let deals = &app.state.modules.deals;
    let mut made = Vec::new();
    for (name, price) in [("A", 100), ("B", 200)] {
        made.push(
            deals
                .create_deal(caller, new_deal(&p, name, price))
                .await
                .unwrap(),
        );
    }
    let (a, b) = (made[0].clone(), made[1].clone());
    // A by a robot to the top (one statement), B by the user right after it (checked).
    let moved = deals
        .move_deal(robot, a.id, move_to(second, None))
        .await
        .unwrap();
    assert_eq!((moved.stage_id, moved.closed_at), (second, None));
    deals
        .move_deal(caller, b.id, move_to(second, Some(a.id)))
        .await
        .unwrap();
    let board = board_of(&app, caller, &p).await;
    let column = |stage: StageId| board.iter().find(|c| c.stage.id == stage).unwrap();
    let names: Vec<&str> = column(second)
        .deals
        .items
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(
        (column(first).totals.deals, column(first).totals.budget),
        (0, 0)
    );
    assert_eq!(
        (column(second).totals.deals, column(second).totals.budget),
        (2, 300)
    );
    // Both events say the same things in the same shape; the robot's carries its cause.
    let event = |deal: DealId, what: &str| {
        let app = &app;
        let what = what.to_string();
        async move {
            app.text_row(&format!(
                "SELECT {what}::text AS v FROM deals.outbox
                  WHERE event_type = 'deals.deal_stage_changed' AND payload->>'deal_id' = '{}'",
                deal.0
            ))
            .await
        }
    };
    for (deal, by) in [(a.id, robot), (b.id, caller)] {
        let payload: serde_json::Value =
            serde_json::from_str(&event(deal, "payload").await).unwrap();
        let expected = deals_api::events::DealStageChanged {
            deal_id: deal,
            pipeline_id: p.id,
            from_stage_id: first,
            to_stage_id: second,
            loss_reason_id: None,
            from_pipeline_id: None,
        };
        assert_eq!(payload, serde_json::to_value(&expected).unwrap());
        let actor: serde_json::Value = serde_json::from_str(&event(deal, "actor").await).unwrap();
        assert_eq!(actor, serde_json::to_value(by.actor).unwrap());
    }
    assert_eq!(
        event(a.id, "causation_id").await,
        cause.to_string(),
        "the robot's move carries its cause"
    );
    // The stage history: A left the first stage and entered the second, both by the robot.
    let robot_actor = serde_json::to_value(robot.actor).unwrap();
    for sql in [
        format!(
            "SELECT left_by::text AS v FROM deals.stage_history WHERE deal_id = {} AND stage_id = {}",
            a.id.0, first.0
        ),
        format!(
            "SELECT entered_by::text AS v FROM deals.stage_history WHERE deal_id = {} AND left_at IS NULL",
            a.id.0
        ),
    ] {
        let by: serde_json::Value = serde_json::from_str(&app.text_row(&sql).await).unwrap();
        assert_eq!(by, robot_actor, "{sql}");
    }
    // Won at the top: closed now; again to the same stage (checked): nothing new, still closed.
    let won = deals
        .move_deal(caller, a.id, move_to(WON, None))
        .await
        .unwrap();
    let closed = won.closed_at.expect("a won deal is closed");
    let again = deals
        .move_deal(caller, a.id, move_to(WON, None))
        .await
        .unwrap();
    assert_eq!(again.closed_at, Some(closed));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_stage_changed' AND payload->>'deal_id' = '{}'",
            a.id.0
        ))
        .await,
        2
    );
    let board = board_of(&app, caller, &p).await;
    let totals = |stage: StageId| {
        let t = board.iter().find(|c| c.stage.id == stage).unwrap().totals;
        (t.deals, t.budget)
    };
    assert_eq!((totals(second), totals(WON)), ((1, 200), (1, 100)));
    // The statement itself declines (no row, nothing written) what the checked move must do or
    // refuse: lost (a reason), the stage it is in, another account's deal, a deal not the caller's.
    let events = "SELECT count(*) AS n FROM deals.outbox";
    let before = app.count(events).await;
    let other = app.tenant("Other").await;
    // B through the statement, as `account` moving it to `stage` with the rights `allowed`.
    let direct = |account: i64, stage: i64, allowed: String| {
        format!(
            "SELECT count(*) AS n FROM deals.move_deal({account}, {}, {stage}, {allowed}, 1048576, 0,
                    '{{}}'::jsonb, gen_random_uuid(), 'deals.deal_stage_changed', 1, now(), NULL)",
            b.id.0
        )
    };
    for (account, stage, allowed) in [
        (account.0, LOST.0, "NULL"),
        (account.0, second.0, "NULL"),
        (other.account.0, first.0, "NULL"),
        (account.0, first.0, "ARRAY[0]::bigint[]"),
    ] {
        let sql = direct(account, stage, allowed.to_string());
        assert_eq!(app.count(&sql).await, 0, "{sql}");
    }
    assert_eq!(app.count(events).await, before);
    let sql = direct(account.0, first.0, format!("ARRAY[{}]::bigint[]", admin.0));
    assert_eq!(
        app.count(&sql).await,
        1,
        "a move to the top of an open stage: {sql}"
    );
    deals
        .move_deal(caller, b.id, move_to(second, None))
        .await
        .unwrap();
    // Another account's caller finds no such deal, and nothing changes.
    let stranger = Caller::user(other.account, other.admin.id);
    let err = deals
        .move_deal(stranger, b.id, move_to(first, None))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(deals.deal(caller, b.id).await.unwrap().stage_id, second);
}

#[tokio::test]
async fn a_user_with_own_rights_neither_sees_nor_moves_others_deals_counts_and_sums_included() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = sales_pipeline(&app, admin).await;
    let m = app.member(&t, "maria@acme.test").await;
    app.limit_to_own_deals(admin, m.id).await;
    let maria = Caller::user(t.account, m.id);
    let admins = deals
        .create_deal(admin, new_deal(&p, "Admin's", 1000))
        .await
        .unwrap();
    let hers = deals
        .create_deal(maria, new_deal(&p, "Maria's", 10))
        .await
        .unwrap();
    let stage = p.stages[1].id;

    let board = deals
        .board(maria, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    let col = board.iter().find(|c| c.stage.id == stage).unwrap();
    assert_eq!(
        col.totals,
        Totals {
            deals: 1,
            budget: 10,
            capped: false,
        },
        "her counts and sums only"
    );
    assert_eq!(
        col.deals.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![hers.id]
    );
    assert_eq!(
        deals.deal(maria, admins.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let err = deals
        .move_deal(
            maria,
            admins.id,
            MoveTo {
                stage_id: p.stages[2].id,
                after: None,
                loss_reason_id: None,
            },
        )
        .await;
    assert_eq!(err.unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(
        deals.deal(admin, admins.id).await.unwrap().stage_id,
        stage,
        "unchanged"
    );
    let board = deals
        .board(admin, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        board.iter().find(|c| c.stage.id == stage).unwrap().totals,
        Totals {
            deals: 2,
            budget: 1010,
            capped: false,
        }
    );
    // Someone with no right to view deals gets 403.
    let mut none = Rights::member();
    none.entity_mut(Entity::Deals)
        .set(Action::View, Level::None);
    app.state
        .modules
        .accounts
        .update_user(
            admin,
            m.id,
            UserPatch {
                rights: Some(none),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        deals
            .board(maria, p.id, &DealFilter::default(), PageRequest::default())
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_moves_of_one_deal_end_in_one_consistent_state() {
    let app = spawn_app_with_pool(8).await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let deals = app.state.modules.deals.clone();
    let p = sales_pipeline(&app, caller).await;
    let d = deals
        .create_deal(caller, new_deal(&p, "Contested", 500))
        .await
        .unwrap();
    let targets: Vec<StageId> = p
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .map(|s| s.id)
        .collect();
    let mut handles = Vec::new();
    for i in 0..12 {
        let deals = deals.clone();
        let stage = targets[i % targets.len()];
        handles.push(tokio::spawn(async move {
            deals
                .move_deal(
                    caller,
                    d.id,
                    MoveTo {
                        stage_id: stage,
                        after: None,
                        loss_reason_id: None,
                    },
                )
                .await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let now = deals.deal(caller, d.id).await.unwrap();
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    let total: i64 = board.iter().map(|c| c.totals.deals).sum();
    assert_eq!(total, 1, "the deal is counted once");
    let col = board.iter().find(|c| c.stage.id == now.stage_id).unwrap();
    assert_eq!(
        col.totals,
        Totals {
            deals: 1,
            budget: 500,
            capped: false,
        },
        "in the column it ended in"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.stage_history WHERE deal_id = {} AND left_at IS NULL",
            d.id
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!("SELECT count(*) AS n FROM deals.stage_history WHERE deal_id = {} AND left_at IS NULL AND stage_id = {}", d.id, now.stage_id)).await,
        1
    );
}

/// Deals of one responsible user and one totals shard moved between two columns in opposite
/// directions at once, at the top (one statement) and after a card (checked): both kinds write
/// the two columns' totals rows in the same order, so they never deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_moves_between_two_columns_never_deadlock() {
    let app = spawn_app_with_pool(8).await;
    let (caller, p, first, second) = sales_setup(&app, "Crossing").await;
    let deals = app.state.modules.deals.clone();
    // Two deals whose ids share a shard (id mod 16), one in each column, and a card in each
    // column to place moved deals after.
    let mut made = Vec::new();
    for i in 0..40 {
        made.push(
            deals
                .create_deal(caller, new_deal(&p, &format!("D{i}"), 10))
                .await
                .unwrap(),
        );
    }
    let shard = made[0].id.0 % 16;
    let same: Vec<DealId> = made
        .iter()
        .filter(|d| d.id.0 % 16 == shard)
        .map(|d| d.id)
        .collect();
    assert!(same.len() >= 2);
    let anchors = [made[1].id, made[2].id];
    deals
        .move_deal(caller, anchors[1], move_to(second, None))
        .await
        .unwrap();
    let (x, y) = (same[0], same[1]);
    deals
        .move_deal(caller, y, move_to(second, None))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for (deal, from, to, anchor_from, anchor_to) in [
        (x, first, second, anchors[0], anchors[1]),
        (y, second, first, anchors[1], anchors[0]),
    ] {
        let deals = deals.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..60 {
                let after = |a: DealId| (i % 2 == 1).then_some(a);
                for (stage, anchor) in [(to, anchor_to), (from, anchor_from)] {
                    deals
                        .move_deal(caller, deal, move_to(stage, after(anchor)))
                        .await?;
                }
            }
            Ok::<_, kernel::AppError>(())
        }));
    }
    for h in handles {
        h.await.unwrap().expect("no move fails");
    }
    let board = board_of(&app, caller, &p).await;
    let totals = |stage: StageId| {
        board
            .iter()
            .find(|c| c.stage.id == stage)
            .unwrap()
            .totals
            .deals
    };
    assert_eq!(totals(first) + totals(second), 40);
    assert_eq!(totals(second), 2, "each deal ended where it started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_of_both_kinds_are_all_counted_and_never_deadlock() {
    let app = spawn_app_with_pool(12).await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let deals = app.state.modules.deals.clone();
    let p = sales_pipeline(&app, caller).await;
    let stage = p.stages[1].id;
    // Batches of the one-statement kind run side by side; those done deal by deal (here: with
    // tags) run alone. Both write the same column's shard rows.
    let mut handles = Vec::new();
    for b in 0..10 {
        let deals = deals.clone();
        let news: Vec<NewDeal> = (0..20)
            .map(|i| NewDeal {
                stage_id: Some(stage),
                tags: if b % 3 == 0 {
                    vec!["bulk".into()]
                } else {
                    Vec::new()
                },
                ..new_deal(&p, &format!("Batch {b} deal {i}"), 10)
            })
            .collect();
        handles.push(tokio::spawn(async move {
            deals.create_deals(caller, news).await
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().len(), 20);
    }
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    let col = board.iter().find(|c| c.stage.id == stage).unwrap();
    assert_eq!((col.totals.deals, col.totals.budget), (200, 2000));
}

async fn spawn_app_with_pool(size: usize) -> TestApp {
    crate::support::spawn_app_with(|c| c.db.pool_size = size).await
}

#[tokio::test]
async fn updates_deletes_and_restores_keep_totals_exact_and_publish_events() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = sales_pipeline(&app, caller).await;
    let stage = p.stages[1].id;
    let m = app.member(&t, "maria@acme.test").await;
    let d = deals
        .create_deal(caller, new_deal(&p, "Original", 100))
        .await
        .unwrap();
    let totals = |board: &[BoardColumn]| board.iter().find(|c| c.stage.id == stage).unwrap().totals;

    let err = deals
        .update_deal(
            caller,
            d.id,
            DealPatch {
                price: Some(-5),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.field("price").is_some());
    let err = deals
        .update_deal(
            caller,
            d.id,
            DealPatch {
                name: Some(" ".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.field("name").is_some());
    let updated = deals
        .update_deal(
            caller,
            d.id,
            DealPatch {
                name: Some("Renamed".into()),
                price: Some(250),
                responsible_user_id: Some(m.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.price,
            updated.responsible_user_id
        ),
        ("Renamed", 250, m.id)
    );
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        totals(&board),
        Totals {
            deals: 1,
            budget: 250,
            capped: false,
        }
    );
    let hers = format!(
        "SELECT coalesce(sum(deals), 0)::bigint AS n FROM deals.stage_totals WHERE responsible_user_id = {}",
        m.id
    );
    assert_eq!(
        app.count(&hers).await,
        1,
        "the deal now counts for its new responsible user"
    );

    deals.delete_deal(caller, d.id).await.unwrap();
    assert_eq!(
        deals.deal(caller, d.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(totals(&board), Totals::default());
    assert!(board.iter().all(|c| c.deals.items.is_empty()));
    assert_eq!(
        deals.delete_deal(caller, d.id).await.unwrap_err().code,
        ErrorCode::NotFound,
        "deleted once"
    );
    let back = deals.restore_deal(caller, d.id).await.unwrap();
    assert_eq!(back.price, 250);
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        totals(&board),
        Totals {
            deals: 1,
            budget: 250,
            capped: false,
        }
    );
    for event in [
        "deal_updated",
        "deal_responsible_changed",
        "deal_deleted",
        "deal_restored",
    ] {
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.{event}'"
            ))
            .await,
            1,
            "{event}"
        );
    }
}

#[tokio::test]
async fn the_board_page_shows_columns_pages_cards_and_quick_adds() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = sales_pipeline(&app, caller).await;
    let stage = p.stages[1].id;
    for i in 0..30 {
        deals
            .create_deal(caller, new_deal(&p, &format!("Deal {i:02}"), 1000))
            .await
            .unwrap();
    }
    let c = app.signed_in(&t.admin.email).await;
    let res = c.get("/deals").await;
    assert_eq!(
        crate::support::location(&res),
        format!("/deals/pipelines/{}", p.id)
    );
    let (status, html) = c.text(&format!("/deals/pipelines/{}", p.id)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(
        html.contains("Deal 29") && !html.contains("Deal 00"),
        "the newest 25 first"
    );
    assert!(html.contains("30 · 30\u{a0}000.00\u{a0}₽"), "exact totals");
    // The column's "more" link (the header's bell polls too).
    let more = html
        .split("hx-get=\"")
        .find(|s| s.starts_with("/deals/pipelines/"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, fragment) = c.text(&more).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(
        fragment.contains("Deal 00") && !fragment.contains("<html"),
        "{fragment}"
    );

    let board = format!("/deals/pipelines/{}", p.id);
    let action = format!("{board}/deals");
    let sid = stage.to_string();
    let res = c
        .submit(
            &board,
            &action,
            &[("name", "Quick one"), ("price", "500"), ("stage_id", &sid)],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let res = c
        .submit(
            &board,
            &action,
            &[("name", ""), ("price", "abc"), ("stage_id", &sid)],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(app.count("SELECT count(*) AS n FROM deals.deals").await, 31);
    // Another account's pipeline is not there.
    let other = app.tenant("Other").await;
    let theirs = sales_pipeline(&app, Caller::user(other.account, other.admin.id)).await;
    assert_eq!(
        c.get(&format!("/deals/pipelines/{}", theirs.id))
            .await
            .status(),
        reqwest::StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_batch_is_created_in_one_statement_or_checked_deal_by_deal() {
    let app = spawn_app().await;
    let (caller, p, first, second) = sales_setup(&app, "Batch").await;
    let deals = &app.state.modules.deals;
    let top = deals
        .create_deal(caller, new_deal(&p, "Already there", 5))
        .await
        .unwrap();
    // Three plain deals: two into the first open stage, one into the second.
    let created = deals
        .create_deals(
            caller,
            vec![
                new_deal(&p, " A ", 100),
                NewDeal {
                    stage_id: Some(second),
                    ..new_deal(&p, "B", 200)
                },
                new_deal(&p, "C", 300),
            ],
        )
        .await
        .unwrap();
    let names: Vec<&str> = created.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["A", "B", "C"], "in the order given, names trimmed");
    assert_eq!(
        created.iter().map(|d| d.stage_id).collect::<Vec<_>>(),
        [first, second, first]
    );
    assert!(created[0].id.0 < created[1].id.0 && created[1].id.0 < created[2].id.0);
    // The column reads C, A, then the deal that was there (as if created one by one).
    let board = deals
        .board(caller, p.id, &DealFilter::default(), PageRequest::default())
        .await
        .unwrap();
    let col = board.iter().find(|c| c.stage.id == first).unwrap();
    let order: Vec<DealId> = col.deals.items.iter().map(|d| d.id).collect();
    assert_eq!(order, [created[2].id, created[0].id, top.id]);
    assert_eq!((col.totals.deals, col.totals.budget), (3, 405));
    let col2 = board.iter().find(|c| c.stage.id == second).unwrap();
    assert_eq!((col2.totals.deals, col2.totals.budget), (1, 200));
    // Each has its stage history and its DealCreated event with its id and stage.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.stage_history WHERE deal_id IN ({}, {}, {})",
            created[0].id.0, created[1].id.0, created[2].id.0
        ))
        .await,
        3
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_created'
              AND (payload->>'deal_id')::bigint = {} AND (payload->>'stage_id')::bigint = {}",
            created[1].id.0, second.0
        ))
        .await,
        1
    );

    // A stage that requires a field sends the batch down the checked path: the error names
    // the field, and nothing of the batch is written.
    deals
        .create_custom_field(
            caller,
            NewCustomField {
                group_id: None,
                name: "Contract".into(),
                field_type: kernel::fields::FieldType::Text,
                enums: vec![],
                required_statuses: vec![RequiredAt {
                    pipeline_id: p.id,
                    status_id: second,
                }],
            },
        )
        .await
        .unwrap();
    let before = app.count("SELECT count(*) AS n FROM deals.deals").await;
    let err = deals
        .create_deals(
            caller,
            vec![
                new_deal(&p, "D", 1),
                NewDeal {
                    stage_id: Some(second),
                    ..new_deal(&p, "E", 1)
                },
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Validation);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.deals").await,
        before
    );
    // A bad name in a plain batch: refused, nothing written.
    let err = deals
        .create_deals(caller, vec![new_deal(&p, "F", 1), new_deal(&p, "  ", 1)])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Validation);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.deals").await,
        before
    );
    // With tags, deal by deal.
    let tagged = deals
        .create_deals(
            caller,
            vec![NewDeal {
                tags: vec!["vip".into()],
                ..new_deal(&p, "G", 1)
            }],
        )
        .await
        .unwrap();
    assert_eq!(tagged[0].tags[0].name, "vip");
}

/// The relay's one statement over several outboxes: each outbox's unpublished events, oldest
/// first and at most the limit from each, under its own schema (an empty outbox gives an empty
/// batch); one statement then marks all of them published, and only them.
#[tokio::test]
async fn one_claim_takes_from_every_outbox_and_one_update_marks_them_published() {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    let app = spawn_app().await;
    app.sql("DELETE FROM deals.outbox; DELETE FROM contacts.outbox; DELETE FROM activities.outbox")
        .await;
    for (schema, n) in [("deals", 5), ("contacts", 3)] {
        app.sql(&format!(
            "INSERT INTO {schema}.outbox (id, account_id, event_type, version, actor, occurred_at, payload)
             SELECT gen_random_uuid(), 1, '{schema}.test', 1, '{{\"kind\": \"system\"}}', now(),
                    jsonb_build_object('n', i)
               FROM generate_series(1, {n}) i"
        ))
        .await;
    }
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let schemas = ["contacts", "activities", "deals"];
    let claimed = conn
        .transaction::<_, kernel::AppError, _>(async |tx| {
            let claimed = kernel::outbox::claim_many(tx, &schemas, 4).await?;
            let marks: Vec<(&str, &[i64])> = schemas
                .iter()
                .zip(&claimed)
                .map(|(s, c)| (*s, c.seqs.as_slice()))
                .collect();
            kernel::outbox::mark_published_many(tx, &marks).await?;
            Ok(claimed)
        })
        .await
        .unwrap();
    let numbers = |i: usize| -> Vec<i64> {
        claimed[i]
            .events
            .iter()
            .map(|e| e.payload["n"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(numbers(0), vec![1, 2, 3]);
    assert!(claimed[1].events.is_empty() && claimed[1].seqs.is_empty());
    assert_eq!(
        numbers(2),
        vec![1, 2, 3, 4],
        "the limit applies to each outbox"
    );
    assert!(
        claimed[0]
            .events
            .iter()
            .all(|e| e.event_type == "contacts.test")
    );
    assert!(
        claimed[2]
            .events
            .iter()
            .all(|e| e.event_type == "deals.test")
    );
    let mut seqs = claimed[2].seqs.clone();
    seqs.sort();
    assert_eq!(seqs, claimed[2].seqs, "oldest first");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.outbox WHERE published_at IS NULL")
            .await,
        0
    );
    // The fifth deals event was not claimed: it stays to be published next time.
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.outbox WHERE published_at IS NULL")
            .await,
        1
    );
    let next = conn
        .transaction::<_, kernel::AppError, _>(async |tx| {
            kernel::outbox::claim_many(tx, &schemas, 4).await
        })
        .await
        .unwrap();
    assert_eq!(next[2].events.len(), 1);
    assert_eq!(next[2].events[0].payload["n"], 5);
    assert!(next[0].events.is_empty());
}

/// Events published more than a week ago are pruned from the outbox, oldest first and a batch at
/// a time; an old event that was never published, and a recent one, stay.
#[tokio::test]
async fn the_outbox_keeps_a_week_of_published_events_and_everything_unpublished() {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    let app = spawn_app().await;
    app.sql("DELETE FROM deals.outbox").await;
    // 12,000 events published eight days ago: more than two of prune's batches.
    app.sql(
        "INSERT INTO deals.outbox (id, account_id, event_type, version, actor, occurred_at, payload, published_at)
         SELECT gen_random_uuid(), 1, 'deals.deal_created', 1, '{\"kind\": \"system\"}', now() - interval '8 days',
                '{}', now() - interval '8 days'
           FROM generate_series(1, 12000)",
    )
    .await;
    // The third never published; one in the second batch published yesterday.
    app.sql(
        "UPDATE deals.outbox SET published_at = NULL
          WHERE seq = (SELECT seq FROM deals.outbox ORDER BY seq OFFSET 2 LIMIT 1);
         UPDATE deals.outbox SET published_at = now() - interval '1 day'
          WHERE seq = (SELECT seq FROM deals.outbox ORDER BY seq OFFSET 6000 LIMIT 1)",
    )
    .await;
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let removed = kernel::outbox::prune(&mut conn, "deals", 7).await.unwrap();
    assert_eq!(removed, 11_998);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.outbox WHERE published_at IS NULL")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM deals.outbox WHERE published_at > now() - interval '2 days'"
        )
        .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM deals.outbox").await, 2);
    // Nothing more to prune: the next pass removes nothing.
    assert_eq!(
        kernel::outbox::prune(&mut conn, "deals", 7).await.unwrap(),
        0
    );
}

/// The deal page's Contacts panel: a contact is found by name or phone, linked (the first one
/// becomes the main contact), no longer offered, and unlinked (the next one becomes main); a
/// company is found and linked the same way; another account's contact cannot be linked; the
/// deal form's saves leave the links as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_found_linked_and_unlinked_from_the_deal_page() {
    use contacts_api::NewContact;
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let p = sales_pipeline(&app, caller).await;
    let first = p.stages[1].id;
    let deals = &app.state.modules.deals;
    let contacts = &app.state.modules.contacts;
    let deal = deals
        .create_deal(
            caller,
            NewDeal {
                stage_id: Some(first),
                ..new_deal(&p, "Order", 100)
            },
        )
        .await
        .unwrap();
    let person = async |first_name: &str, phone: &str| {
        contacts
            .create_contact(
                caller,
                NewContact {
                    first_name: first_name.into(),
                    last_name: "Petrova".into(),
                    phones: vec![contacts_api::Reach::work(phone)],
                    ..NewContact::default()
                },
            )
            .await
            .unwrap()
            .id
            .0
    };
    let maria = person("Maria", "+7 900 111-22-33").await;
    let olga = person("Olga", "+7 900 444-55-66").await;
    let firm = northwind(&app, caller).await;
    let stranger = strangers_contact(&app).await;

    let admin = app.signed_in(&t.admin.email).await;
    let page = format!("/deals/{}", deal.id.0);
    let (status, html) = admin.text(&format!("{page}?contact_q=Petrova")).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(
        html.contains("Maria Petrova") && html.contains("Olga Petrova"),
        "{html}"
    );
    let link = async |entity: &str, id: i64| {
        admin
            .submit(
                &page,
                &format!("{page}/links"),
                &[("entity", entity), ("id", &id.to_string())],
            )
            .await
            .status()
    };
    let links = async || {
        let d = deals.deal(caller, deal.id).await.unwrap();
        (d.contact_ids, d.main_contact_id, d.company_ids)
    };
    assert_eq!(link("contact", maria).await, reqwest::StatusCode::SEE_OTHER);
    assert_eq!(links().await, (vec![maria], Some(maria), vec![]));
    // Found by a part of the phone; Maria, linked now, is not offered again.
    let (_, html) = admin.text(&format!("{page}?contact_q=444-55")).await;
    assert!(html.contains("Olga Petrova"), "{html}");
    let (_, html) = admin.text(&format!("{page}?contact_q=Maria")).await;
    assert!(!html.contains("data-test=\"link\""), "{html}");
    assert_eq!(link("contact", olga).await, reqwest::StatusCode::SEE_OTHER);
    let (_, html) = admin.text(&format!("{page}?contact_q=Northwind")).await;
    assert!(html.contains("Northwind Trading"), "{html}");
    assert_eq!(link("company", firm).await, reqwest::StatusCode::SEE_OTHER);
    assert_eq!(links().await, (vec![maria, olga], Some(maria), vec![firm]));

    // Another account's contact, or something else than a contact or company: refused, and
    // nothing changes.
    assert_eq!(
        link("contact", stranger).await,
        reqwest::StatusCode::NOT_FOUND
    );
    assert_eq!(link("pipeline", firm).await, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(links().await, (vec![maria, olga], Some(maria), vec![firm]));

    // Saving the deal's form (it has no link fields) keeps the links.
    let res = admin
        .submit(&page, &page, &[("name", "Order 2"), ("price", "200")])
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(links().await, (vec![maria, olga], Some(maria), vec![firm]));

    // Unlinking the main contact makes the next one main; a company goes the same way.
    let unlink = async |entity: &str, id: i64| {
        admin
            .submit(&page, &format!("{page}/links/{entity}/{id}/unlink"), &[])
            .await
            .status()
    };
    assert_eq!(
        unlink("contact", maria).await,
        reqwest::StatusCode::SEE_OTHER
    );
    assert_eq!(
        unlink("company", firm).await,
        reqwest::StatusCode::SEE_OTHER
    );
    assert_eq!(links().await, (vec![olga], Some(olga), vec![]));
    let (_, html) = admin.text(&page).await;
    assert!(
        html.contains("Olga Petrova") && !html.contains("Maria Petrova"),
        "{html}"
    );
}

/// A deal made from a contact's page is linked to the contact (as its main contact) and opened;
/// from a company's page, to the company; a nameless one is refused and nothing is made; a
/// contact of another account gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_is_made_from_a_contacts_or_a_companys_page_and_linked_to_it() {
    use contacts_api::NewContact;
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let p = sales_pipeline(&app, caller).await;
    let deals = &app.state.modules.deals;
    let contacts = &app.state.modules.contacts;
    let maria = contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Maria".into(),
                ..NewContact::default()
            },
        )
        .await
        .unwrap()
        .id
        .0;
    let firm = northwind(&app, caller).await;
    let admin = app.signed_in(&t.admin.email).await;
    let pipeline = p.id.0.to_string();
    let make = async |page: &str, name: &str| {
        admin
            .submit(
                page,
                &format!("{page}/deals"),
                &[("name", name), ("pipeline", &pipeline)],
            )
            .await
    };
    let opened = |res: &reqwest::Response| -> DealId {
        assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
        let to = res.headers()["location"].to_str().unwrap();
        let id = to.trim_start_matches("/deals/").split(['?', '#']).next();
        DealId(
            id.unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("opened {to}")),
        )
    };

    let (status, html) = admin.text(&format!("/contacts/{maria}")).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("data-test=\"new-deal\""), "{html}");
    let id = opened(&make(&format!("/contacts/{maria}"), "Maria's order").await);
    let d = deals.deal(caller, id).await.unwrap();
    assert_eq!(d.name, "Maria's order");
    assert_eq!(
        (d.contact_ids, d.main_contact_id),
        (vec![maria], Some(maria))
    );
    // In the first stage after the incoming leads, as a deal made by hand.
    assert_eq!((d.pipeline_id, d.stage_id), (p.id, p.stages[1].id));
    let (_, html) = admin.text(&format!("/contacts/{maria}")).await;
    assert!(
        html.contains(&format!("href=\"/deals/{}\"", id.0)),
        "{html}"
    );

    let id = opened(&make(&format!("/companies/{firm}"), "Northwind supply").await);
    let d = deals.deal(caller, id).await.unwrap();
    assert_eq!((d.company_ids, d.contact_ids), (vec![firm], vec![]));

    // No name: refused with the form's error, and no deal is made.
    let count = async || {
        deals
            .list(
                caller,
                &DealFilter::default(),
                ListSort::Id,
                false,
                PageRequest::new(None, Some(50)),
            )
            .await
            .unwrap()
            .items
            .len()
    };
    let before = count().await;
    let res = make(&format!("/contacts/{maria}"), "  ").await;
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(count().await, before);

    // Another account's contact: not found, nothing made.
    let stranger = strangers_contact(&app).await;
    let res = make(&format!("/contacts/{stranger}"), "Stolen").await;
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(count().await, before);
}

/// A contact of another account ("Other").
async fn strangers_contact(app: &TestApp) -> i64 {
    let other = app.tenant("Other").await;
    app.state
        .modules
        .contacts
        .create_contact(
            Caller::user(other.account, other.admin.id),
            contacts_api::NewContact {
                first_name: "Stranger".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
        .0
}

/// A company, "Northwind Trading", of the caller's account.
async fn northwind(app: &TestApp, caller: Caller) -> i64 {
    app.state
        .modules
        .contacts
        .create_company(
            caller,
            contacts_api::NewCompany {
                name: "Northwind Trading".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
        .0
}
