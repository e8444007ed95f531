DROP INDEX contacts.contacts_open_deals_idx;
ALTER TABLE contacts.contacts DROP COLUMN last_contacted_at, DROP COLUMN open_deals;
DROP TABLE contacts.deal_refs;
ALTER TABLE contacts.companies DROP COLUMN merged_into;
DROP TABLE contacts.exports;
DROP INDEX contacts.companies_lower_name_idx;
DROP TABLE contacts.import_errors;
DROP TABLE contacts.import_files;
DROP TABLE contacts.imports;
