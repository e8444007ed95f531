//! Imports and exports of contacts and companies: bad files refused, every row checked, the
//! duplicate policy, the dry run, a run killed half-way, exports gated by the export right, a
//! round trip through XLSX, and the HTTP flow with a real job worker.

use std::time::{Duration, Instant};

use contacts_api::*;
use kernel::{Caller, ErrorCode};

use crate::support::{TestApp, spawn_app};

fn csv_upload(entity: Entity, text: &str) -> ImportUpload {
    ImportUpload {
        entity,
        file_name: "clients.csv".into(),
        encoding: TextEncoding::Utf8,
        data: text.as_bytes().to_vec(),
    }
}

async fn run(
    app: &TestApp,
    caller: Caller,
    id: ImportId,
    mapping: Vec<String>,
    policy: DuplicatePolicy,
    dry_run: bool,
) -> ImportInfo {
    let c = &app.state.modules.contacts;
    c.start_import(
        caller,
        id,
        ImportSettings {
            mapping,
            policy,
            tag: "imported".into(),
            dry_run,
        },
    )
    .await
    .unwrap();
    // What the job worker does.
    c.run_import(caller.account_id, id).await.unwrap()
}

const CLIENTS: &str = "Имя;Фамилия;Телефон;Email;Тип клиента;Компания\n\
Boris;Sokolov;+7 903 111-22-33;boris@example.com;Retail;Northwind\n\
Call;Me;call me maybe;call@example.com;;\n\
Anna;Again;8 (916) 123-45-67;;;\n\
Bad;Mail;;not-an-email;;\n\
Odd;Choice;;odd@example.com;Wholesale;\n\
;;+7 903 999 00 00;;;\n\
Boris;Twice;;BORIS@example.com;;Northwind\n";

