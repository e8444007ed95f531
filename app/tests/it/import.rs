//! Moving off amoCRM: the reader against a local server giving recorded amoCRM answers (the
//! shapes of `shared/reference/amocrm-api-v4.md`) for what a round trip through Voronka's own
//! API cannot produce: 204 pages, a 429 with Retry-After, a custom field type Voronka does not
//! have, a user without an e-mail.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use importer::{AmoClient, AmoError, ClientOptions};
use serde_json::{Value, json};

const TOKEN: &str = "recorded-long-lived-token";

#[derive(Default)]
struct Recorded {
    /// (when, path with query) of every request, in order.
    requests: Vec<(Instant, String)>,
    /// Whether the leads' first page has answered 429 already.
    throttled: bool,
    /// The OAuth integration's tokens now: (access, refresh, generation), and the API calls the
    /// access token has made (it "expires" after `OAUTH_USES`).
    oauth: Option<(String, String, u32)>,
    oauth_uses: u32,
    refreshes: u32,
}

/// API calls an OAuth access token of the recorded account makes before it expires (401).
const OAUTH_USES: u32 = 10;

/// The recorded account's `/oauth2/access_token`: the integration `integration-1` with secret
/// `s3cret` and redirect URI `https://voronka.test/back` trades the code `consent-code`, then
/// refresh tokens (each used once), for JWT-like token pairs.
fn oauth_exchange(body: &[u8], r: &mut Recorded) -> HttpResponse {
    let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let integration = b["client_id"] == "integration-1"
        && b["client_secret"] == "s3cret"
        && b["redirect_uri"] == "https://voronka.test/back";
    let next = match (b["grant_type"].as_str(), &r.oauth) {
        _ if !integration => None,
        (Some("authorization_code"), _) if b["code"] == "consent-code" => Some(1),
        (Some("refresh_token"), Some((_, refresh, n))) if b["refresh_token"] == *refresh => {
            r.refreshes += 1;
            Some(n + 1)
        }
        _ => None,
    };
    let Some(n) = next else {
        return HttpResponse::BadRequest().json(json!({
            "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
            "hint": "Authorization code has expired or the token has been revoked"
        }));
    };
    let tokens = (
        format!("eyJ.oauth-access-{n}"),
        format!("def50200oauth-refresh-{n}"),
        n,
    );
    r.oauth = Some(tokens.clone());
    r.oauth_uses = 0;
    HttpResponse::Ok().json(json!({
        "token_type": "Bearer", "expires_in": 86400,
        "access_token": tokens.0, "refresh_token": tokens.1
    }))
}

fn hal(key: &str, items: Vec<Value>, next: Option<String>) -> HttpResponse {
    let mut links = json!({"self": {"href": "https://example.amocrm.ru/api/v4/x"}});
    if let Some(n) = next {
        links["next"] = json!({ "href": n });
    }
    HttpResponse::Ok()
        .content_type("application/hal+json")
        .json(json!({"_page": 1, "_links": links, "_embedded": { key: items }}))
}

fn lead(id: i64) -> Value {
    let mut values = vec![
        json!({"field_id": 501, "field_name": "Source", "field_code": null,
        "field_type": "select", "values": [{"value": "Web", "enum_id": 9001}]}),
    ];
    if id % 3 == 0 {
        values.push(json!({"field_id": 502, "field_name": "Legal entity", "field_code": null,
            "field_type": "legal_entity", "values": [{"value": {"name": "LLC Horns", "vat_id": "7701"}}]}));
    }
    json!({"id": id, "name": format!("Lead {id}"), "price": id * 10, "responsible_user_id": 11,
        "group_id": 0, "status_id": 142, "pipeline_id": 7001, "loss_reason_id": null,
        "created_by": 11, "updated_by": 11, "created_at": 1_700_000_000 + id, "updated_at": 1_700_000_500,
        "closed_at": null, "closest_task_at": null, "is_deleted": false,
        "custom_fields_values": values, "score": null, "account_id": 31361463,
        "_links": {"self": {"href": format!("https://example.amocrm.ru/api/v4/leads/{id}")}},
        "_embedded": {"tags": [], "contacts": [{"id": 301, "is_main": true}], "companies": []}})
}

