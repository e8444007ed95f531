//! Leads (our deals): list with every amoCRM filter encoding, get, create, update one and many,
//! complex create with a contact and a company, and links between leads, contacts, companies.
//!
//! Writes are checked whole before anything is saved: every item's fields, stages, users,
//! custom fields and linked records; a batch with any bad item is a 400 that changes nothing.

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};
use contacts_api::{CompanyId, ContactId, NewCompany, NewContact, Reach};
use deals_api::{
    CustomField, Deal, DealFilter, DealId, DealPatch, FieldId, ListSort, LossReason, MoveTo,
    NewDeal, Pipeline, PipelineId, StageId, StageKind,
};
use kernel::{AppError, Caller, FieldError, UserId};
use serde_json::{Map, Value, json};

use super::body::{self, Item, MAX_BATCH};
use super::fields::{values_in, values_out};
use super::problem::ItemErrors;
use super::{
    ApiAuth, ApiError, EntityPath, LinkOut, Paging, SelfLink, TagOut, hal, hal_of, links,
    links_out, list_page, no_content, or_no_content, params, ts, with,
};
use crate::state::AppState;

/// The most leads `/leads/complex` takes at once.
pub const MAX_COMPLEX: usize = 50;

/// What a lead is shown and checked against, loaded once per request.
pub struct Ctx {
    pub pipelines: Vec<Pipeline>,
    pub fields: Vec<CustomField>,
    pub loss_reasons: Vec<LossReason>,
    pub users: HashSet<i64>,
}

impl Ctx {
    pub async fn load(state: &AppState, caller: Caller) -> Result<Ctx, ApiError> {
        let deals = &state.modules.deals;
        let (pipelines, fields, loss_reasons, users) = futures_util::try_join!(
            deals.pipelines(caller),
            deals.custom_fields(caller),
            deals.loss_reasons(caller),
            super::users::all_user_ids(state, caller),
        )?;
        Ok(Ctx {
            pipelines,
            fields,
            loss_reasons,
            users,
        })
    }

    /// What showing leads needs: the field definitions and loss reasons (no users, pipelines).
    pub async fn for_reading(state: &AppState, caller: Caller) -> Result<Ctx, ApiError> {
        let deals = &state.modules.deals;
        let (fields, loss_reasons) =
            futures_util::try_join!(deals.custom_fields(caller), deals.loss_reasons(caller))?;
        Ok(Ctx {
            pipelines: Vec::new(),
            fields,
            loss_reasons,
            users: HashSet::new(),
        })
    }

    fn stage_kind(&self, pipeline: PipelineId, stage: StageId) -> Option<StageKind> {
        self.pipelines
            .iter()
            .find(|p| p.id == pipeline)?
            .stages
            .iter()
            .find(|s| s.id == stage)
            .map(|s| s.kind)
    }

    /// The pipeline a stage id belongs to (the closing stages' ids are shared: ambiguous).
    fn pipeline_of(&self, stage: StageId) -> Option<PipelineId> {
        if stage.is_closing() {
            return None;
        }
        self.pipelines
            .iter()
            .find(|p| p.stages.iter().any(|s| s.id == stage))
            .map(|p| p.id)
    }
}

/// A lead as amoCRM shows it, written straight to the response (a list of 250 leads would
/// otherwise build a tree of maps per lead first).
#[derive(serde::Serialize)]
pub struct LeadOut<'a> {
    id: i64,
    name: &'a str,
    price: i64,
    responsible_user_id: i64,
    group_id: i64,
    status_id: i64,
    pipeline_id: i64,
    loss_reason_id: Option<i64>,
    source_id: Option<i64>,
    created_by: i64,
    updated_by: i64,
    created_at: i64,
    updated_at: i64,
    closed_at: Option<i64>,
    closest_task_at: Option<i64>,
    is_deleted: bool,
    custom_fields_values: Value,
    score: Option<i64>,
    account_id: i64,
    labor_cost: Option<i64>,
    #[serde(rename = "_links")]
    links: SelfLink,
    #[serde(rename = "_embedded")]
    embedded: LeadEmbedded<'a>,
}

#[derive(serde::Serialize)]
struct LeadEmbedded<'a> {
    tags: Vec<TagOut<'a>>,
    companies: Vec<LinkOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contacts: Option<Vec<LinkOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_reason: Option<[LossReasonOut<'a>; 1]>,
}

#[derive(serde::Serialize)]
struct LossReasonOut<'a> {
    id: i64,
    name: &'a str,
    sort: i64,
    created_at: i64,
    updated_at: i64,
    #[serde(rename = "_links")]
    links: SelfLink,
}

