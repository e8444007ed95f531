use chrono::{DateTime, Utc};
use kernel::typed_id;
use kernel::{AccountId, UserId};
use serde::{Deserialize, Serialize};

use crate::Rights;

typed_id!(GroupId);
typed_id!(RoleId);
typed_id!(TokenId);

/// The interface languages Voronka speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Ru,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }
}

/// Time zones offered to users: the ones sales teams using Voronka work in. Stored by IANA name.
pub const TIME_ZONES: &[&str] = &[
    "UTC",
    "Europe/Kaliningrad",
    "Europe/Moscow",
    "Europe/Samara",
    "Europe/Volgograd",
    "Asia/Yekaterinburg",
    "Asia/Omsk",
    "Asia/Novosibirsk",
    "Asia/Krasnoyarsk",
    "Asia/Irkutsk",
    "Asia/Yakutsk",
    "Asia/Vladivostok",
    "Asia/Magadan",
    "Asia/Kamchatka",
    "Europe/Minsk",
    "Europe/Kyiv",
    "Asia/Almaty",
    "Asia/Tashkent",
    "Asia/Tbilisi",
    "Asia/Yerevan",
    "Asia/Baku",
    "Asia/Dubai",
    "Europe/Istanbul",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Warsaw",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub id: AccountId,
    pub name: String,
    pub subdomain: String,
    pub uuid: uuid::Uuid,
    pub currency: String,
    pub country: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    pub name: String,
    /// Lower-case letters, digits and dashes; derived from the name when empty.
    pub subdomain: Option<String>,
    pub admin_name: String,
    pub admin_email: String,
    pub admin_password: String,
    pub lang: Lang,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: UserId,
    pub account_id: AccountId,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub lang: Lang,
    pub time_zone: String,
    pub group_id: Option<GroupId>,
    pub role_id: Option<RoleId>,
    /// The rights that apply (the role's, or the user's own).
    pub rights: Rights,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub password: String,
    pub is_admin: bool,
    pub lang: Lang,
    pub time_zone: String,
    pub group_id: Option<GroupId>,
    pub role_id: Option<RoleId>,
}

/// A partial update: `None` leaves a field as it is; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
    pub lang: Option<Lang>,
    pub time_zone: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "kernel::remote::some"
    )]
    pub group_id: Option<Option<GroupId>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "kernel::remote::some"
    )]
    pub role_id: Option<Option<RoleId>>,
    /// The user's own rights, used when no role is set.
    pub rights: Option<Rights>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChange {
    /// Required when users change their own password.
    pub current: Option<String>,
    pub new: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: GroupId,
    pub name: String,
    pub members: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    pub id: RoleId,
    pub name: String,
    pub rights: Rights,
    pub users: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A session just opened: the token goes into the (encrypted) session cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    pub token: String,
    pub session: SessionInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub user: UserInfo,
    pub account: AccountInfo,
    /// The token forms must echo back (CSRF protection), fixed for the session's life.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub user_id: UserId,
    pub user_name: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    pub info: TokenInfo,
    /// The bearer token itself: shown once, never stored.
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPrincipal {
    pub account_id: AccountId,
    pub user_id: UserId,
    pub token_id: TokenId,
    /// The OAuth integration the token was issued to (none for a long-lived token).
    pub client_id: Option<i64>,
}

impl TokenPrincipal {
    /// What the API's rate limit counts by: the integration, or the long-lived token.
    pub fn integration_key(&self) -> String {
        match self.client_id {
            Some(c) => format!("client:{c}"),
            None => format!("token:{}", self.token_id.0),
        }
    }
}

/// The longest a long-lived token may live (amoCRM allows one day to five years).
pub const MAX_TOKEN_DAYS: u32 = 5 * 366;

/// An integration registered by an admin for amoCRM's OAuth 2.0 authorization-code flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub id: i64,
    pub account_id: AccountId,
    /// The public client id (a UUID), as amoCRM's integrations have.
    pub client_id: String,
    pub name: String,
    pub redirect_uri: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A new client and its secret, shown once (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOAuthClient {
    pub client: OAuthClient,
    pub secret: String,
}

/// What `/oauth2/access_token` exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OAuthGrant {
    /// A single-use code from the consent page (valid 20 minutes).
    AuthorizationCode { code: String },
    /// A refresh token: it works once and is replaced by a new one.
    RefreshToken { refresh_token: String },
}

/// `/oauth2/access_token`'s request, as the integration sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthTokenRequest {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: Option<String>,
    pub grant: OAuthGrant,
    /// Put into the access token's `api_domain` claim (the host the API was called on).
    pub api_domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives (86,400).
    pub expires_in: i64,
}

/// An access token lives a day; a refresh token three months.
pub const OAUTH_ACCESS_SECS: i64 = 86_400;
pub const OAUTH_REFRESH_DAYS: i64 = 90;
pub const OAUTH_CODE_SECS: i64 = 20 * 60;
