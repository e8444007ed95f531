-- Imports and exports run as background jobs; their files, progress and per-row errors live
-- here so that a restart resumes them. Contacts also learn, from the deals module's events,
-- which of them have an open deal (for segments), and when they were last contacted.

CREATE TABLE contacts.imports (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   BIGINT      NOT NULL,
    user_id      BIGINT      NOT NULL,
    entity       TEXT        NOT NULL CHECK (entity IN ('contact', 'company')),
    file_name    TEXT        NOT NULL CHECK (char_length(file_name) <= 255),
    format       TEXT        NOT NULL CHECK (format IN ('csv', 'xlsx')),
    encoding     TEXT        NOT NULL DEFAULT 'utf-8',
    headers      TEXT[]      NOT NULL,
    -- The first rows, for the mapping screen.
    preview      JSONB       NOT NULL DEFAULT '[]',
    total_rows   INT         NOT NULL,
    -- The target of each column ('' = not imported), as chosen on the mapping screen.
    mapping      TEXT[]      NOT NULL DEFAULT '{}',
    policy       TEXT        NOT NULL DEFAULT 'skip' CHECK (policy IN ('skip', 'update', 'create')),
    tag          TEXT        NOT NULL DEFAULT '',
    dry_run      BOOLEAN     NOT NULL DEFAULT false,
    status       TEXT        NOT NULL DEFAULT 'uploaded'
                 CHECK (status IN ('uploaded', 'queued', 'running', 'done', 'failed')),
    -- Data rows done so far: a resumed run starts after them.
    processed    INT         NOT NULL DEFAULT 0,
    created      INT         NOT NULL DEFAULT 0,
    updated      INT         NOT NULL DEFAULT 0,
    skipped      INT         NOT NULL DEFAULT 0,
    failed       INT         NOT NULL DEFAULT 0,
    error        TEXT        NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX imports_account_idx ON contacts.imports (account_id, id DESC);

CREATE TABLE contacts.import_files (
    import_id BIGINT PRIMARY KEY REFERENCES contacts.imports (id) ON DELETE CASCADE,
    data      BYTEA  NOT NULL
);

CREATE TABLE contacts.import_errors (
    import_id BIGINT NOT NULL REFERENCES contacts.imports (id) ON DELETE CASCADE,
    -- The row's line in the file (the header is line 1).
    row_no    INT    NOT NULL,
    field     TEXT   NOT NULL,
    value     TEXT   NOT NULL,
    message   TEXT   NOT NULL,
    PRIMARY KEY (import_id, row_no, field)
);

-- Imports (and contacts naming their company) find companies by name, ignoring case.
CREATE INDEX companies_lower_name_idx ON contacts.companies (account_id, lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE contacts.exports (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   BIGINT      NOT NULL,
    user_id      BIGINT      NOT NULL,
    entity       TEXT        NOT NULL CHECK (entity IN ('contact', 'company')),
    format       TEXT        NOT NULL CHECK (format IN ('csv', 'xlsx')),
    filter       JSONB       NOT NULL,
    -- What was exported, for the list of exports ("segment VIP", "all contacts").
    title        TEXT        NOT NULL DEFAULT '',
    status       TEXT        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    rows         INT         NOT NULL DEFAULT 0,
    data         BYTEA,
    error        TEXT        NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ
);
CREATE INDEX exports_account_idx ON contacts.exports (account_id, id DESC);

-- Deals as the contacts module sees them (fed by the deals module's events): which contacts a
-- deal names and whether it is open. `contacts.open_deals` counts them per contact.
CREATE TABLE contacts.deal_refs (
    account_id  BIGINT   NOT NULL,
    deal_id     BIGINT   NOT NULL,
    contact_ids BIGINT[] NOT NULL DEFAULT '{}',
    open        BOOLEAN  NOT NULL,
    PRIMARY KEY (account_id, deal_id)
);
CREATE INDEX deal_refs_contacts_idx ON contacts.deal_refs USING gin (contact_ids) WHERE open;

-- A segment's last count (for callers who see every contact), reused for a minute.
ALTER TABLE contacts.segments
    ADD COLUMN size INT,
    ADD COLUMN size_capped BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN counted_at TIMESTAMPTZ;

-- Set (with deleted_at) when the company was merged into another.
ALTER TABLE contacts.companies ADD COLUMN merged_into BIGINT;

ALTER TABLE contacts.contacts
    ADD COLUMN open_deals INT NOT NULL DEFAULT 0,
    ADD COLUMN last_contacted_at TIMESTAMPTZ;
CREATE INDEX contacts_open_deals_idx ON contacts.contacts (account_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND open_deals > 0;

-- Contacts by tag in list order: the first page of a tag's contacts (a segment, a filtered list)
-- walks this index from the newest, however the tagged contacts are spread among the others.
-- Kept by statement triggers on contacts.contacts from their transition tables.
CREATE TABLE contacts.contact_tags (
    account_id BIGINT      NOT NULL,
    tag_id     BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    contact_id BIGINT      NOT NULL,
    PRIMARY KEY (account_id, tag_id, created_at, contact_id)
);
INSERT INTO contacts.contact_tags (account_id, tag_id, created_at, contact_id)
SELECT account_id, unnest(tag_ids), created_at, id FROM contacts.contacts
 WHERE deleted_at IS NULL AND tag_ids <> '{}'
ON CONFLICT DO NOTHING;

CREATE FUNCTION contacts.contact_tags_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contacts.contact_tags (account_id, tag_id, created_at, contact_id)
    SELECT n.account_id, unnest(n.tag_ids), n.created_at, n.id FROM new_rows n
     WHERE n.deleted_at IS NULL AND n.tag_ids <> '{}'
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE FUNCTION contacts.contact_tags_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only rows whose tags, creation time or deletion changed.
    DELETE FROM contacts.contact_tags ct
     USING (SELECT o.account_id, unnest(o.tag_ids) AS tag_id, o.created_at, o.id
              FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE (o.tag_ids, o.created_at, o.deleted_at) IS DISTINCT FROM (n.tag_ids, n.created_at, n.deleted_at)) x
     WHERE ct.account_id = x.account_id AND ct.tag_id = x.tag_id
       AND ct.created_at = x.created_at AND ct.contact_id = x.id;
    INSERT INTO contacts.contact_tags (account_id, tag_id, created_at, contact_id)
    SELECT n.account_id, unnest(n.tag_ids), n.created_at, n.id
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE n.deleted_at IS NULL AND n.tag_ids <> '{}'
       AND (o.tag_ids, o.created_at, o.deleted_at) IS DISTINCT FROM (n.tag_ids, n.created_at, n.deleted_at)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER contact_tags_inserted AFTER INSERT ON contacts.contacts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION contacts.contact_tags_inserted();
CREATE TRIGGER contact_tags_updated AFTER UPDATE ON contacts.contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION contacts.contact_tags_updated();