impl<'a> LeadOut<'a> {
    /// `base` is the request's [`super::base_url`].
    pub fn new(base: &str, d: &'a Deal, ctx: &'a Ctx, with: &[String]) -> LeadOut<'a> {
        let tags = d
            .tags
            .iter()
            .map(|t| TagOut::new(t.id.0, &t.name))
            .collect();
        let companies = links_out(base, "companies", d.company_ids.iter().copied());
        let contacts = with.iter().any(|w| w == "contacts").then(|| {
            d.contact_ids
                .iter()
                .map(|c| {
                    LinkOut::new(
                        *c,
                        Some(Some(*c) == d.main_contact_id),
                        SelfLink::new(base, format_args!("contacts/{c}")),
                    )
                })
                .collect()
        });
        let loss_reason = if with.iter().any(|w| w == "loss_reason") {
            d.loss_reason_id
                .and_then(|id| ctx.loss_reasons.iter().find(|r| r.id == id))
                .map(|r| {
                    [LossReasonOut {
                        id: r.id.0,
                        name: &r.name,
                        sort: 0,
                        created_at: 0,
                        updated_at: 0,
                        links: SelfLink::new(base, format_args!("leads/loss_reasons/{}", r.id.0)),
                    }]
                })
        } else {
            None
        };
        LeadOut {
            id: d.id.0,
            name: &d.name,
            price: d.price,
            responsible_user_id: d.responsible_user_id.0,
            group_id: 0,
            status_id: d.stage_id.0,
            pipeline_id: d.pipeline_id.0,
            loss_reason_id: d.loss_reason_id.map(|r| r.0),
            source_id: None,
            created_by: d.created_by,
            updated_by: d.updated_by,
            created_at: ts(d.created_at),
            updated_at: ts(d.updated_at),
            closed_at: d.closed_at.map(ts),
            closest_task_at: None,
            is_deleted: false,
            custom_fields_values: values_out(&d.custom_fields, &ctx.fields),
            score: None,
            account_id: d.account_id.0,
            labor_cost: None,
            links: SelfLink::new(base, format_args!("leads/{}", d.id.0)),
            embedded: LeadEmbedded {
                tags,
                companies,
                contacts,
                loss_reason,
            },
        }
    }
}

/// `GET /api/v4/leads`: filters, `query`, `order`, `with`, `page`/`limit`.
pub async fn list(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let mut p = params(&req);
    let paging = Paging::read(&mut p, 50);
    let mut f = DealFilter {
        ids: p
            .ints(&["filter", "id"], false)
            .into_iter()
            .map(DealId)
            .collect(),
        pipelines: p
            .ints(&["filter", "pipeline_id"], false)
            .into_iter()
            .map(PipelineId)
            .collect(),
        responsible: p
            .ints(&["filter", "responsible_user_id"], false)
            .into_iter()
            .map(UserId)
            .collect(),
        created_by: p.ints(&["filter", "created_by"], false),
        updated_by: p.ints(&["filter", "updated_by"], false),
        ..DealFilter::default()
    };
    if let Some(statuses) = p.node(&["filter", "statuses"]).cloned() {
        for (i, (_, s)) in statuses.children().into_iter().enumerate() {
            let pid = s
                .get("pipeline_id")
                .and_then(|n| n.value())
                .and_then(|v| v.parse().ok());
            let sid = s
                .get("status_id")
                .and_then(|n| n.value())
                .and_then(|v| v.parse().ok());
            match (pid, sid) {
                (Some(pid), Some(sid)) => f.statuses.push((PipelineId(pid), StageId(sid))),
                _ => p.fail(
                    &format!("filter[statuses][{i}]"),
                    "InvalidValue",
                    "each status is [pipeline_id] and [status_id], whole numbers",
                ),
            }
        }
    }
    (f.price_from, f.price_to) = p.int_range(&["filter", "price"]);
    (f.created_from, f.created_to) = p.time_range(&["filter", "created_at"]);
    (f.updated_from, f.updated_to) = p.time_range(&["filter", "updated_at"]);
    (f.closed_from, f.closed_to) = p.time_range(&["filter", "closed_at"]);
    let name = p.str(&["filter", "name"]);
    let query = p.str(&["query"]);
    match (name, query) {
        (Some(n), _) => f.query = Some(n),
        (None, Some(q)) => match q.parse::<i64>() {
            // A number looks for that id, or a name holding it.
            Ok(id) if f.ids.is_empty() && q.len() > 3 => f.ids = vec![DealId(id)],
            _ => f.query = Some(q),
        },
        _ => {}
    }
    if let Some(cf) = p.node(&["filter", "custom_fields_values"]).cloned() {
        for (key, node) in cf.children() {
            let id = match key {
                super::params::Key::Index(i) => *i as i64,
                super::params::Key::Name(n) => {
                    p.fail(
                        &format!("filter[custom_fields_values][{n}]"),
                        "InvalidType",
                        "custom fields are named by their id",
                    );
                    continue;
                }
            };
            if node.get("from").is_some() || node.get("to").is_some() {
                p.fail(
                    &format!("filter[custom_fields_values][{id}]"),
                    "NotSupported",
                    "ranges of custom-field values are not supported yet; give the value",
                );
                continue;
            }
            if let Some(v) = node.list(false).first() {
                f.fields
                    .push((FieldId(id as i64), Value::String(v.to_string())));
            }
        }
    }
    let (sort, desc) = order(&mut p);
    let with = with(&p);
    p.finish()?;
    let (deals, more) = state
        .modules
        .deals
        .list_at(caller, &f, sort, desc, paging.page, paging.limit)
        .await?;
    if deals.is_empty() {
        return Ok(no_content());
    }
    let ctx = Ctx::for_reading(&state, caller).await?;
    let base = super::base_url(&req);
    let items: Vec<LeadOut> = deals
        .iter()
        .map(|d| LeadOut::new(&base, d, &ctx, &with))
        .collect();
    Ok(list_page(&req, "leads", items, paging, more))
}

/// `order[created_at|updated_at|id]=asc|desc` (id ascending when not given).
pub fn order(p: &mut super::params::Params) -> (ListSort, bool) {
    for (key, sort) in [
        ("created_at", ListSort::Created),
        ("updated_at", ListSort::Updated),
        ("id", ListSort::Id),
    ] {
        if let Some(dir) = p.str(&["order", key]) {
            return match dir.to_ascii_lowercase().as_str() {
                "asc" => (sort, false),
                "desc" => (sort, true),
                _ => {
                    p.fail(
                        &format!("order[{key}]"),
                        "NotSupportedChoice",
                        "asc or desc",
                    );
                    (sort, false)
                }
            };
        }
    }
    if let Some(super::params::Node::Map(m)) = p.node(&["order"]).cloned()
        && let Some(k) = m.keys().next()
    {
        p.fail(
            &format!("order[{k:?}]"),
            "NotSupportedChoice",
            "order by created_at, updated_at or id",
        );
    }
    (ListSort::Id, false)
}

