//! `ContactsService`: the contacts module's implementation of the `Contacts` trait.

use std::collections::HashMap;
use std::sync::Arc;

use accounts_api::access::{self, Scope};
use accounts_api::{Accounts, Action};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contacts_api::events::{
    CompanyCreated, CompanyDeleted, CompanyUpdated, ContactCreated, ContactDeleted, ContactLinked,
    ContactUpdated,
};
use contacts_api::*;
use diesel::dsl::now;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Float4, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::db::DbPool;
use kernel::events::{DomainEvent, EventEnvelope};
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, AppError, AppResult, Caller, FieldError, UserId, fields, outbox, reach};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::schema::{
    companies, contact_companies, contacts, custom_field_enums, custom_fields, emails,
    field_groups, phones, segments, tags,
};

pub struct ContactsService {
    pub(crate) pool: DbPool,
    pub(crate) accounts: Arc<dyn Accounts>,
    /// The schema pg_trgm lives in (looked up once): its functions and operators are qualified.
    trgm: OnceCell<String>,
}

pub(crate) fn rights_entity(e: Entity) -> accounts_api::Entity {
    match e {
        Entity::Contact => accounts_api::Entity::Contacts,
        Entity::Company => accounts_api::Entity::Companies,
    }
}

pub(crate) fn actor_of(caller: Caller) -> i64 {
    caller.actor.user_id().map(|u| u.0).unwrap_or(0)
}

pub(crate) fn err(field: impl Into<String>, code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

/// The most tags on a contact or a company.
pub(crate) const MAX_TAGS: usize = 50;

fn finish(errors: Vec<FieldError>) -> AppResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::from_fields(errors))
    }
}

pub(crate) fn text(field: &str, value: &str, max: usize, errors: &mut Vec<FieldError>) -> String {
    let v = value.trim().to_string();
    if v.chars().count() > max {
        errors.push(err(field, "too_long", format!("at most {max} characters")));
    }
    v
}

/// Checked phones: (type, as typed, normalised).
fn check_phones(
    given: &[Reach],
    country: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    if given.len() > MAX_PHONES {
        errors.push(err(
            "phones",
            "too_many",
            format!("at most {MAX_PHONES} phones"),
        ));
    }
    for (i, p) in given.iter().enumerate() {
        if p.value.trim().is_empty() {
            continue;
        }
        let kind = p.kind.trim().to_uppercase();
        if !PHONE_KINDS.contains(&kind.as_str()) {
            errors.push(err(
                format!("phones[{i}].kind"),
                "invalid",
                "an unknown phone type",
            ));
            continue;
        }
        match reach::normalize_phone(&p.value, country) {
            Ok(n) if out.iter().any(|(_, _, x)| *x == n) => {}
            Ok(n) => out.push((kind, p.value.trim().chars().take(50).collect(), n)),
            Err(e) => errors.push(err(format!("phones[{i}]"), e.code, e.message)),
        }
    }
    out
}

fn check_emails(given: &[Reach], errors: &mut Vec<FieldError>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if given.len() > MAX_EMAILS {
        errors.push(err(
            "emails",
            "too_many",
            format!("at most {MAX_EMAILS} e-mails"),
        ));
    }
    for (i, e) in given.iter().enumerate() {
        if e.value.trim().is_empty() {
            continue;
        }
        let kind = e.kind.trim().to_uppercase();
        if !EMAIL_KINDS.contains(&kind.as_str()) {
            errors.push(err(
                format!("emails[{i}].kind"),
                "invalid",
                "an unknown e-mail type",
            ));
            continue;
        }
        match reach::normalize_email(&e.value) {
            Ok(n) if out.iter().any(|(_, x)| *x == n) => {}
            Ok(n) => out.push((kind, n)),
            Err(x) => errors.push(err(format!("emails[{i}]"), x.code, x.message)),
        }
    }
    out
}

#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = contacts, check_for_backend(diesel::pg::Pg))]
struct ContactRow {
    id: i64,
    account_id: i64,
    first_name: String,
    last_name: String,
    name: String,
    position: String,
    responsible_user_id: i64,
    tag_ids: Vec<i64>,
    custom_fields: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = companies, check_for_backend(diesel::pg::Pg))]
struct CompanyRow {
    id: i64,
    account_id: i64,
    name: String,
    web: String,
    address: String,
    responsible_user_id: i64,
    tag_ids: Vec<i64>,
    custom_fields: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(crate) fn object(v: &Value) -> FieldValues {
    match v {
        Value::Object(m) => m.clone(),
        _ => FieldValues::new(),
    }
}

/// Phones, e-mails, tag names and links of a set of contacts or companies, in a few queries.
struct Extras {
    phones: HashMap<i64, Vec<Phone>>,
    emails: HashMap<i64, Vec<Email>>,
    tags: HashMap<i64, String>,
    links: HashMap<i64, Vec<i64>>,
}

impl Extras {
    async fn load(
        conn: &mut AsyncPgConnection,
        account: AccountId,
        entity: Entity,
        ids: &[i64],
        tag_ids: &[i64],
    ) -> AppResult<Extras> {
        let mut out = Extras {
            phones: HashMap::new(),
            emails: HashMap::new(),
            tags: HashMap::new(),
            links: HashMap::new(),
        };
        if ids.is_empty() {
            return Ok(out);
        }
        let rows: Vec<(i64, String, String, String)> = phones::table
            .filter(phones::account_id.eq(account.0))
            .filter(phones::owner_kind.eq(entity.as_str()))
            .filter(phones::owner_id.eq_any(ids))
            .order((phones::owner_id, phones::sort, phones::id))
            .select((
                phones::owner_id,
                phones::kind,
                phones::raw,
                phones::normalized,
            ))
            .load(conn)
            .await?;
        for (owner, kind, raw, normalized) in rows {
            out.phones.entry(owner).or_default().push(Phone {
                kind,
                raw,
                normalized,
            });
        }
        let rows: Vec<(i64, String, String)> = emails::table
            .filter(emails::account_id.eq(account.0))
            .filter(emails::owner_kind.eq(entity.as_str()))
            .filter(emails::owner_id.eq_any(ids))
            .order((emails::owner_id, emails::sort, emails::id))
            .select((emails::owner_id, emails::kind, emails::email))
            .load(conn)
            .await?;
        for (owner, kind, email) in rows {
            out.emails
                .entry(owner)
                .or_default()
                .push(Email { kind, email });
        }
        if !tag_ids.is_empty() {
            let rows: Vec<(i64, String)> = tags::table
                .filter(tags::account_id.eq(account.0))
                .filter(tags::id.eq_any(tag_ids))
                .select((tags::id, tags::name))
                .load(conn)
                .await?;
            out.tags = rows.into_iter().collect();
        }
        let links: Vec<(i64, i64)> = match entity {
            Entity::Contact => {
                contact_companies::table
                    .filter(contact_companies::account_id.eq(account.0))
                    .filter(contact_companies::contact_id.eq_any(ids))
                    .select((contact_companies::contact_id, contact_companies::company_id))
                    .load(conn)
                    .await?
            }
            Entity::Company => {
                contact_companies::table
                    .filter(contact_companies::account_id.eq(account.0))
                    .filter(contact_companies::company_id.eq_any(ids))
                    .select((contact_companies::company_id, contact_companies::contact_id))
                    .load(conn)
                    .await?
            }
        };
        for (owner, other) in links {
            out.links.entry(owner).or_default().push(other);
        }
        Ok(out)
    }