async fn answer(
    req: HttpRequest,
    body: web::Bytes,
    rec: web::Data<Mutex<Recorded>>,
) -> HttpResponse {
    let path = req.path().to_string();
    if path == "/oauth2/access_token" {
        return oauth_exchange(&body, &mut rec.lock().unwrap());
    }
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let page: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let limit: usize = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(50);
    {
        let mut r = rec.lock().unwrap();
        r.requests
            .push((Instant::now(), format!("{path}?{}", req.query_string())));
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let oauth_ok = {
        let mut r = rec.lock().unwrap();
        let live = r
            .oauth
            .as_ref()
            .is_some_and(|(access, _, _)| auth == format!("Bearer {access}"));
        if live {
            r.oauth_uses += 1;
        }
        live && r.oauth_uses <= OAUTH_USES
    };
    if auth != format!("Bearer {TOKEN}") && !oauth_ok {
        return HttpResponse::Unauthorized()
            .content_type("application/problem+json")
            .json(json!({"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401, "detail": "Invalid access token"}));
    }
    let next = |p: u32| {
        Some(format!(
            "https://example.amocrm.ru{path}?page={}&limit={limit}",
            p + 1
        ))
    };
    match path.as_str() {
        "/api/v4/account" => HttpResponse::Ok()
            .json(json!({"id": 31361463, "name": "Horns and Hooves", "subdomain": "example"})),
        "/api/v4/users" => hal(
            "users",
            vec![
                json!({"id": 11, "name": "Anna", "email": "anna@example.test", "lang": "ru", "rights": {}}),
                json!({"id": 12, "name": "Robot", "email": "", "lang": "ru", "rights": {}}),
            ],
            None,
        ),
        "/api/v4/leads/pipelines" => hal(
            "pipelines",
            vec![
                json!({"id": 7001, "name": "Sales", "sort": 1, "is_main": true,
            "_embedded": {"statuses": [
                {"id": 58141803, "name": "Incoming leads", "sort": 10, "type": 1, "pipeline_id": 7001, "color": "#c1c1c1"},
                {"id": 142, "name": "Closed - won", "sort": 10000, "type": 0, "pipeline_id": 7001, "color": "#CCFF66"},
                {"id": 143, "name": "Closed - lost", "sort": 11000, "type": 0, "pipeline_id": 7001, "color": "#D5D8DB"}]}}),
            ],
            None,
        ),
        "/api/v4/leads/custom_fields" => hal(
            "custom_fields",
            vec![
                json!({"id": 501, "name": "Source", "type": "select", "code": null, "enums": [{"id": 9001, "value": "Web", "sort": 1}],
                       "group_id": "leads_29741591099841",
                       "required_statuses": [{"pipeline_id": 7001, "status_id": 142}, {"pipeline_id": 7001, "status_id": 7999}]}),
                json!({"id": 502, "name": "Legal entity", "type": "legal_entity", "code": null, "enums": null}),
            ],
            None,
        ),
        "/api/v4/leads/custom_fields/groups" => hal(
            "custom_field_groups",
            vec![
                json!({"id": "leads_29741591099841", "name": "Delivery", "sort": 2, "is_predefined": false,
                       "entity_type": "leads", "fields": null,
                       "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/leads/custom_fields/groups/leads_29741591099841"}}}),
            ],
            None,
        ),
        "/api/v4/contacts/custom_fields" => hal(
            "custom_fields",
            vec![
                json!({"id": 601, "name": "Phone", "type": "multitext", "code": "PHONE", "enums": [{"id": 1, "value": "WORK"}]}),
            ],
            None,
        ),
        "/api/v4/leads/tags" => hal(
            "tags",
            vec![json!({"id": 1, "name": "vip", "color": null})],
            None,
        ),
        "/api/v4/contacts" => hal(
            "contacts",
            vec![
                json!({"id": 301, "name": "Ivan"}),
                json!({"id": 302, "name": "Olga"}),
            ],
            None,
        ),
        "/api/v4/leads" => {
            let first_time = {
                let mut r = rec.lock().unwrap();
                !std::mem::replace(&mut r.throttled, true)
            };
            if first_time {
                return HttpResponse::TooManyRequests()
                    .insert_header(("Retry-After", "1"))
                    .body("Too Many Requests");
            }
            // 260 leads: a full page with a next link, then the last ten.
            let ids: Vec<i64> =
                ((page as i64 - 1) * 250 + 1..=(page as i64 * 250).min(260)).collect();
            let items = ids.into_iter().map(lead).collect();
            hal("leads", items, if page == 1 { next(page) } else { None })
        }
        "/api/v4/tasks" => hal(
            "tasks",
            vec![
                json!({"id": 901, "text": "Call", "entity_type": "leads", "entity_id": 1,
            "task_type_id": 1, "is_completed": false, "complete_till": 1_700_100_000}),
            ],
            None,
        ),
        // Events: a page that promises another, then 204 (the list ends there).
        "/api/v4/events" if page == 1 => hal(
            "events",
            vec![
                json!({"id": "01a", "type": "lead_added", "entity_id": 1, "entity_type": "lead",
                       "created_by": 11, "created_at": 1_700_000_001, "value_after": [], "value_before": [],
                       "account_id": 31361463}),
                json!({"id": "01b", "type": "lead_status_changed", "entity_id": 3, "entity_type": "lead",
                       "created_by": 11, "created_at": 1_700_000_400,
                       "value_before": [{"lead_status": {"id": 7101, "pipeline_id": 7001}}],
                       "value_after": [{"lead_status": {"id": 142, "pipeline_id": 7001}}],
                       "account_id": 31361463}),
                json!({"id": "01c", "type": "task_added", "entity_id": 801, "entity_type": "task",
                       "created_by": 11, "created_at": 1_700_000_450, "account_id": 31361463}),
            ],
            next(page),
        ),
        // Everything else (loss reasons, groups, companies, notes, the second events page) is
        // empty: 204 with no body.
        _ => HttpResponse::NoContent().finish(),
    }
}

async fn fake_amocrm() -> (String, web::Data<Mutex<Recorded>>) {
    let rec = web::Data::new(Mutex::new(Recorded::default()));
    let data = rec.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(answer))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, rec)
}

