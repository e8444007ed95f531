DROP INDEX IF EXISTS accounts.api_tokens_client_idx;
ALTER TABLE accounts.api_tokens DROP COLUMN IF EXISTS client_id;
DROP TABLE IF EXISTS accounts.oauth_refresh_tokens;
DROP TABLE IF EXISTS accounts.oauth_codes;
DROP TABLE IF EXISTS accounts.oauth_clients;
