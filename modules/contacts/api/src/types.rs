use chrono::{DateTime, Utc};
use kernel::typed_id;
use kernel::{AccountId, UserId};
use serde::{Deserialize, Serialize};

pub use kernel::fields::{FieldEnum, FieldGroup, FieldType, NewFieldGroup};

typed_id!(ContactId);
typed_id!(CompanyId);
typed_id!(FieldId);
typed_id!(TagId);
typed_id!(SegmentId);

/// Custom-field values by field id (a string key, as JSON objects are keyed).
pub type FieldValues = serde_json::Map<String, serde_json::Value>;

/// Contacts or companies: the two kinds of record this module keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    Contact,
    Company,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Contact => "contact",
            Entity::Company => "company",
        }
    }

    pub fn parse(s: &str) -> Option<Entity> {
        match s {
            "contact" => Some(Entity::Contact),
            "company" => Some(Entity::Company),
            _ => None,
        }
    }
}

/// Phone types as amoCRM names them (`enum_code`).
pub const PHONE_KINDS: [&str; 6] = ["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"];
/// E-mail types as amoCRM names them.
pub const EMAIL_KINDS: [&str; 3] = ["WORK", "PRIV", "OTHER"];
pub const MAX_PHONES: usize = 20;
pub const MAX_EMAILS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    pub kind: String,
    /// As it was typed, for display.
    pub raw: String,
    /// E.164 where the number allows, else its digits: what search and duplicates match on.
    pub normalized: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub kind: String,
    pub email: String,
}

/// A phone or an e-mail as given: its type (default WORK) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    #[serde(default = "work")]
    pub kind: String,
    pub value: String,
}

fn work() -> String {
    "WORK".into()
}

impl Reach {
    pub fn work(value: impl Into<String>) -> Reach {
        Reach {
            kind: work(),
            value: value.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: TagId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    pub account_id: AccountId,
    pub first_name: String,
    pub last_name: String,
    /// "First Last" (or the one name given).
    pub name: String,
    pub position: String,
    pub responsible_user_id: UserId,
    pub phones: Vec<Phone>,
    pub emails: Vec<Email>,
    pub tags: Vec<Tag>,
    pub custom_fields: FieldValues,
    pub company_ids: Vec<CompanyId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewContact {
    pub first_name: String,
    pub last_name: String,
    pub position: String,
    /// The caller when not given.
    pub responsible_user_id: Option<UserId>,
    pub phones: Vec<Reach>,
    pub emails: Vec<Reach>,
    pub tags: Vec<String>,
    pub custom_fields: FieldValues,
    pub company_ids: Vec<CompanyId>,
}

/// `None` leaves a part as it is; phones, e-mails and tags are replaced whole; custom fields are
/// merged (an empty value clears one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactPatch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub position: Option<String>,
    pub responsible_user_id: Option<UserId>,
    pub phones: Option<Vec<Reach>>,
    pub emails: Option<Vec<Reach>>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<FieldValues>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    pub id: CompanyId,
    pub account_id: AccountId,
    pub name: String,
    pub web: String,
    pub address: String,
    pub responsible_user_id: UserId,
    pub phones: Vec<Phone>,
    pub emails: Vec<Email>,
    pub tags: Vec<Tag>,
    pub custom_fields: FieldValues,
    pub contact_ids: Vec<ContactId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewCompany {
    pub name: String,
    pub web: String,
    pub address: String,
    pub responsible_user_id: Option<UserId>,
    pub phones: Vec<Reach>,
    pub emails: Vec<Reach>,
    pub tags: Vec<String>,
    pub custom_fields: FieldValues,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompanyPatch {
    pub name: Option<String>,
    pub web: Option<String>,
    pub address: Option<String>,
    pub responsible_user_id: Option<UserId>,
    pub phones: Option<Vec<Reach>>,
    pub emails: Option<Vec<Reach>>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<FieldValues>,
}

/// Which contacts or companies a list shows. Empty parts do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactFilter {
    pub responsible: Vec<UserId>,
    pub tags: Vec<TagId>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Custom fields with this value (a choice by its id or text).
    pub fields: Vec<(FieldId, serde_json::Value)>,
    /// Contacts with (true) or without (false) an open deal.
    pub open_deal: Option<bool>,
    /// Contacts last contacted within this many days.
    pub contacted_within_days: Option<i32>,
    /// Contacts not contacted for this many days (or never).
    pub not_contacted_days: Option<i32>,
}

impl ContactFilter {
    pub fn is_empty(&self) -> bool {
        self == &ContactFilter::default()
    }
}

/// A saved filter of contacts, with a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub id: SegmentId,
    pub name: String,
    pub filter: ContactFilter,
}

/// How many contacts a segment holds, counted up to [`SEGMENT_COUNT_CAP`] (shown as "1 000+"
/// beyond: a page load never counts a huge segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSize {
    pub count: i64,
    pub capped: bool,
}

pub const SEGMENT_COUNT_CAP: i64 = 1_000;

/// A contact that shares a phone or an e-mail with the one being entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    pub contact_id: ContactId,
    pub name: String,
    /// The phone (normalised) or e-mail they share.
    pub matched: String,
}

