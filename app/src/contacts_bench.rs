//! `voronka contacts-bench`: the contacts module through its trait (server time) on a seeded
//! account: search (phone in another format, part of a name, a typo, an e-mail), the first page
//! of a list and of a tag segment, and creating contacts from 16 concurrent callers.

use std::time::{Duration, Instant};

use contacts_api::{ContactFilter, NewContact, Reach};
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
