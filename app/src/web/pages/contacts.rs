//! Contacts and companies: the list with one search box, the new-record form with its duplicate
//! warning, and the record's page (edit, links between contacts and companies, linked deals).

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use contacts_api::{
    Company, CompanyId, CompanyPatch, Contact, ContactFilter, ContactId, ContactPatch, Duplicate,
    Email, Entity, NewCompany, NewContact, PHONE_KINDS, Phone, Reach, SearchHit, Tag,
};
use deals_api::DealFilter;
use kernel::paging::{Cursor, PageRequest};
use kernel::{AppError, Caller};

use super::deals::filter;
use super::{FormErrors, html, is_form_error, see_other};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;

/// One row of a list: a contact or a company.
pub struct RowView {
    pub id: i64,
    pub name: String,
    pub phones: String,
    pub emails: String,
    pub tags: Vec<Tag>,
    pub responsible: String,
    pub created: String,
}

pub struct SegmentView {
    pub id: i64,
    pub name: String,
}

/// A segment's size as its chip shows it: "1 234", or "1 000+" for a large one.
pub async fn segment_size(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.caller()?;
    let size = state
        .modules
        .contacts
        .segment_size(caller, contacts_api::SegmentId(*path))
        .await?;
    let text = if size.capped {
        format!("{}+", super::deals::group_digits(size.count))
    } else {
        super::deals::group_digits(size.count)
    };
    Ok(actix_web::HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        ))
        .body(text))
}

pub struct HitView {
    pub href: String,
    pub name: String,
    pub detail: String,
    pub kind: &'static str,
}

#[derive(Template)]
#[template(path = "contacts/list.html")]
struct ListTpl<'a> {
    ctx: &'a Ctx,
    kind: &'static str,
    q: String,
    hits: Vec<HitView>,
    rows: Vec<RowView>,
    next: Option<String>,
    segments: Vec<SegmentView>,
    /// The segment shown, or the filter (tag, responsible) as chosen.
    segment: Option<i64>,
    tag: Option<i64>,
    responsible: Option<i64>,
    tags: Vec<Tag>,
    users: Vec<(i64, String)>,
    /// The filter's query string, for "save as segment" and "more".
    filter_query: String,
    /// The filter as hidden form fields (save as segment, export).
    filter_fields: Vec<(&'static str, String)>,
    open_deal: String,
    not_contacted: String,
}

/// The values a new-record form shows again.
#[derive(Default)]
pub struct FormValues {
    pub first_name: String,
    pub last_name: String,
    pub name: String,
    pub position: String,
    pub web: String,
    pub address: String,
    pub phone: String,
    pub phone_kind: String,
    pub email: String,
    pub tags: String,
}

#[derive(Template)]
#[template(path = "contacts/form.html")]
struct FormTpl<'a> {
    ctx: &'a Ctx,
    kind: &'static str,
    v: FormValues,
    phone_kinds: &'static [&'static str],
    duplicates: Vec<Duplicate>,
    errors: FormErrors,
}

pub struct LinkView {
    pub href: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "contacts/show.html")]
struct ShowTpl<'a> {
    ctx: &'a Ctx,
    kind: &'static str,
    id: i64,
    name: String,
    v: FormValues,
    phones: Vec<Phone>,
    emails: Vec<Email>,
    links: Vec<LinkView>,
    /// Companies a contact can be linked to (contacts only).
    choices: Vec<(i64, String)>,
    deals: Vec<LinkView>,
    /// The pipelines a new deal of this contact or company can go to (none when the caller
    /// may not see deals).
    pipelines: Vec<(i64, String)>,
    /// Contacts that share a phone or an e-mail with this one (contacts only).
    duplicates: Vec<Duplicate>,
    /// The custom fields, with this record's values.
    fields: Vec<super::deals::deal::FieldInput>,
    timeline: super::activities::TimelineView,
    errors: FormErrors,
}

