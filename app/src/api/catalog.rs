//! The account's vocabularies: loss reasons, tags and custom-field definitions per entity.

use actix_web::{HttpRequest, HttpResponse, web};
use kernel::fields::{FieldDef, FieldEnum, FieldType};
use serde_json::{Value, json};

use super::body::{self, Item};
use super::problem::ItemErrors;
use super::{ApiAuth, ApiError, EntityPath, Paging, hal, links, list_page, params};
use crate::state::AppState;

fn loss_reason_json(req: &HttpRequest, r: &deals_api::LossReason, sort: usize) -> Value {
    json!({
        "id": r.id.0,
        "name": r.name,
        "sort": sort * 10,
        "created_at": 0,
        "updated_at": 0,
        "_links": links(req, &format!("leads/loss_reasons/{}", r.id.0)),
    })
}

pub async fn loss_reasons(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    p.finish()?;
    let all = state.modules.deals.loss_reasons(auth.caller()).await?;
    let (page, more) = paging.slice(all.into_iter().enumerate().collect());
    let items = page
        .iter()
        .map(|(i, r)| loss_reason_json(&req, r, *i + 1))
        .collect();
    Ok(list_page(&req, "loss_reasons", items, paging, more))
}

pub async fn add_loss_reasons(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let items = body::batch(&raw, body::MAX_BATCH)?;
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let name = item.str("name").unwrap_or_default();
        item.int("sort");
        if name.trim().is_empty() || name.chars().count() > 255 {
            item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: item.errors,
            });
        }
        names.push((request_id, name));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (i, (request_id, name)) in names.into_iter().enumerate() {
        let r = state
            .modules
            .deals
            .create_loss_reason(auth.caller(), name.trim())
            .await?;
        let mut v = loss_reason_json(&req, &r, i + 1);
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    Ok(hal(&json!({
        "_links": links(&req, "leads/loss_reasons"),
        "_embedded": { "loss_reasons": out },
    })))
}

/// `GET /api/v4/{entity}/tags` (`filter[name]`, `filter[id]`, `query`).
pub async fn tags(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    let ids = p.ints(&["filter", "id"], false);
    let name = p.str(&["filter", "name"]);
    let query = p.str(&["query"]).map(|q| q.to_lowercase());
    p.finish()?;
    let caller = auth.caller();
    let m = &state.modules;
    let mut all: Vec<(i64, String)> = match entity {
        EntityPath::Leads => m
            .deals
            .tags(caller)
            .await?
            .into_iter()
            .map(|t| (t.id.0, t.name))
            .collect(),
        EntityPath::Contacts => m
            .contacts
            .tags(caller, contacts_api::Entity::Contact)
            .await?
            .into_iter()
            .map(|t| (t.id.0, t.name))
            .collect(),
        EntityPath::Companies => m
            .contacts
            .tags(caller, contacts_api::Entity::Company)
            .await?
            .into_iter()
            .map(|t| (t.id.0, t.name))
            .collect(),
    };
    all.retain(|(id, n)| {
        (ids.is_empty() || ids.contains(id))
            && name.as_deref().is_none_or(|x| n == x)
            && query
                .as_deref()
                .is_none_or(|q| n.to_lowercase().contains(q))
    });
    let (page, more) = paging.slice(all);
    let items = page
        .into_iter()
        .map(|(id, name)| json!({"id": id, "name": name, "color": Value::Null}))
        .collect();
    Ok(list_page(&req, "tags", items, paging, more))
}