/// `GET /api/v4/leads/{id}`: 204 when there is no such lead for this token.
pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let p = params(&req);
    let with = with(&p);
    or_no_content(
        async {
            let d = state.modules.deals.deal(caller, DealId(*path)).await?;
            let ctx = Ctx::for_reading(&state, caller).await?;
            Ok(hal_of(&LeadOut::new(
                &super::base_url(&req),
                &d,
                &ctx,
                &with,
            )))
        }
        .await,
    )
}

/// A lead write, checked: what to create or change.
struct LeadWrite {
    id: Option<DealId>,
    name: Option<String>,
    price: Option<i64>,
    pipeline: Option<PipelineId>,
    stage: Option<StageId>,
    loss_reason: Option<deals_api::LossReasonId>,
    responsible: Option<UserId>,
    tags_set: Option<Vec<String>>,
    tags_add: Vec<String>,
    tags_delete: Vec<String>,
    fields: Option<Map<String, Value>>,
    contacts: Vec<i64>,
    main_contact: Option<i64>,
    companies: Vec<i64>,
}

fn read_lead(
    item: &mut Item<'_>,
    ctx: &Ctx,
    known_tags: &[(i64, String)],
    update: bool,
) -> LeadWrite {
    let id = if update {
        match item.int("id") {
            Some(id) => Some(DealId(id)),
            None => {
                if !item.errors.iter().any(|e| e.field == "id") {
                    item.fail("id", "Required", "updates need the lead's id");
                }
                None
            }
        }
    } else {
        None
    };
    let name = item.str("name");
    if let Some(n) = &name
        && (n.trim().is_empty() || n.chars().count() > 255)
    {
        item.fail("name", "InvalidValue", "a name of 1 to 255 characters");
    }
    let price = item.int("price");
    if price.is_some_and(|p| p < 0) {
        item.fail("price", "InvalidValue", "the budget cannot be negative");
    }
    let pipeline = item.int("pipeline_id").map(PipelineId);
    let stage = item.int("status_id").map(StageId);
    let loss_reason = item.int("loss_reason_id").map(deals_api::LossReasonId);
    let responsible = item.int("responsible_user_id").map(UserId);
    // created_by/updated_by/created_at/updated_at are kept by Voronka itself; read for type.
    for k in [
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
        "closed_at",
    ] {
        item.int(k);
    }
    if let Some(p) = pipeline
        && !ctx.pipelines.iter().any(|x| x.id == p)
    {
        item.fail("pipeline_id", "NotFound", "No such pipeline");
    }
    if let Some(s) = stage {
        let p = pipeline.or_else(|| ctx.pipeline_of(s));
        match p {
            Some(p) if ctx.stage_kind(p, s).is_some() => {}
            Some(_) => item.fail("status_id", "NotFound", "No such status in this pipeline"),
            // A closing stage without a pipeline: the lead's own (an update) or the main one.
            None if s.is_closing() => {}
            None => item.fail("status_id", "NotFound", "No such status"),
        }
    }
    if let Some(r) = loss_reason
        && !ctx.loss_reasons.iter().any(|x| x.id == r)
    {
        item.fail("loss_reason_id", "NotFound", "No such loss reason");
    }
    if let Some(u) = responsible
        && !ctx.users.contains(&u.0)
    {
        item.fail("responsible_user_id", "NotFound", "No such user");
    }
    let fields = values_in(item, "custom_fields_values", &ctx.fields, |_, _| false);
    let tags_add = body::tag_names(item, "tags_to_add", known_tags).unwrap_or_default();
    let tags_delete = body::tag_names(item, "tags_to_delete", known_tags).unwrap_or_default();
    let mut tags_set = None;
    let (mut contacts, mut main_contact, mut companies) = (Vec::new(), None, Vec::new());
    if let Some(emb) = item.object("_embedded") {
        item.nested(emb, "_embedded", |e| {
            tags_set = body::tag_names(e, "tags", known_tags);
            if let Some(list) = e.array("contacts") {
                for (i, c) in list.iter().enumerate() {
                    match c.get("id").and_then(Value::as_i64) {
                        Some(id) => {
                            contacts.push(id);
                            if c.get("is_main").and_then(Value::as_bool) == Some(true) {
                                main_contact = Some(id);
                            }
                        }
                        None => e.fail(&format!("contacts.{i}.id"), "Required", "a contact's id"),
                    }
                }
            }
            if let Some(list) = e.array("companies") {
                for (i, c) in list.iter().enumerate() {
                    match c.get("id").and_then(Value::as_i64) {
                        Some(id) => companies.push(id),
                        None => e.fail(&format!("companies.{i}.id"), "Required", "a company's id"),
                    }
                }
            }
        });
    }
    LeadWrite {
        id,
        name,
        price,
        // A status names its pipeline (only 142 and 143 are shared).
        pipeline: pipeline.or_else(|| stage.and_then(|s| ctx.pipeline_of(s))),
        stage,
        loss_reason,
        responsible,
        tags_set,
        tags_add,
        tags_delete,
        fields,
        contacts,
        main_contact,
        companies,
    }
}

