//! `AccountsService`: the accounts module's implementation of the `Accounts` trait.

use accounts_api::*;
use async_trait::async_trait;
use chrono::{Duration, Utc};
use diesel::dsl::{count, count_star, now};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::db::DbPool;
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, Actor, AppError, AppResult, Caller, ErrorCode, UserId};

use accounts_api::events;
use kernel::events::EventEnvelope;
use kernel::outbox;

use crate::rows::{AccountRow, OAuthClientRow, TokenRow, UserRow, parse_rights};
use crate::schema::{
    accounts, api_tokens, groups, oauth_clients, oauth_codes, oauth_refresh_tokens, roles,
    sessions, users,
};
use crate::secrets::{self, TokenClaims};
use crate::validate::{self, Check};

pub struct AccountsService {
    pool: DbPool,
    /// Signs API tokens (HMAC-SHA256); derived from the application's secret key.
    token_key: Vec<u8>,
    session_ttl: Duration,
    /// Users by (account, id), read by every rights check: kept a moment (`USER_TTL`) and
    /// dropped on any change here to users, groups or roles. Another process running this
    /// module sees a change within that moment.
    users: moka::future::Cache<(i64, i64), UserInfo>,
}

/// How long a user read for a rights check is kept.
const USER_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl AccountsService {
    pub fn new(pool: DbPool, token_key: Vec<u8>) -> AccountsService {
        AccountsService {
            pool,
            token_key,
            session_ttl: Duration::days(14),
            users: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(USER_TTL)
                .build(),
        }
    }

    async fn conn(&self) -> AppResult<kernel::db::DbConn> {
        Ok(self.pool.get().await?)
    }
}

/// Session `last_seen_at` is refreshed at most this often, so that page views are reads.
const SESSION_TOUCH_SECS: i64 = 60;

/// Users with their role's rights alongside (a macro: the query's type is unnameable).
macro_rules! user_query {
    () => {
        users::table
            .left_join(roles::table)
            .select((UserRow::as_select(), roles::rights.nullable()))
    };
}

async fn load_user(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: UserId,
) -> AppResult<UserInfo> {
    let (row, role_rights) = user_query!()
        .filter(users::account_id.eq(account.0))
        .filter(users::id.eq(id.0))
        .first::<(UserRow, Option<serde_json::Value>)>(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("user"))?;
    Ok(row.into_info(role_rights))
}

/// The caller must be an active administrator of the account (or the system itself).
async fn require_admin(conn: &mut AsyncPgConnection, caller: Caller) -> AppResult<()> {
    match caller.actor.user_id() {
        None if matches!(caller.actor, Actor::System { .. }) => Ok(()),
        None => Err(AppError::forbidden("only administrators may do this")),
        Some(uid) => {
            let ok: Option<bool> = users::table
                .filter(users::account_id.eq(caller.account_id.0))
                .filter(users::id.eq(uid.0))
                .select(users::is_admin.and(users::is_active))
                .first(conn)
                .await
                .optional()?;
            if ok == Some(true) {
                Ok(())
            } else {
                Err(AppError::forbidden("only administrators may do this"))
            }
        }
    }
}

/// The caller must be an active user of the account (or the system).
async fn require_member(conn: &mut AsyncPgConnection, caller: Caller) -> AppResult<()> {
    let Some(uid) = caller.actor.user_id() else {
        return Ok(());
    };
    let active: Option<bool> = users::table
        .filter(users::account_id.eq(caller.account_id.0))
        .filter(users::id.eq(uid.0))
        .select(users::is_active)
        .first(conn)
        .await
        .optional()?;
    if active == Some(true) {
        Ok(())
    } else {
        Err(AppError::forbidden("this user is not active"))
    }
}

fn email_taken() -> AppError {
    AppError::validation("email", "taken", "a user with this e-mail already exists")
}

fn name_taken() -> AppError {
    AppError::validation("name", "taken", "this name is already used")
}

/// Maps a unique violation to a field error; everything else passes through.
fn on_conflict(e: AppError, field_error: fn() -> AppError) -> AppError {
    if e.code == ErrorCode::Conflict {
        field_error()
    } else {
        e
    }
}

async fn ensure_group_and_role(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    group: Option<GroupId>,
    role: Option<RoleId>,
) -> AppResult<()> {
    if let Some(g) = group {
        let found: i64 = groups::table
            .filter(groups::account_id.eq(account.0))
            .filter(groups::id.eq(g.0))
            .select(count_star())
            .first(conn)
            .await?;
        if found == 0 {
            return Err(AppError::validation(
                "group_id",
                "not_found",
                "no such group",
            ));
        }
    }
    if let Some(r) = role {
        let found: i64 = roles::table
            .filter(roles::account_id.eq(account.0))
            .filter(roles::id.eq(r.0))
            .select(count_star())
            .first(conn)
            .await?;
        if found == 0 {
            return Err(AppError::validation("role_id", "not_found", "no such role"));
        }
    }
    Ok(())
}

/// Refuses a change that would leave the account without an active administrator.
async fn keep_an_admin(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    changed: UserId,
) -> AppResult<()> {
    let others: i64 = users::table
        .filter(users::account_id.eq(account.0))
        .filter(users::id.ne(changed.0))
        .filter(users::is_admin.eq(true))
        .filter(users::is_active.eq(true))
        .select(count_star())
        .first(conn)
        .await?;
    if others == 0 {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "the account must keep at least one active administrator",
        ));
    }
    Ok(())
}

fn user_created(row: &UserRow) -> events::UserCreated {
    events::UserCreated {
        user_id: UserId(row.id),
        name: row.name.clone(),
        email: row.email.clone(),
        is_admin: row.is_admin,
        group_id: row.group_id.map(GroupId),
        role_id: row.role_id.map(RoleId),
    }
}

