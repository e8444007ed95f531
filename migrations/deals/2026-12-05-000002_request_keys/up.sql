-- A command given with a request key (an import's record, a robot's command) creates its deal
-- once, however often it is repeated: the key is kept with the row, unique per account.
ALTER TABLE deals.deals ADD COLUMN request_key uuid;
CREATE UNIQUE INDEX deals_request_key_idx ON deals.deals (account_id, request_key)
    WHERE request_key IS NOT NULL;
