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
