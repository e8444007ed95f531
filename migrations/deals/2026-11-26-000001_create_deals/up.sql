-- Schema "deals": pipelines, stages, loss reasons, deals, per-stage totals, stage history,
-- and the module's outbox/inbox (see kernel::outbox).

CREATE TABLE deals.pipelines (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    sort        INTEGER     NOT NULL DEFAULT 0,
    is_main     BOOLEAN     NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE INDEX pipelines_account_sort_idx ON deals.pipelines (account_id, sort, id);

-- Stage ids are unique per pipeline. Ordinary stages take ids from a sequence starting at 1000;
-- every pipeline has "Closed – won" = 142 and "Closed – lost" = 143, as amoCRM's API expects.
CREATE SEQUENCE deals.stage_ids START WITH 1000;
CREATE TABLE deals.stages (
    pipeline_id BIGINT      NOT NULL,
    id          BIGINT      NOT NULL,
    account_id  BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    color       TEXT        NOT NULL CHECK (color ~ '^#[0-9a-f]{6}$'),
    sort        INTEGER     NOT NULL,
    kind        TEXT        NOT NULL CHECK (kind IN ('incoming', 'open', 'won', 'lost')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, id),
    FOREIGN KEY (account_id, pipeline_id) REFERENCES deals.pipelines (account_id, id) ON DELETE CASCADE,
    CHECK ((kind = 'won') = (id = 142) AND (kind = 'lost') = (id = 143))
);
CREATE INDEX stages_account_pipeline_sort_idx ON deals.stages (account_id, pipeline_id, sort, id);

CREATE TABLE deals.loss_reasons (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    sort        INTEGER     NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX loss_reasons_account_name_key ON deals.loss_reasons (account_id, lower(name));

CREATE TABLE deals.deals (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          BIGINT      NOT NULL,
    pipeline_id         BIGINT      NOT NULL,
    stage_id            BIGINT      NOT NULL,
    name                TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    -- Whole units of the account's currency, as amoCRM's `price`.
    price               BIGINT      NOT NULL DEFAULT 0 CHECK (price >= 0),
    responsible_user_id BIGINT      NOT NULL,
    -- Order within the stage's column: smaller first; moves pick a value between neighbours.
    position            BIGINT      NOT NULL,
    loss_reason_id      BIGINT,
    created_by          BIGINT      NOT NULL DEFAULT 0,
    updated_by          BIGINT      NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at           TIMESTAMPTZ,
    deleted_at          TIMESTAMPTZ,
    FOREIGN KEY (pipeline_id, stage_id) REFERENCES deals.stages (pipeline_id, id),
    FOREIGN KEY (account_id, pipeline_id) REFERENCES deals.pipelines (account_id, id),
    FOREIGN KEY (account_id, loss_reason_id) REFERENCES deals.loss_reasons (account_id, id)
);
-- A board column, in order, for everyone or for one responsible user (rights "own").
CREATE INDEX deals_column_idx ON deals.deals (account_id, pipeline_id, stage_id, position, id) WHERE deleted_at IS NULL;
CREATE INDEX deals_column_responsible_idx ON deals.deals (account_id, pipeline_id, stage_id, responsible_user_id, position, id)
    WHERE deleted_at IS NULL;
CREATE INDEX deals_account_updated_idx ON deals.deals (account_id, updated_at, id);

-- Exact per-column figures without scanning: kept in the same transaction as every change,
-- per responsible user, so that a user limited to his own (or his group's) deals sums his rows.
-- Each deal counts in shard (id % 16), so concurrent changes to one column rarely wait on the
-- same row, and a shard never goes below zero.
CREATE TABLE deals.stage_totals (
    account_id          BIGINT   NOT NULL,
    pipeline_id         BIGINT   NOT NULL,
    stage_id            BIGINT   NOT NULL,
    responsible_user_id BIGINT   NOT NULL,
    shard               SMALLINT NOT NULL CHECK (shard BETWEEN 0 AND 15),
    deals               BIGINT   NOT NULL DEFAULT 0 CHECK (deals >= 0),
    budget              BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, pipeline_id, stage_id, responsible_user_id, shard)
);

-- Every entry into and exit from a stage: time in stage, funnels.
CREATE TABLE deals.stage_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    deal_id     BIGINT      NOT NULL REFERENCES deals.deals (id) ON DELETE CASCADE,
    pipeline_id BIGINT      NOT NULL,
    stage_id    BIGINT      NOT NULL,
    entered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at     TIMESTAMPTZ,
    entered_by  JSONB       NOT NULL,
    left_by     JSONB
);
CREATE INDEX stage_history_deal_idx ON deals.stage_history (account_id, deal_id, entered_at);
CREATE UNIQUE INDEX stage_history_open_key ON deals.stage_history (deal_id) WHERE left_at IS NULL;

-- The transactional outbox and the inbox (shape of kernel::outbox::ddl).
CREATE TABLE deals.outbox (
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
CREATE INDEX outbox_unpublished_idx ON deals.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON deals.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE FUNCTION deals.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('voronka_outbox', 'deals'); RETURN NULL; END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON deals.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION deals.outbox_notify();
CREATE TABLE deals.inbox (
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
CREATE INDEX inbox_failed_idx ON deals.inbox (subscriber, handled_at) WHERE outcome = 'failed';
