//! Deals beyond the core: custom fields, tags, filters, the list, bulk actions, saved filters,
//! and the deal page, list and drag-and-drop endpoints over HTTP.

use deals_api::*;
use kernel::paging::PageRequest;
use kernel::{Caller, ErrorCode};
use serde_json::json;

use crate::support::{TestApp, location, spawn_app};

async fn pipeline(app: &TestApp, caller: Caller) -> Pipeline {
    app.state
        .modules
        .deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Sales".into(),
                stages: ["First contact", "Negotiation", "Invoice"]
                    .iter()
                    .map(|n| NewStage {
                        name: (*n).into(),
                        color: "#99ccff".into(),
                    })
                    .collect(),
            },
        )
        .await
        .unwrap()
}

fn values(pairs: &[(FieldId, serde_json::Value)]) -> FieldValues {
    pairs
        .iter()
        .map(|(id, v)| (id.0.to_string(), v.clone()))
        .collect()
}

async fn field(
    app: &TestApp,
    caller: Caller,
    name: &str,
    ty: FieldType,
    enums: &[&str],
    required: Vec<RequiredAt>,
) -> CustomField {
    app.state
        .modules
        .deals
        .create_custom_field(
            caller,
            NewCustomField {
                group_id: None,
                name: name.into(),
                field_type: ty,
                enums: enums.iter().map(|e| (*e).into()).collect(),
                required_statuses: required,
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn custom_field_values_are_typed_and_required_fields_guard_their_stages() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = pipeline(&app, caller).await;
    let (first, negotiation) = (p.stages[1].id, p.stages[2].id);
    let amount = field(&app, caller, "Amount", FieldType::Numeric, &[], vec![]).await;
    let segment = field(
        &app,
        caller,
        "Segment",
        FieldType::Select,
        &["Retail", "Wholesale"],
        vec![],
    )
    .await;
    let contract = field(
        &app,
        caller,
        "Contract",
        FieldType::Url,
        &[],
        vec![RequiredAt {
            pipeline_id: p.id,
            status_id: negotiation,
        }],
    )
    .await;
    // Definitions are checked too.
    let err = deals
        .create_custom_field(
            caller,
            NewCustomField {
                group_id: None,
                name: "Kind".into(),
                field_type: FieldType::Select,
                enums: vec![],
                required_statuses: vec![],
            },
        )
        .await
        .unwrap_err();
    assert!(err.field("enums").is_some(), "{err:?}");
    let err = deals
        .create_custom_field(
            caller,
            NewCustomField {
                group_id: None,
                name: "amount".into(),
                field_type: FieldType::Text,
                enums: vec![],
                required_statuses: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.field("name").unwrap().code, "taken");

    let key = |f: &CustomField| format!("custom_fields.{}", f.id.0);
    let refused = |new: NewDeal, field: String, code: &'static str| async move {
        let err = deals.create_deal(caller, new).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation, "{err:?}");
        assert_eq!(
            err.field(&field).map(|f| f.code.as_str()),
            Some(code),
            "{err:?}"
        );
    };
    refused(
        NewDeal {
            custom_fields: values(&[(amount.id, json!("abc"))]),
            ..NewDeal::new(p.id, "Bad number")
        },
        key(&amount),
        "not_a_number",
    )
    .await;
    refused(
        NewDeal {
            custom_fields: values(&[(segment.id, json!("Government"))]),
            ..NewDeal::new(p.id, "Bad choice")
        },
        key(&segment),
        "unknown_choice",
    )
    .await;
    refused(
        NewDeal {
            custom_fields: values(&[(FieldId(999_999), json!("x"))]),
            ..NewDeal::new(p.id, "Unknown field")
        },
        "custom_fields.999999".into(),
        "not_found",
    )
    .await;
    refused(
        NewDeal {
            stage_id: Some(negotiation),
            ..NewDeal::new(p.id, "Straight to negotiation")
        },
        key(&contract),
        "required",
    )
    .await;
    assert_eq!(app.count("SELECT count(*) AS n FROM deals.deals").await, 0);

    let d = deals
        .create_deal(
            caller,
            NewDeal {
                custom_fields: values(&[
                    (amount.id, json!(" 1 250,50 ")),
                    (segment.id, json!("Wholesale")),
                ]),
                ..NewDeal::new(p.id, "Typed")
            },
        )
        .await
        .unwrap();
    let wholesale = segment.enums[1].id;
    assert_eq!(d.custom_fields[&amount.id.0.to_string()], json!("1250.5"));
    assert_eq!(d.custom_fields[&segment.id.0.to_string()], json!(wholesale));

    // Entering "Negotiation" needs the contract.
    let to_negotiation = MoveTo {
        stage_id: negotiation,
        after: None,
        loss_reason_id: None,
    };
    let err = deals
        .move_deal(caller, d.id, to_negotiation.clone())
        .await
        .unwrap_err();
    assert_eq!(err.field(&key(&contract)).unwrap().code, "required");
    assert!(err.fields[0].message.contains("Contract"), "{err:?}");
    assert_eq!(deals.deal(caller, d.id).await.unwrap().stage_id, first);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.stage_history")
            .await,
        1
    );
    let patch = |v: serde_json::Value| DealPatch {
        custom_fields: Some(values(&[(contract.id, v)])),
        ..Default::default()
    };
    let err = deals
        .update_deal(caller, d.id, patch(json!("not a web address")))
        .await
        .unwrap_err();
    assert_eq!(err.field(&key(&contract)).unwrap().code, "invalid");
    deals
        .update_deal(caller, d.id, patch(json!("https://acme.test/contracts/1")))
        .await
        .unwrap();
    deals
        .move_deal(caller, d.id, to_negotiation.clone())
        .await
        .unwrap();
    // …and cannot be emptied while the deal is there.
    let err = deals
        .update_deal(caller, d.id, patch(json!("")))
        .await
        .unwrap_err();
    assert_eq!(err.field(&key(&contract)).unwrap().code, "required");

    // A bulk move is refused whole when one deal lacks the value.
    let other = deals
        .create_deal(caller, NewDeal::new(p.id, "No contract"))
        .await
        .unwrap();
    let filled = deals
        .create_deal(
            caller,
            NewDeal {
                custom_fields: values(&[(contract.id, json!("https://acme.test/c/2"))]),
                ..NewDeal::new(p.id, "Has contract")
            },
        )
        .await
        .unwrap();
    let err = deals
        .bulk(
            caller,
            vec![other.id, filled.id],
            BulkAction::Move {
                stage_id: negotiation,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Validation);
    assert!(err.message.contains("No contract"), "{err:?}");
    assert_eq!(deals.deal(caller, filled.id).await.unwrap().stage_id, first);

    // Removing a choice clears it from the deals that had it.
    deals
        .update_custom_field(
            caller,
            segment.id,
            NewCustomField {
                group_id: None,
                name: "Segment".into(),
                field_type: FieldType::Select,
                enums: vec!["Retail".into(), "Public sector".into()],
                required_statuses: vec![],
            },
        )
        .await
        .unwrap();
    let d = deals.deal(caller, d.id).await.unwrap();
    assert!(!d.custom_fields.contains_key(&segment.id.0.to_string()));
    assert_eq!(d.custom_fields[&amount.id.0.to_string()], json!("1250.5"));
    let fields = deals.custom_fields(caller).await.unwrap();
    let seg = fields.iter().find(|f| f.id == segment.id).unwrap();
    assert_eq!(seg.enums[0].id, segment.enums[0].id, "Retail keeps its id");
    assert_eq!(seg.enums[1].value, "Public sector");

    // Changes of values are in DealUpdated, before and after.
    let after = app
        .count(&format!(
            "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_updated'
               AND payload -> 'after' -> 'custom_fields' ->> '{}' = 'https://acme.test/contracts/1'",
            contract.id.0
        ))
        .await;
    assert_eq!(after, 1);
    // Another account's fields are not this one's.
    let other_tenant = app.tenant("Globex").await;
    let globex = Caller::user(other_tenant.account, other_tenant.admin.id);
    assert!(deals.custom_fields(globex).await.unwrap().is_empty());
}

#[tokio::test]
async fn tags_filters_and_the_list_find_the_right_deals_in_order() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = pipeline(&app, admin).await;
    let first = p.stages[1].id;
    let segment = field(
        &app,
        admin,
        "Segment",
        FieldType::Select,
        &["Retail", "Wholesale"],
        vec![],
    )
    .await;
    let m = app.member(&t, "maria@acme.test").await;
    let mk = |name: &str, price: i64, tags: &[&str], responsible| NewDeal {
        price,
        tags: tags.iter().map(|t| (*t).into()).collect(),
        responsible_user_id: Some(responsible),
        ..NewDeal::new(p.id, name)
    };
    let a = deals
        .create_deal(admin, mk("Alpha", 300, &["VIP"], t.admin.id))
        .await
        .unwrap();
    let b = deals
        .create_deal(admin, mk("Bravo", 100, &["vip", "Partner"], m.id))
        .await
        .unwrap();
    let c = deals
        .create_deal(
            admin,
            NewDeal {
                custom_fields: values(&[(segment.id, json!("Retail"))]),
                ..mk("Charlie", 200, &[], m.id)
            },
        )
        .await
        .unwrap();
    // Tags are per account and case-insensitive: "VIP" and "vip" are one tag.
    let tags = deals.tags(admin).await.unwrap();
    assert_eq!(
        tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["Partner", "VIP"]
    );
    assert_eq!(b.tags.len(), 2);
    let vip = tags.iter().find(|t| t.name == "VIP").unwrap().id;

    let column = |filter: DealFilter| async move {
        let board = deals
            .board(admin, p.id, &filter, PageRequest::default())
            .await
            .unwrap();
        let col = board.into_iter().find(|c| c.stage.id == first).unwrap();
        (
            col.totals,
            col.deals
                .items
                .into_iter()
                .map(|d| d.name)
                .collect::<Vec<_>>(),
        )
    };
    let (totals, names) = column(DealFilter {
        tags: vec![vip],
        ..Default::default()
    })
    .await;
    assert_eq!(
        totals,
        Totals {
            deals: 2,
            budget: 400,
            capped: false
        }
    );
    assert_eq!(names, vec!["Bravo", "Alpha"]);
    let (_, names) = column(DealFilter {
        query: Some("arl".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(names, vec!["Charlie"]);
    let (_, names) = column(DealFilter {
        responsible: vec![m.id],
        ..Default::default()
    })
    .await;
    assert_eq!(names, vec!["Charlie", "Bravo"]);
    let (_, names) = column(DealFilter {
        fields: vec![(segment.id, json!("Retail"))],
        ..Default::default()
    })
    .await;
    assert_eq!(names, vec!["Charlie"]);
    let (_, names) = column(DealFilter {
        query: Some("%".into()),
        ..Default::default()
    })
    .await;
    assert!(names.is_empty(), "LIKE wildcards are taken literally");
    let err = deals
        .board(
            admin,
            p.id,
            &DealFilter {
                fields: vec![(segment.id, json!("Nope"))],
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Validation);

    // The list: sorted by name, two per page, keyset paged; then by budget, largest first.
    let list = |sort, desc, after| async move {
        deals
            .list(
                admin,
                &DealFilter::default(),
                sort,
                desc,
                PageRequest::new(after, Some(2)),
            )
            .await
            .unwrap()
    };
    let page1 = list(ListSort::Name, false, None).await;
    assert_eq!(
        page1.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    let page2 = list(ListSort::Name, false, page1.next.clone()).await;
    assert_eq!(
        page2.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![c.id]
    );
    assert!(page2.next.is_none());
    let by_price = list(ListSort::Price, true, None).await;
    assert_eq!(
        by_price.items.iter().map(|d| d.price).collect::<Vec<_>>(),
        vec![300, 200]
    );
    let rest = list(ListSort::Price, true, by_price.next).await;
    assert_eq!(rest.items[0].price, 100);

    // A user limited to his own deals sees only those, filtered or not.
    app.limit_to_own_deals(admin, m.id).await;
    let maria = Caller::user(t.account, m.id);
    let hers = deals
        .list(
            maria,
            &DealFilter {
                tags: vec![vip],
                ..Default::default()
            },
            ListSort::Name,
            false,
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        hers.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![b.id]
    );
}

#[tokio::test]
async fn bulk_actions_change_all_the_deals_or_none() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = pipeline(&app, admin).await;
    let (first, invoice) = (p.stages[1].id, p.stages[3].id);
    let m = app.member(&t, "maria@acme.test").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let d = deals
            .create_deal(
                admin,
                NewDeal {
                    price: 100,
                    ..NewDeal::new(p.id, format!("Deal {i}"))
                },
            )
            .await
            .unwrap();
        ids.push(d.id);
    }
    let other = app.tenant("Globex").await;
    let globex = Caller::user(other.account, other.admin.id);
    let gp = pipeline(&app, globex).await;
    let foreign = deals
        .create_deal(globex, NewDeal::new(gp.id, "Theirs"))
        .await
        .unwrap();

    let totals = |stage: StageId| async move {
        deals
            .board(admin, p.id, &DealFilter::default(), PageRequest::default())
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.stage.id == stage)
            .unwrap()
            .totals
    };
    // Another account's deal in the batch: nothing happens, and it is not found.
    let mut with_foreign = ids.clone();
    with_foreign.push(foreign.id);
    let err = deals
        .bulk(
            admin,
            with_foreign,
            BulkAction::AddTags {
                tags: vec!["hot".into()],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.deals WHERE tag_ids <> '{}'")
            .await,
        0
    );

    let n = deals
        .bulk(
            admin,
            ids.clone(),
            BulkAction::AddTags {
                tags: vec!["hot".into(), "q4".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    deals
        .bulk(
            admin,
            ids[..1].to_vec(),
            BulkAction::RemoveTags {
                tags: vec!["HOT".into()],
            },
        )
        .await
        .unwrap();
    let d0 = deals.deal(admin, ids[0]).await.unwrap();
    assert_eq!(
        d0.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["q4"]
    );

    deals
        .bulk(
            admin,
            ids.clone(),
            BulkAction::Move {
                stage_id: invoice,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(totals(first).await.deals, 0);
    assert_eq!(
        totals(invoice).await,
        Totals {
            deals: 3,
            budget: 300,
            capped: false
        }
    );
    let err = deals
        .bulk(
            admin,
            ids.clone(),
            BulkAction::Move {
                stage_id: LOST,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.field("loss_reason_id").is_some());
    assert_eq!(totals(invoice).await.deals, 3);

    deals
        .bulk(
            admin,
            ids.clone(),
            BulkAction::Responsible { user_id: m.id },
        )
        .await
        .unwrap();
    assert_eq!(
        app.count(&format!(
            "SELECT sum(deals)::bigint AS n FROM deals.stage_totals WHERE responsible_user_id = {}",
            m.id.0
        ))
        .await,
        3
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_responsible_changed'"
        )
        .await,
        3
    );
    let too_many: Vec<DealId> = (1..=MAX_BULK as i64 + 1).map(DealId).collect();
    let err = deals
        .bulk(admin, too_many, BulkAction::Delete)
        .await
        .unwrap_err();
    assert_eq!(err.field("ids").unwrap().code, "too_many");

    deals
        .bulk(admin, ids.clone(), BulkAction::Delete)
        .await
        .unwrap();
    assert_eq!(totals(invoice).await, Totals::default());
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.deals WHERE deleted_at IS NOT NULL")
            .await,
        3
    );
}

#[tokio::test]
async fn saved_filters_belong_to_their_user() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = app.member(&t, "maria@acme.test").await;
    let maria = Caller::user(t.account, m.id);
    let deals = &app.state.modules.deals;
    let saved = deals.save_filter(admin, "My VIPs", "tag=1").await.unwrap();
    assert_eq!(
        deals.saved_filters(admin).await.unwrap(),
        vec![saved.clone()]
    );
    assert!(deals.saved_filters(maria).await.unwrap().is_empty());
    assert_eq!(
        deals
            .delete_saved_filter(maria, saved.id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let err = deals.save_filter(admin, "  ", "q=x").await.unwrap_err();
    assert!(err.field("name").is_some());
    deals.delete_saved_filter(admin, saved.id).await.unwrap();
    assert!(deals.saved_filters(admin).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_deal_page_list_and_drag_endpoint_work_over_http() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = pipeline(&app, admin).await;
    let (first, negotiation) = (p.stages[1].id, p.stages[2].id);
    let d = deals
        .create_deal(
            admin,
            NewDeal {
                price: 500,
                ..NewDeal::new(p.id, "Website redesign")
            },
        )
        .await
        .unwrap();
    let e = deals
        .create_deal(admin, NewDeal::new(p.id, "Second"))
        .await
        .unwrap();
    // The one-statement create records its event with the deal's id and the stage it chose.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_created'
               AND (payload ->> 'deal_id')::bigint = {} AND (payload ->> 'stage_id')::bigint = {}
               AND payload ->> 'name' = 'Website redesign'",
            d.id.0, first.0
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM deals.stage_history WHERE deal_id = {} AND left_at IS NULL",
            d.id.0
        ))
        .await,
        1
    );
    let c = app.signed_in(&t.admin.email).await;
    let page = format!("/deals/{}", d.id);
    let (status, html) = c.text(&page).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("Website redesign") && html.contains("data-test=\"history\""));

    // A bad budget is shown again with the error and changes nothing.
    let uid = t.admin.id.0.to_string();
    let res = c
        .submit(
            &page,
            &page,
            &[
                ("name", "Renamed"),
                ("price", "12abc"),
                ("responsible_user_id", &uid),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(
        deals.deal(admin, d.id).await.unwrap().name,
        "Website redesign"
    );
    let res = c
        .submit(
            &page,
            &page,
            &[
                ("name", "Renamed"),
                ("price", "1 500"),
                ("responsible_user_id", &uid),
                ("tags", "web, urgent"),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let saved = deals.deal(admin, d.id).await.unwrap();
    assert_eq!((saved.name.as_str(), saved.price), ("Renamed", 1500));
    assert_eq!(saved.tags.len(), 2);

    // Drag and drop: the JSON endpoint answers with every column's totals.
    let token = c.csrf(&format!("/deals/pipelines/{}", p.id)).await;
    let drag = |deal: DealId, stage: StageId, after: String, reason: String| {
        let c = &c;
        let token = token.clone();
        async move {
            c.http
                .post(format!("{}/deals/{}/move", c.base, deal))
                .header("x-csrf-token", token)
                .form(&[
                    ("stage_id", stage.0.to_string()),
                    ("after", after),
                    ("loss_reason_id", reason),
                    ("filter", String::new()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let res = drag(d.id, negotiation, String::new(), String::new()).await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    let totals = body["totals"].as_array().unwrap();
    let of =
        |s: StageId| totals.iter().find(|t| t["stage_id"] == json!(s.0)).unwrap()["deals"].clone();
    assert_eq!((of(first), of(negotiation)), (json!(1), json!(1)));
    let res = drag(e.id, LOST, String::new(), String::new()).await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "validation");
    assert!(body["message"].as_str().unwrap().contains("Loss reason"));
    // Within a column, after another deal.
    let res = drag(e.id, negotiation, d.id.0.to_string(), String::new()).await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let col = deals
        .column(admin, p.id, negotiation, &DealFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        col.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![d.id, e.id]
    );

    // The list, and a bulk move from it.
    let list = format!("/deals/list?pipeline={}", p.id);
    let (status, html) = c.text(&list).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("Renamed") && html.contains("Second"));
    let (did, eid, sid) = (d.id.0.to_string(), e.id.0.to_string(), first.0.to_string());
    let res = c
        .submit(
            &list,
            "/deals/bulk",
            &[
                ("back", &list),
                ("action", "move"),
                ("stage_id", &sid),
                ("id", &did),
                ("id", &eid),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/deals/list?pipeline="));
    assert_eq!(deals.deal(admin, e.id).await.unwrap().stage_id, first);
    // Filters in the query: a bad date is an error on the page, not a crash.
    let (status, html) = c.text(&format!("{list}&created_from=someday")).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("role=\"alert\""));
    let (_, html) = c.text(&format!("{list}&q=Renam")).await;
    assert!(html.contains("Renamed") && !html.contains(">Second<"));
    // Settings pages render for administrators.
    for page in ["/settings/pipelines", "/settings/fields"] {
        let (status, _) = c.text(page).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{page}");
    }
}

#[tokio::test]
async fn field_groups_arrange_the_cards_and_deleting_one_keeps_its_fields() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let deals = &app.state.modules.deals;
    let p = pipeline(&app, admin).await;
    let c = app.signed_in(&t.admin.email).await;
    let settings = "/settings/fields";

    // A group made on the settings page; a second one of the same name (any case) is refused.
    let res = c
        .submit(
            settings,
            "/settings/fields/groups",
            &[("name", "Logistics")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let groups = deals.field_groups(admin).await.unwrap();
    assert_eq!(groups.len(), 1);
    let logistics = groups[0].id;
    let res = c
        .submit(
            settings,
            "/settings/fields/groups",
            &[("name", " logistics ")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("This is already taken."));
    assert_eq!(deals.field_groups(admin).await.unwrap().len(), 1);

    // One field in the main list, one in the group (made on the page with its group chosen).
    let budget_note = field(&app, admin, "Budget note", FieldType::Text, &[], vec![]).await;
    let gid = logistics.to_string();
    let res = c
        .submit(
            settings,
            settings,
            &[
                ("name", "Warehouse"),
                ("field_type", "text"),
                ("group", &gid),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let warehouse = deals
        .custom_fields(admin)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == "Warehouse")
        .unwrap();
    assert_eq!(warehouse.group_id, Some(logistics));
    // A group that is not there is refused with the field's form error, nothing made.
    let res = c
        .submit(
            settings,
            settings,
            &[
                ("name", "Dock"),
                ("field_type", "text"),
                ("group", "987654"),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(deals.custom_fields(admin).await.unwrap().len(), 2);

    // The deal's page shows the main list first, then the group's heading and its field.
    let d = deals
        .create_deal(
            admin,
            NewDeal {
                custom_fields: values(&[
                    (budget_note.id, json!("tight")),
                    (warehouse.id, json!("North")),
                ]),
                ..NewDeal::new(p.id, "Pallets")
            },
        )
        .await
        .unwrap();
    let (status, html) = c.text(&format!("/deals/{}", d.id)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let (note_at, heading_at, house_at) = (
        html.find(&format!("name=\"cf_{}\"", budget_note.id))
            .unwrap(),
        html.find("data-test=\"field-group\">Logistics</h3>")
            .unwrap(),
        html.find(&format!("name=\"cf_{}\"", warehouse.id)).unwrap(),
    );
    assert!(note_at < heading_at && heading_at < house_at);

    // A manager cannot change groups.
    let anna = app.member(&t, "anna@acme.test").await;
    let err = deals
        .create_field_group(
            Caller::user(t.account, anna.id),
            NewFieldGroup {
                name: "Mine".into(),
                sort: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    // Another account cannot put a field in this account's group.
    let other = app.tenant("Other").await;
    let err = deals
        .create_custom_field(
            Caller::user(other.account, other.admin.id),
            NewCustomField {
                name: "Sneaky".into(),
                field_type: FieldType::Text,
                enums: vec![],
                required_statuses: vec![],
                group_id: Some(logistics),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.fields[0].field, "group_id");
    assert!(
        deals
            .field_groups(Caller::user(other.account, other.admin.id))
            .await
            .unwrap()
            .is_empty()
    );

    // Renamed and deleted on the page: the field and the deal's value stay, in the main list.
    let res = c
        .submit(
            settings,
            &format!("/settings/fields/groups/{logistics}"),
            &[("name", "Shipping"), ("sort", "3")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let g = &deals.field_groups(admin).await.unwrap()[0];
    assert_eq!((g.name.as_str(), g.sort), ("Shipping", 3));
    let res = c
        .submit(
            settings,
            &format!("/settings/fields/groups/{logistics}/delete"),
            &[],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(deals.field_groups(admin).await.unwrap().is_empty());
    let kept = deals.deal(admin, d.id).await.unwrap();
    assert_eq!(
        kept.custom_fields[&warehouse.id.0.to_string()],
        json!("North")
    );
    assert_eq!(
        deals
            .custom_fields(admin)
            .await
            .unwrap()
            .iter()
            .find(|f| f.id == warehouse.id)
            .unwrap()
            .group_id,
        None
    );
    let (_, html) = c.text(&format!("/deals/{}", d.id)).await;
    assert!(!html.contains("data-test=\"field-group\""));

    // Contacts: a company group heads its fields on the company's page; the contact fields page
    // edits and deletes a field.
    let contacts = &app.state.modules.contacts;
    let cg = contacts
        .create_field_group(
            admin,
            contacts_api::Entity::Company,
            NewFieldGroup {
                name: "Requisites".into(),
                sort: None,
            },
        )
        .await
        .unwrap();
    let res = c
        .submit(
            "/settings/contact-fields",
            "/settings/contact-fields",
            &[
                ("entity", "company"),
                ("name", "Tax id"),
                ("field_type", "text"),
                ("group", &cg.id.to_string()),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let tax = contacts
        .custom_fields(admin, contacts_api::Entity::Company)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(tax.group_id, Some(cg.id));
    // The group of companies is not one contacts can use.
    let err = contacts
        .create_custom_field(
            admin,
            contacts_api::Entity::Contact,
            contacts_api::NewCustomField {
                name: "Tax id".into(),
                field_type: FieldType::Text,
                enums: vec![],
                group_id: Some(cg.id),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.fields[0].field, "group_id");
    let company = contacts
        .create_company(
            admin,
            contacts_api::NewCompany {
                name: "Acme Ltd".into(),
                custom_fields: [(tax.id.0.to_string(), json!("7701"))]
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, html) = c.text(&format!("/companies/{}", company.id)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let heading_at = html
        .find("data-test=\"field-group\">Requisites</h3>")
        .unwrap();
    assert!(heading_at < html.find(&format!("name=\"cf_{}\"", tax.id)).unwrap());
    let res = c
        .submit(
            "/settings/contact-fields",
            &format!("/settings/contact-fields/{}", tax.id),
            &[("entity", "company"), ("name", "INN"), ("group", "")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let renamed = contacts
        .custom_fields(admin, contacts_api::Entity::Company)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((renamed.name.as_str(), renamed.group_id), ("INN", None));
    let res = c
        .submit(
            "/settings/contact-fields",
            &format!("/settings/contact-fields/{}/delete", tax.id),
            &[],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(
        contacts
            .custom_fields(admin, contacts_api::Entity::Company)
            .await
            .unwrap()
            .is_empty()
    );
    let company = contacts.company(admin, company.id).await.unwrap();
    assert!(company.custom_fields.is_empty());
}

/// The demo account `scripts/demo` signs people in to: seeded once (a second run finds it), with
/// deals whose page shows their fields, the delivery details under their group's heading.
#[tokio::test]
async fn the_demo_account_is_seeded_once_with_fields_in_groups() {
    let app = spawn_app().await;
    let login = voronka::demo::seed(&app.state.modules).await.unwrap();
    assert!(login.created);
    assert!(
        !voronka::demo::seed(&app.state.modules)
            .await
            .unwrap()
            .created
    );
    let c = crate::support::Client::new(&app.url);
    assert_eq!(
        c.sign_in(login.email, login.password).await.status(),
        reqwest::StatusCode::SEE_OTHER
    );
    let user = app
        .state
        .modules
        .accounts
        .find_user_by_email(login.email)
        .await
        .unwrap()
        .unwrap();
    let admin = Caller::user(user.account_id, user.id);
    let deals = &app.state.modules.deals;
    let groups = deals.field_groups(admin).await.unwrap();
    assert_eq!(groups.len(), 1);
    let first = deals
        .list(
            admin,
            &DealFilter::default(),
            ListSort::Id,
            false,
            PageRequest::new(None, Some(1)),
        )
        .await
        .unwrap()
        .items
        .remove(0);
    let (status, html) = c.text(&format!("/deals/{}", first.id)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("Lead source") && html.contains("Tverskaya St"));
    assert!(html.contains("data-test=\"field-group\">Delivery</h3>"));
}