async fn known_tags(state: &AppState, caller: Caller) -> Result<Vec<(i64, String)>, ApiError> {
    Ok(state
        .modules
        .deals
        .tags(caller)
        .await?
        .into_iter()
        .map(|t| (t.id.0, t.name))
        .collect())
}

/// Which of the given contacts and companies the caller cannot see (or do not exist).
pub async fn missing_links(
    state: &AppState,
    caller: Caller,
    contacts: &[i64],
    companies: &[i64],
) -> Result<(HashSet<i64>, HashSet<i64>), ApiError> {
    let mut missing_contacts = HashSet::new();
    if !contacts.is_empty() {
        let found: HashSet<i64> = state
            .modules
            .contacts
            .contacts_by_id(caller, contacts.iter().copied().map(ContactId).collect())
            .await?
            .into_iter()
            .map(|c| c.id.0)
            .collect();
        missing_contacts = contacts
            .iter()
            .copied()
            .filter(|c| !found.contains(c))
            .collect();
    }
    let mut missing_companies = HashSet::new();
    for c in companies.iter().collect::<HashSet<_>>() {
        match state.modules.contacts.company(caller, CompanyId(*c)).await {
            Ok(_) => {}
            Err(e)
                if e.code == kernel::ErrorCode::NotFound
                    || e.code == kernel::ErrorCode::Forbidden =>
            {
                missing_companies.insert(*c);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((missing_contacts, missing_companies))
}

/// `POST /api/v4/leads`: an array of up to 250 leads.
pub async fn create(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let (ctx, tags) =
        futures_util::try_join!(Ctx::load(&state, caller), known_tags(&state, caller))?;
    let mut writes = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let w = read_lead(&mut item, &ctx, &tags, false);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: std::mem::take(&mut item.errors),
            });
        }
        writes.push((request_id, w));
    }
    check_links(&state, caller, &writes, &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let main = Pipeline::main_of(&ctx.pipelines)
        .map(|p| p.id)
        .ok_or_else(|| {
            ApiError(AppError::validation(
                "pipeline_id",
                "NotFound",
                "the account has no pipeline",
            ))
        })?;
    let (request_ids, writes): (Vec<String>, Vec<LeadWrite>) = writes.into_iter().unzip();
    let created = create_all(&state, caller, &ctx, main, writes).await?;
    let out: Vec<Value> = created
        .iter()
        .zip(request_ids)
        .map(|(d, request_id)| {
            json!({
                "id": d.id.0,
                "request_id": request_id,
                "_links": links(&req, &format!("leads/{}", d.id.0)),
            })
        })
        .collect();
    Ok(hal(&json!({
        "_links": links(&req, "leads"),
        "_embedded": { "leads": out },
    })))
}

async fn check_links(
    state: &AppState,
    caller: Caller,
    writes: &[(String, LeadWrite)],
    errors: &mut Vec<ItemErrors>,
) -> Result<(), ApiError> {
    let contacts: Vec<i64> = writes
        .iter()
        .flat_map(|(_, w)| w.contacts.clone())
        .collect();
    let companies: Vec<i64> = writes
        .iter()
        .flat_map(|(_, w)| w.companies.clone())
        .collect();
    let (mc, mco) = missing_links(state, caller, &contacts, &companies).await?;
    for (request_id, w) in writes {
        let mut errs = Vec::new();
        for (i, c) in w.contacts.iter().enumerate() {
            if mc.contains(c) {
                errs.push(FieldError {
                    field: format!("_embedded.contacts.{i}.id"),
                    code: "NotFound".into(),
                    message: "No such contact".into(),
                });
            }
        }
        for (i, c) in w.companies.iter().enumerate() {
            if mco.contains(c) {
                errs.push(FieldError {
                    field: format!("_embedded.companies.{i}.id"),
                    code: "NotFound".into(),
                    message: "No such company".into(),
                });
            }
        }
        if !errs.is_empty() {
            match errors.iter_mut().find(|e| &e.request_id == request_id) {
                Some(e) => e.errors.extend(errs),
                None => errors.push(ItemErrors {
                    request_id: request_id.clone(),
                    errors: errs,
                }),
            }
        }
    }
    Ok(())
}

/// A lead to close right after it is made: its closing stage and loss reason.
type Closing = Option<(StageId, Option<deals_api::LossReasonId>)>;

fn to_new(ctx: &Ctx, main: PipelineId, w: LeadWrite) -> (NewDeal, Closing) {
    let pipeline = w
        .pipeline
        .or_else(|| w.stage.and_then(|s| ctx.pipeline_of(s)))
        .unwrap_or(main);
    let closing = w
        .stage
        .filter(|s| ctx.stage_kind(pipeline, *s).is_some_and(|k| k.is_closed()));
    let mut tags = w.tags_set.unwrap_or_default();
    tags.extend(w.tags_add);
    tags.retain(|t| !w.tags_delete.contains(t));
    let mut new = NewDeal::new(pipeline, w.name.unwrap_or_else(|| "Lead".into()));
    new.price = w.price.unwrap_or(0);
    // A lead created closed is created in the pipeline's first stage and closed at once (the
    // stage history then shows both, as a robot's would).
    new.stage_id = if closing.is_some() { None } else { w.stage };
    new.responsible_user_id = w.responsible;
    new.tags = tags;
    new.custom_fields = w.fields.unwrap_or_default();
    new.contact_ids = w.contacts;
    new.main_contact_id = w.main_contact;
    new.company_ids = w.companies;
    (new, closing.map(|s| (s, w.loss_reason)))
}

