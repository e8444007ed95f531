//! The accounts module's contract: who the users are, what they may do, how they sign in.
//!
//! Every other module and the web layer talk to accounts only through [`Accounts`].
//!
//! Every call takes a [`Caller`]: reads are scoped to the caller's account (whose identity the
//! edge has authenticated: a session or a token of an active user); changes also check the
//! caller's rights (administrators manage users, groups and roles).

pub mod access;
pub mod events;
pub mod remote;
mod rights;
mod types;

use async_trait::async_trait;
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, AppResult, Caller, UserId};

pub use rights::{Action, Entity, EntityRights, Level, Rights};
pub use types::*;

#[async_trait]
pub trait Accounts: Send + Sync {
    // --- tenants ---------------------------------------------------------------------------
    /// Creates an account with its first administrator (the sign-up form, the CLI, the demo).
    async fn create_account(&self, new: NewAccount) -> AppResult<(AccountInfo, UserInfo)>;
    async fn account(&self, id: AccountId) -> AppResult<AccountInfo>;
    async fn find_account_by_subdomain(&self, subdomain: &str) -> AppResult<Option<AccountInfo>>;

    // --- sign-in and sessions ---------------------------------------------------------------
    /// Checks an e-mail and password; `BadCredentials` for a wrong pair or an inactive user.
    async fn sign_in(
        &self,
        email: &str,
        password: &str,
        meta: SessionMeta,
    ) -> AppResult<NewSession>;
    /// The session behind a session token, if it is valid and its user active.
    async fn session(&self, token: &str) -> AppResult<Option<SessionInfo>>;
    async fn sign_out(&self, token: &str) -> AppResult<()>;

    // --- users ----------------------------------------------------------------------------
    async fn list_users(&self, caller: Caller, page: PageRequest) -> AppResult<Page<UserInfo>>;
    async fn user(&self, caller: Caller, id: UserId) -> AppResult<UserInfo>;
    async fn find_user_by_email(&self, email: &str) -> AppResult<Option<UserInfo>>;
    async fn create_user(&self, caller: Caller, new: NewUser) -> AppResult<UserInfo>;
    async fn update_user(
        &self,
        caller: Caller,
        id: UserId,
        patch: UserPatch,
    ) -> AppResult<UserInfo>;
    /// Changes a password: the user's own (with the current password) or anyone's by an admin.
    async fn change_password(
        &self,
        caller: Caller,
        id: UserId,
        change: PasswordChange,
    ) -> AppResult<()>;
    /// The rights that apply to a user: the role's when a role is set, else the user's own.
    async fn rights(&self, account: AccountId, user: UserId) -> AppResult<Rights>;

    // --- groups -----------------------------------------------------------------------------
    async fn list_groups(&self, caller: Caller) -> AppResult<Vec<GroupInfo>>;
    async fn create_group(&self, caller: Caller, name: &str) -> AppResult<GroupInfo>;
    async fn rename_group(&self, caller: Caller, id: GroupId, name: &str) -> AppResult<GroupInfo>;
    /// The users of a group (active or not), for rights at the group level.
    async fn group_members(&self, account: AccountId, group: GroupId) -> AppResult<Vec<UserId>>;
    /// Deletes a group; its members are left without a group.
    async fn delete_group(&self, caller: Caller, id: GroupId) -> AppResult<()>;

    // --- roles ------------------------------------------------------------------------------
    async fn list_roles(&self, caller: Caller) -> AppResult<Vec<RoleInfo>>;
    async fn role(&self, caller: Caller, id: RoleId) -> AppResult<RoleInfo>;
    async fn create_role(&self, caller: Caller, name: &str, rights: Rights) -> AppResult<RoleInfo>;
    async fn update_role(
        &self,
        caller: Caller,
        id: RoleId,
        name: &str,
        rights: Rights,
    ) -> AppResult<RoleInfo>;
    /// Deletes a role; its users keep its rights as their own.
    async fn delete_role(&self, caller: Caller, id: RoleId) -> AppResult<()>;

    // --- long-lived API tokens --------------------------------------------------------------
    async fn list_tokens(&self, caller: Caller) -> AppResult<Vec<TokenInfo>>;
    /// Creates a token for the caller; the secret is returned once and stored only as a hash.
    async fn create_token(&self, caller: Caller, name: &str, days: u32) -> AppResult<NewToken>;
    async fn revoke_token(&self, caller: Caller, id: TokenId) -> AppResult<()>;
    /// The account and user a bearer token acts for; `Unauthorized` if invalid, expired or revoked.
    async fn authenticate_token(&self, token: &str) -> AppResult<TokenPrincipal>;

    // --- OAuth 2.0 integrations ---------------------------------------------------------------
    /// The account's registered integrations (administrators).
    async fn oauth_clients(&self, caller: Caller) -> AppResult<Vec<OAuthClient>>;
    /// Registers an integration; its secret is returned once.
    async fn create_oauth_client(
        &self,
        caller: Caller,
        name: &str,
        redirect_uri: &str,
    ) -> AppResult<NewOAuthClient>;
    /// Removes an integration and every token issued to it.
    async fn delete_oauth_client(&self, caller: Caller, id: i64) -> AppResult<()>;
    /// An integration by its public client id (for the consent page), if there is one.
    async fn find_oauth_client(&self, client_id: &str) -> AppResult<Option<OAuthClient>>;
    /// The caller allows the integration to act as them: a single-use code for its redirect.
    async fn authorize_oauth(&self, caller: Caller, client_id: &str) -> AppResult<String>;
    /// Exchanges a code or a refresh token for an access token (24 h) and a new refresh token
    /// (3 months); the code or the old refresh token stops working.
    async fn oauth_token(&self, request: OAuthTokenRequest) -> AppResult<OAuthTokens>;
}
