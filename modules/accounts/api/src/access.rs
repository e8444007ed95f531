//! Which records of an entity a caller may reach with an action: all of them, those of the
//! caller's group or the caller's own (by responsible user), or none. Every module that keeps
//! records with a responsible user asks here.

use kernel::{AppError, AppResult, Caller, ErrorCode, UserId};

use crate::{Accounts, Action, Entity, Level};

/// The responsible users whose records an action reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Users(Vec<UserId>),
}

impl Scope {
    pub fn allows(&self, responsible: UserId) -> bool {
        match self {
            Scope::All => true,
            Scope::Users(ids) => ids.contains(&responsible),
        }
    }

    /// The user ids to filter by (`None`: no filter).
    pub fn ids(&self) -> Option<Vec<i64>> {
        match self {
            Scope::All => None,
            Scope::Users(ids) => Some(ids.iter().map(|u| u.0).collect()),
        }
    }
}

/// The scope of `action` on `entity` for `caller`; `Forbidden` when the level is "none" or the
/// user is deactivated. Robots and the system reach everything.
pub async fn scope(
    accounts: &dyn Accounts,
    caller: Caller,
    entity: Entity,
    action: Action,
) -> AppResult<Scope> {
    let Some(me) = caller.actor.user_id() else {
        return Ok(Scope::All);
    };
    let user = accounts.user(caller, me).await?;
    if !user.is_active {
        return Err(AppError::forbidden("this user is not active"));
    }
    match user.rights.level(entity, action) {
        Level::All => Ok(Scope::All),
        Level::Own => Ok(Scope::Users(vec![me])),
        Level::Group => match user.group_id {
            Some(g) => Ok(Scope::Users(
                accounts.group_members(caller.account_id, g).await?,
            )),
            None => Ok(Scope::Users(vec![me])),
        },
        Level::None => Err(AppError::forbidden(format!(
            "no right to {} {}",
            action.as_str(),
            entity.as_str()
        ))),
    }
}

/// The responsible user for a record: the caller (already checked by `scope`), or an active
/// user of the caller's account. Refusals name the field `responsible_user_id`.
pub async fn responsible(
    accounts: &dyn Accounts,
    caller: Caller,
    user: Option<UserId>,
) -> AppResult<UserId> {
    let field = "responsible_user_id";
    match user {
        Some(u) if Some(u) == caller.actor.user_id() => Ok(u),
        Some(u) => {
            let found = accounts.user(caller, u).await.map_err(|e| {
                if e.code == ErrorCode::NotFound {
                    AppError::validation(field, "not_found", "no such user")
                } else {
                    e
                }
            })?;
            // The system (an import) keeps a deactivated user's records with him, as the
            // system they come from did.
            if !found.is_active && !matches!(caller.actor, kernel::Actor::System { .. }) {
                return Err(AppError::validation(
                    field,
                    "inactive",
                    "this user is deactivated",
                ));
            }
            Ok(u)
        }
        None => Err(AppError::validation(
            field,
            "required",
            "choose a responsible user",
        )),
    }
}

/// The system itself (an import run by the operator) or an active administrator of the
/// account: who may rewrite records' history (see [`kernel::provenance`]).
pub async fn system_or_admin(accounts: &dyn Accounts, caller: Caller) -> AppResult<()> {
    let Some(me) = caller.actor.user_id() else {
        return if matches!(caller.actor, kernel::Actor::System { .. }) {
            Ok(())
        } else {
            Err(AppError::forbidden("only administrators may do this"))
        };
    };
    let user = accounts.user(caller, me).await?;
    if user.is_admin && user.is_active {
        Ok(())
    } else {
        Err(AppError::forbidden("only administrators may do this"))
    }
}
