//! Remote mode: the contacts module's trait over HTTP, for when the module runs as its own
//! service (`[modules.contacts] mode = "remote"`). The client and the service's dispatcher are both
//! written by [`kernel::remote_trait!`] from the one list below, which must name every method of
//! the trait (the compiler refuses the client otherwise).

#![allow(clippy::too_many_arguments, unused_imports)]

use kernel::paging::{Page, PageRequest};
use kernel::remote::RemoteClient;
use kernel::{AppResult, Caller};

use super::*;

/// The contacts module's trait, answered by its service.
pub struct ContactsClient {
    remote: RemoteClient,
}

impl ContactsClient {
    pub fn new(remote: RemoteClient) -> ContactsClient {
        ContactsClient { remote }
    }
}

kernel::remote_trait! {
    impl Contacts for ContactsClient, dispatch dispatch_contacts, methods CONTACTS_METHODS {
            write fn create_contact(caller: Caller, new: NewContact) -> Contact;
            read fn contact(caller: Caller, id: ContactId) -> Contact;
            read fn contacts_by_id(caller: Caller, ids: Vec<ContactId>) -> Vec<Contact>;
            write fn update_contact(caller: Caller, id: ContactId, patch: ContactPatch) -> Contact;
            write fn delete_contact(caller: Caller, id: ContactId) -> ();
            read fn list_contacts(caller: Caller, filter: &ContactFilter as ContactFilter, page: PageRequest) -> Page<Contact>;
            read fn duplicates(caller: Caller, phones: Vec<String>, emails: Vec<String>, except: Option<ContactId>) -> Vec<Duplicate>;
            write fn merge_contacts(caller: Caller, keep: ContactId, others: Vec<ContactId>) -> Contact;
            read fn duplicate_groups(caller: Caller, after: Option<String>, limit: u32) -> Vec<DuplicateGroup>;
            read fn segments(caller: Caller) -> Vec<Segment>;
            write fn save_segment(caller: Caller, name: &str as String, filter: ContactFilter) -> Segment;
            write fn delete_segment(caller: Caller, id: SegmentId) -> ();
            read fn segment_size(caller: Caller, id: SegmentId) -> SegmentSize;
            read fn in_segment(caller: Caller, id: SegmentId, contacts: Vec<ContactId>) -> Vec<ContactId>;
            write fn create_company(caller: Caller, new: NewCompany) -> Company;
            read fn company(caller: Caller, id: CompanyId) -> Company;
            write fn update_company(caller: Caller, id: CompanyId, patch: CompanyPatch) -> Company;
            write fn delete_company(caller: Caller, id: CompanyId) -> ();
            write fn merge_companies(caller: Caller, keep: CompanyId, others: Vec<CompanyId>) -> Company;
            read fn list_companies(caller: Caller, filter: &ContactFilter as ContactFilter, page: PageRequest) -> Page<Company>;
            write fn restore_provenance(caller: Caller, entity: Entity, items: Vec<kernel::provenance::Provenance>) -> usize;
            write fn link(caller: Caller, contact: ContactId, company: CompanyId) -> ();
            write fn unlink(caller: Caller, contact: ContactId, company: CompanyId) -> ();
            read fn search(caller: Caller, query: &str as String, limit: u32) -> Vec<SearchHit>;
            read fn custom_fields(caller: Caller, entity: Entity) -> Vec<CustomField>;
            write fn create_custom_field(caller: Caller, entity: Entity, new: NewCustomField) -> CustomField;
            write fn update_custom_field(caller: Caller, id: FieldId, new: NewCustomField) -> CustomField;
            write fn delete_custom_field(caller: Caller, id: FieldId) -> ();
            read fn field_groups(caller: Caller, entity: Entity) -> Vec<FieldGroup>;
            write fn create_field_group(caller: Caller, entity: Entity, new: NewFieldGroup) -> FieldGroup;
            write fn update_field_group(caller: Caller, id: i64, new: NewFieldGroup) -> FieldGroup;
            write fn delete_field_group(caller: Caller, id: i64) -> ();
            read fn tags(caller: Caller, entity: Entity) -> Vec<Tag>;
            write fn create_tags(caller: Caller, entity: Entity, names: Vec<String>) -> Vec<Tag>;
            write fn upload_import(caller: Caller, upload: ImportUpload) -> ImportInfo;
            read fn import_info(caller: Caller, id: ImportId) -> ImportInfo;
            read fn imports(caller: Caller) -> Vec<ImportInfo>;
            write fn start_import(caller: Caller, id: ImportId, settings: ImportSettings) -> ImportInfo;
            write fn run_import(account: kernel::AccountId, id: ImportId) -> ImportInfo;
            read fn import_errors(caller: Caller, id: ImportId) -> Vec<ImportRowError>;
            write fn start_export(caller: Caller, request: ExportRequest) -> ExportInfo;
            write fn run_export(account: kernel::AccountId, id: ExportId) -> ExportInfo;
            read fn exports(caller: Caller) -> Vec<ExportInfo>;
            read fn export_file(caller: Caller, id: ExportId) -> ExportFile;
            write fn seed_contacts(caller: Caller, count: i64, users: Vec<kernel::UserId>) -> i64;
    }
}
