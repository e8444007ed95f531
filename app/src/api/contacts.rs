//! Contacts and companies: list (page/limit, `filter[id]`, `filter[responsible_user_id]`,
//! `filter[created_at]`, `query`), get by id, create in batches. Phones and e-mails are the
//! `PHONE` and `EMAIL` multitext fields of amoCRM, named by `field_code`.

use actix_web::{HttpRequest, HttpResponse, web};
use contacts_api::{
    Company, CompanyId, Contact, ContactFilter, ContactId, Email, Entity, Phone, Reach,
};
use kernel::paging::PageRequest;
use kernel::{Caller, UserId};
use serde_json::{Map, Value, json};

use super::body::{self, Item, MAX_BATCH};
use super::fields::{values_in, values_out};
use super::leads::{reach_by_code, read_company, read_contact, split_name};
use super::problem::ItemErrors;
use super::{
    ApiAuth, ApiError, LinkOut, Paging, SelfLink, TagOut, hal, hal_of, links, links_out, list_page,
    or_no_content, params, ts,
};
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

/// A contact or a company as amoCRM shows it, written straight to the response.
#[derive(serde::Serialize)]
pub struct PartyOut<'a> {
    id: i64,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    responsible_user_id: i64,
    group_id: i64,
    created_by: i64,
    updated_by: i64,
    created_at: i64,
    updated_at: i64,
    closest_task_at: Option<i64>,
    is_deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_unsorted: Option<bool>,
    custom_fields_values: Value,
    account_id: i64,
    #[serde(rename = "_links")]
    links: SelfLink,
    #[serde(rename = "_embedded")]
    embedded: PartyEmbedded<'a>,
}

#[derive(serde::Serialize)]
struct PartyEmbedded<'a> {
    tags: Vec<TagOut<'a>>,
    /// A contact's companies.
    #[serde(skip_serializing_if = "Option::is_none")]
    companies: Option<Vec<LinkOut>>,
    /// A company's contacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    contacts: Option<Vec<LinkOut>>,
}

impl<'a> PartyOut<'a> {
    /// What contacts and companies share; the caller adds its own parts.
    #[allow(clippy::too_many_arguments)]
    fn common(
        base: &str,
        entity: &str,
        id: i64,
        name: &'a str,
        responsible: kernel::UserId,
        (created, updated): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
        account: kernel::AccountId,
        (phones, emails): (&[Phone], &[Email]),
        (custom, defs): (&contacts_api::FieldValues, &[contacts_api::CustomField]),
        tags: &'a [contacts_api::Tag],
    ) -> PartyOut<'a> {
        PartyOut {
            id,
            name,
            first_name: None,
            last_name: None,
            responsible_user_id: responsible.0,
            group_id: 0,
            created_by: 0,
            updated_by: 0,
            created_at: ts(created),
            updated_at: ts(updated),
            closest_task_at: None,
            is_deleted: false,
            is_unsorted: None,
            custom_fields_values: all_values(reach_json(phones, emails), values_out(custom, defs)),
            account_id: account.0,
            links: SelfLink::new(base, format_args!("{entity}/{id}")),
            embedded: PartyEmbedded {
                tags: tags.iter().map(|t| TagOut::new(t.id.0, &t.name)).collect(),
                companies: None,
                contacts: None,
            },
        }
    }
}

/// `base` is the request's [`super::base_url`].
pub fn contact_out<'a>(
    base: &str,
    c: &'a Contact,
    defs: &[contacts_api::CustomField],
) -> PartyOut<'a> {
    let mut out = PartyOut::common(
        base,
        "contacts",
        c.id.0,
        &c.name,
        c.responsible_user_id,
        (c.created_at, c.updated_at),
        c.account_id,
        (&c.phones, &c.emails),
        (&c.custom_fields, defs),
        &c.tags,
    );
    out.first_name = Some(&c.first_name);
    out.last_name = Some(&c.last_name);
    out.is_unsorted = Some(false);
    out.embedded.companies = Some(links_out(
        base,
        "companies",
        c.company_ids.iter().map(|x| x.0),
    ));
    out
}

