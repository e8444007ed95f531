//! Events the accounts module publishes (through its outbox).

use kernel::events::DomainEvent;
use kernel::{AccountId, UserId};
use serde::{Deserialize, Serialize};

use crate::{GroupId, RoleId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreated {
    pub account_id: AccountId,
    pub name: String,
    pub subdomain: String,
}

impl DomainEvent for AccountCreated {
    const TYPE: &'static str = "accounts.account_created";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: UserId,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
    pub group_id: Option<GroupId>,
    pub role_id: Option<RoleId>,
}

impl DomainEvent for UserCreated {
    const TYPE: &'static str = "accounts.user_created";
}

/// A user's profile, access or status changed; `before` and `after` hold the changed fields only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub user_id: UserId,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl DomainEvent for UserUpdated {
    const TYPE: &'static str = "accounts.user_updated";
}
