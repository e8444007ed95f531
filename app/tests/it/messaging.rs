//! Messaging: providers' sample webhooks become contacts, conversations, incoming leads and
//! timeline entries once; bad signatures and malformed bodies store nothing; sends go through
//! the real workers to the fake providers — paced, retried after 429s, in order, never twice,
//! and a permanent error is shown in the chat.

use std::time::Duration;

use deals_api::{NewPipeline, NewStage, Pipeline, StageKind};
use kernel::paging::PageRequest;
use kernel::{AccountId, Caller, ErrorCode};
use messaging_api::*;
use serde_json::json;
use voronka::fake_providers::{self as fake, FakeProviders, Fault};

use crate::support::{TestApp, another_process, spawn_app_with_workers_and, start_backbone};

async fn pipeline(app: &TestApp, caller: Caller) -> Pipeline {
    app.state
        .modules
        .deals
        .create_pipeline(
            caller,
            NewPipeline {
                name: "Sales".into(),
                stages: ["Talk", "Offer"]
                    .iter()
                    .map(|n| NewStage {
                        name: n.to_string(),
                        color: "#99ccff".into(),
                    })
                    .collect(),
            },
        )
        .await
        .unwrap()
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // Generous: the whole suite shares two cores.
    for _ in 0..2400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn new_channel(provider: Provider, fake: &FakeProviders, app: &TestApp) -> NewChannel {
    NewChannel {
        provider: Some(provider),
        token: format!("{}-token", provider.as_str()),
        external_id: match provider {
            Provider::Telegram => String::new(),
            Provider::Whatsapp => "123456123".into(),
            Provider::Instagram => "17841400000000000".into(),
        },
        app_secret: "app-secret".into(),
        verify_token: "meatyhamhock".into(),
        base_url: fake.url.clone(),
        webhook_base: Some(app.url.clone()),
        ..Default::default()
    }
}

/// The secret token the fake Telegram was given with setWebhook for `token`.
fn telegram_secret(fake: &FakeProviders, token: &str) -> String {
    fake.webhooks()
        .into_iter()
        .rev()
        .find(|w| w.0 == token)
        .and_then(|w| w.2)
        .expect("setWebhook with a secret token")
}

#[tokio::test]
async fn a_telegram_update_becomes_a_contact_a_conversation_a_lead_and_a_timeline_entry_once() {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let p = pipeline(&app, admin).await;
    let channel = m
        .messaging
        .create_channel(
            admin,
            NewChannel {
                pipeline_id: Some(p.id.0),
                ..new_channel(Provider::Telegram, &fake, &app)
            },
        )
        .await
        .unwrap();
    assert!(
        channel.external_id.starts_with("fake_"),
        "getMe's username: {channel:?}"
    );
    let hook = format!("{}/hooks/telegram/{}", app.url, channel.webhook_key);
    let registered = fake.webhooks();
    assert_eq!(
        registered.last().unwrap().1,
        hook,
        "setWebhook with our URL"
    );
    let secret = telegram_secret(&fake, "telegram-token");

    // The official sample update from Telegram's webhooks guide.
    let update = json!({"update_id":10000,"message":{"date":1441645532,"chat":{"last_name":"Test Lastname","id":1111111,"type": "private","first_name":"Test Firstname","username":"Testusername"},"message_id":1365,"from":{"last_name":"Test Lastname","id":1111111,"first_name":"Test Firstname","username":"Testusername"},"text":"/start"}});
    // A wrong or missing secret: refused, nothing stored.
    assert_eq!(
        fake::post_telegram_update(&hook, "wrong", &update)
            .await
            .unwrap(),
        401
    );
    assert_eq!(
        fake::post_telegram_update(&hook, "", &update)
            .await
            .unwrap(),
        401
    );
    // Malformed: 400, nothing stored.
    let http = reqwest::Client::new();
    let bad = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let not_an_update = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .json(&json!({"message": {"text": "no update id"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_an_update.status(), 400);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.inbound")
            .await,
        0
    );
    // An unknown channel key: 404.
    let unknown = format!("{}/hooks/telegram/nope", app.url);
    assert_eq!(
        fake::post_telegram_update(&unknown, &secret, &update)
            .await
            .unwrap(),
        404
    );

    assert_eq!(
        fake::post_telegram_update(&hook, &secret, &update)
            .await
            .unwrap(),
        200
    );
    let conversations = || async {
        m.messaging
            .conversations(
                admin,
                &ConversationFilter::default(),
                PageRequest::default(),
            )
            .await
            .unwrap()
            .items
    };
    wait_until("the conversation", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages")
            .await
            == 1
    })
    .await;
    let c = conversations().await.remove(0);
    assert_eq!(c.title, "Test Firstname Test Lastname");
    assert_eq!(c.handle, "@Testusername");
    assert_eq!(c.unread, 1);
    let contact = m
        .contacts
        .contact(admin, contacts_api::ContactId(c.contact_id.unwrap()))
        .await
        .unwrap();
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Test", "Firstname Test Lastname")
    );
    let deal = m
        .deals
        .deal(admin, deals_api::DealId(c.deal_id.unwrap()))
        .await
        .unwrap();
    let incoming = p
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Incoming)
        .unwrap();
    assert_eq!(deal.stage_id, incoming.id, "an incoming lead");
    assert_eq!(deal.contact_ids, vec![contact.id.0]);
    let messages = m.messaging.messages(admin, c.id, None, 50).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, "/start");
    assert_eq!(messages[0].direction, Direction::In);
    // The deal's timeline has the message (the event log is fed by the bus).
    wait_until("the timeline entry", || async {
        app.count(&format!(
            "SELECT count(*) AS n FROM activities.log WHERE entity = 'deal' AND entity_id = {} AND event_type = 'messaging.message_received'",
            deal.id.0
        ))
        .await
            == 1
    })
    .await;
    // The lead's responsible user is told (the bell).
    wait_until("the notification", || async {
        m.messaging.unread_notifications(admin).await.unwrap() >= 1
    })
    .await;

    // The same delivery again: 200, and nothing changes.
    assert_eq!(
        fake::post_telegram_update(&hook, &secret, &update)
            .await
            .unwrap(),
        200
    );
    // The same message in another delivery (a new update id): stored once as a message.
    let mut again = update.clone();
    again["update_id"] = json!(10001);
    assert_eq!(
        fake::post_telegram_update(&hook, &secret, &again)
            .await
            .unwrap(),
        200
    );
    wait_until("both deliveries processed", || async {
        app.count("SELECT count(*) AS n FROM messaging.inbound WHERE status = 'done'")
            .await
            == 2
    })
    .await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.inbound")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.messages")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.conversations")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contacts")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM deals.deals").await, 1);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM activities.log WHERE event_type = 'messaging.message_received'").await,
        1
    );

    // A second message of the same client goes to the same conversation and deal.
    let next = fake::telegram_text_update(
        10002,
        1111111,
        "Test Firstname",
        "Testusername",
        1366,
        "Price?",
    );
    assert_eq!(
        fake::post_telegram_update(&hook, &secret, &next)
            .await
            .unwrap(),
        200
    );
    wait_until("the second message", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages")
            .await
            == 2
    })
    .await;
    assert_eq!(app.count("SELECT count(*) AS n FROM deals.deals").await, 1);
    assert_eq!(
        m.messaging.conversation(admin, c.id).await.unwrap().unread,
        2
    );

    // Another account sees none of it.
    let other = app.tenant("Other").await;
    let stranger = Caller::user(other.account, other.admin.id);
    assert_eq!(
        m.messaging
            .conversation(stranger, c.id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    assert!(
        m.messaging
            .conversations(
                stranger,
                &ConversationFilter::default(),
                PageRequest::default()
            )
            .await
            .unwrap()
            .items
            .is_empty()
    );
    backbone.stop().await;
    fake.stop().await;
}

/// The contact and the incoming lead are made through the contacts and deals modules, which
/// commit on their own before messaging does. A crash in between (here: messaging's transaction
/// fails once right after the contact, then once right after the lead) and the retry must find
/// what the first attempt made, not make a second contact or lead, and still announce the lead.
#[tokio::test]
async fn a_crash_after_the_contact_and_the_lead_were_made_makes_neither_twice() {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let p = pipeline(&app, admin).await;
    let channel = m
        .messaging
        .create_channel(
            admin,
            NewChannel {
                pipeline_id: Some(p.id.0),
                ..new_channel(Provider::Telegram, &fake, &app)
            },
        )
        .await
        .unwrap();
    let hook = format!("{}/hooks/telegram/{}", app.url, channel.webhook_key);
    let secret = telegram_secret(&fake, "telegram-token");
    // Sequences are not rolled back: each trigger fails its statement the first time only.
    app.sql(
        "CREATE SEQUENCE public.crash_contact; CREATE SEQUENCE public.crash_lead;
         CREATE FUNCTION public.crash_once() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval(TG_ARGV[0]::regclass) = 1 THEN
             RAISE EXCEPTION 'simulated crash before messaging commits';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER crash_after_contact BEFORE UPDATE OF contact_id ON messaging.identities
           FOR EACH ROW EXECUTE FUNCTION public.crash_once('public.crash_contact');
         CREATE TRIGGER crash_after_lead BEFORE INSERT ON messaging.outbox
           FOR EACH ROW WHEN (NEW.event_type = 'messaging.incoming_lead_created')
           EXECUTE FUNCTION public.crash_once('public.crash_lead');",
    )
    .await;
    let update = fake::telegram_text_update(20000, 2222222, "Olga Petrova", "", 7, "Hello");
    assert_eq!(
        fake::post_telegram_update(&hook, &secret, &update)
            .await
            .unwrap(),
        200
    );
    wait_until("the message, after two failed attempts", || async {
        app.count("SELECT count(*) AS n FROM messaging.inbound WHERE status = 'done'")
            .await
            == 1
    })
    .await;
    // Both crashes happened, after the contact and the lead had been committed.
    assert_eq!(
        app.count("SELECT last_value AS n FROM public.crash_contact")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT last_value AS n FROM public.crash_lead")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM contacts.contacts")
            .await,
        1,
        "one contact"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.deals").await,
        1,
        "one incoming lead"
    );
    let c = m
        .messaging
        .conversations(
            admin,
            &ConversationFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap()
        .items
        .remove(0);
    let deal = m
        .deals
        .deal(admin, deals_api::DealId(c.deal_id.unwrap()))
        .await
        .unwrap();
    assert_eq!(deal.contact_ids, vec![c.contact_id.unwrap()]);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM messaging.outbox WHERE event_type = 'messaging.incoming_lead_created'"
        )
        .await,
        1,
        "the lead is announced once"
    );
    backbone.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn whatsapp_and_instagram_webhooks_are_verified_signed_and_stored_once() {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    pipeline(&app, admin).await;
    let wa = m
        .messaging
        .create_channel(admin, new_channel(Provider::Whatsapp, &fake, &app))
        .await
        .unwrap();
    let ig = m
        .messaging
        .create_channel(admin, new_channel(Provider::Instagram, &fake, &app))
        .await
        .unwrap();
    let wa_hook = format!("{}/hooks/whatsapp/{}", app.url, wa.webhook_key);
    // A token the Graph API refuses is refused when connecting, nothing saved.
    fake.revoke_token("bad-token");
    let e = m
        .messaging
        .create_channel(
            admin,
            NewChannel {
                token: "bad-token".into(),
                external_id: "555".into(),
                ..new_channel(Provider::Whatsapp, &fake, &app)
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.field("token").unwrap().code, "refused");
    assert_eq!(m.messaging.channels(admin).await.unwrap().len(), 2);
    let ig_hook = format!("{}/hooks/instagram/{}", app.url, ig.webhook_key);
    let http = reqwest::Client::new();

    // Meta's subscription check.
    let ok = http
        .get(format!(
            "{wa_hook}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = http
        .get(format!(
            "{ig_hook}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    // The WhatsApp sample text message (Meta's dashboard test payload), exactly as sent.
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"0","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"16505551111","phone_number_id":"123456123"},"contacts":[{"profile":{"name":"test user name"},"wa_id":"16315551181"}],"messages":[{"from":"16315551181","id":"ABGGFlA5Fpa","timestamp":"1504902988","type":"text","text":{"body":"this is a text message"}}]}}]}]}"#;
    // Signed with another secret, or changed by one byte: 401, nothing stored.
    assert_eq!(
        fake::post_meta_webhook(&wa_hook, "other-secret", body)
            .await
            .unwrap(),
        401
    );
    let unsigned = http
        .post(&wa_hook)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let mut changed = body.to_vec();
    changed[10] = b'X';
    let forged = http
        .post(&wa_hook)
        .header(
            "X-Hub-Signature-256",
            fake::meta_signature("app-secret", body),
        )
        .body(changed)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Signed but malformed: 400.
    assert_eq!(
        fake::post_meta_webhook(&wa_hook, "app-secret", b"{\"entry\": 5")
            .await
            .unwrap(),
        400
    );
    assert_eq!(
        fake::post_meta_webhook(&wa_hook, "app-secret", br#"{"object":"page"}"#)
            .await
            .unwrap(),
        400
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.inbound")
            .await,
        0
    );

    assert_eq!(
        fake::post_meta_webhook(&wa_hook, "app-secret", body)
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        fake::post_meta_webhook(&wa_hook, "app-secret", body)
            .await
            .unwrap(),
        200
    );
    // Instagram's sample DM.
    let ig_body = br#"{"object":"instagram","entry":[{"id":"17841400000000000","time":1569262486134,"messaging":[{"sender":{"id":"1234567890123456"},"recipient":{"id":"17841400000000000"},"timestamp":1569262485349,"message":{"mid":"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx","text":"This is the first message from the customer"}}]}]}"#;
    assert_eq!(
        fake::post_meta_webhook(&ig_hook, "app-secret", ig_body)
            .await
            .unwrap(),
        200
    );
    wait_until("two conversations", || async {
        app.count("SELECT count(*) AS n FROM messaging.conversations")
            .await
            == 2
            && app
                .count("SELECT count(*) AS n FROM messaging.inbound WHERE status = 'done'")
                .await
                == 2
    })
    .await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.inbound")
            .await,
        2,
        "the repeated delivery is stored once"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.messages")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.deals").await,
        2,
        "two incoming leads"
    );
    let all = m
        .messaging
        .conversations(
            admin,
            &ConversationFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    let w = all
        .iter()
        .find(|c| c.provider == Provider::Whatsapp)
        .unwrap();
    assert_eq!(w.title, "test user name");
    let contact = m
        .contacts
        .contact(admin, contacts_api::ContactId(w.contact_id.unwrap()))
        .await
        .unwrap();
    assert_eq!(
        contact.phones[0].normalized, "+16315551181",
        "found or created by phone"
    );
    let i = all
        .iter()
        .find(|c| c.provider == Provider::Instagram)
        .unwrap();
    assert!(i.deal_id.is_some());
    wait_until("timeline entries", || async {
        app.count("SELECT count(*) AS n FROM activities.log WHERE event_type = 'messaging.message_received' AND entity = 'deal'").await == 2
    })
    .await;

    // The sample is from 2017: a fresh message opens the 24-hour window for a reply.
    let fresh = fake::whatsapp_text_payload(
        "123456123",
        "16315551181",
        "test user name",
        "wamid.fresh1",
        "still there?",
    );
    let raw = serde_json::to_vec(&fresh).unwrap();
    assert_eq!(
        fake::post_meta_webhook(&wa_hook, "app-secret", &raw)
            .await
            .unwrap(),
        200
    );
    wait_until("the fresh message", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages")
            .await
            == 3
    })
    .await;
    // A reply in WhatsApp, then its statuses: forward only, never backwards.
    let q = m
        .messaging
        .send(
            admin,
            w.id,
            OutgoingMessage {
                text: "Hello!".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sent = fake.wait_for_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat, "16315551181");
    let wamid = sent[0].external_id.clone();
    let status_of = || async {
        m.messaging
            .messages(admin, w.id, None, 50)
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.id == q.message_id)
            .unwrap()
            .status
    };
    wait_until("sent", || async {
        status_of().await == MessageStatus::Sent
    })
    .await;
    for (i, s) in ["read", "delivered", "sent"].iter().enumerate() {
        let payload = fake::whatsapp_status_payload("123456123", &wamid, "16315551181", s);
        let raw = serde_json::to_vec(&payload).unwrap();
        assert_eq!(
            fake::post_meta_webhook(&wa_hook, "app-secret", &raw)
                .await
                .unwrap(),
            200,
            "{i}"
        );
    }
    wait_until("statuses processed", || async {
        app.count("SELECT count(*) AS n FROM messaging.inbound WHERE status = 'done'")
            .await
            == 6
    })
    .await;
    assert_eq!(status_of().await, MessageStatus::Read, "read stays read");
    backbone.stop().await;
    fake.stop().await;
}

/// A Telegram channel with `chats` conversations (clients 1..=chats), each with one message in.
async fn telegram_with_chats(
    app: &TestApp,
    fake: &FakeProviders,
    admin: Caller,
    chats: i64,
    rate: i32,
) -> (Channel, Vec<Conversation>) {
    let m = &app.state.modules;
    pipeline(app, admin).await;
    let channel = m
        .messaging
        .create_channel(
            admin,
            NewChannel {
                rate_per_second: Some(rate),
                ..new_channel(Provider::Telegram, fake, app)
            },
        )
        .await
        .unwrap();
    let hook = format!("{}/hooks/telegram/{}", app.url, channel.webhook_key);
    let secret = telegram_secret(fake, "telegram-token");
    for i in 1..=chats {
        let u = fake::telegram_text_update(
            i,
            5000 + i,
            &format!("Client {i}"),
            "",
            1_000_000 + i,
            "hi",
        );
        assert_eq!(
            fake::post_telegram_update(&hook, &secret, &u)
                .await
                .unwrap(),
            200
        );
    }
    wait_until("conversations", || async {
        app.count("SELECT count(*) AS n FROM messaging.conversations")
            .await
            == chats
    })
    .await;
    let mut all = Vec::new();
    let mut page = PageRequest::new(None, Some(250));
    loop {
        let p = m
            .messaging
            .conversations(admin, &ConversationFilter::default(), page.clone())
            .await
            .unwrap();
        all.extend(p.items);
        match p.next {
            Some(n) => page = PageRequest::new(Some(n), Some(250)),
            None => break,
        }
    }
    all.sort_by_key(|c| c.id);
    (channel, all)
}

#[tokio::test]
async fn after_429s_messages_are_delivered_later_in_order_and_none_twice() {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|c| {
        c.messaging.retry_base_ms = 100;
        c.messaging.chat_interval_ms = 10;
        c.messaging.chat_burst = 10;
    })
    .await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let (_, convs) = telegram_with_chats(&app, &fake, admin, 2, 30).await;
    fake.fail_next(3, Fault::TooManyRequests { retry_after: 1 });
    let key = uuid::Uuid::new_v4();
    for i in 0..5 {
        for c in &convs {
            let q = m
                .messaging
                .send(
                    admin,
                    c.id,
                    OutgoingMessage {
                        text: format!("{} #{i}", c.id),
                        key: (i == 0 && c.id == convs[0].id).then_some(key),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(q.conversation_id, c.id);
        }
    }
    // The same idempotency key again: the same message, not a new one.
    let again = m
        .messaging
        .send(
            admin,
            convs[0].id,
            OutgoingMessage {
                text: "x".into(),
                key: Some(key),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE direction = 'out'")
            .await,
        10
    );
    let sent = fake.wait_for_sent(10, Duration::from_secs(30)).await;
    assert_eq!(sent.len(), 10, "all delivered after the 429s");
    assert!(
        fake.attempts() >= 13,
        "three answered 429: {}",
        fake.attempts()
    );
    for c in &convs {
        // Clients without a username are known by their Telegram id (the chat's).
        let chat = c.handle.clone();
        let texts: Vec<&str> = sent
            .iter()
            .filter(|s| s.chat == chat)
            .map(|s| s.text.as_str())
            .collect();
        let want: Vec<String> = (0..5).map(|i| format!("{} #{i}", c.id)).collect();
        assert_eq!(texts, want, "in order, once each, for chat {chat}");
    }
    wait_until("all sent", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE direction = 'out' AND status = 'sent'").await == 10
    })
    .await;
    assert!(again.message_id > 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.sent_count(), 10, "nothing sent twice");
    backbone.stop().await;
    fake.stop().await;
}

/// A channel of `rate` per second with 50 chats, the fake provider answering 429 to anything
/// over `limit` in any one-second window, and a burst of 20 messages to each chat queued while
/// the workers are stopped.
async fn queued_burst(
    rate: i32,
    limit: u32,
) -> (FakeProviders, TestApp, AccountId, Vec<Conversation>) {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|c| {
        c.messaging.chat_interval_ms = 10;
        c.messaging.chat_burst = 10;
        c.jobs.concurrency = 16;
        c.db.pool_size = 16;
    })
    .await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let (_, convs) = telegram_with_chats(&app, &fake, admin, 50, rate).await;
    fake.limit_rate(Some(limit));
    backbone.stop().await;
    for i in 0..20 {
        for c in &convs {
            app.state
                .modules
                .messaging
                .send(
                    admin,
                    c.id,
                    OutgoingMessage {
                        text: format!("m{i}"),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
    }
    (fake, app, t.account, convs)
}

/// The most sends the provider received in any one second, and the time from the first to the
/// last (ms).
fn pace_of(sent: &[fake::Sent]) -> (usize, u128) {
    let times: Vec<u128> = sent.iter().map(|s| s.at_ms).collect();
    let mut most = 0;
    for (i, t0) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|t| **t < t0 + 1000).count();
        most = most.max(n);
    }
    (most, times.last().unwrap() - times.first().unwrap())
}

#[tokio::test]
async fn a_burst_of_1000_messages_never_exceeds_the_channels_rate() {
    let rate = 200;
    // The fake answers 429 to anything over the channel's rate.
    let (fake, app, _, _) = queued_burst(rate, rate as u32).await;
    // The workers start on all of it.
    let backbone = start_backbone(&app).await;
    let sent = fake.wait_for_sent(1000, Duration::from_secs(180)).await;
    assert_eq!(sent.len(), 1000);
    assert_eq!(
        fake.rejected_429(),
        0,
        "the provider never had to refuse one"
    );
    let (most, span) = pace_of(&sent);
    assert!(
        most <= rate as usize,
        "at most {rate} in any second, saw {most}"
    );
    assert!(
        span >= 4000,
        "1000 at {rate}/s take about 5 s, took {span} ms"
    );
    backbone.stop().await;
    fake.stop().await;
}

/// Two processes send for one channel at once, each pacing itself with its own limiters:
/// together they still keep to the channel's rate (each send takes the channel's next slot
/// from the database). The channel is set a little under the provider's limit, as an admin
/// would, so that scheduling delays on a loaded machine do not decide the outcome; without the
/// shared slot the two would send at nearly twice the rate (50 refusals in a run).
#[tokio::test]
async fn two_processes_sending_for_one_channel_keep_to_its_rate_together() {
    let rate = 180;
    let limit = 200;
    let (fake, app, account, convs) = queued_burst(rate, limit as u32).await;
    // Two processes send at once, half of the conversations each, each with its own
    // in-process limiters.
    let other = another_process(&app).await;
    let (first, second) = convs.split_at(convs.len() / 2);
    let work = |cs: &[Conversation]| Work::Sends {
        conversations: cs.iter().map(|c| (account, c.id)).collect(),
    };
    // (The service's own instance when messaging runs remote: a turn outlasts a remote call.)
    let here = app.service.as_ref().unwrap_or(&app.state);
    let (a, b) = tokio::join!(
        here.modules.messaging.process(work(first)),
        other.modules.messaging.process(work(second))
    );
    a.unwrap();
    b.unwrap();
    let backbone = start_backbone(&app).await;
    let sent = fake.wait_for_sent(1000, Duration::from_secs(180)).await;
    assert_eq!(sent.len(), 1000);
    assert_eq!(
        fake.rejected_429(),
        0,
        "the provider never had to refuse one"
    );
    let (most, span) = pace_of(&sent);
    assert!(
        most <= limit,
        "at most the provider's {limit} in any second, saw {most}"
    );
    assert!(
        span >= 4000,
        "1000 at {rate}/s take about 5.5 s, took {span} ms"
    );
    backbone.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_permanent_error_is_shown_in_the_chat_and_not_retried() {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let (_, convs) = telegram_with_chats(&app, &fake, admin, 1, 30).await;
    fake.fail_chat("5001", Fault::Blocked);
    let q = m
        .messaging
        .send(
            admin,
            convs[0].id,
            OutgoingMessage {
                text: "Are you there?".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_until("failed", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE status = 'failed'")
            .await
            == 1
    })
    .await;
    let msg = m
        .messaging
        .messages(admin, convs[0].id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == q.message_id)
        .unwrap();
    assert_eq!(msg.status, MessageStatus::Failed);
    assert!(
        msg.error
            .as_deref()
            .unwrap()
            .contains("blocked by the user"),
        "{msg:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.attempts(), 1, "not retried");
    // The chat page shows the reason next to the message.
    let web = app.signed_in(&t.admin.email).await;
    let (status, page) = web.text(&format!("/inbox/{}", convs[0].id)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Are you there?") && page.contains("blocked by the user"),
        "{page}"
    );
    // Bad input changes nothing: an empty message, a template on Telegram.
    let e = m
        .messaging
        .send(admin, convs[0].id, OutgoingMessage::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Validation);
    let e = m
        .messaging
        .send(
            admin,
            convs[0].id,
            OutgoingMessage {
                template: Some(TemplateSend {
                    name: "hello_world".into(),
                    language: "en_US".into(),
                    params: vec![],
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Validation);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE direction = 'out'")
            .await,
        1
    );
    backbone.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn robots_answer_a_clients_message_and_write_when_a_deal_enters_a_stage() {
    use automation_api::{Action, Delay, TriggerDraft, When};
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Acme").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let p = pipeline(&app, admin).await;
    let incoming = p
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Incoming)
        .unwrap()
        .id
        .0;
    let offer = p.stages.iter().find(|s| s.name == "Offer").unwrap().id.0;
    let draft = |stage: i64, when: When, actions: Vec<Action>| TriggerDraft {
        name: "Robot".into(),
        pipeline_id: p.id.0,
        stage_id: stage,
        when,
        conditions: vec![],
        delay: Delay::Now,
        working_hours: false,
        actions,
        enabled: true,
    };
    m.automation
        .save_trigger(
            admin,
            None,
            draft(
                incoming,
                When::MessageReceived,
                vec![Action::SendMessage {
                    text: "Thanks, we got it: {{deal.name}}".into(),
                }],
            ),
        )
        .await
        .unwrap();
    m.automation
        .save_trigger(
            admin,
            None,
            draft(
                offer,
                When::MovedTo,
                vec![
                    Action::CreateTask {
                        task_type_id: activities_api::CALL.0,
                        text: "Call about the offer".into(),
                        due_in_minutes: 60,
                    },
                    Action::SendMessage {
                        text: "Your offer is ready".into(),
                    },
                ],
            ),
        )
        .await
        .unwrap();
    let channel = m
        .messaging
        .create_channel(
            admin,
            NewChannel {
                pipeline_id: Some(p.id.0),
                ..new_channel(Provider::Telegram, &fake, &app)
            },
        )
        .await
        .unwrap();
    let hook = format!("{}/hooks/telegram/{}", app.url, channel.webhook_key);
    let secret = telegram_secret(&fake, "telegram-token");
    let update = fake::telegram_text_update(
        1,
        777,
        "Ivan Petrov",
        "ivanp",
        100,
        "Hello, how much is it?",
    );
    assert_eq!(
        fake::post_telegram_update(&hook, &secret, &update)
            .await
            .unwrap(),
        200
    );
    let sent = fake.wait_for_sent(1, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 1, "the robot answered the message");
    assert_eq!(sent[0].chat, "777");
    assert_eq!(sent[0].text, "Thanks, we got it: Telegram: Ivan Petrov");

    let c = m
        .messaging
        .conversations(
            admin,
            &ConversationFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap()
        .items
        .remove(0);
    let deal = deals_api::DealId(c.deal_id.unwrap());
    m.deals
        .move_deal(
            admin,
            deal,
            deals_api::MoveTo {
                stage_id: deals_api::StageId(offer),
                after: None,
                loss_reason_id: None,
            },
        )
        .await
        .unwrap();
    let sent = fake.wait_for_sent(2, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].text, "Your offer is ready");
    // The robot's message is in the chat, marked as the robot's.
    wait_until("the robot's messages sent", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE direction = 'out' AND status = 'sent' AND robot_id IS NOT NULL").await == 2
    })
    .await;
    let tasks = m
        .activities
        .tasks(
            admin,
            &activities_api::TaskQuery {
                entity: Some(activities_api::EntityRef::deal(deal.0)),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(tasks.items.len(), 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(fake.sent_count(), 2, "each robot message went once");
    backbone.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn the_public_api_lists_talks_and_sends_into_them_once() {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|c| {
        c.auth.api_requests_per_second = 0;
    })
    .await;
    let t = app.tenant("Talks").await;
    let admin = Caller::user(t.account, t.admin.id);
    let (_, convs) = telegram_with_chats(&app, &fake, admin, 2, 30).await;
    let token = app
        .state
        .modules
        .accounts
        .create_token(admin, "api", 30)
        .await
        .unwrap()
        .secret;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let token = token.clone();
        let base = app.url.clone();
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let list: serde_json::Value = get("/api/v4/talks".into()).await.json().await.unwrap();
    let talks = list["_embedded"]["talks"].as_array().unwrap();
    assert_eq!(talks.len(), 2);
    assert!(talks.iter().all(|t| t["origin"] == "telegram"
        && t["entity_type"] == "lead"
        && t["contact_id"].is_i64()));
    let id = convs[0].id;
    let one: serde_json::Value = get(format!("/api/v4/talks/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["talk_id"], id);
    assert_eq!(one["entity_id"], convs[0].deal_id.unwrap());
    let msgs: serde_json::Value = get(format!("/api/v4/talks/{id}/messages"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(msgs["_embedded"]["messages"][0]["direction"], "in");
    assert_eq!(msgs["_embedded"]["messages"][0]["text"], "hi");

    // Sent twice with the same uid: one message, delivered once.
    let uid = uuid::Uuid::new_v4().to_string();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = http
            .post(format!("{}/api/v4/talks/{id}/messages", app.url))
            .bearer_auth(&token)
            .json(&json!({"text": "Hello from the API", "uid": uid}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        ids.push(body["id"].as_i64().unwrap());
    }
    assert_eq!(ids[0], ids[1]);
    let sent = fake.wait_for_sent(1, Duration::from_secs(30)).await;
    assert_eq!(sent[0].text, "Hello from the API");
    wait_until("the status", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE direction = 'out' AND status = 'sent'").await == 1
    })
    .await;
    let msgs: serde_json::Value = get(format!("/api/v4/talks/{id}/messages"))
        .await
        .json()
        .await
        .unwrap();
    let last = msgs["_embedded"]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["direction"], &last["status"]),
        (&json!("out"), &json!("sent"))
    );

    // An empty text is refused; another account sees nothing and cannot send.
    let res = http
        .post(format!("{}/api/v4/talks/{id}/messages", app.url))
        .bearer_auth(&token)
        .json(&json!({"text": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let other = app.tenant("Other").await;
    let other_token = app
        .state
        .modules
        .accounts
        .create_token(Caller::user(other.account, other.admin.id), "api", 30)
        .await
        .unwrap()
        .secret;
    let res = http
        .get(format!("{}/api/v4/talks/{id}", app.url))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = http
        .post(format!("{}/api/v4/talks/{id}/messages", app.url))
        .bearer_auth(&other_token)
        .json(&json!({"text": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE direction = 'out'")
            .await,
        1
    );
    backbone.stop().await;
    fake.stop().await;
}

/// A JPEG's first bytes (the fake Telegram checks a photo's signature), then filler.
fn jpeg(seed: u8) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
    ];
    b.extend((0..30_000u32).map(|i| (i as u8).wrapping_mul(seed)));
    b.extend([0xFF, 0xD9]);
    b
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A multipart form as a browser sends it: the file, then the caption.
fn file_form(name: &str, mime: &str, data: &[u8], caption: &str) -> (String, Vec<u8>) {
    let boundary = "----voronka-file-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n{caption}\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn files_from_clients_are_downloaded_and_files_to_clients_are_fetched_by_the_provider() {
    let fake = FakeProviders::start().await.unwrap();
    let (app, backbone) = spawn_app_with_workers_and(|_| {}).await;
    let t = app.tenant("Files").await;
    let admin = Caller::user(t.account, t.admin.id);
    let m = &app.state.modules;
    let p = pipeline(&app, admin).await;
    let channel = |provider| {
        let mut c = new_channel(provider, &fake, &app);
        c.pipeline_id = Some(p.id.0);
        m.messaging.create_channel(admin, c)
    };
    let tg = channel(Provider::Telegram).await.unwrap();
    let wa = channel(Provider::Whatsapp).await.unwrap();
    let ig = channel(Provider::Instagram).await.unwrap();
    let secret = telegram_secret(&fake, "telegram-token");
    let now = chrono::Utc::now().timestamp();

    // Clients' files, hosted by the fake providers.
    let photo = jpeg(7);
    let photo_id = fake.host_file(&photo, "image/jpeg", "file_12.jpg");
    let pdf = b"%PDF-1.4\n% an invoice\n".repeat(500);
    let pdf_id = fake.host_file(&pdf, "application/pdf", "ignored.pdf");
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[3u8; 5000]].concat();
    let png_id = fake.host_file(&png, "image/png", "ig.png");

    // Telegram: a photo in three sizes with a caption (the Bot API's Message shape); the
    // largest size is the one downloaded.
    let tg_hook = format!("{}/hooks/telegram/{}", app.url, tg.webhook_key);
    let from = json!({"id": 2222222, "is_bot": false, "first_name": "Olga", "username": "olga"});
    let chat = json!({"id": 2222222, "first_name": "Olga", "username": "olga", "type": "private"});
    let update = json!({"update_id": 20001, "message": {"message_id": 7, "from": from, "chat": chat, "date": now,
        "photo": [
            {"file_id": "small-size", "file_unique_id": "a", "file_size": 1200, "width": 90, "height": 60},
            {"file_id": "medium-size", "file_unique_id": "b", "file_size": 9000, "width": 320, "height": 213},
            {"file_id": photo_id, "file_unique_id": "c", "file_size": photo.len(), "width": 1280, "height": 853}
        ],
        "caption": "Here is the broken part"}});
    assert_eq!(
        fake::post_telegram_update(&tg_hook, &secret, &update)
            .await
            .unwrap(),
        200
    );
    // A document whose file the provider no longer has: the message stays, the file fails
    // with the provider's reason.
    let gone = json!({"update_id": 20002, "message": {"message_id": 8, "from": from, "chat": chat, "date": now,
        "document": {"file_id": "no-such-file", "file_unique_id": "d", "file_name": "contract.pdf", "mime_type": "application/pdf", "file_size": 100}}});
    assert_eq!(
        fake::post_telegram_update(&tg_hook, &secret, &gone)
            .await
            .unwrap(),
        200
    );
    // The provider's file server fails the next two downloads (502): they are tried again.
    fake.fail_downloads(2);
    // WhatsApp: a document message (media id, file name, caption), as the Cloud API posts it.
    let wa_hook = format!("{}/hooks/whatsapp/{}", app.url, wa.webhook_key);
    let wa_body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "0", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "16505551111", "phone_number_id": "123456123"},
        "contacts": [{"profile": {"name": "Ivan"}, "wa_id": "16315551181"}],
        "messages": [{"from": "16315551181", "id": "wamid.DOC1", "timestamp": now.to_string(), "type": "document",
            "document": {"caption": "Our invoice", "filename": "invoice.pdf", "mime_type": "application/pdf", "sha256": "x", "id": pdf_id}}]}}]}]})).unwrap();
    assert_eq!(
        fake::post_meta_webhook(&wa_hook, "app-secret", &wa_body)
            .await
            .unwrap(),
        200
    );
    // Instagram: an image attachment (its URL), no text.
    let ig_hook = format!("{}/hooks/instagram/{}", app.url, ig.webhook_key);
    let ig_body = serde_json::to_vec(&json!({"object": "instagram", "entry": [{"id": "17841400000000000", "time": now * 1000, "messaging": [{
        "sender": {"id": "9988776655"}, "recipient": {"id": "17841400000000000"}, "timestamp": now * 1000,
        "message": {"mid": "mid.IMG1", "attachments": [{"type": "image", "payload": {"url": fake.media_url(&png_id)}}]}}]}]})).unwrap();
    assert_eq!(
        fake::post_meta_webhook(&ig_hook, "app-secret", &ig_body)
            .await
            .unwrap(),
        200
    );
    wait_until("the files downloaded or given up", || async {
        app.count(
            "SELECT count(*) AS n FROM messaging.attachments WHERE status IN ('stored', 'failed')",
        )
        .await
            == 4
    })
    .await;
    let convs = m
        .messaging
        .conversations(
            admin,
            &ConversationFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    let conv = |provider| {
        convs
            .iter()
            .find(|c| c.provider == provider)
            .unwrap()
            .clone()
    };
    let (tg_c, wa_c, ig_c) = (
        conv(Provider::Telegram),
        conv(Provider::Whatsapp),
        conv(Provider::Instagram),
    );
    assert_eq!(
        ig_c.last_text, "[image]",
        "a file without text is named in the list"
    );
    let thread = |c: i64| m.messaging.messages(admin, c, None, 50);
    let mut tg_msgs = thread(tg_c.id).await.unwrap();
    assert_eq!(tg_msgs.len(), 2);
    // The two updates are processed by two jobs, in either order.
    tg_msgs.sort_by_key(|m| m.text.is_empty());
    assert_eq!(tg_msgs[0].text, "Here is the broken part");
    let tg_file = &tg_msgs[0].attachments[0];
    assert_eq!(
        (
            tg_file.status,
            tg_file.kind.as_str(),
            tg_file.mime_type.as_str(),
            tg_file.size
        ),
        (
            AttachmentStatus::Stored,
            "image",
            "image/jpeg",
            Some(photo.len() as i64)
        )
    );
    assert_eq!(
        tg_file.file_name, "file_12.jpg",
        "the name from Telegram's file path"
    );
    let failed = &tg_msgs[1].attachments[0];
    assert_eq!(failed.status, AttachmentStatus::Failed);
    assert!(
        failed.error.as_deref().unwrap().contains("invalid file_id"),
        "{failed:?}"
    );
    let wa_file = thread(wa_c.id).await.unwrap().remove(0);
    assert_eq!(wa_file.text, "Our invoice");
    let wa_file = wa_file.attachments[0].clone();
    assert_eq!(
        (
            wa_file.file_name.as_str(),
            wa_file.mime_type.as_str(),
            wa_file.kind.as_str()
        ),
        ("invoice.pdf", "application/pdf", "document")
    );
    let ig_file = thread(ig_c.id).await.unwrap().remove(0).attachments[0].clone();
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.attachments WHERE attempts > 1 AND status = 'stored'")
            .await,
        2,
        "two downloads were tried again after a 502"
    );
    assert_eq!(
        ig_file.mime_type, "image/png",
        "the type the download was served with"
    );
    for (file, bytes) in [(tg_file, &photo), (&wa_file, &pdf), (&ig_file, &png)] {
        let got = m.messaging.attachment(admin, file.id).await.unwrap();
        assert_eq!(sha(&got.content), sha(bytes), "{file:?}");
    }

    // Managers open them from the chat: a picture in place, a document as a download.
    let web = app.signed_in(&t.admin.email).await;
    let (status, page) = web.text(&format!("/inbox/{}", tg_c.id)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("src=\"/inbox/files/{}\"", tg_file.id)),
        "the photo is shown"
    );
    assert!(
        page.contains("data-test=\"file-error\""),
        "the failed file is named"
    );
    let res = web.get(&format!("/inbox/files/{}", tg_file.id)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), photo.as_slice());
    let res = web.get(&format!("/inbox/files/{}", wa_file.id)).await;
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    // Another account's admin, and a file still unknown: not found; nobody signed in: no file.
    let other = app.tenant("Other").await;
    let e = m
        .messaging
        .attachment(Caller::user(other.account, other.admin.id), tg_file.id)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let stranger = app.signed_in(&other.admin.email).await;
    assert_eq!(
        stranger
            .get(&format!("/inbox/files/{}", tg_file.id))
            .await
            .status(),
        404
    );
    assert_ne!(
        app.client()
            .get(&format!("/inbox/files/{}", tg_file.id))
            .await
            .status(),
        200
    );
    assert_eq!(
        web.get(&format!("/inbox/files/{}", failed.id))
            .await
            .status(),
        404
    );

    // Sending: a photo from the chat page (a multipart form with a caption) goes to Telegram
    // by link; the fake fetches the link as Telegram does.
    let csrf = web.csrf(&format!("/inbox/{}", tg_c.id)).await;
    let reply = jpeg(3);
    let (ct, body) = file_form("offer photo.jpg", "image/jpeg", &reply, "Our offer");
    let res = web
        .http
        .post(format!("{}/inbox/{}/attach", app.url, tg_c.id))
        .header("content-type", ct)
        .header("x-csrf-token", &csrf)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    // A document to WhatsApp through the trait, with an idempotency key asked twice.
    let key = uuid::Uuid::new_v4();
    let doc = b"price list\n".repeat(100);
    for _ in 0..2 {
        m.messaging
            .send(
                admin,
                wa_c.id,
                OutgoingMessage {
                    text: "Prices".into(),
                    key: Some(key),
                    file: Some(FileUpload {
                        file_name: "prices.txt".into(),
                        mime_type: String::new(),
                        content: doc.clone(),
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    // An image with a caption to Instagram: the attachment, then the caption as a text.
    let ig_png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[9u8; 2000]].concat();
    m.messaging
        .send(
            admin,
            ig_c.id,
            OutgoingMessage {
                text: "See the picture".into(),
                file: Some(FileUpload {
                    file_name: "pic.png".into(),
                    mime_type: "image/png".into(),
                    content: ig_png.clone(),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sent = fake.wait_for_sent(4, Duration::from_secs(60)).await;
    assert_eq!(sent.len(), 4, "{sent:?}");
    let by = |provider: &str| {
        sent.iter()
            .filter(|s| s.provider == provider)
            .collect::<Vec<_>>()
    };
    let tg_sent = by("telegram");
    assert_eq!(tg_sent.len(), 1);
    assert_eq!(tg_sent[0].text, "Our offer");
    assert!(
        tg_sent[0].body.get("photo").is_some(),
        "sent with sendPhoto: {:?}",
        tg_sent[0].body
    );
    assert_eq!(tg_sent[0].file.as_ref().unwrap().sha256, sha(&reply));
    assert_eq!(tg_sent[0].file.as_ref().unwrap().content_type, "image/jpeg");
    let wa_sent = by("whatsapp");
    assert_eq!(wa_sent.len(), 1, "the same key sends once");
    assert_eq!(wa_sent[0].body["type"], "document");
    assert_eq!(wa_sent[0].body["document"]["filename"], "prices.txt");
    assert_eq!(wa_sent[0].body["document"]["caption"], "Prices");
    assert_eq!(wa_sent[0].file.as_ref().unwrap().sha256, sha(&doc));
    assert_eq!(wa_sent[0].file.as_ref().unwrap().content_type, "text/plain");
    let ig_sent = by("instagram");
    assert_eq!(ig_sent.len(), 2);
    assert_eq!(ig_sent[0].body["message"]["attachment"]["type"], "image");
    assert_eq!(ig_sent[0].file.as_ref().unwrap().sha256, sha(&ig_png));
    assert_eq!(ig_sent[1].text, "See the picture");
    wait_until("the sends recorded", || async {
        app.count("SELECT count(*) AS n FROM messaging.messages WHERE direction = 'out' AND status = 'sent'")
            .await
            == 4
    })
    .await;
    let out = thread(tg_c.id).await.unwrap().pop().unwrap();
    assert_eq!(out.attachments[0].file_name, "offer photo.jpg");
    assert_eq!(out.attachments[0].status, AttachmentStatus::Stored);

    // The link the provider fetched works only with its token.
    let link = &tg_sent[0].file.as_ref().unwrap().url;
    assert!(link.starts_with(&format!(
        "{}/hooks/files/{}/",
        app.url, out.attachments[0].id
    )));
    let wrong = format!(
        "{}/hooks/files/{}/{}/x.jpg",
        app.url,
        out.attachments[0].id,
        "0".repeat(32)
    );
    assert_eq!(reqwest::get(&wrong).await.unwrap().status(), 404);
    assert_eq!(reqwest::get(link).await.unwrap().status(), 200);

    // Bad files are refused with the field named, and nothing is queued.
    let before = app
        .count("SELECT count(*) AS n FROM messaging.messages")
        .await;
    let refuse = |file: FileUpload, template: Option<TemplateSend>| {
        m.messaging.send(
            admin,
            wa_c.id,
            OutgoingMessage {
                file: Some(file),
                template,
                ..Default::default()
            },
        )
    };
    let e = refuse(
        FileUpload {
            file_name: "empty.txt".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.field("file").unwrap().code, "required");
    let e = refuse(
        FileUpload {
            file_name: "big.bin".into(),
            mime_type: String::new(),
            content: vec![0; messaging::MAX_FILE_BYTES + 1],
        },
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.field("file").unwrap().code, "too_large");
    let e = refuse(
        FileUpload {
            file_name: "a.txt".into(),
            mime_type: "not a type".into(),
            content: b"x".to_vec(),
        },
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.field("file").unwrap().code, "invalid");
    let e = refuse(
        FileUpload {
            file_name: "a.txt".into(),
            mime_type: String::new(),
            content: b"x".to_vec(),
        },
        Some(TemplateSend {
            name: "hello_world".into(),
            language: "en_US".into(),
            params: Vec::new(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.field("file").unwrap().code, "unsupported");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM messaging.messages")
            .await,
        before
    );
    backbone.stop().await;
}