fn field_json<D: FieldDef>(
    req: &HttpRequest,
    entity: EntityPath,
    account: i64,
    d: &D,
    sort: i32,
) -> Value {
    let enums: Value = if d.field_type().has_enums() {
        d.field_enums()
            .iter()
            .map(|e: &FieldEnum| json!({"id": e.id, "value": e.value, "sort": e.sort}))
            .collect()
    } else {
        Value::Null
    };
    json!({
        "id": d.field_id(),
        "name": d.field_name(),
        "type": d.field_type().as_str(),
        "account_id": account,
        "code": Value::Null,
        "sort": sort,
        "is_api_only": false,
        "enums": enums,
        "group_id": d.field_group().map(|g| group_key(entity, g)),
        "required_statuses": [],
        "is_deletable": true,
        "is_predefined": false,
        "entity_type": entity.as_str(),
        "remind": Value::Null,
        "triggers": [],
        "currency": Value::Null,
        "hidden_statuses": [],
        "chained_lists": Value::Null,
        "_links": links(req, &format!("{}/custom_fields/{}", entity.as_str(), d.field_id())),
    })
}

/// `GET /api/v4/{entity}/custom_fields`.
pub async fn custom_fields(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    p.finish()?;
    let caller = auth.caller();
    let account = auth.0.account_id.0;
    let m = &state.modules;
    let all: Vec<Value> = match entity {
        EntityPath::Leads => {
            let defs = m.deals.custom_fields(caller).await?;
            defs.iter()
                .map(|d| {
                    let mut v = field_json(&req, entity, account, d, d.sort);
                    v["required_statuses"] = d
                        .required_statuses
                        .iter()
                        .map(
                            |r| json!({"pipeline_id": r.pipeline_id.0, "status_id": r.status_id.0}),
                        )
                        .collect();
                    v
                })
                .collect()
        }
        EntityPath::Contacts | EntityPath::Companies => {
            let kind = if entity == EntityPath::Contacts {
                contacts_api::Entity::Contact
            } else {
                contacts_api::Entity::Company
            };
            let defs = m.contacts.custom_fields(caller, kind).await?;
            defs.iter()
                .map(|d| field_json(&req, entity, account, d, d.sort))
                .collect()
        }
    };
    let (page, more) = paging.slice(all);
    Ok(list_page(&req, "custom_fields", page, paging, more))
}

/// A field definition as amoCRM sends it: `name`, `type`, `enums[{value, sort}]`,
/// `required_statuses[{pipeline_id, status_id}]` (leads). Types Voronka has no counterpart for
/// (multitext, radiobutton, smart_address, …) are refused with the list of those it has.
fn read_field(
    item: &mut Item<'_>,
    entity: EntityPath,
) -> (
    String,
    Option<FieldType>,
    Vec<String>,
    Vec<deals_api::RequiredAt>,
    Option<i64>,
) {
    let leads = entity == EntityPath::Leads;
    let name = item.str("name").unwrap_or_default();
    if name.trim().is_empty() || name.chars().count() > 255 {
        item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
    }
    item.int("sort");
    let ty = match item.str("type") {
        Some(t) => match FieldType::parse(&t) {
            Some(t) => Some(t),
            None => {
                let all: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
                item.fail(
                    "type",
                    "NotSupportedChoice",
                    format!("one of: {}", all.join(", ")),
                );
                None
            }
        },
        None => {
            item.fail("type", "Required", "a field needs a type");
            None
        }
    };
    let enums = read_enums(item).unwrap_or_default();
    if ty.is_some_and(|t| t.has_enums()) && enums.is_empty() {
        item.fail("enums", "Required", "a select needs its choices");
    }
    let required = read_required(item, leads).unwrap_or_default();
    let group = read_group(item, entity).flatten();
    (name.trim().to_string(), ty, enums, required, group)
}

/// A field group's id as the API shows it: `leads_12`, `contacts_3`, `companies_4`.
fn group_key(entity: EntityPath, id: i64) -> String {
    format!("{}_{id}", entity.as_str())
}

/// A group id as given: `leads_12` (this entity's prefix) or a bare number.
fn parse_group_key(entity: EntityPath, key: &str) -> Option<i64> {
    let key = key.trim();
    key.strip_prefix(&format!("{}_", entity.as_str()))
        .unwrap_or(key)
        .parse()
        .ok()
        .filter(|id| *id > 0)
}

