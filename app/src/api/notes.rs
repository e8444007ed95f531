//! Notes on leads, contacts and companies: every path amoCRM has for them.

use activities_api::{CallParams, EntityRef, NOTE_TYPES, NewNote, Note, NoteId, NoteQuery};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::body::{self, Item, MAX_BATCH};
use super::problem::ItemErrors;
use super::{
    ApiAuth, ApiError, EntityPath, Paging, SelfLink, base_url, hal, hal_of, links, list_page,
    or_no_content, params, ts,
};
use crate::state::AppState;

/// A note as amoCRM writes it, serialised straight from the record (no JSON tree per note).
#[derive(serde::Serialize)]
pub struct NoteOut<'a> {
    id: i64,
    entity_id: i64,
    created_by: i64,
    updated_by: i64,
    created_at: i64,
    updated_at: i64,
    responsible_user_id: i64,
    group_id: i64,
    note_type: &'a str,
    params: NoteParams<'a>,
    is_pinned: bool,
    account_id: i64,
    #[serde(rename = "_links")]
    links: SelfLink,
}

/// The note's type-specific params with its `text` among them.
struct NoteParams<'a> {
    text: &'a str,
    params: &'a Value,
}

impl serde::Serialize for NoteParams<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let rest = self.params.as_object();
        let mut map = s.serialize_map(None)?;
        for (k, v) in rest.into_iter().flatten().filter(|(k, _)| *k != "text") {
            map.serialize_entry(k, v)?;
        }
        map.serialize_entry("text", self.text)?;
        map.end()
    }
}

impl<'a> NoteOut<'a> {
    pub fn new(base: &str, account: i64, n: &'a Note) -> NoteOut<'a> {
        let entity = EntityPath::of_kind(n.entity.kind);
        NoteOut {
            id: n.id.0,
            entity_id: n.entity.id,
            created_by: n.created_by.0,
            updated_by: n.created_by.0,
            created_at: ts(n.created_at),
            updated_at: ts(n.updated_at),
            responsible_user_id: n.created_by.0,
            group_id: 0,
            note_type: &n.note_type,
            params: NoteParams {
                text: &n.text,
                params: &n.params,
            },
            is_pinned: n.pinned,
            account_id: account,
            links: SelfLink::new(
                base,
                format_args!("{}/{}/notes/{}", entity.as_str(), n.entity.id, n.id.0),
            ),
        }
    }
}

async fn list_notes(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    entity: EntityPath,
    entity_id: Option<i64>,
) -> Result<HttpResponse, ApiError> {
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    let ids = p.ints(&["filter", "id"], false);
    let entity_ids = p.ints(&["filter", "entity_id"], false);
    let note_types = p.strs(&["filter", "note_type"], true);
    p.finish()?;
    let entity_id = entity_id.or(entity_ids.first().copied());
    let (notes, more) = state
        .modules
        .activities
        .notes(
            auth.caller(),
            &NoteQuery {
                kind: entity.kind(),
                entity_id,
                ids,
                note_types,
                page: paging.page,
                limit: paging.limit,
            },
        )
        .await?;
    let account = auth.0.account_id.0;
    let base = base_url(&req);
    let items = notes
        .iter()
        .map(|n| NoteOut::new(&base, account, n))
        .collect();
    Ok(list_page(&req, "notes", items, paging, more))
}

/// `GET /api/v4/{entity}/notes`.
pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    list_notes(req, auth, state, entity, None).await
}

/// `GET /api/v4/{entity}/{id}/notes`.
pub async fn list_of(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    list_notes(req, auth, state, entity, Some(id)).await
}

async fn one(
    req: &HttpRequest,
    auth: &ApiAuth,
    state: &AppState,
    entity: EntityPath,
    entity_id: Option<i64>,
    id: i64,
) -> Result<HttpResponse, ApiError> {
    or_no_content(
        async {
            let n = state
                .modules
                .activities
                .note(auth.caller(), NoteId(id))
                .await?;
            if n.entity.kind != entity.kind() || entity_id.is_some_and(|e| e != n.entity.id) {
                return Err(ApiError(kernel::AppError::not_found("note")));
            }
            Ok(hal_of(&NoteOut::new(
                &base_url(req),
                auth.0.account_id.0,
                &n,
            )))
        }
        .await,
    )
}

