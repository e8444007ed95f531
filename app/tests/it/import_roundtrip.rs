//! The round trip: an account filled in Voronka is imported into a second account through the
//! first one's amoCRM-compatible API, killed half-way and resumed, and the two accounts are
//! compared through the API (counts, field values, links, stages, authors and times). A second
//! import then updates instead of duplicating.
//!
//! 600 leads by default; `VORONKA_IMPORT_LEADS=10000` runs the size (with 5,000 contacts,
//! 1,000 companies, notes and tasks). Keep it above 500, so that the kill falls after the first
//! page of 250 leads and the resume must go on from a saved page.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use activities_api::{EntityKind, EntityRef, NewNote, NewTask, TaskTypeId};
use chrono::{DateTime, TimeZone, Utc};
use contacts_api::{CompanyId, Entity, NewCompany, NewContact, Reach};
use deals_api::{MoveTo, NewDeal, NewPipeline, NewStage, StageId};
use importer::{AmoClient, ClientOptions, Importer, Targets};
use kernel::Caller;
use kernel::fields::FieldType;
use kernel::provenance::Provenance;
use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app_with};

fn leads_wanted() -> i64 {
    std::env::var("VORONKA_IMPORT_LEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

fn at(i: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap() + chrono::Duration::minutes(i * 7)
}

fn importer(app: &TestApp) -> Importer {
    let m = &app.state.modules;
    Importer::new(
        app.state.pool.clone(),
        Targets {
            accounts: m.accounts.clone(),
            deals: m.deals.clone(),
            contacts: m.contacts.clone(),
            activities: m.activities.clone(),
        },
    )
}

/// Fills the source account through the modules' traits: users, 3 pipelines, a loss reason,
/// fields of every kind, companies, contacts, leads with links and tags, notes, tasks; then
/// dates everything in the past with authors, as an import from elsewhere would.
async fn fill(app: &TestApp, caller: Caller, member: kernel::UserId, leads: i64) {
    let m = &app.state.modules;
    let admin = caller.actor.user_id().unwrap();
    let stage = |name: &str| NewStage {
        name: name.into(),
        color: "#ffcc66".into(),
    };
    let mut pipelines = Vec::new();
    for (name, stages) in [
        ("Sales", vec!["First contact", "Offer", "Contract"]),
        ("Partners", vec!["Talks", "Pilot"]),
        (
            "Renewals",
            vec!["Reminded", "Invoiced", "Paid late", "Chased"],
        ),
    ] {
        pipelines.push(
            m.deals
                .create_pipeline(
                    caller,
                    NewPipeline {
                        name: name.into(),
                        stages: stages.into_iter().map(stage).collect(),
                    },
                )
                .await
                .unwrap(),
        );
    }
    let reason = m
        .deals
        .create_loss_reason(caller, "Too expensive")
        .await
        .unwrap();
    let marketing = m
        .deals
        .create_field_group(
            caller,
            kernel::fields::NewFieldGroup {
                name: "Marketing".into(),
                sort: Some(4),
            },
        )
        .await
        .unwrap();
    let channel = m
        .deals
        .create_custom_field(
            caller,
            deals_api::NewCustomField {
                group_id: Some(marketing.id),
                name: "Channel".into(),
                field_type: FieldType::Select,
                enums: vec!["Web".into(), "Phone".into(), "Fair".into()],
                required_statuses: vec![],
            },
        )
        .await
        .unwrap();
    let products = m
        .deals
        .create_custom_field(
            caller,
            deals_api::NewCustomField {
                group_id: None,
                name: "Products".into(),
                field_type: FieldType::Multiselect,
                enums: vec!["Horns".into(), "Hooves".into(), "Tails".into()],
                required_statuses: vec![],
            },
        )
        .await
        .unwrap();
    let mut deal_fields = vec![];
    for (name, ty) in [
        ("Deadline", FieldType::Date),
        ("Margin", FieldType::Numeric),
        ("Comment", FieldType::Text),
        ("Urgent", FieldType::Checkbox),
    ] {
        deal_fields.push(
            m.deals
                .create_custom_field(
                    caller,
                    deals_api::NewCustomField {
                        group_id: None,
                        name: name.into(),
                        field_type: ty,
                        enums: vec![],
                        required_statuses: vec![],
                    },
                )
                .await
                .unwrap(),
        );
    }
    let hobby = m
        .contacts
        .create_custom_field(
            caller,
            Entity::Contact,
            contacts_api::NewCustomField {
                group_id: None,
                name: "Hobby".into(),
                field_type: FieldType::Text,
                enums: vec![],
            },
        )
        .await
        .unwrap();
    let size = m
        .contacts
        .create_custom_field(
            caller,
            Entity::Company,
            contacts_api::NewCustomField {
                group_id: Some(
                    m.contacts
                        .create_field_group(
                            caller,
                            Entity::Company,
                            kernel::fields::NewFieldGroup {
                                name: "Requisites".into(),
                                sort: None,
                            },
                        )
                        .await
                        .unwrap()
                        .id,
                ),
                name: "Size".into(),
                field_type: FieldType::Numeric,
                enums: vec![],
            },
        )
        .await
        .unwrap();

    let companies_n = (leads / 10).max(3);
    let contacts_n = (leads / 2).max(6);
    let owner = |i: i64| if i % 3 == 0 { member } else { admin };
    let mut companies = Vec::new();
    let mut history = Vec::new();
    for i in 0..companies_n {
        let c = m
            .contacts
            .create_company(
                caller,
                NewCompany {
                    name: format!("Company {i}"),
                    web: format!("https://company-{i}.test"),
                    address: format!("{i} Main street"),
                    responsible_user_id: Some(owner(i)),
                    phones: vec![Reach::work(format!(
                        "+7 495 100-{:02}-{:02}",
                        i / 100,
                        i % 100
                    ))],
                    emails: vec![],
                    tags: if i % 2 == 0 {
                        vec!["vip".into()]
                    } else {
                        vec![]
                    },
                    custom_fields: [(size.id.0.to_string(), json!(format!("{}", 10 + i)))]
                        .into_iter()
                        .collect(),
                },
            )
            .await
            .unwrap();
        history.push(Provenance {
            id: c.id.0,
            created_at: at(i),
            updated_at: at(i + 1),
            created_by: owner(i).0,
            updated_by: admin.0,
            closed_at: None,
        });
        companies.push(c.id);
    }
    for chunk in history.chunks(500) {
        m.contacts
            .restore_provenance(caller, Entity::Company, chunk.to_vec())
            .await
            .unwrap();
    }
    let mut contacts = Vec::new();
    let mut history = Vec::new();
    for i in 0..contacts_n {
        let c = m
            .contacts
            .create_contact(
                caller,
                NewContact {
                    first_name: format!("Ivan{i}"),
                    last_name: format!("Petrov{i}"),
                    position: if i % 4 == 0 {
                        "Buyer".into()
                    } else {
                        String::new()
                    },
                    responsible_user_id: Some(owner(i)),
                    phones: vec![Reach {
                        kind: "MOB".into(),
                        value: format!("+7 916 200-{:02}-{:02}", i / 100, i % 100),
                    }],
                    emails: vec![Reach::work(format!("ivan{i}@client.test"))],
                    tags: if i % 5 == 0 {
                        vec!["newsletter".into()]
                    } else {
                        vec![]
                    },
                    custom_fields: [(hobby.id.0.to_string(), json!(format!("chess {i}")))]
                        .into_iter()
                        .collect(),
                    company_ids: if i % 2 == 0 {
                        vec![companies[(i as usize) % companies.len()]]
                    } else {
                        vec![]
                    },
                },
            )
            .await
            .unwrap();
        history.push(Provenance {
            id: c.id.0,
            created_at: at(i + 3),
            updated_at: at(i + 50),
            created_by: owner(i + 1).0,
            updated_by: owner(i).0,
            closed_at: None,
        });
        contacts.push(c.id.0);
    }
    for chunk in history.chunks(500) {
        m.contacts
            .restore_provenance(caller, Entity::Contact, chunk.to_vec())
            .await
            .unwrap();
    }

    let mut history = Vec::new();
    for i in 0..leads {
        let p = &pipelines[(i % 3) as usize];
        let open: Vec<StageId> = p
            .stages
            .iter()
            .filter(|s| s.kind == deals_api::StageKind::Open)
            .map(|s| s.id)
            .collect();
        let stage = match i % 10 {
            7 => deals_api::WON,
            8 => deals_api::LOST,
            _ => open[(i as usize) % open.len()],
        };
        let mut values: serde_json::Map<String, Value> = serde_json::Map::new();
        values.insert(
            channel.id.0.to_string(),
            json!(channel.enums[(i % 3) as usize].id),
        );
        if i % 2 == 0 {
            values.insert(
                products.id.0.to_string(),
                json!([products.enums[0].id, products.enums[2].id]),
            );
        }
        values.insert(
            deal_fields[0].id.0.to_string(),
            json!(format!("2025-0{}-1{}", 1 + i % 9, i % 10)),
        );
        values.insert(deal_fields[1].id.0.to_string(), json!(format!("{}.5", i)));
        values.insert(deal_fields[2].id.0.to_string(), json!(format!("note {i}")));
        values.insert(deal_fields[3].id.0.to_string(), json!(i % 4 == 0));
        let main = contacts[(i as usize) % contacts.len()];
        let second = contacts[(i as usize + 1) % contacts.len()];
        let d = m
            .deals
            .create_deal(
                caller,
                NewDeal {
                    name: format!("Lead {i}"),
                    price: 1000 + i * 13,
                    pipeline_id: p.id,
                    stage_id: Some(stage),
                    responsible_user_id: Some(owner(i)),
                    tags: if i % 4 == 0 {
                        vec!["hot".into(), format!("batch-{}", i % 3)]
                    } else {
                        vec![]
                    },
                    custom_fields: values,
                    contact_ids: if i % 6 == 0 {
                        vec![main, second]
                    } else {
                        vec![main]
                    },
                    main_contact_id: Some(main),
                    company_ids: if i % 5 == 0 {
                        vec![companies[(i as usize) % companies.len()].0]
                    } else {
                        vec![]
                    },
                },
            )
            .await
            .unwrap();
        if stage == deals_api::LOST {
            m.deals
                .move_deal(
                    caller,
                    d.id,
                    MoveTo {
                        stage_id: deals_api::LOST,
                        after: None,
                        loss_reason_id: Some(reason.id),
                    },
                )
                .await
                .unwrap();
        }
        history.push(Provenance {
            id: d.id.0,
            created_at: at(i),
            updated_at: at(i + 100),
            created_by: owner(i + 2).0,
            updated_by: owner(i).0,
            closed_at: (i % 10 == 7 || i % 10 == 8).then(|| at(i + 90)),
        });
        if i % 3 == 0 {
            m.activities
                .add_note(
                    caller,
                    NewNote {
                        entity: EntityRef::deal(d.id.0),
                        note_type: "common".into(),
                        text: format!("Called about lead {i}"),
                        call: None,
                    },
                )
                .await
                .unwrap();
        }
        if i % 4 == 1 {
            let t = m
                .activities
                .create_task(
                    caller,
                    NewTask {
                        entity: Some(EntityRef::deal(d.id.0)),
                        task_type_id: TaskTypeId(1 + i % 2),
                        text: format!("Follow up lead {i}"),
                        due_at: at(i + 200),
                        whole_day: false,
                        responsible_user_id: Some(owner(i)),
                    },
                )
                .await
                .unwrap();
            if i % 8 == 1 {
                m.activities
                    .complete_task(caller, t.id, &format!("done {i}"))
                    .await
                    .unwrap();
            }
        }
    }
    for chunk in history.chunks(500) {
        m.deals
            .restore_provenance(caller, chunk.to_vec())
            .await
            .unwrap();
    }
    for (i, c) in contacts.iter().enumerate().take(20) {
        m.activities
            .add_note(
                caller,
                NewNote {
                    entity: EntityRef {
                        kind: EntityKind::Contact,
                        id: *c,
                    },
                    note_type: "common".into(),
                    text: format!("Met at the fair {i}"),
                    call: None,
                },
            )
            .await
            .unwrap();
    }
    m.activities
        .add_note(
            caller,
            NewNote {
                entity: EntityRef {
                    kind: EntityKind::Company,
                    id: companies[0].0,
                },
                note_type: "common".into(),
                text: "Head office moved".into(),
                call: None,
            },
        )
        .await
        .unwrap();
    // Products becomes required in Sales' first open stages once the leads are there: some sit
    // there without it, as in a real account, and come over all the same.
    let sales = &pipelines[0];
    m.deals
        .update_custom_field(
            caller,
            products.id,
            deals_api::NewCustomField {
                name: "Products".into(),
                field_type: FieldType::Multiselect,
                enums: products.enums.iter().map(|e| e.value.clone()).collect(),
                required_statuses: sales
                    .stages
                    .iter()
                    .filter(|s| s.kind == deals_api::StageKind::Open)
                    .take(2)
                    .map(|s| deals_api::RequiredAt {
                        pipeline_id: sales.id,
                        status_id: s.id,
                    })
                    .collect(),
                group_id: Some(marketing.id),
            },
        )
        .await
        .unwrap();
    let _: Vec<CompanyId> = companies;
}

/// Every item of a list through the API (limit 250), in id order.
async fn all(http: &reqwest::Client, base: &str, token: &str, path: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let res = http
            .get(format!("{base}{path}{sep}limit=250&page={page}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if res.status() == 204 {
            break;
        }
        assert_eq!(res.status(), 200, "{path}");
        let body: Value = res.json().await.unwrap();
        let items = body["_embedded"][key]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let more = body.pointer("/_links/next").is_some();
        out.extend(items);
        if !more {
            break;
        }
    }
    out
}

/// An account as the API shows it, with every id replaced by what it names, so that two
/// accounts can be compared: records by name, with their values, links, stages, authors
/// and times.
async fn snapshot(app: &TestApp, token: &str) -> BTreeMap<String, Value> {
    let http = reqwest::Client::new();
    let base = app.url.as_str();
    let users: HashMap<i64, String> = all(&http, base, token, "/api/v4/users", "users")
        .await
        .iter()
        .map(|u| {
            (
                u["id"].as_i64().unwrap(),
                u["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let user = |v: &Value| {
        users
            .get(&v.as_i64().unwrap_or(0))
            .cloned()
            .unwrap_or_default()
    };
    let mut stages: HashMap<(i64, i64), String> = HashMap::new();
    for p in all(&http, base, token, "/api/v4/leads/pipelines", "pipelines").await {
        for s in p["_embedded"]["statuses"].as_array().unwrap() {
            stages.insert(
                (p["id"].as_i64().unwrap(), s["id"].as_i64().unwrap()),
                format!(
                    "{} / {}",
                    p["name"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                ),
            );
        }
    }
    let reasons: HashMap<i64, String> = all(
        &http,
        base,
        token,
        "/api/v4/leads/loss_reasons",
        "loss_reasons",
    )
    .await
    .iter()
    .map(|r| {
        (
            r["id"].as_i64().unwrap(),
            r["name"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    let values = |r: &Value| -> Value {
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        for v in r["custom_fields_values"].as_array().into_iter().flatten() {
            let name = v["field_name"].as_str().unwrap_or("").to_string();
            let vals: Vec<Value> = v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| json!([x["value"], x.get("enum_code")]))
                .collect();
            out.insert(name, Value::Array(vals));
        }
        json!(out)
    };
    let tags = |r: &Value| -> Value {
        let mut t: Vec<String> = r["_embedded"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        json!(t)
    };
    let mut snap = BTreeMap::new();
    // Field definitions: type, choices, the group they are shown under, the stages requiring them.
    for kind in ["leads", "contacts", "companies"] {
        let groups: HashMap<String, String> = all(
            &http,
            base,
            token,
            &format!("/api/v4/{kind}/custom_fields/groups"),
            "custom_field_groups",
        )
        .await
        .iter()
        .map(|g| {
            (
                g["id"].as_str().unwrap().to_string(),
                format!("{} ({})", g["name"].as_str().unwrap(), g["sort"]),
            )
        })
        .collect();
        let mut defs: Vec<Value> = all(
            &http,
            base,
            token,
            &format!("/api/v4/{kind}/custom_fields"),
            "custom_fields",
        )
        .await
        .iter()
        .map(|f| {
            let enums: Vec<Value> = f["enums"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["value"].clone())
                .collect();
            let required: Vec<String> = f["required_statuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    stages
                        .get(&(
                            r["pipeline_id"].as_i64().unwrap(),
                            r["status_id"].as_i64().unwrap(),
                        ))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            json!({"name": f["name"], "type": f["type"], "enums": enums, "required": required,
                   "group": f["group_id"].as_str().map(|g| groups[g].clone())})
        })
        .collect();
        defs.sort_by_key(|d| d.to_string());
        snap.insert(format!("fields of {kind}"), Value::Array(defs));
    }
    let companies = all(&http, base, token, "/api/v4/companies", "companies").await;
    let company_names: HashMap<i64, String> = companies
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().unwrap(),
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for c in &companies {
        snap.insert(
            format!("company {}", c["name"].as_str().unwrap()),
            json!({"responsible": user(&c["responsible_user_id"]), "values": values(c), "tags": tags(c),
                   "created_at": c["created_at"], "updated_at": c["updated_at"],
                   "created_by": user(&c["created_by"]), "updated_by": user(&c["updated_by"])}),
        );
    }
    let contacts = all(
        &http,
        base,
        token,
        "/api/v4/contacts?with=companies",
        "contacts",
    )
    .await;
    let contact_names: HashMap<i64, String> = contacts
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().unwrap(),
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for c in &contacts {
        let mut cos: Vec<String> = c["_embedded"]["companies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| company_names[&x["id"].as_i64().unwrap()].clone())
            .collect();
        cos.sort();
        snap.insert(
            format!("contact {}", c["name"].as_str().unwrap()),
            json!({"first": c["first_name"], "last": c["last_name"], "responsible": user(&c["responsible_user_id"]),
                   "values": values(c), "tags": tags(c), "companies": cos,
                   "created_at": c["created_at"], "updated_at": c["updated_at"],
                   "created_by": user(&c["created_by"]), "updated_by": user(&c["updated_by"])}),
        );
    }
    let leads = all(
        &http,
        base,
        token,
        "/api/v4/leads?with=contacts,loss_reason",
        "leads",
    )
    .await;
    let lead_names: HashMap<i64, String> = leads
        .iter()
        .map(|l| {
            (
                l["id"].as_i64().unwrap(),
                l["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for l in &leads {
        let cs: Vec<Value> = l["_embedded"]["contacts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| json!([contact_names[&x["id"].as_i64().unwrap()], x["is_main"]]))
            .collect();
        let cos: Vec<String> = l["_embedded"]["companies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| company_names[&x["id"].as_i64().unwrap()].clone())
            .collect();
        let stage = stages
            .get(&(
                l["pipeline_id"].as_i64().unwrap(),
                l["status_id"].as_i64().unwrap(),
            ))
            .cloned()
            .unwrap_or_default();
        snap.insert(
            format!("lead {}", l["name"].as_str().unwrap()),
            json!({"price": l["price"], "stage": stage, "responsible": user(&l["responsible_user_id"]),
                   "loss_reason": l["loss_reason_id"].as_i64().map(|r| reasons[&r].clone()),
                   "values": values(l), "tags": tags(l), "contacts": cs, "companies": cos,
                   "created_at": l["created_at"], "updated_at": l["updated_at"], "closed_at": l["closed_at"],
                   "created_by": user(&l["created_by"]), "updated_by": user(&l["updated_by"])}),
        );
    }
    let names = |kind: &str, id: i64| -> String {
        match kind {
            "leads" => lead_names.get(&id).cloned(),
            "contacts" => contact_names.get(&id).cloned(),
            _ => company_names.get(&id).cloned(),
        }
        .unwrap_or_else(|| format!("missing {kind} {id}"))
    };
    for kind in ["leads", "contacts", "companies"] {
        let mut notes: Vec<Value> = all(
            &http,
            base,
            token,
            &format!("/api/v4/{kind}/notes"),
            "notes",
        )
        .await
        .iter()
        .map(|n| {
            json!({"on": names(kind, n["entity_id"].as_i64().unwrap()), "type": n["note_type"],
                       "text": n["params"]["text"], "created_at": n["created_at"],
                       "created_by": user(&n["created_by"])})
        })
        .collect();
        notes.sort_by_key(|n| n.to_string());
        snap.insert(format!("notes on {kind}"), Value::Array(notes));
    }
    let mut tasks: Vec<Value> = all(&http, base, token, "/api/v4/tasks", "tasks")
        .await
        .iter()
        .map(|t| {
            json!({"on": names(t["entity_type"].as_str().unwrap_or("leads"), t["entity_id"].as_i64().unwrap_or(0)),
                   "text": t["text"], "type": t["task_type_id"], "due": t["complete_till"],
                   "done": t["is_completed"], "result": t["result"], "responsible": user(&t["responsible_user_id"]),
                   "created_at": t["created_at"], "created_by": user(&t["created_by"])})
        })
        .collect();
    tasks.sort_by_key(|t| t.to_string());
    snap.insert("tasks".into(), Value::Array(tasks));
    snap
}

#[tokio::test]
async fn an_account_comes_across_through_the_api_killed_half_way_and_resumed() {
    let app = spawn_app_with(|c| c.auth.api_requests_per_second = 0).await;
    let leads = leads_wanted();
    let source = app.tenant("Horns Source").await;
    let target = app.tenant("Hooves Target").await;
    let m = &app.state.modules;
    let admin = Caller::user(source.account, source.admin.id);
    let member = app.member(&source, "maria@horns.test").await;
    fill(&app, admin, member.id, leads).await;
    let source_token = m
        .accounts
        .create_token(admin, "export", 30)
        .await
        .unwrap()
        .secret;
    let target_admin = Caller::user(target.account, target.admin.id);
    let target_token = m
        .accounts
        .create_token(target_admin, "check", 30)
        .await
        .unwrap()
        .secret;

    // The first start is killed in the middle of the leads.
    let client = AmoClient::new(&app.url, &source_token, ClientOptions::default()).unwrap();
    let imp = importer(&app);
    let half = leads / 2;
    let written = async {
        loop {
            // Leads come in the source's order: the newest one's number says how far it is.
            let n = m
                .deals
                .list(
                    target_admin,
                    &deals_api::DealFilter::default(),
                    deals_api::ListSort::Id,
                    true,
                    kernel::paging::PageRequest::new(None, Some(1)),
                )
                .await
                .ok()
                .and_then(|p| p.items.first().map(|d| d.name.clone()))
                .and_then(|n| n.strip_prefix("Lead ").and_then(|i| i.parse::<i64>().ok()))
                .unwrap_or(0);
            if n >= half {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        r = imp.run(&client, target.account, |_| {}) => panic!("the import finished before it was killed: {r:?}"),
        n = written => eprintln!("killed with {n} of {leads} leads written"),
    }

    // The second start goes on from where the first stopped.
    let client = AmoClient::new(&app.url, &source_token, ClientOptions::default()).unwrap();
    let outcome = imp
        .run(&client, target.account, |_| {})
        .await
        .expect("resumed import");
    assert!(
        outcome.resumed,
        "the second start goes on with the first run"
    );
    let p = &outcome.progress;
    eprint!("{}", p.report());
    assert_eq!(
        p.read["leads"], leads as u64,
        "every lead read once over the two starts"
    );
    let skipped_records: Vec<_> = p
        .skipped
        .iter()
        .filter(|s| !["users", "events"].contains(&s.entity.as_str()))
        .collect();
    assert!(
        skipped_records.is_empty(),
        "nothing skipped but users and events: {skipped_records:#?}"
    );
    // The budget: under 7 requests a second over the whole run.
    assert!(
        (p.requests as f64) / p.seconds <= 7.0,
        "{} requests in {:.1} s",
        p.requests,
        p.seconds
    );

    let want = snapshot(&app, &source_token).await;
    let got = snapshot(&app, &target_token).await;
    let want_leads = want.keys().filter(|k| k.starts_with("lead ")).count();
    assert_eq!(want_leads, leads as usize);
    for (k, w) in &want {
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{k} is missing from the target"));
        assert_eq!(g, w, "{k} differs");
    }
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "the target has records the source has not: {extra:?}"
    );

    // Imported users who had no place here are inactive.
    let maria = m
        .accounts
        .find_user_by_email("maria@horns.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        maria.account_id, source.account,
        "e-mails are unique: the source keeps hers"
    );

    // A rerun updates what the first brought, and duplicates nothing.
    let client = AmoClient::new(&app.url, &source_token, ClientOptions::default()).unwrap();
    let again = imp
        .run(&client, target.account, |_| {})
        .await
        .expect("rerun");
    assert!(!again.resumed);
    assert_ne!(again.run, outcome.run);
    for e in ["leads", "contacts", "companies", "tasks", "leads/notes"] {
        assert_eq!(
            again.progress.created.get(e),
            None,
            "{e} created again: {:?}",
            again.progress.created
        );
    }
    assert_eq!(again.progress.updated["leads"], leads as u64);
    assert_eq!(
        snapshot(&app, &target_token).await,
        got,
        "a rerun changes nothing that was equal"
    );
}
