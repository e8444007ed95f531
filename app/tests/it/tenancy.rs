//! One account never sees or changes another's data, through pages or the API.

use kernel::Caller;
use reqwest::StatusCode;

use crate::support::spawn_app;

#[tokio::test]
async fn another_accounts_users_and_tokens_are_404_through_pages_and_api() {
    let app = spawn_app().await;
    let a = app.tenant("Alpha").await;
    let b = app.tenant("Beta").await;
    let b_member = app.member(&b, "bob@beta.test").await;
    let accounts = &app.state.modules.accounts;
    let b_token = accounts
        .create_token(Caller::user(b.account, b.admin.id), "beta sync", 30)
        .await
        .unwrap();
    let a_token = accounts
        .create_token(Caller::user(a.account, a.admin.id), "alpha sync", 30)
        .await
        .unwrap();

    let alpha = app.signed_in(&a.admin.email).await;
    // B's users are not in A's list and cannot be opened or edited.
    let (_, list) = alpha.text("/settings/users").await;
    assert!(!list.contains("bob@beta.test"));
    let path = format!("/settings/users/{}", b_member.id);
    assert_eq!(alpha.get(&path).await.status(), StatusCode::NOT_FOUND);
    let res = alpha
        .submit(
            "/settings/users",
            &path,
            &[
                ("name", "Hijacked"),
                ("email", "bob@beta.test"),
                ("lang", "en"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = alpha
        .submit(
            "/settings/users",
            &format!("{path}/password"),
            &[("new", "taken-over-123")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let bob = accounts
        .user(Caller::user(b.account, b.admin.id), b_member.id)
        .await
        .unwrap();
    assert_eq!(bob.name, b_member.name);

    // B's token is not listed for A and cannot be revoked by A.
    let (_, tokens) = alpha.text("/settings/tokens").await;
    assert!(tokens.contains("alpha sync") && !tokens.contains("beta sync"));
    let res = alpha
        .submit(
            "/settings/tokens",
            &format!("/settings/tokens/{}/revoke", b_token.info.id),
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let api = app.client();
    assert_eq!(
        api.api_get("/api/v4/account", &b_token.secret)
            .await
            .status(),
        StatusCode::OK
    );

    // Each token answers for its own account only.
    let body: serde_json::Value = api
        .api_get("/api/v4/account", &a_token.secret)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["id"], a.account.0);
    let body: serde_json::Value = api
        .api_get("/api/v4/account?with=users_groups", &b_token.secret)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["id"], b.account.0);
    assert_eq!(body["current_user_id"], b.admin.id.0);

    // Groups and roles of another account are 404 as well.
    let b_group = accounts
        .create_group(Caller::user(b.account, b.admin.id), "Beta sales")
        .await
        .unwrap();
    let res = alpha
        .submit(
            "/settings/groups",
            &format!("/settings/groups/{}/delete", b_group.id),
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        accounts
            .list_groups(Caller::user(b.account, b.admin.id))
            .await
            .unwrap()
            .len(),
        1
    );
    let b_role = accounts
        .create_role(
            Caller::user(b.account, b.admin.id),
            "Beta role",
            accounts_api::Rights::member(),
        )
        .await
        .unwrap();
    assert_eq!(
        alpha
            .get(&format!("/settings/roles/{}", b_role.id))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // And A cannot put its user into B's group.
    let a_member = app.member(&a, "al@alpha.test").await;
    let path = format!("/settings/users/{}", a_member.id);
    let gid = b_group.id.to_string();
    let res = alpha
        .submit(
            &path,
            &path,
            &[
                ("name", "Al"),
                ("email", "al@alpha.test"),
                ("lang", "en"),
                ("time_zone", "UTC"),
                ("is_active", "1"),
                ("group_id", &gid),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM accounts.users WHERE id = {} AND group_id IS NOT NULL",
            a_member.id
        ))
        .await,
        0
    );
}
