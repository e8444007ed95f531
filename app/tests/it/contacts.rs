//! The contacts module: contacts and companies, normalised phones and e-mails, search,
//! duplicates, links, custom fields, rights and tenancy, over the trait and the pages.

use contacts_api::*;
use kernel::paging::PageRequest;
use kernel::{Caller, ErrorCode};
use serde_json::json;

use crate::support::{location, spawn_app};

fn anna() -> NewContact {
    NewContact {
        first_name: "Anna".into(),
        last_name: "Petrova".into(),
        position: "Buyer".into(),
        phones: vec![
            Reach::work("+7 (916) 123-45-67"),
            Reach {
                kind: "MOB".into(),
                value: "8 903 000 11 22".into(),
            },
        ],
        emails: vec![Reach::work(" Anna.Petrova@Example.com ")],
        tags: vec!["vip".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn contacts_keep_normalised_phones_and_emails_and_refuse_bad_ones() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;

    let c = contacts.create_contact(caller, anna()).await.unwrap();
    assert_eq!(c.name, "Anna Petrova");
    assert_eq!(
        c.phones
            .iter()
            .map(|p| (p.kind.as_str(), p.raw.as_str(), p.normalized.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("WORK", "+7 (916) 123-45-67", "+79161234567"),
            ("MOB", "8 903 000 11 22", "+79030001122")
        ]
    );
    assert_eq!(c.emails[0].email, "anna.petrova@example.com");
    assert_eq!(c.tags[0].name, "vip");

    let refused = |new: NewContact, field: &'static str, code: &'static str| async move {
        let err = contacts.create_contact(caller, new).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation, "{err:?}");
        assert_eq!(
            err.field(field).map(|f| f.code.as_str()),
            Some(code),
            "{err:?}"
        );
    };
    refused(
        NewContact {
            phones: vec![Reach::work("call me maybe")],
            ..anna()
        },
        "phones[0]",
        "invalid_phone",
    )
    .await;
    refused(
        NewContact {
            emails: vec![Reach::work("anna@example")],
            ..anna()
        },
        "emails[0]",
        "invalid_email",
    )
    .await;
    refused(
        NewContact {
            first_name: " ".into(),
            last_name: String::new(),
            ..anna()
        },
        "first_name",
        "required",
    )
    .await;
    let segment = contacts
        .create_custom_field(
            caller,
            Entity::Contact,
            NewCustomField {
                group_id: None,
                name: "Segment".into(),
                field_type: FieldType::Select,
                enums: vec!["Retail".into(), "Wholesale".into()],
            },
        )
        .await
        .unwrap();
    let key = format!("custom_fields.{}", segment.id.0);
    let mut values = FieldValues::new();
    values.insert(segment.id.0.to_string(), json!("Government"));
    let err = contacts
        .create_contact(
            caller,
            NewContact {
                custom_fields: values,
                ..anna()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.field(&key).unwrap().code, "unknown_choice");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contacts")
            .await,
        1,
        "nothing written by the refused ones"
    );

    // An update replaces the phones and records what changed.
    let updated = contacts
        .update_contact(
            caller,
            c.id,
            ContactPatch {
                phones: Some(vec![Reach::work("916 555 00 00")]),
                position: Some("Head of purchasing".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.phones.len(), 1);
    assert_eq!(updated.phones[0].normalized, "+79165550000");
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM contacts.outbox WHERE event_type = 'contacts.contact_updated'
               AND payload -> 'after' -> 'phones' = '[\"+79165550000\"]'
               AND payload -> 'after' ->> 'position' = 'Head of purchasing'"
        )
        .await,
        1
    );
    let err = contacts
        .update_contact(
            caller,
            c.id,
            ContactPatch {
                emails: Some(vec![Reach::work("not an address")]),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.field("emails[0]").is_some());
    assert_eq!(
        contacts.contact(caller, c.id).await.unwrap().emails[0].email,
        "anna.petrova@example.com"
    );
}

#[tokio::test]
async fn search_finds_by_any_phone_format_name_part_typo_and_email() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    let c = contacts.create_contact(caller, anna()).await.unwrap();
    contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Boris".into(),
                last_name: "Ivanov".into(),
                phones: vec![Reach::work("+7 495 111 22 33")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let co = contacts
        .create_company(
            caller,
            NewCompany {
                name: "Petrov & Sons".into(),
                phones: vec![Reach::work("8 (495) 777-66-55")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = |q: &'static str| async move {
        let hits = contacts.search(caller, q, 10).await.unwrap();
        hits.first().map(|h| (h.entity, h.id))
    };
    for q in [
        "8 916 123 45 67",
        "+79161234567",
        "916-123",
        "Petrova",
        "petr",
        "Petrowa",
        "Anna Petrowa",
        "anna.petrova@",
        "example.com",
    ] {
        assert_eq!(first(q).await, Some((Entity::Contact, c.id.0)), "{q}");
    }
    assert_eq!(first("777 66 55").await, Some((Entity::Company, co.id.0)));
    assert_eq!(first("Sons").await, Some((Entity::Company, co.id.0)));
    assert!(
        contacts
            .search(caller, "zzzz", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Another account finds nothing of this one.
    let other = app.tenant("Globex").await;
    let globex = Caller::user(other.account, other.admin.id);
    assert!(
        contacts
            .search(globex, "Petrova", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        contacts
            .search(globex, "916 123", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        contacts.contact(globex, c.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn duplicates_are_found_by_phone_or_email_and_links_stay_within_the_account() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    let c = contacts.create_contact(caller, anna()).await.unwrap();
    let dups = contacts
        .duplicates(caller, vec!["89161234567".into()], vec![], None)
        .await
        .unwrap();
    assert_eq!(dups.len(), 1);
    assert_eq!(
        (dups[0].contact_id, dups[0].matched.as_str()),
        (c.id, "+79161234567")
    );
    let dups = contacts
        .duplicates(
            caller,
            vec![],
            vec!["ANNA.PETROVA@example.com".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(dups[0].contact_id, c.id);
    assert!(
        contacts
            .duplicates(caller, vec!["89161234567".into()], vec![], Some(c.id))
            .await
            .unwrap()
            .is_empty(),
        "a contact is not its own duplicate"
    );

    let co = contacts
        .create_company(
            caller,
            NewCompany {
                name: "Acme Trading".into(),
                web: "https://acme.test".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    contacts.link(caller, c.id, co.id).await.unwrap();
    contacts.link(caller, c.id, co.id).await.unwrap();
    assert_eq!(
        contacts.contact(caller, c.id).await.unwrap().company_ids,
        vec![co.id]
    );
    assert_eq!(
        contacts.company(caller, co.id).await.unwrap().contact_ids,
        vec![c.id]
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM contacts.outbox WHERE event_type = 'contacts.contact_linked'"
        )
        .await,
        1
    );

    // Across accounts: not found, nothing linked.
    let other = app.tenant("Globex").await;
    let globex = Caller::user(other.account, other.admin.id);
    let theirs = contacts
        .create_company(
            globex,
            NewCompany {
                name: "Globex".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = contacts.link(caller, c.id, theirs.id).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = contacts.link(globex, c.id, theirs.id).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contact_companies")
            .await,
        1
    );
    assert!(
        contacts
            .duplicates(globex, vec!["89161234567".into()], vec![], None)
            .await
            .unwrap()
            .is_empty()
    );
    contacts.unlink(caller, c.id, co.id).await.unwrap();
    assert!(
        contacts
            .contact(caller, c.id)
            .await
            .unwrap()
            .company_ids
            .is_empty()
    );

    // Lists: newest first, keyset paged, filtered by tag.
    for i in 0..3 {
        contacts
            .create_contact(
                caller,
                NewContact {
                    first_name: format!("Person {i}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let page = contacts
        .list_contacts(
            caller,
            &ContactFilter::default(),
            PageRequest::new(None, Some(2)),
        )
        .await
        .unwrap();
    assert_eq!(page.items[0].name, "Person 2");
    let rest = contacts
        .list_contacts(
            caller,
            &ContactFilter::default(),
            PageRequest::new(page.next, Some(10)),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    let vip = contacts.tags(caller, Entity::Contact).await.unwrap()[0].id;
    let tagged = contacts
        .list_contacts(
            caller,
            &ContactFilter {
                tags: vec![vip],
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        tagged.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![c.id]
    );
}

#[tokio::test]
async fn contact_pages_create_warn_of_duplicates_search_and_link() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    let existing = contacts.create_contact(caller, anna()).await.unwrap();
    let c = app.signed_in(&t.admin.email).await;

    let (status, _) = c.text("/contacts").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    // A bad phone: the form again, with the error, nothing written.
    let res = c
        .submit(
            "/contacts/new",
            "/contacts",
            &[("first_name", "Oleg"), ("phone", "twelve"), ("email", "")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contacts")
            .await,
        1
    );
    // The same phone as Anna's, typed another way: a warning naming her; saving anyway works.
    let res = c
        .submit(
            "/contacts/new",
            "/contacts",
            &[
                ("first_name", "Anya"),
                ("phone", "8-916-123-45-67"),
                ("email", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::CONFLICT);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Anna Petrova") && html.contains("data-test=\"duplicates\""),
        "{html}"
    );
    let res = c
        .submit(
            "/contacts/new",
            "/contacts",
            &[
                ("first_name", "Anya"),
                ("phone", "8-916-123-45-67"),
                ("email", ""),
                ("confirm_duplicate", "1"),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/contacts/"));
    // Search by phone in yet another format.
    let (_, html) = c.text("/contacts?q=%2B7+916+1234567").await;
    assert!(
        html.contains("Anna Petrova") && html.contains("Anya"),
        "{html}"
    );
    // A company, linked from the contact's page.
    let res = c
        .submit(
            "/companies/new",
            "/companies",
            &[("name", "Acme Trading"), ("phone", ""), ("email", "")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let company = contacts
        .list_companies(caller, &ContactFilter::default(), PageRequest::default())
        .await
        .unwrap()
        .items[0]
        .id;
    let page = format!("/contacts/{}", existing.id);
    let res = c
        .submit(
            &page,
            &format!("{page}/companies"),
            &[("company_id", &company.0.to_string())],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let (_, html) = c.text(&page).await;
    assert!(html.contains("Acme Trading"));
    let (_, html) = c.text(&format!("/companies/{company}")).await;
    assert!(html.contains("Anna Petrova"));
    // Settings → Contact fields: a select field for contacts; a list without choices is refused.
    let res = c
        .submit(
            "/settings/contact-fields",
            "/settings/contact-fields",
            &[
                ("entity", "contact"),
                ("field_type", "select"),
                ("name", "Source"),
                ("choices", "Website\nReferral"),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let res = c
        .submit(
            "/settings/contact-fields",
            "/settings/contact-fields",
            &[
                ("entity", "company"),
                ("field_type", "multiselect"),
                ("name", "Industries"),
                ("choices", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    let fields = contacts
        .custom_fields(caller, Entity::Contact)
        .await
        .unwrap();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].enums.len(), 2);
    assert!(
        contacts
            .custom_fields(caller, Entity::Company)
            .await
            .unwrap()
            .is_empty()
    );
    // Saving the page with the numbers unchanged keeps their types (Anna's second one is MOB).
    let res = c
        .submit(
            &page,
            &page,
            &[
                ("first_name", "Anna"),
                ("last_name", "Petrova"),
                ("position", "Buyer"),
                ("phone", "+7 (916) 123-45-67, 8 903 000 11 22"),
                ("email", "anna.petrova@example.com"),
                ("tags", "vip"),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let saved = contacts.contact(caller, existing.id).await.unwrap();
    assert_eq!(
        saved
            .phones
            .iter()
            .map(|p| p.kind.as_str())
            .collect::<Vec<_>>(),
        vec!["WORK", "MOB"]
    );

    // A deal linked to the contact: each page shows the other.
    let deals = &app.state.modules.deals;
    let p = deals
        .create_pipeline(
            caller,
            deals_api::NewPipeline {
                name: "Sales".into(),
                stages: vec![],
            },
        )
        .await
        .unwrap();
    let deal = deals
        .create_deal(
            caller,
            deals_api::NewDeal {
                main_contact_id: Some(existing.id.0),
                ..deals_api::NewDeal::new(p.id, "Annual supply")
            },
        )
        .await
        .unwrap();
    let (_, html) = c.text(&page).await;
    assert!(html.contains("Annual supply"), "{html}");
    // Anya shares Anna's phone: offered as a duplicate on Anna's page, and merged from there.
    assert!(html.contains("data-test=\"possible-duplicates\"") && html.contains("Anya"));
    let anya = contacts
        .search(caller, "Anya", 5)
        .await
        .unwrap()
        .into_iter()
        .find(|h| h.name == "Anya")
        .unwrap()
        .id;
    let res = c
        .submit(
            &page,
            &format!("{page}/merge"),
            &[("other", &anya.to_string())],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(
        contacts
            .contact(caller, ContactId(anya))
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let (_, html) = c.text(&format!("/deals/{}", deal.id)).await;
    assert!(html.contains("Anna Petrova"));
    let (_, html) = c.text(&format!("/deals/pipelines/{}", p.id)).await;
    assert!(
        html.contains("Anna Petrova"),
        "the card names its main contact"
    );
}

#[tokio::test]
async fn merging_duplicates_keeps_everything_in_one_contact_and_deals_follow() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    let deals = &app.state.modules.deals;
    let a = contacts.create_contact(caller, anna()).await.unwrap();
    let co = contacts
        .create_company(
            caller,
            NewCompany {
                name: "Acme Trading".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let b = contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Anna".into(),
                last_name: "P.".into(),
                phones: vec![
                    Reach::work("8 916 123 45 67"),
                    Reach::work("+7 999 000 00 01"),
                ],
                emails: vec![Reach::work("anna@home.example")],
                tags: vec!["newsletter".into()],
                company_ids: vec![co.id],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = deals
        .create_pipeline(
            caller,
            deals_api::NewPipeline {
                name: "Sales".into(),
                stages: vec![],
            },
        )
        .await
        .unwrap();
    let deal = deals
        .create_deal(
            caller,
            deals_api::NewDeal {
                main_contact_id: Some(b.id.0),
                contact_ids: vec![a.id.0],
                ..deals_api::NewDeal::new(p.id, "Order")
            },
        )
        .await
        .unwrap();

    // Across accounts: refused, nothing changed.
    let other = app.tenant("Globex").await;
    let globex = Caller::user(other.account, other.admin.id);
    let theirs = contacts
        .create_contact(
            globex,
            NewContact {
                first_name: "Zed".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = contacts
        .merge_contacts(caller, a.id, vec![theirs.id])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(
        contacts.contact(globex, theirs.id).await.unwrap().name,
        "Zed"
    );

    let kept = contacts
        .merge_contacts(caller, a.id, vec![b.id])
        .await
        .unwrap();
    assert_eq!(
        kept.name, "Anna Petrova",
        "the kept contact's own values win"
    );
    assert_eq!(
        kept.phones
            .iter()
            .map(|p| p.normalized.as_str())
            .collect::<Vec<_>>(),
        vec!["+79161234567", "+79030001122", "+79990000001"],
        "every number once"
    );
    assert_eq!(kept.emails.len(), 2);
    assert_eq!(kept.tags.len(), 2);
    assert_eq!(kept.company_ids, vec![co.id]);
    assert_eq!(
        contacts.contact(caller, b.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert!(
        contacts
            .search(caller, "+7 999 000 00 01", 10)
            .await
            .unwrap()
            .iter()
            .all(|h| h.id == a.id.0)
    );

    // The deals module takes the ContactsMerged event from the bus (here handed to it directly,
    // twice: the second delivery is recognised and skipped).
    let mut conn = app.state.pool.get().await.unwrap();
    let event: kernel::events::EventEnvelope = {
        use diesel_async::AsyncConnection;
        conn.transaction::<_, kernel::AppError, _>(async |tx| {
            let claimed = kernel::outbox::claim(tx, "contacts", 100).await?;
            Ok(claimed
                .events
                .into_iter()
                .find(|e| e.event_type == "contacts.contacts_merged")
                .expect("the merge event"))
        })
        .await
        .unwrap()
    };
    for expected in [
        kernel::inbox::Outcome::Handled,
        kernel::inbox::Outcome::Duplicate,
    ] {
        let outcome = kernel::inbox::handle_once(&mut conn, &deals::ContactMerges, &event)
            .await
            .unwrap();
        assert_eq!(outcome, expected);
    }
    let moved = deals.deal(caller, deal.id).await.unwrap();
    assert_eq!(
        moved.contact_ids,
        vec![a.id.0],
        "one link, to the kept contact"
    );
    assert_eq!(moved.main_contact_id, Some(a.id.0));
}

#[tokio::test]
async fn segments_are_saved_filters_with_capped_counts_that_respect_rights() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    let source = contacts
        .create_custom_field(
            caller,
            Entity::Contact,
            NewCustomField {
                group_id: None,
                name: "Source".into(),
                field_type: FieldType::Select,
                enums: vec!["Website".into(), "Referral".into()],
            },
        )
        .await
        .unwrap();
    for i in 0..5 {
        let mut values = FieldValues::new();
        values.insert(
            source.id.0.to_string(),
            json!(if i % 2 == 0 { "Website" } else { "Referral" }),
        );
        contacts
            .create_contact(
                caller,
                NewContact {
                    first_name: format!("Lead {i}"),
                    tags: if i < 3 {
                        vec!["vip".into()]
                    } else {
                        Vec::new()
                    },
                    custom_fields: values,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let vip = contacts.tags(caller, Entity::Contact).await.unwrap()[0].id;
    let seg = contacts
        .save_segment(
            caller,
            "VIPs from the website",
            ContactFilter {
                tags: vec![vip],
                fields: vec![(source.id, json!("Website"))],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        contacts.segment_size(caller, seg.id).await.unwrap(),
        SegmentSize {
            count: 2,
            capped: false
        }
    );
    let members = contacts
        .list_contacts(caller, &seg.filter, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        members
            .items
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["Lead 2", "Lead 0"]
    );
    // A filter that cannot hold is refused; names are unique per account.
    let err = contacts
        .save_segment(
            caller,
            "Bad",
            ContactFilter {
                fields: vec![(source.id, json!("Fax"))],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Validation);
    let err = contacts
        .save_segment(caller, "vips from the website", ContactFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.field("name").unwrap().code, "taken");
    // Another account has none of it.
    let other = app.tenant("Globex").await;
    let globex = Caller::user(other.account, other.admin.id);
    assert!(contacts.segments(globex).await.unwrap().is_empty());
    assert_eq!(
        contacts
            .segment_size(globex, seg.id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );

    // The list page: filter by tag, save it as a segment, see it with its count.
    let c = app.signed_in(&t.admin.email).await;
    let list = format!("/contacts?tag={}", vip.0);
    let res = c
        .submit(
            &list,
            "/contacts/segments",
            &[("tag", &vip.0.to_string()), ("name", "All VIPs")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/contacts?segment="));
    let (status, html) = c.text(&location(&res)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(
        html.contains("All VIPs") && html.contains("Lead 1") && !html.contains("Lead 4"),
        "{html}"
    );
    let id = location(&res)
        .trim_start_matches("/contacts?segment=")
        .to_string();
    let id = id.split('&').next().unwrap_or_default();
    assert!(
        html.contains(&format!("/contacts/segments/{id}/size")),
        "its chip asks for its size"
    );
    let (status, size) = c.text(&format!("/contacts/segments/{id}/size")).await;
    assert_eq!((status, size.as_str()), (reqwest::StatusCode::OK, "3"));
    contacts.delete_segment(caller, seg.id).await.unwrap();
    assert_eq!(contacts.segments(caller).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_find_duplicates_page_groups_contacts_by_shared_phone_or_email_and_merges_them() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    let a = contacts.create_contact(caller, anna()).await.unwrap();
    let b = contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Anya".into(),
                phones: vec![Reach::work("8 916 123 45 67")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let c2 = contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "A. Petrova".into(),
                emails: vec![Reach::work("ANNA.PETROVA@example.com")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Unique".into(),
                phones: vec![Reach::work("+7 999 111 22 33")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let groups = contacts.duplicate_groups(caller, None, 50).await.unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| (
                g.matched.as_str(),
                g.contacts.iter().map(|c| c.0).collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("+79161234567", vec![a.id, b.id]),
            ("anna.petrova@example.com", vec![a.id, c2.id]),
        ]
    );
    let after = contacts
        .duplicate_groups(caller, Some("+79161234567".into()), 50)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "keyset by the shared value");
    let other = app.tenant("Globex").await;
    let globex = Caller::user(other.account, other.admin.id);
    assert!(
        contacts
            .duplicate_groups(globex, None, 50)
            .await
            .unwrap()
            .is_empty()
    );

    let c = app.signed_in(&t.admin.email).await;
    let (status, html) = c.text("/contacts/duplicates").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("+79161234567") && html.contains("Anya"));
    let res = c
        .submit(
            "/contacts/duplicates",
            &format!("/contacts/{}/merge", a.id),
            &[("other", &b.id.0.to_string())],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let groups = contacts.duplicate_groups(caller, None, 50).await.unwrap();
    assert_eq!(groups.len(), 1, "only the e-mail pair is left");
}

#[tokio::test]
async fn companies_merge_keeping_people_phones_and_deals_but_never_across_accounts() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    let deals = &app.state.modules.deals;
    let company = |name: &str, phone: &str, tag: &str| NewCompany {
        name: name.into(),
        phones: vec![Reach::work(phone)],
        tags: vec![tag.into()],
        ..Default::default()
    };
    let keep = contacts
        .create_company(caller, company("Northwind", "+7 495 100-00-01", "client"))
        .await
        .unwrap();
    let dup = contacts
        .create_company(
            caller,
            NewCompany {
                web: "https://northwind.example".into(),
                ..company("Northwind LLC", "+7 495 100-00-02", "partner")
            },
        )
        .await
        .unwrap();
    let person = contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Ivan".into(),
                company_ids: vec![dup.id],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = deals
        .create_pipeline(
            caller,
            deals_api::NewPipeline {
                name: "Sales".into(),
                stages: vec![],
            },
        )
        .await
        .unwrap();
    let deal = deals
        .create_deal(
            caller,
            deals_api::NewDeal {
                company_ids: vec![dup.id.0],
                ..deals_api::NewDeal::new(p.id, "Supply")
            },
        )
        .await
        .unwrap();

    let other = app.tenant("Globex").await;
    let globex = Caller::user(other.account, other.admin.id);
    let theirs = contacts
        .create_company(globex, company("Globex", "+7 495 200-00-00", "x"))
        .await
        .unwrap();
    let err = contacts
        .merge_companies(caller, keep.id, vec![theirs.id])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(
        contacts.company(globex, theirs.id).await.unwrap().name,
        "Globex"
    );
    let err = contacts
        .merge_companies(caller, keep.id, vec![keep.id])
        .await
        .unwrap_err();
    assert_eq!(
        err.field("others").map(|f| f.code.as_str()),
        Some("required")
    );

    let kept = contacts
        .merge_companies(caller, keep.id, vec![dup.id])
        .await
        .unwrap();
    assert_eq!(kept.name, "Northwind");
    assert_eq!(
        kept.web, "https://northwind.example",
        "an empty value is filled"
    );
    assert_eq!(kept.phones.len(), 2);
    assert_eq!(kept.tags.len(), 2);
    assert_eq!(kept.contact_ids, vec![person.id]);
    assert_eq!(
        contacts.company(caller, dup.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        contacts
            .contact(caller, person.id)
            .await
            .unwrap()
            .company_ids,
        vec![keep.id]
    );

    // The deals module moves the deal's company link when the event reaches it.
    let mut conn = app.state.pool.get().await.unwrap();
    let event: kernel::events::EventEnvelope = {
        use diesel_async::AsyncConnection;
        conn.transaction::<_, kernel::AppError, _>(async |tx| {
            let claimed = kernel::outbox::claim(tx, "contacts", 100).await?;
            Ok(claimed
                .events
                .into_iter()
                .find(|e| e.event_type == "contacts.companies_merged")
                .expect("the merge event"))
        })
        .await
        .unwrap()
    };
    kernel::inbox::handle_once(&mut conn, &deals::ContactMerges, &event)
        .await
        .unwrap();
    assert_eq!(
        deals.deal(caller, deal.id).await.unwrap().company_ids,
        vec![keep.id.0]
    );
}

#[tokio::test]
async fn a_list_by_one_tag_pages_in_order_however_the_tagged_contacts_are_spread() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let contacts = &app.state.modules.contacts;
    // 1,500 contacts, every 7th tagged, then 700 newer untagged ones on top: the tagged ones
    // span several of the list's internal batches.
    let mut csv = String::from("Name,Tags\n");
    for i in 0..1500 {
        csv.push_str(&format!(
            "Person {i},{}\n",
            if i % 7 == 0 { "rare" } else { "" }
        ));
    }
    for i in 0..700 {
        csv.push_str(&format!("Newer {i},\n"));
    }
    let imp = contacts
        .upload_import(
            caller,
            ImportUpload {
                entity: Entity::Contact,
                file_name: "many.csv".into(),
                encoding: TextEncoding::Utf8,
                data: csv.into_bytes(),
            },
        )
        .await
        .unwrap();
    contacts
        .start_import(
            caller,
            imp.id,
            ImportSettings {
                mapping: imp.mapping.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    contacts.run_import(t.account, imp.id).await.unwrap();
    let rare = contacts
        .tags(caller, Entity::Contact)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "rare")
        .unwrap()
        .id;
    // Untag one, delete another: the list follows.
    let all = |filter: ContactFilter| async move {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let p = contacts
                .list_contacts(caller, &filter, PageRequest::new(after, Some(50)))
                .await
                .unwrap();
            out.extend(p.items.into_iter().map(|c| c.id));
            match p.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        out
    };
    let one = ContactFilter {
        tags: vec![rare],
        ..Default::default()
    };
    let first = all(one.clone()).await;
    assert_eq!(first.len(), 215);
    contacts
        .update_contact(
            caller,
            first[0],
            ContactPatch {
                tags: Some(vec![]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    contacts.delete_contact(caller, first[1]).await.unwrap();
    let by_tag = all(one).await;
    assert_eq!(by_tag.len(), 213);
    assert!(!by_tag.contains(&first[0]) && !by_tag.contains(&first[1]));
    // The same as the general path (two tags, one of them unused), page for page.
    let unused = contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Tagger".into(),
                tags: vec!["unused-elsewhere".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    contacts.delete_contact(caller, unused.id).await.unwrap();
    let other = contacts
        .tags(caller, Entity::Contact)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "unused-elsewhere")
        .unwrap()
        .id;
    let general = all(ContactFilter {
        tags: vec![rare, other],
        ..Default::default()
    })
    .await;
    assert_eq!(by_tag, general);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contact_tags")
            .await,
        213,
        "the index rows follow tags and deletions"
    );
}