/// The deals linked to a contact or a company, through the deals module's contract (none when
/// the caller may not see deals).
async fn linked_deals(state: &AppState, caller: Caller, filter: DealFilter) -> Vec<LinkView> {
    match state
        .modules
        .deals
        .list(
            caller,
            &filter,
            deals_api::ListSort::Created,
            true,
            PageRequest::new(None, Some(50)),
        )
        .await
    {
        Ok(page) => page
            .items
            .into_iter()
            .map(|d| LinkView {
                href: format!("/deals/{}", d.id),
                name: d.name,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn join_phones(p: &[Phone]) -> String {
    p.iter()
        .map(|x| x.raw.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_emails(e: &[Email]) -> String {
    e.iter()
        .map(|x| x.email.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind_str(e: Entity) -> &'static str {
    match e {
        Entity::Contact => "contacts",
        Entity::Company => "companies",
    }
}

async fn users(
    state: &AppState,
    caller: Caller,
) -> Result<std::collections::HashMap<i64, String>, AppError> {
    Ok(state
        .modules
        .accounts
        .list_users(caller, PageRequest::new(None, Some(250)))
        .await?
        .items
        .into_iter()
        .map(|u| (u.id.0, u.name))
        .collect())
}

async fn list(
    ctx: &Ctx,
    state: &AppState,
    entity: Entity,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let caller = ctx.caller()?;
    let c = &state.modules.contacts;
    let q = filter::get(&pairs, "q").trim().to_string();
    let after = filter::get(&pairs, "after");
    let mut hits = Vec::new();
    let mut rows = Vec::new();
    let mut next = None;
    let id_of = |k: &str| filter::get(&pairs, k).parse::<i64>().ok();
    let (segment, tag, responsible) = (id_of("segment"), id_of("tag"), id_of("responsible"));
    let open_deal = filter::get(&pairs, "open_deal").to_string();
    let not_contacted = filter::get(&pairs, "not_contacted").to_string();
    let mut segments = Vec::new();
    let mut contact_filter = ContactFilter::default();
    if entity == Entity::Contact {
        let saved = c.segments(caller).await?;
        // Each segment's size arrives after the page (htmx asks /contacts/segments/{id}/size),
        // so that counting never holds the list up.
        for s in &saved {
            segments.push(SegmentView {
                id: s.id.0,
                name: s.name.clone(),
            });
        }
        contact_filter = match segment {
            Some(id) => saved
                .into_iter()
                .find(|s| s.id.0 == id)
                .map(|s| s.filter)
                .ok_or_else(|| AppError::not_found("segment"))?,
            None => filter_from(&pairs),
        };
    }
    let filter_query = serde_urlencoded::to_string(
        [
            ("tag", tag.map(|v| v.to_string())),
            ("responsible", responsible.map(|v| v.to_string())),
            ("segment", segment.map(|v| v.to_string())),
            (
                "open_deal",
                Some(open_deal.clone()).filter(|v| !v.is_empty()),
            ),
            (
                "not_contacted",
                Some(not_contacted.clone()).filter(|v| !v.is_empty()),
            ),
        ]
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    let filter_fields: Vec<(&'static str, String)> = [
        ("tag", tag.map(|v| v.to_string())),
        ("responsible", responsible.map(|v| v.to_string())),
        (
            "open_deal",
            Some(open_deal.clone()).filter(|v| !v.is_empty()),
        ),
        (
            "not_contacted",
            Some(not_contacted.clone()).filter(|v| !v.is_empty()),
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    if !q.is_empty() {
        // One box for both kinds: the list the user is on comes first.
        let mut found: Vec<SearchHit> = c.search(caller, &q, 50).await?;
        found.sort_by_key(|h| h.entity != entity);
        hits = found
            .into_iter()
            .map(|h| HitView {
                href: format!("/{}/{}", kind_str(h.entity), h.id),
                kind: match h.entity {
                    Entity::Contact => "contacts.contact",
                    Entity::Company => "contacts.company",
                },
                name: h.name,
                detail: h.detail,
            })
            .collect();
    } else {
        let names = users(state, caller).await?;
        let page = PageRequest::new(
            (!after.is_empty()).then(|| Cursor::from_string(after.to_string())),
            Some(50),
        );
        let view = |id: i64,
                    name: String,
                    p: &[Phone],
                    e: &[Email],
                    tags: Vec<Tag>,
                    r: i64,
                    t: chrono::DateTime<chrono::Utc>| RowView {
            id,
            name,
            phones: join_phones(p),
            emails: join_emails(e),
            tags,
            responsible: names.get(&r).cloned().unwrap_or_default(),
            created: t.format("%Y-%m-%d").to_string(),
        };
        match entity {
            Entity::Contact => {
                let p = c.list_contacts(caller, &contact_filter, page).await?;
                next = p.next.map(|n| n.as_str().to_string());
                rows = p
                    .items
                    .into_iter()
                    .map(|x| {
                        view(
                            x.id.0,
                            x.name,
                            &x.phones,
                            &x.emails,
                            x.tags,
                            x.responsible_user_id.0,
                            x.created_at,
                        )
                    })
                    .collect();
            }
            Entity::Company => {
                let p = c
                    .list_companies(caller, &ContactFilter::default(), page)
                    .await?;
                next = p.next.map(|n| n.as_str().to_string());
                rows = p
                    .items
                    .into_iter()
                    .map(|x| {
                        view(
                            x.id.0,
                            x.name,
                            &x.phones,
                            &x.emails,
                            x.tags,
                            x.responsible_user_id.0,
                            x.created_at,
                        )
                    })
                    .collect();
            }
        }
    }
    let tags = if entity == Entity::Contact {
        c.tags(caller, Entity::Contact).await?
    } else {
        Vec::new()
    };
    let users = state
        .modules
        .accounts
        .list_users(caller, PageRequest::new(None, Some(250)))
        .await?
        .items
        .into_iter()
        .filter(|u| u.is_active)
        .map(|u| (u.id.0, u.name))
        .collect();
    html(
        StatusCode::OK,
        &ListTpl {
            ctx,
            kind: kind_str(entity),
            q,
            hits,
            rows,
            next,
            segments,
            segment,
            tag,
            responsible,
            tags,
            users,
            filter_query,
            filter_fields,
            open_deal,
            not_contacted,
        },
    )
}

/// The list's filter from its query (or a posted form): tag, responsible, open deal (`yes` /
/// `no`), not contacted for N days.
pub fn filter_from(pairs: &[(String, String)]) -> ContactFilter {
    let id_of = |k: &str| filter::get(pairs, k).parse::<i64>().ok();
    ContactFilter {
        tags: id_of("tag").map(contacts_api::TagId).into_iter().collect(),
        responsible: id_of("responsible")
            .map(kernel::UserId)
            .into_iter()
            .collect(),
        open_deal: match filter::get(pairs, "open_deal") {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        not_contacted_days: filter::get(pairs, "not_contacted")
            .parse::<i32>()
            .ok()
            .filter(|d| *d > 0),
        ..Default::default()
    }
}

/// Saves the list's current filter as a named segment.
pub async fn save_segment(
    ctx: Ctx,
    state: web::Data<AppState>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let contact_filter = filter_from(&f);
    match state
        .modules
        .contacts
        .save_segment(caller, filter::get(&f, "name"), contact_filter)
        .await
    {
        Ok(s) => see_other(
            &format!("/contacts?segment={}", s.id),
            Some("contacts.segment_saved"),
        ),
        Err(e) if is_form_error(&e) => {
            see_other("/contacts", Some("contacts.segment_name_required"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn contacts(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    list(&ctx, &state, Entity::Contact, q.into_inner()).await
}

pub async fn companies(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    list(&ctx, &state, Entity::Company, q.into_inner()).await
}

fn form(
    ctx: &Ctx,
    entity: Entity,
    v: FormValues,
    duplicates: Vec<Duplicate>,
    status: StatusCode,
    errors: FormErrors,
) -> PageResult {
    html(
        status,
        &FormTpl {
            ctx,
            kind: kind_str(entity),
            v,
            phone_kinds: &PHONE_KINDS,
            duplicates,
            errors,
        },
    )
}

pub async fn new_contact(ctx: Ctx) -> PageResult {
    ctx.caller()?;
    form(
        &ctx,
        Entity::Contact,
        FormValues::default(),
        Vec::new(),
        StatusCode::OK,
        FormErrors::none(),
    )
}

pub async fn new_company(ctx: Ctx) -> PageResult {
    ctx.caller()?;
    form(
        &ctx,
        Entity::Company,
        FormValues::default(),
        Vec::new(),
        StatusCode::OK,
        FormErrors::none(),
    )
}

fn values(pairs: &[(String, String)]) -> FormValues {
    let g = |k: &str| filter::get(pairs, k).to_string();
    FormValues {
        first_name: g("first_name"),
        last_name: g("last_name"),
        name: g("name"),
        position: g("position"),
        web: g("web"),
        address: g("address"),
        phone: g("phone"),
        phone_kind: g("phone_kind"),
        email: g("email"),
        tags: g("tags"),
    }
}

fn reach_list(pairs: &[(String, String)], key: &str, kind_key: &str) -> Vec<Reach> {
    let kind = filter::get(pairs, kind_key);
    pairs
        .iter()
        .filter(|(k, v)| k == key && !v.trim().is_empty())
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .map(|v| Reach {
            kind: if kind.is_empty() {
                "WORK".into()
            } else {
                kind.to_string()
            },
            value: v,
        })
        .collect()
}

/// Creates a contact or a company; when its phone or e-mail matches an existing contact, the
/// form comes back (409) naming them, and a second submit with `confirm_duplicate` saves it.
async fn create(
    ctx: &Ctx,
    state: &AppState,
    entity: Entity,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let caller = ctx.caller()?;
    let c = &state.modules.contacts;
    let phones = reach_list(&pairs, "phone", "phone_kind");
    let emails = reach_list(&pairs, "email", "email_kind");
    let tags = super::deals::split_tags(filter::get(&pairs, "tags"));
    if entity == Entity::Contact && filter::get(&pairs, "confirm_duplicate").is_empty() {
        let dups = c
            .duplicates(
                caller,
                phones.iter().map(|p| p.value.clone()).collect(),
                emails.iter().map(|e| e.value.clone()).collect(),
                None,
            )
            .await?;
        if !dups.is_empty() {
            return form(
                ctx,
                entity,
                values(&pairs),
                dups,
                StatusCode::CONFLICT,
                FormErrors::none(),
            );
        }
    }
    let result = match entity {
        Entity::Contact => c
            .create_contact(
                caller,
                NewContact {
                    first_name: filter::get(&pairs, "first_name").into(),
                    last_name: filter::get(&pairs, "last_name").into(),
                    position: filter::get(&pairs, "position").into(),
                    phones,
                    emails,
                    tags,
                    ..Default::default()
                },
            )
            .await
            .map(|x| x.id.0),
        Entity::Company => c
            .create_company(
                caller,
                NewCompany {
                    name: filter::get(&pairs, "name").into(),
                    web: filter::get(&pairs, "web").into(),
                    address: filter::get(&pairs, "address").into(),
                    phones,
                    emails,
                    tags,
                    ..Default::default()
                },
            )
            .await
            .map(|x| x.id.0),
    };
    match result {
        Ok(id) => see_other(
            &format!("/{}/{id}", kind_str(entity)),
            Some("contacts.created"),
        ),
        Err(e) if is_form_error(&e) => form(
            ctx,
            entity,
            values(&pairs),
            Vec::new(),
            super::form_status(&e),
            FormErrors::from_error(&e),
        ),
        Err(e) => Err(e.into()),
    }
}

pub async fn create_contact(
    ctx: Ctx,
    state: web::Data<AppState>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    create(&ctx, &state, Entity::Contact, f.into_inner()).await
}

pub async fn create_company(
    ctx: Ctx,
    state: web::Data<AppState>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    create(&ctx, &state, Entity::Company, f.into_inner()).await
}

async fn show(
    ctx: &Ctx,
    state: &AppState,
    entity: Entity,
    id: i64,
    status: StatusCode,
    errors: FormErrors,
) -> PageResult {
    let caller = ctx.caller()?;
    let c = &state.modules.contacts;
    let tags = |t: &[Tag]| {
        t.iter()
            .map(|x| x.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut duplicates = Vec::new();
    let values: contacts_api::FieldValues;
    let (name, v, phones, emails, links, choices, deals) = match entity {
        Entity::Contact => {
            let x: Contact = c.contact(caller, ContactId(id)).await?;
            let mut links = Vec::new();
            for co in &x.company_ids {
                if let Ok(company) = c.company(caller, *co).await {
                    links.push(LinkView {
                        href: format!("/companies/{co}"),
                        name: company.name,
                    });
                }
            }
            let choices = c
                .list_companies(
                    caller,
                    &ContactFilter::default(),
                    PageRequest::new(None, Some(200)),
                )
                .await?
                .items
                .into_iter()
                .filter(|co| !x.company_ids.contains(&co.id))
                .map(|co| (co.id.0, co.name))
                .collect();
            let deals = linked_deals(
                state,
                caller,
                DealFilter {
                    contact: Some(id),
                    ..Default::default()
                },
            )
            .await;
            duplicates = c
                .duplicates(
                    caller,
                    x.phones.iter().map(|p| p.normalized.clone()).collect(),
                    x.emails.iter().map(|e| e.email.clone()).collect(),
                    Some(x.id),
                )
                .await?;
            let v = FormValues {
                first_name: x.first_name.clone(),
                last_name: x.last_name.clone(),
                position: x.position.clone(),
                phone: join_phones(&x.phones),
                email: join_emails(&x.emails),
                tags: tags(&x.tags),
                ..Default::default()
            };
            values = x.custom_fields.clone();
            (x.name, v, x.phones, x.emails, links, choices, deals)
        }
        Entity::Company => {
            let x: Company = c.company(caller, CompanyId(id)).await?;
            let people = c.contacts_by_id(caller, x.contact_ids.clone()).await?;
            let links = people
                .into_iter()
                .map(|p| LinkView {
                    href: format!("/contacts/{}", p.id),
                    name: p.name,
                })
                .collect();
            let v = FormValues {
                name: x.name.clone(),
                web: x.web.clone(),
                address: x.address.clone(),
                phone: join_phones(&x.phones),
                email: join_emails(&x.emails),
                tags: tags(&x.tags),
                ..Default::default()
            };
            let deals = linked_deals(
                state,
                caller,
                DealFilter {
                    company: Some(id),
                    ..Default::default()
                },
            )
            .await;
            // Other companies, to merge into this one.
            let choices = c
                .list_companies(
                    caller,
                    &ContactFilter::default(),
                    PageRequest::new(None, Some(200)),
                )
                .await?
                .items
                .into_iter()
                .filter(|co| co.id != x.id)
                .map(|co| (co.id.0, co.name))
                .collect();
            values = x.custom_fields.clone();
            (x.name, v, x.phones, x.emails, links, choices, deals)
        }
    };
    let pipelines = state
        .modules
        .deals
        .pipelines(caller)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.id.0, p.name))
        .collect();
    let defs = c.custom_fields(caller, entity).await?;
    let groups = c.field_groups(caller, entity).await?;
    let fields = super::deals::deal::grouped_inputs(&groups, &defs, |d| {
        super::deals::deal::field_input(d, &values, false)
    });
    let timeline = super::activities::load_timeline(
        ctx,
        state,
        activities_api::EntityRef {
            kind: match entity {
                Entity::Contact => activities_api::EntityKind::Contact,
                Entity::Company => activities_api::EntityKind::Company,
            },
            id,
        },
        None,
        &std::collections::HashMap::new(),
    )
    .await?;
    html(
        status,
        &ShowTpl {
            ctx,
            kind: kind_str(entity),
            id,
            fields,
            timeline,
            name,
            v,
            phones,
            emails,
            links,
            choices,
            deals,
            pipelines,
            duplicates,
            errors,
        },
    )
}

/// Not found unless the contact or company is one of the account's that the caller can see
/// (for links to it made from another page).
pub(crate) async fn must_see(
    state: &AppState,
    caller: Caller,
    entity: Entity,
    id: i64,
) -> Result<(), AppError> {
    let c = &state.modules.contacts;
    match entity {
        Entity::Contact => c.contact(caller, ContactId(id)).await.map(drop),
        Entity::Company => c.company(caller, CompanyId(id)).await.map(drop),
    }
}

#[derive(serde::Deserialize)]
pub struct NewDealForm {
    name: String,
    pipeline: i64,
}

/// A new deal from a contact's or a company's page, linked to it (a contact becomes its main
/// contact) and opened.
async fn new_deal_of(
    ctx: &Ctx,
    state: &AppState,
    entity: Entity,
    id: i64,
    form: &NewDealForm,
) -> PageResult {
    let caller = ctx.caller()?;
    must_see(state, caller, entity, id).await?;
    let mut new = deals_api::NewDeal::new(deals_api::PipelineId(form.pipeline), form.name.trim());
    match entity {
        Entity::Contact => {
            new.contact_ids = vec![id];
            new.main_contact_id = Some(id);
        }
        Entity::Company => new.company_ids = vec![id],
    }
    match state.modules.deals.create_deal(caller, new).await {
        Ok(d) => see_other(&format!("/deals/{}", d.id), Some("deals.created")),
        Err(e) => back_to_record(ctx, state, entity, id, Err(e), "").await,
    }
}

pub async fn contact_new_deal(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<NewDealForm>,
) -> PageResult {
    new_deal_of(&ctx, &state, Entity::Contact, *path, &form).await
}

pub async fn company_new_deal(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: web::Form<NewDealForm>,
) -> PageResult {
    new_deal_of(&ctx, &state, Entity::Company, *path, &form).await
}

/// Merges the ticked (or chosen) records into the one whose page this is.
async fn merge_into(
    ctx: &Ctx,
    state: &AppState,
    entity: Entity,
    keep: i64,
    form: &[(String, String)],
) -> PageResult {
    let caller = ctx.caller()?;
    let others: Vec<i64> = form
        .iter()
        .filter(|(k, _)| k == "other")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let c = &state.modules.contacts;
    let result = match entity {
        Entity::Contact => c
            .merge_contacts(
                caller,
                ContactId(keep),
                others.into_iter().map(ContactId).collect(),
            )
            .await
            .map(|_| ()),
        Entity::Company => c
            .merge_companies(
                caller,
                CompanyId(keep),
                others.into_iter().map(CompanyId).collect(),
            )
            .await
            .map(|_| ()),
    };
    back_to_record(ctx, state, entity, keep, result, "contacts.merged").await
}

/// After a change on a record's page: back to the page with `done`, or the page again with
/// the form's errors.
async fn back_to_record(
    ctx: &Ctx,
    state: &AppState,
    entity: Entity,
    id: i64,
    result: Result<(), AppError>,
    done: &str,
) -> PageResult {
    match result {
        Ok(()) => see_other(&format!("/{}/{id}", kind_str(entity)), Some(done)),
        Err(e) if is_form_error(&e) => {
            show(
                ctx,
                state,
                entity,
                id,
                super::form_status(&e),
                FormErrors::from_error(&e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn merge(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    merge_into(&ctx, &state, Entity::Contact, *path, &f).await
}

pub async fn merge_company(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    merge_into(&ctx, &state, Entity::Company, *path, &f).await
}

pub async fn contact(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    show(
        &ctx,
        &state,
        Entity::Contact,
        *path,
        StatusCode::OK,
        FormErrors::none(),
    )
    .await
}

pub async fn company(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    show(
        &ctx,
        &state,
        Entity::Company,
        *path,
        StatusCode::OK,
        FormErrors::none(),
    )
    .await
}

async fn save(
    ctx: &Ctx,
    state: &AppState,
    entity: Entity,
    id: i64,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let caller = ctx.caller()?;
    let c = &state.modules.contacts;
    let g = |k: &str| filter::get(&pairs, k).to_string();
    // The page edits numbers and addresses as text: the ones left as they were keep their type.
    let (old_phones, old_emails) = match entity {
        Entity::Contact => {
            let x = c.contact(caller, ContactId(id)).await?;
            (x.phones, x.emails)
        }
        Entity::Company => {
            let x = c.company(caller, CompanyId(id)).await?;
            (x.phones, x.emails)
        }
    };
    let phones = Some(
        reach_list(&pairs, "phone", "phone_kind")
            .into_iter()
            .map(|mut r| {
                if let Some(p) = old_phones.iter().find(|p| p.raw == r.value) {
                    r.kind = p.kind.clone();
                }
                r
            })
            .collect(),
    );
    let emails = Some(
        reach_list(&pairs, "email", "email_kind")
            .into_iter()
            .map(|mut r| {
                if let Some(e) = old_emails
                    .iter()
                    .find(|e| e.email == r.value.trim().to_lowercase())
                {
                    r.kind = e.kind.clone();
                }
                r
            })
            .collect(),
    );
    let tags = Some(super::deals::split_tags(&g("tags")));
    let defs = c.custom_fields(caller, entity).await?;
    let custom_fields = Some(super::deals::deal::form_values(&defs, &pairs));
    let result = match entity {
        Entity::Contact => c
            .update_contact(
                caller,
                ContactId(id),
                ContactPatch {
                    first_name: Some(g("first_name")),
                    last_name: Some(g("last_name")),
                    position: Some(g("position")),
                    phones,
                    emails,
                    tags,
                    custom_fields,
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
        Entity::Company => c
            .update_company(
                caller,
                CompanyId(id),
                CompanyPatch {
                    name: Some(g("name")),
                    web: Some(g("web")),
                    address: Some(g("address")),
                    phones,
                    emails,
                    tags,
                    custom_fields,
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
    };
    back_to_record(ctx, state, entity, id, result, "contacts.saved").await
}

pub async fn save_contact(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save(&ctx, &state, Entity::Contact, *path, f.into_inner()).await
}

pub async fn save_company(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    save(&ctx, &state, Entity::Company, *path, f.into_inner()).await
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct LinkForm {
    company_id: i64,
    unlink: String,
}

pub async fn link(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<LinkForm>,
) -> PageResult {
    let caller = ctx.caller()?;
    let (contact, company) = (ContactId(*path), CompanyId(f.company_id));
    if f.unlink.is_empty() {
        state
            .modules
            .contacts
            .link(caller, contact, company)
            .await?;
    } else {
        state
            .modules
            .contacts
            .unlink(caller, contact, company)
            .await?;
    }
    see_other(&format!("/contacts/{contact}"), Some("contacts.saved"))
}

#[derive(Template)]
#[template(path = "contacts/duplicates.html")]
struct DuplicatesTpl<'a> {
    ctx: &'a Ctx,
    kind: &'static str,
    groups: Vec<contacts_api::DuplicateGroup>,
    next: Option<String>,
}

const GROUPS_PER_PAGE: u32 = 50;

/// Find duplicates: contacts sharing a phone or an e-mail, each group mergeable into its oldest.
pub async fn duplicates(
    ctx: Ctx,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let after = filter::get(&q, "after");
    let groups = state
        .modules
        .contacts
        .duplicate_groups(
            caller,
            (!after.is_empty()).then(|| after.to_string()),
            GROUPS_PER_PAGE,
        )
        .await?;
    // The next page's query string (the shared value may hold "+" or "@").
    let next = (groups.len() as u32 == GROUPS_PER_PAGE)
        .then(|| groups.last())
        .flatten()
        .and_then(|g| serde_urlencoded::to_string([("after", g.matched.as_str())]).ok());
    html(
        StatusCode::OK,
        &DuplicatesTpl {
            ctx: &ctx,
            kind: "contacts",
            groups,
            next,
        },
    )
}
