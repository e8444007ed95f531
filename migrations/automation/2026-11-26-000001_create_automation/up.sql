
-- Stage triggers (amoCRM's Digital Pipeline): when, conditions, delay and actions as JSON
-- checked by the module on save.
CREATE TABLE automation.triggers (
    id            BIGSERIAL PRIMARY KEY,
    account_id    BIGINT      NOT NULL,
    pipeline_id   BIGINT      NOT NULL,
    stage_id      BIGINT      NOT NULL,
    name          TEXT        NOT NULL,
    on_event      TEXT        NOT NULL,
    "when"        JSONB       NOT NULL,
    conditions    JSONB       NOT NULL DEFAULT '[]',
    delay         JSONB       NOT NULL,
    working_hours BOOLEAN     NOT NULL DEFAULT false,
    actions       JSONB       NOT NULL,
    enabled       BOOLEAN     NOT NULL DEFAULT true,
    created_by    BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Matching an event: the account's enabled triggers of a stage.
CREATE INDEX triggers_stage_idx ON automation.triggers (account_id, stage_id) WHERE enabled;
CREATE INDEX triggers_pipeline_idx ON automation.triggers (account_id, pipeline_id, stage_id, id);

-- A trigger's run on a deal: recorded when the event is handled (once per trigger and event),
-- done by a job worker at run_at, action by action (`done_steps` survive a retry).
CREATE TABLE automation.runs (
    id          UUID        PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    trigger_id  BIGINT      NOT NULL,
    deal_id     BIGINT      NOT NULL,
    event_id    UUID,
    event_type  TEXT        NOT NULL,
    depth       INTEGER     NOT NULL DEFAULT 1,
    status      TEXT        NOT NULL,
    run_at      TIMESTAMPTZ NOT NULL,
    queued_at   TIMESTAMPTZ,
    attempts    INTEGER     NOT NULL DEFAULT 0,
    steps       JSONB       NOT NULL DEFAULT '[]',
    -- choices made once and kept for a retry (the user picked by round robin)
    state       JSONB       NOT NULL DEFAULT '{}',
    error       TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX runs_event_idx ON automation.runs (trigger_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX runs_due_idx ON automation.runs (run_at) WHERE status = 'pending';
CREATE INDEX runs_queued_idx ON automation.runs (queued_at) WHERE status = 'queued';
CREATE INDEX runs_deal_idx ON automation.runs (account_id, deal_id, created_at DESC, id DESC);
CREATE INDEX runs_failed_idx ON automation.runs (account_id, trigger_id, created_at)
    WHERE status IN ('failed', 'cut');
CREATE INDEX runs_trigger_idx ON automation.runs (account_id, trigger_id, created_at DESC, id DESC);

-- Round robin: the next user of a trigger's action.
CREATE TABLE automation.rotations (
    trigger_id   BIGINT  NOT NULL,
    action_index INTEGER NOT NULL,
    next_index   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (trigger_id, action_index)
);

-- Outgoing account webhooks (amoCRM's "Webhooks" settings).
CREATE TABLE automation.webhooks (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT      NOT NULL,
    url             TEXT        NOT NULL,
    events          TEXT[]      NOT NULL,
    format          TEXT        NOT NULL,
    secret          TEXT        NOT NULL,
    enabled         BOOLEAN     NOT NULL DEFAULT true,
    disabled_reason TEXT,
    failures_in_row INTEGER     NOT NULL DEFAULT 0,
    created_by      BIGINT      NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_account_idx ON automation.webhooks (account_id, id);

-- Each delivery of an event to a webhook (or of a trigger's "call a webhook" action), with its
-- body as sent, attempts and the last answer.
CREATE TABLE automation.deliveries (
    id               UUID        PRIMARY KEY,
    account_id       BIGINT      NOT NULL,
    webhook_id       BIGINT,
    run_id           UUID,
    event_id         UUID,
    event            TEXT        NOT NULL,
    url              TEXT        NOT NULL,
    content_type     TEXT        NOT NULL,
    body             TEXT        NOT NULL,
    secret           TEXT        NOT NULL,
    status           TEXT        NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    max_attempts     INTEGER     NOT NULL,
    next_at          TIMESTAMPTZ,
    queued_at        TIMESTAMPTZ,
    last_status_code INTEGER,
    last_ms          INTEGER,
    last_response    TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX deliveries_event_idx ON automation.deliveries (webhook_id, event_id)
    WHERE webhook_id IS NOT NULL AND event_id IS NOT NULL;
CREATE UNIQUE INDEX deliveries_run_idx ON automation.deliveries (run_id, event) WHERE run_id IS NOT NULL;
CREATE INDEX deliveries_due_idx ON automation.deliveries (next_at) WHERE status = 'pending';
CREATE INDEX deliveries_queued_idx ON automation.deliveries (queued_at) WHERE status = 'queued';
CREATE INDEX deliveries_account_idx ON automation.deliveries (account_id, created_at DESC, id DESC);
CREATE INDEX deliveries_webhook_idx ON automation.deliveries (account_id, webhook_id, created_at DESC, id DESC);

CREATE TABLE automation.outbox (
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
CREATE INDEX outbox_unpublished_idx ON automation.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON automation.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TABLE automation.outbox_relay (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    awake BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO automation.outbox_relay DEFAULT VALUES;
CREATE FUNCTION automation.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT awake FROM automation.outbox_relay) THEN
        PERFORM pg_notify('voronka_outbox', 'automation');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON automation.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION automation.outbox_notify();
CREATE TABLE automation.inbox (
    subscriber   TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    account_id   BIGINT      NOT NULL,
    event_type   TEXT        NOT NULL,
    outcome      TEXT        NOT NULL,
    error        TEXT,
    handled_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX inbox_failed_idx ON automation.inbox (subscriber, handled_at) WHERE outcome = 'failed';
