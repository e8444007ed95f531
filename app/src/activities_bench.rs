//! `voronka activities-bench`: server-time figures of the activities module on a seeded account
//! (`voronka seed --deals 1000000 --log-entries 3000000`): a deal's timeline, the board with the
//! nearest task of each card, the tasks list, and the timeline query's plan.

use std::time::Instant;

use activities_api::{EntityRef, TaskQuery};
use deals_api::DealFilter;
use kernel::paging::PageRequest;
use rand::Rng;

use crate::deals_bench::{percentiles, print_plans};
use crate::state::AppState;

pub async fn run(
    state: &AppState,
    email: &str,
    iterations: usize,
    first: i64,
    last: i64,
) -> Result<(), String> {
    let err = |e: kernel::AppError| e.to_string();
    let (caller, pipeline) = crate::cli::bench_pipeline(state, email).await?;
    let a = &state.modules.activities;
    let deals = &state.modules.deals;

    let mut times = Vec::with_capacity(iterations);
    let mut shown = 0;
    for _ in 0..iterations {
        let id = rand::rng().random_range(first..=last);
        let t = Instant::now();
        shown = a
            .timeline(
                caller,
                EntityRef::deal(id),
                PageRequest::new(None, Some(30)),
            )
            .await
            .map_err(err)?
            .items
            .len();
        times.push(t.elapsed());
    }
    println!(
        "a deal's timeline, first page ({shown} items, deal and rights checked): {}",
        percentiles(times)
    );

    let (mut board, mut with_tasks) = (Vec::new(), Vec::new());
    let mut found = 0;
    for _ in 0..iterations {
        let t = Instant::now();
        let columns = deals
            .board(
                caller,
                pipeline.id,
                &DealFilter::default(),
                PageRequest::new(None, Some(50)),
            )
            .await
            .map_err(err)?;
        board.push(t.elapsed());
        let ids: Vec<i64> = columns
            .iter()
            .flat_map(|c| c.deals.items.iter().map(|d| d.id.0))
            .collect();
        found = a.nearest_tasks(caller, ids).await.map_err(err)?.len();
        with_tasks.push(t.elapsed());
    }
    println!("board first render alone: {}", percentiles(board));
    println!(
        "board first render with each card's nearest task ({found} cards with one): {}",
        percentiles(with_tasks)
    );

    let mut times = Vec::with_capacity(iterations);
    let mut listed = 0;
    for _ in 0..iterations {
        let t = Instant::now();
        listed = a
            .tasks(
                caller,
                &TaskQuery::default(),
                PageRequest::new(None, Some(250)),
            )
            .await
            .map_err(err)?
            .items
            .len();
        times.push(t.elapsed());
    }
    println!(
        "the tasks page's list (all open tasks by due time, {listed} shown): {}",
        percentiles(times)
    );

    let id = (first + last) / 2;
    let account = caller.account_id;
    print_plans(
        state,
        vec![(
            "a deal's timeline (the merge of notes, tasks and log entries)",
            format!(
                "EXPLAIN ANALYZE SELECT kind, id, at FROM (
                   (SELECT 'n'::text AS kind, id, created_at AS at FROM activities.notes
                     WHERE account_id = {account} AND entity = 'deal' AND entity_id = {id} AND deleted_at IS NULL AND NOT pinned
                     ORDER BY created_at DESC, id DESC LIMIT 31)
                   UNION ALL
                   (SELECT 't'::text, id, created_at FROM activities.tasks
                     WHERE account_id = {account} AND entity = 'deal' AND entity_id = {id} AND deleted_at IS NULL
                     ORDER BY created_at DESC, id DESC LIMIT 31)
                   UNION ALL
                   (SELECT 'e'::text, id, occurred_at FROM activities.log
                     WHERE account_id = {account} AND entity = 'deal' AND entity_id = {id}
                     ORDER BY occurred_at DESC, id DESC LIMIT 31)
                 ) x ORDER BY at DESC, kind DESC, id DESC LIMIT 31"
            ),
        )],
    )
    .await
}