    fn tag_list(&self, ids: &[i64]) -> Vec<Tag> {
        ids.iter()
            .filter_map(|id| {
                self.tags.get(id).map(|name| Tag {
                    id: TagId(*id),
                    name: name.clone(),
                })
            })
            .collect()
    }
}

async fn contacts_out(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: Vec<ContactRow>,
) -> AppResult<Vec<Contact>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let tag_ids: Vec<i64> = rows.iter().flat_map(|r| r.tag_ids.clone()).collect();
    let mut x = Extras::load(conn, account, Entity::Contact, &ids, &tag_ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| Contact {
            id: ContactId(r.id),
            account_id: AccountId(r.account_id),
            phones: x.phones.remove(&r.id).unwrap_or_default(),
            emails: x.emails.remove(&r.id).unwrap_or_default(),
            tags: x.tag_list(&r.tag_ids),
            custom_fields: object(&r.custom_fields),
            company_ids: x
                .links
                .remove(&r.id)
                .unwrap_or_default()
                .into_iter()
                .map(CompanyId)
                .collect(),
            first_name: r.first_name,
            last_name: r.last_name,
            name: r.name,
            position: r.position,
            responsible_user_id: UserId(r.responsible_user_id),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

async fn companies_out(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: Vec<CompanyRow>,
) -> AppResult<Vec<Company>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let tag_ids: Vec<i64> = rows.iter().flat_map(|r| r.tag_ids.clone()).collect();
    let mut x = Extras::load(conn, account, Entity::Company, &ids, &tag_ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| Company {
            id: CompanyId(r.id),
            account_id: AccountId(r.account_id),
            phones: x.phones.remove(&r.id).unwrap_or_default(),
            emails: x.emails.remove(&r.id).unwrap_or_default(),
            tags: x.tag_list(&r.tag_ids),
            custom_fields: object(&r.custom_fields),
            contact_ids: x
                .links
                .remove(&r.id)
                .unwrap_or_default()
                .into_iter()
                .map(ContactId)
                .collect(),
            name: r.name,
            web: r.web,
            address: r.address,
            responsible_user_id: UserId(r.responsible_user_id),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

/// Replaces an owner's phones and e-mails.
async fn write_reach(
    tx: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
    owner: i64,
    phone_list: Option<&[(String, String, String)]>,
    email_list: Option<&[(String, String)]>,
) -> AppResult<()> {
    let kind = entity.as_str();
    if let Some(list) = phone_list {
        diesel::delete(
            phones::table
                .filter(phones::account_id.eq(account.0))
                .filter(phones::owner_kind.eq(kind))
                .filter(phones::owner_id.eq(owner)),
        )
        .execute(tx)
        .await?;
        if !list.is_empty() {
            diesel::sql_query(
                "INSERT INTO contacts.phones (account_id, owner_kind, owner_id, kind, raw, normalized, sort)
                 SELECT $1, $2, $3, k, r, n, s FROM unnest($4::text[], $5::text[], $6::text[], $7::int[]) AS x(k, r, n, s)",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<Text, _>(kind)
            .bind::<BigInt, _>(owner)
            .bind::<Array<Text>, _>(list.iter().map(|p| p.0.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(list.iter().map(|p| p.1.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(list.iter().map(|p| p.2.as_str()).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>((0..list.len() as i32).collect::<Vec<_>>())
            .execute(tx)
            .await?;
        }
    }
    if let Some(list) = email_list {
        diesel::delete(
            emails::table
                .filter(emails::account_id.eq(account.0))
                .filter(emails::owner_kind.eq(kind))
                .filter(emails::owner_id.eq(owner)),
        )
        .execute(tx)
        .await?;
        if !list.is_empty() {
            diesel::sql_query(
                "INSERT INTO contacts.emails (account_id, owner_kind, owner_id, kind, email, sort)
                 SELECT $1, $2, $3, k, e, s FROM unnest($4::text[], $5::text[], $6::int[]) AS x(k, e, s)",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<Text, _>(kind)
            .bind::<BigInt, _>(owner)
            .bind::<Array<Text>, _>(list.iter().map(|e| e.0.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(list.iter().map(|e| e.1.as_str()).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>((0..list.len() as i32).collect::<Vec<_>>())
            .execute(tx)
            .await?;
        }
    }
    Ok(())
}

/// The ids of the named tags of an entity type, created when missing.
pub(crate) async fn ensure_tags(
    tx: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
    names: &[String],
) -> AppResult<Vec<i64>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "INSERT INTO contacts.tags (account_id, entity, name) SELECT $1, $2, n FROM unnest($3::text[]) n
         ON CONFLICT (account_id, entity, lower(name)) DO NOTHING",
    )
    .bind::<BigInt, _>(account.0)
    .bind::<Text, _>(entity.as_str())
    .bind::<Array<Text>, _>(names)
    .execute(tx)
    .await?;
    let found: Vec<(i64, String)> = tags::table
        .filter(tags::account_id.eq(account.0))
        .filter(tags::entity.eq(entity.as_str()))
        .select((tags::id, tags::name))
        .load(tx)
        .await?;
    Ok(names
        .iter()
        .filter_map(|n| {
            found
                .iter()
                .find(|(_, f)| f.to_lowercase() == n.to_lowercase())
                .map(|(id, _)| *id)
        })
        .collect())
}

pub(crate) async fn load_fields(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
) -> AppResult<Vec<CustomField>> {
    let rows: Vec<(i64, String, String, i32, Option<i64>)> = custom_fields::table
        .filter(custom_fields::account_id.eq(account.0))
        .filter(custom_fields::entity.eq(entity.as_str()))
        .order((custom_fields::sort, custom_fields::id))
        .select((
            custom_fields::id,
            custom_fields::name,
            custom_fields::field_type,
            custom_fields::sort,
            custom_fields::group_id,
        ))
        .load(conn)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let enums: Vec<(i64, i64, String, i32)> = custom_field_enums::table
        .filter(custom_field_enums::account_id.eq(account.0))
        .filter(custom_field_enums::field_id.eq_any(&ids))
        .order((custom_field_enums::sort, custom_field_enums::id))
        .select((
            custom_field_enums::field_id,
            custom_field_enums::id,
            custom_field_enums::value,
            custom_field_enums::sort,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, ty, sort, group_id)| CustomField {
            id: FieldId(id),
            entity,
            name,
            field_type: FieldType::parse(&ty).unwrap_or(FieldType::Text),
            sort,
            group_id,
            enums: enums
                .iter()
                .filter(|e| e.0 == id)
                .map(|e| FieldEnum {
                    id: e.1,
                    value: e.2.clone(),
                    sort: e.3,
                })
                .collect(),
        })
        .collect())
}

/// The most custom fields an entity type may have.
const MAX_FIELDS: i64 = 200;

/// The table holding an entity type's records (and their field values).
fn records_table(entity: &str) -> &'static str {
    if entity == Entity::Company.as_str() {
        "contacts.companies"
    } else {
        "contacts.contacts"
    }
}

fn taken(e: diesel::result::Error, field: &str, message: &str) -> AppError {
    match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => AppError::validation(field, "taken", message),
        other => other.into(),
    }
}

/// Checks a field definition (its group must be of the same entity type); returns the trimmed
/// name and the distinct choices' texts.
async fn check_field(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
    new: &NewCustomField,
) -> AppResult<(String, Vec<String>)> {
    let mut errors = Vec::new();
    let name = text("name", &new.name, 100, &mut errors);
    if name.is_empty() {
        errors.push(err("name", "required", "enter a name"));
    }
    let enums = fields::check_choices(new.field_type, &new.enums, &mut errors);
    if let Some(group) = new.group_id {
        let found: i64 = field_groups::table
            .filter(field_groups::account_id.eq(account.0))
            .filter(field_groups::entity.eq(entity.as_str()))
            .filter(field_groups::id.eq(group))
            .count()
            .get_result(conn)
            .await?;
        if found == 0 {
            errors.push(err("group_id", "not_found", "no such field group"));
        }
    }
    finish(errors)?;
    Ok((name, enums))
}

async fn field_by_id(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: i64,
) -> AppResult<CustomField> {
    let entity: Option<String> = custom_fields::table
        .filter(custom_fields::account_id.eq(account.0))
        .filter(custom_fields::id.eq(id))
        .select(custom_fields::entity)
        .first(conn)
        .await
        .optional()?;
    let entity = entity
        .and_then(|e| Entity::parse(&e))
        .ok_or_else(|| AppError::not_found("field"))?;
    load_fields(conn, account, entity)
        .await?
        .into_iter()
        .find(|f| f.id.0 == id)
        .ok_or_else(|| AppError::not_found("field"))
}

/// An entity type's field groups, in order.
pub(crate) async fn load_groups(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
) -> AppResult<Vec<FieldGroup>> {
    let rows: Vec<(i64, String, i32)> = field_groups::table
        .filter(field_groups::account_id.eq(account.0))
        .filter(field_groups::entity.eq(entity.as_str()))
        .order((field_groups::sort, field_groups::id))
        .select((field_groups::id, field_groups::name, field_groups::sort))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, sort)| FieldGroup { id, name, sort })
        .collect())
}

async fn group_by_id(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: i64,
) -> AppResult<FieldGroup> {
    let row: Option<(String, i32)> = field_groups::table
        .filter(field_groups::account_id.eq(account.0))
        .filter(field_groups::id.eq(id))
        .select((field_groups::name, field_groups::sort))
        .first(conn)
        .await
        .optional()?;
    row.map(|(name, sort)| FieldGroup { id, name, sort })
        .ok_or_else(|| AppError::not_found("field group"))
}

/// The records to merge into `keep`: distinct, not `keep`, one to twenty.
fn merge_targets(keep: i64, others: &[i64], what: &str) -> AppResult<Vec<i64>> {
    let mut others: Vec<i64> = others.iter().copied().filter(|o| *o != keep).collect();
    others.sort_unstable();
    others.dedup();
    if others.is_empty() {
        return Err(AppError::validation(
            "others",
            "required",
            &format!("choose the {what} to merge into this one"),
        ));
    }
    if others.len() > 20 {
        return Err(AppError::validation(
            "others",
            "too_many",
            "at most 20 at once",
        ));
    }
    Ok(others)
}

/// What merged records add up to: every phone, e-mail and tag once (the kept record's first),
/// and custom-field values (the kept record's win).
#[derive(Default)]
struct Merged {
    phones: Vec<(String, String, String)>,
    emails: Vec<(String, String)>,
    tag_ids: Vec<i64>,
    values: FieldValues,
}

impl Merged {
    fn add(&mut self, phones: &[Phone], emails: &[Email], tags: &[Tag], values: &FieldValues) {
        for p in phones {
            if !self.phones.iter().any(|x| x.2 == p.normalized) {
                self.phones
                    .push((p.kind.clone(), p.raw.clone(), p.normalized.clone()));
            }
        }
        for e in emails {
            if !self.emails.iter().any(|x| x.1 == e.email) {
                self.emails.push((e.kind.clone(), e.email.clone()));
            }
        }
        for t in tags {
            if !self.tag_ids.contains(&t.id.0) {
                self.tag_ids.push(t.id.0);
            }
        }
        for (k, v) in values {
            self.values.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// The merged records' phones and e-mails go (the kept one has them now).
async fn drop_merged_reach(
    tx: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
    others: &[i64],
) -> AppResult<()> {
    diesel::delete(
        phones::table
            .filter(phones::account_id.eq(account.0))
            .filter(phones::owner_kind.eq(entity.as_str()))
            .filter(phones::owner_id.eq_any(others)),
    )
    .execute(tx)
    .await?;
    diesel::delete(
        emails::table
            .filter(emails::account_id.eq(account.0))
            .filter(emails::owner_kind.eq(entity.as_str()))
            .filter(emails::owner_id.eq_any(others)),
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) fn envelope<E: DomainEvent>(caller: Caller, e: &E) -> AppResult<EventEnvelope> {
    EventEnvelope::new(caller, e)
}

/// Before/after maps of what changed.
#[derive(Default)]
pub(crate) struct Diff {
    pub(crate) before: serde_json::Map<String, Value>,
    pub(crate) after: serde_json::Map<String, Value>,
}

impl Diff {
    pub(crate) fn add(&mut self, key: &str, b: Value, a: Value) {
        if b != a {
            self.before.insert(key.into(), b);
            self.after.insert(key.into(), a);
        }
    }
}

fn phones_json(p: &[Phone]) -> Value {
    Value::from(p.iter().map(|x| x.normalized.clone()).collect::<Vec<_>>())
}

fn emails_json(e: &[Email]) -> Value {
    Value::from(e.iter().map(|x| x.email.clone()).collect::<Vec<_>>())
}

fn tags_json(t: &[Tag]) -> Value {
    Value::from(t.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
}

/// The parts of a contact's or a company's patch they share, as given.
struct Reaches<'a> {
    phones: Option<&'a [Reach]>,
    emails: Option<&'a [Reach]>,
    tags: Option<&'a [String]>,
    responsible: Option<UserId>,
    custom_fields: Option<&'a FieldValues>,
}

/// Those parts checked (`None`: left as they are), with the field definitions the custom
/// values need.
struct Checked {
    phone_list: Option<Vec<(String, String, String)>>,
    email_list: Option<Vec<(String, String)>>,
    tag_names: Option<Vec<String>>,
    responsible: Option<UserId>,
    defs: Vec<CustomField>,
}

impl ContactsService {
    /// The record a repeated command (one with a request key, the caller's cause) made the
    /// first time, in `table` (contacts or companies).
    async fn requested(&self, caller: Caller, table: &str) -> AppResult<Option<i64>> {
        let Some(key) = caller.cause else {
            return Ok(None);
        };
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        let text = match table {
            "companies" => {
                "SELECT id FROM contacts.companies WHERE account_id = $1 AND request_key = $2"
            }
            _ => "SELECT id FROM contacts.contacts WHERE account_id = $1 AND request_key = $2",
        };
        let mut conn = self.conn().await?;
        let found: Option<Found> = kernel::sql::query(text)
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<diesel::sql_types::Uuid, _>(key)
            .get_result(&mut conn)
            .await
            .optional()?;
        Ok(found.map(|f| f.id))
    }

    /// Checks the shared parts of a patch; `errors` are the entity's own so far, refused
    /// together with these.
    async fn check_patch(
        &self,
        conn: &mut AsyncPgConnection,
        caller: Caller,
        entity: Entity,
        given: Reaches<'_>,
        mut errors: Vec<FieldError>,
    ) -> AppResult<Checked> {
        let country = match given.phones {
            Some(p) if !p.is_empty() => self.country(caller).await?,
            _ => String::new(),
        };
        let phone_list = given
            .phones
            .map(|p| check_phones(p, Some(&country), &mut errors));
        let email_list = given.emails.map(|e| check_emails(e, &mut errors));
        let tag_names = given
            .tags
            .map(|t| fields::clean_tags(t, MAX_TAGS, &mut errors));
        finish(errors)?;
        let responsible = match given.responsible {
            Some(u) => Some(access::responsible(&*self.accounts, caller, Some(u)).await?),
            None => None,
        };
        let defs = match given.custom_fields {
            Some(v) if !v.is_empty() => load_fields(conn, caller.account_id, entity).await?,
            _ => Vec::new(),
        };
        Ok(Checked {
            phone_list,
            email_list,
            tag_names,
            responsible,
            defs,
        })
    }

    pub fn new(pool: DbPool, accounts: Arc<dyn Accounts>) -> ContactsService {
        ContactsService {
            pool,
            accounts,
            trgm: OnceCell::new(),
        }
    }

    pub(crate) async fn conn(&self) -> AppResult<kernel::db::DbConn> {
        Ok(self.pool.get().await?)
    }

    pub(crate) async fn scope(
        &self,
        caller: Caller,
        entity: Entity,
        action: Action,
    ) -> AppResult<Scope> {
        access::scope(&*self.accounts, caller, rights_entity(entity), action).await
    }

    /// Field definitions and groups are managed by active administrators (and the system).
    async fn require_field_admin(&self, caller: Caller) -> AppResult<()> {
        if let Some(me) = caller.actor.user_id() {
            let user = self.accounts.user(caller, me).await?;
            if !(user.is_admin && user.is_active) {
                return Err(AppError::forbidden("only administrators manage fields"));
            }
        }
        Ok(())
    }

    pub(crate) async fn country(&self, caller: Caller) -> AppResult<String> {
        Ok(self.accounts.account(caller.account_id).await?.country)
    }

    async fn trgm_schema(&self, conn: &mut AsyncPgConnection) -> AppResult<String> {
        self.trgm
            .get_or_try_init(|| async {
                #[derive(QueryableByName)]
                struct Home {
                    #[diesel(sql_type = Text)]
                    nspname: String,
                }
                let home: Home = diesel::sql_query(
                    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                      WHERE e.extname = 'pg_trgm'",
                )
                .get_result(conn)
                .await?;
                Ok::<_, AppError>(home.nspname)
            })
            .await
            .cloned()
    }

    async fn visible_contact(
        &self,
        conn: &mut AsyncPgConnection,
        caller: Caller,
        scope: &Scope,
        id: ContactId,
        lock: bool,
    ) -> AppResult<ContactRow> {
        let q = contacts::table
            .filter(contacts::account_id.eq(caller.account_id.0))
            .filter(contacts::id.eq(id.0))
            .filter(contacts::deleted_at.is_null())
            .select(ContactRow::as_select());
        let row = if lock {
            q.for_update().first(conn).await.optional()?
        } else {
            q.first(conn).await.optional()?
        }
        .ok_or_else(|| AppError::not_found("contact"))?;
        if !scope.allows(UserId(row.responsible_user_id)) {
            return Err(AppError::not_found("contact"));
        }
        Ok(row)
    }

    async fn visible_company(
        &self,
        conn: &mut AsyncPgConnection,
        caller: Caller,
        scope: &Scope,
        id: CompanyId,
        lock: bool,
    ) -> AppResult<CompanyRow> {
        let q = companies::table
            .filter(companies::account_id.eq(caller.account_id.0))
            .filter(companies::id.eq(id.0))
            .filter(companies::deleted_at.is_null())
            .select(CompanyRow::as_select());
        let row = if lock {
            q.for_update().first(conn).await.optional()?
        } else {
            q.first(conn).await.optional()?
        }
        .ok_or_else(|| AppError::not_found("company"))?;
        if !scope.allows(UserId(row.responsible_user_id)) {
            return Err(AppError::not_found("company"));
        }
        Ok(row)
    }
}

#[async_trait]
impl Contacts for ContactsService {
    async fn create_contact(&self, caller: Caller, new: NewContact) -> AppResult<Contact> {
        self.scope(caller, Entity::Contact, Action::Create).await?;
        if let Some(id) = self.requested(caller, "contacts").await? {
            return self.contact(caller, ContactId(id)).await;
        }
        let mut errors = Vec::new();
        let first = text("first_name", &new.first_name, 100, &mut errors);
        let last = text("last_name", &new.last_name, 100, &mut errors);
        let name = format!("{first} {last}").trim().to_string();
        if name.is_empty() {
            errors.push(err("first_name", "required", "enter a name"));
        }
        let position = text("position", &new.position, 255, &mut errors);
        let country = if new.phones.is_empty() {
            String::new()
        } else {
            self.country(caller).await?
        };
        let phone_list = check_phones(&new.phones, Some(&country), &mut errors);
        let email_list = check_emails(&new.emails, &mut errors);
        let tag_names = fields::clean_tags(&new.tags, MAX_TAGS, &mut errors);
        finish(errors)?;
        let responsible = access::responsible(
            &*self.accounts,
            caller,
            new.responsible_user_id.or(caller.actor.user_id()),
        )
        .await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let values = if new.custom_fields.is_empty() {
            FieldValues::new()
        } else {
            let defs = load_fields(&mut conn, account, Entity::Contact).await?;
            let mut errors = Vec::new();
            let v =
                fields::apply_values(&defs, &FieldValues::new(), &new.custom_fields, &mut errors);
            finish(errors)?;
            v
        };
        let company_ids: Vec<i64> = new.company_ids.iter().map(|c| c.0).collect();
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let tag_ids = ensure_tags(tx, account, Entity::Contact, &tag_names).await?;
                let id: i64 = diesel::insert_into(contacts::table)
                    .values((
                        contacts::account_id.eq(account.0),
                        contacts::first_name.eq(&first),
                        contacts::last_name.eq(&last),
                        contacts::name.eq(&name),
                        contacts::position.eq(&position),
                        contacts::responsible_user_id.eq(responsible.0),
                        contacts::tag_ids.eq(&tag_ids),
                        contacts::custom_fields.eq(Value::Object(values.clone())),
                        contacts::created_by.eq(actor_of(caller)),
                        contacts::updated_by.eq(actor_of(caller)),
                    ))
                    .returning(contacts::id)
                    .get_result(tx)
                    .await?;
                if let Some(key) = caller.cause {
                    kernel::sql::query(
                        "UPDATE contacts.contacts SET request_key = $2 WHERE id = $1",
                    )
                    .bind::<BigInt, _>(id)
                    .bind::<diesel::sql_types::Uuid, _>(key)
                    .execute(tx)
                    .await?;
                }
                write_reach(
                    tx,
                    account,
                    Entity::Contact,
                    id,
                    Some(&phone_list),
                    Some(&email_list),
                )
                .await?;
                if !company_ids.is_empty() {
                    let found: i64 = companies::table
                        .filter(companies::account_id.eq(account.0))
                        .filter(companies::id.eq_any(&company_ids))
                        .filter(companies::deleted_at.is_null())
                        .count()
                        .get_result(tx)
                        .await?;
                    if found as usize != company_ids.len() {
                        return Err(AppError::validation(
                            "company_ids",
                            "not_found",
                            "no such company",
                        ));
                    }
                    for c in &company_ids {
                        diesel::insert_into(contact_companies::table)
                            .values((
                                contact_companies::account_id.eq(account.0),
                                contact_companies::contact_id.eq(id),
                                contact_companies::company_id.eq(*c),
                            ))
                            .on_conflict_do_nothing()
                            .execute(tx)
                            .await?;
                    }
                }
                outbox::append(
                    tx,
                    crate::SCHEMA,
                    &[envelope(
                        caller,
                        &ContactCreated {
                            contact_id: ContactId(id),
                            name: name.clone(),
                            responsible_user_id: responsible,
                        },
                    )?],
                )
                .await?;
                Ok(id)
            })
            .await?;
        let row = self
            .visible_contact(&mut conn, caller, &Scope::All, ContactId(id), false)
            .await?;
        Ok(contacts_out(&mut conn, account, vec![row]).await?.remove(0))
    }

    async fn contact(&self, caller: Caller, id: ContactId) -> AppResult<Contact> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        let mut conn = self.conn().await?;
        let row = self
            .visible_contact(&mut conn, caller, &scope, id, false)
            .await?;
        Ok(contacts_out(&mut conn, caller.account_id, vec![row])
            .await?
            .remove(0))
    }

    async fn contacts_by_id(&self, caller: Caller, ids: Vec<ContactId>) -> AppResult<Vec<Contact>> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut q = contacts::table
            .filter(contacts::account_id.eq(caller.account_id.0))
            .filter(contacts::id.eq_any(ids.iter().map(|i| i.0).collect::<Vec<_>>()))
            .filter(contacts::deleted_at.is_null())
            .select(ContactRow::as_select())
            .into_boxed();
        if let Some(users) = scope.ids() {
            q = q.filter(contacts::responsible_user_id.eq_any(users));
        }
        let rows = q.load(&mut conn).await?;
        contacts_out(&mut conn, caller.account_id, rows).await
    }

    async fn update_contact(
        &self,
        caller: Caller,
        id: ContactId,
        patch: ContactPatch,
    ) -> AppResult<Contact> {
        let scope = self.scope(caller, Entity::Contact, Action::Edit).await?;
        let mut errors = Vec::new();
        let first = patch
            .first_name
            .as_deref()
            .map(|v| text("first_name", v, 100, &mut errors));
        let last = patch
            .last_name
            .as_deref()
            .map(|v| text("last_name", v, 100, &mut errors));
        let position = patch
            .position
            .as_deref()
            .map(|v| text("position", v, 255, &mut errors));
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let Checked {
            phone_list,
            email_list,
            tag_names,
            responsible,
            defs,
        } = self
            .check_patch(
                &mut conn,
                caller,
                Entity::Contact,
                Reaches {
                    phones: patch.phones.as_deref(),
                    emails: patch.emails.as_deref(),
                    tags: patch.tags.as_deref(),
                    responsible: patch.responsible_user_id,
                    custom_fields: patch.custom_fields.as_ref(),
                },
                errors,
            )
            .await?;
        let after = conn
            .transaction::<_, AppError, _>(async |tx| {
                let current = self.visible_contact(tx, caller, &scope, id, true).await?;
                let before = contacts_out(tx, account, vec![current.clone()])
                    .await?
                    .remove(0);
                let first = first.clone().unwrap_or(current.first_name.clone());
                let last = last.clone().unwrap_or(current.last_name.clone());
                let name = format!("{first} {last}").trim().to_string();
                let mut errors = Vec::new();
                if name.is_empty() {
                    errors.push(err("first_name", "required", "enter a name"));
                }
                let values = match &patch.custom_fields {
                    Some(input) => fields::apply_values(
                        &defs,
                        &object(&current.custom_fields),
                        input,
                        &mut errors,
                    ),
                    None => object(&current.custom_fields),
                };
                finish(errors)?;
                let tag_ids = match &tag_names {
                    Some(names) => ensure_tags(tx, account, Entity::Contact, names).await?,
                    None => current.tag_ids.clone(),
                };
                diesel::update(contacts::table.filter(contacts::id.eq(current.id)))
                    .set((
                        contacts::first_name.eq(&first),
                        contacts::last_name.eq(&last),
                        contacts::name.eq(&name),
                        contacts::position.eq(position.clone().unwrap_or(current.position.clone())),
                        contacts::responsible_user_id.eq(responsible
                            .map(|u| u.0)
                            .unwrap_or(current.responsible_user_id)),
                        contacts::tag_ids.eq(&tag_ids),
                        contacts::custom_fields.eq(Value::Object(values)),
                        contacts::updated_at.eq(now),
                        contacts::updated_by.eq(actor_of(caller)),
                    ))
                    .execute(tx)
                    .await?;
                write_reach(
                    tx,
                    account,
                    Entity::Contact,
                    current.id,
                    phone_list.as_deref(),
                    email_list.as_deref(),
                )
                .await?;
                let after = {
                    let row = self
                        .visible_contact(tx, caller, &Scope::All, id, false)
                        .await?;
                    contacts_out(tx, account, vec![row]).await?.remove(0)
                };
                let mut d = Diff::default();
                d.add(
                    "name",
                    before.name.clone().into(),
                    after.name.clone().into(),
                );
                d.add(
                    "position",
                    before.position.clone().into(),
                    after.position.clone().into(),
                );
                d.add(
                    "responsible_user_id",
                    before.responsible_user_id.0.into(),
                    after.responsible_user_id.0.into(),
                );
                d.add(
                    "phones",
                    phones_json(&before.phones),
                    phones_json(&after.phones),
                );
                d.add(
                    "emails",
                    emails_json(&before.emails),
                    emails_json(&after.emails),
                );
                d.add("tags", tags_json(&before.tags), tags_json(&after.tags));
                d.add(
                    "custom_fields",
                    Value::Object(before.custom_fields.clone()),
                    Value::Object(after.custom_fields.clone()),
                );
                if !d.after.is_empty() {
                    outbox::append(
                        tx,
                        crate::SCHEMA,
                        &[envelope(
                            caller,
                            &ContactUpdated {
                                contact_id: id,
                                before: d.before.into(),
                                after: d.after.into(),
                            },
                        )?],
                    )
                    .await?;
                }
                Ok(after)
            })
            .await?;
        Ok(after)
    }

    async fn delete_contact(&self, caller: Caller, id: ContactId) -> AppResult<()> {
        let scope = self.scope(caller, Entity::Contact, Action::Delete).await?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let current = self.visible_contact(tx, caller, &scope, id, true).await?;
            diesel::update(contacts::table.filter(contacts::id.eq(current.id)))
                .set((
                    contacts::deleted_at.eq(now),
                    contacts::updated_at.eq(now),
                    contacts::updated_by.eq(actor_of(caller)),
                ))
                .execute(tx)
                .await?;
            outbox::append(
                tx,
                crate::SCHEMA,
                &[envelope(caller, &ContactDeleted { contact_id: id })?],
            )
            .await
        })
        .await
    }

    async fn list_contacts(
        &self,
        caller: Caller,
        filter: &ContactFilter,
        page: PageRequest,
    ) -> AppResult<Page<Contact>> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        let mut conn = self.conn().await?;
        if let [tag] = filter.tags.as_slice() {
            return self
                .list_tagged(&mut conn, caller, &scope, filter, *tag, page)
                .await;
        }
        let mut q = self
            .contact_query(&mut conn, caller.account_id, &scope, filter)
            .await?
            .order((contacts::created_at.desc(), contacts::id.desc()))
            .limit(page.fetch_limit());
        if let Some(after) = &page.after {
            let (t, id): (DateTime<Utc>, i64) = after.decode()?;
            q = q.filter(
                contacts::created_at
                    .lt(t)
                    .or(contacts::created_at.eq(t).and(contacts::id.lt(id))),
            );
        }
        let rows: Vec<ContactRow> = q.select(ContactRow::as_select()).load(&mut conn).await?;
        let page = Page::from_rows(rows, &page, |r| (r.created_at, r.id));
        let next = page.next.clone();
        let items = contacts_out(&mut conn, caller.account_id, page.items).await?;
        Ok(Page { items, next })
    }

    async fn duplicates(
        &self,
        caller: Caller,
        phone_inputs: Vec<String>,
        email_inputs: Vec<String>,
        except: Option<ContactId>,
    ) -> AppResult<Vec<Duplicate>> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        let country = if phone_inputs.is_empty() {
            String::new()
        } else {
            self.country(caller).await?
        };
        let numbers: Vec<String> = phone_inputs
            .iter()
            .filter_map(|p| reach::normalize_phone(p, Some(&country)).ok())
            .collect();
        let addresses: Vec<String> = email_inputs
            .iter()
            .filter_map(|e| reach::normalize_email(e).ok())
            .collect();
        if numbers.is_empty() && addresses.is_empty() {
            return Ok(Vec::new());
        }
        #[derive(QueryableByName)]
        struct Hit {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            name: String,
            #[diesel(sql_type = Text)]
            matched: String,
            #[diesel(sql_type = BigInt)]
            responsible_user_id: i64,
        }
        let mut conn = self.conn().await?;
        let hits: Vec<Hit> = diesel::sql_query(
            "SELECT c.id, c.name, m.matched, c.responsible_user_id FROM (
                 SELECT owner_id, normalized AS matched FROM contacts.phones
                  WHERE account_id = $1 AND owner_kind = 'contact' AND normalized = ANY($2)
                 UNION
                 SELECT owner_id, email FROM contacts.emails
                  WHERE account_id = $1 AND owner_kind = 'contact' AND email = ANY($3)
             ) m JOIN contacts.contacts c ON c.account_id = $1 AND c.id = m.owner_id AND c.deleted_at IS NULL
             WHERE c.id <> $4
             ORDER BY c.id LIMIT 50",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Array<Text>, _>(&numbers)
        .bind::<Array<Text>, _>(&addresses)
        .bind::<BigInt, _>(except.map(|e| e.0).unwrap_or(0))
        .load(&mut conn)
        .await?;
        Ok(hits
            .into_iter()
            .filter(|h| scope.allows(UserId(h.responsible_user_id)))
            .map(|h| Duplicate {
                contact_id: ContactId(h.id),
                name: h.name,
                matched: h.matched,
            })
            .collect())
    }

    async fn merge_contacts(
        &self,
        caller: Caller,
        keep: ContactId,
        others: Vec<ContactId>,
    ) -> AppResult<Contact> {
        let edit_scope = self.scope(caller, Entity::Contact, Action::Edit).await?;
        let delete_scope = self.scope(caller, Entity::Contact, Action::Delete).await?;
        let ids: Vec<i64> = others.iter().map(|o| o.0).collect();
        let others = merge_targets(keep.0, &ids, "contacts")?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let kept = conn
            .transaction::<_, AppError, _>(async |tx| {
                // Every row locked, in id order; all of this account and visible, or nothing.
                let mut all = others.clone();
                all.push(keep.0);
                all.sort_unstable();
                let rows: Vec<ContactRow> = contacts::table
                    .filter(contacts::account_id.eq(account.0))
                    .filter(contacts::id.eq_any(&all))
                    .filter(contacts::deleted_at.is_null())
                    .order(contacts::id)
                    .select(ContactRow::as_select())
                    .for_update()
                    .load(tx)
                    .await?;
                if rows.len() != all.len() {
                    return Err(AppError::not_found("contact"));
                }
                let mut full = contacts_out(tx, account, rows.clone()).await?;
                let pos = full
                    .iter()
                    .position(|c| c.id == keep)
                    .ok_or_else(|| AppError::not_found("contact"))?;
                let target = full.remove(pos);
                if !edit_scope.allows(target.responsible_user_id)
                    || full
                        .iter()
                        .any(|c| !delete_scope.allows(c.responsible_user_id))
                {
                    return Err(AppError::not_found("contact"));
                }
                // Phones and e-mails: the kept contact's first, then the others' new ones.
                let mut merged = Merged::default();
                let mut first = target.first_name.clone();
                let mut last = target.last_name.clone();
                let mut position = target.position.clone();
                let mut companies_all: Vec<i64> = Vec::new();
                for c in std::iter::once(&target).chain(full.iter()) {
                    merged.add(&c.phones, &c.emails, &c.tags, &c.custom_fields);
                    for co in &c.company_ids {
                        if !companies_all.contains(&co.0) {
                            companies_all.push(co.0);
                        }
                    }
                    if first.is_empty() {
                        first = c.first_name.clone();
                    }
                    if last.is_empty() {
                        last = c.last_name.clone();
                    }
                    if position.is_empty() {
                        position = c.position.clone();
                    }
                }
                let name = format!("{first} {last}").trim().to_string();
                diesel::update(contacts::table.filter(contacts::id.eq(keep.0)))
                    .set((
                        contacts::first_name.eq(&first),
                        contacts::last_name.eq(&last),
                        contacts::name.eq(&name),
                        contacts::position.eq(&position),
                        contacts::tag_ids.eq(&merged.tag_ids),
                        contacts::custom_fields.eq(Value::Object(merged.values)),
                        contacts::updated_at.eq(now),
                        contacts::updated_by.eq(actor_of(caller)),
                    ))
                    .execute(tx)
                    .await?;
                write_reach(
                    tx,
                    account,
                    Entity::Contact,
                    keep.0,
                    Some(&merged.phones),
                    Some(&merged.emails),
                )
                .await?;
                for co in &companies_all {
                    diesel::insert_into(contact_companies::table)
                        .values((
                            contact_companies::account_id.eq(account.0),
                            contact_companies::contact_id.eq(keep.0),
                            contact_companies::company_id.eq(*co),
                        ))
                        .on_conflict_do_nothing()
                        .execute(tx)
                        .await?;
                }
                // The merged ones: gone from lists, search and duplicates, pointing at the kept one.
                diesel::update(
                    contacts::table
                        .filter(contacts::account_id.eq(account.0))
                        .filter(contacts::id.eq_any(&others)),
                )
                .set((
                    contacts::deleted_at.eq(now),
                    contacts::merged_into.eq(keep.0),
                    contacts::updated_at.eq(now),
                    contacts::updated_by.eq(actor_of(caller)),
                ))
                .execute(tx)
                .await?;
                drop_merged_reach(tx, account, Entity::Contact, &others).await?;
                diesel::delete(
                    contact_companies::table
                        .filter(contact_companies::account_id.eq(account.0))
                        .filter(contact_companies::contact_id.eq_any(&others)),
                )
                .execute(tx)
                .await?;
                outbox::append(
                    tx,
                    crate::SCHEMA,
                    &[envelope(
                        caller,
                        &contacts_api::events::ContactsMerged {
                            kept: keep,
                            merged: others.iter().map(|o| ContactId(*o)).collect(),
                        },
                    )?],
                )
                .await?;
                let row = self
                    .visible_contact(tx, caller, &Scope::All, keep, false)
                    .await?;
                Ok(contacts_out(tx, account, vec![row]).await?.remove(0))
            })
            .await?;
        Ok(kept)
    }

    async fn duplicate_groups(
        &self,
        caller: Caller,
        after: Option<String>,
        limit: u32,
    ) -> AppResult<Vec<DuplicateGroup>> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        #[derive(QueryableByName)]
        struct Group {
            #[diesel(sql_type = Text)]
            matched: String,
            #[diesel(sql_type = Array<BigInt>)]
            ids: Vec<i64>,
            #[diesel(sql_type = Array<Text>)]
            names: Vec<String>,
        }
        let mut conn = self.conn().await?;
        // Each list walks its (account, value) index in order and stops after `limit` groups.
        let mut groups: Vec<Group> = Vec::new();
        for (table, column) in [("phones", "normalized"), ("emails", "email")] {
            let found: Vec<Group> = diesel::sql_query(format!(
                "SELECT m.{column} AS matched, array_agg(c.id ORDER BY c.id) AS ids,
                        array_agg(c.name ORDER BY c.id) AS names
                   FROM contacts.{table} m
                   JOIN contacts.contacts c ON c.account_id = $1 AND c.id = m.owner_id AND c.deleted_at IS NULL
                  WHERE m.account_id = $1 AND m.owner_kind = 'contact' AND m.{column} > $2
                    AND ($4::bigint[] IS NULL OR c.responsible_user_id = ANY($4))
                  GROUP BY m.{column}
                 HAVING count(DISTINCT c.id) > 1
                  ORDER BY m.{column} LIMIT $3"
            ))
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<Text, _>(after.clone().unwrap_or_default())
            .bind::<BigInt, _>(i64::from(limit.clamp(1, 200)))
            .bind::<diesel::sql_types::Nullable<Array<BigInt>>, _>(scope.ids())
            .load(&mut conn)
            .await?;
            groups.extend(found);
        }
        groups.sort_by(|a, b| a.matched.cmp(&b.matched));
        groups.truncate(limit.clamp(1, 200) as usize);
        Ok(groups
            .into_iter()
            .map(|g| DuplicateGroup {
                matched: g.matched,
                contacts: g.ids.into_iter().map(ContactId).zip(g.names).collect(),
            })
            .collect())
    }

    async fn segments(&self, caller: Caller) -> AppResult<Vec<Segment>> {
        self.scope(caller, Entity::Contact, Action::View).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<(i64, String, Value)> = segments::table
            .filter(segments::account_id.eq(caller.account_id.0))
            .filter(segments::entity.eq(Entity::Contact.as_str()))
            .order(segments::name)
            .select((segments::id, segments::name, segments::filter))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, filter)| Segment {
                id: SegmentId(id),
                name,
                filter: serde_json::from_value(filter).unwrap_or_default(),
            })
            .collect())
    }

    async fn save_segment(
        &self,
        caller: Caller,
        name: &str,
        filter: ContactFilter,
    ) -> AppResult<Segment> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        let mut errors = Vec::new();
        let name = text("name", name, 100, &mut errors);
        if name.is_empty() {
            errors.push(err("name", "required", "give the segment a name"));
        }
        finish(errors)?;
        let mut conn = self.conn().await?;
        // A filter that does not hold (an unknown field, a wrong value) is refused now.
        self.contact_query(&mut conn, caller.account_id, &scope, &filter)
            .await?;
        let json = serde_json::to_value(&filter).map_err(|e| AppError::internal(e.to_string()))?;
        let id: i64 = diesel::insert_into(segments::table)
            .values((
                segments::account_id.eq(caller.account_id.0),
                segments::entity.eq(Entity::Contact.as_str()),
                segments::name.eq(&name),
                segments::filter.eq(&json),
                segments::created_by.eq(actor_of(caller)),
            ))
            .returning(segments::id)
            .get_result(&mut conn)
            .await
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ) => AppError::validation("name", "taken", "a segment with this name exists"),
                other => other.into(),
            })?;
        Ok(Segment {
            id: SegmentId(id),
            name,
            filter,
        })
    }

    async fn delete_segment(&self, caller: Caller, id: SegmentId) -> AppResult<()> {
        self.scope(caller, Entity::Contact, Action::View).await?;
        let mut conn = self.conn().await?;
        let n = diesel::delete(
            segments::table
                .filter(segments::account_id.eq(caller.account_id.0))
                .filter(segments::id.eq(id.0)),
        )
        .execute(&mut conn)
        .await?;
        if n == 0 {
            return Err(AppError::not_found("segment"));
        }
        Ok(())
    }

    async fn segment_size(&self, caller: Caller, id: SegmentId) -> AppResult<SegmentSize> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        let mut conn = self.conn().await?;
        let (filter, size, capped, counted_at): (Value, Option<i32>, bool, Option<DateTime<Utc>>) =
            segments::table
                .filter(segments::account_id.eq(caller.account_id.0))
                .filter(segments::id.eq(id.0))
                .select((
                    segments::filter,
                    segments::size,
                    segments::size_capped,
                    segments::counted_at,
                ))
                .first(&mut conn)
                .await
                .optional()?
                .ok_or_else(|| AppError::not_found("segment"))?;
        // Those who see every contact share one count, kept for a minute.
        let fresh = counted_at.is_some_and(|t| Utc::now() - t < chrono::TimeDelta::seconds(60));
        if let (Scope::All, Some(n), true) = (&scope, size, fresh) {
            return Ok(SegmentSize {
                count: n as i64,
                capped,
            });
        }
        let filter: ContactFilter = serde_json::from_value(filter).unwrap_or_default();
        let ids: Vec<i64> = self
            .contact_query(&mut conn, caller.account_id, &scope, &filter)
            .await?
            .select(contacts::id)
            .limit(SEGMENT_COUNT_CAP + 1)
            .load(&mut conn)
            .await?;
        let capped = ids.len() as i64 > SEGMENT_COUNT_CAP;
        let count = (ids.len() as i64).min(SEGMENT_COUNT_CAP);
        if scope == Scope::All {
            diesel::update(segments::table.filter(segments::id.eq(id.0)))
                .set((
                    segments::size.eq(count as i32),
                    segments::size_capped.eq(capped),
                    segments::counted_at.eq(now),
                ))
                .execute(&mut conn)
                .await?;
        }
        Ok(SegmentSize { count, capped })
    }

    async fn in_segment(
        &self,
        caller: Caller,
        id: SegmentId,
        contacts: Vec<ContactId>,
    ) -> AppResult<Vec<ContactId>> {
        let scope = self.scope(caller, Entity::Contact, Action::View).await?;
        let mut conn = self.conn().await?;
        let filter: Value = segments::table
            .filter(segments::account_id.eq(caller.account_id.0))
            .filter(segments::id.eq(id.0))
            .select(segments::filter)
            .first(&mut conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("segment"))?;
        let filter: ContactFilter = serde_json::from_value(filter).unwrap_or_default();
        let ids: Vec<i64> = self
            .contact_query(&mut conn, caller.account_id, &scope, &filter)
            .await?
            .filter(contacts::id.eq_any(contacts.iter().map(|c| c.0).collect::<Vec<_>>()))
            .select(contacts::id)
            .load(&mut conn)
            .await?;
        Ok(ids.into_iter().map(ContactId).collect())
    }

    async fn create_company(&self, caller: Caller, new: NewCompany) -> AppResult<Company> {
        self.scope(caller, Entity::Company, Action::Create).await?;
        if let Some(id) = self.requested(caller, "companies").await? {
            return self.company(caller, CompanyId(id)).await;
        }
        let mut errors = Vec::new();
        let name = text("name", &new.name, 255, &mut errors);
        if name.is_empty() {
            errors.push(err("name", "required", "enter a name"));
        }
        let web = text("web", &new.web, 2048, &mut errors);
        let address = text("address", &new.address, 1000, &mut errors);
        let country = if new.phones.is_empty() {
            String::new()
        } else {
            self.country(caller).await?
        };
        let phone_list = check_phones(&new.phones, Some(&country), &mut errors);
        let email_list = check_emails(&new.emails, &mut errors);
        let tag_names = fields::clean_tags(&new.tags, MAX_TAGS, &mut errors);
        finish(errors)?;
        let responsible = access::responsible(
            &*self.accounts,
            caller,
            new.responsible_user_id.or(caller.actor.user_id()),
        )
        .await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let values = if new.custom_fields.is_empty() {
            FieldValues::new()
        } else {
            let defs = load_fields(&mut conn, account, Entity::Company).await?;
            let mut errors = Vec::new();
            let v =
                fields::apply_values(&defs, &FieldValues::new(), &new.custom_fields, &mut errors);
            finish(errors)?;
            v
        };
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let tag_ids = ensure_tags(tx, account, Entity::Company, &tag_names).await?;
                let id: i64 = diesel::insert_into(companies::table)
                    .values((
                        companies::account_id.eq(account.0),
                        companies::name.eq(&name),
                        companies::web.eq(&web),
                        companies::address.eq(&address),
                        companies::responsible_user_id.eq(responsible.0),
                        companies::tag_ids.eq(&tag_ids),
                        companies::custom_fields.eq(Value::Object(values.clone())),
                        companies::created_by.eq(actor_of(caller)),
                        companies::updated_by.eq(actor_of(caller)),
                    ))
                    .returning(companies::id)
                    .get_result(tx)
                    .await?;
                if let Some(key) = caller.cause {
                    kernel::sql::query(
                        "UPDATE contacts.companies SET request_key = $2 WHERE id = $1",
                    )
                    .bind::<BigInt, _>(id)
                    .bind::<diesel::sql_types::Uuid, _>(key)
                    .execute(tx)
                    .await?;
                }
                write_reach(
                    tx,
                    account,
                    Entity::Company,
                    id,
                    Some(&phone_list),
                    Some(&email_list),
                )
                .await?;
                outbox::append(
                    tx,
                    crate::SCHEMA,
                    &[envelope(
                        caller,
                        &CompanyCreated {
                            company_id: CompanyId(id),
                            name: name.clone(),
                            responsible_user_id: responsible,
                        },
                    )?],
                )
                .await?;
                Ok(id)
            })
            .await?;
        let row = self
            .visible_company(&mut conn, caller, &Scope::All, CompanyId(id), false)
            .await?;
        Ok(companies_out(&mut conn, account, vec![row])
            .await?
            .remove(0))
    }

    async fn company(&self, caller: Caller, id: CompanyId) -> AppResult<Company> {
        let scope = self.scope(caller, Entity::Company, Action::View).await?;
        let mut conn = self.conn().await?;
        let row = self
            .visible_company(&mut conn, caller, &scope, id, false)
            .await?;
        Ok(companies_out(&mut conn, caller.account_id, vec![row])
            .await?
            .remove(0))
    }

    async fn update_company(
        &self,
        caller: Caller,
        id: CompanyId,
        patch: CompanyPatch,
    ) -> AppResult<Company> {
        let scope = self.scope(caller, Entity::Company, Action::Edit).await?;
        let mut errors = Vec::new();
        let name = patch
            .name
            .as_deref()
            .map(|v| text("name", v, 255, &mut errors));
        if name.as_deref() == Some("") {
            errors.push(err("name", "required", "enter a name"));
        }
        let web = patch
            .web
            .as_deref()
            .map(|v| text("web", v, 2048, &mut errors));
        let address = patch
            .address
            .as_deref()
            .map(|v| text("address", v, 1000, &mut errors));
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let Checked {
            phone_list,
            email_list,
            tag_names,
            responsible,
            defs,
        } = self
            .check_patch(
                &mut conn,
                caller,
                Entity::Company,
                Reaches {
                    phones: patch.phones.as_deref(),
                    emails: patch.emails.as_deref(),
                    tags: patch.tags.as_deref(),
                    responsible: patch.responsible_user_id,
                    custom_fields: patch.custom_fields.as_ref(),
                },
                errors,
            )
            .await?;
        let after = conn
            .transaction::<_, AppError, _>(async |tx| {
                let current = self.visible_company(tx, caller, &scope, id, true).await?;
                let before = companies_out(tx, account, vec![current.clone()])
                    .await?
                    .remove(0);
                let mut errors = Vec::new();
                let values = match &patch.custom_fields {
                    Some(input) => fields::apply_values(
                        &defs,
                        &object(&current.custom_fields),
                        input,
                        &mut errors,
                    ),
                    None => object(&current.custom_fields),
                };
                finish(errors)?;
                let tag_ids = match &tag_names {
                    Some(names) => ensure_tags(tx, account, Entity::Company, names).await?,
                    None => current.tag_ids.clone(),
                };
                diesel::update(companies::table.filter(companies::id.eq(current.id)))
                    .set((
                        companies::name.eq(name.clone().unwrap_or(current.name.clone())),
                        companies::web.eq(web.clone().unwrap_or(current.web.clone())),
                        companies::address.eq(address.clone().unwrap_or(current.address.clone())),
                        companies::responsible_user_id.eq(responsible
                            .map(|u| u.0)
                            .unwrap_or(current.responsible_user_id)),
                        companies::tag_ids.eq(&tag_ids),
                        companies::custom_fields.eq(Value::Object(values)),
                        companies::updated_at.eq(now),
                        companies::updated_by.eq(actor_of(caller)),
                    ))
                    .execute(tx)
                    .await?;
                write_reach(
                    tx,
                    account,
                    Entity::Company,
                    current.id,
                    phone_list.as_deref(),
                    email_list.as_deref(),
                )
                .await?;
                let after = {
                    let row = self
                        .visible_company(tx, caller, &Scope::All, id, false)
                        .await?;
                    companies_out(tx, account, vec![row]).await?.remove(0)
                };
                let mut d = Diff::default();
                d.add(
                    "name",
                    before.name.clone().into(),
                    after.name.clone().into(),
                );
                d.add("web", before.web.clone().into(), after.web.clone().into());
                d.add(
                    "address",
                    before.address.clone().into(),
                    after.address.clone().into(),
                );
                d.add(
                    "responsible_user_id",
                    before.responsible_user_id.0.into(),
                    after.responsible_user_id.0.into(),
                );
                d.add(
                    "phones",
                    phones_json(&before.phones),
                    phones_json(&after.phones),
                );
                d.add(
                    "emails",
                    emails_json(&before.emails),
                    emails_json(&after.emails),
                );
                d.add("tags", tags_json(&before.tags), tags_json(&after.tags));
                d.add(
                    "custom_fields",
                    Value::Object(before.custom_fields.clone()),
                    Value::Object(after.custom_fields.clone()),
                );
                if !d.after.is_empty() {
                    outbox::append(
                        tx,
                        crate::SCHEMA,
                        &[envelope(
                            caller,
                            &CompanyUpdated {
                                company_id: id,
                                before: d.before.into(),
                                after: d.after.into(),
                            },
                        )?],
                    )
                    .await?;
                }
                Ok(after)
            })
            .await?;
        Ok(after)
    }

    async fn delete_company(&self, caller: Caller, id: CompanyId) -> AppResult<()> {
        let scope = self.scope(caller, Entity::Company, Action::Delete).await?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let current = self.visible_company(tx, caller, &scope, id, true).await?;
            diesel::update(companies::table.filter(companies::id.eq(current.id)))
                .set((
                    companies::deleted_at.eq(now),
                    companies::updated_at.eq(now),
                    companies::updated_by.eq(actor_of(caller)),
                ))
                .execute(tx)
                .await?;
            outbox::append(
                tx,
                crate::SCHEMA,
                &[envelope(caller, &CompanyDeleted { company_id: id })?],
            )
            .await
        })
        .await
    }

    async fn merge_companies(
        &self,
        caller: Caller,
        keep: CompanyId,
        others: Vec<CompanyId>,
    ) -> AppResult<Company> {
        let edit_scope = self.scope(caller, Entity::Company, Action::Edit).await?;
        let delete_scope = self.scope(caller, Entity::Company, Action::Delete).await?;
        let ids: Vec<i64> = others.iter().map(|o| o.0).collect();
        let others = merge_targets(keep.0, &ids, "companies")?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let mut all = others.clone();
            all.push(keep.0);
            all.sort_unstable();
            let rows: Vec<CompanyRow> = companies::table
                .filter(companies::account_id.eq(account.0))
                .filter(companies::id.eq_any(&all))
                .filter(companies::deleted_at.is_null())
                .order(companies::id)
                .select(CompanyRow::as_select())
                .for_update()
                .load(tx)
                .await?;
            if rows.len() != all.len() {
                return Err(AppError::not_found("company"));
            }
            let mut full = companies_out(tx, account, rows).await?;
            let pos = full
                .iter()
                .position(|c| c.id == keep)
                .ok_or_else(|| AppError::not_found("company"))?;
            let target = full.remove(pos);
            if !edit_scope.allows(target.responsible_user_id)
                || full
                    .iter()
                    .any(|c| !delete_scope.allows(c.responsible_user_id))
            {
                return Err(AppError::not_found("company"));
            }
            let mut merged = Merged::default();
            let (mut web, mut address) = (target.web.clone(), target.address.clone());
            for c in std::iter::once(&target).chain(full.iter()) {
                merged.add(&c.phones, &c.emails, &c.tags, &c.custom_fields);
                if web.is_empty() {
                    web = c.web.clone();
                }
                if address.is_empty() {
                    address = c.address.clone();
                }
            }
            diesel::update(companies::table.filter(companies::id.eq(keep.0)))
                .set((
                    companies::web.eq(&web),
                    companies::address.eq(&address),
                    companies::tag_ids.eq(&merged.tag_ids),
                    companies::custom_fields.eq(Value::Object(merged.values)),
                    companies::updated_at.eq(now),
                    companies::updated_by.eq(actor_of(caller)),
                ))
                .execute(tx)
                .await?;
            write_reach(
                tx,
                account,
                Entity::Company,
                keep.0,
                Some(&merged.phones),
                Some(&merged.emails),
            )
            .await?;
            // The merged companies' people work for the kept one.
            diesel::sql_query(
                "INSERT INTO contacts.contact_companies (account_id, contact_id, company_id)
                 SELECT account_id, contact_id, $3 FROM contacts.contact_companies
                  WHERE account_id = $1 AND company_id = ANY($2)
                 ON CONFLICT DO NOTHING",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<Array<BigInt>, _>(&others)
            .bind::<BigInt, _>(keep.0)
            .execute(tx)
            .await?;
            diesel::delete(
                contact_companies::table
                    .filter(contact_companies::account_id.eq(account.0))
                    .filter(contact_companies::company_id.eq_any(&others)),
            )
            .execute(tx)
            .await?;
            diesel::update(
                companies::table
                    .filter(companies::account_id.eq(account.0))
                    .filter(companies::id.eq_any(&others)),
            )
            .set((
                companies::deleted_at.eq(now),
                companies::merged_into.eq(keep.0),
                companies::updated_at.eq(now),
                companies::updated_by.eq(actor_of(caller)),
            ))
            .execute(tx)
            .await?;
            drop_merged_reach(tx, account, Entity::Company, &others).await?;
            outbox::append(
                tx,
                crate::SCHEMA,
                &[envelope(
                    caller,
                    &contacts_api::events::CompaniesMerged {
                        kept: keep,
                        merged: others.iter().map(|o| CompanyId(*o)).collect(),
                    },
                )?],
            )
            .await?;
            Ok(())
        })
        .await?;
        self.company(caller, keep).await
    }

    async fn list_companies(
        &self,
        caller: Caller,
        filter: &ContactFilter,
        page: PageRequest,
    ) -> AppResult<Page<Company>> {
        let scope = self.scope(caller, Entity::Company, Action::View).await?;
        let mut conn = self.conn().await?;
        let mut q = companies::table
            .filter(companies::account_id.eq(caller.account_id.0))
            .filter(companies::deleted_at.is_null())
            .order((companies::created_at.desc(), companies::id.desc()))
            .limit(page.fetch_limit())
            .select(CompanyRow::as_select())
            .into_boxed();
        if let Some(users) = scope.ids() {
            q = q.filter(companies::responsible_user_id.eq_any(users));
        }
        if !filter.responsible.is_empty() {
            q = q.filter(
                companies::responsible_user_id
                    .eq_any(filter.responsible.iter().map(|u| u.0).collect::<Vec<_>>()),
            );
        }
        if !filter.tags.is_empty() {
            q = q.filter(
                companies::tag_ids
                    .overlaps_with(filter.tags.iter().map(|t| t.0).collect::<Vec<_>>()),
            );
        }
        if let Some(after) = &page.after {
            let (t, id): (DateTime<Utc>, i64) = after.decode()?;
            q = q.filter(
                companies::created_at
                    .lt(t)
                    .or(companies::created_at.eq(t).and(companies::id.lt(id))),
            );
        }
        let rows = q.load(&mut conn).await?;
        let page = Page::from_rows(rows, &page, |r| (r.created_at, r.id));
        let next = page.next.clone();
        let items = companies_out(&mut conn, caller.account_id, page.items).await?;
        Ok(Page { items, next })
    }

    async fn restore_provenance(
        &self,
        caller: Caller,
        entity: Entity,
        items: Vec<kernel::provenance::Provenance>,
    ) -> AppResult<usize> {
        use diesel::sql_types::Timestamptz;
        kernel::provenance::check(&items)?;
        access::system_or_admin(&*self.accounts, caller).await?;
        if items.is_empty() {
            return Ok(0);
        }
        // The table is one of two fixed names, never input.
        let table = match entity {
            Entity::Contact => "contacts.contacts",
            Entity::Company => "contacts.companies",
        };
        let mut conn = self.conn().await?;
        let changed = kernel::sql::query(format!(
            "UPDATE {table} r
                SET created_at = x.created_at, updated_at = x.updated_at,
                    created_by = x.created_by, updated_by = x.updated_by
               FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], $6::bigint[])
                    AS x(id, created_at, updated_at, created_by, updated_by)
              WHERE r.account_id = $1 AND r.id = x.id AND r.deleted_at IS NULL"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Array<BigInt>, _>(items.iter().map(|p| p.id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(items.iter().map(|p| p.created_at).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(items.iter().map(|p| p.updated_at).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(items.iter().map(|p| p.created_by).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(items.iter().map(|p| p.updated_by).collect::<Vec<_>>())
        .execute(&mut conn)
        .await?;
        Ok(changed)
    }

    async fn link(&self, caller: Caller, contact: ContactId, company: CompanyId) -> AppResult<()> {
        self.set_link(caller, contact, company, true).await
    }

    async fn unlink(
        &self,
        caller: Caller,
        contact: ContactId,
        company: CompanyId,
    ) -> AppResult<()> {
        self.set_link(caller, contact, company, false).await
    }

    async fn search(&self, caller: Caller, query: &str, limit: u32) -> AppResult<Vec<SearchHit>> {
        let q = query.trim();
        if q.chars().count() < 2 {
            return Ok(Vec::new());
        }
        let contacts_scope = self.scope(caller, Entity::Contact, Action::View).await;
        let companies_scope = self.scope(caller, Entity::Company, Action::View).await;
        let mut conn = self.conn().await?;
        let trgm = self.trgm_schema(&mut conn).await?;
        let limit = i64::from(limit.clamp(1, 100));
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            entity: String,
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            name: String,
            #[diesel(sql_type = Text)]
            detail: String,
            #[diesel(sql_type = Float4)]
            rank: f32,
            #[diesel(sql_type = BigInt)]
            responsible_user_id: i64,
        }
        let like = kernel::db::like_pattern(q);
        let digits = reach::phone_digits(q).unwrap_or_default();
        // A whole number typed the national way (8 916 …) matches its E.164 form exactly.
        let whole = if digits.len() >= 10 {
            let country = self.country(caller).await?;
            reach::normalize_phone(q, Some(&country))
                .ok()
                .filter(|n| n.starts_with('+'))
                .unwrap_or_default()
        } else {
            String::new()
        };
        // Names: any part (ILIKE, served by the trigram index) or similar enough (typos);
        // phones by their digits; e-mails by any part. Best first.
        // A whole e-mail address is looked up exactly; a part of one by trigrams.
        let whole_email = reach::normalize_email(q).unwrap_or_default();
        let scope_ids = |s: &AppResult<Scope>| match s {
            Ok(s) => s.ids(),
            Err(_) => Some(Vec::new()),
        };
        // Only the parts the query can match: a whole phone number or e-mail address is looked
        // up exactly (by index), digits as part of a phone, anything else as (part of) a name or
        // an e-mail.
        let names = format!(
            "(SELECT 'contact' AS entity, c.id, c.name, ''::text AS detail,
                     (1 - ($2 OPERATOR({t}.<<->) c.name))::real AS rank, c.responsible_user_id
                FROM contacts.contacts c
               WHERE c.account_id = $1 AND c.deleted_at IS NULL
                 AND ($7::bigint[] IS NULL OR c.responsible_user_id = ANY($7))
               ORDER BY $2 OPERATOR({t}.<<->) c.name LIMIT $5)
             UNION ALL
             (SELECT 'company', c.id, c.name, '',
                     (1 - ($2 OPERATOR({t}.<<->) c.name))::real, c.responsible_user_id
                FROM contacts.companies c
               WHERE c.account_id = $1 AND c.deleted_at IS NULL
                 AND ($8::bigint[] IS NULL OR c.responsible_user_id = ANY($8))
               ORDER BY $2 OPERATOR({t}.<<->) c.name LIMIT $5)",
            t = trgm
        );
        let owner = |table: &str, alias: &str, shown: &str, rank: &str, cond: &str| {
            format!(
                "SELECT {alias}.owner_kind AS entity, {alias}.owner_id AS id, coalesce(c.name, co.name) AS name,
                        {alias}.{shown} AS detail, {rank}::real AS rank,
                        coalesce(c.responsible_user_id, co.responsible_user_id) AS responsible_user_id
                   FROM contacts.{table} {alias}
                   LEFT JOIN contacts.contacts c ON {alias}.owner_kind = 'contact' AND c.account_id = $1 AND c.id = {alias}.owner_id AND c.deleted_at IS NULL
                   LEFT JOIN contacts.companies co ON {alias}.owner_kind = 'company' AND co.account_id = $1 AND co.id = {alias}.owner_id AND co.deleted_at IS NULL
                  WHERE {alias}.account_id = $1 AND {cond} AND coalesce(c.id, co.id) IS NOT NULL"
            )
        };
        let parts: Vec<String> = if !whole.is_empty() {
            vec![owner("phones", "p", "raw", "3", "p.normalized = $6")]
        } else if !digits.is_empty() {
            vec![owner(
                "phones",
                "p",
                "raw",
                "3",
                "p.normalized LIKE '%' || $4 || '%'",
            )]
        } else if !whole_email.is_empty() {
            vec![owner("emails", "e", "email", "4", "e.email = $9")]
        } else if q.contains('@') {
            vec![owner("emails", "e", "email", "2", "e.email LIKE lower($3)")]
        } else if q.contains('.') {
            // A domain, or a name with a dot.
            vec![
                names,
                owner("emails", "e", "email", "2", "e.email LIKE lower($3)"),
            ]
        } else {
            vec![names]
        };
        let sql = format!(
            "SELECT * FROM ({}) hits
              -- Names: close enough by word similarity, or containing the text.
              WHERE rank >= 0.4 OR (detail = '' AND name ILIKE $3)
              ORDER BY rank DESC, name, id LIMIT $5",
            parts.join(" UNION ALL ")
        );
        let rows: Vec<Row> = diesel::sql_query(sql)
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<Text, _>(q)
            .bind::<Text, _>(&like)
            .bind::<Text, _>(&digits)
            .bind::<BigInt, _>(limit * 2)
            .bind::<Text, _>(&whole)
            .bind::<diesel::sql_types::Nullable<Array<BigInt>>, _>(scope_ids(&contacts_scope))
            .bind::<diesel::sql_types::Nullable<Array<BigInt>>, _>(scope_ids(&companies_scope))
            .bind::<Text, _>(&whole_email)
            .load(&mut conn)
            .await?;
        let mut out: Vec<SearchHit> = Vec::new();
        for r in rows {
            let entity = Entity::parse(&r.entity).unwrap_or(Entity::Contact);
            let scope = match entity {
                Entity::Contact => contacts_scope.as_ref(),
                Entity::Company => companies_scope.as_ref(),
            };
            if !scope.is_ok_and(|s| s.allows(UserId(r.responsible_user_id))) {
                continue;
            }
            // One line per record: its best match.
            if out.iter().any(|h| h.entity == entity && h.id == r.id) {
                continue;
            }
            out.push(SearchHit {
                entity,
                id: r.id,
                name: r.name,
                detail: r.detail,
                rank: r.rank,
            });
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn custom_fields(&self, caller: Caller, entity: Entity) -> AppResult<Vec<CustomField>> {
        self.scope(caller, entity, Action::View).await?;
        let mut conn = self.conn().await?;
        load_fields(&mut conn, caller.account_id, entity).await
    }

    async fn create_custom_field(
        &self,
        caller: Caller,
        entity: Entity,
        new: NewCustomField,
    ) -> AppResult<CustomField> {
        self.require_field_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let (name, enums) = check_field(&mut conn, account, entity, &new).await?;
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let count: i64 = custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .filter(custom_fields::entity.eq(entity.as_str()))
                    .count()
                    .get_result(tx)
                    .await?;
                if count >= MAX_FIELDS {
                    return Err(AppError::validation(
                        "name",
                        "too_many",
                        &format!("at most {MAX_FIELDS} fields"),
                    ));
                }
                let id: i64 = diesel::insert_into(custom_fields::table)
                    .values((
                        custom_fields::account_id.eq(account.0),
                        custom_fields::entity.eq(entity.as_str()),
                        custom_fields::name.eq(&name),
                        custom_fields::field_type.eq(new.field_type.as_str()),
                        custom_fields::sort.eq(count as i32),
                        custom_fields::group_id.eq(new.group_id),
                    ))
                    .returning(custom_fields::id)
                    .get_result(tx)
                    .await
                    .map_err(|e| taken(e, "name", "a field with this name exists"))?;
                fields::write_choices(
                    tx,
                    "contacts",
                    records_table(entity.as_str()),
                    account,
                    id,
                    &enums,
                )
                .await?;
                Ok(id)
            })
            .await?;
        field_by_id(&mut conn, account, id).await
    }

    async fn update_custom_field(
        &self,
        caller: Caller,
        id: FieldId,
        new: NewCustomField,
    ) -> AppResult<CustomField> {
        self.require_field_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let existing = field_by_id(&mut conn, account, id.0).await?;
        if existing.field_type != new.field_type {
            return Err(AppError::validation(
                "field_type",
                "immutable",
                "a field's type cannot change",
            ));
        }
        let entity = existing.entity;
        let (name, enums) = check_field(&mut conn, account, entity, &new).await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            diesel::update(
                custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .filter(custom_fields::id.eq(id.0)),
            )
            .set((
                custom_fields::name.eq(&name),
                custom_fields::group_id.eq(new.group_id),
            ))
            .execute(tx)
            .await
            .map_err(|e| taken(e, "name", "a field with this name exists"))?;
            if new.field_type.has_enums() {
                fields::write_choices(
                    tx,
                    "contacts",
                    records_table(entity.as_str()),
                    account,
                    id.0,
                    &enums,
                )
                .await?;
            }
            Ok(())
        })
        .await?;
        field_by_id(&mut conn, account, id.0).await
    }

    async fn delete_custom_field(&self, caller: Caller, id: FieldId) -> AppResult<()> {
        self.require_field_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let entity: Option<String> = diesel::delete(
                custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .filter(custom_fields::id.eq(id.0)),
            )
            .returning(custom_fields::entity)
            .get_result(tx)
            .await
            .optional()?;
            let Some(entity) = entity else {
                return Err(AppError::not_found("field"));
            };
            diesel::sql_query(format!(
                "UPDATE {} SET custom_fields = custom_fields - $2
                  WHERE account_id = $1 AND custom_fields ? $2",
                records_table(&entity)
            ))
            .bind::<diesel::sql_types::BigInt, _>(account.0)
            .bind::<diesel::sql_types::Text, _>(id.0.to_string())
            .execute(tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn field_groups(&self, caller: Caller, entity: Entity) -> AppResult<Vec<FieldGroup>> {
        self.scope(caller, entity, Action::View).await?;
        let mut conn = self.conn().await?;
        load_groups(&mut conn, caller.account_id, entity).await
    }

    async fn create_field_group(
        &self,
        caller: Caller,
        entity: Entity,
        new: NewFieldGroup,
    ) -> AppResult<FieldGroup> {
        self.require_field_admin(caller).await?;
        let name = fields::group_name(&new.name)?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let existing = load_groups(tx, account, entity).await?;
                if existing.len() >= fields::MAX_GROUPS {
                    return Err(AppError::validation(
                        "name",
                        "too_many",
                        &format!("at most {} field groups", fields::MAX_GROUPS),
                    ));
                }
                let sort = new
                    .sort
                    .unwrap_or_else(|| existing.iter().map(|g| g.sort + 1).max().unwrap_or(0));
                diesel::insert_into(field_groups::table)
                    .values((
                        field_groups::account_id.eq(account.0),
                        field_groups::entity.eq(entity.as_str()),
                        field_groups::name.eq(&name),
                        field_groups::sort.eq(sort),
                    ))
                    .returning(field_groups::id)
                    .get_result::<i64>(tx)
                    .await
                    .map_err(|e| taken(e, "name", "a field group with this name exists"))
            })
            .await?;
        group_by_id(&mut conn, account, id).await
    }

    async fn update_field_group(
        &self,
        caller: Caller,
        id: i64,
        new: NewFieldGroup,
    ) -> AppResult<FieldGroup> {
        self.require_field_admin(caller).await?;
        let name = fields::group_name(&new.name)?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let current = group_by_id(&mut conn, account, id).await?;
        diesel::update(
            field_groups::table
                .filter(field_groups::account_id.eq(account.0))
                .filter(field_groups::id.eq(id)),
        )
        .set((
            field_groups::name.eq(&name),
            field_groups::sort.eq(new.sort.unwrap_or(current.sort)),
        ))
        .execute(&mut conn)
        .await
        .map_err(|e| taken(e, "name", "a field group with this name exists"))?;
        group_by_id(&mut conn, account, id).await
    }

    async fn delete_field_group(&self, caller: Caller, id: i64) -> AppResult<()> {
        self.require_field_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            diesel::update(
                custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .filter(custom_fields::group_id.eq(id)),
            )
            .set(custom_fields::group_id.eq(None::<i64>))
            .execute(tx)
            .await?;
            let n = diesel::delete(
                field_groups::table
                    .filter(field_groups::account_id.eq(account.0))
                    .filter(field_groups::id.eq(id)),
            )
            .execute(tx)
            .await?;
            if n == 0 {
                return Err(AppError::not_found("field group"));
            }
            Ok(())
        })
        .await
    }

    async fn seed_contacts(
        &self,
        caller: Caller,
        count: i64,
        users: Vec<UserId>,
    ) -> AppResult<i64> {
        if let Some(me) = caller.actor.user_id() {
            let user = self.accounts.user(caller, me).await?;
            if !(user.is_admin && user.is_active) {
                return Err(AppError::forbidden("only administrators seed data"));
            }
        }
        if !(1..=10_000_000).contains(&count) || users.is_empty() {
            return Err(AppError::validation(
                "count",
                "out_of_range",
                "1 to 10,000,000 contacts, and at least one user",
            ));
        }
        let users: Vec<i64> = users.iter().map(|u| u.0).collect();
        let account = caller.account_id.0;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let tags = ensure_tags(
                tx,
                caller.account_id,
                Entity::Contact,
                &["vip".to_string(), "partner".to_string()],
            )
            .await?;
            // Names from two lists, a Russian mobile number and an address per contact; every
            // 10th is "vip", every 25th a "partner"; a third were contacted in the last 100 days.
            diesel::sql_query(
                "CREATE TEMP TABLE seeded ON COMMIT DROP AS
                 WITH ins AS (
                   INSERT INTO contacts.contacts (account_id, first_name, last_name, name, responsible_user_id, created_at,
                                                  tag_ids, last_contacted_at)
                   SELECT $1, f, l || ' ' || g, f || ' ' || l || ' ' || g, ($2::bigint[])[1 + g % cardinality($2::bigint[])],
                          now() - make_interval(mins => (g % 100000)::int),
                          CASE WHEN g % 50 = 0 THEN $4::bigint[] WHEN g % 10 = 0 THEN $4[1:1] WHEN g % 25 = 0 THEN $4[2:2] ELSE '{}' END,
                          CASE WHEN g % 3 = 0 THEN now() - make_interval(days => (g % 100)::int) END
                     FROM generate_series(1, $3) g,
                          LATERAL (SELECT (ARRAY['Anna','Boris','Olga','Ivan','Maria','Pavel','Elena','Sergey','Irina','Dmitry'])[1 + g % 10] AS f,
                                          (ARRAY['Petrov','Ivanova','Smirnov','Kuznetsova','Popov','Volkova','Sokolov','Lebedeva'])[1 + (g / 10) % 8] AS l) n
                   RETURNING id)
                 SELECT id, row_number() OVER (ORDER BY id) AS n FROM ins",
            )
            .bind::<BigInt, _>(account)
            .bind::<Array<BigInt>, _>(&users)
            .bind::<BigInt, _>(count)
            .bind::<Array<BigInt>, _>(&tags)
            .execute(tx)
            .await?;
            diesel::sql_query(
                "INSERT INTO contacts.phones (account_id, owner_kind, owner_id, kind, raw, normalized)
                 SELECT $1, 'contact', id, 'MOB', '8 9' || lpad((n % 1000000000)::text, 9, '0'),
                        '+79' || lpad((n % 1000000000)::text, 9, '0') FROM seeded",
            )
            .bind::<BigInt, _>(account)
            .execute(tx)
            .await?;
            diesel::sql_query(
                "INSERT INTO contacts.emails (account_id, owner_kind, owner_id, kind, email)
                 SELECT $1, 'contact', id, 'WORK', 'person' || n || '@example.com' FROM seeded",
            )
            .bind::<BigInt, _>(account)
            .execute(tx)
            .await?;
            Ok(())
        })
        .await?;
        diesel::sql_query("ANALYZE contacts.contacts, contacts.phones, contacts.emails")
            .execute(&mut conn)
            .await?;
        Ok(count)
    }

    async fn upload_import(&self, caller: Caller, upload: ImportUpload) -> AppResult<ImportInfo> {
        self.do_upload_import(caller, upload).await
    }

    async fn import_info(&self, caller: Caller, id: ImportId) -> AppResult<ImportInfo> {
        self.do_import_info(caller, id).await
    }

    async fn imports(&self, caller: Caller) -> AppResult<Vec<ImportInfo>> {
        self.do_imports(caller).await
    }

    async fn start_import(
        &self,
        caller: Caller,
        id: ImportId,
        settings: ImportSettings,
    ) -> AppResult<ImportInfo> {
        self.do_start_import(caller, id, settings).await
    }

    async fn run_import(&self, account: AccountId, id: ImportId) -> AppResult<ImportInfo> {
        self.do_run_import(account, id).await
    }

    async fn import_errors(&self, caller: Caller, id: ImportId) -> AppResult<Vec<ImportRowError>> {
        self.do_import_errors(caller, id).await
    }

    async fn start_export(&self, caller: Caller, request: ExportRequest) -> AppResult<ExportInfo> {
        self.do_start_export(caller, request).await
    }

    async fn run_export(&self, account: AccountId, id: ExportId) -> AppResult<ExportInfo> {
        self.do_run_export(account, id).await
    }

    async fn exports(&self, caller: Caller) -> AppResult<Vec<ExportInfo>> {
        self.do_exports(caller).await
    }

    async fn export_file(&self, caller: Caller, id: ExportId) -> AppResult<ExportFile> {
        self.do_export_file(caller, id).await
    }

    async fn tags(&self, caller: Caller, entity: Entity) -> AppResult<Vec<Tag>> {
        self.scope(caller, entity, Action::View).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<(i64, String)> = tags::table
            .filter(tags::account_id.eq(caller.account_id.0))
            .filter(tags::entity.eq(entity.as_str()))
            .order(tags::name)
            .select((tags::id, tags::name))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| Tag {
                id: TagId(id),
                name,
            })
            .collect())
    }

    async fn create_tags(
        &self,
        caller: Caller,
        entity: Entity,
        names: Vec<String>,
    ) -> AppResult<Vec<Tag>> {
        self.scope(caller, entity, Action::Edit).await?;
        let mut errors = Vec::new();
        let names = fields::clean_tags(&names, 500, &mut errors);
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        let mut conn = self.conn().await?;
        let ids = ensure_tags(&mut conn, caller.account_id, entity, &names).await?;
        let stored: HashMap<i64, String> = tags::table
            .filter(tags::account_id.eq(caller.account_id.0))
            .filter(tags::id.eq_any(&ids))
            .select((tags::id, tags::name))
            .load::<(i64, String)>(&mut conn)
            .await?
            .into_iter()
            .collect();
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                stored.get(&id).map(|name| Tag {
                    id: TagId(id),
                    name: name.clone(),
                })
            })
            .collect())
    }
}