/// Creates the leads in one transaction (all or none), then closes those created closed.
async fn create_all(
    state: &AppState,
    caller: Caller,
    ctx: &Ctx,
    main: PipelineId,
    writes: Vec<LeadWrite>,
) -> Result<Vec<Deal>, ApiError> {
    let (news, closings): (Vec<NewDeal>, Vec<Closing>) =
        writes.into_iter().map(|w| to_new(ctx, main, w)).unzip();
    let deals = &state.modules.deals;
    let mut created = deals.create_deals(caller, news).await?;
    for (d, closing) in created.iter_mut().zip(closings) {
        if let Some((stage, loss_reason_id)) = closing {
            *d = deals
                .move_deal(
                    caller,
                    d.id,
                    MoveTo {
                        stage_id: stage,
                        after: None,
                        loss_reason_id,
                    },
                )
                .await?;
        }
    }
    Ok(created)
}

/// Reads and checks a batch of updates; the leads must be visible to the caller.
async fn read_updates(
    state: &AppState,
    caller: Caller,
    ctx: &Ctx,
    items: &[Map<String, Value>],
) -> Result<Vec<(String, LeadWrite)>, ApiError> {
    let tags = known_tags(state, caller).await?;
    let mut writes = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let w = read_lead(&mut item, ctx, &tags, true);
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: std::mem::take(&mut item.errors),
            });
        }
        writes.push((request_id, w));
    }
    let ids: Vec<DealId> = writes.iter().filter_map(|(_, w)| w.id).collect();
    let visible: HashSet<DealId> = state
        .modules
        .deals
        .visible_deals(caller, ids)
        .await?
        .into_iter()
        .collect();
    for (request_id, w) in &writes {
        if let Some(id) = w.id
            && !visible.contains(&id)
        {
            let e = FieldError {
                field: "id".into(),
                code: "NotFound".into(),
                message: "No such lead".into(),
            };
            match errors.iter_mut().find(|x| &x.request_id == request_id) {
                Some(x) => x.errors.push(e),
                None => errors.push(ItemErrors {
                    request_id: request_id.clone(),
                    errors: vec![e],
                }),
            }
        }
    }
    check_links(state, caller, &writes, &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    Ok(writes)
}

async fn update_lead(
    state: &AppState,
    caller: Caller,
    ctx: &Ctx,
    w: LeadWrite,
) -> Result<Deal, ApiError> {
    let deals = &state.modules.deals;
    let id =
        w.id.ok_or_else(|| ApiError::bad_request("the lead's id is required"))?;
    let current = deals.deal(caller, id).await?;
    let tags = if w.tags_set.is_some() || !w.tags_add.is_empty() || !w.tags_delete.is_empty() {
        let mut t = w
            .tags_set
            .unwrap_or_else(|| current.tags.iter().map(|t| t.name.clone()).collect());
        for a in w.tags_add {
            if !t.contains(&a) {
                t.push(a);
            }
        }
        t.retain(|x| !w.tags_delete.contains(x));
        Some(t)
    } else {
        None
    };
    let patch = DealPatch {
        name: w.name,
        price: w.price,
        responsible_user_id: w.responsible,
        tags,
        custom_fields: w.fields,
        contact_ids: (!w.contacts.is_empty()).then_some(w.contacts),
        main_contact_id: w.main_contact.map(Some),
        company_ids: (!w.companies.is_empty()).then_some(w.companies),
    };
    let mut d = if patch == DealPatch::default() {
        current.clone()
    } else {
        deals.update_deal(caller, id, patch).await?
    };
    let pipeline = w.pipeline.unwrap_or(current.pipeline_id);
    if pipeline != current.pipeline_id {
        d = deals
            .move_deal_to_pipeline(caller, id, pipeline, w.stage, w.loss_reason)
            .await?;
    } else if let Some(stage) = w.stage
        && (stage != current.stage_id || w.loss_reason.is_some())
    {
        d = deals
            .move_deal(
                caller,
                id,
                MoveTo {
                    stage_id: stage,
                    after: None,
                    loss_reason_id: w.loss_reason,
                },
            )
            .await?;
    }
    let _ = ctx;
    Ok(d)
}

/// `PATCH /api/v4/leads`: an array of changes, each with its lead's id.
pub async fn update_many(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_BATCH)?;
    let ctx = Ctx::load(&state, caller).await?;
    let writes = read_updates(&state, caller, &ctx, &items).await?;
    let mut out = Vec::new();
    for (request_id, w) in writes {
        let d = update_lead(&state, caller, &ctx, w).await?;
        out.push(json!({
            "id": d.id.0,
            "updated_at": ts(d.updated_at),
            "request_id": request_id,
            "_links": links(&req, &format!("leads/{}", d.id.0)),
        }));
    }
    Ok(hal(&json!({
        "_links": links(&req, "leads"),
        "_embedded": { "leads": out },
    })))
}

/// `PATCH /api/v4/leads/{id}`: one object; answers `{id, updated_at}`.
pub async fn update_one(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let mut obj = body::object(&raw)?;
    obj.insert("id".into(), json!(*path));
    let ctx = Ctx::load(&state, caller).await?;
    let writes = match read_updates(&state, caller, &ctx, std::slice::from_ref(&obj)).await {
        Err(ApiError(e)) if e.fields.iter().any(|f| f.field.ends_with("\u{1f}id")) => {
            return Err(ApiError(AppError::not_found("lead")));
        }
        other => other?,
    };
    let mut last = None;
    for (_, w) in writes {
        last = Some(update_lead(&state, caller, &ctx, w).await?);
    }
    let d = last.ok_or_else(|| ApiError(AppError::internal("no update")))?;
    Ok(hal(&json!({
        "id": d.id.0,
        "updated_at": ts(d.updated_at),
        "_links": links(&req, &format!("leads/{}", d.id.0)),
    })))
}