/// The most requests that fell within any one second.
fn busiest_second(requests: &[(Instant, String)]) -> usize {
    let times: Vec<Instant> = requests.iter().map(|r| r.0).collect();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn the_dry_run_reads_a_recorded_account_politely_and_lists_what_cannot_come() {
    let (url, rec) = fake_amocrm().await;
    let client = Arc::new(AmoClient::new(&url, TOKEN, ClientOptions::default()).unwrap());
    let survey = importer::survey(&client).await.unwrap();
    let count = |e: &str| {
        survey
            .counts
            .iter()
            .find(|(n, _)| n == e)
            .map(|(_, c)| *c)
            .unwrap_or_else(|| panic!("no count for {e}: {:?}", survey.counts))
    };
    assert_eq!(survey.account, Some(("Horns and Hooves".into(), 31361463)));
    assert_eq!(count("users"), 2);
    assert_eq!((count("pipelines"), count("statuses")), (1, 3));
    assert_eq!(count("loss reasons"), 0, "a 204 is an empty list");
    assert_eq!(count("leads/custom_fields"), 2);
    assert_eq!(count("leads/tags"), 1);
    assert_eq!(count("companies"), 0);
    assert_eq!(count("contacts"), 2);
    assert_eq!(count("leads"), 260, "both pages, after the 429");
    assert_eq!(count("tasks"), 1);
    assert_eq!(
        count("events"),
        3,
        "the 204 after a next link ends the list"
    );

    // What cannot come over: the user without an e-mail, the field type Voronka lacks and its
    // values (every third lead has one).
    let reasons: Vec<String> = survey
        .problems
        .iter()
        .map(|p| format!("{} {}: {}", p.entity, p.id, p.reason))
        .collect();
    assert_eq!(survey.problems.len(), 3, "{reasons:#?}");
    assert!(reasons[0].starts_with("users 12:") && reasons[0].contains("no e-mail"));
    assert!(
        reasons[1].starts_with("leads/custom_fields 502:") && reasons[1].contains("legal_entity")
    );
    assert!(
        reasons[2].contains("86 value(s) of field \"Legal entity\""),
        "{reasons:#?}"
    );
    let report = survey.report();
    assert!(
        report.contains("problems (3)") && report.contains("throttled 1 times"),
        "{report}"
    );

    let r = rec.lock().unwrap();
    // Pages of 250 (events: 100), the token on every request.
    assert!(
        r.requests
            .iter()
            .filter(|(_, p)| p.starts_with("/api/v4/leads?"))
            .all(|(_, p)| p.contains("limit=250") && p.contains("with=contacts"))
    );
    assert!(
        r.requests
            .iter()
            .any(|(_, p)| p.starts_with("/api/v4/events?") && p.contains("limit=100"))
    );
    // The 429 was waited out for its Retry-After before the page was asked again.
    let leads: Vec<&(Instant, String)> = r
        .requests
        .iter()
        .filter(|(_, p)| p.starts_with("/api/v4/leads?page=1&"))
        .collect();
    assert_eq!(leads.len(), 2);
    assert!(leads[1].0.duration_since(leads[0].0) >= Duration::from_millis(990));
    // Never more than 7 requests in any second (the client keeps to 6).
    let busiest = busiest_second(&r.requests);
    assert!(busiest <= 7, "{busiest} requests in one second");
    assert_eq!(client.traffic().requests as usize, r.requests.len());
}

#[tokio::test]
async fn a_refused_token_stops_the_read_with_a_clear_error() {
    let (url, _rec) = fake_amocrm().await;
    let client = AmoClient::new(&url, "not-the-token", ClientOptions::default()).unwrap();
    let err = importer::survey(&client).await.unwrap_err();
    assert!(
        matches!(err, AmoError::Refused { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("refused the token"));
}

#[tokio::test]
async fn server_errors_are_retried_and_an_unreachable_account_is_named() {
    // Nothing listens on this port: every attempt fails on the network.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = AmoClient::new(
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        ClientOptions {
            attempts: 3,
            backoff: Duration::from_millis(10),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let err = client.get("/api/v4/account", &[]).await.unwrap_err();
    assert!(matches!(err, AmoError::Unreachable { .. }), "{err:?}");
    assert_eq!(client.traffic().requests, 3);
    assert_eq!(client.traffic().retried, 2);
}

#[tokio::test]
async fn a_recorded_account_is_written_and_what_cannot_come_is_reported() {
    let (url, _rec) = fake_amocrm().await;
    let app = crate::support::spawn_app().await;
    let target = app.tenant("Hooves Target").await;
    let caller = kernel::Caller::user(target.account, target.admin.id);
    let m = &app.state.modules;
    let client = AmoClient::new(&url, TOKEN, ClientOptions::default()).unwrap();
    let outcome = voronka::import::run(&app.state, &client, target.account, |_| {})
        .await
        .expect("import");
    let p = &outcome.progress;
    assert_eq!(p.read["leads"], 260);
    assert_eq!(p.created["leads"], 260);
    assert_eq!(p.created["contacts"], 2);
    assert_eq!(p.created["tasks"], 1);

    // Both users come over inactive: Anna by her e-mail, the robot under a placeholder one,
    // reported.
    let users = m
        .accounts
        .list_users(caller, kernel::paging::PageRequest::new(None, Some(50)))
        .await
        .unwrap()
        .items;
    let anna = users
        .iter()
        .find(|u| u.email == "anna@example.test")
        .expect("Anna");
    assert!(!anna.is_active);
    let robot = users.iter().find(|u| u.name == "Robot").expect("the robot");
    assert!(
        !robot.is_active && robot.email.ends_with("@import.invalid"),
        "{robot:?}"
    );
    let skipped: Vec<String> = p
        .skipped
        .iter()
        .map(|s| format!("{} {}: {}", s.entity, s.id, s.reason))
        .collect();
    assert!(
        skipped.iter().any(|s| s.starts_with("users 12:")),
        "{skipped:#?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.starts_with("leads/custom_fields 502:") && s.contains("legal_entity")),
        "{skipped:#?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("86 value(s) of field \"Legal entity\"")),
        "{skipped:#?}"
    );
    // amoCRM's event log: the entries about leads go to their deals' timelines; the one about
    // a task is reported.
    assert_eq!(p.created["events"], 2);
    assert!(
        skipped
            .iter()
            .any(|s| s.starts_with("events 0: 1 entries") && s.contains("about task")),
        "{skipped:#?}"
    );

    // amoCRM's won status (142) is the won stage of the imported pipeline; each lead keeps its
    // price, author, times, the value amoCRM knows and its main contact.
    let sales = m
        .deals
        .pipelines(caller)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "Sales")
        .expect("the pipeline");
    let won = sales
        .stages
        .iter()
        .find(|s| s.kind == deals_api::StageKind::Won)
        .unwrap();
    let deals = m
        .deals
        .list(
            caller,
            &deals_api::DealFilter::default(),
            deals_api::ListSort::Id,
            false,
            kernel::paging::PageRequest::new(None, Some(250)),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(deals.len(), 250, "a full page of the 260");
    let third = deals.iter().find(|d| d.name == "Lead 3").unwrap();
    assert_eq!(third.stage_id, won.id);
    assert_eq!(third.price, 30);
    assert_eq!(third.responsible_user_id, anna.id);
    assert_eq!(third.created_by, anna.id.0);
    assert_eq!(third.created_at.timestamp(), 1_700_000_003);
    assert_eq!(third.updated_at.timestamp(), 1_700_000_500);
    assert_eq!(third.custom_fields.len(), 1, "{:?}", third.custom_fields);
    assert!(third.main_contact_id.is_some());
    // amoCRM's field group comes over with its field in it; the field is required at the won
    // stage as in amoCRM, and the requirement at a stage that is not there is reported.
    let groups = m.deals.field_groups(caller).await.unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| (g.name.as_str(), g.sort))
            .collect::<Vec<_>>(),
        [("Delivery", 2)]
    );
    let source = m
        .deals
        .custom_fields(caller)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == "Source")
        .unwrap();
    assert_eq!(source.group_id, Some(groups[0].id));
    assert_eq!(
        source.required_statuses,
        [deals_api::RequiredAt {
            pipeline_id: sales.id,
            status_id: won.id
        }]
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.starts_with("leads/custom_fields 501:") && s.contains("stage 7999")),
        "{skipped:#?}"
    );
    assert_eq!(p.created["leads/custom_field_groups"], 1);

    let moved = app
        .count(&format!(
            "SELECT count(*) AS n FROM activities.log WHERE entity = 'deal' AND entity_id = {}
               AND event_type = 'amocrm.lead_status_changed' AND actor_kind = 'user' AND actor_id = {}
               AND occurred_at = to_timestamp(1700000400)
               AND after @> '[{{\"lead_status\": {{\"id\": 142}}}}]'",
            third.id.0, anna.id.0
        ))
        .await;
    assert_eq!(
        moved, 1,
        "the status change is in Lead 3's timeline, by Anna, at its time"
    );
    // Its page shows it.
    let web = app.signed_in(&target.admin.email).await;
    let (_, page) = web.text(&format!("/deals/{}", third.id.0)).await;
    assert!(
        page.contains("From amoCRM") && page.contains("lead_status_changed"),
        "the deal page shows the imported entry"
    );
    let tasks = m
        .activities
        .tasks(
            caller,
            &activities_api::TaskQuery::default(),
            kernel::paging::PageRequest::new(None, Some(50)),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].text, "Call");
}

