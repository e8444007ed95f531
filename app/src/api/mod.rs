//! The public REST API, compatible with amoCRM API v4 (`/api/v4/...`). Written against the
//! module traits only. Successful answers are `application/hal+json`, errors
//! `application/problem+json`, exactly (clients compare the strings).

pub mod account;
pub mod body;
pub mod catalog;
pub mod contacts;
pub mod events;
pub mod fields;
pub mod leads;
pub mod limits;
pub mod notes;
pub mod oauth;
pub mod openapi;
pub mod params;
pub mod pipelines;
pub mod problem;
pub mod talks;
pub mod tasks;
pub mod unsorted;
pub mod users;
pub mod webhooks;

use std::future::Future;
use std::pin::Pin;

use accounts_api::TokenPrincipal;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use kernel::{AppError, Caller, ErrorCode};
use serde_json::{Value, json};

pub use problem::ApiError;

use crate::state::AppState;
use params::Params;

pub const HAL_JSON: &str = "application/hal+json";

pub fn routes(cfg: &mut web::ServiceConfig) {
    let e = "/api/v4/{entity:leads|contacts|companies}";
    cfg.route("/api/v4/account", web::get().to(account::get))
        // leads
        .route("/api/v4/leads", web::get().to(leads::list))
        .route("/api/v4/leads", web::post().to(leads::create))
        .route("/api/v4/leads", web::patch().to(leads::update_many))
        .route("/api/v4/leads/complex", web::post().to(leads::complex))
        .route("/api/v4/leads/pipelines", web::get().to(pipelines::list))
        .route("/api/v4/leads/pipelines", web::post().to(pipelines::create))
        .route(
            "/api/v4/leads/pipelines/{id}",
            web::get().to(pipelines::get),
        )
        .route(
            "/api/v4/leads/pipelines/{id}",
            web::patch().to(pipelines::update),
        )
        .route(
            "/api/v4/leads/pipelines/{id}",
            web::delete().to(pipelines::delete),
        )
        .route(
            "/api/v4/leads/pipelines/{id}/statuses",
            web::get().to(pipelines::statuses),
        )
        .route(
            "/api/v4/leads/pipelines/{id}/statuses",
            web::post().to(pipelines::add_statuses),
        )
        .route(
            "/api/v4/leads/pipelines/{id}/statuses/{status}",
            web::get().to(pipelines::status),
        )
        .route(
            "/api/v4/leads/pipelines/{id}/statuses/{status}",
            web::patch().to(pipelines::update_status),
        )
        .route(
            "/api/v4/leads/pipelines/{id}/statuses/{status}",
            web::delete().to(pipelines::delete_status),
        )
        .route(
            "/api/v4/leads/loss_reasons",
            web::get().to(catalog::loss_reasons),
        )
        .route(
            "/api/v4/leads/loss_reasons",
            web::post().to(catalog::add_loss_reasons),
        )
        .route(
            "/api/v4/leads/loss_reasons",
            web::patch().to(catalog::update_loss_reasons),
        )
        .route(
            "/api/v4/leads/loss_reasons/{id:\\d+}",
            web::get().to(catalog::loss_reason),
        )
        .route(
            "/api/v4/leads/loss_reasons/{id:\\d+}",
            web::delete().to(catalog::delete_loss_reason),
        )
        .route("/api/v4/leads/unsorted", web::get().to(unsorted::list))
        .route(
            "/api/v4/leads/unsorted/summary",
            web::get().to(unsorted::summary),
        )
        .route("/api/v4/leads/unsorted/{uid}", web::get().to(unsorted::get))
        .route(
            "/api/v4/leads/unsorted/{uid}/accept",
            web::post().to(unsorted::accept),
        )
        .route(
            "/api/v4/leads/unsorted/{uid}/decline",
            web::delete().to(unsorted::decline),
        )
        .route(
            "/api/v4/leads/unsorted/{uid}/link",
            web::post().to(unsorted::link),
        )
        .route("/api/v4/leads/{id:\\d+}", web::get().to(leads::get))
        .route(
            "/api/v4/leads/{id:\\d+}",
            web::patch().to(leads::update_one),
        )
        // contacts and companies
        .route("/api/v4/contacts", web::get().to(contacts::list_contacts))
        .route(
            "/api/v4/contacts",
            web::post().to(contacts::create_contacts),
        )
        .route(
            "/api/v4/contacts/{id:\\d+}",
            web::get().to(contacts::get_contact),
        )
        .route(
            "/api/v4/contacts",
            web::patch().to(contacts::update_contacts),
        )
        .route(
            "/api/v4/contacts/{id:\\d+}",
            web::patch().to(contacts::update_contact),
        )
        .route(
            "/api/v4/companies",
            web::patch().to(contacts::update_companies),
        )
        .route(
            "/api/v4/companies/{id:\\d+}",
            web::patch().to(contacts::update_company),
        )
        .route("/api/v4/companies", web::get().to(contacts::list_companies))
        .route(
            "/api/v4/companies",
            web::post().to(contacts::create_companies),
        )
        .route(
            "/api/v4/companies/{id:\\d+}",
            web::get().to(contacts::get_company),
        )
        // shared by the three entities
        .route(
            &format!("{e}/{{id:\\d+}}/links"),
            web::get().to(leads::list_links),
        )
        .route(
            &format!("{e}/{{id:\\d+}}/link"),
            web::post().to(leads::link),
        )
        .route(
            &format!("{e}/{{id:\\d+}}/unlink"),
            web::post().to(leads::unlink),
        )
        .route(&format!("{e}/notes"), web::get().to(notes::list))
        .route(&format!("{e}/notes"), web::post().to(notes::create))
        .route(
            &format!("{e}/{{id:\\d+}}/notes"),
            web::get().to(notes::list_of),
        )
        .route(
            &format!("{e}/{{id:\\d+}}/notes"),
            web::post().to(notes::create_on),
        )
        .route(
            &format!("{e}/notes/{{note:\\d+}}"),
            web::get().to(notes::get),
        )
        .route(
            &format!("{e}/{{id:\\d+}}/notes/{{note:\\d+}}"),
            web::get().to(notes::get_of),
        )
        .route(&format!("{e}/tags"), web::get().to(catalog::tags))
        .route(&format!("{e}/tags"), web::post().to(catalog::add_tags))
        .route(
            &format!("{e}/custom_fields/{{id:\\d+}}"),
            web::get().to(catalog::custom_field),
        )
        .route(
            &format!("{e}/custom_fields/{{id:\\d+}}"),
            web::patch().to(catalog::update_custom_field),
        )
        .route(
            &format!("{e}/custom_fields/{{id:\\d+}}"),
            web::delete().to(catalog::delete_field),
        )
        .route(
            &format!("{e}/custom_fields"),
            web::patch().to(catalog::update_custom_fields),
        )
        .route(
            &format!("{e}/custom_fields/groups"),
            web::get().to(catalog::field_groups),
        )
        .route(
            &format!("{e}/custom_fields/groups"),
            web::post().to(catalog::add_field_groups),
        )
        .route(
            &format!("{e}/custom_fields/groups/{{group}}"),
            web::get().to(catalog::field_groups_one),
        )
        .route(
            &format!("{e}/custom_fields/groups/{{group}}"),
            web::patch().to(catalog::update_field_group),
        )
        .route(
            &format!("{e}/custom_fields/groups/{{group}}"),
            web::delete().to(catalog::delete_field_group),
        )
        .route(
            &format!("{e}/custom_fields"),
            web::get().to(catalog::custom_fields),
        )
        .route(
            &format!("{e}/custom_fields"),
            web::post().to(catalog::add_custom_fields),
        )
        // tasks, events, users, webhooks
        .route("/api/v4/tasks", web::get().to(tasks::list))
        .route("/api/v4/tasks", web::post().to(tasks::create))
        .route("/api/v4/tasks", web::patch().to(tasks::update_many))
        .route("/api/v4/tasks/{id:\\d+}", web::get().to(tasks::get))
        .route(
            "/api/v4/tasks/{id:\\d+}",
            web::patch().to(tasks::update_one),
        )
        .route("/api/v4/events", web::get().to(events::list))
        .route("/api/v4/events/types", web::get().to(events::types))
        .route("/api/v4/events/{id}", web::get().to(events::get))
        .route("/api/v4/users", web::get().to(users::list))
        .route("/api/v4/users/{id:\\d+}", web::get().to(users::get))
        .route("/api/v4/users", web::post().to(users::create))
        .route("/api/v4/roles", web::get().to(users::roles))
        .route("/api/v4/roles", web::post().to(users::create_roles))
        .route("/api/v4/roles/{id:\\d+}", web::get().to(users::role))
        .route(
            "/api/v4/roles/{id:\\d+}",
            web::patch().to(users::update_role),
        )
        .route(
            "/api/v4/roles/{id:\\d+}",
            web::delete().to(users::delete_role),
        )
        .route("/api/v4/talks", web::get().to(talks::list))
        .route("/api/v4/talks/{id:\\d+}", web::get().to(talks::get))
        .route(
            "/api/v4/talks/{id:\\d+}/messages",
            web::get().to(talks::messages),
        )
        .route(
            "/api/v4/talks/{id:\\d+}/messages",
            web::post().to(talks::send),
        )
        .route("/api/v4/webhooks", web::get().to(webhooks::list))
        .route("/api/v4/webhooks", web::post().to(webhooks::subscribe))
        .route("/api/v4/webhooks", web::delete().to(webhooks::unsubscribe))
        // OAuth 2.0 and the API's description
        .route("/oauth2/access_token", web::post().to(oauth::access_token))
        .route("/oauth", web::get().to(oauth::consent))
        .route("/oauth", web::post().to(oauth::allow))
        .route("/api/v4/openapi.json", web::get().to(openapi::document))
        .route("/api/docs", web::get().to(openapi::page));
}