/// Splits "Ivan Petrov" into a first and a last name.
pub fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    match name.split_once(' ') {
        Some((a, b)) => (a.trim().to_string(), b.trim().to_string()),
        None => (name.to_string(), String::new()),
    }
}

/// Phones and e-mails named by `field_code` (PHONE, EMAIL) with their `enum_code`.
pub fn reach_by_code(
    code: &str,
    values: &[Value],
    phones: &mut Vec<Reach>,
    emails: &mut Vec<Reach>,
) -> bool {
    let target = match code {
        "PHONE" => phones,
        "EMAIL" => emails,
        _ => return false,
    };
    for v in values {
        let value = v
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        if value.is_empty() {
            continue;
        }
        let kind = v
            .get("enum_code")
            .and_then(Value::as_str)
            .unwrap_or("WORK")
            .to_string();
        target.push(Reach {
            kind,
            value: value.to_string(),
        });
    }
    true
}

/// `POST /api/v4/leads/complex`: up to 50 leads, each with at most one new contact and one new
/// company; answers a bare array with `contact_id`/`company_id` always present.
pub async fn complex(
    auth: ApiAuth,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let items = body::batch(&raw, MAX_COMPLEX)?;
    let ctx = Ctx::load(&state, caller).await?;
    let tags = known_tags(&state, caller).await?;
    let (contact_fields, company_fields) = futures_util::try_join!(
        state
            .modules
            .contacts
            .custom_fields(caller, contacts_api::Entity::Contact),
        state
            .modules
            .contacts
            .custom_fields(caller, contacts_api::Entity::Company),
    )?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        // The lead's own fields; its contact and company are new ones, read below.
        let mut lead_obj = obj.clone();
        let emb = obj.get("_embedded").and_then(Value::as_object).cloned();
        if let Some(mut e) = emb.clone() {
            e.remove("contacts");
            e.remove("companies");
            e.remove("metadata");
            e.remove("source");
            lead_obj.insert("_embedded".into(), Value::Object(e));
        }
        let mut lead_item = Item::new(&lead_obj);
        let w = read_lead(&mut lead_item, &ctx, &tags, false);
        item.errors.append(&mut lead_item.errors);
        let mut contact = None;
        let mut company = None;
        if let Some(e) = &emb {
            item.nested(e, "_embedded", |e| {
                for (key, max) in [("contacts", 1), ("companies", 1)] {
                    let Some(list) = e.array(key) else { continue };
                    if list.len() > max {
                        e.fail(key, "InvalidValue", "at most one per lead");
                        continue;
                    }
                    let Some(Value::Object(o)) = list.first() else {
                        continue;
                    };
                    e.nested(o, &format!("{key}.0"), |c| {
                        if key == "contacts" {
                            contact = Some(read_contact(c, &contact_fields));
                        } else {
                            company = Some(read_company(c, &company_fields));
                        }
                    });
                }
            });
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id: request_id.clone(),
                errors: std::mem::take(&mut item.errors),
            });
        }
        plans.push((request_id, w, contact, company));
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    let main = Pipeline::main_of(&ctx.pipelines)
        .map(|p| p.id)
        .ok_or_else(|| {
            ApiError(AppError::validation(
                "pipeline_id",
                "NotFound",
                "the account has no pipeline",
            ))
        })?;
    let mut out = Vec::new();
    for (request_id, mut w, contact, company) in plans {
        let contacts_mod = &state.modules.contacts;
        let company_id = match company {
            Some(c) => Some(contacts_mod.create_company(caller, c).await?.id),
            None => None,
        };
        let contact_id = match contact {
            Some(mut c) => {
                if let Some(co) = company_id {
                    c.company_ids.push(co);
                }
                Some(contacts_mod.create_contact(caller, c).await?.id)
            }
            None => None,
        };
        if let Some(c) = contact_id {
            w.contacts = vec![c.0];
            w.main_contact = Some(c.0);
        }
        if let Some(c) = company_id {
            w.companies = vec![c.0];
        }
        let d = create_all(&state, caller, &ctx, main, vec![w])
            .await?
            .pop()
            .ok_or_else(|| ApiError(AppError::internal("no lead created")))?;
        out.push(json!({
            "id": d.id.0,
            "contact_id": contact_id.map(|c| c.0),
            "company_id": company_id.map(|c| c.0),
            "request_id": [request_id],
            "merged": false,
        }));
    }
    Ok(hal(&Value::Array(out)))
}

pub fn read_contact(c: &mut Item<'_>, defs: &[contacts_api::CustomField]) -> NewContact {
    let mut new = NewContact::default();
    let name = c.str("name").unwrap_or_default();
    let first = c.str("first_name");
    let last = c.str("last_name");
    match (first, last) {
        (None, None) => (new.first_name, new.last_name) = split_name(&name),
        (f, l) => {
            new.first_name = f.unwrap_or_default();
            new.last_name = l.unwrap_or_default();
        }
    }
    if new.first_name.trim().is_empty() && new.last_name.trim().is_empty() {
        c.fail("name", "Required", "a contact needs a name");
    }
    new.responsible_user_id = c.int("responsible_user_id").map(UserId);
    let (mut phones, mut emails) = (Vec::new(), Vec::new());
    new.custom_fields = values_in(c, "custom_fields_values", defs, |code, values| {
        reach_by_code(code, values, &mut phones, &mut emails)
    })
    .unwrap_or_default();
    new.phones = phones;
    new.emails = emails;
    if let Some(emb) = c.object("_embedded") {
        c.nested(emb, "_embedded", |e| {
            new.tags = body::tag_names(e, "tags", &[]).unwrap_or_default();
        });
    }
    new
}

