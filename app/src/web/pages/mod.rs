//! Server-rendered pages: each handler calls module traits and renders an askama template.

pub mod activities;
pub mod analytics;
pub mod auth;
pub mod automation;
pub mod contacts;
pub mod deals;
pub mod home;
pub mod inbox;
pub mod settings;
pub mod transfer;

use accounts_api::{Action, Entity, Level, Rights};
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use askama::Template;
use kernel::{AppError, ErrorCode};

use super::ctx::Ctx;
use super::error::{PageResult, WebError};

pub fn html(status: StatusCode, tpl: &impl Template) -> PageResult {
    let body = tpl
        .render()
        .map_err(|e| WebError(AppError::internal(format!("template: {e}"))))?;
    Ok(HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(body))
}

pub fn ok(tpl: &impl Template) -> PageResult {
    html(StatusCode::OK, tpl)
}

/// Post/redirect/get: `done` names the notice (an i18n key) the next page shows.
pub fn see_other(path: &str, done: Option<&str>) -> PageResult {
    let location = match done {
        Some(d) if path.contains('?') => format!("{path}&done={d}"),
        Some(d) => format!("{path}?done={d}"),
        None => path.to_string(),
    };
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .finish())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTpl<'a> {
    ctx: &'a Ctx,
    status: u16,
    code: &'a str,
    message_key: &'a str,
}

/// The error page for `err`, in the context's language, with the right status.
pub fn error_page(ctx: &Ctx, err: &AppError) -> HttpResponse {
    let status =
        StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let tpl = ErrorTpl {
        ctx,
        status: status.as_u16(),
        code: err.code.as_str(),
        message_key: err.code.message_key(),
    };
    let mut res = match html(status, &tpl) {
        Ok(r) => r,
        Err(_) => HttpResponse::build(status).body(err.code.as_str()),
    };
    if let Some(secs) = err.retry_after {
        res.headers_mut().insert(RETRY_AFTER, secs.into());
    }
    res
}

/// Errors of a form, for re-displaying it: a general message and one per field (i18n keys).
#[derive(Debug, Default)]
pub struct FormErrors {
    pub general: Option<&'static str>,
    pub fields: Vec<(String, String)>,
}

impl FormErrors {
    pub fn none() -> FormErrors {
        FormErrors::default()
    }

    pub fn from_error(err: &AppError) -> FormErrors {
        FormErrors {
            general: Some(err.code.message_key()),
            fields: err
                .fields
                .iter()
                .map(|f| (f.field.clone(), format!("field.{}", f.code)))
                .collect(),
        }
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, k)| k.as_str())
    }

    pub fn invalid(&self, name: &str) -> &'static str {
        if self.field(name).is_some() {
            "true"
        } else {
            "false"
        }
    }
}

/// Whether a handler should show its form again (the user can fix it) or fail the request.
pub fn is_form_error(e: &AppError) -> bool {
    matches!(e.code, ErrorCode::Validation | ErrorCode::Conflict)
}

pub fn form_status(e: &AppError) -> StatusCode {
    StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
}

// --- the rights matrix, shared by the role form and the user form -------------------------------

pub struct Labeled {
    pub value: &'static str,
    pub label: &'static str,
}

pub struct RightsCell {
    pub name: String,
    pub value: &'static str,
    pub action_label: &'static str,
}

pub struct RightsRow {
    pub label: &'static str,
    pub cells: Vec<RightsCell>,
}

fn entity_label(e: Entity) -> &'static str {
    match e {
        Entity::Deals => "rights.deals",
        Entity::Contacts => "rights.contacts",
        Entity::Companies => "rights.companies",
        Entity::Tasks => "rights.tasks",
    }
}

fn action_label(a: Action) -> &'static str {
    match a {
        Action::View => "rights.view",
        Action::Create => "rights.create",
        Action::Edit => "rights.edit",
        Action::Delete => "rights.delete",
        Action::Export => "rights.export",
    }
}

fn level_label(l: Level) -> &'static str {
    match l {
        Level::All => "level.all",
        Level::Group => "level.group",
        Level::Own => "level.own",
        Level::None => "level.none",
    }
}

pub fn rights_actions() -> Vec<Labeled> {
    Action::ALL
        .iter()
        .map(|a| Labeled {
            value: a.as_str(),
            label: action_label(*a),
        })
        .collect()
}

pub fn rights_levels() -> Vec<Labeled> {
    Level::ALL
        .iter()
        .map(|l| Labeled {
            value: l.as_str(),
            label: level_label(*l),
        })
        .collect()
}

pub fn rights_rows(rights: &Rights) -> Vec<RightsRow> {
    Entity::ALL
        .iter()
        .map(|e| RightsRow {
            label: entity_label(*e),
            cells: Action::ALL
                .iter()
                .map(|a| RightsCell {
                    name: format!("rights.{}.{}", e.as_str(), a.as_str()),
                    value: rights.entity(*e).get(*a).as_str(),
                    action_label: action_label(*a),
                })
                .collect(),
        })
        .collect()
}

/// Reads `rights.<entity>.<action>=<level>` fields over `base`; an unknown level is a field error.
pub fn rights_from_form(pairs: &[(String, String)], base: Rights) -> Result<Rights, AppError> {
    let mut rights = base;
    for (k, v) in pairs {
        let Some(rest) = k.strip_prefix("rights.") else {
            continue;
        };
        let (Some(entity), Some(action)) = (
            rest.split('.')
                .next()
                .and_then(|e| Entity::ALL.into_iter().find(|x| x.as_str() == e)),
            rest.split('.')
                .nth(1)
                .and_then(|a| Action::ALL.into_iter().find(|x| x.as_str() == a)),
        ) else {
            return Err(AppError::validation(k, "invalid", "unknown right"));
        };
        let level =
            Level::parse(v).ok_or_else(|| AppError::validation(k, "invalid", "unknown level"))?;
        rights.entity_mut(entity).set(action, level);
    }
    Ok(rights)
}

pub fn form_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_come_back_from_the_form_and_bad_levels_are_refused() {
        let pairs = vec![
            ("rights.deals.delete".to_string(), "none".to_string()),
            ("rights.tasks.view".to_string(), "group".to_string()),
            ("name".to_string(), "x".to_string()),
        ];
        let r = rights_from_form(&pairs, Rights::member()).unwrap();
        assert_eq!(r.level(Entity::Deals, Action::Delete), Level::None);
        assert_eq!(r.level(Entity::Tasks, Action::View), Level::Group);
        let bad = vec![("rights.deals.view".to_string(), "godmode".to_string())];
        assert_eq!(
            rights_from_form(&bad, Rights::member()).unwrap_err().code,
            ErrorCode::Validation
        );
        let rows = rights_rows(&r);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].cells[3].value, "none");
    }
}