/// The token's account and user, from `Authorization: Bearer …`, within the integration's rate
/// limit.
pub struct ApiAuth(pub TokenPrincipal);

impl ApiAuth {
    pub fn caller(&self) -> Caller {
        Caller::user(self.0.account_id, self.0.user_id)
    }
}

impl FromRequest for ApiAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ApiAuth, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError(AppError::internal("application state missing")))?;
            let token = header
                .as_deref()
                .and_then(|h| {
                    h.strip_prefix("Bearer ")
                        .or_else(|| h.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError(AppError::unauthorized(
                        "an Authorization: Bearer token is required",
                    ))
                })?;
            let principal = state.modules.accounts.authenticate_token(token).await?;
            if let Err(wait) = state.api_limits.check(&principal.integration_key()) {
                let mut e = AppError::new(
                    ErrorCode::RateLimited,
                    "Too many requests: at most the integration's limit per second",
                );
                e.retry_after = Some(wait);
                return Err(ApiError(e));
            }
            Ok(ApiAuth(principal))
        })
    }
}

/// A path segment that is not what the route takes (`/api/v4/leads/abc`): not found, in the
/// API's problem+json or as the web's error page.
pub fn path_error(_err: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    let e = AppError::not_found(if req.path().starts_with("/api/") {
        "record"
    } else {
        "page"
    });
    if req.path().starts_with("/api/") {
        ApiError(e).into()
    } else {
        crate::web::error::WebError(e).into()
    }
}