/// Contacts that share one phone number or e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateGroup {
    /// The shared phone (normalised) or e-mail.
    pub matched: String,
    /// Oldest first.
    pub contacts: Vec<(ContactId, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub entity: Entity,
    pub id: i64,
    pub name: String,
    /// What matched besides the name: a phone or an e-mail (empty for a name match).
    pub detail: String,
    /// Higher is better.
    pub rank: f32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    pub id: FieldId,
    pub entity: Entity,
    pub name: String,
    pub field_type: FieldType,
    pub sort: i32,
    pub enums: Vec<FieldEnum>,
    /// The group it is shown under (`None`: the main list).
    #[serde(default)]
    pub group_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCustomField {
    pub name: String,
    pub field_type: FieldType,
    #[serde(default)]
    pub enums: Vec<String>,
    /// The group to show it under (`None`: the main list).
    #[serde(default)]
    pub group_id: Option<i64>,
}

impl kernel::fields::FieldDef for CustomField {
    fn field_id(&self) -> i64 {
        self.id.0
    }
    fn field_name(&self) -> &str {
        &self.name
    }
    fn field_type(&self) -> FieldType {
        self.field_type
    }
    fn field_enums(&self) -> &[FieldEnum] {
        &self.enums
    }
    fn field_group(&self) -> Option<i64> {
        self.group_id
    }
}

// --- import and export ------------------------------------------------------------------------

typed_id!(ImportId);
typed_id!(ExportId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Xlsx,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Xlsx => "xlsx",
        }
    }

    pub fn parse(s: &str) -> Option<FileFormat> {
        match s {
            "csv" => Some(FileFormat::Csv),
            "xlsx" => Some(FileFormat::Xlsx),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileFormat::Csv => "text/csv; charset=utf-8",
            FileFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// The text encoding of an uploaded CSV (XLSX is always Unicode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TextEncoding {
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// What Excel writes for "CSV" on a Russian Windows.
    #[serde(rename = "windows-1251")]
    Windows1251,
}

impl TextEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "utf-8",
            TextEncoding::Windows1251 => "windows-1251",
        }
    }

    pub fn parse(s: &str) -> Option<TextEncoding> {
        match s {
            "utf-8" => Some(TextEncoding::Utf8),
            "windows-1251" => Some(TextEncoding::Windows1251),
            _ => None,
        }
    }
}

/// A file to import, as uploaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportUpload {
    pub entity: Entity,
    pub file_name: String,
    pub encoding: TextEncoding,
    pub data: Vec<u8>,
}