/// `GET /api/v4/{entity}/notes/{id}`.
pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    one(&req, &auth, &state, entity, None, id).await
}

/// `GET /api/v4/{entity}/{entity_id}/notes/{id}`.
pub async fn get_of(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, entity_id, id) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    one(&req, &auth, &state, entity, Some(entity_id), id).await
}

async fn create_notes(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    entity: EntityPath,
    entity_id: Option<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let items = body::batch(&raw, MAX_BATCH)?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let id = match entity_id {
            Some(id) => Some(id),
            None => {
                let id = item.int("entity_id");
                if id.is_none() && !item.errors.iter().any(|e| e.field == "entity_id") {
                    item.fail("entity_id", "Required", "the note's record: entity_id");
                }
                id
            }
        };
        let note_type = item.str("note_type").unwrap_or_else(|| "common".into());
        if !NOTE_TYPES.contains(&note_type.as_str()) {
            item.fail(
                "note_type",
                "NotSupportedChoice",
                format!("one of: {}", NOTE_TYPES.join(", ")),
            );
        }
        let mut text = String::new();
        let mut call = None;
        if let Some(params) = item.object("params") {
            item.nested(params, "params", |p| {
                text = p.str("text").unwrap_or_default();
                if note_type.starts_with("call_") {
                    call = Some(CallParams {
                        phone: p.str("phone").unwrap_or_default(),
                        duration: p.int("duration").unwrap_or(0),
                        call_result: p.str("call_result").unwrap_or_default(),
                        link: p.str("link").unwrap_or_default(),
                        source: p.str("source").unwrap_or_default(),
                    });
                }
            });
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: item.errors,
            });
        }
        if let Some(id) = id {
            plans.push((
                request_id,
                NewNote {
                    entity: EntityRef {
                        kind: entity.kind(),
                        id,
                    },
                    note_type,
                    text,
                    call,
                },
            ));
        }
    }
    // Every record must be there for this caller before any note is added.
    let ids: Vec<i64> = plans.iter().map(|(_, n)| n.entity.id).collect();
    let missing: std::collections::HashSet<i64> = match entity {
        EntityPath::Leads => {
            let visible: std::collections::HashSet<i64> = state
                .modules
                .deals
                .visible_deals(
                    auth.caller(),
                    ids.iter().copied().map(deals_api::DealId).collect(),
                )
                .await?
                .into_iter()
                .map(|d| d.0)
                .collect();
            ids.iter()
                .copied()
                .filter(|i| !visible.contains(i))
                .collect()
        }
        EntityPath::Contacts => {
            super::leads::missing_links(&state, auth.caller(), &ids, &[])
                .await?
                .0
        }
        EntityPath::Companies => {
            super::leads::missing_links(&state, auth.caller(), &[], &ids)
                .await?
                .1
        }
    };
    for (request_id, n) in &plans {
        if missing.contains(&n.entity.id) {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: vec![kernel::FieldError {
                    field: "entity_id".into(),
                    code: "NotFound".into(),
                    message: "No such record".into(),
                }],
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let mut out = Vec::new();
    for (request_id, new) in plans {
        let n = state
            .modules
            .activities
            .add_note(auth.caller(), new)
            .await?;
        out.push(json!({
            "id": n.id.0,
            "entity_id": n.entity.id,
            "request_id": request_id,
            "_links": links(&req, &format!("{}/{}/notes/{}", entity.as_str(), n.entity.id, n.id.0)),
        }));
    }
    Ok(hal(&json!({
        "_links": links(&req, &format!("{}/notes", entity.as_str())),
        "_embedded": { "notes": out },
    })))
}

/// `POST /api/v4/{entity}/notes` (each note names its `entity_id`).
pub async fn create(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityPath::parse(&path)?;
    create_notes(req, auth, state, entity, None, raw).await
}

/// `POST /api/v4/{entity}/{id}/notes`.
pub async fn create_on(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let entity = EntityPath::parse(&entity)?;
    create_notes(req, auth, state, entity, Some(id), raw).await
}