pub fn read_company(c: &mut Item<'_>, defs: &[contacts_api::CustomField]) -> NewCompany {
    let mut new = NewCompany {
        name: c.str("name").unwrap_or_default(),
        ..NewCompany::default()
    };
    if new.name.trim().is_empty() {
        c.fail("name", "Required", "a company needs a name");
    }
    new.responsible_user_id = c.int("responsible_user_id").map(UserId);
    let (mut phones, mut emails) = (Vec::new(), Vec::new());
    new.custom_fields = values_in(c, "custom_fields_values", defs, |code, values| {
        reach_by_code(code, values, &mut phones, &mut emails)
    })
    .unwrap_or_default();
    new.phones = phones;
    new.emails = emails;
    if let Some(emb) = c.object("_embedded") {
        c.nested(emb, "_embedded", |e| {
            new.tags = body::tag_names(e, "tags", &[]).unwrap_or_default();
        });
    }
    new
}

// --- links ---------------------------------------------------------------------------------

fn link_json(from: EntityPath, id: i64, to: &str, to_id: i64, metadata: Value) -> Value {
    json!({
        "entity_id": id,
        "entity_type": from.as_str(),
        "to_entity_id": to_id,
        "to_entity_type": to,
        "metadata": metadata,
    })
}

/// Every link of a record: a lead's contacts and companies; a contact's companies and leads; a
/// company's contacts and leads.
async fn links_of(
    state: &AppState,
    caller: Caller,
    from: EntityPath,
    id: i64,
) -> Result<Vec<Value>, ApiError> {
    let m = &state.modules;
    let mut out = Vec::new();
    let leads_of = |filter: DealFilter| async move {
        let (deals, _) = m
            .deals
            .list_at(caller, &filter, ListSort::Id, false, 1, 250)
            .await?;
        Ok::<_, ApiError>(deals.into_iter().map(|d| d.id.0).collect::<Vec<_>>())
    };
    match from {
        EntityPath::Leads => {
            let d = m.deals.deal(caller, DealId(id)).await?;
            for c in &d.contact_ids {
                let main = Some(*c) == d.main_contact_id;
                out.push(link_json(
                    from,
                    id,
                    "contacts",
                    *c,
                    json!({"main_contact": main}),
                ));
            }
            for c in &d.company_ids {
                out.push(link_json(from, id, "companies", *c, Value::Null));
            }
        }
        EntityPath::Contacts => {
            let c = m.contacts.contact(caller, ContactId(id)).await?;
            for co in &c.company_ids {
                out.push(link_json(from, id, "companies", co.0, Value::Null));
            }
            let filter = DealFilter {
                contact: Some(id),
                ..DealFilter::default()
            };
            for l in leads_of(filter).await? {
                out.push(link_json(from, id, "leads", l, Value::Null));
            }
        }
        EntityPath::Companies => {
            let c = m.contacts.company(caller, CompanyId(id)).await?;
            for ct in &c.contact_ids {
                out.push(link_json(from, id, "contacts", ct.0, Value::Null));
            }
            let filter = DealFilter {
                company: Some(id),
                ..DealFilter::default()
            };
            for l in leads_of(filter).await? {
                out.push(link_json(from, id, "leads", l, Value::Null));
            }
        }
    }
    Ok(out)
}

/// `GET /api/v4/{entity}/{id}/links` (`filter[to_entity_type]`, `filter[to_entity_id]`).
pub async fn list_links(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let from = EntityPath::parse(&entity)?;
    let mut p = params(&req);
    let to_type = p.str(&["filter", "to_entity_type"]);
    let to_id = p.int(&["filter", "to_entity_id"]);
    p.finish()?;
    let mut all = links_of(&state, auth.caller(), from, id).await?;
    all.retain(|l| {
        to_type.as_deref().is_none_or(|t| l["to_entity_type"] == t)
            && to_id.is_none_or(|t| l["to_entity_id"] == t)
    });
    if all.is_empty() {
        return Ok(no_content());
    }
    Ok(hal(&json!({
        "_total_items": all.len(),
        "_links": links(&req, &format!("{entity}/{id}/links")),
        "_embedded": { "links": all },
    })))
}

/// One link to make or break, read from `[{"to_entity_id", "to_entity_type", "metadata"}]`.
struct LinkItem {
    to_type: EntityPath,
    to_id: i64,
    is_main: bool,
}

