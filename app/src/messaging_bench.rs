//! `voronka messaging-bench`: the messaging module against the fake providers, with the real HTTP
//! server in this process.
//!
//! - Incoming: Telegram updates (one message each, from 1,000 clients) posted to the channel's
//!   webhook by `concurrency` clients as fast as they are answered: messages accepted per second
//!   and the acknowledgement's p50/p95/p99. Then the workers start and turn them into contacts,
//!   conversations, leads and messages: how long that takes.
//! - Outgoing: a burst of messages queued to the clients' chats on a channel with `rate` per
//!   second, while the fake provider refuses (429) anything over that rate: messages sent per
//!   second in the steady part, and the provider's refusals (zero when the pacing is right).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::web;
use messaging_api::{ConversationFilter, NewChannel, OutgoingMessage, Provider};
use tokio::sync::Mutex;

use crate::automation_bench::quantiles;
use crate::fake_providers::{self as fake, FakeProviders};
use crate::state::AppState;

const CLIENTS: i64 = 1000;

async fn count(state: &AppState, sql: &str) -> Result<i64, String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .map(|r| r.n)
        .map_err(|e| e.to_string())
}

pub async fn run(
    state: web::Data<AppState>,
    db_url: &str,
    jobs: crate::jobs::JobStore,
    email: &str,
    messages: usize,
    concurrency: usize,
    rate: i32,
) -> Result<(), String> {
    let err = |e: kernel::AppError| e.to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (handle, server) =
        crate::server::start_http(state.clone(), listener).map_err(|e| e.to_string())?;
    tokio::spawn(server);
    let fake = FakeProviders::start().await.map_err(|e| e.to_string())?;
    let user = state
        .modules
        .accounts
        .find_user_by_email(email)
        .await
        .map_err(err)?
        .ok_or_else(|| format!("no user with e-mail {email}"))?;
    let caller = kernel::Caller::user(user.account_id, user.id);
    let deals = &state.modules.deals;
    if deals.pipelines(caller).await.map_err(err)?.is_empty() {
        deals
            .create_pipeline(
                caller,
                deals_api::NewPipeline {
                    name: "Sales".into(),
                    stages: vec![deals_api::NewStage {
                        name: "Talks".into(),
                        color: "#99ccff".into(),
                    }],
                },
            )
            .await
            .map_err(err)?;
    }
    let m = &state.modules.messaging;
    let channel = m
        .create_channel(
            caller,
            NewChannel {
                provider: Some(Provider::Telegram),
                name: format!("Bench bot {}", uuid::Uuid::new_v4().simple()),
                token: format!("bench-{}", uuid::Uuid::new_v4().simple()),
                base_url: fake.url.clone(),
                webhook_base: Some(base.clone()),
                rate_per_second: Some(rate),
                ..Default::default()
            },
        )
        .await
        .map_err(err)?;
    let secret = fake
        .webhooks()
        .into_iter()
        .find_map(|w| w.2)
        .ok_or("the channel did not register its webhook")?;
    let hook = format!("{base}/hooks/telegram/{}", channel.webhook_key);

    // --- incoming: acknowledgements ------------------------------------------------------------
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(messages)));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, hook, secret) = (http.clone(), hook.clone(), secret.clone());
        let (next, latencies, refused) = (next.clone(), latencies.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    break;
                }
                let client = (i as i64 % CLIENTS) + 1;
                let body = fake::telegram_text_update(
                    i as i64 + 1,
                    10_000 + client,
                    &format!("Client {client}"),
                    "",
                    1_000_000 + i as i64,
                    "How much is delivery?",
                );
                let t = Instant::now();
                let ok = http
                    .post(&hook)
                    .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                mine.push(t.elapsed().as_secs_f64() * 1000.0);
                if !ok {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let took = started.elapsed().as_secs_f64();
    let lat = std::mem::take(&mut *latencies.lock().await);
    println!(
        "incoming webhooks: {messages} Telegram updates from {concurrency} connections in {took:.1} s = {:.0} accepted/s; acknowledgement {}; refused {}",
        messages as f64 / took,
        quantiles(lat),
        refused.load(Ordering::Relaxed)
    );

    // --- incoming: processing by the workers -----------------------------------------------------
    let config = state.config.clone();
    let backbone = crate::backbone::Backbone::start(
        &config,
        db_url,
        state.pool.clone(),
        jobs,
        state.metrics.clone(),
        crate::backbone::Work {
            subscribers: crate::server::subscribers(&state.modules),
            schemas: crate::server::outbox_schemas(&config),
            modules: Some(state.modules.clone()),
        },
    )
    .await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let processed = loop {
        let left = count(
            &state,
            "SELECT count(*) AS n FROM messaging.inbound WHERE status IN ('pending', 'queued')",
        )
        .await?;
        if left == 0 || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = started.elapsed().as_secs_f64();
    let conversations = count(
        &state,
        &format!(
            "SELECT count(*) AS n FROM messaging.conversations WHERE channel_id = {}",
            channel.id
        ),
    )
    .await?;
    println!(
        "incoming processing: {messages} stored updates → {conversations} conversations with contacts and incoming leads in {took:.1} s = {:.0} messages/s{}",
        messages as f64 / took,
        if processed > 0 {
            format!(" ({processed} still waiting after 10 minutes)")
        } else {
            String::new()
        }
    );

    // --- outgoing: paced sends -------------------------------------------------------------------
    let mut chats = Vec::new();
    let mut page = kernel::paging::PageRequest::new(None, Some(250));
    loop {
        let p = m
            .conversations(
                caller,
                &ConversationFilter {
                    channel_id: Some(channel.id),
                    ..Default::default()
                },
                page,
            )
            .await
            .map_err(err)?;
        chats.extend(p.items.into_iter().map(|c| c.id));
        match p.next {
            Some(n) => page = kernel::paging::PageRequest::new(Some(n), Some(250)),
            None => break,
        }
    }
    let outgoing = (rate as usize * 10).max(1);
    fake.limit_rate(Some(rate as u32));
    fake.clear();
    let started = Instant::now();
    // Queued from 16 callers at once (as many users and robots would).
    let chats = Arc::new(chats);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (chats, next, m) = (chats.clone(), next.clone(), state.modules.messaging.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= outgoing {
                    return Ok::<(), String>(());
                }
                let c = chats[i % chats.len().max(1)];
                m.send(
                    caller,
                    c,
                    OutgoingMessage {
                        text: format!("Offer #{i}"),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let queued = started.elapsed().as_secs_f64();
    let sent = fake.wait_for_sent(outgoing, Duration::from_secs(600)).await;
    let times: Vec<u128> = sent.iter().map(|s| s.at_ms).collect();
    let (first, last) = (
        times.iter().min().copied().unwrap_or(0),
        times.iter().max().copied().unwrap_or(0),
    );
    let span = (last - first).max(1) as f64 / 1000.0;
    let mut most = 0;
    for (i, t0) in times.iter().enumerate() {
        most = most.max(times[i..].iter().take_while(|t| **t < t0 + 1000).count());
    }
    println!(
        "outgoing: {outgoing} messages to {} chats on a channel limited to {rate}/s (queued in {queued:.1} s): {} sent, {:.1}/s over {span:.1} s, at most {most} in any second; provider 429s: {}",
        chats.len(),
        sent.len(),
        sent.len() as f64 / span,
        fake.rejected_429()
    );
    backbone.stop().await;
    fake.stop().await;
    handle.stop(true).await;
    Ok(())
}
