//! The per-request context of a page: language, signed-in user, CSRF token.

use std::future::{Ready, ready};

use accounts_api::{AccountInfo, Lang, SessionInfo, UserInfo};
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use kernel::{AppError, Caller};

use super::i18n;

/// Built by the session middleware and put into the request's extensions.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub lang: Lang,
    pub session: Option<SessionInfo>,
    pub csrf: String,
    pub path: String,
    /// A notice to show once, after a redirect (an i18n key, from `?done=`).
    pub notice: Option<String>,
}

impl Ctx {
    pub fn anonymous(lang: Lang, path: &str) -> Ctx {
        Ctx {
            lang,
            session: None,
            csrf: String::new(),
            path: path.to_string(),
            notice: None,
        }
    }

    /// A translated interface text.
    pub fn t<'a>(&self, key: &'a str) -> &'a str {
        i18n::text(self.lang, key)
    }

    pub fn user(&self) -> Option<&UserInfo> {
        self.session.as_ref().map(|s| &s.user)
    }

    pub fn account(&self) -> Option<&AccountInfo> {
        self.session.as_ref().map(|s| &s.account)
    }

    pub fn is_admin(&self) -> bool {
        self.user().is_some_and(|u| u.is_admin)
    }

    /// The signed-in user as a caller of module traits; `Unauthorized` (→ sign-in page) otherwise.
    pub fn caller(&self) -> Result<Caller, AppError> {
        self.user()
            .map(|u| Caller::user(u.account_id, u.id))
            .ok_or_else(|| AppError::unauthorized("sign in first"))
    }

    pub fn user_id(&self) -> Result<kernel::UserId, AppError> {
        self.user()
            .map(|u| u.id)
            .ok_or_else(|| AppError::unauthorized("sign in first"))
    }

    pub fn require_admin(&self) -> Result<Caller, AppError> {
        let caller = self.caller()?;
        if self.is_admin() {
            Ok(caller)
        } else {
            Err(AppError::forbidden("only administrators may do this"))
        }
    }

    /// Whether a navigation link points at the current page (or a page below it).
    pub fn active(&self, prefix: &str) -> bool {
        self.path == prefix || (prefix != "/" && self.path.starts_with(prefix))
    }

    pub fn lang_code(&self) -> &'static str {
        self.lang.code()
    }
}

impl FromRequest for Ctx {
    type Error = actix_web::Error;
    type Future = Ready<Result<Ctx, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = req
            .extensions()
            .get::<Ctx>()
            .cloned()
            .unwrap_or_else(|| Ctx::anonymous(Lang::En, req.path()));
        ready(Ok(ctx))
    }
}