fn read_links(raw: &[u8]) -> Result<Vec<LinkItem>, ApiError> {
    let items = body::batch(raw, MAX_BATCH)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, obj) in items.iter().enumerate() {
        let mut item = Item::new(obj);
        let to_id = item.int("to_entity_id");
        let to_type = item.str("to_entity_type");
        let is_main = obj
            .get("metadata")
            .and_then(|m| m.get("is_main").or(m.get("main_contact")))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let to_type = match to_type.as_deref().map(EntityPath::parse) {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => {
                item.fail(
                    "to_entity_type",
                    "NotSupportedChoice",
                    "leads, contacts or companies",
                );
                None
            }
            None => {
                item.fail("to_entity_type", "Required", "to_entity_type is required");
                None
            }
        };
        if to_id.is_none() && !item.errors.iter().any(|e| e.field == "to_entity_id") {
            item.fail("to_entity_id", "Required", "to_entity_id is required");
        }
        let request_id = item.request_id(i);
        if !item.errors.is_empty() {
            errors.push(ItemErrors {
                request_id,
                errors: item.errors,
            });
            continue;
        }
        if let (Some(to_type), Some(to_id)) = (to_type, to_id) {
            out.push(LinkItem {
                to_type,
                to_id,
                is_main,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    Ok(out)
}

/// Makes (or with `unlink`, breaks) links from one record; all are checked first.
async fn relink(
    state: &AppState,
    caller: Caller,
    from: EntityPath,
    id: i64,
    items: &[LinkItem],
    unlink: bool,
) -> Result<(), ApiError> {
    let m = &state.modules;
    // Check that every target exists for this caller before changing anything.
    let contacts: Vec<i64> = items
        .iter()
        .filter(|l| l.to_type == EntityPath::Contacts)
        .map(|l| l.to_id)
        .collect();
    let companies: Vec<i64> = items
        .iter()
        .filter(|l| l.to_type == EntityPath::Companies)
        .map(|l| l.to_id)
        .collect();
    let leads: Vec<DealId> = items
        .iter()
        .filter(|l| l.to_type == EntityPath::Leads)
        .map(|l| DealId(l.to_id))
        .collect();
    let (mc, mco) = missing_links(state, caller, &contacts, &companies).await?;
    let visible: HashSet<DealId> = if leads.is_empty() {
        HashSet::new()
    } else {
        m.deals
            .visible_deals(caller, leads.clone())
            .await?
            .into_iter()
            .collect()
    };
    let mut errors = Vec::new();
    for (i, l) in items.iter().enumerate() {
        let bad = (from == l.to_type).then_some("InvalidValue");
        let missing = match l.to_type {
            EntityPath::Contacts => mc.contains(&l.to_id),
            EntityPath::Companies => mco.contains(&l.to_id),
            EntityPath::Leads => !visible.contains(&DealId(l.to_id)),
        };
        if let Some(code) = bad {
            errors.push(ItemErrors {
                request_id: i.to_string(),
                errors: vec![FieldError {
                    field: "to_entity_type".into(),
                    code: code.into(),
                    message: "a record cannot be linked to its own kind here".into(),
                }],
            });
        } else if missing {
            errors.push(ItemErrors {
                request_id: i.to_string(),
                errors: vec![FieldError {
                    field: "to_entity_id".into(),
                    code: "NotFound".into(),
                    message: "No such record".into(),
                }],
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    // Links to leads are kept on the lead; contact–company links in the contacts module.
    let mut lead_changes: Vec<(DealId, Vec<&LinkItem>, Option<EntityPath>)> = Vec::new();
    match from {
        EntityPath::Leads => lead_changes.push((DealId(id), items.iter().collect(), None)),
        other => {
            for l in items {
                match l.to_type {
                    EntityPath::Leads => lead_changes.push((DealId(l.to_id), vec![l], Some(other))),
                    EntityPath::Companies => {
                        if unlink {
                            m.contacts
                                .unlink(caller, ContactId(id), CompanyId(l.to_id))
                                .await?;
                        } else {
                            m.contacts
                                .link(caller, ContactId(id), CompanyId(l.to_id))
                                .await?;
                        }
                    }
                    EntityPath::Contacts => {
                        if unlink {
                            m.contacts
                                .unlink(caller, ContactId(l.to_id), CompanyId(id))
                                .await?;
                        } else {
                            m.contacts
                                .link(caller, ContactId(l.to_id), CompanyId(id))
                                .await?;
                        }
                    }
                }
            }
        }
    }
    for (deal_id, list, reverse) in lead_changes {
        let d = m.deals.deal(caller, deal_id).await?;
        let (mut contacts, mut companies, mut main) = (
            d.contact_ids.clone(),
            d.company_ids.clone(),
            d.main_contact_id,
        );
        for l in list {
            // From a contact or a company, the link's other end is that record.
            let (ty, other) = match reverse {
                Some(kind) => (kind, id),
                None => (l.to_type, l.to_id),
            };
            let target = match ty {
                EntityPath::Contacts => &mut contacts,
                EntityPath::Companies => &mut companies,
                EntityPath::Leads => continue,
            };
            if unlink {
                target.retain(|x| *x != other);
                if main == Some(other) {
                    main = None;
                }
            } else {
                if !target.contains(&other) {
                    target.push(other);
                }
                if ty == EntityPath::Contacts && (l.is_main || main.is_none()) {
                    main = Some(other);
                }
            }
        }
        if main.is_none() {
            main = contacts.first().copied();
        }
        let patch = DealPatch {
            contact_ids: Some(contacts),
            main_contact_id: Some(main),
            company_ids: Some(companies),
            ..DealPatch::default()
        };
        m.deals.update_deal(caller, deal_id, patch).await?;
    }
    Ok(())
}

/// `POST /api/v4/{entity}/{id}/link`.
pub async fn link(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let from = EntityPath::parse(&entity)?;
    let items = read_links(&raw)?;
    relink(&state, auth.caller(), from, id, &items, false).await?;
    let out: Vec<Value> = items
        .iter()
        .map(|l| {
            let meta = if l.to_type == EntityPath::Contacts {
                json!({"main_contact": l.is_main})
            } else {
                Value::Null
            };
            link_json(from, id, l.to_type.as_str(), l.to_id, meta)
        })
        .collect();
    Ok(hal(&json!({
        "_links": links(&req, &format!("{entity}/{id}/link")),
        "_embedded": { "links": out },
    })))
}

/// `POST /api/v4/{entity}/{id}/unlink`: 204.
pub async fn unlink(
    auth: ApiAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (entity, id) = path.into_inner();
    let from = EntityPath::parse(&entity)?;
    let items = read_links(&raw)?;
    relink(&state, auth.caller(), from, id, &items, true).await?;
    Ok(no_content())
}
