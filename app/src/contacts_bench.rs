//! `voronka contacts-bench`: the contacts module through its trait (server time) on a seeded
//! account: search (phone in another format, part of a name, a typo, an e-mail), the first page
//! of a list, segments (first page and size, before and after a 100,000-row import), the import
//! itself, and creating contacts from 16 concurrent callers.

use std::time::{Duration, Instant};

use contacts_api::{
    ContactFilter, DuplicatePolicy, Entity, ImportSettings, ImportUpload, NewContact, Reach,
    Segment, SegmentSize, TextEncoding,
};
use kernel::paging::PageRequest;

use crate::deals_bench::percentiles;
use crate::state::AppState;

pub async fn run(state: &AppState, email: &str, iterations: usize) -> Result<(), String> {
    let err = |e: kernel::AppError| e.to_string();
    let (caller, _) = crate::cli::bench_pipeline(state, email).await?;
    let contacts = &state.modules.contacts;
    for (what, q) in [
        ("search, phone typed nationally", "8 900 012 34 56"),
        ("search, part of a phone", "0012345"),
        ("search, part of a name", "Sokolov 4242"),
        ("search, a typo in a name", "Sokolow"),
        ("search, an e-mail", "person4242@example.com"),
    ] {
        let mut times = Vec::with_capacity(iterations);
        let mut found = 0;
        for _ in 0..iterations {
            let t = Instant::now();
            found = contacts.search(caller, q, 20).await.map_err(err)?.len();
            times.push(t.elapsed());
        }
        println!("{what} ({q:?}, {found} hits): {}", percentiles(times));
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        contacts
            .list_contacts(
                caller,
                &ContactFilter::default(),
                PageRequest::new(None, Some(50)),
            )
            .await
            .map_err(err)?;
        times.push(t.elapsed());
    }
    println!("list, first page: {}", percentiles(times));

    // Segments: the first page and the capped count, as the list page shows them.
    let vip = contacts
        .tags(caller, Entity::Contact)
        .await
        .map_err(err)?
        .into_iter()
        .find(|t| t.name == "vip")
        .map(|t| t.id);
    let saved = contacts.segments(caller).await.map_err(err)?;
    let mut segments = Vec::new();
    for (name, filter) in [
        (
            "Bench: VIP",
            ContactFilter {
                tags: vip.into_iter().collect(),
                ..Default::default()
            },
        ),
        (
            "Bench: VIP without an open deal, not contacted for 30 days",
            ContactFilter {
                tags: vip.into_iter().collect(),
                open_deal: Some(false),
                not_contacted_days: Some(30),
                ..Default::default()
            },
        ),
        (
            "Bench: contacted in the last 7 days",
            ContactFilter {
                contacted_within_days: Some(7),
                ..Default::default()
            },
        ),
    ] {
        segments.push(match saved.iter().find(|s| s.name == name) {
            Some(s) => s.clone(),
            None => contacts
                .save_segment(caller, name, filter)
                .await
                .map_err(err)?,
        });
    }
    measure_segments(state, caller, &segments, iterations, "").await?;
    let vip_id = vip.map(|v| v.0).unwrap_or(0);
    let account = caller.account_id;
    crate::deals_bench::print_plans(
        state,
        vec![
            (
                "segment \"VIP without an open deal, not contacted for 30 days\" (first page)",
                format!(
                    "EXPLAIN ANALYZE SELECT id FROM contacts.contacts WHERE account_id = {account} AND deleted_at IS NULL
                       AND tag_ids <> '{{}}' AND tag_ids && ARRAY[{vip_id}]::bigint[] AND open_deals = 0
                       AND (last_contacted_at IS NULL OR last_contacted_at < now() - interval '30 days')
                     ORDER BY created_at DESC, id DESC LIMIT 51"
                ),
            ),
            (
                "search by a whole phone",
                format!(
                    "EXPLAIN ANALYZE SELECT owner_id FROM contacts.phones WHERE account_id = {account}
                       AND normalized = '+79000123456' LIMIT 20"
                ),
            ),
        ],
    )
    .await?;

    // An import of 100,000 rows through the job's code path (upload, read, run to the end),
    // then the same file again, where every row is a duplicate to skip.
    let rows = 100_000;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut text = String::from("Full name,Phone,Email,Position,Tags\n");
    for i in 0..rows {
        text.push_str(&format!(
            "Imported Person {i},+7 977 {i:07},import{i}.{run_id}@bench.test,Buyer,imported\n"
        ));
    }
    for pass in ["new rows", "the same rows again (all duplicates, skipped)"] {
        let t = Instant::now();
        let imp = contacts
            .upload_import(
                caller,
                ImportUpload {
                    entity: Entity::Contact,
                    file_name: "bench.csv".into(),
                    encoding: TextEncoding::Utf8,
                    data: text.clone().into_bytes(),
                },
            )
            .await
            .map_err(err)?;
        let uploaded = t.elapsed();
        contacts
            .start_import(
                caller,
                imp.id,
                ImportSettings {
                    mapping: imp.mapping.clone(),
                    policy: DuplicatePolicy::Skip,
                    tag: String::new(),
                    dry_run: false,
                },
            )
            .await
            .map_err(err)?;
        let t = Instant::now();
        let done = contacts
            .run_import(caller.account_id, imp.id)
            .await
            .map_err(err)?;
        let ran = t.elapsed();
        println!(
            "import of {rows} rows, {pass}: upload and read {:.1} s, run {:.1} s ({:.0} rows/s); created {}, skipped {}, refused {}",
            uploaded.as_secs_f64(),
            ran.as_secs_f64(),
            rows as f64 / ran.as_secs_f64(),
            done.created,
            done.skipped,
            done.failed
        );
    }

    measure_segments(
        state,
        caller,
        &segments,
        iterations,
        " after the import (100,000 newer contacts, none in the VIP segments)",
    )
    .await?;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let contacts = state.modules.contacts.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(5) {
                let t = Instant::now();
                let new = NewContact {
                    first_name: format!("Bench {w}"),
                    last_name: format!("Person {n}"),
                    phones: vec![Reach::work(format!(
                        "8 (999) {w:03}-{:02}-{:02}",
                        n / 100 % 100,
                        n % 100
                    ))],
                    emails: vec![Reach::work(format!("bench{w}.{n}@example.com"))],
                    ..Default::default()
                };
                if contacts.create_contact(caller, new).await.is_ok() {
                    times.push(t.elapsed());
                }
                n += 1;
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
        "create a contact with a phone and an e-mail (16 callers): {rate:.0}/s; {}",
        percentiles(times)
    );
    Ok(())
}