/// Settings → Import from amoCRM, without workers (the run stays queued): administrators only,
/// bad input refused with a form error, one run under way at a time, the token never shown, and
/// another account sees nothing of it.
#[tokio::test]
async fn the_settings_queue_one_import_at_a_time_for_administrators_only() {
    use crate::support::{Client, PASSWORD, spawn_app_with_jobs};
    let app = spawn_app_with_jobs(&[voronka::import::IMPORT_RUNS], |_| {}).await;
    let t = app.tenant("Hooves Target").await;
    let admin = Client::new(&app.url);
    admin.sign_in(&t.admin.email, PASSWORD).await;

    let (status, html) = admin.text("/settings/import").await;
    assert_eq!(status, 200);
    assert!(html.contains("No import has been started yet"));

    // Bad input: a form error, nothing queued.
    let res = admin
        .submit(
            "/settings/import",
            "/settings/import",
            &[
                ("base_url", "ftp://example.amocrm.ru"),
                ("token", "secret-1"),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("Enter an address such as https://example.amocrm.ru."));
    let res = admin
        .submit(
            "/settings/import",
            "/settings/import",
            &[("base_url", "https://example.amocrm.ru"), ("token", "  ")],
        )
        .await;
    assert_eq!(res.status(), 400);
    assert!(
        importer::Store::new(app.state.pool.clone())
            .runs(t.account, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Queued; a second start of the same source is refused while it is under way.
    let res = admin
        .submit(
            "/settings/import",
            "/settings/import",
            &[
                ("base_url", "https://Example.amocrm.ru/"),
                ("token", "secret-token-42"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        crate::support::location(&res),
        "/settings/import?done=amo_import.queued"
    );
    let res = admin
        .submit(
            "/settings/import",
            "/settings/import",
            &[
                ("base_url", "https://example.amocrm.ru"),
                ("token", "secret-token-43"),
            ],
        )
        .await;
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("is under way"));
    let runs = importer::Store::new(app.state.pool.clone())
        .runs(t.account, 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, "queued");
    assert_eq!(runs[0].source, "https://example.amocrm.ru");
    let (_, html) = admin.text("/settings/import/status").await;
    assert!(html.contains("data-state=\"queued\"") && html.contains("hx-trigger=\"every 2s\""));
    assert!(!html.contains("secret-token"), "the token is never shown");

    // A colleague who is not an administrator, and another account's administrator.
    let member = app.member(&t, "ivan@hooves.test").await;
    let ivan = Client::new(&app.url);
    ivan.sign_in(&member.email, PASSWORD).await;
    assert_eq!(ivan.get("/settings/import").await.status(), 403);
    assert_eq!(ivan.get("/settings/import/status").await.status(), 403);
    let other = app.tenant("Other Co").await;
    let stranger = Client::new(&app.url);
    stranger.sign_in(&other.admin.email, PASSWORD).await;
    let (status, html) = stranger.text("/settings/import").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("No import has been started yet"),
        "runs are per account"
    );
}

/// Robots leave imported records be: a trigger on the imported pipeline's stages does not run
/// for the 260 leads the import created (nor does anyone get "a deal handed to you"), while a
/// deal a manager creates there afterwards starts it as usual.
#[tokio::test]
async fn robots_do_not_react_to_what_an_import_brings_over() {
    use automation_api::{Action, Delay, TriggerDraft, When};
    let (url, _rec) = fake_amocrm().await;
    // The job store, with the backbone started only once the robots are saved.
    let queues = voronka::server::queues();
    let app = crate::support::spawn_app_with_jobs(
        &queues.iter().map(String::as_str).collect::<Vec<_>>(),
        |c| c.jobs.poll_ms = 20,
    )
    .await;
    let target = app.tenant("Quiet Import").await;
    let admin = kernel::Caller::user(target.account, target.admin.id);
    let m = &app.state.modules;
    let client = AmoClient::new(&url, TOKEN, ClientOptions::default()).unwrap();
    let outcome = voronka::import::run(&app.state, &client, target.account, |_| {})
        .await
        .expect("import");
    assert_eq!(outcome.progress.created["leads"], 260);
    // A robot on every stage of the imported pipeline, saved before any of the import's events
    // reach the automation module.
    let sales = m
        .deals
        .pipelines(admin)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "Sales")
        .expect("the pipeline");
    for s in &sales.stages {
        m.automation
            .save_trigger(
                admin,
                None,
                TriggerDraft {
                    name: format!("Welcome in {}", s.name),
                    pipeline_id: sales.id.0,
                    stage_id: s.id.0,
                    when: When::CreatedOrMoved,
                    conditions: vec![],
                    delay: Delay::Now,
                    working_hours: false,
                    actions: vec![Action::CreateTask {
                        task_type_id: activities_api::CALL.0,
                        text: "Welcome call".into(),
                        due_in_minutes: 60,
                    }],
                    enabled: true,
                },
            )
            .await
            .unwrap();
    }
    let backbone = crate::support::start_backbone(&app).await;
    let open = sales
        .stages
        .iter()
        .find(|s| !s.kind.is_closed())
        .unwrap_or_else(|| panic!("an open stage: {:?}", sales.stages));
    let mine = m
        .deals
        .create_deal(
            admin,
            deals_api::NewDeal {
                stage_id: Some(open.id),
                ..deals_api::NewDeal::new(sales.id, "Made here")
            },
        )
        .await
        .unwrap();
    // The manager's deal gets its run; by then every earlier event was handled too.
    for _ in 0..600 {
        if app
            .count("SELECT count(*) AS n FROM automation.runs WHERE status = 'done'")
            .await
            >= 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..600 {
        if app
            .count("SELECT count(*) AS n FROM deals.outbox WHERE published_at IS NULL")
            .await
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM automation.runs WHERE deal_id = {}",
            mine.id.0
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM automation.runs").await,
        1,
        "no run for the imported leads"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.notifications WHERE kind <> 'task_due'")
            .await,
        0,
        "nobody is told of the imported deals (an imported task that is due is told of)"
    );
    backbone.stop().await;
}

/// The OAuth code flow: a wrong code is refused with amoCRM's reason; the right one is traded
/// for tokens, an access token that expires half-way is renewed with the refresh token (which
/// rotates) and the import goes on; the last tokens are in the token file (owner-only), so a
/// later run needs no new code.
#[tokio::test]
async fn an_integration_imports_with_the_oauth_code_and_renews_its_token() {
    let (url, rec) = fake_amocrm().await;
    let dir = std::env::temp_dir().join(format!("voronka-oauth-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    let oauth = |secret: &str| importer::OAuthClient {
        client_id: "integration-1".into(),
        client_secret: secret.into(),
        redirect_uri: "https://voronka.test/back".into(),
        token_file: Some(file.clone()),
        sink: None,
    };
    let refused = AmoClient::with_oauth(
        &url,
        oauth("wrong"),
        Some("consent-code"),
        ClientOptions::default(),
    )
    .await
    .err()
    .expect("a wrong secret is refused");
    assert!(
        refused.contains("refused the OAuth exchange (400)"),
        "{refused}"
    );
    assert!(refused.contains("has expired"), "{refused}");
    assert!(!file.exists(), "nothing kept");

    let client = AmoClient::with_oauth(
        &url,
        oauth("s3cret"),
        Some("consent-code"),
        ClientOptions::default(),
    )
    .await
    .expect("the code is traded");
    let app = crate::support::spawn_app().await;
    let target = app.tenant("OAuth Target").await;
    let outcome = voronka::import::run(&app.state, &client, target.account, |_| {})
        .await
        .expect("import");
    assert_eq!(outcome.progress.created["leads"], 260);
    let (refreshes, generation) = {
        let r = rec.lock().unwrap();
        (r.refreshes, r.oauth.as_ref().unwrap().2)
    };
    assert!(refreshes >= 1, "the expired access token was renewed");
    let kept: importer::Tokens =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        kept.refresh_token,
        format!("def50200oauth-refresh-{generation}"),
        "the rotated one"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // A later run goes on with the kept tokens, no code.
    let again = AmoClient::with_oauth(&url, oauth("s3cret"), None, ClientOptions::default())
        .await
        .expect("the kept tokens");
    assert!(again.get("/api/v4/account", &[]).await.unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Settings → Import from amoCRM with an integration: a wrong secret is told on the form and
/// queues nothing; the right one trades the code at once, and the background run renews the
/// expiring access token as it goes, keeping each rotated pair with the run (so a retry goes on
/// with it), and wipes them when it is done.
#[tokio::test]
async fn the_settings_import_through_an_integration_keeps_its_rotating_tokens() {
    use crate::support::{Client, PASSWORD, spawn_app_with_workers};
    let (url, rec) = fake_amocrm().await;
    let (app, backbone) = spawn_app_with_workers().await;
    let t = app.tenant("OAuth Settings").await;
    let admin = Client::new(&app.url);
    admin.sign_in(&t.admin.email, PASSWORD).await;
    let store = importer::Store::new(app.state.pool.clone());
    let form = |secret: &'static str| {
        vec![
            ("base_url", url.clone()),
            ("access", "oauth".to_string()),
            ("client_id", "integration-1".to_string()),
            ("client_secret", secret.to_string()),
            ("redirect_uri", "https://voronka.test/back".to_string()),
            ("code", "consent-code".to_string()),
        ]
    };
    let send = |pairs: Vec<(&'static str, String)>| {
        let admin = &admin;
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            admin
                .submit("/settings/import", "/settings/import", &pairs)
                .await
        }
    };

    let res = send(form("wrong")).await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("amoCRM refused the authorization"),
        "the refusal is on the form"
    );
    assert!(html.contains("value=\"integration-1\""), "the id is kept");
    assert!(
        !html.contains("consent-code"),
        "the code is not shown again"
    );
    assert!(store.runs(t.account, 10).await.unwrap().is_empty());
    // A missing part is named.
    let mut partial = form("s3cret");
    partial.retain(|(k, _)| *k != "redirect_uri");
    assert_eq!(send(partial).await.status(), 400);

    let res = send(form("s3cret")).await;
    assert_eq!(res.status(), 303);
    // While it runs, the run holds the latest pair: a rotated refresh token shows up.
    let kept = |run: i64| {
        let app = &app;
        async move {
            app.text_row(&format!(
                "SELECT coalesce(oauth ->> 'refresh_token', '') || '|' || coalesce(token, '') AS v
                   FROM importer.runs WHERE id = {run}"
            ))
            .await
        }
    };
    let run = store.runs(t.account, 1).await.unwrap().remove(0);
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let r = store.run(t.account, run.id).await.unwrap().unwrap();
        seen.insert(kept(run.id).await);
        if r.state == "done" || r.state == "failed" {
            break r;
        }
        assert!(Instant::now() < deadline, "the run did not end: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.state, "done", "{:?}", done.error);
    assert_eq!(done.progress.created["leads"], 260);
    assert!(
        rec.lock().unwrap().refreshes >= 1,
        "the access token was renewed"
    );
    assert!(
        seen.iter()
            .any(|v| v.starts_with("def50200oauth-refresh-2|eyJ.oauth-access-2")),
        "the renewed pair was kept with the run: {seen:?}"
    );
    assert_eq!(kept(run.id).await, "|", "wiped when done");
    backbone.stop().await;
}
