//! Contacts and companies: list (page/limit, `filter[id]`, `filter[responsible_user_id]`,
//! `filter[created_at]`, `query`), get by id, create in batches. Phones and e-mails are the
//! `PHONE` and `EMAIL` multitext fields of amoCRM, named by `field_code`.

use actix_web::{HttpRequest, HttpResponse, web};
use contacts_api::{Company, CompanyId, Contact, ContactFilter, ContactId, Email, Entity, Phone};
use kernel::paging::PageRequest;
use kernel::{Caller, UserId};
use serde_json::{Value, json};

use super::body::{self, Item, MAX_BATCH};
use super::fields::values_out;
use super::leads::{read_company, read_contact};
use super::problem::ItemErrors;
use super::{ApiAuth, ApiError, Paging, hal, links, list_page, or_no_content, params, ts};
use crate::state::AppState;

/// Phones and e-mails as amoCRM's PHONE / EMAIL multitext values.
fn reach_json(phones: &[Phone], emails: &[Email]) -> Vec<Value> {
    let mut out = Vec::new();
    if !phones.is_empty() {
        out.push(json!({
            "field_id": Value::Null, "field_name": "Phone", "field_code": "PHONE",
            "field_type": "multitext",
            "values": phones.iter().map(|p| json!({"value": p.raw, "enum_code": p.kind})).collect::<Vec<_>>(),
        }));
    }
    if !emails.is_empty() {
        out.push(json!({
            "field_id": Value::Null, "field_name": "Email", "field_code": "EMAIL",
            "field_type": "multitext",
            "values": emails.iter().map(|e| json!({"value": e.email, "enum_code": e.kind})).collect::<Vec<_>>(),
        }));
    }
    out
}

fn all_values(reach: Vec<Value>, custom: Value) -> Value {
    let mut all = reach;
    if let Value::Array(a) = custom {
        all.extend(a);
    }
    if all.is_empty() {
        Value::Null
    } else {
        Value::Array(all)
    }
}

pub fn contact_json(req: &HttpRequest, c: &Contact, defs: &[contacts_api::CustomField]) -> Value {
    json!({
        "id": c.id.0,
        "name": c.name,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "responsible_user_id": c.responsible_user_id.0,
        "group_id": 0,
        "created_by": 0,
        "updated_by": 0,
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
        "closest_task_at": Value::Null,
        "is_deleted": false,
        "is_unsorted": false,
        "custom_fields_values": all_values(reach_json(&c.phones, &c.emails), values_out(&c.custom_fields, defs)),
        "account_id": c.account_id.0,
        "_links": links(req, &format!("contacts/{}", c.id.0)),
        "_embedded": {
            "tags": c.tags.iter().map(|t| json!({"id": t.id.0, "name": t.name, "color": Value::Null})).collect::<Vec<_>>(),
            "companies": c.company_ids.iter().map(|x| json!({"id": x.0, "_links": links(req, &format!("companies/{}", x.0))})).collect::<Vec<_>>(),
        },
    })
}

pub fn company_json(req: &HttpRequest, c: &Company, defs: &[contacts_api::CustomField]) -> Value {
    json!({
        "id": c.id.0,
        "name": c.name,
        "responsible_user_id": c.responsible_user_id.0,
        "group_id": 0,
        "created_by": 0,
        "updated_by": 0,
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
        "closest_task_at": Value::Null,
        "is_deleted": false,
        "custom_fields_values": all_values(reach_json(&c.phones, &c.emails), values_out(&c.custom_fields, defs)),
        "account_id": c.account_id.0,
        "_links": links(req, &format!("companies/{}", c.id.0)),
        "_embedded": {
            "tags": c.tags.iter().map(|t| json!({"id": t.id.0, "name": t.name, "color": Value::Null})).collect::<Vec<_>>(),
            "contacts": c.contact_ids.iter().map(|x| json!({"id": x.0, "_links": links(req, &format!("contacts/{}", x.0))})).collect::<Vec<_>>(),
        },
    })
}

/// The filter of a contacts or companies list; `ids` when `filter[id]` was given.
struct ListQuery {
    filter: ContactFilter,
    ids: Vec<i64>,
    query: Option<String>,
    paging: Paging,
}

fn read_query(req: &HttpRequest) -> Result<ListQuery, ApiError> {
    let mut p = params(req);
    let paging = Paging::read(&mut p, 50);
    let ids = p.ints(&["filter", "id"], false);
    let responsible = p
        .ints(&["filter", "responsible_user_id"], false)
        .into_iter()
        .map(UserId)
        .collect();
    let (created_from, created_to) = p.time_range(&["filter", "created_at"]);
    let query = p.str(&["query"]).or(p.str(&["filter", "name"]));
    p.finish()?;
    Ok(ListQuery {
        filter: ContactFilter {
            responsible,
            created_from,
            created_to,
            ..ContactFilter::default()
        },
        ids,
        query,
        paging,
    })
}