/// Each segment's first page, and its size as the list's chip asks for it: the first count is
/// computed, the next ones come from the minute's cache.
async fn measure_segments(
    state: &AppState,
    caller: kernel::Caller,
    segments: &[Segment],
    iterations: usize,
    when: &str,
) -> Result<(), String> {
    let err = |e: kernel::AppError| e.to_string();
    let contacts = &state.modules.contacts;
    for seg in segments {
        let name = &seg.name;
        let (mut page, mut size) = (Vec::new(), Vec::new());
        let mut shown = 0;
        let mut counted = SegmentSize {
            count: 0,
            capped: false,
        };
        let mut first_count = Duration::ZERO;
        for i in 0..iterations {
            let t = Instant::now();
            shown = contacts
                .list_contacts(caller, &seg.filter, PageRequest::new(None, Some(50)))
                .await
                .map_err(err)?
                .items
                .len();
            page.push(t.elapsed());
            let t = Instant::now();
            counted = contacts.segment_size(caller, seg.id).await.map_err(err)?;
            if i == 0 {
                first_count = t.elapsed();
            } else {
                size.push(t.elapsed());
            }
        }
        println!(
            "segment {name:?}{when}, first page ({shown} rows): {}",
            percentiles(page)
        );
        println!(
            "segment {name:?}{when}, size ({}{}): counted in {:.1} ms, then from the cache {}",
            counted.count,
            if counted.capped { "+" } else { "" },
            first_count.as_secs_f64() * 1000.0,
            percentiles(size)
        );
    }
    Ok(())
}
