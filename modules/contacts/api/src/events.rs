//! Events the contacts module publishes (through its outbox).

use kernel::UserId;
use kernel::events::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{CompanyId, ContactId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCreated {
    pub contact_id: ContactId,
    pub name: String,
    pub responsible_user_id: UserId,
}

impl DomainEvent for ContactCreated {
    const TYPE: &'static str = "contacts.contact_created";
}

/// Changed fields only, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactUpdated {
    pub contact_id: ContactId,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl DomainEvent for ContactUpdated {
    const TYPE: &'static str = "contacts.contact_updated";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDeleted {
    pub contact_id: ContactId,
}

impl DomainEvent for ContactDeleted {
    const TYPE: &'static str = "contacts.contact_deleted";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyCreated {
    pub company_id: CompanyId,
    pub name: String,
    pub responsible_user_id: UserId,
}

impl DomainEvent for CompanyCreated {
    const TYPE: &'static str = "contacts.company_created";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompanyUpdated {
    pub company_id: CompanyId,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl DomainEvent for CompanyUpdated {
    const TYPE: &'static str = "contacts.company_updated";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyDeleted {
    pub company_id: CompanyId,
}

impl DomainEvent for CompanyDeleted {
    const TYPE: &'static str = "contacts.company_deleted";
}

/// Contacts merged into one: `merged` are gone (deleted, pointing at `kept`); everything that
/// referred to them should refer to `kept` now (the deals module rewrites its links).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactsMerged {
    pub kept: ContactId,
    pub merged: Vec<ContactId>,
}

impl DomainEvent for ContactsMerged {
    const TYPE: &'static str = "contacts.contacts_merged";
}

/// Companies merged into `kept` (their contacts, phones, e-mails, tags and values moved there);
/// the merged ones are deleted. Deals move their links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompaniesMerged {
    pub kept: CompanyId,
    pub merged: Vec<CompanyId>,
}

impl DomainEvent for CompaniesMerged {
    const TYPE: &'static str = "contacts.companies_merged";
}

/// A contact joined or left a company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactLinked {
    pub contact_id: ContactId,
    pub company_id: CompanyId,
    pub linked: bool,
}

impl DomainEvent for ContactLinked {
    const TYPE: &'static str = "contacts.contact_linked";
}
