//! Analytics: a scripted history of deals with known times gives exactly the expected figures;
//! replayed events change nothing; a rebuild from the deals module's history gives the live
//! figures; rights limit what a user sees; the pages, CSV and bad input.

use analytics_api::{Bucket, ReportFilter};
use chrono::{DateTime, TimeZone, Utc};
use deals_api::events::{DealCreated, DealStageChanged};
use deals_api::{
    DealId, LossReasonId, MoveTo, NewDeal, NewPipeline, NewStage, Pipeline, PipelineId, StageId,
    StageKind,
};
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::inbox::{Outcome, handle_batch};
use kernel::{Caller, UserId};
use reqwest::StatusCode;

use crate::support::{TestApp, spawn_app};

fn t(day: u32, hour: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, hour, min, 0).unwrap()
}

fn event<E: DomainEvent>(caller: Caller, at: DateTime<Utc>, e: &E) -> EventEnvelope {
    let mut env = EventEnvelope::new(caller, e).unwrap();
    env.occurred_at = at;
    env
}

async fn pipeline(app: &TestApp, caller: Caller) -> Pipeline {
    let stage = |name: &str| NewStage {
        name: name.into(),
        color: "#99ccff".into(),
    };
    app.state
        .modules
        .deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Sales".into(),
                stages: vec![stage("Qualified"), stage("Offer"), stage("Contract")],
            },
        )
        .await
        .unwrap()
}

fn open_stages(p: &Pipeline) -> Vec<StageId> {
    let mut open: Vec<_> = p
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .collect();
    open.sort_by_key(|s| s.sort);
    open.iter().map(|s| s.id).collect()
}

fn january(pipeline: PipelineId) -> ReportFilter {
    ReportFilter {
        pipeline_id: Some(pipeline.0),
        from: Some(t(1, 0, 0)),
        to: Some(Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()),
        ..Default::default()
    }
}

const DAY: i64 = 86_400;

