DROP INDEX contacts.companies_request_key_idx;
ALTER TABLE contacts.companies DROP COLUMN request_key;
DROP INDEX contacts.contacts_request_key_idx;
ALTER TABLE contacts.contacts DROP COLUMN request_key;