/// Ids matching a search (names, phones, e-mails), best first.
async fn search_ids(
    state: &AppState,
    caller: Caller,
    q: &str,
    entity: Entity,
) -> Result<Vec<i64>, ApiError> {
    Ok(state
        .modules
        .contacts
        .search(caller, q, 250)
        .await?
        .into_iter()
        .filter(|h| h.entity == entity)
        .map(|h| h.id)
        .collect())
}

/// Walks keyset pages to the asked page number (amoCRM clients page by number).
async fn nth_page<T, F, Fut>(paging: Paging, mut fetch: F) -> Result<(Vec<T>, bool), ApiError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = kernel::AppResult<kernel::paging::Page<T>>>,
{
    let mut req = PageRequest::new(None, Some(paging.limit));
    for _ in 1..paging.page {
        let page = fetch(req).await?;
        match page.next {
            Some(next) => req = PageRequest::new(Some(next), Some(paging.limit)),
            None => return Ok((Vec::new(), false)),
        }
    }
    let page = fetch(req).await?;
    Ok((page.items, page.next.is_some()))
}

pub async fn list_contacts(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let q = read_query(&req)?;
    let m = &state.modules;
    let by_ids = if let Some(text) = &q.query {
        Some(search_ids(&state, caller, text, Entity::Contact).await?)
    } else if !q.ids.is_empty() {
        Some(q.ids.clone())
    } else {
        None
    };
    let (items, more) = match by_ids {
        Some(ids) => {
            let (ids, more) = q.paging.slice(ids);
            let found = m
                .contacts
                .contacts_by_id(caller, ids.into_iter().map(ContactId).collect())
                .await?;
            (found, more)
        }
        None => {
            nth_page(q.paging, |page| {
                m.contacts.list_contacts(caller, &q.filter, page)
            })
            .await?
        }
    };
    let defs = m.contacts.custom_fields(caller, Entity::Contact).await?;
    let out = items.iter().map(|c| contact_json(&req, c, &defs)).collect();
    Ok(list_page(&req, "contacts", out, q.paging, more))
}

pub async fn list_companies(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let q = read_query(&req)?;
    let m = &state.modules;
    let by_ids = if let Some(text) = &q.query {
        Some(search_ids(&state, caller, text, Entity::Company).await?)
    } else if !q.ids.is_empty() {
        Some(q.ids.clone())
    } else {
        None
    };
    let (items, more) = match by_ids {
        Some(ids) => {
            let (ids, more) = q.paging.slice(ids);
            let mut found = Vec::new();
            for id in ids {
                match m.contacts.company(caller, CompanyId(id)).await {
                    Ok(c) => found.push(c),
                    Err(e)
                        if e.code == kernel::ErrorCode::NotFound
                            || e.code == kernel::ErrorCode::Forbidden => {}
                    Err(e) => return Err(e.into()),
                }
            }
            (found, more)
        }
        None => {
            nth_page(q.paging, |page| {
                m.contacts.list_companies(caller, &q.filter, page)
            })
            .await?
        }
    };
    let defs = m.contacts.custom_fields(caller, Entity::Company).await?;
    let out = items.iter().map(|c| company_json(&req, c, &defs)).collect();
    Ok(list_page(&req, "companies", out, q.paging, more))
}

pub async fn get_contact(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let caller = auth.caller();
            let c = state
                .modules
                .contacts
                .contact(caller, ContactId(*path))
                .await?;
            let defs = state
                .modules
                .contacts
                .custom_fields(caller, Entity::Contact)
                .await?;
            Ok(hal(&contact_json(&req, &c, &defs)))
        }
        .await,
    )
}

pub async fn get_company(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let caller = auth.caller();
            let c = state
                .modules
                .contacts
                .company(caller, CompanyId(*path))
                .await?;
            let defs = state
                .modules
                .contacts
                .custom_fields(caller, Entity::Company)
                .await?;
            Ok(hal(&company_json(&req, &c, &defs)))
        }
        .await,
    )
}

pub async fn create_contacts(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let defs = state
        .modules
        .contacts
        .custom_fields(caller, Entity::Contact)
        .await?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let new = read_contact(&mut item, &defs);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: item.errors,
            });
        }
        plans.push((request_id, new));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, new) in plans {
        let c = state.modules.contacts.create_contact(caller, new).await?;
        out.push(json!({"id": c.id.0, "request_id": request_id, "_links": links(&req, &format!("contacts/{}", c.id.0))}));
    }
    Ok(hal(
        &json!({"_links": links(&req, "contacts"), "_embedded": {"contacts": out}}),
    ))
}

pub async fn create_companies(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let defs = state
        .modules
        .contacts
        .custom_fields(caller, Entity::Company)
        .await?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let new = read_company(&mut item, &defs);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: item.errors,
            });
        }
        plans.push((request_id, new));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, new) in plans {
        let c = state.modules.contacts.create_company(caller, new).await?;
        out.push(json!({"id": c.id.0, "request_id": request_id, "_links": links(&req, &format!("companies/{}", c.id.0))}));
    }
    Ok(hal(
        &json!({"_links": links(&req, "companies"), "_embedded": {"companies": out}}),
    ))
}
