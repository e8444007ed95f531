//! Demo data: an account people can sign in to and look around. Each module adds its own part
//! (pipelines and deals, contacts, chats…) as it arrives. Seeding runs once; later runs find it.

use accounts_api::{Action, Entity, Lang, Level, NewAccount, NewUser, Rights};
use kernel::{AppResult, Caller};

use crate::state::Modules;

pub const DEMO_SUBDOMAIN: &str = "demo";
pub const DEMO_EMAIL: &str = "admin@voronka.demo";
pub const DEMO_PASSWORD: &str = "demo-voronka";

pub struct DemoLogin {
    pub email: &'static str,
    pub password: &'static str,
    pub created: bool,
}

pub async fn seed(modules: &Modules) -> AppResult<DemoLogin> {
    let accounts = &modules.accounts;
    if accounts
        .find_account_by_subdomain(DEMO_SUBDOMAIN)
        .await?
        .is_some()
    {
        return Ok(DemoLogin {
            email: DEMO_EMAIL,
            password: DEMO_PASSWORD,
            created: false,
        });
    }
    let (account, _admin) = accounts
        .create_account(NewAccount {
            name: "Demo Company".into(),
            subdomain: Some(DEMO_SUBDOMAIN.into()),
            admin_name: "Anna Admin".into(),
            admin_email: DEMO_EMAIL.into(),
            admin_password: DEMO_PASSWORD.into(),
            lang: Lang::En,
        })
        .await?;
    let system = Caller::system(account.id);
    let sales = accounts.create_group(system, "Sales").await?;
    let support = accounts.create_group(system, "Support").await?;
    let mut manager = Rights::member();
    for e in [Entity::Deals, Entity::Contacts, Entity::Companies] {
        manager.entity_mut(e).set(Action::Delete, Level::None);
        manager.entity_mut(e).set(Action::Edit, Level::Group);
    }
    let role = accounts
        .create_role(system, "Sales manager", manager)
        .await?;
    let people = [
        (
            "Ivan Petrov",
            "ivan@voronka.demo",
            Lang::Ru,
            "Europe/Moscow",
            Some(sales.id),
            Some(role.id),
        ),
        (
            "Maria Sidorova",
            "maria@voronka.demo",
            Lang::Ru,
            "Asia/Yekaterinburg",
            Some(sales.id),
            Some(role.id),
        ),
        (
            "John Smith",
            "john@voronka.demo",
            Lang::En,
            "Europe/London",
            Some(support.id),
            None,
        ),
    ];
    for (name, email, lang, tz, group_id, role_id) in people {
        accounts
            .create_user(
                system,
                NewUser {
                    name: name.into(),
                    email: email.into(),
                    password: DEMO_PASSWORD.into(),
                    is_admin: false,
                    lang,
                    time_zone: tz.into(),
                    group_id,
                    role_id,
                },
            )
            .await?;
    }
    seed_deals(modules, system).await?;
    Ok(DemoLogin {
        email: DEMO_EMAIL,
        password: DEMO_PASSWORD,
        created: true,
    })
}

