use reqwest::StatusCode;

use crate::support::{PASSWORD, location, spawn_app, spawn_app_with};

#[tokio::test]
async fn signing_in_opens_a_session_and_signing_out_ends_it() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.client();
    // Pages need a session: the visitor is sent to sign in, and brought back afterwards.
    let res = c.get("/settings/users").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/sign-in?next=%2Fsettings%2Fusers");
    let token = c.csrf("/sign-in?next=%2Fsettings%2Fusers").await;
    let res = c
        .post_form(
            "/sign-in",
            &[
                ("csrf", &token),
                ("email", &t.admin.email.to_uppercase()),
                ("password", PASSWORD),
                ("next", "/settings/users"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/settings/users");
    let (status, html) = c.text("/settings/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&t.admin.email));
    // Sign out: the old cookie no longer opens pages.
    let res = c.submit("/", "/sign-out", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.sessions")
            .await,
        0
    );
    assert_eq!(c.get("/").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_repeated_attempts_get_429() {
    let app = spawn_app_with(|c| c.auth.sign_in_per_login_per_minute = 3).await;
    let t = app.tenant("Acme").await;
    let c = app.client();
    for attempt in 1..=3 {
        let res = c.sign_in(&t.admin.email, "not-the-password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("Wrong e-mail or password"),
            "attempt {attempt} shows the form error"
        );
    }
    let res = c.sign_in(&t.admin.email, "not-the-password").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    // Even the right password waits: the limit is on attempts, not on failures.
    let res = c.sign_in(&t.admin.email, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.sessions")
            .await,
        0
    );
}

#[tokio::test]
async fn too_many_attempts_from_one_address_are_limited_across_logins() {
    let app = spawn_app_with(|c| c.auth.sign_in_per_ip_per_minute = 4).await;
    let c = app.client();
    for i in 0..4 {
        let res = c
            .sign_in(&format!("nobody{i}@example.com"), "whatever1")
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = c.sign_in("someone-else@example.com", "whatever1").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_form_without_a_valid_csrf_token_is_rejected_and_changes_nothing() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.signed_in(&t.admin.email).await;
    let groups = "SELECT count(*) AS n FROM accounts.groups";

    let res = c.post_form("/settings/groups", &[("name", "Sales")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("The form has expired"));
    let res = c
        .post_form(
            "/settings/groups",
            &[("csrf", "forged-token"), ("name", "Sales")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A token from another session does not work either.
    let other = app.signed_in(&t.admin.email).await;
    let foreign = other.csrf("/settings/groups").await;
    let res = c
        .post_form("/settings/groups", &[("csrf", &foreign), ("name", "Sales")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count(groups).await, 0);

    let res = c
        .submit("/settings/groups", "/settings/groups", &[("name", "Sales")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count(groups).await, 1);

    // Signing in needs the token too: a cross-site login form cannot log a victim in.
    let anon = app.client();
    let res = anon
        .post_form(
            "/sign-in",
            &[("email", &t.admin.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sign_up_creates_an_account_and_signs_its_admin_in() {
    let app = spawn_app().await;
    let c = app.client();
    let res = c
        .submit(
            "/sign-up",
            "/sign-up",
            &[
                ("company", "Horns & Hooves"),
                ("name", "Ostap"),
                ("email", "ostap@horns.test"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let html = res.text().await.unwrap();
    assert!(html.contains("Please correct the highlighted fields"));
    assert!(html.contains("aria-invalid=\"true\""));
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.accounts")
            .await,
        0
    );

    let res = c
        .submit(
            "/sign-up",
            "/sign-up",
            &[
                ("company", "Horns & <b>Hooves</b>"),
                ("name", "Ostap"),
                ("email", "ostap@horns.test"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The account starts with its main pipeline: incoming, four stages, won and lost.
    assert_eq!(
        app.count("SELECT count(*) AS n FROM deals.pipelines WHERE is_main")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM deals.stages").await, 7);
    let (status, html) = c.text("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Hooves") && !html.contains("<b>Hooves</b>"),
        "names are shown, escaped"
    );
    assert!(
        html.contains("horns-b-hooves-b"),
        "the subdomain comes from the name"
    );

    // The same e-mail cannot sign up twice.
    let again = app.client();
    let res = again
        .submit(
            "/sign-up",
            "/sign-up",
            &[
                ("company", "Other"),
                ("name", "O"),
                ("email", "OSTAP@horns.test"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("This is already taken"));
}

#[tokio::test]
async fn sign_up_can_be_turned_off() {
    let app = spawn_app_with(|c| c.auth.allow_sign_up = false).await;
    assert_eq!(
        app.client().get("/sign-up").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn pages_speak_the_users_language() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.signed_in(&t.admin.email).await;
    let res = c
        .submit(
            "/settings/profile",
            "/settings/profile",
            &[
                ("name", "Анна"),
                ("lang", "ru"),
                ("time_zone", "Europe/Moscow"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, html) = c.text("/settings/profile?done=profile.saved").await;
    assert!(html.contains("Профиль сохранён"));
    assert!(html.contains("lang=\"ru\""));
    // Visitors get their browser's language.
    let res = app
        .client()
        .http
        .get(format!("{}/sign-in", app.url))
        .header("accept-language", "ru-RU,ru;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("Вход в Воронку"));
}

#[tokio::test]
async fn a_deactivated_user_is_signed_out_and_cannot_sign_in() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let m = app.member(&t, "maria@acme.test").await;
    let member = app.signed_in(&m.email).await;
    assert_eq!(member.get("/").await.status(), StatusCode::OK);
    let admin = app.signed_in(&t.admin.email).await;
    let path = format!("/settings/users/{}", m.id);
    let res = admin
        .submit(
            &path,
            &path,
            &[
                ("name", &m.name),
                ("email", &m.email),
                ("lang", "en"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "saved without the is_active box: deactivated"
    );
    assert_eq!(member.get("/").await.status(), StatusCode::SEE_OTHER);
    let res = app.client().sign_in(&m.email, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn probes_and_metrics_answer() {
    let app = spawn_app().await;
    let c = app.client();
    assert_eq!(c.text("/healthz").await, (StatusCode::OK, "ok".to_string()));
    assert_eq!(
        c.text("/readyz").await,
        (StatusCode::OK, "ready".to_string())
    );
    c.get("/sign-in").await;
    let (status, text) = c.text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(
            "voronka_http_requests_total{method=\"GET\",route=\"/sign-in\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("voronka_db_pool_connections"));
    assert_eq!(c.get("/static/htmx.min.js").await.status(), StatusCode::OK);
    assert_eq!(
        c.get("/static/nope.js").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.get("/no/such/page").await.status(), StatusCode::NOT_FOUND);
}
