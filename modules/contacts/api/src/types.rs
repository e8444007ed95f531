use chrono::{DateTime, Utc};
use kernel::typed_id;
use kernel::{AccountId, UserId};
use serde::{Deserialize, Serialize};

pub use kernel::fields::{FieldEnum, FieldType};

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

/// How many contacts a segment holds, counted up to [`SEGMENT_COUNT_CAP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSize {
    pub count: i64,
    pub capped: bool,
}

pub const SEGMENT_COUNT_CAP: i64 = 10_000;

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCustomField {
    pub name: String,
    pub field_type: FieldType,
    #[serde(default)]
    pub enums: Vec<String>,
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
}
