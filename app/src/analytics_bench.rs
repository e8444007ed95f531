//! `voronka analytics-bench`: the reports over a large account (server time, through the trait)
//! and the projection's throughput (events handled per second by the read model's subscriber,
//! as the bus hands them over: batches through the inbox, several workers at once).

use std::time::{Duration, Instant};

use analytics_api::{Bucket, ReportFilter};
use chrono::Utc;
use deals_api::events::{DealCreated, DealStageChanged};
use deals_api::{DealId, NewPipeline, NewStage, PipelineId, StageId, StageKind};
use kernel::events::EventEnvelope;
use kernel::{Caller, UserId};

use crate::deals_bench::percentiles;
use crate::state::AppState;

const PIPELINE: &str = "Analytics bench";

async fn pipeline(state: &AppState, caller: Caller) -> Result<deals_api::Pipeline, String> {
    let deals = &state.modules.deals;
    let existing = deals
        .pipelines(caller)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|p| p.name == PIPELINE);
    if let Some(p) = existing {
        return Ok(p);
    }
    let stages = [
        "Qualified",
        "Call",
        "Meeting",
        "Proposal",
        "Negotiation",
        "Contract",
        "Invoice",
    ]
    .iter()
    .map(|n| NewStage {
        name: n.to_string(),
        color: "#99ccff".into(),
    })
    .collect();
    deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: PIPELINE.into(),
                stages,
            },
        )
        .await
        .map_err(|e| e.to_string())
}