/// `base` is the request's [`super::base_url`].
pub fn company_out<'a>(
    base: &str,
    c: &'a Company,
    defs: &[contacts_api::CustomField],
) -> PartyOut<'a> {
    let mut out = PartyOut::common(
        base,
        "companies",
        c.id.0,
        &c.name,
        c.responsible_user_id,
        (c.created_at, c.updated_at),
        c.account_id,
        (&c.phones, &c.emails),
        (&c.custom_fields, defs),
        &c.tags,
    );
    out.embedded.contacts = Some(links_out(
        base,
        "contacts",
        c.contact_ids.iter().map(|x| x.0),
    ));
    out
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
pub(super) async fn nth_page<T, F, Fut>(
    paging: Paging,
    mut fetch: F,
) -> Result<(Vec<T>, bool), ApiError>
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
    let base = super::base_url(&req);
    let out: Vec<PartyOut> = items.iter().map(|c| contact_out(&base, c, &defs)).collect();
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
    let base = super::base_url(&req);
    let out: Vec<PartyOut> = items.iter().map(|c| company_out(&base, c, &defs)).collect();
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
            Ok(hal_of(&contact_out(&super::base_url(&req), &c, &defs)))
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
            Ok(hal_of(&company_out(&super::base_url(&req), &c, &defs)))
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

// --- updates -------------------------------------------------------------------------------

/// A contact's or company's changes as amoCRM sends them: names, responsible, custom fields
/// (PHONE and EMAIL by code replace the phones and e-mails), tags (`_embedded.tags` replaces,
/// `tags_to_add` / `tags_to_delete`).
struct RecordPatch {
    id: i64,
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    responsible: Option<UserId>,
    phones: Option<Vec<Reach>>,
    emails: Option<Vec<Reach>>,
    fields: Option<Map<String, Value>>,
    tags_set: Option<Vec<String>>,
    tags_add: Vec<String>,
    tags_delete: Vec<String>,
}

fn read_patch(
    item: &mut Item<'_>,
    id: Option<i64>,
    defs: &[contacts_api::CustomField],
) -> Option<RecordPatch> {
    let id = id.or_else(|| item.int("id"));
    if id.is_none() && !item.errors.iter().any(|e| e.field == "id") {
        item.fail("id", "Required", "updates need the record's id");
    }
    let name = item.str("name");
    let first_name = item.str("first_name");
    let last_name = item.str("last_name");
    let responsible = item.int("responsible_user_id").map(UserId);
    let (mut phones, mut emails) = (None::<Vec<Reach>>, None::<Vec<Reach>>);
    let fields = values_in(item, "custom_fields_values", defs, |code, values| {
        let (mut p, mut e) = (Vec::new(), Vec::new());
        let known = reach_by_code(code, values, &mut p, &mut e);
        if code == "PHONE" {
            phones = Some(p);
        } else if code == "EMAIL" {
            emails = Some(e);
        }
        known
    });
    let tags_add = body::tag_names(item, "tags_to_add", &[]).unwrap_or_default();
    let tags_delete = body::tag_names(item, "tags_to_delete", &[]).unwrap_or_default();
    let mut tags_set = None;
    if let Some(emb) = item.object("_embedded") {
        item.nested(emb, "_embedded", |e| {
            tags_set = body::tag_names(e, "tags", &[])
        });
    }
    Some(RecordPatch {
        id: id?,
        name,
        first_name,
        last_name,
        responsible,
        phones,
        emails,
        fields: fields.filter(|f| !f.is_empty()),
        tags_set,
        tags_add,
        tags_delete,
    })
}

fn new_tags(current: &[contacts_api::Tag], p: &RecordPatch) -> Option<Vec<String>> {
    if p.tags_set.is_none() && p.tags_add.is_empty() && p.tags_delete.is_empty() {
        return None;
    }
    let mut t = p
        .tags_set
        .clone()
        .unwrap_or_else(|| current.iter().map(|t| t.name.clone()).collect());
    for a in &p.tags_add {
        if !t.contains(a) {
            t.push(a.clone());
        }
    }
    t.retain(|x| !p.tags_delete.contains(x));
    Some(t)
}

fn read_patches(
    items: &[Map<String, Value>],
    id: Option<i64>,
    defs: &[contacts_api::CustomField],
) -> Result<Vec<(String, RecordPatch)>, ApiError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let p = read_patch(&mut item, id, defs);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        if let Some(p) = p {
            out.push((request_id, p));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::batch(errors))
    }
}

