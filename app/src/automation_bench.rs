//! `voronka automation-bench`: events in → actions done, with the real backbone in this process
//! (relay, bus, the trigger subscriber, the dispatcher and the job workers). A pipeline with one
//! trigger "moved to Out: immediately, create a task"; deals created in "In" are moved to "Out"
//! through the deals trait at a steady rate (a warm-up, reported apart, then the sustained
//! phase), then as fast as possible (the burst), once the seeding's own events have been
//! handled. Prints the moves' rate, the time from each move's commit to its run being done
//! (p50/p95/p99), and actions done per second (mean and the best second).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use automation_api::{Action, Delay, TriggerDraft, When};
use chrono::{DateTime, Utc};
use deals_api::{DealId, MoveTo, NewPipeline, NewStage, StageId};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use tokio::sync::Mutex;

use crate::state::AppState;

#[derive(QueryableByName)]
struct Done {
    #[diesel(sql_type = BigInt)]
    deal_id: i64,
    #[diesel(sql_type = Timestamptz)]
    finished_at: DateTime<Utc>,
}

/// When a run passed each step from the stage change to done (the start of the transaction
/// that did the step: the relay's publication, the trigger's run recorded, the run taken by a
/// worker — `queued_at` is set again when a worker claims the run).
#[derive(QueryableByName)]
struct Steps {
    #[diesel(sql_type = BigInt)]
    deal_id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    published_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    queued_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    finished_at: DateTime<Utc>,
}

