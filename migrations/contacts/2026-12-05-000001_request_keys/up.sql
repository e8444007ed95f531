-- A command given with a request key (an import's record) creates its contact or company once,
-- however often it is repeated: the key is kept with the row, unique per account.
ALTER TABLE contacts.contacts ADD COLUMN request_key uuid;
CREATE UNIQUE INDEX contacts_request_key_idx ON contacts.contacts (account_id, request_key)
    WHERE request_key IS NOT NULL;
ALTER TABLE contacts.companies ADD COLUMN request_key uuid;
CREATE UNIQUE INDEX companies_request_key_idx ON contacts.companies (account_id, request_key)
    WHERE request_key IS NOT NULL;
