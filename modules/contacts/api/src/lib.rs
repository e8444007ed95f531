//! The contacts module's contract: contacts and companies with their phones, e-mails, links,
//! tags and custom fields; search; duplicates.
//!
//! Every call takes a [`Caller`]; reads are scoped to the caller's account and to what the
//! caller's rights on contacts (or companies) let them see.

pub mod events;
pub mod remote;
mod types;

use async_trait::async_trait;
use kernel::paging::{Page, PageRequest};
use kernel::{AppResult, Caller};

pub use types::*;

#[async_trait]
pub trait Contacts: Send + Sync {
    // --- contacts -----------------------------------------------------------------------------
    async fn create_contact(&self, caller: Caller, new: NewContact) -> AppResult<Contact>;
    async fn contact(&self, caller: Caller, id: ContactId) -> AppResult<Contact>;
    /// Several contacts by id (unknown or invisible ones are left out), e.g. for deal cards.
    async fn contacts_by_id(&self, caller: Caller, ids: Vec<ContactId>) -> AppResult<Vec<Contact>>;
    async fn update_contact(
        &self,
        caller: Caller,
        id: ContactId,
        patch: ContactPatch,
    ) -> AppResult<Contact>;
    async fn delete_contact(&self, caller: Caller, id: ContactId) -> AppResult<()>;
    /// Newest first, keyset paged.
    async fn list_contacts(
        &self,
        caller: Caller,
        filter: &ContactFilter,
        page: PageRequest,
    ) -> AppResult<Page<Contact>>;
    /// Contacts that share a phone or an e-mail with the given ones (as typed; they are
    /// normalised here), except `except`.
    async fn duplicates(
        &self,
        caller: Caller,
        phones: Vec<String>,
        emails: Vec<String>,
        except: Option<ContactId>,
    ) -> AppResult<Vec<Duplicate>>;

    /// Merges `others` into `keep` in one transaction: every phone, e-mail, tag, company link and
    /// custom-field value is kept (`keep`'s own values win), the others are deleted and point at
    /// `keep`; ContactsMerged tells the other modules (deals move their links).
    async fn merge_contacts(
        &self,
        caller: Caller,
        keep: ContactId,
        others: Vec<ContactId>,
    ) -> AppResult<Contact>;

    /// Groups of contacts that share a phone or an e-mail, by the shared value in order, after
    /// `after` (keyset), up to `limit` groups: the "find duplicates" page.
    async fn duplicate_groups(
        &self,
        caller: Caller,
        after: Option<String>,
        limit: u32,
    ) -> AppResult<Vec<DuplicateGroup>>;

    // --- segments (saved filters of contacts) -------------------------------------------------
    async fn segments(&self, caller: Caller) -> AppResult<Vec<Segment>>;
    async fn save_segment(
        &self,
        caller: Caller,
        name: &str,
        filter: ContactFilter,
    ) -> AppResult<Segment>;
    async fn delete_segment(&self, caller: Caller, id: SegmentId) -> AppResult<()>;
    /// The contacts of a segment the caller may see, counted up to the cap (never a full count
    /// of a huge segment on each page load).
    async fn segment_size(&self, caller: Caller, id: SegmentId) -> AppResult<SegmentSize>;
    /// Which of the given contacts are in a segment (and visible to the caller), in one query;
    /// e.g. for automation's "the deal's contact is in segment …" condition.
    async fn in_segment(
        &self,
        caller: Caller,
        id: SegmentId,
        contacts: Vec<ContactId>,
    ) -> AppResult<Vec<ContactId>>;

    // --- companies ----------------------------------------------------------------------------
    async fn create_company(&self, caller: Caller, new: NewCompany) -> AppResult<Company>;
    async fn company(&self, caller: Caller, id: CompanyId) -> AppResult<Company>;
    async fn update_company(
        &self,
        caller: Caller,
        id: CompanyId,
        patch: CompanyPatch,
    ) -> AppResult<Company>;
    async fn delete_company(&self, caller: Caller, id: CompanyId) -> AppResult<()>;
    /// Merges `others` into `keep` in one transaction, as [`Contacts::merge_contacts`] does:
    /// every phone, e-mail, tag, contact and value is kept; CompaniesMerged moves deal links.
    async fn merge_companies(
        &self,
        caller: Caller,
        keep: CompanyId,
        others: Vec<CompanyId>,
    ) -> AppResult<Company>;
    async fn list_companies(
        &self,
        caller: Caller,
        filter: &ContactFilter,
        page: PageRequest,
    ) -> AppResult<Page<Company>>;
    /// Sets when and by whom contacts or companies were made (see [`kernel::provenance`]), for
    /// records brought over by an import. Records not in the account are skipped; the number
    /// changed is returned. The system or administrators only.
    async fn restore_provenance(
        &self,
        caller: Caller,
        entity: Entity,
        items: Vec<kernel::provenance::Provenance>,
    ) -> AppResult<usize>;
    /// Makes the contact one of the company's people (idempotent).
    async fn link(&self, caller: Caller, contact: ContactId, company: CompanyId) -> AppResult<()>;
    async fn unlink(&self, caller: Caller, contact: ContactId, company: CompanyId)
    -> AppResult<()>;