/// Where the time of the runs of `moved` went, step by step (p50 and p95 of each step).
async fn steps(
    state: &AppState,
    trigger: i64,
    moved: &HashMap<i64, DateTime<Utc>>,
) -> Result<String, String> {
    let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
    let rows: Vec<Steps> = diesel::sql_query(
        "SELECT r.deal_id, o.published_at, r.created_at, r.queued_at, r.finished_at
           FROM automation.runs r LEFT JOIN deals.outbox o ON o.id = r.event_id
          WHERE r.trigger_id = $1 AND r.status = 'done'",
    )
    .bind::<BigInt, _>(trigger)
    .load(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| {
        (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
    };
    let mut parts: [Vec<f64>; 4] = Default::default();
    for r in rows.iter() {
        let (Some(at), Some(published), Some(queued)) =
            (moved.get(&r.deal_id), r.published_at, r.queued_at)
        else {
            continue;
        };
        parts[0].push(ms(*at, published));
        parts[1].push(ms(published, r.created_at));
        parts[2].push(ms(r.created_at, queued));
        parts[3].push(ms(queued, r.finished_at));
    }
    let names = ["relayed", "run recorded", "taken by a worker", "done"];
    Ok(parts
        .into_iter()
        .zip(names)
        .map(|(v, name)| match sorted_at(v) {
            Some(at) => format!("{name} +{:.0}/{:.0}", at(0.5), at(0.95)),
            None => format!("{name}: -"),
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// The values' quantile function (`q` in 0..=1, nearest rank; 1 gives the largest), or `None`
/// when there are none.
fn sorted_at(mut v: Vec<f64>) -> Option<impl Fn(f64) -> f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(move |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)])
}

pub(crate) fn quantiles(v: Vec<f64>) -> String {
    let n = v.len();
    let Some(at) = sorted_at(v) else {
        return "no runs".into();
    };
    format!(
        "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({n} runs)",
        at(0.5),
        at(0.95),
        at(0.99),
        at(1.0),
    )
}

/// Runs of the trigger done for the given moves: latency per run (ms) and done per second.
async fn measure(
    state: &AppState,
    trigger: i64,
    moved: &HashMap<i64, DateTime<Utc>>,
    wait_for: usize,
) -> Result<(Vec<f64>, Vec<DateTime<Utc>>), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
        let done: Vec<Done> = diesel::sql_query(
            "SELECT deal_id, finished_at FROM automation.runs WHERE trigger_id = $1 AND status = 'done'",
        )
        .bind::<BigInt, _>(trigger)
        .load(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        let mine: Vec<&Done> = done
            .iter()
            .filter(|d| moved.contains_key(&d.deal_id))
            .collect();
        if mine.len() >= wait_for || Instant::now() > deadline {
            let lat = mine
                .iter()
                .map(|d| {
                    (d.finished_at - moved[&d.deal_id])
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0
                })
                .collect();
            return Ok((lat, mine.iter().map(|d| d.finished_at).collect()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Waits (up to two minutes) until the backbone is idle: no unpublished event in any outbox and
/// no job waiting, running or to be retried — so that the seeding's own events (deals created)
/// are not handled during the measured moves.
async fn wait_idle(state: &AppState) -> Result<(), String> {
    let schemas = crate::server::outbox_schemas(&state.config);
    let outboxes = schemas
        .iter()
        .map(|s| format!("(SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL)"))
        .collect::<Vec<_>>()
        .join(" + ");
    let sql = format!(
        "SELECT {outboxes} + (SELECT count(*) FROM apalis.jobs
                               WHERE status IN ('Pending', 'Queued', 'Running')
                                  OR (status = 'Failed' AND attempts < max_attempts)) AS n"
    );
    let started = Instant::now();
    let mut quiet = 0;
    while quiet < 2 {
        let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
        let busy: Count = diesel::sql_query(&sql)
            .get_result(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        quiet = if busy.n == 0 { quiet + 1 } else { 0 };
        if started.elapsed() > Duration::from_secs(120) {
            println!(
                "the backbone is still busy after 2 minutes ({} left); measuring anyway",
                busy.n
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "waited {:.1} s for the backbone to be idle (earlier events handled)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn per_second(times: &[DateTime<Utc>]) -> (f64, usize) {
    if times.len() < 2 {
        return (0.0, times.len());
    }
    let first = times.iter().min().copied().unwrap_or_default();
    let last = times.iter().max().copied().unwrap_or_default();
    let span = (last - first).num_milliseconds().max(1) as f64 / 1000.0;
    let mut buckets: HashMap<i64, usize> = HashMap::new();
    for t in times {
        *buckets.entry(t.timestamp()).or_default() += 1;
    }
    (
        times.len() as f64 / span,
        buckets.values().copied().max().unwrap_or(0),
    )
}

async fn move_all(
    state: &AppState,
    caller: kernel::Caller,
    ids: Vec<i64>,
    to: i64,
    rate: Option<u32>,
    concurrency: usize,
) -> Result<(HashMap<i64, DateTime<Utc>>, f64), String> {
    let moved = Arc::new(Mutex::new(HashMap::with_capacity(ids.len())));
    let queue = Arc::new(Mutex::new(ids.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (moved, queue) = (moved.clone(), queue.clone());
        let deals = state.modules.deals.clone();
        tasks.push(tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                let Some(id) = queue.lock().await.next() else {
                    break;
                };
                if let Some(rate) = rate {
                    // Worker w's n-th move is due at (n * concurrency + w) / rate seconds.
                    let due = Duration::from_secs_f64(
                        (n as f64 * concurrency as f64 + w as f64) / rate as f64,
                    );
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                n += 1;
                let to = MoveTo {
                    stage_id: StageId(to),
                    after: None,
                    loss_reason_id: None,
                };
                match deals.move_deal(caller, DealId(id), to).await {
                    Ok(_) => {
                        moved.lock().await.insert(id, Utc::now());
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let secs = started.elapsed().as_secs_f64();
    let moved = Arc::try_unwrap(moved)
        .map_err(|_| "moves still running".to_string())?
        .into_inner();
    Ok((moved, secs))
}

/// The bench's phases: `warmup` seconds at `rate` (reported, not counted), `seconds` at `rate`
/// (the sustained phase), then `burst` stage changes as fast as they go.
pub struct Phases {
    pub rate: u32,
    pub seconds: u32,
    pub warmup: u32,
    pub burst: usize,
}

pub async fn run(state: &AppState, email: &str, phases: Phases) -> Result<(), String> {
    let Phases {
        rate,
        seconds,
        warmup,
        burst,
    } = phases;
    let err = |e: kernel::AppError| e.to_string();
    let user = state
        .modules
        .accounts
        .find_user_by_email(email)
        .await
        .map_err(err)?
        .ok_or_else(|| format!("no user with e-mail {email}"))?;
    let caller = kernel::Caller::user(user.account_id, user.id);
    let deals = &state.modules.deals;
    let sustained = (rate * seconds) as usize;
    let warm = (rate * warmup) as usize;
    let total = warm + sustained + burst;
    // A fresh pipeline: every deal starts in "In"; "Out" is added after seeding.
    let pipeline = deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: format!("Automation bench {}", Utc::now().format("%H%M%S")),
                stages: vec![NewStage {
                    name: "In".into(),
                    color: "#99ccff".into(),
                }],
            },
        )
        .await
        .map_err(err)?;
    // Created through the trait (not bulk-seeded), so that every subscriber (the analytics
    // projection among them) knows the deals before they move, as in real use.
    let mut ids: Vec<i64> = Vec::with_capacity(total);
    let mut n = 0;
    while n < total {
        let chunk: Vec<deals_api::NewDeal> = (n..(n + 250).min(total))
            .map(|i| deals_api::NewDeal {
                price: 1000 + i as i64,
                ..deals_api::NewDeal::new(pipeline.id, format!("Bench deal {i}"))
            })
            .collect();
        n += chunk.len();
        ids.extend(
            deals
                .create_deals(caller, chunk)
                .await
                .map_err(err)?
                .into_iter()
                .map(|d| d.id.0),
        );
    }
    let out = deals
        .add_stage(
            caller,
            pipeline.id,
            NewStage {
                name: "Out".into(),
                color: "#ffcc99".into(),
            },
        )
        .await
        .map_err(err)?;
    let trigger = state
        .modules
        .automation
        .save_trigger(
            caller,
            None,
            TriggerDraft {
                name: "Bench: call on Out".into(),
                pipeline_id: pipeline.id.0,
                stage_id: out.id.0,
                when: When::MovedTo,
                conditions: vec![],
                delay: Delay::Now,
                working_hours: false,
                actions: vec![Action::CreateTask {
                    task_type_id: activities_api::CALL.0,
                    text: "Call about {{deal.name}}".into(),
                    due_in_minutes: 60,
                }],
                enabled: true,
            },
        )
        .await
        .map_err(err)?;
    println!(
        "created {} deals; trigger {} on stage {}",
        ids.len(),
        trigger.id.0,
        out.id.0
    );

    wait_idle(state).await?;
    // As autovacuum would within a minute: the planner learns of the deals just created.
    {
        let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
        diesel::sql_query("ANALYZE deals.deals")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    }

    let (warming, rest) = ids.split_at(warm.min(ids.len()));
    if !warming.is_empty() {
        // The same moves first, so that the measured phase finds the process as it runs for
        // good (its pools' connections open, their statements prepared and planned, the
        // relay and the workers going) rather than just started.
        let (moved, _) =
            move_all(state, caller, warming.to_vec(), out.id.0, Some(rate), 32).await?;
        let (lat, _) = measure(state, trigger.id.0, &moved, moved.len()).await?;
        println!(
            "warm-up ({warmup} s at {rate}/s, not counted below): {}",
            quantiles(lat)
        );
        println!(
            "warm-up: by step, p50/p95 ms after the one before: {}",
            steps(state, trigger.id.0, &moved)
                .await
                .unwrap_or_else(|e| format!("not available ({e})"))
        );
        wait_idle(state).await?;
    }
    let (first, second) = rest.split_at(sustained.min(rest.len()));
    let (moved, secs) = move_all(state, caller, first.to_vec(), out.id.0, Some(rate), 32).await?;
    println!(
        "sustained: {} stage changes in {:.1} s ({:.0}/s asked {rate}/s)",
        moved.len(),
        secs,
        moved.len() as f64 / secs
    );
    let (lat, times) = measure(state, trigger.id.0, &moved, moved.len()).await?;
    let (mean, best) = per_second(&times);
    println!(
        "sustained: stage change committed → task created and run done: {}",
        quantiles(lat)
    );
    // The deals' outbox is read directly: with the deals module in another database the steps
    // are not shown, and the bench goes on.
    println!(
        "sustained: by step, p50/p95 ms after the one before: {}",
        steps(state, trigger.id.0, &moved)
            .await
            .unwrap_or_else(|e| format!("not available ({e})"))
    );
    println!("sustained: actions done {mean:.0}/s on average, {best} in the best second");

    if !second.is_empty() {
        wait_idle(state).await?;
        let (moved, secs) = move_all(state, caller, second.to_vec(), out.id.0, None, 32).await?;
        println!(
            "burst: {} stage changes in {:.1} s ({:.0}/s, as fast as 32 callers go)",
            moved.len(),
            secs,
            moved.len() as f64 / secs
        );
        let (lat, times) = measure(state, trigger.id.0, &moved, moved.len()).await?;
        let (mean, best) = per_second(&times);
        println!(
            "burst: stage change committed → run done: {}",
            quantiles(lat)
        );
        println!(
            "burst: actions done {mean:.0}/s on average while draining, {best} in the best second"
        );
    }
    Ok(())
}