/// The fields that changed between two versions of a user, as an event (None if nothing did).
fn user_changes(before: &UserInfo, after: &UserInfo) -> Option<events::UserUpdated> {
    let (b, a) = (
        serde_json::to_value(before).ok()?,
        serde_json::to_value(after).ok()?,
    );
    let (mut old, mut new) = (serde_json::Map::new(), serde_json::Map::new());
    for key in [
        "name",
        "email",
        "is_admin",
        "is_active",
        "lang",
        "time_zone",
        "group_id",
        "role_id",
        "rights",
    ] {
        if b[key] != a[key] {
            old.insert(key.into(), b[key].clone());
            new.insert(key.into(), a[key].clone());
        }
    }
    (!new.is_empty()).then(|| events::UserUpdated {
        user_id: after.id,
        before: old.into(),
        after: new.into(),
    })
}

#[async_trait]
impl Accounts for AccountsService {
    async fn create_account(&self, new: NewAccount) -> AppResult<(AccountInfo, UserInfo)> {
        let mut check = Check::default();
        let name = check.text("name", &new.name, 200);
        let admin_name = check.text("admin_name", &new.admin_name, 200);
        let email = check.email("admin_email", &new.admin_email);
        check.password("admin_password", &new.admin_password);
        let requested = new
            .subdomain
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        if let Some(s) = &requested
            && !validate::valid_subdomain(s)
        {
            check.fail(
                "subdomain",
                "invalid",
                "use lower-case letters, digits and dashes",
            );
        }
        check.finish()?;
        let hash = secrets::hash_password(new.admin_password).await?;
        let mut conn = self.conn().await?;
        let base = requested.clone().unwrap_or_else(|| {
            let s = validate::slug(&name);
            if s.is_empty() {
                "account".to_string()
            } else {
                s
            }
        });
        let (account, user) = conn
            .transaction::<_, AppError, _>(async |conn| {
                let taken: i64 = users::table
                    .filter(users::email.eq(&email))
                    .select(count_star())
                    .first(conn)
                    .await?;
                if taken > 0 {
                    return Err(AppError::validation(
                        "admin_email",
                        "taken",
                        "a user with this e-mail already exists",
                    ));
                }
                // A requested subdomain must be free; a derived one gets a numeric suffix.
                let mut subdomain = base.clone();
                for n in 2.. {
                    let used: i64 = accounts::table
                        .filter(accounts::subdomain.eq(&subdomain))
                        .select(count_star())
                        .first(conn)
                        .await?;
                    if used == 0 {
                        break;
                    }
                    if requested.is_some() {
                        return Err(AppError::validation(
                            "subdomain",
                            "taken",
                            "this subdomain is taken",
                        ));
                    }
                    subdomain = format!("{base}-{n}");
                }
                let account: AccountRow = diesel::insert_into(accounts::table)
                    .values((
                        accounts::uuid.eq(uuid::Uuid::new_v4()),
                        accounts::name.eq(&name),
                        accounts::subdomain.eq(&subdomain),
                    ))
                    .returning(AccountRow::as_returning())
                    .get_result(conn)
                    .await?;
                let user: UserRow = diesel::insert_into(users::table)
                    .values((
                        users::account_id.eq(account.id),
                        users::email.eq(&email),
                        users::name.eq(&admin_name),
                        users::password_hash.eq(&hash),
                        users::is_admin.eq(true),
                        users::lang.eq(new.lang.code()),
                        users::rights.eq(serde_json::to_value(Rights::admin()).unwrap_or_default()),
                    ))
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .await
                    .map_err(|e| on_conflict(e.into(), email_taken))?;
                let caller = Caller::system(AccountId(account.id));
                let events = [
                    EventEnvelope::new(
                        caller,
                        &events::AccountCreated {
                            account_id: AccountId(account.id),
                            name: account.name.clone(),
                            subdomain: account.subdomain.clone(),
                        },
                    )?,
                    EventEnvelope::new(caller, &user_created(&user))?,
                ];
                outbox::append(conn, crate::SCHEMA, &events).await?;
                Ok((account, user))
            })
            .await?;
        Ok((account.into(), user.into_info(None)))
    }

    async fn account(&self, id: AccountId) -> AppResult<AccountInfo> {
        let mut conn = self.conn().await?;
        let row: AccountRow = accounts::table
            .filter(accounts::id.eq(id.0))
            .select(AccountRow::as_select())
            .first(&mut conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("account"))?;
        Ok(row.into())
    }

    async fn find_account_by_subdomain(&self, subdomain: &str) -> AppResult<Option<AccountInfo>> {
        let mut conn = self.conn().await?;
        let row: Option<AccountRow> = accounts::table
            .filter(accounts::subdomain.eq(subdomain.trim().to_lowercase()))
            .select(AccountRow::as_select())
            .first(&mut conn)
            .await
            .optional()?;
        Ok(row.map(Into::into))
    }

