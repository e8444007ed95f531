//! Rows as stored, and their conversion into the contract's types.

use accounts_api::{
    AccountInfo, GroupId, Lang, OAuthClient, Rights, RoleId, TokenId, TokenInfo, UserInfo,
};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use kernel::{AccountId, UserId};

use crate::schema::{accounts, api_tokens, users};

#[derive(Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(Pg))]
pub struct AccountRow {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub name: String,
    pub subdomain: String,
    pub currency: String,
    pub country: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<AccountRow> for AccountInfo {
    fn from(r: AccountRow) -> Self {
        AccountInfo {
            id: AccountId(r.id),
            name: r.name,
            subdomain: r.subdomain,
            uuid: r.uuid,
            currency: r.currency,
            country: r.country,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct UserRow {
    pub id: i64,
    pub account_id: i64,
    pub email: String,
    pub name: String,
    pub name_key: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub lang: String,
    pub time_zone: String,
    pub group_id: Option<i64>,
    pub role_id: Option<i64>,
    pub rights: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn parse_rights(value: serde_json::Value) -> Rights {
    serde_json::from_value(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "stored rights do not parse; falling back to no rights");
        let none = accounts_api::EntityRights::uniform(accounts_api::Level::None);
        Rights {
            is_admin: false,
            deals: none,
            contacts: none,
            companies: none,
            tasks: none,
        }
    })
}

impl UserRow {
    /// The contract's user, with the rights that apply: an admin's are all; otherwise the role's
    /// rights when a role is set (`role_rights`), else the user's own.
    pub fn into_info(self, role_rights: Option<serde_json::Value>) -> UserInfo {
        let rights = if self.is_admin {
            Rights::admin()
        } else {
            parse_rights(role_rights.unwrap_or(self.rights))
        };
        UserInfo {
            id: UserId(self.id),
            account_id: AccountId(self.account_id),
            name: self.name,
            email: self.email,
            is_admin: self.is_admin,
            is_active: self.is_active,
            lang: Lang::parse(&self.lang).unwrap_or_default(),
            time_zone: self.time_zone,
            group_id: self.group_id.map(GroupId),
            role_id: self.role_id.map(RoleId),
            rights,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_tokens, check_for_backend(Pg))]
pub struct TokenRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    pub fn into_info(self, user_name: String) -> TokenInfo {
        TokenInfo {
            id: TokenId(self.id),
            user_id: UserId(self.user_id),
            user_name,
            name: self.name,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = crate::schema::oauth_clients)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct OAuthClientRow {
    pub id: i64,
    pub account_id: i64,
    pub client_id: uuid::Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub redirect_uri: String,
    pub created_at: DateTime<Utc>,
}

impl OAuthClientRow {
    pub fn into_client(self) -> OAuthClient {
        OAuthClient {
            id: self.id,
            account_id: AccountId(self.account_id),
            client_id: self.client_id.to_string(),
            name: self.name,
            redirect_uri: self.redirect_uri,
            created_at: self.created_at,
        }
    }
}