/// The scheme and host the client used, for `_links` (amoCRM clients follow them verbatim).
pub fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// `{"self": {"href": "<base>/api/v4/<path>"}}`.
pub fn links(req: &HttpRequest, path: &str) -> Value {
    json!({ "self": { "href": format!("{}/api/v4/{path}", base_url(req)) } })
}

/// A 200 with a HAL body.
pub fn hal(body: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HAL_JSON))
        .body(body.to_string())
}

/// "There is simply no data": 204, empty body.
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// The query string of the request, as parsed parameters.
pub fn params(req: &HttpRequest) -> Params {
    Params::parse(req.query_string())
}

/// `page` (from 1) and `limit` (1–250; over 250 is an error, as amoCRM answers).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: u32,
    pub limit: u32,
}

impl Paging {
    pub fn read(p: &mut Params, default_limit: u32) -> Paging {
        let page = p.int(&["page"]).unwrap_or(1);
        let limit = p.int(&["limit"]).unwrap_or(i64::from(default_limit));
        if !(1..=1_000_000).contains(&page) {
            p.fail("page", "InvalidValue", "page starts at 1");
        }
        if !(1..=250).contains(&limit) {
            p.fail("limit", "InvalidValue", "limit must be between 1 and 250");
        }
        Paging {
            page: page.clamp(1, 1_000_000) as u32,
            limit: limit.clamp(1, 250) as u32,
        }
    }