/// Managers for the bench account (eight, created once).
async fn managers(state: &AppState, caller: Caller) -> Result<Vec<UserId>, String> {
    let mut users = crate::cli::bench_users(state, caller).await?;
    let accounts = &state.modules.accounts;
    while users.len() < 8 {
        let n = users.len();
        let u = accounts
            .create_user(
                caller,
                accounts_api::NewUser {
                    name: format!("Manager {n}"),
                    email: format!("manager{n}.{}@bench.test", caller.account_id.0),
                    password: "bench-password".into(),
                    is_admin: false,
                    lang: accounts_api::Lang::En,
                    time_zone: "UTC".into(),
                    group_id: None,
                    role_id: None,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        users.push(u.id);
    }
    Ok(users)
}

pub async fn run(
    state: &AppState,
    email: &str,
    deals: i64,
    iterations: usize,
    projection_deals: i64,
) -> Result<(), String> {
    let err = |e: kernel::AppError| e.to_string();
    let (caller, _) = crate::cli::bench_pipeline(state, email).await?;
    let p = pipeline(state, caller).await?;
    let users = managers(state, caller).await?;
    let incoming = p
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Incoming)
        .map(|s| s.id)
        .ok_or("the pipeline has no incoming stage")?;
    let mut open: Vec<&deals_api::Stage> = p
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .collect();
    open.sort_by_key(|s| s.sort);
    let open: Vec<StageId> = open.iter().map(|s| s.id).collect();
    let a = &state.modules.analytics;

    let started = Instant::now();
    let seeded = a
        .seed_read_model(
            caller,
            p.id.0,
            incoming.0,
            open.iter().map(|s| s.0).collect(),
            deals,
            users.iter().map(|u| u.0).collect(),
        )
        .await
        .map_err(err)?;
    println!(
        "seeded the read model: {} deals, {} stage stays, {} activity rows in {:.1} s",
        seeded.deals,
        seeded.stays,
        seeded.deals * 3,
        started.elapsed().as_secs_f64()
    );

    let now = Utc::now();
    let month = ReportFilter {
        pipeline_id: Some(p.id.0),
        ..Default::default()
    };
    // The last 12 months as the filter bar asks for them: whole days, up to tomorrow.
    let today = now.date_naive();
    let midnight = |d: chrono::NaiveDate| {
        chrono::TimeZone::from_utc_datetime(&Utc, &d.and_time(chrono::NaiveTime::MIN))
    };
    let year = ReportFilter {
        from: Some(midnight(today - chrono::Duration::days(365))),
        to: Some(midnight(today + chrono::Duration::days(1))),
        ..month.clone()
    };
    let one_manager = ReportFilter {
        responsible: vec![users[1].0],
        ..year.clone()
    };
    let fewer = (iterations / 3).max(5);
    for (label, f, bucket, iterations) in [
        ("this month", &month, Bucket::Day, iterations),
        ("last 12 months", &year, Bucket::Month, fewer),
        (
            "last 12 months, one manager",
            &one_manager,
            Bucket::Month,
            fewer,
        ),
    ] {
        println!("Reports, {label} (server time, {iterations} runs each):");
        let mut times: Vec<(&str, Vec<Duration>)> = vec![
            ("funnel", Vec::new()),
            ("win/loss", Vec::new()),
            ("managers", Vec::new()),
            ("time in stage", Vec::new()),
            ("created vs closed + forecast", Vec::new()),
            ("consolidated", Vec::new()),
        ];
        let mut cohort = 0;
        for _ in 0..iterations {
            let t = Instant::now();
            cohort = a.funnel(caller, f).await.map_err(err)?.deals;
            times[0].1.push(t.elapsed());
            let t = Instant::now();
            a.win_loss(caller, f).await.map_err(err)?;
            times[1].1.push(t.elapsed());
            let t = Instant::now();
            a.managers(caller, f).await.map_err(err)?;
            times[2].1.push(t.elapsed());
            let t = Instant::now();
            a.time_in_stage(caller, f).await.map_err(err)?;
            times[3].1.push(t.elapsed());
            let t = Instant::now();
            a.trend(caller, f, bucket).await.map_err(err)?;
            times[4].1.push(t.elapsed());
            let t = Instant::now();
            a.summary(caller, f, bucket).await.map_err(err)?;
            times[5].1.push(t.elapsed());
        }
        for (name, v) in times {
            println!("  {name:<30} {}", percentiles(v));
        }
        println!("  (the funnel's cohort: {cohort} deals)");
    }

    projection(state, caller, p.id, &open, projection_deals).await
}

/// Events of new deals (each created, then moved through four stages) handled by the read
/// model's subscriber in batches of 100 through the inbox, by 4 workers at once (one deal's
/// events stay with one worker, in order, as the relay delivers them).
async fn projection(
    state: &AppState,
    caller: Caller,
    pipeline: PipelineId,
    open: &[StageId],
    deals: i64,
) -> Result<(), String> {
    const WORKERS: i64 = 4;
    const BATCH: usize = 100;
    let base = 1_000_000_000_000 + Utc::now().timestamp() * 1000;
    let mut lanes: Vec<Vec<EventEnvelope>> = vec![Vec::new(); WORKERS as usize];
    for i in 0..deals {
        let id = DealId(base + i);
        let lane = &mut lanes[(i % WORKERS) as usize];
        lane.push(
            EventEnvelope::new(
                caller,
                &DealCreated {
                    deal_id: id,
                    name: format!("Projected {i}"),
                    price: 1000,
                    pipeline_id: pipeline,
                    stage_id: open[0],
                    responsible_user_id: caller.actor.user_id().unwrap_or(UserId(0)),
                    tag_ids: Vec::new(),
                    contact_ids: Some(Vec::new()),
                },
            )
            .map_err(|e| e.to_string())?,
        );
        for w in open.windows(2).take(4) {
            lane.push(
                EventEnvelope::new(
                    caller,
                    &DealStageChanged {
                        deal_id: id,
                        pipeline_id: pipeline,
                        from_stage_id: w[0],
                        to_stage_id: w[1],
                        loss_reason_id: None,
                        from_pipeline_id: None,
                    },
                )
                .map_err(|e| e.to_string())?,
            );
        }
    }
    let total: usize = lanes.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in lanes {
        let pool = state.pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            let sub = analytics::Projector;
            for batch in lane.chunks(BATCH) {
                kernel::inbox::handle_batch(&mut conn, &sub, batch)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "Projection: {total} events ({deals} deals created and moved 4 times each) in {secs:.1} s = {:.0} events/s (batches of {BATCH}, {WORKERS} workers)",
        total as f64 / secs
    );
    Ok(())
}