    // --- search -------------------------------------------------------------------------------
    /// Contacts and companies by any part of a name (typos tolerated), a phone in any format,
    /// or an e-mail; best matches first.
    async fn search(&self, caller: Caller, query: &str, limit: u32) -> AppResult<Vec<SearchHit>>;

    // --- custom fields and tags ---------------------------------------------------------------
    async fn custom_fields(&self, caller: Caller, entity: Entity) -> AppResult<Vec<CustomField>>;
    async fn create_custom_field(
        &self,
        caller: Caller,
        entity: Entity,
        new: NewCustomField,
    ) -> AppResult<CustomField>;
    /// Renames a field, changes its choices (kept by text; values of removed ones are cleared)
    /// or its group; the type stays.
    async fn update_custom_field(
        &self,
        caller: Caller,
        id: FieldId,
        new: NewCustomField,
    ) -> AppResult<CustomField>;
    /// Deletes a field and its values on every contact or company.
    async fn delete_custom_field(&self, caller: Caller, id: FieldId) -> AppResult<()>;
    /// The groups an entity type's fields are shown under, in order.
    async fn field_groups(&self, caller: Caller, entity: Entity) -> AppResult<Vec<FieldGroup>>;
    /// Adds a group (administrators; names are unique per entity type without case).
    async fn create_field_group(
        &self,
        caller: Caller,
        entity: Entity,
        new: NewFieldGroup,
    ) -> AppResult<FieldGroup>;
    /// Renames a group or moves it among the others.
    async fn update_field_group(
        &self,
        caller: Caller,
        id: i64,
        new: NewFieldGroup,
    ) -> AppResult<FieldGroup>;
    /// Deletes a group; its fields (and their values) stay, in the main list.
    async fn delete_field_group(&self, caller: Caller, id: i64) -> AppResult<()>;
    async fn tags(&self, caller: Caller, entity: Entity) -> AppResult<Vec<Tag>>;
    /// The named tags of an entity type, created when missing (names compare without case),
    /// in the order given.
    async fn create_tags(
        &self,
        caller: Caller,
        entity: Entity,
        names: Vec<String>,
    ) -> AppResult<Vec<Tag>>;

    // --- import and export ----------------------------------------------------------------
    /// Reads an uploaded CSV or XLSX (its header row and first rows) and keeps it for mapping.
    /// Refuses a file that is not UTF-8 (or the encoding chosen), empty, or too large.
    async fn upload_import(&self, caller: Caller, upload: ImportUpload) -> AppResult<ImportInfo>;
    async fn import_info(&self, caller: Caller, id: ImportId) -> AppResult<ImportInfo>;
    /// The latest imports of the account (the caller's own unless an administrator).
    async fn imports(&self, caller: Caller) -> AppResult<Vec<ImportInfo>>;
    /// Checks the mapping (a name column is required) and queues the import (or its dry run):
    /// the caller then hands it to a job that calls [`Contacts::run_import`].
    async fn start_import(
        &self,
        caller: Caller,
        id: ImportId,
        settings: ImportSettings,
    ) -> AppResult<ImportInfo>;
    /// Runs a queued import to its end, in chunks that each commit with the count of rows done,
    /// so a run killed half-way resumes where it stopped (no row twice). For the job worker.
    async fn run_import(&self, account: kernel::AccountId, id: ImportId) -> AppResult<ImportInfo>;
    /// The rows refused, in file order.
    async fn import_errors(&self, caller: Caller, id: ImportId) -> AppResult<Vec<ImportRowError>>;

    /// Queues an export of a list or a segment (needs the export right).
    async fn start_export(&self, caller: Caller, request: ExportRequest) -> AppResult<ExportInfo>;
    /// Writes a queued export's file. For the job worker.
    async fn run_export(&self, account: kernel::AccountId, id: ExportId) -> AppResult<ExportInfo>;
    async fn exports(&self, caller: Caller) -> AppResult<Vec<ExportInfo>>;
    async fn export_file(&self, caller: Caller, id: ExportId) -> AppResult<ExportFile>;

    /// Fills the account with `count` generated contacts (names, a mobile phone and an e-mail
    /// each, spread over `users`) in set-based statements, for benchmarks. Administrators only.
    async fn seed_contacts(
        &self,
        caller: Caller,
        count: i64,
        users: Vec<kernel::UserId>,
    ) -> AppResult<i64>;
}
