-- OAuth 2.0 integrations registered by an account's admin (amoCRM's authorization-code flow):
-- the clients, their single-use codes, and the rotating refresh tokens. Access tokens are
-- api_tokens rows that name their client.
CREATE TABLE accounts.oauth_clients (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT      NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    client_id     UUID        NOT NULL UNIQUE,
    name          TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    secret_hash   BYTEA       NOT NULL,
    redirect_uri  TEXT        NOT NULL CHECK (char_length(redirect_uri) BETWEEN 1 AND 2000),
    created_by    BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oauth_clients_account_idx ON accounts.oauth_clients (account_id, id);

CREATE TABLE accounts.oauth_codes (
    code_hash     BYTEA       PRIMARY KEY,
    account_id    BIGINT      NOT NULL,
    client_id     BIGINT      NOT NULL REFERENCES accounts.oauth_clients (id) ON DELETE CASCADE,
    user_id       BIGINT      NOT NULL,
    redirect_uri  TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ,
    FOREIGN KEY (account_id, user_id) REFERENCES accounts.users (account_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_codes_client_idx ON accounts.oauth_codes (client_id);

CREATE TABLE accounts.oauth_refresh_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT      NOT NULL,
    client_id     BIGINT      NOT NULL REFERENCES accounts.oauth_clients (id) ON DELETE CASCADE,
    user_id       BIGINT      NOT NULL,
    token_hash    BYTEA       NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    -- Set when it was exchanged for new tokens: a refresh token works once.
    used_at       TIMESTAMPTZ,
    FOREIGN KEY (account_id, user_id) REFERENCES accounts.users (account_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_refresh_tokens_client_idx ON accounts.oauth_refresh_tokens (client_id);

ALTER TABLE accounts.api_tokens
    ADD COLUMN client_id BIGINT REFERENCES accounts.oauth_clients (id) ON DELETE CASCADE;
CREATE INDEX api_tokens_client_idx ON accounts.api_tokens (client_id) WHERE client_id IS NOT NULL;
