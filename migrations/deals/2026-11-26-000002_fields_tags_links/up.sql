-- Deal custom fields, tags, links to contacts and companies, text search, saved filters.


-- Custom fields of deals (kernel::fields describes the types and how values are checked).
CREATE TABLE deals.custom_fields (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    field_type  TEXT        NOT NULL CHECK (field_type IN
                    ('text', 'textarea', 'numeric', 'checkbox', 'select', 'multiselect', 'date', 'date_time', 'url')),
    sort        INTEGER     NOT NULL DEFAULT 0,
    -- The stages a deal may enter only with a value here: [{"pipeline_id": 1, "status_id": 1001}]
    required_statuses JSONB NOT NULL DEFAULT '[]',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX custom_fields_account_name_key ON deals.custom_fields (account_id, lower(name));

CREATE TABLE deals.custom_field_enums (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT  NOT NULL,
    field_id    BIGINT  NOT NULL,
    value       TEXT    NOT NULL CHECK (char_length(value) BETWEEN 1 AND 255),
    sort        INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (account_id, field_id) REFERENCES deals.custom_fields (account_id, id) ON DELETE CASCADE
);
CREATE INDEX custom_field_enums_field_idx ON deals.custom_field_enums (account_id, field_id, sort, id);

CREATE TABLE deals.tags (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 50),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX tags_account_name_key ON deals.tags (account_id, lower(name));

-- Per-user saved board/list filters: a name and the filter's query string.
CREATE TABLE deals.saved_filters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    user_id     BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    query       TEXT        NOT NULL CHECK (char_length(query) <= 2000),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX saved_filters_user_idx ON deals.saved_filters (account_id, user_id, id);

ALTER TABLE deals.deals
    ADD COLUMN tag_ids         BIGINT[] NOT NULL DEFAULT '{}',
    -- Values by field id, as kernel::fields normalises them.
    ADD COLUMN custom_fields   JSONB    NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
    -- Contacts and companies of the contacts module, by id; the main contact comes first.
    ADD COLUMN contact_ids     BIGINT[] NOT NULL DEFAULT '{}',
    ADD COLUMN main_contact_id BIGINT,
    ADD COLUMN company_ids     BIGINT[] NOT NULL DEFAULT '{}';

-- A contact's deals (the contact page).
CREATE INDEX deals_contacts_idx ON deals.deals USING gin (contact_ids) WHERE deleted_at IS NULL AND contact_ids <> '{}';
CREATE INDEX deals_tags_idx ON deals.deals USING gin (tag_ids) WHERE deleted_at IS NULL;
CREATE INDEX deals_custom_fields_idx ON deals.deals USING gin (custom_fields jsonb_path_ops) WHERE deleted_at IS NULL;
-- Trigram matching for "any part of a name" searches. Extensions are database-wide and shared by
-- the modules: pg_trgm goes into the schema "extensions" unless the database already has it
-- somewhere, and no module's down migration drops it.
DO $$
DECLARE
    home text;
BEGIN
    SELECT n.nspname INTO home FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_trgm';
    IF home IS NULL THEN
        CREATE SCHEMA IF NOT EXISTS extensions;
        CREATE EXTENSION pg_trgm WITH SCHEMA extensions;
        home := 'extensions';
    END IF;
    EXECUTE format('CREATE INDEX deals_name_trgm_idx ON deals.deals USING gin (name %I.gin_trgm_ops) WHERE deleted_at IS NULL', home);
END
$$;
-- The list view's default order (newest first) and its created-range filter.
CREATE INDEX deals_account_created_idx ON deals.deals (account_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