/// Tagged contacts looked at per round when a list is filtered by one tag.
const TAGGED_BATCH: i64 = 500;

impl ContactsService {
    /// A list filtered by one tag, in list order: the tag's contacts are taken newest first
    /// from `contact_tags` in batches, and the rest of the filter and the scope are applied to
    /// each batch, until the page is full. However the tagged contacts are spread among the
    /// others (say, after a large untagged import), the page costs a few index lookups.
    async fn list_tagged(
        &self,
        conn: &mut AsyncPgConnection,
        caller: Caller,
        scope: &Scope,
        filter: &ContactFilter,
        tag: TagId,
        page: PageRequest,
    ) -> AppResult<Page<Contact>> {
        use crate::schema::contact_tags;
        let account = caller.account_id;
        let want = page.fetch_limit();
        let mut cursor: Option<(DateTime<Utc>, i64)> = match &page.after {
            Some(after) => Some(after.decode()?),
            None => None,
        };
        let mut rows: Vec<ContactRow> = Vec::new();
        loop {
            let mut q = contact_tags::table
                .filter(contact_tags::account_id.eq(account.0))
                .filter(contact_tags::tag_id.eq(tag.0))
                .order((
                    contact_tags::created_at.desc(),
                    contact_tags::contact_id.desc(),
                ))
                .limit(TAGGED_BATCH)
                .select((contact_tags::created_at, contact_tags::contact_id))
                .into_boxed();
            if let Some((t, id)) = cursor {
                q = q.filter(
                    contact_tags::created_at.lt(t).or(contact_tags::created_at
                        .eq(t)
                        .and(contact_tags::contact_id.lt(id))),
                );
            }
            let batch: Vec<(DateTime<Utc>, i64)> = q.load(conn).await?;
            let Some(last) = batch.last().copied() else {
                break;
            };
            let ids: Vec<i64> = batch.iter().map(|b| b.1).collect();
            let found: Vec<ContactRow> = self
                .contact_query(conn, account, scope, filter)
                .await?
                .filter(contacts::id.eq_any(ids))
                .order((contacts::created_at.desc(), contacts::id.desc()))
                .limit(want - rows.len() as i64)
                .select(ContactRow::as_select())
                .load(conn)
                .await?;
            rows.extend(found);
            if rows.len() as i64 >= want || (batch.len() as i64) < TAGGED_BATCH {
                break;
            }
            cursor = Some(last);
        }
        let page = Page::from_rows(rows, &page, |r| (r.created_at, r.id));
        let next = page.next.clone();
        let items = contacts_out(conn, account, page.items).await?;
        Ok(Page { items, next })
    }

