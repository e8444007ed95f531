//! Imports of contacts and companies from CSV and XLSX.
//!
//! An upload is read once (header and first rows) and kept with its file; the mapping screen
//! picks a target per column; the job then runs the rows in chunks. Each chunk is one
//! transaction that writes its records, its row errors and the count of rows done, so a run
//! killed half-way resumes after the last committed chunk: no row is imported twice, none is
//! lost. Records are written set-based (a few statements per chunk), which is what makes
//! 100,000 rows take seconds rather than minutes.

use std::collections::{HashMap, HashSet};

use accounts_api::Action;
use accounts_api::access::Scope;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use contacts_api::events::{
    CompanyCreated, CompanyUpdated, ContactCreated, ContactLinked, ContactUpdated,
};
use contacts_api::*;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::events::EventEnvelope;
use kernel::fields::{self, FieldType};
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, UserId, outbox, reach};
use serde_json::Value;

use crate::service::{ContactsService, Diff, MAX_TAGS, ensure_tags, envelope, load_fields, object};
use crate::tabular;

/// Rows per transaction.
pub(crate) const CHUNK: usize = 1000;
const PREVIEW_ROWS: usize = 5;

// --- the imports table -----------------------------------------------------------------------

#[derive(QueryableByName, Clone)]
pub(crate) struct ImportRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Text)]
    entity: String,
    #[diesel(sql_type = Text)]
    file_name: String,
    #[diesel(sql_type = Text)]
    format: String,
    #[diesel(sql_type = Text)]
    encoding: String,
    #[diesel(sql_type = Array<Text>)]
    headers: Vec<String>,
    #[diesel(sql_type = Jsonb)]
    preview: Value,
    #[diesel(sql_type = Integer)]
    total_rows: i32,
    #[diesel(sql_type = Array<Text>)]
    mapping: Vec<String>,
    #[diesel(sql_type = Text)]
    policy: String,
    #[diesel(sql_type = Text)]
    tag: String,
    #[diesel(sql_type = Bool)]
    dry_run: bool,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    processed: i32,
    #[diesel(sql_type = Integer)]
    created: i32,
    #[diesel(sql_type = Integer)]
    updated: i32,
    #[diesel(sql_type = Integer)]
    skipped: i32,
    #[diesel(sql_type = Integer)]
    failed: i32,
    #[diesel(sql_type = Text)]
    error: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<DateTime<Utc>>,
}

const IMPORT_COLUMNS: &str = "id, user_id, entity, file_name, format, encoding, headers, preview, total_rows, mapping, policy, tag, dry_run, status, processed, created, updated, skipped, failed, error, created_at, finished_at";

impl ImportRow {
    fn entity(&self) -> Entity {
        Entity::parse(&self.entity).unwrap_or(Entity::Contact)
    }

    fn info(&self) -> ImportInfo {
        ImportInfo {
            id: ImportId(self.id),
            entity: self.entity(),
            user_id: UserId(self.user_id),
            file_name: self.file_name.clone(),
            format: FileFormat::parse(&self.format).unwrap_or(FileFormat::Csv),
            encoding: TextEncoding::parse(&self.encoding).unwrap_or_default(),
            headers: self.headers.clone(),
            preview: serde_json::from_value(self.preview.clone()).unwrap_or_default(),
            total_rows: self.total_rows,
            mapping: self.mapping.clone(),
            policy: DuplicatePolicy::parse(&self.policy).unwrap_or_default(),
            tag: self.tag.clone(),
            dry_run: self.dry_run,
            status: JobStatus::parse(&self.status),
            processed: self.processed,
            created: self.created,
            updated: self.updated,
            skipped: self.skipped,
            failed: self.failed,
            error: self.error.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
        }
    }
}

