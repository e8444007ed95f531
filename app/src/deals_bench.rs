//! `voronka deals-bench`: server-time figures of the deals module on whatever the account holds
//! (fill it first with `voronka seed --deals 1000000`), and the plans of the board's queries.

use std::time::{Duration, Instant};

use deals_api::{DealFilter, MoveTo, NewDeal, StageKind};
use diesel_async::RunQueryDsl;
use kernel::paging::PageRequest;

use crate::state::AppState;

pub fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms ({} runs)",
        at(0.5),
        at(0.95),
        at(0.99),
        v.len()
    )
}

pub async fn run(state: &AppState, email: &str, iterations: usize) -> Result<(), String> {
    let err = |e: kernel::AppError| e.to_string();
    let (caller, pipeline) = crate::cli::bench_pipeline(state, email).await?;
    let deals = &state.modules.deals;
    let first = deals
        .board(
            caller,
            pipeline.id,
            &DealFilter::default(),
            PageRequest::new(None, Some(50)),
        )
        .await
        .map_err(err)?;
    let total: i64 = first.iter().map(|c| c.totals.deals).sum();
    println!(
        "pipeline {} with {} stages and {total} deals",
        pipeline.id,
        pipeline.stages.len()
    );

    // Board first render: every column's totals and first 50 cards.
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        deals
            .board(
                caller,
                pipeline.id,
                &DealFilter::default(),
                PageRequest::new(None, Some(50)),
            )
            .await
            .map_err(err)?;
        times.push(t.elapsed());
    }
    println!("board first render: {}", percentiles(times));

    // Column next page: walk down the busiest column 50 cards at a time.
    let busiest = first
        .iter()
        .max_by_key(|c| c.totals.deals)
        .ok_or("no columns")?;
    let mut cursor = busiest.deals.next.clone();
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let page = deals
            .column(
                caller,
                pipeline.id,
                busiest.stage.id,
                &DealFilter::default(),
                cursor.clone(),
                50,
            )
            .await
            .map_err(err)?;
        times.push(t.elapsed());
        cursor = page.next.or_else(|| busiest.deals.next.clone());
    }
    println!("column next page: {}", percentiles(times));

    // Move a deal: the top card of one open column to the top of the next.
    let open: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .map(|s| s.id)
        .collect();
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let from = open[i % open.len()];
        let to = open[(i + 1) % open.len()];
        let page = deals
            .column(caller, pipeline.id, from, &DealFilter::default(), None, 1)
            .await
            .map_err(err)?;
        let Some(deal) = <[deals_api::Deal]>::first(&page.items) else {
            continue;
        };
        let t = Instant::now();
        deals
            .move_deal(
                caller,
                deal.id,
                MoveTo {
                    stage_id: to,
                    after: None,
                    loss_reason_id: None,
                },
            )
            .await
            .map_err(err)?;
        times.push(t.elapsed());
    }
    println!("move a deal: {}", percentiles(times));

    // The list with a filter: deals tagged "vip" (every 10th), newest first, then a text search.
    let vip = deals
        .tags(caller)
        .await
        .map_err(err)?
        .into_iter()
        .find(|t| t.name == "vip")
        .map(|t| t.id);
    for (what, filter) in [
        (
            "list, tag filter",
            DealFilter {
                tags: vip.into_iter().collect(),
                ..Default::default()
            },
        ),
        (
            "list, text search",
            DealFilter {
                query: Some("Deal #12345".into()),
                ..Default::default()
            },
        ),
    ] {
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            deals
                .list(
                    caller,
                    &filter,
                    deals_api::ListSort::Created,
                    true,
                    PageRequest::new(None, Some(50)),
                )
                .await
                .map_err(err)?;
            times.push(t.elapsed());
        }
        println!("{what}: {}", percentiles(times));
    }

    // Create deals from 16 concurrent callers for 5 seconds.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let deals = state.modules.deals.clone();
        let p = pipeline.id;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut times = Vec::new();
            while started.elapsed() < Duration::from_secs(5) {
                let t = Instant::now();
                let new = NewDeal {
                    name: format!("Bench {w}-{n}"),
                    price: 1000,
                    pipeline_id: p,
                    stage_id: None,
                    responsible_user_id: None,
                    ..NewDeal::new(p, "")
                };
                if deals.create_deal(caller, new).await.is_ok() {
                    n += 1;
                    times.push(t.elapsed());
                }
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.map_err(|e| e.to_string())?);
    }
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "create a deal (16 concurrent callers): {rate:.0} deals/s; {}",
        percentiles(times)
    );

    // The plans of the board's two queries, as the database runs them now.
    let stage = busiest.stage.id.0;
    print_plans(
        state,
        vec![
            (
                "column totals",
                format!(
                    "EXPLAIN ANALYZE SELECT stage_id, sum(deals)::bigint, sum(budget)::bigint FROM deals.stage_totals
                      WHERE account_id = {} AND pipeline_id = {} GROUP BY stage_id",
                    caller.account_id, pipeline.id
                ),
            ),
            (
                "list, tag filter (first page)",
                format!(
                    "EXPLAIN ANALYZE SELECT id FROM deals.deals WHERE account_id = {} AND deleted_at IS NULL
                       AND tag_ids && ARRAY[{}]::bigint[] ORDER BY created_at DESC, id DESC LIMIT 51",
                    caller.account_id,
                    vip.map(|v| v.0).unwrap_or(0)
                ),
            ),
            (
                "column first page",
                format!(
                    "EXPLAIN ANALYZE SELECT * FROM deals.deals WHERE account_id = {} AND pipeline_id = {} AND stage_id = {stage}
                       AND deleted_at IS NULL ORDER BY position, id LIMIT 51",
                    caller.account_id, pipeline.id
                ),
            ),
        ],
    )
    .await
}

/// Prints `EXPLAIN ANALYZE` output of each statement, as the database runs it now.
pub async fn print_plans(state: &AppState, plans: Vec<(&str, String)>) -> Result<(), String> {
    let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    for (what, sql) in plans {
        let plan: Vec<Line> = diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        println!("plan of {what}:");
        for l in plan {
            println!("    {}", l.line);
        }
    }
    Ok(())
}