/// A sales pipeline with deals spread over its stages, one won and one lost.
async fn seed_deals(modules: &Modules, system: Caller) -> AppResult<()> {
    use deals_api::{MoveTo, NewDeal, NewPipeline, NewStage, StageKind};
    let deals = &modules.deals;
    let stage = |name: &str, color: &str| NewStage {
        name: name.into(),
        color: color.into(),
    };
    let pipeline = deals
        .create_pipeline(
            system,
            NewPipeline {
                name: "Sales".into(),
                stages: vec![
                    stage("Qualified", "#99ccff"),
                    stage("Meeting", "#ffcc66"),
                    stage("Proposal", "#ffff99"),
                    stage("Negotiation", "#ff8f92"),
                ],
            },
        )
        .await?;
    // Custom fields: a source in the main list, and delivery details in their own group.
    let source = deals
        .create_custom_field(
            system,
            deals_api::NewCustomField {
                name: "Lead source".into(),
                field_type: deals_api::FieldType::Select,
                enums: vec!["Website".into(), "Referral".into(), "Exhibition".into()],
                required_statuses: Vec::new(),
                group_id: None,
            },
        )
        .await?;
    let delivery = deals
        .create_field_group(
            system,
            deals_api::NewFieldGroup {
                name: "Delivery".into(),
                sort: None,
            },
        )
        .await?;
    let address = deals
        .create_custom_field(
            system,
            deals_api::NewCustomField {
                name: "Delivery address".into(),
                field_type: deals_api::FieldType::Text,
                enums: Vec::new(),
                required_statuses: Vec::new(),
                group_id: Some(delivery.id),
            },
        )
        .await?;
    let reason = deals.create_loss_reason(system, "Too expensive").await?;
    deals
        .create_loss_reason(system, "Chose a competitor")
        .await?;
    let users = modules
        .accounts
        .list_users(system, kernel::paging::PageRequest::new(None, Some(50)))
        .await?
        .items;
    let open: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .map(|s| s.id)
        .collect();
    let names = [
        "Website redesign",
        "CRM rollout",
        "Annual support",
        "Office furniture",
        "Fleet telematics",
        "Cloud migration",
        "Security audit",
        "Staff training",
        "Warehouse racks",
        "Call centre",
        "Mobile app",
        "Data warehouse",
    ];
    // A few clients, the first deals' main contacts.
    let people = [
        (
            "Anna",
            "Petrova",
            "+7 916 123-45-67",
            "anna.petrova@example.com",
        ),
        (
            "Boris",
            "Ivanov",
            "8 (495) 111-22-33",
            "b.ivanov@example.com",
        ),
        (
            "Olga",
            "Smirnova",
            "+7 903 000 11 22",
            "olga@smirnova.example",
        ),
        ("Dmitry", "Volkov", "8 926 555 44 33", "volkov@example.org"),
        (
            "Elena",
            "Sokolova",
            "+7 911 222 33 44",
            "elena.sokolova@example.net",
        ),
    ];
    let company = modules
        .contacts
        .create_company(
            system,
            contacts_api::NewCompany {
                name: "Northwind Trading".into(),
                web: "https://northwind.example".into(),
                phones: vec![contacts_api::Reach::work("+7 495 777-66-55")],
                responsible_user_id: users.first().map(|u| u.id),
                ..Default::default()
            },
        )
        .await?;
    let mut clients = Vec::new();
    for (i, (first, last, phone, email)) in people.iter().enumerate() {
        let c = modules
            .contacts
            .create_contact(
                system,
                contacts_api::NewContact {
                    first_name: (*first).into(),
                    last_name: (*last).into(),
                    phones: vec![contacts_api::Reach::work(*phone)],
                    emails: vec![contacts_api::Reach::work(*email)],
                    responsible_user_id: users.get(i % users.len().max(1)).map(|u| u.id),
                    company_ids: if i < 2 { vec![company.id] } else { Vec::new() },
                    ..Default::default()
                },
            )
            .await?;
        clients.push(c.id);
    }
    for (i, name) in names.iter().enumerate() {
        let deal = deals
            .create_deal(
                system,
                NewDeal {
                    name: (*name).into(),
                    price: 50_000 + (i as i64 * 37_500) % 400_000,
                    pipeline_id: pipeline.id,
                    stage_id: Some(open[i % open.len()]),
                    responsible_user_id: users.get(i % users.len().max(1)).map(|u| u.id),
                    tags: match i % 4 {
                        0 => vec!["vip".into()],
                        1 => vec!["partner".into(), "website".into()],
                        _ => Vec::new(),
                    },
                    main_contact_id: clients.get(i).map(|c| c.0),
                    custom_fields: {
                        let mut values = deals_api::FieldValues::new();
                        let choice = &source.enums[i % source.enums.len()];
                        values.insert(source.id.0.to_string(), choice.id.into());
                        if i % 3 == 0 {
                            values.insert(
                                address.id.0.to_string(),
                                format!("{} Tverskaya St, Moscow", 3 + i).into(),
                            );
                        }
                        values
                    },
                    ..NewDeal::new(pipeline.id, "")
                },
            )
            .await?;
        // Work in progress: a call logged and a next step on most open deals; one overdue.
        if i < 8 {
            use activities_api::{CALL, EntityRef, FOLLOW_UP, MEETING, NewNote, NewTask};
            let about = EntityRef::deal(deal.id.0);
            modules
                .activities
                .add_note(
                    system,
                    NewNote {
                        entity: about,
                        note_type: "call_out".into(),
                        text: "Discussed the scope and the timeline.".into(),
                        call: Some(activities_api::CallParams {
                            phone: people[i % people.len()].2.into(),
                            duration: 240 + 60 * i as i64,
                            call_result: "answered".into(),
                            ..Default::default()
                        }),
                    },
                )
                .await?;
            if i != 3 {
                let (task_type_id, text) = match i % 3 {
                    0 => (CALL, "Call back about the budget"),
                    1 => (MEETING, "Meet to present the proposal"),
                    _ => (FOLLOW_UP, "Send the contract draft"),
                };
                modules
                    .activities
                    .create_task(
                        system,
                        NewTask {
                            entity: Some(about),
                            task_type_id,
                            text: text.into(),
                            due_at: chrono::Utc::now()
                                + chrono::TimeDelta::hours(i as i64 * 20 - 30),
                            whole_day: false,
                            responsible_user_id: users.get(i % users.len().max(1)).map(|u| u.id),
                        },
                    )
                    .await?;
            }
        }
        let closing = match i {
            10 => Some((deals_api::WON, None)),
            11 => Some((deals_api::LOST, Some(reason.id))),
            _ => None,
        };
        if let Some((stage_id, loss_reason_id)) = closing {
            deals
                .move_deal(
                    system,
                    deal.id,
                    MoveTo {
                        stage_id,
                        after: None,
                        loss_reason_id,
                    },
                )
                .await?;
        }
    }
    Ok(())
}

