//! Settings pages: users, groups, roles and rights, tokens, and who may use them.

use accounts_api::{Action, Entity, Level};
use kernel::Caller;
use reqwest::StatusCode;

use crate::support::{PASSWORD, location, spawn_app};

#[tokio::test]
async fn an_admin_creates_a_user_who_can_then_sign_in() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = app.signed_in(&t.admin.email).await;
    assert_eq!(
        admin
            .submit("/settings/groups", "/settings/groups", &[("name", "Sales")])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let group = app
        .state
        .modules
        .accounts
        .list_groups(Caller::user(t.account, t.admin.id))
        .await
        .unwrap()[0]
        .id
        .to_string();

    // Invalid input is shown again with its errors and nothing is created.
    let res = admin
        .submit(
            "/settings/users/new",
            "/settings/users",
            &[
                ("name", ""),
                ("email", "nope"),
                ("password", "123"),
                ("lang", "en"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let html = res.text().await.unwrap();
    for msg in [
        "This field is required.",
        "Enter an e-mail address",
        "This is too short.",
    ] {
        assert!(html.contains(msg), "form shows {msg:?}");
    }
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.users").await,
        1
    );

    let res = admin
        .submit(
            "/settings/users/new",
            "/settings/users",
            &[
                ("name", "Ivan Petrov"),
                ("email", "Ivan@Acme.test"),
                ("password", "ivan-password"),
                ("lang", "ru"),
                ("time_zone", "Europe/Moscow"),
                ("group_id", &group),
                ("rights.deals.delete", "none"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/settings/users?done=users.created");
    let (_, html) = admin.text("/settings/users?done=users.created").await;
    assert!(
        html.contains("User created.") && html.contains("ivan@acme.test") && html.contains("Sales")
    );

    let ivan = app.client();
    assert_eq!(
        ivan.sign_in("ivan@acme.test", "ivan-password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let (_, home) = ivan.text("/").await;
    assert!(
        home.contains("Здравствуйте, Ivan Petrov"),
        "Ivan's interface is in Russian"
    );
    let me = app
        .state
        .modules
        .accounts
        .find_user_by_email("ivan@acme.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(me.rights.level(Entity::Deals, Action::Delete), Level::None);
    assert_eq!(me.rights.level(Entity::Deals, Action::View), Level::All);

    // The same e-mail cannot be used twice.
    let res = admin
        .submit(
            "/settings/users/new",
            "/settings/users",
            &[
                ("name", "Ivan 2"),
                ("email", "ivan@acme.test"),
                ("password", "ivan-password"),
                ("lang", "en"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("This is already taken."));
}

#[tokio::test]
async fn a_user_without_the_right_to_manage_users_gets_403() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let m = app.member(&t, "maria@acme.test").await;
    let member = app.signed_in(&m.email).await;
    for page in [
        "/settings/users",
        "/settings/users/new",
        "/settings/groups",
        "/settings/roles",
        &format!("/settings/users/{}", t.admin.id),
    ] {
        assert_eq!(
            member.get(page).await.status(),
            StatusCode::FORBIDDEN,
            "{page}"
        );
    }
    let res = member
        .submit(
            "/settings/profile",
            "/settings/users",
            &[
                ("name", "Eve"),
                ("email", "eve@acme.test"),
                ("password", "eve-password"),
                ("lang", "en"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let path = format!("/settings/users/{}", m.id);
    let res = member
        .submit(
            "/settings/profile",
            &path,
            &[
                ("name", "Maria"),
                ("email", &m.email),
                ("is_admin", "1"),
                ("is_active", "1"),
                ("lang", "en"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "nobody makes themselves an admin"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.users").await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.users WHERE is_admin")
            .await,
        1
    );
    // Their own profile and tokens are theirs to manage.
    assert_eq!(
        member.get("/settings/profile").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        member.get("/settings/tokens").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn roles_carry_rights_and_deleting_one_leaves_its_users_their_rights() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = app.signed_in(&t.admin.email).await;
    let res = admin
        .submit(
            "/settings/roles/new",
            "/settings/roles",
            &[
                ("name", "Managers"),
                ("rights.contacts.export", "all"),
                ("rights.deals.edit", "group"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin
        .submit(
            "/settings/roles/new",
            "/settings/roles",
            &[("name", "Bad"), ("rights.deals.edit", "everything")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let caller = Caller::user(t.account, t.admin.id);
    let accounts = &app.state.modules.accounts;
    let roles = accounts.list_roles(caller).await.unwrap();
    assert_eq!(roles.len(), 1);
    let m = app.member(&t, "maria@acme.test").await;
    let path = format!("/settings/users/{}", m.id);
    let rid = roles[0].id.to_string();
    let res = admin
        .submit(
            &path,
            &path,
            &[
                ("name", "Maria"),
                ("email", &m.email),
                ("is_active", "1"),
                ("lang", "en"),
                ("time_zone", "UTC"),
                ("role_id", &rid),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let rights = accounts.rights(t.account, m.id).await.unwrap();
    assert_eq!(rights.level(Entity::Contacts, Action::Export), Level::All);
    assert_eq!(rights.level(Entity::Deals, Action::Edit), Level::Group);

    let res = admin
        .submit(
            "/settings/roles",
            &format!("/settings/roles/{rid}/delete"),
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let after = accounts.user(caller, m.id).await.unwrap();
    assert_eq!(after.role_id, None);
    assert_eq!(
        after.rights, rights,
        "the role's rights became the user's own"
    );
}

#[tokio::test]
async fn the_last_administrator_cannot_be_demoted() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let admin = app.signed_in(&t.admin.email).await;
    let path = format!("/settings/users/{}", t.admin.id);
    let res = admin
        .submit(
            &path,
            &path,
            &[
                ("name", "Admin"),
                ("email", &t.admin.email),
                ("is_active", "1"),
                ("lang", "en"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("This conflicts with existing data")
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM accounts.users WHERE is_admin AND is_active")
            .await,
        1
    );
}

#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    let c = app.signed_in(&t.admin.email).await;
    let res = c
        .submit(
            "/settings/profile",
            "/settings/profile/password",
            &[("current", "wrong-one"), ("new", "brand-new-pass")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("The current password is not right.")
    );
    let res = c
        .submit(
            "/settings/profile",
            "/settings/profile/password",
            &[("current", PASSWORD), ("new", "brand-new-pass")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.client()
            .sign_in(&t.admin.email, PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.client()
            .sign_in(&t.admin.email, "brand-new-pass")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn the_user_list_pages_by_name_without_offsets() {
    let app = spawn_app().await;
    let t = app.tenant("Acme").await;
    // 60 more users, inserted directly (hashing 60 passwords would only slow the test down).
    app.sql(&format!(
        "INSERT INTO accounts.users (account_id, email, name, password_hash, rights)
         SELECT {}, 'u' || n || '@acme.test', CASE WHEN n % 2 = 0 THEN 'user ' ELSE 'User ' END || lpad(n::text, 3, '0'), 'x', '{{}}'
           FROM generate_series(1, 60) n",
        t.account
    ))
    .await;
    let caller = Caller::user(t.account, t.admin.id);
    let accounts = &app.state.modules.accounts;
    let first = accounts
        .list_users(caller, kernel::paging::PageRequest::new(None, Some(50)))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 50);
    let second = accounts
        .list_users(
            caller,
            kernel::paging::PageRequest::new(first.next.clone(), Some(50)),
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 11);
    assert!(second.next.is_none());
    let names: Vec<String> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|u| u.name.to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "case-insensitive order across pages");
    assert_eq!(
        names.iter().collect::<std::collections::HashSet<_>>().len(),
        61,
        "no row twice, none missed"
    );

    // The page shows the first 50 and a link to the rest.
    let admin = app.signed_in(&t.admin.email).await;
    let (_, html) = admin.text("/settings/users").await;
    let next = html
        .split("/settings/users?after=")
        .nth(1)
        .expect("a next-page link")
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, html) = admin.text(&format!("/settings/users?after={next}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(">u60@acme.test<") && !html.contains(">u1@acme.test<"));
    assert_eq!(
        admin.get("/settings/users?after=garbage").await.status(),
        StatusCode::BAD_REQUEST
    );
}
