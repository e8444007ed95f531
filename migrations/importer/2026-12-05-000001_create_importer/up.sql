-- Schema "importer": imports of whole accounts from amoCRM / Kommo. The importer writes the
-- records through the other modules' traits; here it keeps only its own bookkeeping.

-- One import of an amoCRM account (`source`, its base URL) into a Voronka account: where it
-- stands (the steps done, the page reached), what it read and wrote, and what it skipped.
CREATE TABLE importer.runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    source      TEXT        NOT NULL CHECK (char_length(source) BETWEEN 1 AND 2048),
    state       TEXT        NOT NULL DEFAULT 'running' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    -- The amoCRM token of a run started from the settings (its background job reads it); it is
    -- wiped when the run ends. The command line passes its token directly and keeps none here.
    token       TEXT,
    -- Who started it (a run from the settings), for the log.
    started_by  BIGINT,
    progress    JSONB       NOT NULL DEFAULT '{}',
    error       TEXT,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX runs_account_idx ON importer.runs (account_id, source, id DESC);
-- One unfinished run started at a time per account and source.
CREATE UNIQUE INDEX runs_one_under_way ON importer.runs (account_id, source)
    WHERE state IN ('queued', 'running');

-- amoCRM id → Voronka id, per target account, source and kind of record: what makes a run
-- resumable and a rerun update what it brought the first time instead of duplicating it.
CREATE TABLE importer.ids (
    account_id BIGINT NOT NULL,
    source     TEXT   NOT NULL,
    entity     TEXT   NOT NULL,
    amo_id     BIGINT NOT NULL,
    local_id   BIGINT NOT NULL,
    PRIMARY KEY (account_id, source, entity, amo_id)
);