/// `group_id`, when given: `Some(None)` for the main list (null or ""), `Some(Some(id))` for a
/// group; the group's existence is checked when the field is saved.
fn read_group(item: &mut Item<'_>, entity: EntityPath) -> Option<Option<i64>> {
    match item.obj.get("group_id")? {
        Value::Null => Some(None),
        Value::String(s) if s.trim().is_empty() => Some(None),
        Value::String(s) => match parse_group_key(entity, s) {
            Some(id) => Some(Some(id)),
            None => {
                item.fail("group_id", "NotFound", "No such field group");
                None
            }
        },
        Value::Number(n) => match n.as_i64().filter(|id| *id > 0) {
            Some(id) => Some(Some(id)),
            None => {
                item.fail("group_id", "NotFound", "No such field group");
                None
            }
        },
        _ => {
            item.fail(
                "group_id",
                "InvalidType",
                "This value should be of type string.",
            );
            None
        }
    }
}

fn contacts_kind(entity: EntityPath) -> contacts_api::Entity {
    if entity == EntityPath::Companies {
        contacts_api::Entity::Company
    } else {
        contacts_api::Entity::Contact
    }
}

/// A field definition of any entity, as the API reads and changes it.
struct Def {
    id: i64,
    name: String,
    ty: FieldType,
    enums: Vec<String>,
    required: Vec<deals_api::RequiredAt>,
    group: Option<i64>,
}

async fn defs(
    state: &AppState,
    caller: kernel::Caller,
    entity: EntityPath,
) -> Result<Vec<Def>, ApiError> {
    let m = &state.modules;
    Ok(match entity {
        EntityPath::Leads => m
            .deals
            .custom_fields(caller)
            .await?
            .into_iter()
            .map(|d| Def {
                id: d.id.0,
                name: d.name,
                ty: d.field_type,
                enums: d.enums.into_iter().map(|e| e.value).collect(),
                required: d.required_statuses,
                group: d.group_id,
            })
            .collect(),
        _ => m
            .contacts
            .custom_fields(caller, contacts_kind(entity))
            .await?
            .into_iter()
            .map(|d| Def {
                id: d.id.0,
                name: d.name,
                ty: d.field_type,
                enums: d.enums.into_iter().map(|e| e.value).collect(),
                required: Vec::new(),
                group: d.group_id,
            })
            .collect(),
    })
}

/// Creates a field (`id` None) or replaces one's definition; returns it as the API shows it.
async fn save_def(
    req: &HttpRequest,
    state: &AppState,
    caller: kernel::Caller,
    entity: EntityPath,
    id: Option<i64>,
    def: Def,
) -> Result<Value, ApiError> {
    let m = &state.modules;
    let account = caller.account_id.0;
    Ok(match entity {
        EntityPath::Leads => {
            let new = deals_api::NewCustomField {
                name: def.name,
                field_type: def.ty,
                enums: def.enums,
                required_statuses: def.required,
                group_id: def.group,
            };
            let d = match id {
                None => m.deals.create_custom_field(caller, new).await?,
                Some(id) => {
                    m.deals
                        .update_custom_field(caller, deals_api::FieldId(id), new)
                        .await?
                }
            };
            lead_field_json(req, account, &d)
        }
        _ => {
            let new = contacts_api::NewCustomField {
                name: def.name,
                field_type: def.ty,
                enums: def.enums,
                group_id: def.group,
            };
            let d = match id {
                None => {
                    m.contacts
                        .create_custom_field(caller, contacts_kind(entity), new)
                        .await?
                }
                Some(id) => {
                    m.contacts
                        .update_custom_field(caller, contacts_api::FieldId(id), new)
                        .await?
                }
            };
            field_json(req, entity, account, &d, d.sort)
        }
    })
}