    async fn sign_in(
        &self,
        email: &str,
        password: &str,
        meta: SessionMeta,
    ) -> AppResult<NewSession> {
        let email = email.trim().to_lowercase();
        let mut conn = self.conn().await?;
        let found: Option<(i64, i64, String, bool)> = users::table
            .filter(users::email.eq(&email))
            .select((
                users::id,
                users::account_id,
                users::password_hash,
                users::is_active,
            ))
            .first(&mut conn)
            .await
            .optional()?;
        let hash = found.as_ref().map(|(_, _, h, _)| h.clone());
        let password_ok = secrets::verify_password(password.to_string(), hash).await;
        let Some((user_id, account_id, _, true)) = found.filter(|_| password_ok) else {
            return Err(AppError::new(
                ErrorCode::BadCredentials,
                "wrong e-mail or password",
            ));
        };
        let token = secrets::random_token();
        let csrf = secrets::random_token();
        let expires_at = Utc::now() + self.session_ttl;
        diesel::delete(
            sessions::table
                .filter(sessions::user_id.eq(user_id))
                .filter(sessions::expires_at.lt(now)),
        )
        .execute(&mut conn)
        .await?;
        diesel::insert_into(sessions::table)
            .values((
                sessions::account_id.eq(account_id),
                sessions::user_id.eq(user_id),
                sessions::token_hash.eq(secrets::token_hash(&token)),
                sessions::csrf_token.eq(&csrf),
                sessions::ip.eq(meta.ip.map(|s| s.chars().take(64).collect::<String>())),
                sessions::user_agent.eq(meta
                    .user_agent
                    .map(|s| s.chars().take(400).collect::<String>())),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(&mut conn)
            .await?;
        let user = load_user(&mut conn, AccountId(account_id), UserId(user_id)).await?;
        let account: AccountRow = accounts::table
            .filter(accounts::id.eq(account_id))
            .select(AccountRow::as_select())
            .first(&mut conn)
            .await?;
        Ok(NewSession {
            token,
            session: SessionInfo {
                user,
                account: account.into(),
                csrf_token: csrf,
                expires_at,
            },
        })
    }

    async fn session(&self, token: &str) -> AppResult<Option<SessionInfo>> {
        let mut conn = self.conn().await?;
        type Found = (
            i64,
            String,
            chrono::DateTime<Utc>,
            chrono::DateTime<Utc>,
            UserRow,
            Option<serde_json::Value>,
            AccountRow,
        );
        let found: Option<Found> = sessions::table
            .inner_join(
                users::table
                    .left_join(roles::table)
                    .inner_join(accounts::table),
            )
            .filter(sessions::token_hash.eq(secrets::token_hash(token)))
            .filter(sessions::expires_at.gt(now))
            .filter(users::is_active.eq(true))
            .select((
                sessions::id,
                sessions::csrf_token,
                sessions::last_seen_at,
                sessions::expires_at,
                UserRow::as_select(),
                roles::rights.nullable(),
                AccountRow::as_select(),
            ))
            .first(&mut conn)
            .await
            .optional()?;
        let Some((id, csrf_token, last_seen, mut expires_at, user, role_rights, account)) = found
        else {
            return Ok(None);
        };
        let now_ts = Utc::now();
        if (now_ts - last_seen).num_seconds() >= SESSION_TOUCH_SECS {
            // Sliding expiry: an active session stays open; an idle one lapses after the TTL.
            expires_at = now_ts + self.session_ttl;
            diesel::update(sessions::table.filter(sessions::id.eq(id)))
                .set((
                    sessions::last_seen_at.eq(now_ts),
                    sessions::expires_at.eq(expires_at),
                ))
                .execute(&mut conn)
                .await?;
        }
        Ok(Some(SessionInfo {
            user: user.into_info(role_rights),
            account: account.into(),
            csrf_token,
            expires_at,
        }))
    }

    async fn sign_out(&self, token: &str) -> AppResult<()> {
        let mut conn = self.conn().await?;
        diesel::delete(sessions::table.filter(sessions::token_hash.eq(secrets::token_hash(token))))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    async fn list_users(&self, caller: Caller, page: PageRequest) -> AppResult<Page<UserInfo>> {
        let mut conn = self.conn().await?;
        // Keyset on (name_key, id), name_key being lower(name): the order people look for
        // colleagues in. Two static queries rather than one boxed one, so both stay prepared.
        let account = users::account_id.eq(caller.account_id.0);
        let order = (users::name_key, users::id);
        let rows: Vec<(UserRow, Option<serde_json::Value>)> = match &page.after {
            None => {
                user_query!()
                    .filter(account)
                    .order(order)
                    .limit(page.fetch_limit())
                    .load(&mut conn)
                    .await?
            }
            Some(after) => {
                let (name_key, id): (String, i64) = after.decode()?;
                user_query!()
                    .filter(account)
                    .filter(
                        users::name_key
                            .gt(name_key.clone())
                            .or(users::name_key.eq(name_key).and(users::id.gt(id))),
                    )
                    .order(order)
                    .limit(page.fetch_limit())
                    .load(&mut conn)
                    .await?
            }
        };
        let page = Page::from_rows(rows, &page, |(u, _)| (u.name_key.clone(), u.id));
        Ok(page.map(|(u, r)| u.into_info(r)))
    }

    async fn user(&self, caller: Caller, id: UserId) -> AppResult<UserInfo> {
        let key = (caller.account_id.0, id.0);
        if let Some(u) = self.users.get(&key).await {
            return Ok(u);
        }
        let mut conn = self.conn().await?;
        let user = load_user(&mut conn, caller.account_id, id).await?;
        self.users.insert(key, user.clone()).await;
        Ok(user)
    }

    async fn find_user_by_email(&self, email: &str) -> AppResult<Option<UserInfo>> {
        let mut conn = self.conn().await?;
        let found: Option<(UserRow, Option<serde_json::Value>)> = user_query!()
            .filter(users::email.eq(email.trim().to_lowercase()))
            .first(&mut conn)
            .await
            .optional()?;
        Ok(found.map(|(u, r)| u.into_info(r)))
    }

    async fn create_user(&self, caller: Caller, new: NewUser) -> AppResult<UserInfo> {
        let mut conn = self.conn().await?;
        require_admin(&mut conn, caller).await?;
        let mut check = Check::default();
        let name = check.text("name", &new.name, 200);
        let email = check.email("email", &new.email);
        check.password("password", &new.password);
        let tz = check.time_zone("time_zone", &new.time_zone);
        check.finish()?;
        ensure_group_and_role(&mut conn, caller.account_id, new.group_id, new.role_id).await?;
        let hash = secrets::hash_password(new.password).await?;
        let rights = if new.is_admin {
            Rights::admin()
        } else {
            Rights::member()
        };
        let row: UserRow = conn
            .transaction::<_, AppError, _>(async |conn| {
                let row: UserRow = diesel::insert_into(users::table)
                    .values((
                        users::account_id.eq(caller.account_id.0),
                        users::email.eq(&email),
                        users::name.eq(&name),
                        users::password_hash.eq(&hash),
                        users::is_admin.eq(new.is_admin),
                        users::lang.eq(new.lang.code()),
                        users::time_zone.eq(&tz),
                        users::group_id.eq(new.group_id.map(|g| g.0)),
                        users::role_id.eq(new.role_id.map(|r| r.0)),
                        users::rights.eq(serde_json::to_value(rights).unwrap_or_default()),
                    ))
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .await
                    .map_err(|e| on_conflict(e.into(), email_taken))?;
                outbox::append(
                    conn,
                    crate::SCHEMA,
                    &[EventEnvelope::new(caller, &user_created(&row))?],
                )
                .await?;
                Ok(row)
            })
            .await?;
        load_user(&mut conn, caller.account_id, UserId(row.id)).await
    }

    async fn update_user(
        &self,
        caller: Caller,
        id: UserId,
        patch: UserPatch,
    ) -> AppResult<UserInfo> {
        let result: AppResult<_> = async {
            let mut conn = self.conn().await?;
            let own_profile_only = patch.email.is_none()
                && patch.is_admin.is_none()
                && patch.is_active.is_none()
                && patch.group_id.is_none()
                && patch.role_id.is_none()
                && patch.rights.is_none();
            if caller.actor.user_id() == Some(id) && own_profile_only {
                require_member(&mut conn, caller).await?;
            } else {
                require_admin(&mut conn, caller).await?;
            }
            let current = load_user(&mut conn, caller.account_id, id).await?;
            let mut check = Check::default();
            let name = patch.name.as_deref().map(|n| check.text("name", n, 200));
            let email = patch.email.as_deref().map(|e| check.email("email", e));
            let tz = patch
                .time_zone
                .as_deref()
                .map(|t| check.time_zone("time_zone", t));
            check.finish()?;
            let group = patch.group_id.unwrap_or(current.group_id);
            let role = patch.role_id.unwrap_or(current.role_id);
            ensure_group_and_role(&mut conn, caller.account_id, group, role).await?;
            let loses_admin = current.is_admin
                && current.is_active
                && (patch.is_admin == Some(false) || patch.is_active == Some(false));
            if loses_admin {
                keep_an_admin(&mut conn, caller.account_id, id).await?;
            }
            let own_rights = patch.rights.map(|r| {
                serde_json::to_value(Rights {
                    is_admin: false,
                    ..r
                })
                .unwrap_or_default()
            });
            let deactivated = patch.is_active == Some(false) && current.is_active;
            conn.transaction::<_, AppError, _>(async |conn| {
                diesel::update(
                    users::table
                        .filter(users::account_id.eq(caller.account_id.0))
                        .filter(users::id.eq(id.0)),
                )
                .set((
                    users::name.eq(name.unwrap_or(current.name.clone())),
                    users::email.eq(email.unwrap_or(current.email.clone())),
                    users::is_admin.eq(patch.is_admin.unwrap_or(current.is_admin)),
                    users::is_active.eq(patch.is_active.unwrap_or(current.is_active)),
                    users::lang.eq(patch.lang.unwrap_or(current.lang).code()),
                    users::time_zone.eq(tz.unwrap_or(current.time_zone.clone())),
                    users::group_id.eq(group.map(|g| g.0)),
                    users::role_id.eq(role.map(|r| r.0)),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
                .await
                .map_err(|e| on_conflict(e.into(), email_taken))?;
                if let Some(rights) = &own_rights {
                    diesel::update(
                        users::table
                            .filter(users::account_id.eq(caller.account_id.0))
                            .filter(users::id.eq(id.0)),
                    )
                    .set(users::rights.eq(rights))
                    .execute(conn)
                    .await?;
                }
                let after = load_user(conn, caller.account_id, id).await?;
                if let Some(change) = user_changes(&current, &after) {
                    outbox::append(conn, crate::SCHEMA, &[EventEnvelope::new(caller, &change)?])
                        .await?;
                }
                if deactivated {
                    // A deactivated user is signed out everywhere at once.
                    diesel::delete(
                        sessions::table
                            .filter(sessions::account_id.eq(caller.account_id.0))
                            .filter(sessions::user_id.eq(id.0)),
                    )
                    .execute(conn)
                    .await?;
                }
                Ok(())
            })
            .await?;
            load_user(&mut conn, caller.account_id, id).await
        }
        .await;
        // Users as cached by `user` may have changed (their rights, group, activity).
        self.users.invalidate_all();
        result
    }

    async fn change_password(
        &self,
        caller: Caller,
        id: UserId,
        change: PasswordChange,
    ) -> AppResult<()> {
        let result: AppResult<_> = async {
            let mut conn = self.conn().await?;
            let own = caller.actor.user_id() == Some(id);
            if own {
                require_member(&mut conn, caller).await?;
            } else {
                require_admin(&mut conn, caller).await?;
            }
            let mut check = Check::default();
            check.password("new", &change.new);
            check.finish()?;
            let stored: String = users::table
                .filter(users::account_id.eq(caller.account_id.0))
                .filter(users::id.eq(id.0))
                .select(users::password_hash)
                .first(&mut conn)
                .await
                .optional()?
                .ok_or_else(|| AppError::not_found("user"))?;
            if own
                && !secrets::verify_password(change.current.unwrap_or_default(), Some(stored)).await
            {
                return Err(AppError::validation(
                    "current",
                    "wrong_password",
                    "the current password is not right",
                ));
            }
            let hash = secrets::hash_password(change.new).await?;
            diesel::update(
                users::table
                    .filter(users::account_id.eq(caller.account_id.0))
                    .filter(users::id.eq(id.0)),
            )
            .set((users::password_hash.eq(hash), users::updated_at.eq(now)))
            .execute(&mut conn)
            .await?;
            Ok(())
        }
        .await;
        // Users as cached by `user` may have changed (their rights, group, activity).
        self.users.invalidate_all();
        result
    }

    async fn rights(&self, account: AccountId, user: UserId) -> AppResult<Rights> {
        let mut conn = self.conn().await?;
        Ok(load_user(&mut conn, account, user).await?.rights)
    }

    async fn list_groups(&self, caller: Caller) -> AppResult<Vec<GroupInfo>> {
        let mut conn = self.conn().await?;
        let members = users::table.on(users::account_id
            .eq(groups::account_id)
            .and(users::group_id.eq(groups::id.nullable())));
        let rows: Vec<(i64, String, i64)> = groups::table
            .left_join(members)
            .filter(groups::account_id.eq(caller.account_id.0))
            .group_by((groups::id, groups::name))
            .select((groups::id, groups::name, count(users::id.nullable())))
            .order((groups::name, groups::id))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, members)| GroupInfo {
                id: GroupId(id),
                name,
                members,
            })
            .collect())
    }

    async fn create_group(&self, caller: Caller, name: &str) -> AppResult<GroupInfo> {
        let mut conn = self.conn().await?;
        require_admin(&mut conn, caller).await?;
        let mut check = Check::default();
        let name = check.text("name", name, 100);
        check.finish()?;
        let id: i64 = diesel::insert_into(groups::table)
            .values((
                groups::account_id.eq(caller.account_id.0),
                groups::name.eq(&name),
            ))
            .returning(groups::id)
            .get_result(&mut conn)
            .await
            .map_err(|e| on_conflict(e.into(), name_taken))?;
        Ok(GroupInfo {
            id: GroupId(id),
            name,
            members: 0,
        })
    }

    async fn rename_group(&self, caller: Caller, id: GroupId, name: &str) -> AppResult<GroupInfo> {
        let result: AppResult<_> = async {
            let mut conn = self.conn().await?;
            require_admin(&mut conn, caller).await?;
            let mut check = Check::default();
            let name = check.text("name", name, 100);
            check.finish()?;
            let n = diesel::update(
                groups::table
                    .filter(groups::account_id.eq(caller.account_id.0))
                    .filter(groups::id.eq(id.0)),
            )
            .set(groups::name.eq(&name))
            .execute(&mut conn)
            .await
            .map_err(|e| on_conflict(e.into(), name_taken))?;
            if n == 0 {
                return Err(AppError::not_found("group"));
            }
            let members: i64 = users::table
                .filter(users::account_id.eq(caller.account_id.0))
                .filter(users::group_id.eq(id.0))
                .select(count_star())
                .first(&mut conn)
                .await?;
            Ok(GroupInfo { id, name, members })
        }
        .await;
        // Users as cached by `user` may have changed (their rights, group, activity).
        self.users.invalidate_all();
        result
    }

    async fn group_members(&self, account: AccountId, group: GroupId) -> AppResult<Vec<UserId>> {
        let mut conn = self.conn().await?;
        let ids: Vec<i64> = users::table
            .filter(users::account_id.eq(account.0))
            .filter(users::group_id.eq(group.0))
            .select(users::id)
            .order(users::id)
            .load(&mut conn)
            .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    async fn delete_group(&self, caller: Caller, id: GroupId) -> AppResult<()> {
        let result: AppResult<_> = async {
            let mut conn = self.conn().await?;
            require_admin(&mut conn, caller).await?;
            let n = diesel::delete(
                groups::table
                    .filter(groups::account_id.eq(caller.account_id.0))
                    .filter(groups::id.eq(id.0)),
            )
            .execute(&mut conn)
            .await?;
            if n == 0 {
                Err(AppError::not_found("group"))
            } else {
                Ok(())
            }
        }
        .await;
        // Users as cached by `user` may have changed (their rights, group, activity).
        self.users.invalidate_all();
        result
    }

    async fn list_roles(&self, caller: Caller) -> AppResult<Vec<RoleInfo>> {
        let mut conn = self.conn().await?;
        let holders = users::table.on(users::account_id
            .eq(roles::account_id)
            .and(users::role_id.eq(roles::id.nullable())));
        let rows: Vec<(i64, String, serde_json::Value, i64)> = roles::table
            .left_join(holders)
            .filter(roles::account_id.eq(caller.account_id.0))
            .group_by((roles::id, roles::name, roles::rights))
            .select((
                roles::id,
                roles::name,
                roles::rights,
                count(users::id.nullable()),
            ))
            .order((roles::name, roles::id))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, rights, users)| RoleInfo {
                id: RoleId(id),
                name,
                rights: parse_rights(rights),
                users,
            })
            .collect())
    }