/// The largest file accepted for import.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;
/// The most data rows in one import.
pub const MAX_IMPORT_ROWS: usize = 1_000_000;

/// What to do with a row whose phone or e-mail (or, for companies, name) is already on record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// Leave the record as it is and count the row as skipped.
    #[default]
    Skip,
    /// Add the row's values to the record: names and fields given replace, phones, e-mails and
    /// tags are added.
    Update,
    /// Create a new record anyway.
    Create,
}

impl DuplicatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicatePolicy::Skip => "skip",
            DuplicatePolicy::Update => "update",
            DuplicatePolicy::Create => "create",
        }
    }

    pub fn parse(s: &str) -> Option<DuplicatePolicy> {
        match s {
            "skip" => Some(DuplicatePolicy::Skip),
            "update" => Some(DuplicatePolicy::Update),
            "create" => Some(DuplicatePolicy::Create),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// An import whose columns are not mapped yet.
    Uploaded,
    Queued,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Uploaded => "uploaded",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> JobStatus {
        match s {
            "uploaded" => JobStatus::Uploaded,
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            _ => JobStatus::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed)
    }
}

/// Where a column of an import goes: one of [`CONTACT_TARGETS`] / [`COMPANY_TARGETS`], or
/// `cf:<field id>` for a custom field; empty for a column left out.
pub const CONTACT_TARGETS: [&str; 15] = [
    "full_name",
    "first_name",
    "last_name",
    "position",
    "phone_work",
    "phone_mob",
    "phone_home",
    "phone_other",
    "email_work",
    "email_priv",
    "email_other",
    "tags",
    "responsible",
    "company",
    "created_at",
];

pub const COMPANY_TARGETS: [&str; 12] = [
    "name",
    "web",
    "address",
    "phone_work",
    "phone_mob",
    "phone_home",
    "phone_other",
    "email_work",
    "email_priv",
    "email_other",
    "tags",
    "responsible",
];

/// How an import is to run, from the mapping screen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSettings {
    /// A target per column of the file, in order.
    pub mapping: Vec<String>,
    pub policy: DuplicatePolicy,
    /// A tag put on every created or updated record (empty: none).
    pub tag: String,
    /// Check every row and count what would happen, changing nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportInfo {
    pub id: ImportId,
    pub entity: Entity,
    pub user_id: UserId,
    pub file_name: String,
    pub format: FileFormat,
    pub encoding: TextEncoding,
    pub headers: Vec<String>,
    /// The first rows of the file.
    pub preview: Vec<Vec<String>>,
    pub total_rows: i32,
    pub mapping: Vec<String>,
    pub policy: DuplicatePolicy,
    pub tag: String,
    pub dry_run: bool,
    pub status: JobStatus,
    pub processed: i32,
    pub created: i32,
    pub updated: i32,
    pub skipped: i32,
    pub failed: i32,
    /// Why a failed import stopped.
    pub error: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ImportInfo {
    /// Percent of rows done.
    pub fn percent(&self) -> i32 {
        if self.total_rows == 0 {
            100
        } else {
            (self.processed as i64 * 100 / self.total_rows as i64) as i32
        }
    }
}

/// A row the import refused (or would refuse, in a dry run), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRowError {
    /// The row in the file as a spreadsheet numbers it (the header is row 1).
    pub row: i32,
    /// The column's header, or the target when no single column is to blame.
    pub field: String,
    pub value: String,
    pub message: String,
}

/// What to export: a filtered list, or a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    pub entity: Entity,
    pub format: FileFormat,
    pub filter: ContactFilter,
    pub segment: Option<SegmentId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportInfo {
    pub id: ExportId,
    pub entity: Entity,
    pub format: FileFormat,
    pub title: String,
    pub status: JobStatus,
    pub rows: i32,
    pub error: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A finished export's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportFile {
    pub file_name: String,
    pub format: FileFormat,
    pub data: Vec<u8>,
}