/// Every record of the batch must be there for this caller before any is changed.
async fn check_exist(
    state: &AppState,
    caller: Caller,
    entity: Entity,
    patches: &[(String, RecordPatch)],
) -> Result<(), ApiError> {
    let ids: Vec<i64> = patches.iter().map(|(_, p)| p.id).collect();
    let (mc, mco) = match entity {
        Entity::Contact => super::leads::missing_links(state, caller, &ids, &[]).await?,
        Entity::Company => super::leads::missing_links(state, caller, &[], &ids).await?,
    };
    let missing = if entity == Entity::Contact { mc } else { mco };
    let errors: Vec<ItemErrors> = patches
        .iter()
        .filter(|(_, p)| missing.contains(&p.id))
        .map(|(r, _)| ItemErrors {
            request_id: r.clone(),
            errors: vec![kernel::FieldError {
                field: "id".into(),
                code: "NotFound".into(),
                message: "No such record".into(),
            }],
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::batch(errors))
    }
}

async fn apply_patch(
    state: &AppState,
    caller: Caller,
    entity: Entity,
    p: RecordPatch,
) -> Result<(i64, chrono::DateTime<chrono::Utc>), ApiError> {
    let m = &state.modules.contacts;
    match entity {
        Entity::Contact => {
            let current = m.contact(caller, ContactId(p.id)).await?;
            let (mut first, mut last) = (p.first_name.clone(), p.last_name.clone());
            if first.is_none()
                && last.is_none()
                && let Some(n) = &p.name
            {
                let (f, l) = split_name(n);
                first = Some(f);
                last = Some(l);
            }
            let patch = contacts_api::ContactPatch {
                first_name: first,
                last_name: last,
                position: None,
                responsible_user_id: p.responsible,
                phones: p.phones.clone(),
                emails: p.emails.clone(),
                tags: new_tags(&current.tags, &p),
                custom_fields: p.fields.clone(),
            };
            let c = m.update_contact(caller, current.id, patch).await?;
            Ok((c.id.0, c.updated_at))
        }
        Entity::Company => {
            let current = m.company(caller, CompanyId(p.id)).await?;
            let patch = contacts_api::CompanyPatch {
                name: p.name.clone(),
                web: None,
                address: None,
                responsible_user_id: p.responsible,
                phones: p.phones.clone(),
                emails: p.emails.clone(),
                tags: new_tags(&current.tags, &p),
                custom_fields: p.fields.clone(),
            };
            let c = m.update_company(caller, current.id, patch).await?;
            Ok((c.id.0, c.updated_at))
        }
    }
}

async fn update(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    entity: Entity,
    one: Option<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = match one {
        Some(_) => vec![body::object(&raw)?],
        None => body::batch(&raw, MAX_BATCH)?,
    };
    let defs = state.modules.contacts.custom_fields(caller, entity).await?;
    let patches = read_patches(&items, one, &defs)?;
    if let Err(e) = check_exist(&state, caller, entity, &patches).await {
        return Err(if one.is_some() {
            ApiError(kernel::AppError::not_found("record"))
        } else {
            e
        });
    }
    let key = if entity == Entity::Contact {
        "contacts"
    } else {
        "companies"
    };
    let mut out = Vec::new();
    for (request_id, p) in patches {
        let (id, updated) = apply_patch(&state, caller, entity, p).await?;
        out.push(json!({"id": id, "updated_at": ts(updated), "request_id": request_id, "_links": links(&req, &format!("{key}/{id}"))}));
    }
    if one.is_some() {
        let mut v = out.pop().unwrap_or(Value::Null);
        if let Value::Object(o) = &mut v {
            o.remove("request_id");
        }
        return Ok(hal(&v));
    }
    Ok(hal(
        &json!({"_links": links(&req, key), "_embedded": {key: out}}),
    ))
}

pub async fn update_contacts(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    update(req, auth, state, Entity::Contact, None, raw).await
}

pub async fn update_contact(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    update(req, auth, state, Entity::Contact, Some(*path), raw).await
}

pub async fn update_companies(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    update(req, auth, state, Entity::Company, None, raw).await
}

pub async fn update_company(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    update(req, auth, state, Entity::Company, Some(*path), raw).await
}