/// `enums[{value, sort}]`, when given: the choices' texts in `sort` order.
fn read_enums(item: &mut Item<'_>) -> Option<Vec<String>> {
    let list = item.array("enums")?;
    let mut sorted: Vec<(i64, String)> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        match e.get("value").and_then(Value::as_str) {
            Some(v) if !v.trim().is_empty() => sorted.push((
                e.get("sort").and_then(Value::as_i64).unwrap_or(i as i64),
                v.trim().to_string(),
            )),
            _ => item.fail(
                &format!("enums.{i}.value"),
                "Required",
                "each choice needs a value",
            ),
        }
    }
    sorted.sort_by_key(|(s, _)| *s);
    Some(sorted.into_iter().map(|(_, v)| v).collect())
}

/// `required_statuses[{pipeline_id, status_id}]`, when given (lead fields only).
fn read_required(item: &mut Item<'_>, leads: bool) -> Option<Vec<deals_api::RequiredAt>> {
    let list = item.array("required_statuses")?;
    if !leads {
        item.fail(
            "required_statuses",
            "NotSupported",
            "only lead fields can be required by status",
        );
    }
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match (
            r.get("pipeline_id").and_then(Value::as_i64),
            r.get("status_id").and_then(Value::as_i64),
        ) {
            (Some(p), Some(s)) => out.push(deals_api::RequiredAt {
                pipeline_id: deals_api::PipelineId(p),
                status_id: deals_api::StageId(s),
            }),
            _ => item.fail(
                &format!("required_statuses.{i}"),
                "InvalidValue",
                "pipeline_id and status_id",
            ),
        }
    }
    Some(out)
}