/// Demo chats: a fake Telegram (this process serves it on `fake_port`) stands in for the real
/// one. On the first run the demo account gets a channel on it and three clients write; replies
/// typed in the inbox reach the fake, which records them (`GET <fake>/_fake/sent`). Returns the
/// fake's URL, or why there are no demo chats this time.
pub async fn chats(
    modules: &Modules,
    app_url: &str,
    fake_port: u16,
) -> Result<(crate::fake_providers::FakeProviders, bool), String> {
    use crate::fake_providers as fake;
    let fake = fake::FakeProviders::start_on(fake_port)
        .await
        .map_err(|e| format!("the fake Telegram cannot listen on 127.0.0.1:{fake_port}: {e}"))?;
    let admin = modules
        .accounts
        .find_user_by_email(DEMO_EMAIL)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no demo administrator")?;
    let caller = Caller::user(admin.account_id, admin.id);
    let m = &modules.messaging;
    if !m
        .channels(caller)
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok((fake, false));
    }
    let channel = m
        .create_channel(
            caller,
            messaging_api::NewChannel {
                provider: Some(messaging_api::Provider::Telegram),
                name: "Demo bot (fake Telegram)".into(),
                token: "123456:demo-token".into(),
                base_url: fake.url.clone(),
                webhook_base: Some(app_url.to_string()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let secret = fake
        .webhooks()
        .into_iter()
        .find_map(|w| w.2)
        .ok_or("the demo channel did not register its webhook")?;
    let hook = format!(
        "{}/hooks/telegram/{}",
        app_url.trim_end_matches('/'),
        channel.webhook_key
    );
    let clients = [
        (
            1,
            70001,
            "Olga Smirnova",
            "olga_s",
            "Hello! Do you deliver to Kazan?",
        ),
        (
            2,
            70002,
            "Dmitry Volkov",
            "dvolkov",
            "How much is the annual plan for 10 users?",
        ),
        (
            3,
            70003,
            "Elena Kuznetsova",
            "",
            "Can I get an invoice for the last order?",
        ),
    ];
    for (update, chat, name, username, text) in clients {
        let body = fake::telegram_text_update(update, chat, name, username, update, text);
        fake::post_telegram_update(&hook, &secret, &body).await?;
    }
    Ok((fake, true))
}