#[tokio::test]
async fn a_scripted_history_gives_exactly_the_expected_figures() {
    let app = spawn_app().await;
    let tn = app.tenant("Funnel Co").await;
    let admin = Caller::user(tn.account, tn.admin.id);
    let u1 = tn.admin.id;
    let u2 = app.member(&tn, "second@funnel.test").await.id;
    let p = pipeline(&app, admin).await;
    let [a, b, c] = open_stages(&p)[..] else {
        panic!("three open stages")
    };
    let (won, lost) = (deals_api::WON, deals_api::LOST);
    let reason = app
        .state
        .modules
        .deals
        .create_loss_reason(admin, "Too expensive")
        .await
        .unwrap();
    let created = |id: i64, price: i64, user: UserId, at| {
        event(
            admin,
            at,
            &DealCreated {
                deal_id: DealId(id),
                name: format!("Deal {id}"),
                price,
                pipeline_id: p.id,
                stage_id: a,
                responsible_user_id: user,
                tag_ids: vec![],
                contact_ids: None,
            },
        )
    };
    let moved = |id: i64, from: StageId, to: StageId, at, why: Option<LossReasonId>| {
        event(
            admin,
            at,
            &DealStageChanged {
                deal_id: DealId(id),
                pipeline_id: p.id,
                from_stage_id: from,
                to_stage_id: to,
                loss_reason_id: why,
                from_pipeline_id: None,
            },
        )
    };
    // D1 A 1d → B 2d → C 1d → won; D2 A 2d → B 3d → lost; D3 A 4d → B (open); D4 stays in A;
    // D5 A 7d → won; D6 is created in February (outside the period) and won.
    let mut events = vec![
        created(1, 100, u1, t(1, 10, 0)),
        created(2, 200, u1, t(1, 10, 0)),
        created(3, 300, u1, t(2, 10, 0)),
        created(4, 400, u2, t(3, 10, 0)),
        created(5, 500, u2, t(3, 10, 0)),
        moved(1, a, b, t(2, 10, 0), None),
        moved(2, a, b, t(3, 10, 0), None),
        moved(1, b, c, t(4, 10, 0), None),
        moved(1, c, won, t(5, 10, 0), None),
        moved(2, b, lost, t(6, 10, 0), Some(reason.id)),
        moved(3, a, b, t(6, 10, 0), None),
        moved(5, a, won, t(10, 10, 0), None),
    ];
    let feb = |d| Utc.with_ymd_and_hms(2026, 2, d, 10, 0, 0).unwrap();
    events.push(created(6, 600, u1, feb(1)));
    events.push(moved(6, a, won, feb(2), None));
    // Activity: a client writes twice, the manager answers 30 minutes after the first message, a
    // robot's message does not count as an answer; the second manager completes a task.
    let received = |id: i64, at| {
        event(
            admin,
            at,
            &messaging_api::events::MessageReceived {
                message_id: id,
                conversation_id: 9,
                deal_id: Some(1),
                contact_id: None,
                text: "hello".into(),
                channel: "telegram".into(),
            },
        )
    };
    let sent = |id: i64, author: Option<i64>, at| {
        event(
            admin,
            at,
            &messaging_api::events::MessageSent {
                message_id: id,
                conversation_id: 9,
                deal_id: Some(1),
                contact_id: None,
                text: "hi".into(),
                channel: "telegram".into(),
                author_user_id: author,
            },
        )
    };
    events.push(received(1, t(7, 10, 0)));
    events.push(sent(2, None, t(7, 10, 1)));
    events.push(received(3, t(7, 10, 5)));
    events.push(sent(4, Some(u1.0), t(7, 10, 30)));
    events.push(event(
        Caller::user(tn.account, u2),
        t(7, 12, 0),
        &activities_api::events::TaskCompleted {
            task_id: activities_api::TaskId(77),
            entity: Some(activities_api::EntityRef::deal(4)),
            text: "Call".into(),
            result: "done".into(),
        },
    ));

    let mut conn = app.state.pool.get().await.unwrap();
    let outcomes = handle_batch(&mut conn, &analytics::Projector, &events)
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Handled));

    let an = &app.state.modules.analytics;
    let f = january(p.id);
    let check = async || {
        let funnel = an.funnel(admin, &f).await.unwrap();
        assert_eq!((funnel.deals, funnel.won, funnel.lost), (5, 2, 1));
        assert_eq!(funnel.conversion, Some(40.0));
        let names: Vec<&str> = funnel
            .stages
            .iter()
            .map(|s| s.stage.name.as_str())
            .collect();
        assert_eq!(names[1..4], ["Qualified", "Offer", "Contract"]);
        assert_eq!(funnel.stages.last().unwrap().stage.kind, "won");
        let reached: Vec<i64> = funnel.stages.iter().map(|s| s.reached).collect();
        assert_eq!(reached, vec![5, 5, 4, 2, 2]);
        let dropped: Vec<i64> = funnel.stages.iter().map(|s| s.dropped).collect();
        assert_eq!(dropped, vec![0, 1, 2, 0, 0]);
        let now_here: Vec<i64> = funnel.stages.iter().map(|s| s.now_here).collect();
        assert_eq!(now_here, vec![0, 1, 1, 0, 2]);
        assert_eq!(funnel.budget, 1500);
        let from_previous: Vec<Option<f64>> =
            funnel.stages.iter().map(|s| s.from_previous).collect();
        assert_eq!(
            from_previous,
            vec![
                Some(100.0),
                Some(100.0),
                Some(80.0),
                Some(50.0),
                Some(100.0)
            ]
        );
        assert_eq!(funnel.stages[2].budget, 100 + 200 + 300 + 500);

        let wl = an.win_loss(admin, &f).await.unwrap();
        assert_eq!(
            (wl.won, wl.won_budget, wl.lost, wl.lost_budget),
            (2, 600, 1, 200)
        );
        assert!((wl.win_rate.unwrap() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(wl.reasons.len(), 1);
        assert_eq!(wl.reasons[0].name, "Too expensive");

        let times = an.time_in_stage(admin, &f).await.unwrap();
        let of = |id: StageId| {
            times
                .stages
                .iter()
                .find(|s| s.stage.id == id.0)
                .unwrap()
                .clone()
        };
        // A: 1, 2, 4, 7 days; B: 2, 3 days; C: 1 day.
        assert_eq!(of(a).stays, 4);
        assert_eq!(of(a).median_secs, Some(3 * DAY));
        assert_eq!(of(a).p90_secs, Some((6.1 * DAY as f64).round() as i64));
        assert_eq!(of(b).median_secs, Some(DAY * 5 / 2));
        assert_eq!(of(b).p90_secs, Some((2.9 * DAY as f64).round() as i64));
        assert_eq!((of(c).median_secs, of(c).p90_secs), (Some(DAY), Some(DAY)));
        assert_eq!((of(a).open_now, of(b).open_now, of(c).open_now), (1, 1, 0));
        let slowest: Vec<i64> = times.slowest.iter().map(|d| d.deal_id).collect();
        assert_eq!(slowest, vec![4, 3]);

        // Forecast: of closed deals ever in A, 3 of 4 won (D1, D5, D6; D2 lost); in B 1 of 2.
        let trend = an.trend(admin, &f, Bucket::Month).await.unwrap();
        assert_eq!(trend.points.len(), 1);
        let jan = &trend.points[0];
        assert_eq!(
            (
                jan.created,
                jan.created_budget,
                jan.won,
                jan.won_budget,
                jan.lost
            ),
            (5, 1500, 2, 600, 1)
        );
        let rate = |id: StageId| {
            trend
                .forecast
                .iter()
                .find(|r| r.stage.id == id.0)
                .unwrap()
                .clone()
        };
        assert_eq!(rate(a).win_rate, Some(75.0));
        assert_eq!((rate(a).open_budget, rate(a).weighted), (400, 300));
        assert_eq!(rate(b).win_rate, Some(50.0));
        assert_eq!((rate(b).open_budget, rate(b).weighted), (300, 150));
        assert_eq!(trend.forecast_total, 450);
        let by_day = an.trend(admin, &f, Bucket::Day).await.unwrap();
        assert_eq!(by_day.points.len(), 31);
        assert_eq!(by_day.points[2].created, 2);

        let managers = an.managers(admin, &f).await.unwrap();
        let m = |u: UserId| managers.iter().find(|r| r.user_id == u.0).unwrap().clone();
        assert_eq!(
            (m(u1).created, m(u1).won, m(u1).lost, m(u1).budget_won),
            (3, 1, 1, 100)
        );
        assert_eq!(
            (
                m(u2).created,
                m(u2).won,
                m(u2).budget_won,
                m(u2).tasks_completed
            ),
            (2, 1, 500, 1)
        );
        assert_eq!(
            (m(u1).messages_sent, m(u1).avg_response_secs),
            (1, Some(30 * 60))
        );
        assert_eq!(managers[0].user_id, u2.0, "most budget won first");

        let summary = an.summary(admin, &f, Bucket::Week).await.unwrap();
        let total = &summary.total;
        assert_eq!(
            (
                total.deals_created,
                total.deals_won,
                total.deals_lost,
                total.tasks_completed,
                total.messages_in,
                total.messages_out
            ),
            (5, 2, 1, 1, 2, 2)
        );
        assert_eq!(summary.rows.iter().map(|r| r.deals_created).sum::<i64>(), 5);
    };
    check().await;

    // Every event again (a redelivery): nothing changes.
    let again = handle_batch(&mut conn, &analytics::Projector, &events)
        .await
        .unwrap();
    assert!(again.iter().all(|o| *o == Outcome::Duplicate));
    check().await;

    // A move seen before its deal's creation is retried later, not lost or misapplied.
    let early = moved(8, a, b, t(12, 10, 0), None);
    assert!(
        handle_batch(
            &mut conn,
            &analytics::Projector,
            std::slice::from_ref(&early)
        )
        .await
        .is_err()
    );
    let late_creation = created(8, 800, u2, t(11, 10, 0));
    handle_batch(&mut conn, &analytics::Projector, &[late_creation])
        .await
        .unwrap();
    handle_batch(&mut conn, &analytics::Projector, &[early])
        .await
        .unwrap();
    let times = an.time_in_stage(admin, &f).await.unwrap();
    let a_stays = times.stages.iter().find(|s| s.stage.id == a.0).unwrap();
    assert_eq!(a_stays.stays, 5, "D8's day in A counts once");

    // Two moves of one deal seen in the wrong order: the stays and the current stage come out
    // as if they had been seen in order.
    handle_batch(
        &mut conn,
        &analytics::Projector,
        &[
            created(9, 900, u2, t(13, 10, 0)),
            moved(9, b, c, t(15, 10, 0), None),
            moved(9, a, b, t(14, 10, 0), None),
        ],
    )
    .await
    .unwrap();
    let times = an.time_in_stage(admin, &f).await.unwrap();
    let of = |id: StageId| times.stages.iter().find(|s| s.stage.id == id.0).unwrap();
    assert_eq!(of(a).stays, 6, "D9's day in A ends when it moved to B");
    assert_eq!(of(b).stays, 3, "and its day in B when it moved to C");
    assert_eq!(of(c).open_now, 1, "D9 is in C now");
    assert!(
        times
            .slowest
            .iter()
            .any(|d| d.deal_id == 9 && d.stage.id == c.0)
    );

    // A long period (over two months) is read from the daily roll-ups: the same figures, and
    // time in stage from duration histograms (within 6 %). D1-D6, D8 and D9 were created in it.
    let long = ReportFilter {
        from: Some(Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap()),
        to: Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()),
        ..f.clone()
    };
    let funnel = an.funnel(admin, &long).await.unwrap();
    assert_eq!(
        (funnel.deals, funnel.won, funnel.lost, funnel.budget),
        (8, 3, 1, 3800)
    );
    let reached: Vec<i64> = funnel.stages.iter().map(|s| s.reached).collect();
    assert_eq!(reached, vec![8, 8, 7, 4, 3]);
    let wl = an.win_loss(admin, &long).await.unwrap();
    assert_eq!(
        (wl.won, wl.won_budget, wl.lost, wl.lost_budget),
        (3, 1200, 1, 200)
    );
    assert_eq!(wl.reasons[0].name, "Too expensive");
    let managers = an.managers(admin, &long).await.unwrap();
    let m = |u: UserId| managers.iter().find(|r| r.user_id == u.0).unwrap().clone();
    assert_eq!(
        (
            m(u1).created,
            m(u1).won,
            m(u1).lost,
            m(u1).budget_won,
            m(u1).avg_response_secs
        ),
        (4, 2, 1, 700, Some(1800))
    );
    assert_eq!((m(u2).created, m(u2).won, m(u2).tasks_completed), (4, 1, 1));
    let by_month = an.trend(admin, &long, Bucket::Month).await.unwrap();
    let created: Vec<i64> = by_month.points.iter().map(|p| p.created).collect();
    let won_by_month: Vec<i64> = by_month.points.iter().map(|p| p.won).collect();
    assert_eq!((created, won_by_month), (vec![0, 7, 1], vec![0, 2, 1]));
    let summary = an.summary(admin, &long, Bucket::Month).await.unwrap();
    let total = &summary.total;
    assert_eq!(
        (
            total.deals_created,
            total.deals_won,
            total.tasks_completed,
            total.messages_in,
            total.messages_out
        ),
        (8, 3, 1, 2, 2)
    );
    let times = an.time_in_stage(admin, &long).await.unwrap();
    let a_long = times.stages.iter().find(|s| s.stage.id == a.0).unwrap();
    assert_eq!(a_long.stays, 7);
    let near = |got: Option<i64>, want: i64| {
        let got = got.unwrap() as f64;
        assert!(
            (got - want as f64).abs() <= 0.06 * want as f64,
            "{got} vs {want}"
        );
    };
    near(a_long.median_secs, DAY);
    near(a_long.p90_secs, 4 * DAY);
    // The second manager's: D5 7 days, D8 and D9 1 day each in A.
    let theirs = ReportFilter {
        responsible: vec![u2.0],
        ..long.clone()
    };
    let times = an.time_in_stage(admin, &theirs).await.unwrap();
    let a_theirs = times.stages.iter().find(|s| s.stage.id == a.0).unwrap();
    assert_eq!(a_theirs.stays, 3);
    near(a_theirs.median_secs, DAY);
    // A change on an old day (D3 won on 20 January) reaches the roll-ups.
    handle_batch(
        &mut conn,
        &analytics::Projector,
        &[moved(3, b, won, t(20, 10, 0), None)],
    )
    .await
    .unwrap();
    let wl = an.win_loss(admin, &long).await.unwrap();
    assert_eq!((wl.won, wl.won_budget), (4, 1500));
    assert_eq!(an.funnel(admin, &long).await.unwrap().won, 4);
    let fresh = an.funnel(admin, &f).await.unwrap();
    assert_eq!(fresh.won, 3, "D3 was created in January too");

    // A user limited to his own deals sees only those figures; the group filter narrows too.
    app.limit_to_own_deals(admin, u2).await;
    let own = an.funnel(Caller::user(tn.account, u2), &f).await.unwrap();
    assert_eq!((own.deals, own.won), (4, 1));
    let theirs = ReportFilter {
        responsible: vec![u1.0],
        ..f.clone()
    };
    let own_wl = an
        .win_loss(Caller::user(tn.account, u2), &theirs)
        .await
        .unwrap();
    assert_eq!(
        (own_wl.won, own_wl.lost),
        (0, 0),
        "another's deals stay hidden"
    );
    let own_managers = an.managers(Caller::user(tn.account, u2), &f).await.unwrap();
    assert!(own_managers.iter().all(|r| r.user_id == u2.0));

    // Another account sees nothing of this one, and cannot name its pipeline.
    let other = app.tenant("Other Co").await;
    let stranger = Caller::user(other.account, other.admin.id);
    let err = an.funnel(stranger, &f).await.unwrap_err();
    assert_eq!(err.code, kernel::ErrorCode::NotFound);
    let wl = an
        .win_loss(
            stranger,
            &ReportFilter {
                pipeline_id: None,
                ..f.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!((wl.won, wl.lost), (0, 0));
}

/// Drives real deals through the deals module, projects its events, and rebuilds.
#[tokio::test]
async fn a_rebuild_gives_the_live_figures_and_the_pages_show_them() {
    let app = spawn_app().await;
    let tn = app.tenant("Rebuild Co").await;
    let admin = Caller::user(tn.account, tn.admin.id);
    let p = pipeline(&app, admin).await;
    let open = open_stages(&p);
    let deals = &app.state.modules.deals;
    let reason = deals.create_loss_reason(admin, "No budget").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..12i64 {
        let mut new = NewDeal::new(p.id, format!("Deal {i}"));
        new.price = 1000 * (i + 1);
        new.stage_id = Some(open[0]);
        if i % 3 == 0 {
            new.tags = vec!["vip".into()];
        }
        ids.push(deals.create_deal(admin, new).await.unwrap().id);
    }
    let go = async |id: DealId, stage: StageId, why: Option<LossReasonId>| {
        deals
            .move_deal(
                admin,
                id,
                MoveTo {
                    stage_id: stage,
                    after: None,
                    loss_reason_id: why,
                },
            )
            .await
            .unwrap();
    };
    for id in &ids[..8] {
        go(*id, open[1], None).await;
    }
    for id in &ids[..5] {
        go(*id, open[2], None).await;
    }
    for id in &ids[..3] {
        go(*id, deals_api::WON, None).await;
    }
    go(ids[3], deals_api::LOST, Some(reason.id)).await;
    go(ids[8], deals_api::LOST, Some(reason.id)).await;
    deals.delete_deal(admin, ids[11]).await.unwrap();

    // Project the deals module's events as the bus would.
    let mut conn = app.state.pool.get().await.unwrap();
    let events = crate::support::claim_events(&mut conn, "deals", 1000).await;
    assert!(events.len() > 30);
    handle_batch(&mut conn, &analytics::Projector, &events)
        .await
        .unwrap();

    let an = &app.state.modules.analytics;
    let f = ReportFilter {
        pipeline_id: Some(p.id.0),
        ..Default::default()
    };
    let vip = app
        .state
        .modules
        .deals
        .tags(admin)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "vip")
        .unwrap();
    let tagged = ReportFilter {
        tags: vec![vip.id.0],
        ..f.clone()
    };
    let figures = async || {
        (
            an.funnel(admin, &f).await.unwrap(),
            an.win_loss(admin, &f).await.unwrap(),
            an.time_in_stage(admin, &f).await.unwrap().stages,
            an.trend(admin, &f, Bucket::Day).await.unwrap(),
            an.funnel(admin, &tagged).await.unwrap(),
        )
    };
    let live = figures().await;
    assert_eq!((live.0.deals, live.0.won, live.0.lost), (11, 3, 2));
    let reached: Vec<i64> = live.0.stages.iter().map(|s| s.reached).collect();
    assert_eq!(reached, vec![11, 11, 8, 5, 3]);
    assert_eq!((live.1.won, live.1.lost), (3, 2));
    assert_eq!(live.1.reasons[0].deals, 2);
    // The deals tagged vip: 0, 3, 6, 9 (11 is not: it was deleted anyway).
    assert_eq!((live.4.deals, live.4.won, live.4.lost), (4, 1, 1));

    let rebuilt = an.rebuild(admin).await.unwrap();
    assert_eq!(rebuilt.deals, 12);
    let again = figures().await;
    assert_eq!(again.0, live.0);
    assert_eq!(again.1, live.1);
    assert_eq!(again.4, live.4);
    let stays = |s: &[analytics_api::StageTime]| -> Vec<(i64, i64)> {
        s.iter().map(|x| (x.stays, x.open_now)).collect()
    };
    assert_eq!(stays(&again.2), stays(&live.2));
    assert_eq!(again.3.points, live.3.points);
    assert_eq!(again.3.forecast_total, live.3.forecast_total);
    // Members may not rebuild.
    let member = app.member(&tn, "member@rebuild.test").await;
    let err = an
        .rebuild(Caller::user(tn.account, member.id))
        .await
        .unwrap_err();
    assert_eq!(err.code, kernel::ErrorCode::Forbidden);

    // The pages: the dashboard, each report with its chart and table, the CSV, bad input.
    let web = app.signed_in(&tn.admin.email).await;
    let (status, html) = web.text("/analytics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"data-test="fig-created""#));
    assert!(html.contains("<svg class=\"chart\""));
    let drill = format!("/deals/list?pipeline={}", p.id.0);
    assert!(
        html.contains(&drill) && html.contains("created_from="),
        "figures link to their deals"
    );
    for kind in [
        "funnel", "win-loss", "managers", "stages", "trend", "summary",
    ] {
        let (status, html) = web
            .text(&format!(
                "/analytics/{kind}?pipeline={}&bucket=week",
                p.id.0
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert!(html.contains("role=\"img\""), "{kind} has a chart");
        assert!(html.contains("data-test=\"report-table\""), "{kind}");
    }
    let res = web
        .get(&format!("/analytics/funnel?pipeline={}&format=csv", p.id.0))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Stage,Reached,Budget,Of created,From previous stage,Stopped here,Now in this stage"
    );
    assert!(lines.next().unwrap().starts_with("Deals created,11,"));
    // The won figure's drill-down: the deals closed as won in the period.
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let (status, html) = web
        .text(&format!(
            "/deals/list?pipeline={}&stage=142&closed_from={today}&closed_to={today}",
            p.id.0
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("data-deal=").count(), 3);
    let (_, html) = web
        .text(&format!(
            "/deals/list?pipeline={}&stage=142&closed_from=2020-01-01&closed_to=2020-01-31",
            p.id.0
        ))
        .await;
    assert_eq!(html.matches("data-deal=").count(), 0);
    // Each step's "reached" figure drills down to exactly the deals it counts.
    let (_, html) = web
        .text(&format!("/analytics/funnel?pipeline={}", p.id.0))
        .await;
    let links: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|h| h.split('"').next())
        .filter(|h| h.contains("visited="))
        .map(|h| h.replace("&#38;", "&").replace("&amp;", "&"))
        .collect();
    assert_eq!(links.len(), reached.len(), "a link per step");
    for (link, n) in links.iter().zip(&reached) {
        let (status, html) = web.text(link).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(html.matches("data-deal=").count() as i64, *n, "{link}");
    }
    // A report filtered by source channel drills down to that channel's deals only: one deal
    // came in as a Telegram lead.
    let lead = event(
        admin,
        Utc::now(),
        &messaging_api::events::IncomingLeadCreated {
            deal_id: ids[4].0,
            conversation_id: 1,
            contact_id: None,
            pipeline_id: p.id.0,
            channel: "telegram".into(),
            responsible_user_id: tn.admin.id.0,
        },
    );
    handle_batch(&mut conn, &analytics::Projector, &[lead])
        .await
        .unwrap();
    let (_, html) = web
        .text(&format!(
            "/analytics/funnel?pipeline={}&source=telegram",
            p.id.0
        ))
        .await;
    let cohort = html
        .split("href=\"")
        .skip(1)
        .filter_map(|h| h.split('"').next())
        .find(|h| h.contains("source=telegram") && h.contains("created_from="))
        .map(|h| h.replace("&#38;", "&").replace("&amp;", "&"))
        .expect("the cohort's link carries the source");
    let (_, html) = web.text(&cohort).await;
    assert_eq!(html.matches("data-deal=").count(), 1, "{cohort}");
    let (_, html) = web
        .text(&format!("/deals/list?pipeline={}&source=whatsapp", p.id.0))
        .await;
    assert_eq!(html.matches("data-deal=").count(), 0, "no WhatsApp deals");
    for bad in [
        "from=yesterday",
        "from=2026-02-01&to=2026-01-01",
        "bucket=year",
        "source=fax",
    ] {
        let (status, _) = web.text(&format!("/analytics/trend?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = web.text("/analytics/nonsense").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = app.tenant("Nosy Co").await;
    let nosy = app.signed_in(&other.admin.email).await;
    let (status, _) = nosy
        .text(&format!("/analytics/funnel?pipeline={}", p.id.0))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