/// `POST /api/v4/{entity}/custom_fields`.
pub async fn add_custom_fields(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    let caller = auth.caller();
    let items = body::batch(&raw, body::MAX_BATCH)?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let (name, ty, enums, required, group) = read_field(&mut item, entity);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        if let Some(ty) = ty {
            plans.push((
                request_id,
                Def {
                    id: 0,
                    name,
                    ty,
                    enums,
                    required,
                    group,
                },
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, def) in plans {
        let mut v = save_def(&req, &state, caller, entity, None, def).await?;
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    Ok(hal(&json!({
        "_total_items": out.len(),
        "_links": links(&req, &format!("{}/custom_fields", entity.as_str())),
        "_embedded": { "custom_fields": out },
    })))
}

/// `DELETE /api/v4/{entity}/custom_fields/{id}`: the field and its values on every record;
/// 204.
pub async fn delete_field(
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    let caller = auth.caller();
    // A field of another entity type is not this path's.
    if !defs(&state, caller, entity)
        .await?
        .iter()
        .any(|d| d.id == id)
    {
        return Err(ApiError(kernel::AppError::not_found("field")));
    }
    match entity {
        EntityPath::Leads => {
            state
                .modules
                .deals
                .delete_custom_field(caller, deals_api::FieldId(id))
                .await?
        }
        _ => {
            state
                .modules
                .contacts
                .delete_custom_field(caller, contacts_api::FieldId(id))
                .await?
        }
    }
    Ok(super::no_content())
}

/// `GET /api/v4/leads/loss_reasons/{id}`.
pub async fn loss_reason(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let all = state.modules.deals.loss_reasons(auth.caller()).await?;
    match all.iter().position(|r| r.id.0 == *path) {
        Some(i) => Ok(hal(&loss_reason_json(&req, &all[i], i + 1))),
        None => Ok(super::no_content()),
    }
}

/// `PATCH /api/v4/leads/loss_reasons`: `[{"id", "name"}]`, checked whole before any is renamed.
pub async fn update_loss_reasons(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, body::MAX_BATCH)?;
    let known: Vec<i64> = state
        .modules
        .deals
        .loss_reasons(caller)
        .await?
        .iter()
        .map(|r| r.id.0)
        .collect();
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let id = item.int("id");
        match id {
            Some(id) if !known.contains(&id) => item.fail("id", "NotFound", "No such loss reason"),
            None if !item.errors.iter().any(|e| e.field == "id") => {
                item.fail("id", "Required", "updates need the reason's id")
            }
            _ => {}
        }
        let name = item.str("name").unwrap_or_default();
        item.int("sort");
        if name.trim().is_empty() || name.chars().count() > 255 {
            item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        if let Some(id) = id {
            plans.push((request_id, id, name));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, id, name) in plans {
        let r = state
            .modules
            .deals
            .update_loss_reason(caller, deals_api::LossReasonId(id), name.trim())
            .await?;
        let sort = known.iter().position(|k| *k == id).unwrap_or(0) + 1;
        let mut v = loss_reason_json(&req, &r, sort);
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    Ok(hal(&json!({
        "_links": links(&req, "leads/loss_reasons"),
        "_embedded": { "loss_reasons": out },
    })))
}

/// `DELETE /api/v4/leads/loss_reasons/{id}`: 204; refused while leads give the reason.
pub async fn delete_loss_reason(
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    state
        .modules
        .deals
        .delete_loss_reason(auth.caller(), deals_api::LossReasonId(*path))
        .await?;
    Ok(super::no_content())
}

/// `POST /api/v4/{entity}/tags`: `[{"name", "color"}]`; a name already used gives that tag.
pub async fn add_tags(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    let caller = auth.caller();
    let items = body::batch(&raw, body::MAX_BATCH)?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let name = item.str("name").unwrap_or_default();
        item.str("color");
        if name.trim().is_empty() || name.chars().count() > kernel::fields::MAX_TAG {
            item.fail(
                "name",
                "InvalidValue",
                format!("a name of 1 to {} characters", kernel::fields::MAX_TAG),
            );
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        plans.push((request_id, name.trim().to_string()));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let names: Vec<String> = plans.iter().map(|(_, n)| n.clone()).collect();
    let m = &state.modules;
    let made: Vec<(i64, String)> = match entity {
        EntityPath::Leads => m
            .deals
            .create_tags(caller, names)
            .await?
            .into_iter()
            .map(|t| (t.id.0, t.name))
            .collect(),
        EntityPath::Contacts | EntityPath::Companies => {
            let kind = if entity == EntityPath::Contacts {
                contacts_api::Entity::Contact
            } else {
                contacts_api::Entity::Company
            };
            m.contacts
                .create_tags(caller, kind, names)
                .await?
                .into_iter()
                .map(|t| (t.id.0, t.name))
                .collect()
        }
    };
    let out: Vec<Value> = plans
        .iter()
        .filter_map(|(request_id, name)| {
            made.iter()
                .find(|(_, n)| n.to_lowercase() == name.to_lowercase())
                .map(|(id, n)| json!({"id": id, "name": n, "color": Value::Null, "request_id": request_id}))
        })
        .collect();
    Ok(hal(&json!({
        "_links": links(&req, &format!("{}/tags", entity.as_str())),
        "_embedded": { "tags": out },
    })))
}

/// `GET /api/v4/{entity}/custom_fields/{id}`.
pub async fn custom_field(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    let caller = auth.caller();
    let account = auth.0.account_id.0;
    let m = &state.modules;
    let found = match entity {
        EntityPath::Leads => m
            .deals
            .custom_fields(caller)
            .await?
            .iter()
            .find(|d| d.id.0 == id)
            .map(|d| lead_field_json(&req, account, d)),
        EntityPath::Contacts | EntityPath::Companies => {
            let kind = if entity == EntityPath::Contacts {
                contacts_api::Entity::Contact
            } else {
                contacts_api::Entity::Company
            };
            m.contacts
                .custom_fields(caller, kind)
                .await?
                .iter()
                .find(|d| d.id.0 == id)
                .map(|d| field_json(&req, entity, account, d, d.sort))
        }
    };
    Ok(match found {
        Some(v) => hal(&v),
        None => super::no_content(),
    })
}

fn lead_field_json(req: &HttpRequest, account: i64, d: &deals_api::CustomField) -> Value {
    let mut v = field_json(req, EntityPath::Leads, account, d, d.sort);
    v["required_statuses"] = d
        .required_statuses
        .iter()
        .map(|r| json!({"pipeline_id": r.pipeline_id.0, "status_id": r.status_id.0}))
        .collect();
    v
}

/// `PATCH /api/v4/{entity}/custom_fields[/{id}]`: a new name, choices (kept by text, missing
/// ones removed), group or (leads) statuses requiring the field; the type stays.
pub async fn update_custom_fields(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    patch_fields(req, auth, state, &path, None, raw).await
}

/// `PATCH /api/v4/{entity}/custom_fields/{id}`.
pub async fn update_custom_field(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    patch_fields(req, auth, state, &entity, Some(id), raw).await
}

async fn patch_fields(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    entity: &str,
    one: Option<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(entity)?;
    let caller = auth.caller();
    let items = match one {
        Some(_) => vec![body::object(&raw)?],
        None => body::batch(&raw, body::MAX_BATCH)?,
    };
    let current = defs(&state, caller, entity).await?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let id = one.or_else(|| item.int("id"));
        let def = id.and_then(|id| current.iter().find(|d| d.id == id));
        if def.is_none() && !item.errors.iter().any(|e| e.field == "id") {
            item.fail("id", "NotFound", "No such field");
        }
        if let Some(t) = item.str("type")
            && def.is_some_and(|d| d.ty.as_str() != t)
        {
            item.fail("type", "NotSupported", "a field's type cannot be changed");
        }
        let mut name = None;
        if let Some(n) = item.str("name") {
            if n.trim().is_empty() || n.chars().count() > 255 {
                item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
            }
            name = Some(n.trim().to_string());
        }
        item.int("sort");
        let enums = read_enums(&mut item);
        let required = read_required(&mut item, entity == EntityPath::Leads);
        let group = read_group(&mut item, entity);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        if let Some(d) = def {
            plans.push((
                request_id,
                d.id,
                Def {
                    id: d.id,
                    name: name.unwrap_or_else(|| d.name.clone()),
                    ty: d.ty,
                    enums: enums.unwrap_or_else(|| d.enums.clone()),
                    required: required.unwrap_or_else(|| d.required.clone()),
                    group: group.unwrap_or(d.group),
                },
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, id, def) in plans {
        let mut v = save_def(&req, &state, caller, entity, Some(id), def).await?;
        v["request_id"] = json!(request_id);
        out.push(v);
    }
    if one.is_some() {
        return Ok(hal(&out.pop().unwrap_or(Value::Null)));
    }
    Ok(hal(&json!({
        "_total_items": out.len(),
        "_links": links(&req, &format!("{}/custom_fields", entity.as_str())),
        "_embedded": { "custom_fields": out },
    })))
}

// --- field groups ------------------------------------------------------------------------

fn group_json(
    req: &HttpRequest,
    entity: EntityPath,
    g: &kernel::fields::FieldGroup,
    fields: &[i64],
) -> Value {
    let key = group_key(entity, g.id);
    json!({
        "id": key,
        "name": g.name,
        "sort": g.sort,
        "is_predefined": false,
        "type": "custom_field_group",
        "entity_type": entity.as_str(),
        "fields": fields,
        "_links": links(req, &format!("{}/custom_fields/groups/{key}", entity.as_str())),
    })
}

async fn groups_of(
    state: &AppState,
    caller: kernel::Caller,
    entity: EntityPath,
) -> Result<Vec<kernel::fields::FieldGroup>, ApiError> {
    let m = &state.modules;
    Ok(match entity {
        EntityPath::Leads => m.deals.field_groups(caller).await?,
        _ => {
            m.contacts
                .field_groups(caller, contacts_kind(entity))
                .await?
        }
    })
}

/// Each group as the API shows it, with the ids of its fields.
async fn groups_json(
    req: &HttpRequest,
    state: &AppState,
    caller: kernel::Caller,
    entity: EntityPath,
) -> Result<Vec<(i64, Value)>, ApiError> {
    let groups = groups_of(state, caller, entity).await?;
    let defs = defs(state, caller, entity).await?;
    Ok(groups
        .iter()
        .map(|g| {
            let fields: Vec<i64> = defs
                .iter()
                .filter(|d| d.group == Some(g.id))
                .map(|d| d.id)
                .collect();
            (g.id, group_json(req, entity, g, &fields))
        })
        .collect())
}

/// `GET /api/v4/{entity}/custom_fields/groups`: the groups fields are shown under, in order,
/// each with its fields' ids; 204 when there are none.
pub async fn field_groups(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    p.finish()?;
    let all: Vec<Value> = groups_json(&req, &state, auth.caller(), entity)
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let (page, more) = paging.slice(all);
    Ok(list_page(&req, "custom_field_groups", page, paging, more))
}

/// `GET /api/v4/{entity}/custom_fields/groups/{id}`.
pub async fn field_groups_one(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, key) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    let Some(id) = parse_group_key(entity, &key) else {
        return Ok(super::no_content());
    };
    Ok(
        match groups_json(&req, &state, auth.caller(), entity)
            .await?
            .into_iter()
            .find(|(g, _)| *g == id)
        {
            Some((_, v)) => hal(&v),
            None => super::no_content(),
        },
    )
}

/// A group's `name`, `sort` and `fields` (the ids of the fields to show under it) as given.
struct GroupInput {
    name: Option<String>,
    sort: Option<i32>,
    fields: Option<Vec<i64>>,
}

fn read_group_input(item: &mut Item<'_>, defs: &[Def]) -> GroupInput {
    let name = item.str("name");
    if let Some(n) = &name
        && (n.trim().is_empty() || n.trim().chars().count() > kernel::fields::MAX_GROUP_NAME)
    {
        item.fail(
            "name",
            "InvalidValue",
            format!(
                "a name of 1 to {} characters",
                kernel::fields::MAX_GROUP_NAME
            ),
        );
    }
    let sort = item.int("sort").and_then(|s| match i32::try_from(s) {
        Ok(s) => Some(s),
        Err(_) => {
            item.fail("sort", "InvalidValue", "a sort order within ±2147483647");
            None
        }
    });
    let fields = item.id_list("fields");
    for (i, f) in fields.iter().flatten().enumerate() {
        if !defs.iter().any(|d| d.id == *f) {
            item.fail(&format!("fields.{i}"), "NotFound", "No such field");
        }
    }
    GroupInput { name, sort, fields }
}

/// Puts exactly `fields` under `group`: the listed ones move in, the group's others go to the
/// main list.
async fn set_members(
    req: &HttpRequest,
    state: &AppState,
    caller: kernel::Caller,
    entity: EntityPath,
    group: i64,
    fields: &[i64],
) -> Result<(), ApiError> {
    for d in defs(state, caller, entity).await? {
        let wanted = fields.contains(&d.id);
        let target = if wanted {
            Some(group)
        } else if d.group == Some(group) {
            None
        } else {
            continue;
        };
        if d.group == target {
            continue;
        }
        let id = d.id;
        save_def(
            req,
            state,
            caller,
            entity,
            Some(id),
            Def { group: target, ..d },
        )
        .await?;
    }
    Ok(())
}

/// `POST /api/v4/{entity}/custom_fields/groups`: `[{"name", "sort"?, "fields"?: [ids]}]`.
pub async fn add_field_groups(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    let caller = auth.caller();
    let items = body::batch(&raw, body::MAX_BATCH)?;
    let current = defs(&state, caller, entity).await?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let input = read_group_input(&mut item, &current);
        if input.name.is_none() && !item.errors.iter().any(|e| e.field == "name") {
            item.fail("name", "Required", "a group needs a name");
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        plans.push((request_id, input));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let m = &state.modules;
    let mut made = Vec::new();
    for (request_id, input) in plans {
        let new = kernel::fields::NewFieldGroup {
            name: input.name.unwrap_or_default(),
            sort: input.sort,
        };
        let g = match entity {
            EntityPath::Leads => m.deals.create_field_group(caller, new).await?,
            _ => {
                m.contacts
                    .create_field_group(caller, contacts_kind(entity), new)
                    .await?
            }
        };
        if let Some(fields) = &input.fields {
            set_members(&req, &state, caller, entity, g.id, fields).await?;
        }
        made.push((request_id, g.id));
    }
    let all = groups_json(&req, &state, caller, entity).await?;
    let out: Vec<Value> = made
        .into_iter()
        .filter_map(|(request_id, id)| {
            all.iter().find(|(g, _)| *g == id).map(|(_, v)| {
                let mut v = v.clone();
                v["request_id"] = json!(request_id);
                v
            })
        })
        .collect();
    Ok(hal(&json!({
        "_total_items": out.len(),
        "_links": links(&req, &format!("{}/custom_fields/groups", entity.as_str())),
        "_embedded": { "custom_field_groups": out },
    })))
}

/// `PATCH /api/v4/{entity}/custom_fields/groups/{id}`: a new name, place, or list of fields.
pub async fn update_field_group(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (entity, key) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    let caller = auth.caller();
    let obj = body::object(&raw)?;
    let groups = groups_of(&state, caller, entity).await?;
    let Some(group) =
        parse_group_key(entity, &key).and_then(|id| groups.into_iter().find(|g| g.id == id))
    else {
        return Err(ApiError(kernel::AppError::not_found("field group")));
    };
    let current = defs(&state, caller, entity).await?;
    let mut item = Item::new(&obj);
    let input = read_group_input(&mut item, &current);
    if !item.errors.is_empty() {
        return Err(ApiError::batch(vec![ItemErrors {
            request_id: item.request_id(0),
            errors: item.errors,
        }]));
    }
    if input.name.is_some() || input.sort.is_some() {
        let new = kernel::fields::NewFieldGroup {
            name: input.name.unwrap_or_else(|| group.name.clone()),
            sort: input.sort,
        };
        let m = &state.modules;
        match entity {
            EntityPath::Leads => m.deals.update_field_group(caller, group.id, new).await?,
            _ => m.contacts.update_field_group(caller, group.id, new).await?,
        };
    }
    if let Some(fields) = &input.fields {
        set_members(&req, &state, caller, entity, group.id, fields).await?;
    }
    match groups_json(&req, &state, caller, entity)
        .await?
        .into_iter()
        .find(|(g, _)| *g == group.id)
    {
        Some((_, v)) => Ok(hal(&v)),
        None => Err(ApiError(kernel::AppError::not_found("field group"))),
    }
}

/// `DELETE /api/v4/{entity}/custom_fields/groups/{id}`: its fields stay, in the main list; 204.
pub async fn delete_field_group(
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, key) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    let caller = auth.caller();
    let groups = groups_of(&state, caller, entity).await?;
    let Some(id) = parse_group_key(entity, &key).filter(|id| groups.iter().any(|g| g.id == *id))
    else {
        return Err(ApiError(kernel::AppError::not_found("field group")));
    };
    let m = &state.modules;
    match entity {
        EntityPath::Leads => m.deals.delete_field_group(caller, id).await?,
        _ => m.contacts.delete_field_group(caller, id).await?,
    }
    Ok(super::no_content())
}
