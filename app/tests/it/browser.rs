//! Browser tests: Debian's Chromium driven by playwright-core (tests/browser/*.mjs) against a
//! real server, saving screenshots under target/screenshots/. settings.mjs signs in and creates a
//! colleague; deals.mjs builds a pipeline and works deals on the board, the deal page and the list;
//! contacts.mjs creates, links, finds and merges contacts; transfer.mjs imports a CSV with a bad
//! row and exports a segment (with the job workers running); activities.mjs adds a note and a task
//! from a deal's timeline and completes the task on the tasks page; automation.mjs sets a trigger on
//! the automation screen (a task and a chat message) and drags a deal into its stage;
//! messaging.mjs sees a fake Telegram message arrive in the inbox live, replies, sees a photo
//! arrive and sends a picture back, and accepts the
//! incoming lead; import.mjs imports an amoCRM account from the settings and follows its
//! progress.

use std::path::Path;
use std::process::Command;

use crate::support::{PASSWORD, spawn_app, spawn_app_with_workers};

fn chromium() -> Option<String> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

/// Runs a script of tests/browser against a fresh app with one account; its stdout, or `None`
/// when the browser is not installed (allowed only outside CI).
async fn run(script: &str) -> Option<String> {
    run_app(script, false, None, false).await
}

/// With `jobs`, the app runs its job workers too (imports, exports, event deliveries); with
/// `deal`, the account gets a pipeline with a deal of that name, whose page the script gets as
/// DEAL_URL.
/// With `chat`, a fake Telegram (voronka::fake_providers) runs too, with a channel connected
/// to it: the script gets FAKE_URL, HOOK_URL and HOOK_SECRET to make clients write; with `deal`
/// as well, a client has written and the deal is that client's chat.
async fn run_app(script: &str, jobs: bool, deal: Option<&str>, chat: bool) -> Option<String> {
    let (script, browser) = prepared(script)?;
    let (app, backbone) = if jobs {
        let (app, backbone) = spawn_app_with_workers().await;
        (app, Some(backbone))
    } else {
        (spawn_app().await, None)
    };
    let t = app.tenant("Browser Co").await;
    let mut deal_id = None;
    let deal_url = match deal {
        Some(name) => {
            let caller = kernel::Caller::user(t.account, t.admin.id);
            let deals = &app.state.modules.deals;
            let p = deals
                .create_pipeline(
                    caller,
                    deals_api::NewPipeline {
                        name: "Sales".into(),
                        stages: vec![
                            deals_api::NewStage {
                                name: "Talks".into(),
                                color: "#99ccff".into(),
                            },
                            deals_api::NewStage {
                                name: "Proposal".into(),
                                color: "#ffcc99".into(),
                            },
                        ],
                    },
                )
                .await
                .unwrap();
            let d = deals
                .create_deal(caller, deals_api::NewDeal::new(p.id, name))
                .await
                .unwrap();
            deal_id = Some(d.id.0);
            format!("{}/deals/{}", app.url, d.id)
        }
        None => String::new(),
    };
    let mut chat_env: Vec<(&str, String)> = Vec::new();
    let fake = if chat {
        let fake = voronka::fake_providers::FakeProviders::start()
            .await
            .unwrap();
        let caller = kernel::Caller::user(t.account, t.admin.id);
        let deals = &app.state.modules.deals;
        if deals.pipelines(caller).await.unwrap().is_empty() {
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
                .unwrap();
        }
        let m = &app.state.modules.messaging;
        let channel = m
            .create_channel(
                caller,
                messaging_api::NewChannel {
                    provider: Some(messaging_api::Provider::Telegram),
                    token: "browser-bot".into(),
                    base_url: fake.url.clone(),
                    webhook_base: Some(app.url.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let secret = fake
            .webhooks()
            .into_iter()
            .find_map(|w| w.2)
            .expect("setWebhook with a secret");
        let hook = format!("{}/hooks/telegram/{}", app.url, channel.webhook_key);
        if let Some(deal) = deal_id {
            let update =
                voronka::fake_providers::telegram_text_update(1, 4242, "Olga", "olga", 1, "Hi!");
            let status = voronka::fake_providers::post_telegram_update(&hook, &secret, &update)
                .await
                .unwrap();
            assert_eq!(status, 200);
            let mut conversation = None;
            for _ in 0..200 {
                let page = m
                    .conversations(caller, &Default::default(), Default::default())
                    .await
                    .unwrap();
                if let Some(c) = page.items.into_iter().next() {
                    conversation = Some(c);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let c = conversation.expect("the client's conversation");
            let lead = c.deal_id;
            m.link_deal(caller, c.id, Some(deal)).await.unwrap();
            if let Some(lead) = lead {
                app.state
                    .modules
                    .deals
                    .delete_deal(caller, deals_api::DealId(lead))
                    .await
                    .unwrap();
            }
        }
        chat_env = vec![
            ("FAKE_URL", fake.url.clone()),
            ("HOOK_URL", hook),
            ("HOOK_SECRET", secret),
        ];
        Some(fake)
    } else {
        None
    };
    chat_env.push(("DEAL_URL", deal_url));
    let stdout = launch(&script, &browser, &app.url, &t.admin.email, chat_env).await;
    if let Some(b) = backbone {
        b.stop().await;
    }
    if let Some(f) = fake {
        f.stop().await;
    }
    Some(stdout)
}

/// The script's path and the browser; `None` when the browser is not installed (allowed only
/// outside CI).
fn prepared(script: &str) -> Option<(std::path::PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let modules = root.join("tests/browser/node_modules/playwright-core");
    let (Some(browser), true) = (chromium(), modules.exists()) else {
        if std::env::var_os("VORONKA_TEST_REQUIRE_BROWSER").is_some() {
            panic!(
                "the browser test needs Debian's chromium and `npm ci` in tests/browser (scripts/test installs both)"
            );
        }
        eprintln!(
            "SKIPPED browser test: chromium or playwright-core missing (scripts/test installs them)"
        );
        return None;
    };
    Some((root.join("tests/browser").join(script), browser))
}

/// Runs `script` with node against the app at `url`, signed in as `email`; its stdout.
async fn launch(
    script: &Path,
    browser: &str,
    url: &str,
    email: &str,
    env: Vec<(&str, String)>,
) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .env("BASE_URL", url)
        .env("ADMIN_EMAIL", email)
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("CHROMIUM", browser)
        .env("SCREENSHOTS", shots)
        .envs(env);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_creates_a_colleague_who_then_signs_in() {
    if let Some(stdout) = run("settings.mjs").await {
        assert!(stdout.contains("signed in as the new user"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sales_team_builds_a_pipeline_and_works_its_deals_on_the_board() {
    if let Some(stdout) = run("deals.mjs").await {
        assert!(stdout.contains("deals flow done"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_is_created_linked_found_by_phone_and_merged_with_its_duplicate() {
    if let Some(stdout) = run("contacts.mjs").await {
        assert!(stdout.contains("contacts flow done"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_with_a_bad_row_is_imported_and_a_segment_exported() {
    if let Some(stdout) = run_app("transfer.mjs", true, None, false).await {
        assert!(stdout.contains("transfer flow done"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_set_on_the_automation_screen_acts_when_a_deal_is_dragged_to_its_stage() {
    if let Some(stdout) = run_app("automation.mjs", true, Some("Supply contract"), true).await {
        assert!(stdout.contains("task created by the robot"), "{stdout}");
        assert!(stdout.contains("message sent by the robot"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_and_a_task_from_a_deals_timeline_reach_the_tasks_page_and_back() {
    if let Some(stdout) = run_app("activities.mjs", true, Some("Supply contract"), false).await {
        assert!(stdout.contains("activities flow done"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_message_shows_up_live_the_manager_replies_and_accepts_the_lead() {
    if let Some(stdout) = run_app("messaging.mjs", true, None, true).await {
        assert!(stdout.contains("messaging flow done"), "{stdout}");
    }
}

/// A pipeline with a history: 9 deals, 6 moved on, 3 of them won and 1 lost; its events
/// projected into analytics as the bus would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_opens_the_funnel_changes_the_period_and_drills_down_to_the_deals() {
    let Some((script, browser)) = prepared("analytics.mjs") else {
        return;
    };
    let app = spawn_app().await;
    let t = app.tenant("Browser Co").await;
    let caller = kernel::Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let stage = |name: &str| deals_api::NewStage {
        name: name.into(),
        color: "#99ccff".into(),
    };
    let p = deals
        .create_pipeline(
            caller,
            deals_api::NewPipeline {
                name: "Sales".into(),
                stages: vec![stage("Talks"), stage("Proposal"), stage("Contract")],
            },
        )
        .await
        .unwrap();
    let open: Vec<deals_api::StageId> = p
        .stages
        .iter()
        .filter(|s| s.kind == deals_api::StageKind::Open)
        .map(|s| s.id)
        .collect();
    let reason = deals
        .create_loss_reason(caller, "Chose a rival")
        .await
        .unwrap();
    let to = |stage_id, loss_reason_id| deals_api::MoveTo {
        stage_id,
        after: None,
        loss_reason_id,
    };
    for i in 0..9i64 {
        let mut new = deals_api::NewDeal::new(p.id, format!("Deal {}", i + 1));
        new.price = 10_000 * (i + 1);
        new.stage_id = Some(open[0]);
        let id = deals.create_deal(caller, new).await.unwrap().id;
        if i < 6 {
            deals
                .move_deal(caller, id, to(open[1], None))
                .await
                .unwrap();
        }
        if i < 3 {
            deals
                .move_deal(caller, id, to(open[2], None))
                .await
                .unwrap();
            deals
                .move_deal(caller, id, to(deals_api::WON, None))
                .await
                .unwrap();
        } else if i == 3 {
            deals
                .move_deal(caller, id, to(deals_api::LOST, Some(reason.id)))
                .await
                .unwrap();
        }
    }
    let mut conn = app.state.pool.get().await.unwrap();
    let events = crate::support::claim_events(&mut conn, "deals", 1000).await;
    kernel::inbox::handle_batch(&mut conn, &analytics::Projector, &events)
        .await
        .unwrap();
    drop(conn);
    let env = vec![("PIPELINE_ID", p.id.0.to_string())];
    let stdout = launch(&script, &browser, &app.url, &t.admin.email, env).await;
    assert!(stdout.contains("analytics flow done"), "{stdout}");
}

/// Another account of the same server stands in for amoCRM (its amoCRM-compatible API): a
/// pipeline with three leads and a contact, read with an API token of its administrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amocrm_account_is_imported_from_the_settings_with_its_progress_followed() {
    let Some((script, browser)) = prepared("import.mjs") else {
        return;
    };
    let (app, backbone) = spawn_app_with_workers().await;
    let target = app.tenant("Browser Co").await;
    let source = app.tenant("Source Co").await;
    let caller = kernel::Caller::user(source.account, source.admin.id);
    let m = &app.state.modules;
    let p = m
        .deals
        .create_pipeline(
            caller,
            deals_api::NewPipeline {
                name: "Wholesale".into(),
                stages: vec![deals_api::NewStage {
                    name: "Talks".into(),
                    color: "#99ccff".into(),
                }],
            },
        )
        .await
        .unwrap();
    let olga = m
        .contacts
        .create_contact(
            caller,
            contacts_api::NewContact {
                first_name: "Olga".into(),
                last_name: "Source".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for i in 1..=3 {
        let mut deal = deals_api::NewDeal::new(p.id, format!("Imported lead {i}"));
        deal.contact_ids = vec![olga.id.0];
        m.deals.create_deal(caller, deal).await.unwrap();
    }
    let token = m
        .accounts
        .create_token(caller, "move", 30)
        .await
        .unwrap()
        .secret;
    let stdout = launch(
        &script,
        &browser,
        &app.url,
        &target.admin.email,
        vec![("SOURCE_URL", app.url.clone()), ("SOURCE_TOKEN", token)],
    )
    .await;
    backbone.stop().await;
    assert!(stdout.contains("amocrm import flow done"), "{stdout}");
}
