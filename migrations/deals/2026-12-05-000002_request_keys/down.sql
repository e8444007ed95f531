DROP INDEX deals.deals_request_key_idx;
ALTER TABLE deals.deals DROP COLUMN request_key;