    /// Live contacts of the account that pass the filter and the scope.
    async fn contact_query(
        &self,
        conn: &mut AsyncPgConnection,
        account: AccountId,
        scope: &Scope,
        filter: &ContactFilter,
    ) -> AppResult<contacts::BoxedQuery<'static, diesel::pg::Pg>> {
        let mut q = contacts::table
            .filter(contacts::account_id.eq(account.0))
            .filter(contacts::deleted_at.is_null())
            .into_boxed();
        if let Some(users) = scope.ids() {
            q = q.filter(contacts::responsible_user_id.eq_any(users));
        }
        if !filter.responsible.is_empty() {
            q = q.filter(
                contacts::responsible_user_id
                    .eq_any(filter.responsible.iter().map(|u| u.0).collect::<Vec<_>>()),
            );
        }
        if !filter.tags.is_empty() {
            q = q.filter(contacts::tag_ids.ne(Vec::<i64>::new())).filter(
                contacts::tag_ids
                    .overlaps_with(filter.tags.iter().map(|t| t.0).collect::<Vec<_>>()),
            );
        }
        if let Some(t) = filter.created_from {
            q = q.filter(contacts::created_at.ge(t));
        }
        if let Some(t) = filter.created_to {
            q = q.filter(contacts::created_at.lt(t));
        }
        match filter.open_deal {
            Some(true) => q = q.filter(contacts::open_deals.gt(0)),
            Some(false) => q = q.filter(contacts::open_deals.eq(0)),
            None => {}
        }
        let days = |n: i32| Utc::now() - chrono::TimeDelta::days(n.clamp(0, 36_500) as i64);
        if let Some(n) = filter.contacted_within_days {
            q = q.filter(contacts::last_contacted_at.ge(days(n)));
        }
        if let Some(n) = filter.not_contacted_days {
            q = q.filter(
                contacts::last_contacted_at
                    .is_null()
                    .or(contacts::last_contacted_at.lt(days(n))),
            );
        }
        if !filter.fields.is_empty() {
            let defs = load_fields(conn, account, Entity::Contact).await?;
            let mut errors = Vec::new();
            for (id, raw) in &filter.fields {
                let name = format!("custom_fields.{}", id.0);
                let Some(def) = defs.iter().find(|d| d.id == *id) else {
                    errors.push(err(name, "not_found", "no such field"));
                    continue;
                };
                match fields::normalize(def.field_type, &def.enums, raw) {
                    Ok(Some(v)) => {
                        let mut m = serde_json::Map::new();
                        m.insert(id.0.to_string(), v);
                        q = q
                            .filter(contacts::custom_fields.ne(Value::Object(Default::default())))
                            .filter(contacts::custom_fields.contains(Value::Object(m)));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        errors.push(err(name, e.code, format!("{}: {}", def.name, e.message)))
                    }
                }
            }
            finish(errors)?;
        }
        Ok(q)
    }

    async fn set_link(
        &self,
        caller: Caller,
        contact: ContactId,
        company: CompanyId,
        linked: bool,
    ) -> AppResult<()> {
        let contacts_scope = self.scope(caller, Entity::Contact, Action::Edit).await?;
        let companies_scope = self.scope(caller, Entity::Company, Action::View).await?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            self.visible_contact(tx, caller, &contacts_scope, contact, true)
                .await?;
            self.visible_company(tx, caller, &companies_scope, company, false)
                .await?;
            let n = if linked {
                diesel::insert_into(contact_companies::table)
                    .values((
                        contact_companies::account_id.eq(caller.account_id.0),
                        contact_companies::contact_id.eq(contact.0),
                        contact_companies::company_id.eq(company.0),
                    ))
                    .on_conflict_do_nothing()
                    .execute(tx)
                    .await?
            } else {
                diesel::delete(
                    contact_companies::table
                        .filter(contact_companies::account_id.eq(caller.account_id.0))
                        .filter(contact_companies::contact_id.eq(contact.0))
                        .filter(contact_companies::company_id.eq(company.0)),
                )
                .execute(tx)
                .await?
            };
            if n > 0 {
                outbox::append(
                    tx,
                    crate::SCHEMA,
                    &[envelope(
                        caller,
                        &ContactLinked {
                            contact_id: contact,
                            company_id: company,
                            linked,
                        },
                    )?],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }
}