#[tokio::test]
async fn an_import_checks_each_row_applies_the_duplicate_policy_and_reports_refused_rows() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let c = &app.state.modules.contacts;
    c.create_contact(
        caller,
        NewContact {
            first_name: "Anna".into(),
            phones: vec![Reach::work("+79161234567")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let kind = c
        .create_custom_field(
            caller,
            Entity::Contact,
            NewCustomField {
                group_id: None,
                name: "Тип клиента".into(),
                field_type: FieldType::Select,
                enums: vec!["Retail".into(), "VIP".into()],
            },
        )
        .await
        .unwrap();

    let imp = c
        .upload_import(caller, csv_upload(Entity::Contact, CLIENTS))
        .await
        .unwrap();
    assert_eq!(imp.total_rows, 7);
    assert_eq!(imp.status, JobStatus::Uploaded);
    // Russian headers and the custom field's name are recognised.
    let cf = format!("cf:{}", kind.id);
    assert_eq!(
        imp.mapping,
        [
            "first_name",
            "last_name",
            "phone_work",
            "email_work",
            cf.as_str(),
            "company"
        ]
    );
    assert_eq!(imp.preview[0][0], "Boris");

    // The dry run counts what would happen and writes nothing.
    let before = app
        .count("SELECT count(*) AS n FROM contacts.contacts")
        .await;
    let dry = run(
        &app,
        caller,
        imp.id,
        imp.mapping.clone(),
        DuplicatePolicy::Skip,
        true,
    )
    .await;
    assert_eq!(dry.status, JobStatus::Done);
    assert_eq!(
        (dry.created, dry.updated, dry.skipped, dry.failed),
        (1, 0, 2, 4),
        "{dry:?}"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contacts")
            .await,
        before
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.companies")
            .await,
        0
    );
    let errors = c.import_errors(caller, imp.id).await.unwrap();
    let by_row: Vec<(i32, &str)> = errors.iter().map(|e| (e.row, e.field.as_str())).collect();
    assert_eq!(
        by_row,
        [
            (3, "Телефон"),
            (5, "Email"),
            (6, "Тип клиента"),
            (7, "name")
        ],
        "{errors:?}"
    );
    assert!(errors[2].message.contains("choices"), "{errors:?}");

    // The real run: the good row in, the duplicates skipped, the bad ones reported.
    let done = run(
        &app,
        caller,
        imp.id,
        imp.mapping.clone(),
        DuplicatePolicy::Skip,
        false,
    )
    .await;
    assert_eq!(
        (done.created, done.updated, done.skipped, done.failed),
        (1, 0, 2, 4)
    );
    let boris = c.search(caller, "+7 903 111 22 33", 5).await.unwrap();
    assert_eq!(boris.len(), 1);
    let boris = c.contact(caller, ContactId(boris[0].id)).await.unwrap();
    assert_eq!(boris.name, "Boris Sokolov");
    assert_eq!(boris.tags[0].name, "imported");
    assert_eq!(
        boris.company_ids.len(),
        1,
        "Northwind was created and linked"
    );
    assert_eq!(
        boris.custom_fields[&kind.id.0.to_string()],
        serde_json::json!(kind.enums[0].id)
    );
    assert_eq!(c.import_errors(caller, imp.id).await.unwrap().len(), 4);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.outbox WHERE event_type = 'contacts.contact_created'")
            .await,
        2,
        "Anna and Boris each have their ContactCreated"
    );
    // A finished import does not run twice.
    let again = c
        .start_import(
            caller,
            imp.id,
            ImportSettings {
                mapping: imp.mapping.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict);

    // "update" adds the row's data to the existing contact; "create" makes new ones anyway.
    let upd = c
        .upload_import(
            caller,
            csv_upload(
                Entity::Contact,
                "Full name,Phone,E-mail\nAnna,8 916 123 45 67,anna@example.com\n",
            ),
        )
        .await
        .unwrap();
    let upd = run(
        &app,
        caller,
        upd.id,
        upd.mapping.clone(),
        DuplicatePolicy::Update,
        false,
    )
    .await;
    assert_eq!((upd.created, upd.updated), (0, 1), "{upd:?}");
    let anna = c.search(caller, "anna@example.com", 5).await.unwrap();
    assert_eq!(anna.len(), 1);
    let anna = c.contact(caller, ContactId(anna[0].id)).await.unwrap();
    assert_eq!(anna.phones.len(), 1);
    assert_eq!(anna.emails[0].email, "anna@example.com");
    let dup = c
        .upload_import(
            caller,
            csv_upload(Entity::Contact, "Full name,Phone\nAnna Two,+79161234567\n"),
        )
        .await
        .unwrap();
    let dup = run(
        &app,
        caller,
        dup.id,
        dup.mapping.clone(),
        DuplicatePolicy::Create,
        false,
    )
    .await;
    assert_eq!(dup.created, 1);
}

#[tokio::test]
async fn bad_files_and_mappings_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let c = &app.state.modules.contacts;

    // Windows-1251 bytes uploaded as UTF-8.
    let cp1251: Vec<u8> = vec![
        0xC8, 0xEC, 0xFF, b',', b'T', b'e', b'l', b'\n', 0xC8, 0xE2, 0xE0, 0xED, b',', b'1', b'\n',
    ];
    let e = c
        .upload_import(
            caller,
            ImportUpload {
                data: cp1251.clone(),
                ..csv_upload(Entity::Contact, "")
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Validation);
    assert_eq!(
        e.field("file").map(|f| f.code.as_str()),
        Some("bad_encoding")
    );
    assert!(e.fields[0].message.contains("UTF-8"), "{e:?}");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.imports")
            .await,
        0
    );
    // Read as Windows-1251 it is fine.
    let ok = c
        .upload_import(
            caller,
            ImportUpload {
                data: cp1251,
                encoding: TextEncoding::Windows1251,
                ..csv_upload(Entity::Contact, "")
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.headers, ["Имя", "Tel"]);
    assert_eq!(ok.preview[0][0], "Иван");

    let empty = c
        .upload_import(caller, csv_upload(Entity::Contact, "\n"))
        .await
        .unwrap_err();
    assert_eq!(empty.field("file").map(|f| f.code.as_str()), Some("empty"));

    // No column goes to the name: refused, the import stays as uploaded.
    let imp = c
        .upload_import(
            caller,
            csv_upload(Entity::Contact, "Phone,Email\n+79161234567,a@example.com\n"),
        )
        .await
        .unwrap();
    let e = c
        .start_import(
            caller,
            imp.id,
            ImportSettings {
                mapping: imp.mapping.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.field("mapping").map(|f| f.code.as_str()),
        Some("missing_column")
    );
    for bad in [
        vec!["full_name".to_string()],
        vec!["full_name".into(), "nonsense".into()],
    ] {
        let e = c
            .start_import(
                caller,
                imp.id,
                ImportSettings {
                    mapping: bad,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation, "{e:?}");
    }
    assert_eq!(
        c.import_info(caller, imp.id).await.unwrap().status,
        JobStatus::Uploaded
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contacts")
            .await,
        0
    );

    // Another account sees neither the import nor its errors.
    let other = app.tenant("Globex").await;
    let theirs = Caller::user(other.account, other.admin.id);
    assert_eq!(
        c.import_info(theirs, imp.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        c.run_import(other.account, imp.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_half_way_resumes_without_duplicating_rows() {
    if crate::support::remote_modules()
        .iter()
        .any(|m| m == "contacts")
    {
        // The worker is killed by dropping its future: with contacts remote the import runs in
        // the service, which a dropped HTTP call does not stop.
        return;
    }
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let caller = Caller::user(t.account, t.admin.id);
    let c = app.state.modules.contacts.clone();
    let rows = 6_000;
    let mut text = String::from("Name,Phone\n");
    for i in 0..rows {
        text.push_str(&format!("Person {i},+7 915 {i:07}\n"));
    }
    let imp = c
        .upload_import(caller, csv_upload(Entity::Contact, &text))
        .await
        .unwrap();
    c.start_import(
        caller,
        imp.id,
        ImportSettings {
            mapping: imp.mapping.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The worker is killed once some chunks are in.
    let worker = {
        let c = c.clone();
        tokio::spawn(async move { c.run_import(caller.account_id, imp.id).await })
    };
    let started = Instant::now();
    loop {
        let now = c.import_info(caller, imp.id).await.unwrap();
        if now.processed >= 1000 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.abort();
    let _ = worker.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let half = c.import_info(caller, imp.id).await.unwrap();
    assert_eq!(half.status, JobStatus::Running);
    assert!(
        half.processed < rows,
        "killed before the end ({} of {rows})",
        half.processed
    );
    // What is committed matches the count of rows done: a chunk is all in or all out.
    let count_sql = format!(
        "SELECT count(*) AS n FROM contacts.contacts WHERE account_id = {}",
        t.account
    );
    assert_eq!(app.count(&count_sql).await, half.processed as i64);

    // The job runs again (as apalis retries it) and finishes the rest, once.
    let done = c.run_import(caller.account_id, imp.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!((done.processed, done.created), (rows, rows));
    assert_eq!(app.count(&count_sql).await, rows as i64);
    assert_eq!(
        app.count("SELECT count(DISTINCT normalized) AS n FROM contacts.phones")
            .await,
        rows as i64
    );
}

#[tokio::test]
async fn exports_need_the_export_right_and_read_back_through_an_import() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let c = &app.state.modules.contacts;
    for (name, tag) in [("Anna", "vip"), ("Boris", "vip"), ("Olga", "")] {
        c.create_contact(
            admin,
            NewContact {
                first_name: name.into(),
                phones: vec![Reach::work(format!("+7916000{:04}", name.as_bytes()[0]))],
                emails: vec![Reach::work(format!("{}@example.com", name.to_lowercase()))],
                tags: if tag.is_empty() {
                    vec![]
                } else {
                    vec![tag.into()]
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let vip = c.tags(admin, Entity::Contact).await.unwrap()[0].id;
    let seg = c
        .save_segment(
            admin,
            "VIP",
            ContactFilter {
                tags: vec![vip],
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // A member without the export right is refused.
    let member = app.member(&t, "sam@acme.test").await;
    let sam = Caller::user(t.account, member.id);
    let e = c
        .start_export(
            sam,
            ExportRequest {
                entity: Entity::Contact,
                format: FileFormat::Csv,
                filter: ContactFilter::default(),
                segment: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.exports")
            .await,
        0
    );

    // The segment as CSV: its two contacts.
    let x = c
        .start_export(
            admin,
            ExportRequest {
                entity: Entity::Contact,
                format: FileFormat::Csv,
                filter: ContactFilter::default(),
                segment: Some(seg.id),
            },
        )
        .await
        .unwrap();
    assert_eq!(x.title, "segment: VIP");
    let e = c.export_file(admin, x.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "not written yet");
    let x = c.run_export(t.account, x.id).await.unwrap();
    assert_eq!((x.status, x.rows), (JobStatus::Done, 2));
    let file = c.export_file(admin, x.id).await.unwrap();
    let text = String::from_utf8(file.data).unwrap();
    assert!(text.starts_with("\u{feff}ID,Name,"), "{text}");
    assert!(text.contains("anna@example.com") && text.contains("boris@example.com"));
    assert!(!text.contains("olga@example.com"));
    // Nobody else downloads it.
    assert_eq!(
        c.export_file(sam, x.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let other = app.tenant("Globex").await;
    let theirs = Caller::user(other.account, other.admin.id);
    assert_eq!(
        c.export_file(theirs, x.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );

    // Everything as XLSX, imported into the other account: the same three contacts.
    let all = c
        .start_export(
            admin,
            ExportRequest {
                entity: Entity::Contact,
                format: FileFormat::Xlsx,
                filter: ContactFilter::default(),
                segment: None,
            },
        )
        .await
        .unwrap();
    c.run_export(t.account, all.id).await.unwrap();
    let file = c.export_file(admin, all.id).await.unwrap();
    assert_eq!(file.format, FileFormat::Xlsx);
    let imp = c
        .upload_import(
            theirs,
            ImportUpload {
                entity: Entity::Contact,
                file_name: file.file_name,
                encoding: TextEncoding::Utf8,
                data: file.data,
            },
        )
        .await
        .unwrap();
    assert_eq!(imp.format, FileFormat::Xlsx);
    assert_eq!(imp.total_rows, 3);
    // The responsible users are the other account's: each row is refused, naming the user.
    let dry = run(
        &app,
        theirs,
        imp.id,
        imp.mapping.clone(),
        DuplicatePolicy::Skip,
        true,
    )
    .await;
    assert_eq!(dry.failed, 3);
    let errors = c.import_errors(theirs, imp.id).await.unwrap();
    assert_eq!(errors[0].value, "admin@acme.test");
    assert!(errors[0].message.contains("no active user"), "{errors:?}");
    // Without that column (and without the old account's ids) they all come in.
    let mut mapping = imp.mapping.clone();
    mapping[9] = String::new();
    let done = run(&app, theirs, imp.id, mapping, DuplicatePolicy::Skip, false).await;
    assert_eq!((done.created, done.failed), (3, 0), "{done:?}");
    let found = c.search(theirs, "boris@example.com", 5).await.unwrap();
    assert_eq!(found.len(), 1);
    let boris = c.contact(theirs, ContactId(found[0].id)).await.unwrap();
    assert_eq!(
        boris
            .tags
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["vip", "imported"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_know_who_has_an_open_deal_and_who_was_called_from_other_modules_events() {
    use deals_api::{NewDeal, StageKind};
    let (app, backbone) = crate::support::spawn_app_with_workers().await;
    // Every subscriber runs somewhere: in the app, or in its module's service.
    let mut names: Vec<String> = std::iter::once(&app.state)
        .chain(app.service.iter())
        .flat_map(|s| {
            voronka::server::subscribers(&s.modules)
                .iter()
                .map(|x| x.name().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    let mut all = voronka::server::SUBSCRIBER_NAMES.to_vec();
    all.sort();
    assert_eq!(names, all);
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let c = &app.state.modules.contacts;
    let d = &app.state.modules.deals;
    let anna = c
        .create_contact(
            admin,
            NewContact {
                first_name: "Anna".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.create_contact(
        admin,
        NewContact {
            first_name: "Boris".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pipeline = d
        .create_pipeline(
            admin,
            deals_api::NewPipeline {
                name: "Sales".into(),
                stages: vec![
                    deals_api::NewStage {
                        name: "Talks".into(),
                        color: "#9fc7f5".into(),
                    },
                    deals_api::NewStage {
                        name: "Offer".into(),
                        color: "#9fc7f5".into(),
                    },
                ],
            },
        )
        .await
        .unwrap();
    let deal = d
        .create_deal(
            admin,
            NewDeal {
                contact_ids: vec![anna.id.0],
                ..NewDeal::new(pipeline.id, "Order")
            },
        )
        .await
        .unwrap();
    // A deal with no contacts: nothing for contacts to link (its creation leaves no inbox row).
    d.create_deal(admin, NewDeal::new(pipeline.id, "Walk-in"))
        .await
        .unwrap();
    let with = ContactFilter {
        open_deal: Some(true),
        ..Default::default()
    };
    let without = ContactFilter {
        open_deal: Some(false),
        ..Default::default()
    };
    let names_in = |f: ContactFilter| async move {
        c.list_contacts(admin, &f, kernel::paging::PageRequest::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|x| x.name)
            .collect::<Vec<_>>()
    };
    let started = Instant::now();
    while names_in(with.clone()).await != ["Anna"] {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the deal never reached contacts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names_in(without.clone()).await, ["Boris"]);
    // A move between open stages changes nothing here (and leaves no inbox row); won: no
    // longer open.
    let offer = pipeline.stages.iter().find(|s| s.name == "Offer").unwrap();
    let won = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Won)
        .unwrap();
    for stage in [offer, won] {
        d.move_deal(
            admin,
            deal.id,
            deals_api::MoveTo {
                stage_id: stage.id,
                after: None,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap();
    }
    let started = Instant::now();
    while !names_in(with.clone()).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the close never reached contacts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names_in(without).await.len(), 2);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM deals.outbox WHERE event_type = 'deals.deal_stage_changed'"
        )
        .await,
        2
    );
    for (event_type, recorded) in [
        (
            "deals.deal_stage_changed",
            "only the move to won is recorded",
        ),
        (
            "deals.deal_created",
            "only the deal with a contact is recorded",
        ),
    ] {
        let sql = format!(
            "SELECT count(*) AS n FROM contacts.inbox
              WHERE subscriber = 'contacts.deal_links' AND event_type = '{event_type}'"
        );
        assert_eq!(app.count(&sql).await, 1, "{recorded}");
    }

    // A call noted on the deal: its contact counts as contacted now.
    app.state
        .modules
        .activities
        .add_note(
            admin,
            activities_api::NewNote {
                entity: activities_api::EntityRef::deal(deal.id.0),
                note_type: "call_out".into(),
                text: "Talked about the delivery".into(),
                call: None,
            },
        )
        .await
        .unwrap();
    let recent = ContactFilter {
        contacted_within_days: Some(7),
        ..Default::default()
    };
    let started = Instant::now();
    while names_in(recent.clone()).await != ["Anna"] {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the call never reached contacts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stale = ContactFilter {
        not_contacted_days: Some(30),
        ..Default::default()
    };
    assert_eq!(names_in(stale).await, ["Boris"]);
    backbone.stop().await;
}

/// A multipart body as a browser sends it: small fields, then the file.
fn multipart(fields: &[(&str, &str)], file_name: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----voronka-test-boundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn the_pages_upload_map_and_refuse_with_a_clear_message() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.signed_in(&t.admin.email).await;
    let token = c.csrf("/contacts/transfer").await;
    let upload = |data: Vec<u8>, encoding: &'static str| {
        let (ct, body) = multipart(
            &[("entity", "contact"), ("encoding", encoding)],
            "clients.csv",
            &data,
        );
        c.http
            .post(format!("{}/contacts/import", c.base))
            .header("content-type", ct)
            .header("x-csrf-token", &token)
            .header("hx-request", "true")
            .body(body)
            .send()
    };
    // Without the CSRF header: refused.
    let (ct, body) = multipart(&[("entity", "contact")], "a.csv", b"Name\nA\n");
    let res = c
        .http
        .post(format!("{}/contacts/import", c.base))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);

    // A Windows-1251 file as UTF-8: the page says what is wrong; nothing is kept.
    let res = upload(vec![0xC8, 0xEC, 0xFF, b'\n', 0xC8, b'\n'], "utf-8")
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("data-test=\"upload-error\"") && html.contains("UTF-8"),
        "{html}"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.imports")
            .await,
        0
    );

    // A good file: htmx is sent to its mapping screen, which guessed the columns.
    let res = upload(
        "Name;Phone;Notes\nVera Orlova;+7 915 100-20-30;x\n".into(),
        "utf-8",
    )
    .await
    .unwrap();
    let to = res
        .headers()
        .get("hx-redirect")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(to.starts_with("/contacts/import/"), "{to}");
    let (status, html) = c.text(&to).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(html.contains("Vera Orlova"), "the preview shows the rows");
    assert!(
        html.contains("<option value=\"full_name\" selected>"),
        "Name maps to the full name"
    );
    // No name column chosen: the mapping screen again, with the reason.
    let res = c
        .submit(
            &to,
            &to,
            &[
                ("col0", ""),
                ("col1", "phone_work"),
                ("col2", ""),
                ("action", "run"),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    let html = res.text().await.unwrap();
    assert!(html.contains("data-test=\"mapping-error\""), "{html}");
    // With the name, but no job workers in this process: the page says so, nothing runs.
    let res = c
        .submit(
            &to,
            &to,
            &[
                ("col0", "full_name"),
                ("col1", "phone_work"),
                ("col2", ""),
                ("action", "run"),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);

    // A member without the export right is sent back with a message.
    let member = app.member(&t, "sam@acme.test").await;
    let m = app.signed_in(&member.email).await;
    let res = m
        .submit(
            "/contacts",
            "/contacts/export",
            &[("entity", "contact"), ("format", "csv")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(
        crate::support::location(&res).contains("import.no_export_right"),
        "{}",
        crate::support::location(&res)
    );
}

#[tokio::test]
async fn record_pages_edit_custom_fields_and_list_a_companys_deals() {
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
    let anna = contacts
        .create_contact(
            caller,
            NewContact {
                first_name: "Anna".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let co = contacts
        .create_company(
            caller,
            NewCompany {
                name: "Northwind".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = app
        .state
        .modules
        .deals
        .create_pipeline(
            caller,
            deals_api::NewPipeline {
                name: "Sales".into(),
                stages: vec![],
            },
        )
        .await
        .unwrap();
    app.state
        .modules
        .deals
        .create_deal(
            caller,
            deals_api::NewDeal {
                company_ids: vec![co.id.0],
                ..deals_api::NewDeal::new(p.id, "Supply contract")
            },
        )
        .await
        .unwrap();
    let c = app.signed_in(&t.admin.email).await;
    let page = format!("/contacts/{}", anna.id);
    let (_, html) = c.text(&page).await;
    assert!(
        html.contains("name=\"cf_"),
        "the custom field is on the page"
    );
    let referral = source.enums[1].id.to_string();
    let key = format!("cf_{}", source.id);
    let res = c
        .submit(
            &page,
            &page,
            &[
                ("first_name", "Anna"),
                ("last_name", ""),
                (key.as_str(), referral.as_str()),
            ],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
    let saved = contacts.contact(caller, anna.id).await.unwrap();
    assert_eq!(
        saved.custom_fields[&source.id.0.to_string()],
        serde_json::json!(source.enums[1].id)
    );
    // An unknown choice: the page again with the field's error, the value unchanged.
    let res = c
        .submit(
            &page,
            &page,
            &[("first_name", "Anna"), (key.as_str(), "Nonsense")],
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(
        contacts
            .contact(caller, anna.id)
            .await
            .unwrap()
            .custom_fields,
        saved.custom_fields
    );
    let (_, html) = c.text(&format!("/companies/{}", co.id)).await;
    assert!(
        html.contains("Supply contract"),
        "the company's deal is listed"
    );
}
