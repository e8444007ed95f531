//! Remote mode: the accounts module's trait over HTTP, for when the module runs as its own
//! service (`[modules.accounts] mode = "remote"`). The client and the service's dispatcher are both
//! written by [`kernel::remote_trait!`] from the one list below, which must name every method of
//! the trait (the compiler refuses the client otherwise).

#![allow(clippy::too_many_arguments, unused_imports)]

use kernel::paging::{Page, PageRequest};
use kernel::remote::RemoteClient;
use kernel::{AccountId, AppResult, Caller, UserId};

use super::*;

/// The accounts module's trait, answered by its service.
pub struct AccountsClient {
    remote: RemoteClient,
}

impl AccountsClient {
    pub fn new(remote: RemoteClient) -> AccountsClient {
        AccountsClient { remote }
    }
}

kernel::remote_trait! {
    impl Accounts for AccountsClient, dispatch dispatch_accounts, methods ACCOUNTS_METHODS {
            write fn create_account(new: NewAccount) -> (AccountInfo, UserInfo);
            read fn account(id: AccountId) -> AccountInfo;
            read fn find_account_by_subdomain(subdomain: &str as String) -> Option<AccountInfo>;
            write fn sign_in(email: &str as String, password: &str as String, meta: SessionMeta) -> NewSession;
            read fn session(token: &str as String) -> Option<SessionInfo>;
            write fn sign_out(token: &str as String) -> ();
            read fn list_users(caller: Caller, page: PageRequest) -> Page<UserInfo>;
            read fn user(caller: Caller, id: UserId) -> UserInfo;
            read fn find_user_by_email(email: &str as String) -> Option<UserInfo>;
            write fn create_user(caller: Caller, new: NewUser) -> UserInfo;
            write fn update_user(caller: Caller, id: UserId, patch: UserPatch) -> UserInfo;
            write fn change_password(caller: Caller, id: UserId, change: PasswordChange) -> ();
            read fn rights(account: AccountId, user: UserId) -> Rights;
            read fn list_groups(caller: Caller) -> Vec<GroupInfo>;
            write fn create_group(caller: Caller, name: &str as String) -> GroupInfo;
            write fn rename_group(caller: Caller, id: GroupId, name: &str as String) -> GroupInfo;
            read fn group_members(account: AccountId, group: GroupId) -> Vec<UserId>;
            write fn delete_group(caller: Caller, id: GroupId) -> ();
            read fn list_roles(caller: Caller) -> Vec<RoleInfo>;
            read fn role(caller: Caller, id: RoleId) -> RoleInfo;
            write fn create_role(caller: Caller, name: &str as String, rights: Rights) -> RoleInfo;
            write fn update_role(caller: Caller, id: RoleId, name: &str as String, rights: Rights) -> RoleInfo;
            write fn delete_role(caller: Caller, id: RoleId) -> ();
            read fn list_tokens(caller: Caller) -> Vec<TokenInfo>;
            write fn create_token(caller: Caller, name: &str as String, days: u32) -> NewToken;
            write fn revoke_token(caller: Caller, id: TokenId) -> ();
            read fn authenticate_token(token: &str as String) -> TokenPrincipal;
            read fn oauth_clients(caller: Caller) -> Vec<OAuthClient>;
            write fn create_oauth_client(caller: Caller, name: &str as String, redirect_uri: &str as String) -> NewOAuthClient;
            write fn delete_oauth_client(caller: Caller, id: i64) -> ();
            read fn find_oauth_client(client_id: &str as String) -> Option<OAuthClient>;
            write fn authorize_oauth(caller: Caller, client_id: &str as String) -> String;
            write fn oauth_token(request: OAuthTokenRequest) -> OAuthTokens;
    }
}