    /// Cuts a page out of a whole list already in order; whether more follow.
    pub fn slice<T>(&self, mut all: Vec<T>) -> (Vec<T>, bool) {
        let start = ((self.page - 1) as usize).saturating_mul(self.limit as usize);
        if start >= all.len() {
            return (Vec::new(), false);
        }
        let mut rest = all.split_off(start);
        let more = rest.len() > self.limit as usize;
        rest.truncate(self.limit as usize);
        (rest, more)
    }
}

/// The request's path and query with `page` set to `page`.
fn page_href(req: &HttpRequest, page: u32) -> String {
    let mut parts: Vec<String> = req
        .query_string()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter(|kv| kv.split('=').next() != Some("page"))
        .map(str::to_string)
        .collect();
    parts.insert(0, format!("page={page}"));
    format!("{}{}?{}", base_url(req), req.path(), parts.join("&"))
}

/// A HAL list page: `_page`, `_links` (self, first, prev, and next only when there is a next
/// page), `_embedded.<key>`; an empty list is a 204. Items are written as they are (typed items
/// skip building a `Value` per record).
pub fn list_page<T: serde::Serialize>(
    req: &HttpRequest,
    key: &str,
    items: Vec<T>,
    paging: Paging,
    more: bool,
) -> HttpResponse {
    if items.is_empty() {
        return no_content();
    }
    let mut links = json!({
        "self": { "href": page_href(req, paging.page) },
        "first": { "href": page_href(req, 1) },
    });
    if paging.page > 1 {
        links["prev"] = json!({ "href": page_href(req, paging.page - 1) });
    }
    if more {
        links["next"] = json!({ "href": page_href(req, paging.page + 1) });
    }
    #[derive(serde::Serialize)]
    struct Page<'a, T: serde::Serialize> {
        #[serde(rename = "_page")]
        page: u32,
        #[serde(rename = "_links")]
        links: Value,
        #[serde(rename = "_embedded")]
        embedded: One<'a, T>,
    }
    hal_of(&Page {
        page: paging.page,
        links,
        embedded: One(key, &items),
    })
}

/// A map with one entry whose key is known only at run time: `{"<key>": [items]}`.
struct One<'a, T>(&'a str, &'a [T]);

impl<T: serde::Serialize> serde::Serialize for One<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, self.1)?;
        m.end()
    }
}

/// A 200 with a HAL body written straight from a typed value.
pub fn hal_of<T: serde::Serialize>(body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, HAL_JSON))
            .body(bytes),
        Err(e) => actix_web::ResponseError::error_response(&ApiError(AppError::internal(format!(
            "writing the response: {e}"
        )))),
    }
}

/// A typed HAL `_links` with only `self`.
#[derive(Debug, serde::Serialize)]
pub struct SelfLink {
    #[serde(rename = "self")]
    pub this: Href,
}

