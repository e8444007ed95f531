use accounts_api::{AccountInfo, UserInfo};
use askama::Template;

use super::ok;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;

#[derive(Template)]
#[template(path = "home.html")]
struct HomeTpl<'a> {
    ctx: &'a Ctx,
    user: &'a UserInfo,
    account: &'a AccountInfo,
}

pub async fn home(ctx: Ctx) -> PageResult {
    ctx.caller()?;
    let (Some(user), Some(account)) = (ctx.user(), ctx.account()) else {
        return Err(kernel::AppError::unauthorized("sign in first").into());
    };
    ok(&HomeTpl {
        ctx: &ctx,
        user,
        account,
    })
}
