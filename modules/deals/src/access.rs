//! Which deals a caller may see or change: the accounts contract's scope, for deals.

pub use accounts_api::access::{Scope, responsible};
use accounts_api::{Accounts, Action, Entity};
use kernel::{AppResult, Caller};

pub async fn scope(accounts: &dyn Accounts, caller: Caller, action: Action) -> AppResult<Scope> {
    accounts_api::access::scope(accounts, caller, Entity::Deals, action).await
}
