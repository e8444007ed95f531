-- Schema "contacts": contacts, companies, their phones and e-mails, links between them, custom
-- fields, tags, and the module's outbox/inbox (shape of kernel::outbox).

CREATE TABLE contacts.contacts (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          BIGINT      NOT NULL,
    first_name          TEXT        NOT NULL DEFAULT '' CHECK (char_length(first_name) <= 100),
    last_name           TEXT        NOT NULL DEFAULT '' CHECK (char_length(last_name) <= 100),
    -- "First Last", or whatever single name was given; never empty.
    name                TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    position            TEXT        NOT NULL DEFAULT '' CHECK (char_length(position) <= 255),
    responsible_user_id BIGINT      NOT NULL,
    tag_ids             BIGINT[]    NOT NULL DEFAULT '{}',
    custom_fields       JSONB       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
    created_by          BIGINT      NOT NULL DEFAULT 0,
    updated_by          BIGINT      NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at          TIMESTAMPTZ,
    -- Set (with deleted_at) when the contact was merged into another.
    merged_into         BIGINT,
    UNIQUE (account_id, id)
);
CREATE INDEX contacts_account_created_idx ON contacts.contacts (account_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX contacts_account_name_idx ON contacts.contacts (account_id, name, id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_responsible_idx ON contacts.contacts (account_id, responsible_user_id, id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_tags_idx ON contacts.contacts USING gin (tag_ids) WHERE deleted_at IS NULL AND tag_ids <> '{}';
CREATE INDEX contacts_custom_fields_idx ON contacts.contacts USING gin (custom_fields jsonb_path_ops) WHERE deleted_at IS NULL AND custom_fields <> '{}';

CREATE TABLE contacts.companies (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          BIGINT      NOT NULL,
    name                TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    web                 TEXT        NOT NULL DEFAULT '' CHECK (char_length(web) <= 2048),
    address             TEXT        NOT NULL DEFAULT '' CHECK (char_length(address) <= 1000),
    responsible_user_id BIGINT      NOT NULL,
    tag_ids             BIGINT[]    NOT NULL DEFAULT '{}',
    custom_fields       JSONB       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
    created_by          BIGINT      NOT NULL DEFAULT 0,
    updated_by          BIGINT      NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at          TIMESTAMPTZ,
    UNIQUE (account_id, id)
);
CREATE INDEX companies_account_created_idx ON contacts.companies (account_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX companies_account_name_idx ON contacts.companies (account_id, name, id) WHERE deleted_at IS NULL;

-- Phones and e-mails of contacts and companies ("owner" is one or the other). A phone keeps what
-- was typed and its normalised form (E.164 when the number allows, else its digits); an e-mail is
-- stored lower-cased. Both serve search and duplicate detection.
CREATE TABLE contacts.phones (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT NOT NULL,
    owner_kind  TEXT   NOT NULL CHECK (owner_kind IN ('contact', 'company')),
    owner_id    BIGINT NOT NULL,
    kind        TEXT   NOT NULL CHECK (kind IN ('WORK', 'WORKDD', 'MOB', 'FAX', 'HOME', 'OTHER')),
    raw         TEXT   NOT NULL CHECK (char_length(raw) BETWEEN 1 AND 50),
    normalized  TEXT   NOT NULL CHECK (normalized ~ '^\+?[0-9]{3,20}$'),
    sort        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX phones_owner_idx ON contacts.phones (account_id, owner_kind, owner_id, sort);
CREATE INDEX phones_number_idx ON contacts.phones (account_id, normalized);

CREATE TABLE contacts.emails (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT NOT NULL,
    owner_kind  TEXT   NOT NULL CHECK (owner_kind IN ('contact', 'company')),
    owner_id    BIGINT NOT NULL,
    kind        TEXT   NOT NULL CHECK (kind IN ('WORK', 'PRIV', 'OTHER')),
    email       TEXT   NOT NULL CHECK (email = lower(email) AND char_length(email) BETWEEN 3 AND 254),
    sort        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX emails_owner_idx ON contacts.emails (account_id, owner_kind, owner_id, sort);
CREATE INDEX emails_address_idx ON contacts.emails (account_id, email);

-- Many-to-many: the people of a company.
CREATE TABLE contacts.contact_companies (
    account_id  BIGINT NOT NULL,
    contact_id  BIGINT NOT NULL,
    company_id  BIGINT NOT NULL,
    PRIMARY KEY (account_id, contact_id, company_id),
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts.contacts (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, company_id) REFERENCES contacts.companies (account_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_companies_company_idx ON contacts.contact_companies (account_id, company_id, contact_id);

-- Custom fields of contacts and of companies (kernel::fields checks the values).
CREATE TABLE contacts.custom_fields (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    entity      TEXT        NOT NULL CHECK (entity IN ('contact', 'company')),
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    field_type  TEXT        NOT NULL CHECK (field_type IN
                    ('text', 'textarea', 'numeric', 'checkbox', 'select', 'multiselect', 'date', 'date_time', 'url')),
    sort        INTEGER     NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX custom_fields_account_name_key ON contacts.custom_fields (account_id, entity, lower(name));
CREATE TABLE contacts.custom_field_enums (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT  NOT NULL,
    field_id    BIGINT  NOT NULL,
    value       TEXT    NOT NULL CHECK (char_length(value) BETWEEN 1 AND 255),
    sort        INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (account_id, field_id) REFERENCES contacts.custom_fields (account_id, id) ON DELETE CASCADE
);
CREATE INDEX custom_field_enums_field_idx ON contacts.custom_field_enums (account_id, field_id, sort, id);

-- Segments: saved filters of contacts (lists now; automation and mailings later).
CREATE TABLE contacts.segments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    entity      TEXT        NOT NULL CHECK (entity IN ('contact', 'company')),
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    filter      JSONB       NOT NULL,
    created_by  BIGINT      NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX segments_account_name_key ON contacts.segments (account_id, entity, lower(name));

-- Tags, per entity type.
CREATE TABLE contacts.tags (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    entity      TEXT        NOT NULL CHECK (entity IN ('contact', 'company')),
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 50),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tags_account_name_key ON contacts.tags (account_id, entity, lower(name));

-- Names are searched nearest-first by trigram word similarity (any part of a name, typos): a
-- GiST index per account walks the nearest names without scoring every match, however common
-- the name. A 64-byte signature (default 12) keeps the walk short on a million names: the
-- nearest 20 in ~10 ms instead of ~80 ms. pg_trgm and btree_gist live in the shared "extensions" schema unless the database
-- has them elsewhere already.
DO $$
DECLARE
    home text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE SCHEMA IF NOT EXISTS extensions;
        CREATE EXTENSION pg_trgm WITH SCHEMA extensions;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gist') THEN
        CREATE SCHEMA IF NOT EXISTS extensions;
        CREATE EXTENSION btree_gist WITH SCHEMA extensions;
    END IF;
    SELECT n.nspname INTO home FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_trgm';
    EXECUTE format('CREATE INDEX contacts_name_trgm_idx ON contacts.contacts USING gist (account_id, name %I.gist_trgm_ops(siglen = 64)) WHERE deleted_at IS NULL', home);
    EXECUTE format('CREATE INDEX companies_name_trgm_idx ON contacts.companies USING gist (account_id, name %I.gist_trgm_ops(siglen = 64)) WHERE deleted_at IS NULL', home);
    EXECUTE format('CREATE INDEX emails_trgm_idx ON contacts.emails USING gin (email %I.gin_trgm_ops)', home);
    EXECUTE format('CREATE INDEX phones_trgm_idx ON contacts.phones USING gin (normalized %I.gin_trgm_ops)', home);
END
$$;

-- The transactional outbox and the inbox (shape of kernel::outbox::ddl).
CREATE TABLE contacts.outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           UUID        NOT NULL UNIQUE,
    account_id   BIGINT      NOT NULL,
    event_type   TEXT        NOT NULL,
    version      INTEGER     NOT NULL,
    actor        JSONB       NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    causation_id UUID,
    payload      JSONB       NOT NULL,
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished_idx ON contacts.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON contacts.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TABLE contacts.outbox_relay (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    awake BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO contacts.outbox_relay DEFAULT VALUES;
CREATE FUNCTION contacts.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT awake FROM contacts.outbox_relay) THEN
        PERFORM pg_notify('voronka_outbox', 'contacts');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON contacts.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION contacts.outbox_notify();
CREATE TABLE contacts.inbox (
    subscriber   TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    account_id   BIGINT      NOT NULL,
    event_type   TEXT        NOT NULL,
    -- 'done', or 'failed' with the reason (malformed or unknown events are not retried)
    outcome      TEXT        NOT NULL,
    error        TEXT,
    handled_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX inbox_failed_idx ON contacts.inbox (subscriber, handled_at) WHERE outcome = 'failed';