    async fn role(&self, caller: Caller, id: RoleId) -> AppResult<RoleInfo> {
        self.list_roles(caller)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppError::not_found("role"))
    }

    async fn create_role(&self, caller: Caller, name: &str, rights: Rights) -> AppResult<RoleInfo> {
        let mut conn = self.conn().await?;
        require_admin(&mut conn, caller).await?;
        let mut check = Check::default();
        let name = check.text("name", name, 100);
        check.finish()?;
        let rights = Rights {
            is_admin: false,
            ..rights
        };
        let id: i64 = diesel::insert_into(roles::table)
            .values((
                roles::account_id.eq(caller.account_id.0),
                roles::name.eq(&name),
                roles::rights.eq(serde_json::to_value(rights).unwrap_or_default()),
            ))
            .returning(roles::id)
            .get_result(&mut conn)
            .await
            .map_err(|e| on_conflict(e.into(), name_taken))?;
        Ok(RoleInfo {
            id: RoleId(id),
            name,
            rights,
            users: 0,
        })
    }

    async fn update_role(
        &self,
        caller: Caller,
        id: RoleId,
        name: &str,
        rights: Rights,
    ) -> AppResult<RoleInfo> {
        let result: AppResult<_> = async {
            let mut conn = self.conn().await?;
            require_admin(&mut conn, caller).await?;
            let mut check = Check::default();
            let name = check.text("name", name, 100);
            check.finish()?;
            let rights = Rights {
                is_admin: false,
                ..rights
            };
            let n = diesel::update(
                roles::table
                    .filter(roles::account_id.eq(caller.account_id.0))
                    .filter(roles::id.eq(id.0)),
            )
            .set((
                roles::name.eq(&name),
                roles::rights.eq(serde_json::to_value(rights).unwrap_or_default()),
                roles::updated_at.eq(now),
            ))
            .execute(&mut conn)
            .await
            .map_err(|e| on_conflict(e.into(), name_taken))?;
            if n == 0 {
                return Err(AppError::not_found("role"));
            }
            drop(conn);
            self.role(caller, id).await
        }
        .await;
        // Users as cached by `user` may have changed (their rights, group, activity).
        self.users.invalidate_all();
        result
    }

    async fn delete_role(&self, caller: Caller, id: RoleId) -> AppResult<()> {
        let result: AppResult<_> = async {
            let mut conn = self.conn().await?;
            require_admin(&mut conn, caller).await?;
            conn.transaction::<_, AppError, _>(async |conn| {
                let rights: serde_json::Value = roles::table
                    .filter(roles::account_id.eq(caller.account_id.0))
                    .filter(roles::id.eq(id.0))
                    .select(roles::rights)
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or_else(|| AppError::not_found("role"))?;
                // Its users keep what they could do: the role's rights become their own.
                diesel::update(
                    users::table
                        .filter(users::account_id.eq(caller.account_id.0))
                        .filter(users::role_id.eq(id.0)),
                )
                .set((users::rights.eq(&rights), users::role_id.eq(None::<i64>)))
                .execute(conn)
                .await?;
                diesel::delete(
                    roles::table
                        .filter(roles::account_id.eq(caller.account_id.0))
                        .filter(roles::id.eq(id.0)),
                )
                .execute(conn)
                .await?;
                Ok(())
            })
            .await
        }
        .await;
        // Users as cached by `user` may have changed (their rights, group, activity).
        self.users.invalidate_all();
        result
    }

    async fn list_tokens(&self, caller: Caller) -> AppResult<Vec<TokenInfo>> {
        let mut conn = self.conn().await?;
        require_member(&mut conn, caller).await?;
        let is_admin = require_admin(&mut conn, caller).await.is_ok();
        let mut q = api_tokens::table
            .inner_join(users::table)
            .filter(api_tokens::account_id.eq(caller.account_id.0))
            // OAuth access tokens belong to their integrations, not to this list.
            .filter(api_tokens::client_id.is_null())
            .select((TokenRow::as_select(), users::name))
            .order(api_tokens::id.desc())
            .into_boxed();
        if !is_admin {
            // Ordinary users see their own tokens; administrators see the account's.
            q = q.filter(api_tokens::user_id.eq(caller.actor.user_id().map(|u| u.0).unwrap_or(-1)));
        }
        let rows: Vec<(TokenRow, String)> = q.load(&mut conn).await?;
        Ok(rows.into_iter().map(|(t, n)| t.into_info(n)).collect())
    }

    async fn create_token(&self, caller: Caller, name: &str, days: u32) -> AppResult<NewToken> {
        let mut conn = self.conn().await?;
        require_member(&mut conn, caller).await?;
        let user = caller
            .actor
            .user_id()
            .ok_or_else(|| AppError::forbidden("API tokens belong to users"))?;
        let mut check = Check::default();
        let name = check.text("name", name, 100);
        if days == 0 || days > MAX_TOKEN_DAYS {
            check.fail(
                "days",
                "out_of_range",
                &format!("from 1 to {MAX_TOKEN_DAYS} days"),
            );
        }
        check.finish()?;
        let issued = Utc::now();
        let expires_at = issued + Duration::days(i64::from(days));
        let claims = TokenClaims {
            jti: secrets::random_token(),
            sub: user.0,
            account_id: caller.account_id.0,
            iat: issued.timestamp(),
            exp: expires_at.timestamp(),
            aud: None,
            api_domain: None,
        };
        let secret = secrets::sign_token(&self.token_key, &claims)?;
        let row: TokenRow = diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::account_id.eq(caller.account_id.0),
                api_tokens::user_id.eq(user.0),
                api_tokens::name.eq(&name),
                api_tokens::token_hash.eq(secrets::token_hash(&secret)),
                api_tokens::created_at.eq(issued),
                api_tokens::expires_at.eq(expires_at),
            ))
            .returning(TokenRow::as_returning())
            .get_result(&mut conn)
            .await?;
        let user_name: String = users::table
            .filter(users::id.eq(user.0))
            .select(users::name)
            .first(&mut conn)
            .await?;
        Ok(NewToken {
            info: row.into_info(user_name),
            secret,
        })
    }

    async fn revoke_token(&self, caller: Caller, id: TokenId) -> AppResult<()> {
        let mut conn = self.conn().await?;
        require_member(&mut conn, caller).await?;
        let is_admin = require_admin(&mut conn, caller).await.is_ok();
        let owner: Option<i64> = api_tokens::table
            .filter(api_tokens::account_id.eq(caller.account_id.0))
            .filter(api_tokens::id.eq(id.0))
            .select(api_tokens::user_id)
            .first(&mut conn)
            .await
            .optional()?;
        match owner {
            // Someone else's token is as invisible to a non-admin as another account's.
            Some(o) if is_admin || Some(UserId(o)) == caller.actor.user_id() => {}
            _ => return Err(AppError::not_found("token")),
        }
        diesel::update(
            api_tokens::table
                .filter(api_tokens::account_id.eq(caller.account_id.0))
                .filter(api_tokens::id.eq(id.0)),
        )
        .filter(api_tokens::revoked_at.is_null())
        .set(api_tokens::revoked_at.eq(now))
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    async fn authenticate_token(&self, token: &str) -> AppResult<TokenPrincipal> {
        let now_ts = Utc::now();
        let claims = secrets::verify_token(&self.token_key, token, now_ts)?;
        let mut conn = self.conn().await?;
        let found: Option<(i64, i64, i64, Option<chrono::DateTime<Utc>>, Option<i64>)> =
            api_tokens::table
                .inner_join(users::table)
                .filter(api_tokens::token_hash.eq(secrets::token_hash(token.trim())))
                .filter(api_tokens::revoked_at.is_null())
                .filter(api_tokens::expires_at.gt(now))
                .filter(users::is_active.eq(true))
                .select((
                    api_tokens::id,
                    api_tokens::account_id,
                    api_tokens::user_id,
                    api_tokens::last_used_at,
                    api_tokens::client_id,
                ))
                .first(&mut conn)
                .await
                .optional()?;
        let Some((id, account_id, user_id, last_used, client_id)) = found else {
            return Err(AppError::unauthorized(
                "the access token has been revoked or has expired",
            ));
        };
        if account_id != claims.account_id || user_id != claims.sub {
            return Err(AppError::unauthorized("the access token is not valid"));
        }
        if last_used.is_none_or(|t| (now_ts - t).num_seconds() >= SESSION_TOUCH_SECS) {
            diesel::update(api_tokens::table.filter(api_tokens::id.eq(id)))
                .set(api_tokens::last_used_at.eq(now_ts))
                .execute(&mut conn)
                .await?;
        }
        Ok(TokenPrincipal {
            account_id: AccountId(account_id),
            user_id: UserId(user_id),
            token_id: TokenId(id),
            client_id,
        })
    }

    async fn oauth_clients(&self, caller: Caller) -> AppResult<Vec<OAuthClient>> {
        let mut conn = self.conn().await?;
        require_admin(&mut conn, caller).await?;
        let rows: Vec<OAuthClientRow> = oauth_clients::table
            .filter(oauth_clients::account_id.eq(caller.account_id.0))
            .order(oauth_clients::id)
            .select(OAuthClientRow::as_select())
            .load(&mut conn)
            .await?;
        Ok(rows.into_iter().map(OAuthClientRow::into_client).collect())
    }

    async fn create_oauth_client(
        &self,
        caller: Caller,
        name: &str,
        redirect_uri: &str,
    ) -> AppResult<NewOAuthClient> {
        let mut conn = self.conn().await?;
        require_admin(&mut conn, caller).await?;
        let mut check = Check::default();
        let name = check.text("name", name, 100);
        let redirect_uri = redirect_uri.trim().to_string();
        let valid_uri = (redirect_uri.starts_with("https://")
            || redirect_uri.starts_with("http://"))
            && redirect_uri.len() <= 2000
            && !redirect_uri.contains(char::is_whitespace)
            && !redirect_uri.contains('#');
        if !valid_uri {
            check.fail(
                "redirect_uri",
                "invalid",
                "an http:// or https:// address without a fragment",
            );
        }
        check.finish()?;
        let secret = secrets::random_token();
        let row: OAuthClientRow = diesel::insert_into(oauth_clients::table)
            .values((
                oauth_clients::account_id.eq(caller.account_id.0),
                oauth_clients::client_id.eq(uuid::Uuid::new_v4()),
                oauth_clients::name.eq(&name),
                oauth_clients::secret_hash.eq(secrets::token_hash(&secret)),
                oauth_clients::redirect_uri.eq(&redirect_uri),
                oauth_clients::created_by.eq(caller.actor.user_id().map(|u| u.0).unwrap_or(0)),
            ))
            .returning(OAuthClientRow::as_returning())
            .get_result(&mut conn)
            .await?;
        Ok(NewOAuthClient {
            client: row.into_client(),
            secret,
        })
    }

    async fn delete_oauth_client(&self, caller: Caller, id: i64) -> AppResult<()> {
        let mut conn = self.conn().await?;
        require_admin(&mut conn, caller).await?;
        let n = diesel::delete(
            oauth_clients::table
                .filter(oauth_clients::account_id.eq(caller.account_id.0))
                .filter(oauth_clients::id.eq(id)),
        )
        .execute(&mut conn)
        .await?;
        if n == 0 {
            return Err(AppError::not_found("integration"));
        }
        Ok(())
    }

    async fn find_oauth_client(&self, client_id: &str) -> AppResult<Option<OAuthClient>> {
        let Ok(uuid) = uuid::Uuid::parse_str(client_id.trim()) else {
            return Ok(None);
        };
        let mut conn = self.conn().await?;
        let row: Option<OAuthClientRow> = oauth_clients::table
            .filter(oauth_clients::client_id.eq(uuid))
            .select(OAuthClientRow::as_select())
            .first(&mut conn)
            .await
            .optional()?;
        Ok(row.map(OAuthClientRow::into_client))
    }

    async fn authorize_oauth(&self, caller: Caller, client_id: &str) -> AppResult<String> {
        let user = caller
            .actor
            .user_id()
            .ok_or_else(|| AppError::forbidden("integrations act for users"))?;
        let client = self
            .find_oauth_client(client_id)
            .await?
            .filter(|c| c.account_id == caller.account_id)
            .ok_or_else(|| AppError::not_found("integration"))?;
        let mut conn = self.conn().await?;
        require_member(&mut conn, caller).await?;
        let code = secrets::random_token();
        diesel::insert_into(oauth_codes::table)
            .values((
                oauth_codes::code_hash.eq(secrets::token_hash(&code)),
                oauth_codes::account_id.eq(caller.account_id.0),
                oauth_codes::client_id.eq(client.id),
                oauth_codes::user_id.eq(user.0),
                oauth_codes::redirect_uri.eq(&client.redirect_uri),
                oauth_codes::expires_at.eq(Utc::now() + Duration::seconds(OAUTH_CODE_SECS)),
            ))
            .execute(&mut conn)
            .await?;
        Ok(code)
    }

    async fn oauth_token(&self, request: OAuthTokenRequest) -> AppResult<OAuthTokens> {
        let bad_client = || AppError::unauthorized("Client authentication failed");
        let uuid = uuid::Uuid::parse_str(request.client_id.trim()).map_err(|_| bad_client())?;
        let mut conn = self.conn().await?;
        let client: OAuthClientRow = oauth_clients::table
            .filter(oauth_clients::client_id.eq(uuid))
            .select(OAuthClientRow::as_select())
            .first(&mut conn)
            .await
            .optional()?
            .ok_or_else(bad_client)?;
        let given = secrets::token_hash(request.client_secret.trim());
        if !secrets::same_bytes(&given, &client.secret_hash) {
            return Err(bad_client());
        }
        if let Some(uri) = request.redirect_uri.as_deref().map(str::trim)
            && !uri.is_empty()
            && uri != client.redirect_uri
        {
            return Err(AppError::new(
                ErrorCode::BadRequest,
                "redirect_uri does not match the one registered for this integration",
            ));
        }
        let now_ts = Utc::now();
        let key = self.token_key.clone();
        let domain = request.api_domain.clone();
        conn.transaction::<_, AppError, _>(async |tx| {
            // The grant: used once, atomically (a second use finds it used and fails).
            let user_id: Option<i64> = match &request.grant {
                OAuthGrant::AuthorizationCode { code } => diesel::update(
                    oauth_codes::table
                        .filter(oauth_codes::code_hash.eq(secrets::token_hash(code.trim())))
                        .filter(oauth_codes::client_id.eq(client.id))
                        .filter(oauth_codes::used_at.is_null())
                        .filter(oauth_codes::expires_at.gt(now_ts)),
                )
                .set(oauth_codes::used_at.eq(now_ts))
                .returning(oauth_codes::user_id)
                .get_result(tx)
                .await
                .optional()?,
                OAuthGrant::RefreshToken { refresh_token } => diesel::update(
                    oauth_refresh_tokens::table
                        .filter(
                            oauth_refresh_tokens::token_hash
                                .eq(secrets::token_hash(refresh_token.trim())),
                        )
                        .filter(oauth_refresh_tokens::client_id.eq(client.id))
                        .filter(oauth_refresh_tokens::used_at.is_null())
                        .filter(oauth_refresh_tokens::expires_at.gt(now_ts)),
                )
                .set(oauth_refresh_tokens::used_at.eq(now_ts))
                .returning(oauth_refresh_tokens::user_id)
                .get_result(tx)
                .await
                .optional()?,
            };
            let Some(user_id) = user_id else {
                let what = match request.grant {
                    OAuthGrant::AuthorizationCode { .. } => "Authorization code",
                    OAuthGrant::RefreshToken { .. } => "Token",
                };
                return Err(AppError::new(
                    ErrorCode::BadRequest,
                    format!("{what} has been revoked or has expired"),
                ));
            };
            let active: bool = users::table
                .filter(users::account_id.eq(client.account_id))
                .filter(users::id.eq(user_id))
                .select(users::is_active)
                .first(tx)
                .await?;
            if !active {
                return Err(AppError::unauthorized("the user is not active"));
            }
            let expires_at = now_ts + Duration::seconds(OAUTH_ACCESS_SECS);
            let claims = TokenClaims {
                jti: secrets::random_token(),
                sub: user_id,
                account_id: client.account_id,
                iat: now_ts.timestamp(),
                exp: expires_at.timestamp(),
                aud: Some(client.client_id.to_string()),
                api_domain: Some(domain),
            };
            let access = secrets::sign_token(&key, &claims)?;
            diesel::insert_into(api_tokens::table)
                .values((
                    api_tokens::account_id.eq(client.account_id),
                    api_tokens::user_id.eq(user_id),
                    api_tokens::name.eq(&client.name),
                    api_tokens::token_hash.eq(secrets::token_hash(&access)),
                    api_tokens::created_at.eq(now_ts),
                    api_tokens::expires_at.eq(expires_at),
                    api_tokens::client_id.eq(client.id),
                ))
                .execute(tx)
                .await?;
            let refresh = secrets::random_token();
            diesel::insert_into(oauth_refresh_tokens::table)
                .values((
                    oauth_refresh_tokens::account_id.eq(client.account_id),
                    oauth_refresh_tokens::client_id.eq(client.id),
                    oauth_refresh_tokens::user_id.eq(user_id),
                    oauth_refresh_tokens::token_hash.eq(secrets::token_hash(&refresh)),
                    oauth_refresh_tokens::expires_at
                        .eq(now_ts + Duration::days(OAUTH_REFRESH_DAYS)),
                ))
                .execute(tx)
                .await?;
            Ok(OAuthTokens {
                access_token: access,
                refresh_token: refresh,
                expires_in: OAUTH_ACCESS_SECS,
            })
        })
        .await
    }
}