#[derive(Debug, serde::Serialize)]
pub struct Href {
    pub href: String,
}

impl SelfLink {
    /// `<base>/api/v4/<path>`, `base` being [`base_url`] of the request.
    pub fn new(base: &str, path: std::fmt::Arguments) -> SelfLink {
        SelfLink {
            this: Href {
                href: format!("{base}/api/v4/{path}"),
            },
        }
    }
}

/// A tag as amoCRM shows it in `_embedded.tags`.
#[derive(serde::Serialize)]
pub struct TagOut<'a> {
    id: i64,
    name: &'a str,
    color: Option<&'a str>,
}

impl<'a> TagOut<'a> {
    pub fn new(id: i64, name: &'a str) -> TagOut<'a> {
        TagOut {
            id,
            name,
            color: None,
        }
    }
}

/// A linked record in `_embedded`: its id, whether it is the main one (a lead's contacts only),
/// and its link.
#[derive(serde::Serialize)]
pub struct LinkOut {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_main: Option<bool>,
    #[serde(rename = "_links")]
    links: SelfLink,
}

impl LinkOut {
    pub fn new(id: i64, is_main: Option<bool>, links: SelfLink) -> LinkOut {
        LinkOut { id, is_main, links }
    }
}

/// Linked records of `entity` (a path segment: `contacts`, `companies`) by id, with no `is_main`.
pub fn links_out(base: &str, entity: &str, ids: impl Iterator<Item = i64>) -> Vec<LinkOut> {
    ids.map(|id| LinkOut::new(id, None, SelfLink::new(base, format_args!("{entity}/{id}"))))
        .collect()
}

/// A list that is never paged (pipelines, statuses, webhooks…): `_total_items`.
pub fn total_list(req: &HttpRequest, key: &str, items: Vec<Value>) -> HttpResponse {
    let mut embedded = serde_json::Map::new();
    let n = items.len();
    embedded.insert(key.to_string(), Value::Array(items));
    hal(&json!({
        "_total_items": n,
        "_links": { "self": { "href": format!("{}{}", base_url(req), req.path()) } },
        "_embedded": embedded,
    }))
}

/// The `with=` parts, comma-joined or repeated.
pub fn with(p: &Params) -> Vec<String> {
    p.strs(&["with"], true)
}

/// Unix seconds.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}

/// Maps a module's "not found" on a GET by id to amoCRM's 204.
pub fn or_no_content(r: Result<HttpResponse, ApiError>) -> Result<HttpResponse, ApiError> {
    match r {
        Err(ApiError(e)) if e.code == ErrorCode::NotFound => Ok(no_content()),
        other => other,
    }
}

/// The entity segment of a path (`leads`, `contacts`, `companies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityPath {
    Leads,
    Contacts,
    Companies,
}

impl EntityPath {
    pub fn parse(s: &str) -> Result<EntityPath, ApiError> {
        match s {
            "leads" => Ok(EntityPath::Leads),
            "contacts" => Ok(EntityPath::Contacts),
            "companies" => Ok(EntityPath::Companies),
            _ => Err(ApiError(AppError::not_found("endpoint"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntityPath::Leads => "leads",
            EntityPath::Contacts => "contacts",
            EntityPath::Companies => "companies",
        }
    }

    pub fn kind(self) -> activities_api::EntityKind {
        match self {
            EntityPath::Leads => activities_api::EntityKind::Deal,
            EntityPath::Contacts => activities_api::EntityKind::Contact,
            EntityPath::Companies => activities_api::EntityKind::Company,
        }
    }

    pub fn of_kind(k: activities_api::EntityKind) -> EntityPath {
        match k {
            activities_api::EntityKind::Deal => EntityPath::Leads,
            activities_api::EntityKind::Contact => EntityPath::Contacts,
            activities_api::EntityKind::Company => EntityPath::Companies,
        }
    }
}
