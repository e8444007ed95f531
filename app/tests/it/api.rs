//! The public API's first endpoint and its authentication.

use reqwest::StatusCode;

use crate::support::spawn_app;

async fn problem(res: reqwest::Response, status: StatusCode) -> serde_json::Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(
        body["type"],
        format!("https://httpstatus.es/{}", status.as_u16())
    );
    body
}

#[tokio::test]
async fn account_answers_in_amocrm_shape_for_a_valid_token() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.signed_in(&t.admin.email).await;
    assert_eq!(
        c.submit("/settings/groups", "/settings/groups", &[("name", "Sales")])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let res = c
        .submit(
            "/settings/tokens",
            "/settings/tokens",
            &[("name", "1C sync"), ("days", "30")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let start = html
        .find("data-test=\"new-token\">")
        .expect("the new token is shown")
        + "data-test=\"new-token\">".len();
    let token = html[start..].split('<').next().unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");
    // Shown once: the list page does not show it again.
    assert!(!c.text("/settings/tokens").await.1.contains(&token));

    let res = c
        .api_get("/api/v4/account?with=users_groups,uuid,version", &token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/hal+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["id"], t.account.0);
    assert_eq!(body["name"], "Acme");
    assert_eq!(body["subdomain"], "acme");
    assert_eq!(body["current_user_id"], t.admin.id.0);
    assert_eq!(body["currency"], "RUB");
    assert!(body["created_at"].is_i64(), "unix seconds");
    assert!(body["uuid"].is_string());
    assert_eq!(body["_embedded"]["users_groups"][0]["name"], "Sales");
    assert!(
        body["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/api/v4/account")
    );

    // The JWT's exp claim is readable by clients that decode it.
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert!(claims["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 29 * 86400);
}

#[tokio::test]
async fn missing_invalid_revoked_or_expired_tokens_get_401() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.client();
    let body = problem(c.get("/api/v4/account").await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["title"], "Unauthorized");
    assert_eq!(body["code"], "unauthorized");
    problem(
        c.api_get("/api/v4/account", "garbage").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    let admin = app.signed_in(&t.admin.email).await;
    let caller = kernel::Caller::user(t.account, t.admin.id);
    let accounts = &app.state.modules.accounts;
    let revoked = accounts
        .create_token(caller, "to revoke", 30)
        .await
        .unwrap();
    assert_eq!(
        c.api_get("/api/v4/account", &revoked.secret).await.status(),
        StatusCode::OK
    );
    let res = admin
        .submit(
            "/settings/tokens",
            &format!("/settings/tokens/{}/revoke", revoked.info.id),
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let body = problem(
        c.api_get("/api/v4/account", &revoked.secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("revoked"));

    let expiring = accounts.create_token(caller, "to expire", 1).await.unwrap();
    assert_eq!(
        c.api_get("/api/v4/account", &expiring.secret)
            .await
            .status(),
        StatusCode::OK
    );
    app.sql(&format!(
        "UPDATE accounts.api_tokens SET expires_at = now() - interval '1 second' WHERE id = {}",
        expiring.info.id
    ))
    .await;
    problem(
        c.api_get("/api/v4/account", &expiring.secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // A token whose signature was tampered with never reaches the database.
    let mut forged = expiring.secret.clone();
    forged.pop();
    forged.push('A');
    problem(
        c.api_get("/api/v4/account", &forged).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Tokens stop working when their user is deactivated.
    let m = app.member(&t, "maria@acme.test").await;
    let mt = accounts
        .create_token(kernel::Caller::user(t.account, m.id), "maria", 30)
        .await
        .unwrap();
    accounts
        .update_user(
            caller,
            m.id,
            accounts_api::UserPatch {
                is_active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    problem(
        c.api_get("/api/v4/account", &mt.secret).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Unknown API paths answer as the API does.
    problem(c.get("/api/v4/nothing-here").await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn token_input_is_validated() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.signed_in(&t.admin.email).await;
    for (name, days) in [("", "30"), ("ok", "0"), ("ok", "100000"), ("ok", "ten")] {
        let res = c
            .submit(
                "/settings/tokens",
                "/settings/tokens",
                &[("name", name), ("days", days)],
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name:?} {days:?}");
    }
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.api_tokens")
            .await,
        0
    );
}