async fn load_import(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: ImportId,
    lock: bool,
) -> AppResult<ImportRow> {
    diesel::sql_query(format!(
        "SELECT {IMPORT_COLUMNS} FROM contacts.imports WHERE account_id = $1 AND id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind::<BigInt, _>(account.0)
    .bind::<BigInt, _>(id.0)
    .get_result(conn)
    .await
    .optional()?
    .ok_or_else(|| AppError::not_found("import"))
}

// --- columns and their targets ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    FullName,
    FirstName,
    LastName,
    Name,
    Position,
    Web,
    Address,
    Phone(&'static str),
    Email(&'static str),
    Tags,
    Responsible,
    Company,
    CreatedAt,
    Field(i64),
}

impl Target {
    /// Targets that may take several columns (several phones, e-mails, tag columns).
    fn repeatable(self) -> bool {
        matches!(self, Target::Phone(_) | Target::Email(_) | Target::Tags)
    }
}

/// `Ok(None)` for a column left out; `Err` for a target this entity does not have.
fn target(entity: Entity, s: &str, defs: &[CustomField]) -> Result<Option<Target>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    if let Some(id) = s.strip_prefix("cf:") {
        let id: i64 = id.parse().map_err(|_| ())?;
        return if defs.iter().any(|d| d.id.0 == id) {
            Ok(Some(Target::Field(id)))
        } else {
            Err(())
        };
    }
    let allowed: &[&str] = match entity {
        Entity::Contact => &CONTACT_TARGETS,
        Entity::Company => &COMPANY_TARGETS,
    };
    if !allowed.contains(&s) {
        return Err(());
    }
    Ok(Some(match s {
        "full_name" => Target::FullName,
        "first_name" => Target::FirstName,
        "last_name" => Target::LastName,
        "name" => Target::Name,
        "position" => Target::Position,
        "web" => Target::Web,
        "address" => Target::Address,
        "phone_work" => Target::Phone("WORK"),
        "phone_mob" => Target::Phone("MOB"),
        "phone_home" => Target::Phone("HOME"),
        "phone_other" => Target::Phone("OTHER"),
        "email_work" => Target::Email("WORK"),
        "email_priv" => Target::Email("PRIV"),
        "email_other" => Target::Email("OTHER"),
        "tags" => Target::Tags,
        "responsible" => Target::Responsible,
        "company" => Target::Company,
        "created_at" => Target::CreatedAt,
        _ => return Err(()),
    }))
}

/// A first guess of each column's target from its header (English and Russian names, and the
/// names of custom fields).
fn guess_mapping(entity: Entity, headers: &[String], defs: &[CustomField]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    headers
        .iter()
        .map(|h| {
            let k = h.trim().to_lowercase().replace(['_', '-', '.'], " ");
            let k = k.split_whitespace().collect::<Vec<_>>().join(" ");
            let guess = if let Some(d) = defs.iter().find(|d| d.name.to_lowercase() == k) {
                format!("cf:{}", d.id.0)
            } else {
                let t = match (entity, k.as_str()) {
                    (Entity::Contact, "first name" | "given name" | "имя") => "first_name",
                    (Entity::Contact, "last name" | "surname" | "family name" | "фамилия") => {
                        "last_name"
                    }
                    (
                        Entity::Contact,
                        "name"
                        | "full name"
                        | "contact"
                        | "contact name"
                        | "фио"
                        | "полное имя"
                        | "контакт"
                        | "имя контакта",
                    ) => "full_name",
                    (
                        Entity::Company,
                        "name"
                        | "company"
                        | "company name"
                        | "название"
                        | "компания"
                        | "название компании",
                    ) => "name",
                    (Entity::Contact, "company" | "компания" | "организация") => {
                        "company"
                    }
                    (Entity::Contact, "position" | "job title" | "title" | "должность") => {
                        "position"
                    }
                    (Entity::Company, "web" | "website" | "site" | "url" | "сайт" | "web сайт") => {
                        "web"
                    }
                    (Entity::Company, "address" | "адрес") => "address",
                    (
                        _,
                        "phone" | "work phone" | "телефон" | "рабочий телефон" | "телефон рабочий",
                    ) => "phone_work",
                    (_, "mobile" | "mobile phone" | "cell" | "мобильный" | "мобильный телефон") => {
                        "phone_mob"
                    }
                    (_, "home phone" | "домашний телефон") => "phone_home",
                    (
                        _,
                        "email" | "e mail" | "work email" | "почта" | "эл почта" | "email рабочий",
                    ) => "email_work",
                    (_, "personal email" | "private email" | "личный email" | "email личный") => {
                        "email_priv"
                    }
                    (_, "tags" | "tag" | "теги" | "тег") => "tags",
                    (_, "responsible" | "owner" | "manager" | "ответственный" | "менеджер") => {
                        "responsible"
                    }
                    (
                        Entity::Contact,
                        "created" | "created at" | "date created" | "дата создания",
                    ) => "created_at",
                    _ => "",
                };
                t.to_string()
            };
            let repeatable =
                guess.starts_with("phone_") || guess.starts_with("email_") || guess == "tags";
            if guess.is_empty() || (!repeatable && !taken.insert(guess.clone())) {
                String::new()
            } else {
                guess
            }
        })
        .collect()
}

// --- one row ----------------------------------------------------------------------------------

/// A row turned into a record to create (or to add to an existing one).
#[derive(Debug, Clone, Default)]
struct Cand {
    row: i32,
    first: String,
    last: String,
    name: String,
    position: String,
    web: String,
    address: String,
    phones: Vec<(String, String, String)>,
    emails: Vec<(String, String)>,
    tags: Vec<String>,
    responsible: Option<i64>,
    companies: Vec<String>,
    created_at: Option<DateTime<Utc>>,
    fields: FieldValues,
}

impl Cand {
    /// What identifies a duplicate: its phones and e-mails, and a company's name.
    fn keys(&self, entity: Entity) -> Vec<String> {
        let mut k: Vec<String> = self.phones.iter().map(|p| format!("p:{}", p.2)).collect();
        k.extend(self.emails.iter().map(|e| format!("e:{}", e.1)));
        if entity == Entity::Company {
            k.push(format!("n:{}", self.name.to_lowercase()));
        }
        k
    }

    /// Adds a later row's values: given names and fields replace, lists are joined.
    fn absorb(&mut self, o: Cand) {
        for (mine, theirs) in [
            (&mut self.first, o.first),
            (&mut self.last, o.last),
            (&mut self.position, o.position),
            (&mut self.web, o.web),
            (&mut self.address, o.address),
        ] {
            if !theirs.is_empty() {
                *mine = theirs;
            }
        }
        if !o.name.is_empty() {
            self.name = o.name;
        }
        for p in o.phones {
            if !self.phones.iter().any(|x| x.2 == p.2) {
                self.phones.push(p);
            }
        }
        for e in o.emails {
            if !self.emails.iter().any(|x| x.1 == e.1) {
                self.emails.push(e);
            }
        }
        join_tags(&mut self.tags, &o.tags);
        if o.responsible.is_some() {
            self.responsible = o.responsible;
        }
        for c in o.companies {
            if !self.companies.contains(&c) {
                self.companies.push(c);
            }
        }
        self.fields.extend(o.fields);
    }
}

fn join_tags(to: &mut Vec<String>, more: &[String]) {
    for t in more {
        if !to.iter().any(|x| x.to_lowercase() == t.to_lowercase()) {
            to.push(t.clone());
        }
    }
}

/// What every row of one run needs.
struct Ctx {
    entity: Entity,
    headers: Vec<String>,
    targets: Vec<(usize, Target)>,
    defs: Vec<CustomField>,
    /// Active users by lower-cased e-mail and name.
    users: HashMap<String, i64>,
    country: String,
    tag: String,
    policy: DuplicatePolicy,
    dry_run: bool,
    /// The import's user, responsible for records with no responsible column.
    user: UserId,
    caller: Caller,
    edit: Option<Scope>,
}

fn row_err(row: i32, field: &str, value: &str, message: impl Into<String>) -> ImportRowError {
    ImportRowError {
        row,
        field: field.to_string(),
        value: value.chars().take(200).collect(),
        message: message.into(),
    }
}

fn split_list(v: &str, seps: &[char]) -> Vec<String> {
    v.split(seps)
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// Dates as spreadsheets and people write them: ISO 8601 (with or without time or zone) and
/// DD.MM.YYYY (with or without time). Times without a zone are taken as UTC.
fn parse_when(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%d.%m.%Y %H:%M:%S",
        "%d.%m.%Y %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t.and_utc());
        }
    }
    for f in ["%Y-%m-%d", "%d.%m.%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(v, f) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

/// A cell as the value a custom field of this type takes from a form.
fn field_input(ty: FieldType, v: &str) -> Value {
    match ty {
        FieldType::Multiselect => Value::from(split_list(v, &[';', ','])),
        FieldType::Checkbox => Value::from(
            match v.to_lowercase().as_str() {
                "yes" | "y" | "да" | "+" | "x" | "true" | "1" | "on" => "true",
                _ => "false",
            }
            .to_string(),
        ),
        FieldType::Date | FieldType::DateTime => match parse_when(v) {
            Some(t) if ty == FieldType::Date => Value::from(t.format("%Y-%m-%d").to_string()),
            Some(t) => Value::from(t.to_rfc3339()),
            None => Value::from(v.to_string()),
        },
        _ => Value::from(v.to_string()),
    }
}

fn parse_row(ctx: &Ctx, row: &[String], row_no: i32) -> Result<Cand, Vec<ImportRowError>> {
    let mut c = Cand {
        row: row_no,
        ..Cand::default()
    };
    let mut errors = Vec::new();
    let mut full = String::new();
    for &(col, t) in &ctx.targets {
        let header = ctx.headers.get(col).map(String::as_str).unwrap_or("");
        let raw = row.get(col).map(String::as_str).unwrap_or("");
        let v = raw.trim();
        if v.is_empty() {
            continue;
        }
        let mut limited = |max: usize, to: &mut String| {
            if v.chars().count() > max {
                errors.push(row_err(
                    row_no,
                    header,
                    v,
                    format!("at most {max} characters"),
                ));
            } else {
                *to = v.to_string();
            }
        };
        match t {
            Target::FullName => limited(100, &mut full),
            Target::FirstName => limited(100, &mut c.first),
            Target::LastName => limited(100, &mut c.last),
            Target::Name => limited(255, &mut c.name),
            Target::Position => limited(255, &mut c.position),
            Target::Web => limited(2048, &mut c.web),
            Target::Address => limited(1000, &mut c.address),
            Target::Phone(kind) => {
                for p in split_list(v, &[',', ';']) {
                    match reach::normalize_phone(&p, Some(&ctx.country)) {
                        Ok(n) if c.phones.iter().any(|x| x.2 == n) => {}
                        Ok(n) => c
                            .phones
                            .push((kind.into(), p.chars().take(50).collect(), n)),
                        Err(e) => errors.push(row_err(row_no, header, &p, e.message)),
                    }
                }
            }
            Target::Email(kind) => {
                for e in split_list(v, &[',', ';', ' ']) {
                    match reach::normalize_email(&e) {
                        Ok(n) if c.emails.iter().any(|x| x.1 == n) => {}
                        Ok(n) => c.emails.push((kind.into(), n)),
                        Err(x) => errors.push(row_err(row_no, header, &e, x.message)),
                    }
                }
            }
            Target::Tags => {
                let mut fe = Vec::new();
                let clean = fields::clean_tags(&split_list(v, &[',', ';']), MAX_TAGS, &mut fe);
                if let Some(e) = <[_]>::first(&fe) {
                    errors.push(row_err(row_no, header, v, e.message.clone()));
                } else {
                    join_tags(&mut c.tags, &clean);
                }
            }
            Target::Responsible => match ctx.users.get(&v.to_lowercase()) {
                Some(id) => c.responsible = Some(*id),
                None => errors.push(row_err(
                    row_no,
                    header,
                    v,
                    "no active user with this e-mail or name",
                )),
            },
            Target::Company => {
                if v.chars().count() > 255 {
                    errors.push(row_err(row_no, header, v, "at most 255 characters"));
                } else if !c
                    .companies
                    .iter()
                    .any(|x| x.to_lowercase() == v.to_lowercase())
                {
                    c.companies.push(v.to_string());
                }
            }
            Target::CreatedAt => match parse_when(v) {
                Some(t) if t <= Utc::now() => c.created_at = Some(t),
                Some(_) => errors.push(row_err(row_no, header, v, "a date in the future")),
                None => errors.push(row_err(
                    row_no,
                    header,
                    v,
                    "not a date (YYYY-MM-DD or DD.MM.YYYY, with an optional time)",
                )),
            },
            Target::Field(id) => {
                let Some(def) = ctx.defs.iter().find(|d| d.id.0 == id) else {
                    continue;
                };
                match fields::normalize(def.field_type, &def.enums, &field_input(def.field_type, v))
                {
                    Ok(Some(val)) => {
                        c.fields.insert(id.to_string(), val);
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(row_err(row_no, header, v, e.message)),
                }
            }
        }
    }
    if c.phones.len() > MAX_PHONES || c.emails.len() > MAX_EMAILS {
        errors.push(row_err(
            row_no,
            "phones",
            "",
            format!("at most {MAX_PHONES} phones and {MAX_EMAILS} e-mails"),
        ));
    }
    match ctx.entity {
        Entity::Contact => {
            if !full.is_empty() && c.first.is_empty() && c.last.is_empty() {
                c.first = full;
            }
            c.name = format!("{} {}", c.first, c.last).trim().to_string();
        }
        Entity::Company => {}
    }
    if c.name.is_empty() && errors.is_empty() {
        errors.push(row_err(row_no, "name", "", "the name is empty"));
    }
    if errors.is_empty() {
        Ok(c)
    } else {
        Err(errors)
    }
}

// --- a chunk of rows --------------------------------------------------------------------------

#[derive(Default)]
struct Outcome {
    created: i32,
    updated: i32,
    skipped: i32,
    failed: i32,
    errors: Vec<ImportRowError>,
}

#[derive(QueryableByName)]
struct KeyId {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct IdOnly {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Existing records by duplicate key (`p:` phone, `e:` e-mail, `n:` company name).
async fn existing_keys(
    tx: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
    cands: &[Cand],
) -> AppResult<HashMap<String, i64>> {
    let table = match entity {
        Entity::Contact => "contacts.contacts",
        Entity::Company => "contacts.companies",
    };
    let phones: Vec<&str> = cands
        .iter()
        .flat_map(|c| c.phones.iter().map(|p| p.2.as_str()))
        .collect();
    let emails: Vec<&str> = cands
        .iter()
        .flat_map(|c| c.emails.iter().map(|e| e.1.as_str()))
        .collect();
    let mut out = HashMap::new();
    let rows: Vec<KeyId> = diesel::sql_query(format!(
        "SELECT 'p:' || p.normalized AS key, min(p.owner_id) AS id FROM contacts.phones p
           JOIN {table} r ON r.account_id = p.account_id AND r.id = p.owner_id AND r.deleted_at IS NULL
          WHERE p.account_id = $1 AND p.owner_kind = $2 AND p.normalized = ANY($3) GROUP BY 1
         UNION ALL
         SELECT 'e:' || m.email, min(m.owner_id) FROM contacts.emails m
           JOIN {table} r ON r.account_id = m.account_id AND r.id = m.owner_id AND r.deleted_at IS NULL
          WHERE m.account_id = $1 AND m.owner_kind = $2 AND m.email = ANY($4) GROUP BY 1"
    ))
    .bind::<BigInt, _>(account.0)
    .bind::<Text, _>(entity.as_str())
    .bind::<Array<Text>, _>(&phones)
    .bind::<Array<Text>, _>(&emails)
    .load(tx)
    .await?;
    out.extend(rows.into_iter().map(|r| (r.key, r.id)));
    if entity == Entity::Company {
        let names: Vec<String> = cands.iter().map(|c| c.name.to_lowercase()).collect();
        let rows: Vec<KeyId> = diesel::sql_query(
            "SELECT 'n:' || lower(name) AS key, min(id) AS id FROM contacts.companies
              WHERE account_id = $1 AND deleted_at IS NULL AND lower(name) = ANY($2) GROUP BY 1",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Array<Text>, _>(&names)
        .load(tx)
        .await?;
        out.extend(rows.into_iter().map(|r| (r.key, r.id)));
    }
    Ok(out)
}

enum Fate {
    New,
    /// Add to the record already in the database.
    Existing(i64),
    Skip,
}

/// New ids from a table's identity sequence, so that the rows written next can reference them.
async fn new_ids(tx: &mut AsyncPgConnection, table: &str, n: usize) -> AppResult<Vec<i64>> {
    let rows: Vec<IdOnly> = diesel::sql_query(format!(
        "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) AS id FROM generate_series(1, $1)"
    ))
    .bind::<Integer, _>(n as i32)
    .load(tx)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

fn tag_array(ids: &[i64]) -> String {
    format!(
        "{{{}}}",
        ids.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Phones and e-mails of new or updated records, in two statements. `first_sort` numbers them
/// after the ones a record already has.
async fn insert_reach(
    tx: &mut AsyncPgConnection,
    account: AccountId,
    entity: Entity,
    items: &[(i64, &Cand, i32, i32)],
) -> AppResult<()> {
    let (mut o, mut k, mut r, mut n, mut s) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut eo, mut ek, mut ee, mut es) = (vec![], vec![], vec![], vec![]);
    for (id, c, phone_sort, email_sort) in items {
        for (i, p) in c.phones.iter().enumerate() {
            o.push(*id);
            k.push(p.0.as_str());
            r.push(p.1.as_str());
            n.push(p.2.as_str());
            s.push(phone_sort + i as i32);
        }
        for (i, e) in c.emails.iter().enumerate() {
            eo.push(*id);
            ek.push(e.0.as_str());
            ee.push(e.1.as_str());
            es.push(email_sort + i as i32);
        }
    }
    if !o.is_empty() {
        diesel::sql_query(
            "INSERT INTO contacts.phones (account_id, owner_kind, owner_id, kind, raw, normalized, sort)
             SELECT $1, $2, o, k, r, n, s FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::int[]) AS x(o, k, r, n, s)",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(entity.as_str())
        .bind::<Array<BigInt>, _>(&o)
        .bind::<Array<Text>, _>(&k)
        .bind::<Array<Text>, _>(&r)
        .bind::<Array<Text>, _>(&n)
        .bind::<Array<Integer>, _>(&s)
        .execute(tx)
        .await?;
    }
    if !eo.is_empty() {
        diesel::sql_query(
            "INSERT INTO contacts.emails (account_id, owner_kind, owner_id, kind, email, sort)
             SELECT $1, $2, o, k, e, s FROM unnest($3::bigint[], $4::text[], $5::text[], $6::int[]) AS x(o, k, e, s)",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(entity.as_str())
        .bind::<Array<BigInt>, _>(&eo)
        .bind::<Array<Text>, _>(&ek)
        .bind::<Array<Text>, _>(&ee)
        .bind::<Array<Integer>, _>(&es)
        .execute(tx)
        .await?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Current {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    first_name: String,
    #[diesel(sql_type = Text)]
    last_name: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    position: String,
    #[diesel(sql_type = Text)]
    web: String,
    #[diesel(sql_type = Text)]
    address: String,
    #[diesel(sql_type = BigInt)]
    responsible_user_id: i64,
    #[diesel(sql_type = Array<BigInt>)]
    tag_ids: Vec<i64>,
    #[diesel(sql_type = Jsonb)]
    custom_fields: Value,
    #[diesel(sql_type = Array<Text>)]
    phones: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    emails: Vec<String>,
}

/// Runs one chunk inside the caller's transaction; writes nothing in a dry run.
async fn process_chunk(
    tx: &mut AsyncPgConnection,
    ctx: &Ctx,
    parsed: Vec<Result<Cand, Vec<ImportRowError>>>,
    seen: &mut HashMap<String, usize>,
) -> AppResult<(Outcome, Vec<EventEnvelope>)> {
    let account = ctx.caller.account_id;
    let entity = ctx.entity;
    let mut out = Outcome::default();
    let mut cands: Vec<Cand> = Vec::new();
    for p in parsed {
        match p {
            Ok(c) => cands.push(c),
            Err(e) => {
                out.failed += 1;
                out.errors.extend(e);
            }
        }
    }
    let existing = if ctx.policy == DuplicatePolicy::Create || cands.is_empty() {
        HashMap::new()
    } else {
        existing_keys(tx, account, entity, &cands).await?
    };
    // Decide each row's fate in file order; a row repeating an earlier one of this run is
    // folded into it (update) or skipped.
    let mut fates: Vec<Fate> = Vec::with_capacity(cands.len());
    let mut batch: Vec<Cand> = Vec::new();
    let mut local: HashMap<String, usize> = HashMap::new();
    for c in cands {
        if ctx.policy == DuplicatePolicy::Create {
            batch.push(c);
            fates.push(Fate::New);
            continue;
        }
        let keys = c.keys(entity);
        let in_db = keys.iter().find_map(|k| existing.get(k).copied());
        let earlier = keys.iter().find_map(|k| {
            local
                .get(k)
                .copied()
                .or_else(|| seen.get(k).map(|_| usize::MAX))
        });
        match (in_db, earlier, ctx.policy) {
            (Some(_), _, DuplicatePolicy::Skip) | (None, Some(_), DuplicatePolicy::Skip) => {
                out.skipped += 1;
                fates.push(Fate::Skip);
            }
            (Some(id), _, _) => {
                batch.push(c);
                fates.push(Fate::Existing(id));
            }
            (None, Some(i), _) if i != usize::MAX => {
                out.updated += 1;
                batch[i].absorb(c);
                fates.push(Fate::Skip);
            }
            (None, Some(_), _) => {
                // In a dry run, a repeat of a row of an earlier chunk (nothing is written).
                out.updated += 1;
                fates.push(Fate::Skip);
            }
            (None, None, _) => {
                for k in &keys {
                    local.insert(k.clone(), batch.len());
                }
                batch.push(c);
                fates.push(Fate::New);
            }
        }
    }
    let mut news: Vec<usize> = Vec::new();
    let mut updates: Vec<(usize, i64)> = Vec::new();
    let mut bi = 0;
    for f in &fates {
        match f {
            Fate::New => {
                news.push(bi);
                bi += 1;
            }
            Fate::Existing(id) => {
                updates.push((bi, *id));
                bi += 1;
            }
            Fate::Skip => {}
        }
    }
    if ctx.dry_run {
        out.created += news.len() as i32;
        out.updated += updates.len() as i32;
        for &i in &news {
            for k in batch[i].keys(entity) {
                seen.insert(k, 0);
            }
        }
        return Ok((out, Vec::new()));
    }
    let mut events = Vec::new();
    let caller = ctx.caller;

    // Tags (the import's own one on every record written) and, for contacts, companies by name.
    let mut tag_names: Vec<String> = Vec::new();
    for c in batch.iter_mut() {
        if !ctx.tag.is_empty() {
            join_tags(&mut c.tags, std::slice::from_ref(&ctx.tag));
        }
        join_tags(&mut tag_names, &c.tags);
    }
    let tag_ids = ensure_tags(tx, account, entity, &tag_names).await?;
    let tag_of: HashMap<String, i64> = tag_names
        .iter()
        .map(|n| n.to_lowercase())
        .zip(tag_ids)
        .collect();
    let ids_of = |c: &Cand| -> Vec<i64> {
        c.tags
            .iter()
            .filter_map(|t| tag_of.get(&t.to_lowercase()).copied())
            .collect()
    };
    let company_of = company_ids(tx, ctx, &batch, &mut events).await?;

    // Updates first: they lock existing rows, in id order.
    updates.sort_by_key(|u| u.1);
    let mut updated_ids: Vec<i64> = updates.iter().map(|u| u.1).collect();
    updated_ids.dedup();
    let table = match entity {
        Entity::Contact => "contacts.contacts",
        Entity::Company => "contacts.companies",
    };
    let currents: Vec<Current> = if updated_ids.is_empty() {
        Vec::new()
    } else {
        let (first, last, position, web, address) = match entity {
            Entity::Contact => ("r.first_name", "r.last_name", "r.position", "''", "''"),
            Entity::Company => ("''", "''", "''", "r.web", "r.address"),
        };
        diesel::sql_query(format!(
            "SELECT r.id, {first} AS first_name, {last} AS last_name, r.name, {position} AS position,
                    {web} AS web, {address} AS address, r.responsible_user_id, r.tag_ids, r.custom_fields,
                    ARRAY(SELECT p.normalized FROM contacts.phones p WHERE p.account_id = r.account_id AND p.owner_kind = $2 AND p.owner_id = r.id ORDER BY p.sort, p.id) AS phones,
                    ARRAY(SELECT m.email FROM contacts.emails m WHERE m.account_id = r.account_id AND m.owner_kind = $2 AND m.owner_id = r.id ORDER BY m.sort, m.id) AS emails
               FROM {table} r WHERE r.account_id = $1 AND r.id = ANY($3) ORDER BY r.id FOR UPDATE OF r"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(entity.as_str())
        .bind::<Array<BigInt>, _>(&updated_ids)
        .load(tx)
        .await?
    };
    let mut current: HashMap<i64, Current> = currents.into_iter().map(|c| (c.id, c)).collect();
    let mut reach_items: Vec<(i64, Cand, i32, i32)> = Vec::new();
    let mut links: Vec<(i64, i64)> = Vec::new();
    for (bi, id) in &updates {
        let c = batch[*bi].clone();
        let Some(cur) = current.get_mut(id) else {
            continue;
        };
        if let Some(scope) = &ctx.edit
            && !scope.allows(UserId(cur.responsible_user_id))
        {
            out.failed += 1;
            out.errors.push(row_err(
                c.row,
                "responsible",
                "",
                format!(
                    "a {} with this phone, e-mail or name exists (#{id}) and you may not edit it",
                    entity.as_str()
                ),
            ));
            continue;
        }
        let mut diff = Diff::default();
        let set = |diff: &mut Diff, key: &str, now: &mut String, new: &str| {
            if !new.is_empty() && now != new {
                diff.add(key, Value::from(now.clone()), Value::from(new));
                *now = new.to_string();
            }
        };
        set(&mut diff, "first_name", &mut cur.first_name, &c.first);
        set(&mut diff, "last_name", &mut cur.last_name, &c.last);
        set(&mut diff, "position", &mut cur.position, &c.position);
        set(&mut diff, "web", &mut cur.web, &c.web);
        set(&mut diff, "address", &mut cur.address, &c.address);
        let name = match entity {
            Entity::Contact => format!("{} {}", cur.first_name, cur.last_name)
                .trim()
                .to_string(),
            Entity::Company => c.name.clone(),
        };
        set(&mut diff, "name", &mut cur.name, &name);
        if let Some(r) = c.responsible
            && r != cur.responsible_user_id
        {
            diff.add(
                "responsible_user_id",
                Value::from(cur.responsible_user_id),
                Value::from(r),
            );
            cur.responsible_user_id = r;
        }
        let mut tags = cur.tag_ids.clone();
        for t in ids_of(&c) {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if tags != cur.tag_ids {
            diff.add(
                "tag_ids",
                Value::from(cur.tag_ids.clone()),
                Value::from(tags.clone()),
            );
            cur.tag_ids = tags;
        }
        let before = object(&cur.custom_fields);
        let mut after = before.clone();
        after.extend(c.fields.clone());
        if after != before {
            diff.add(
                "custom_fields",
                Value::Object(before),
                Value::Object(after.clone()),
            );
            cur.custom_fields = Value::Object(after);
        }
        let mut add = c.clone();
        add.phones.retain(|p| !cur.phones.contains(&p.2));
        add.emails.retain(|e| !cur.emails.contains(&e.1));
        add.phones
            .truncate(MAX_PHONES.saturating_sub(cur.phones.len()));
        add.emails
            .truncate(MAX_EMAILS.saturating_sub(cur.emails.len()));
        if !add.phones.is_empty() {
            let mut now: Vec<String> = cur.phones.clone();
            now.extend(add.phones.iter().map(|p| p.2.clone()));
            diff.add(
                "phones",
                Value::from(cur.phones.clone()),
                Value::from(now.clone()),
            );
            cur.phones = now;
        }
        if !add.emails.is_empty() {
            let mut now: Vec<String> = cur.emails.clone();
            now.extend(add.emails.iter().map(|e| e.1.clone()));
            diff.add(
                "emails",
                Value::from(cur.emails.clone()),
                Value::from(now.clone()),
            );
            cur.emails = now;
        }
        for name in &c.companies {
            if let Some(co) = company_of.get(&name.to_lowercase()) {
                links.push((*id, *co));
            }
        }
        out.updated += 1;
        if diff.after.is_empty() {
            continue;
        }
        let sorts = (
            cur.phones.len() as i32 - add.phones.len() as i32,
            cur.emails.len() as i32 - add.emails.len() as i32,
        );
        reach_items.push((*id, add, sorts.0, sorts.1));
        match entity {
            Entity::Contact => diesel::sql_query(
                "UPDATE contacts.contacts SET first_name = $3, last_name = $4, name = $5, position = $6,
                        responsible_user_id = $7, tag_ids = $8, custom_fields = $9, updated_by = $10, updated_at = now()
                  WHERE account_id = $1 AND id = $2",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(*id)
            .bind::<Text, _>(&cur.first_name)
            .bind::<Text, _>(&cur.last_name)
            .bind::<Text, _>(&cur.name)
            .bind::<Text, _>(&cur.position)
            .bind::<BigInt, _>(cur.responsible_user_id)
            .bind::<Array<BigInt>, _>(&cur.tag_ids)
            .bind::<Jsonb, _>(&cur.custom_fields)
            .bind::<BigInt, _>(ctx.user.0)
            .execute(tx)
            .await?,
            Entity::Company => diesel::sql_query(
                "UPDATE contacts.companies SET name = $3, web = $4, address = $5,
                        responsible_user_id = $6, tag_ids = $7, custom_fields = $8, updated_by = $9, updated_at = now()
                  WHERE account_id = $1 AND id = $2",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(*id)
            .bind::<Text, _>(&cur.name)
            .bind::<Text, _>(&cur.web)
            .bind::<Text, _>(&cur.address)
            .bind::<BigInt, _>(cur.responsible_user_id)
            .bind::<Array<BigInt>, _>(&cur.tag_ids)
            .bind::<Jsonb, _>(&cur.custom_fields)
            .bind::<BigInt, _>(ctx.user.0)
            .execute(tx)
            .await?,
        };
        let (before, after) = (Value::Object(diff.before), Value::Object(diff.after));
        events.push(match entity {
            Entity::Contact => envelope(
                caller,
                &ContactUpdated {
                    contact_id: ContactId(*id),
                    before,
                    after,
                },
            )?,
            Entity::Company => envelope(
                caller,
                &CompanyUpdated {
                    company_id: CompanyId(*id),
                    before,
                    after,
                },
            )?,
        });
    }

    // New records, in one statement per table.
    let ids = new_ids(tx, table, news.len()).await?;
    let new_cands: Vec<&Cand> = news.iter().map(|i| &batch[*i]).collect();
    if !ids.is_empty() {
        let resp: Vec<i64> = new_cands
            .iter()
            .map(|c| c.responsible.unwrap_or(ctx.user.0))
            .collect();
        let tags: Vec<String> = new_cands.iter().map(|c| tag_array(&ids_of(c))).collect();
        let cfs: Vec<Value> = new_cands
            .iter()
            .map(|c| Value::Object(c.fields.clone()))
            .collect();
        let names: Vec<&str> = new_cands.iter().map(|c| c.name.as_str()).collect();
        match entity {
            Entity::Contact => {
                diesel::sql_query(
                    "INSERT INTO contacts.contacts (id, account_id, first_name, last_name, name, position, responsible_user_id,
                                                   tag_ids, custom_fields, created_by, updated_by, created_at, updated_at)
                     OVERRIDING SYSTEM VALUE
                     SELECT i, $1, f, l, n, p, r, t::bigint[], cf, $2, $2, coalesce(c, now()), now()
                       FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::jsonb[], $11::timestamptz[])
                            AS x(i, f, l, n, p, r, t, cf, c)",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(ctx.user.0)
                .bind::<Array<BigInt>, _>(&ids)
                .bind::<Array<Text>, _>(new_cands.iter().map(|c| c.first.as_str()).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(new_cands.iter().map(|c| c.last.as_str()).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(&names)
                .bind::<Array<Text>, _>(new_cands.iter().map(|c| c.position.as_str()).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(&resp)
                .bind::<Array<Text>, _>(&tags)
                .bind::<Array<Jsonb>, _>(&cfs)
                .bind::<Array<Nullable<Timestamptz>>, _>(new_cands.iter().map(|c| c.created_at).collect::<Vec<_>>())
                .execute(tx)
                .await?;
            }
            Entity::Company => {
                diesel::sql_query(
                    "INSERT INTO contacts.companies (id, account_id, name, web, address, responsible_user_id,
                                                    tag_ids, custom_fields, created_by, updated_by)
                     OVERRIDING SYSTEM VALUE
                     SELECT i, $1, n, w, a, r, t::bigint[], cf, $2, $2
                       FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::jsonb[])
                            AS x(i, n, w, a, r, t, cf)",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(ctx.user.0)
                .bind::<Array<BigInt>, _>(&ids)
                .bind::<Array<Text>, _>(&names)
                .bind::<Array<Text>, _>(new_cands.iter().map(|c| c.web.as_str()).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(new_cands.iter().map(|c| c.address.as_str()).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(&resp)
                .bind::<Array<Text>, _>(&tags)
                .bind::<Array<Jsonb>, _>(&cfs)
                .execute(tx)
                .await?;
            }
        }
        for (id, c) in ids.iter().zip(&new_cands) {
            let responsible_user_id = UserId(c.responsible.unwrap_or(ctx.user.0));
            events.push(match entity {
                Entity::Contact => envelope(
                    caller,
                    &ContactCreated {
                        contact_id: ContactId(*id),
                        name: c.name.clone(),
                        responsible_user_id,
                    },
                )?,
                Entity::Company => envelope(
                    caller,
                    &CompanyCreated {
                        company_id: CompanyId(*id),
                        name: c.name.clone(),
                        responsible_user_id,
                    },
                )?,
            });
            for name in &c.companies {
                if let Some(co) = company_of.get(&name.to_lowercase()) {
                    links.push((*id, *co));
                }
            }
        }
        out.created += ids.len() as i32;
    }
    let mut items: Vec<(i64, &Cand, i32, i32)> = ids
        .iter()
        .zip(&new_cands)
        .map(|(id, c)| (*id, *c, 0, 0))
        .collect();
    items.extend(reach_items.iter().map(|(id, c, p, e)| (*id, c, *p, *e)));
    insert_reach(tx, account, entity, &items).await?;

    if !links.is_empty() {
        let linked: Vec<IdPair> = diesel::sql_query(
            "INSERT INTO contacts.contact_companies (account_id, contact_id, company_id)
             SELECT $1, c, k FROM unnest($2::bigint[], $3::bigint[]) AS x(c, k)
             ON CONFLICT DO NOTHING RETURNING contact_id, company_id",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Array<BigInt>, _>(links.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(links.iter().map(|l| l.1).collect::<Vec<_>>())
        .load(tx)
        .await?;
        for l in linked {
            events.push(envelope(
                caller,
                &ContactLinked {
                    contact_id: ContactId(l.contact_id),
                    company_id: CompanyId(l.company_id),
                    linked: true,
                },
            )?);
        }
    }
    Ok((out, events))
}

#[derive(QueryableByName)]
struct IdPair {
    #[diesel(sql_type = BigInt)]
    contact_id: i64,
    #[diesel(sql_type = BigInt)]
    company_id: i64,
}

/// The companies named by contact rows, by lower-cased name: existing ones (the oldest of a
/// name), the rest created.
async fn company_ids(
    tx: &mut AsyncPgConnection,
    ctx: &Ctx,
    batch: &[Cand],
    events: &mut Vec<EventEnvelope>,
) -> AppResult<HashMap<String, i64>> {
    let mut names: Vec<String> = Vec::new();
    let mut lower: Vec<String> = Vec::new();
    for c in batch {
        for n in &c.companies {
            let l = n.to_lowercase();
            if !lower.contains(&l) {
                lower.push(l);
                names.push(n.clone());
            }
        }
    }
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let account = ctx.caller.account_id;
    let found: Vec<KeyId> = diesel::sql_query(
        "SELECT lower(name) AS key, min(id) AS id FROM contacts.companies
          WHERE account_id = $1 AND deleted_at IS NULL AND lower(name) = ANY($2) GROUP BY 1",
    )
    .bind::<BigInt, _>(account.0)
    .bind::<Array<Text>, _>(&lower)
    .load(tx)
    .await?;
    let mut out: HashMap<String, i64> = found.into_iter().map(|k| (k.key, k.id)).collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !out.contains_key(&n.to_lowercase()))
        .collect();
    if !missing.is_empty() {
        let ids = new_ids(tx, "contacts.companies", missing.len()).await?;
        diesel::sql_query(
            "INSERT INTO contacts.companies (id, account_id, name, responsible_user_id, created_by, updated_by)
             OVERRIDING SYSTEM VALUE SELECT i, $1, n, $2, $2, $2 FROM unnest($3::bigint[], $4::text[]) AS x(i, n)",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(ctx.user.0)
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Text>, _>(&missing)
        .execute(tx)
        .await?;
        for (id, n) in ids.iter().zip(missing) {
            events.push(envelope(
                ctx.caller,
                &CompanyCreated {
                    company_id: CompanyId(*id),
                    name: n.clone(),
                    responsible_user_id: ctx.user,
                },
            )?);
            out.insert(n.to_lowercase(), *id);
        }
    }
    Ok(out)
}

// --- the service's calls ----------------------------------------------------------------------

fn check_owner(caller: Caller, row: &ImportRow, is_admin: bool) -> AppResult<()> {
    if is_admin
        || caller.actor.user_id() == Some(UserId(row.user_id))
        || caller.actor.user_id().is_none()
    {
        Ok(())
    } else {
        Err(AppError::not_found("import"))
    }
}

impl ContactsService {
    /// Whether the caller is an active administrator (the system is).
    pub(crate) async fn is_admin(&self, caller: Caller) -> AppResult<bool> {
        match caller.actor.user_id() {
            None => Ok(true),
            Some(me) => {
                let u = self.accounts.user(caller, me).await?;
                Ok(u.is_admin && u.is_active)
            }
        }
    }

    pub(crate) async fn do_upload_import(
        &self,
        caller: Caller,
        upload: ImportUpload,
    ) -> AppResult<ImportInfo> {
        let Some(me) = caller.actor.user_id() else {
            return Err(AppError::forbidden("imports are made by users"));
        };
        self.scope(caller, upload.entity, Action::Create).await?;
        if upload.data.len() > MAX_IMPORT_BYTES {
            return Err(AppError::validation(
                "file",
                "too_large",
                &format!("at most {} MB", MAX_IMPORT_BYTES / 1024 / 1024),
            ));
        }
        let file_name: String = upload
            .file_name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let format = tabular::detect(&file_name, &upload.data);
        let data = upload.data;
        let encoding = upload.encoding;
        let (sheet, data) = tokio::task::spawn_blocking(move || {
            let s = tabular::read(&data, format, encoding);
            (s, data)
        })
        .await
        .map_err(|e| AppError::internal(e.to_string()))?;
        let sheet = sheet?;
        let mut conn = self.conn().await?;
        let defs = load_fields(&mut conn, caller.account_id, upload.entity).await?;
        let mapping = guess_mapping(upload.entity, &sheet.headers, &defs);
        let preview: Vec<&Vec<String>> = sheet.rows.iter().take(PREVIEW_ROWS).collect();
        let preview =
            serde_json::to_value(preview).map_err(|e| AppError::internal(e.to_string()))?;
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let row: IdOnly = diesel::sql_query(
                    "INSERT INTO contacts.imports (account_id, user_id, entity, file_name, format, encoding, headers, preview, total_rows, mapping)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<BigInt, _>(me.0)
                .bind::<Text, _>(upload.entity.as_str())
                .bind::<Text, _>(if file_name.is_empty() { "upload" } else { file_name.as_str() })
                .bind::<Text, _>(format.as_str())
                .bind::<Text, _>(encoding.as_str())
                .bind::<Array<Text>, _>(&sheet.headers)
                .bind::<Jsonb, _>(&preview)
                .bind::<Integer, _>(sheet.rows.len() as i32)
                .bind::<Array<Text>, _>(&mapping)
                .get_result(tx)
                .await?;
                diesel::sql_query("INSERT INTO contacts.import_files (import_id, data) VALUES ($1, $2)")
                    .bind::<BigInt, _>(row.id)
                    .bind::<diesel::sql_types::Bytea, _>(&data)
                    .execute(tx)
                    .await?;
                Ok(row.id)
            })
            .await?;
        Ok(
            load_import(&mut conn, caller.account_id, ImportId(id), false)
                .await?
                .info(),
        )
    }

    pub(crate) async fn do_import_info(
        &self,
        caller: Caller,
        id: ImportId,
    ) -> AppResult<ImportInfo> {
        let mut conn = self.conn().await?;
        let row = load_import(&mut conn, caller.account_id, id, false).await?;
        check_owner(caller, &row, self.is_admin(caller).await?)?;
        Ok(row.info())
    }

    pub(crate) async fn do_imports(&self, caller: Caller) -> AppResult<Vec<ImportInfo>> {
        let admin = self.is_admin(caller).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<ImportRow> = diesel::sql_query(format!(
            "SELECT {IMPORT_COLUMNS} FROM contacts.imports WHERE account_id = $1 AND ($2 OR user_id = $3)
              ORDER BY id DESC LIMIT 20"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<Bool, _>(admin)
        .bind::<BigInt, _>(caller.actor.user_id().map(|u| u.0).unwrap_or(0))
        .load(&mut conn)
        .await?;
        Ok(rows.iter().map(ImportRow::info).collect())
    }

    pub(crate) async fn do_start_import(
        &self,
        caller: Caller,
        id: ImportId,
        settings: ImportSettings,
    ) -> AppResult<ImportInfo> {
        let admin = self.is_admin(caller).await?;
        let mut conn = self.conn().await?;
        let row = load_import(&mut conn, caller.account_id, id, false).await?;
        check_owner(caller, &row, admin)?;
        let entity = row.entity();
        self.scope(caller, entity, Action::Create).await?;
        if settings.policy == DuplicatePolicy::Update {
            self.scope(caller, entity, Action::Edit).await?;
        }
        let status = JobStatus::parse(&row.status);
        // A queued import may be started again (its job may never have been stored; a second
        // job finds the work done); a running or imported one may not.
        let restartable = matches!(
            status,
            JobStatus::Uploaded | JobStatus::Queued | JobStatus::Failed
        ) || (row.dry_run && status.is_finished());
        if !restartable {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "this import has already run or is running",
            ));
        }
        let defs = load_fields(&mut conn, caller.account_id, entity).await?;
        let mut errors = Vec::new();
        if settings.mapping.len() != row.headers.len() {
            errors.push(crate::service::err(
                "mapping",
                "invalid",
                format!("a target for each of the {} columns", row.headers.len()),
            ));
        }
        let mut targets: Vec<Target> = Vec::new();
        for (i, m) in settings.mapping.iter().enumerate() {
            let header = row.headers.get(i).cloned().unwrap_or_default();
            match target(entity, m.trim(), &defs) {
                Ok(Some(t)) if !t.repeatable() && targets.contains(&t) => {
                    errors.push(crate::service::err(
                        format!("mapping[{i}]"),
                        "duplicate",
                        format!("\"{header}\": another column already goes there"),
                    ));
                }
                Ok(Some(t)) => targets.push(t),
                Ok(None) => {}
                Err(()) => errors.push(crate::service::err(
                    format!("mapping[{i}]"),
                    "invalid",
                    format!("\"{header}\": an unknown target"),
                )),
            }
        }
        let has_name = match entity {
            Entity::Contact => targets
                .iter()
                .any(|t| matches!(t, Target::FullName | Target::FirstName | Target::LastName)),
            Entity::Company => targets.contains(&Target::Name),
        };
        if !has_name {
            errors.push(crate::service::err(
                "mapping",
                "missing_column",
                match entity {
                    Entity::Contact => "choose the column with the name (full, first or last name)",
                    Entity::Company => "choose the column with the company name",
                },
            ));
        }
        let mut tag_errors = Vec::new();
        let tag = fields::clean_tags(std::slice::from_ref(&settings.tag), 1, &mut tag_errors);
        for mut e in tag_errors {
            e.field = "tag".into();
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
        let tag = tag.into_iter().next().unwrap_or_default();
        // A real run that wrote rows resumes where it stopped, as it was; anything else starts
        // over.
        let resume = !row.dry_run && row.processed > 0;
        if resume && (settings.mapping != row.mapping || settings.dry_run) {
            return Err(AppError::validation(
                "mapping",
                "locked",
                "this import stopped half-way and resumes with its mapping",
            ));
        }
        conn.transaction::<_, AppError, _>(async |tx| {
            if !resume {
                diesel::sql_query("DELETE FROM contacts.import_errors WHERE import_id = $1")
                    .bind::<BigInt, _>(id.0)
                    .execute(tx)
                    .await?;
            }
            diesel::sql_query(
                "UPDATE contacts.imports SET mapping = $3, policy = $4, tag = $5, dry_run = $6, status = 'queued', error = '',
                        processed = CASE WHEN $7 THEN processed ELSE 0 END,
                        created = CASE WHEN $7 THEN created ELSE 0 END,
                        updated = CASE WHEN $7 THEN updated ELSE 0 END,
                        skipped = CASE WHEN $7 THEN skipped ELSE 0 END,
                        failed = CASE WHEN $7 THEN failed ELSE 0 END,
                        started_at = NULL, finished_at = NULL
                  WHERE account_id = $1 AND id = $2",
            )
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(id.0)
            .bind::<Array<Text>, _>(&settings.mapping)
            .bind::<Text, _>(settings.policy.as_str())
            .bind::<Text, _>(&tag)
            .bind::<Bool, _>(settings.dry_run)
            .bind::<Bool, _>(resume)
            .execute(tx)
            .await?;
            Ok(())
        })
        .await?;
        Ok(load_import(&mut conn, caller.account_id, id, false)
            .await?
            .info())
    }

    async fn fail_import(&self, account: AccountId, id: ImportId, why: &str) -> AppResult<()> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "UPDATE contacts.imports SET status = 'failed', error = $3, finished_at = now()
              WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(id.0)
        .bind::<Text, _>(why)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn do_run_import(
        &self,
        account: AccountId,
        id: ImportId,
    ) -> AppResult<ImportInfo> {
        let mut conn = self.conn().await?;
        let row = load_import(&mut conn, account, id, false).await?;
        match JobStatus::parse(&row.status) {
            JobStatus::Queued | JobStatus::Running => {}
            _ => return Ok(row.info()),
        }
        let entity = row.entity();
        let user = UserId(row.user_id);
        let caller = Caller::user(account, user);
        // The user's rights as they are now: a user deactivated or stripped of the right
        // meanwhile stops the import.
        let checked = async {
            self.scope(caller, entity, Action::Create).await?;
            let edit = if row.policy == "update" {
                Some(self.scope(caller, entity, Action::Edit).await?)
            } else {
                None
            };
            Ok::<_, AppError>(edit)
        }
        .await;
        let edit = match checked {
            Ok(e) => e.filter(|s| *s != Scope::All),
            Err(e) if e.code == ErrorCode::Forbidden || e.code == ErrorCode::NotFound => {
                self.fail_import(account, id, &e.message).await?;
                return self.do_import_info(Caller::system(account), id).await;
            }
            Err(e) => return Err(e),
        };
        // A dry run is cheap to redo; it starts over rather than resume without its memory
        // of the rows before.
        diesel::sql_query(
            "UPDATE contacts.imports SET status = 'running', started_at = coalesce(started_at, now()),
                    processed = CASE WHEN dry_run THEN 0 ELSE processed END,
                    created = CASE WHEN dry_run THEN 0 ELSE created END,
                    updated = CASE WHEN dry_run THEN 0 ELSE updated END,
                    skipped = CASE WHEN dry_run THEN 0 ELSE skipped END,
                    failed = CASE WHEN dry_run THEN 0 ELSE failed END
              WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(id.0)
        .execute(&mut conn)
        .await?;
        if row.dry_run {
            diesel::sql_query("DELETE FROM contacts.import_errors WHERE import_id = $1")
                .bind::<BigInt, _>(id.0)
                .execute(&mut conn)
                .await?;
        }
        #[derive(QueryableByName)]
        struct File {
            #[diesel(sql_type = diesel::sql_types::Bytea)]
            data: Vec<u8>,
        }
        let file: File =
            diesel::sql_query("SELECT data FROM contacts.import_files WHERE import_id = $1")
                .bind::<BigInt, _>(id.0)
                .get_result(&mut conn)
                .await?;
        let format = FileFormat::parse(&row.format).unwrap_or(FileFormat::Csv);
        let encoding = TextEncoding::parse(&row.encoding).unwrap_or_default();
        let sheet =
            tokio::task::spawn_blocking(move || tabular::read(&file.data, format, encoding))
                .await
                .map_err(|e| AppError::internal(e.to_string()))?;
        let sheet = match sheet {
            Ok(s) => s,
            Err(e) => {
                let why = <[_]>::first(&e.fields)
                    .map(|f| f.message.clone())
                    .unwrap_or(e.message);
                self.fail_import(account, id, &why).await?;
                return self.do_import_info(Caller::system(account), id).await;
            }
        };
        let defs = load_fields(&mut conn, account, entity).await?;
        let targets: Vec<(usize, Target)> = row
            .mapping
            .iter()
            .enumerate()
            .filter_map(|(i, m)| target(entity, m, &defs).ok().flatten().map(|t| (i, t)))
            .collect();
        let ctx = Ctx {
            entity,
            headers: sheet.headers.clone(),
            targets,
            defs,
            users: self.user_names(account).await?,
            country: self.country(caller).await?,
            tag: row.tag.clone(),
            policy: DuplicatePolicy::parse(&row.policy).unwrap_or_default(),
            dry_run: row.dry_run,
            user,
            caller,
            edit,
        };
        let total = sheet.rows.len();
        let mut seen: HashMap<String, usize> = HashMap::new();
        loop {
            let done = conn
                .transaction::<_, AppError, _>(async |tx| {
                    // The row lock makes two runners of one import take turns; each chunk
                    // starts where the last committed one stopped.
                    let cur = load_import(tx, account, id, true).await?;
                    if JobStatus::parse(&cur.status) != JobStatus::Running {
                        return Ok(true);
                    }
                    let start = cur.processed.max(0) as usize;
                    if start >= total {
                        diesel::sql_query(
                            "UPDATE contacts.imports SET status = 'done', finished_at = now() WHERE id = $1",
                        )
                        .bind::<BigInt, _>(id.0)
                        .execute(tx)
                        .await?;
                        if !cur.dry_run {
                            // Imported: the file is not needed any more (its preview stays).
                            diesel::sql_query("DELETE FROM contacts.import_files WHERE import_id = $1")
                                .bind::<BigInt, _>(id.0)
                                .execute(tx)
                                .await?;
                        }
                        return Ok(true);
                    }
                    let end = (start + CHUNK).min(total);
                    let parsed: Vec<Result<Cand, Vec<ImportRowError>>> = sheet.rows[start..end]
                        .iter()
                        .enumerate()
                        .map(|(i, r)| parse_row(&ctx, r, (start + i + 2) as i32))
                        .collect();
                    let (o, events) = process_chunk(tx, &ctx, parsed, &mut seen).await?;
                    if !o.errors.is_empty() {
                        diesel::sql_query(
                            "INSERT INTO contacts.import_errors (import_id, row_no, field, value, message)
                             SELECT $1, r, f, v, m FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS x(r, f, v, m)
                             ON CONFLICT DO NOTHING",
                        )
                        .bind::<BigInt, _>(id.0)
                        .bind::<Array<Integer>, _>(o.errors.iter().map(|e| e.row).collect::<Vec<_>>())
                        .bind::<Array<Text>, _>(o.errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>())
                        .bind::<Array<Text>, _>(o.errors.iter().map(|e| e.value.as_str()).collect::<Vec<_>>())
                        .bind::<Array<Text>, _>(o.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>())
                        .execute(tx)
                        .await?;
                    }
                    outbox::append(tx, crate::SCHEMA, &events).await?;
                    diesel::sql_query(
                        "UPDATE contacts.imports SET processed = $2, created = created + $3, updated = updated + $4,
                                skipped = skipped + $5, failed = failed + $6 WHERE id = $1",
                    )
                    .bind::<BigInt, _>(id.0)
                    .bind::<Integer, _>(end as i32)
                    .bind::<Integer, _>(o.created)
                    .bind::<Integer, _>(o.updated)
                    .bind::<Integer, _>(o.skipped)
                    .bind::<Integer, _>(o.failed)
                    .execute(tx)
                    .await?;
                    Ok(false)
                })
                .await?;
            if done {
                break;
            }
        }
        if !row.dry_run {
            diesel::sql_query("ANALYZE contacts.contacts")
                .execute(&mut conn)
                .await
                .ok();
        }
        Ok(load_import(&mut conn, account, id, false).await?.info())
    }

    /// Active users of the account by lower-cased e-mail and name.
    async fn user_names(&self, account: AccountId) -> AppResult<HashMap<String, i64>> {
        let mut out = HashMap::new();
        for u in self
            .all_users(account)
            .await?
            .iter()
            .filter(|u| u.is_active)
        {
            out.insert(u.email.to_lowercase(), u.id.0);
            out.entry(u.name.trim().to_lowercase()).or_insert(u.id.0);
        }
        Ok(out)
    }

    pub(crate) async fn do_import_errors(
        &self,
        caller: Caller,
        id: ImportId,
    ) -> AppResult<Vec<ImportRowError>> {
        self.do_import_info(caller, id).await?;
        let mut conn = self.conn().await?;
        #[derive(QueryableByName)]
        struct E {
            #[diesel(sql_type = Integer)]
            row_no: i32,
            #[diesel(sql_type = Text)]
            field: String,
            #[diesel(sql_type = Text)]
            value: String,
            #[diesel(sql_type = Text)]
            message: String,
        }
        let rows: Vec<E> = diesel::sql_query(
            "SELECT row_no, field, value, message FROM contacts.import_errors WHERE import_id = $1 ORDER BY row_no, field",
        )
        .bind::<BigInt, _>(id.0)
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|e| ImportRowError {
                row: e.row_no,
                field: e.field,
                value: e.value,
                message: e.message,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_guessed_in_english_and_russian() {
        let h: Vec<String> = ["ФИО", "Телефон", "Email", "Должность", "Something", "Phone"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            guess_mapping(Entity::Contact, &h, &[]),
            [
                "full_name",
                "phone_work",
                "email_work",
                "position",
                "",
                "phone_work"
            ]
        );
    }

    #[test]
    fn dates_in_common_forms() {
        assert_eq!(
            parse_when("31.12.2024").unwrap().to_rfc3339(),
            "2024-12-31T00:00:00+00:00"
        );
        assert_eq!(
            parse_when("2024-12-31 10:30").unwrap().to_rfc3339(),
            "2024-12-31T10:30:00+00:00"
        );
        assert!(parse_when("31/12/2024").is_none());
    }
}
