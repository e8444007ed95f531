-- Schema "accounts": tenants, users, groups, roles, sessions, long-lived API tokens.
-- Runs with search_path = accounts; names are still qualified so the SQL reads the same anywhere.

CREATE TABLE accounts.accounts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid        UUID        NOT NULL UNIQUE,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    subdomain   TEXT        NOT NULL UNIQUE CHECK (subdomain ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    currency    TEXT        NOT NULL DEFAULT 'RUB' CHECK (currency ~ '^[A-Z]{3}$'),
    country     TEXT        NOT NULL DEFAULT 'RU',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE accounts.groups (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX groups_account_name_key ON accounts.groups (account_id, lower(name));

CREATE TABLE accounts.roles (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    rights      JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX roles_account_name_key ON accounts.roles (account_id, lower(name));

CREATE TABLE accounts.users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT      NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    -- Stored lower-cased; one person signs in with one e-mail.
    email         TEXT        NOT NULL CHECK (email = lower(email) AND char_length(email) <= 254),
    name          TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- The key lists sort and page by: case-insensitive name.
    name_key      TEXT        GENERATED ALWAYS AS (lower(name)) STORED,
    password_hash TEXT        NOT NULL,
    is_admin      BOOLEAN     NOT NULL DEFAULT false,
    is_active     BOOLEAN     NOT NULL DEFAULT true,
    lang          TEXT        NOT NULL DEFAULT 'en' CHECK (lang IN ('en', 'ru')),
    time_zone     TEXT        NOT NULL DEFAULT 'UTC',
    group_id      BIGINT,
    role_id       BIGINT,
    -- The user's own rights, used when no role is set.
    rights        JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    -- Composite keys: a user can only ever be in a group or role of the same account.
    FOREIGN KEY (account_id, group_id) REFERENCES accounts.groups (account_id, id) ON DELETE SET NULL (group_id),
    FOREIGN KEY (account_id, role_id) REFERENCES accounts.roles (account_id, id) ON DELETE SET NULL (role_id)
);
CREATE UNIQUE INDEX users_email_key ON accounts.users (email);
CREATE INDEX users_account_name_idx ON accounts.users (account_id, name_key, id);
CREATE INDEX users_account_group_idx ON accounts.users (account_id, group_id);
CREATE INDEX users_account_role_idx ON accounts.users (account_id, role_id);

CREATE TABLE accounts.sessions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT      NOT NULL,
    user_id       BIGINT      NOT NULL,
    -- SHA-256 of the token in the cookie: a database leak does not leak live sessions.
    token_hash    BYTEA       NOT NULL UNIQUE,
    csrf_token    TEXT        NOT NULL,
    ip            TEXT,
    user_agent    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (account_id, user_id) REFERENCES accounts.users (account_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_account_user_idx ON accounts.sessions (account_id, user_id);
CREATE INDEX sessions_expires_idx ON accounts.sessions (expires_at);

CREATE TABLE accounts.api_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT      NOT NULL,
    user_id       BIGINT      NOT NULL,
    name          TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    token_hash    BYTEA       NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ,
    FOREIGN KEY (account_id, user_id) REFERENCES accounts.users (account_id, id) ON DELETE CASCADE
);
CREATE INDEX api_tokens_account_user_idx ON accounts.api_tokens (account_id, user_id, id);
