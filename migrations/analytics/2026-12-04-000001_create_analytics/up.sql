-- Schema "analytics": a read model built from other modules' events (never from their tables),
-- and the module's outbox/inbox (shape of kernel::outbox).

-- One row per deal: where it stands and what it went through.
CREATE TABLE analytics.deals (
    account_id          BIGINT      NOT NULL,
    deal_id             BIGINT      NOT NULL,
    pipeline_id         BIGINT      NOT NULL,
    stage_id            BIGINT      NOT NULL,
    -- When the deal entered its current stage.
    stage_since         TIMESTAMPTZ NOT NULL,
    responsible_user_id BIGINT      NOT NULL,
    price               BIGINT      NOT NULL DEFAULT 0,
    tag_ids             BIGINT[]    NOT NULL DEFAULT '{}',
    -- The channel an incoming lead came from (telegram, whatsapp, instagram); none otherwise.
    source              TEXT,
    -- 0 open, 1 won, 2 lost.
    outcome             SMALLINT    NOT NULL DEFAULT 0 CHECK (outcome IN (0, 1, 2)),
    loss_reason_id      BIGINT,
    -- Every stage the deal has been in, sorted, each once (the funnel's "reached").
    visited             BIGINT[]    NOT NULL DEFAULT '{}',
    created_at          TIMESTAMPTZ NOT NULL,
    closed_at           TIMESTAMPTZ,
    deleted             BOOLEAN     NOT NULL DEFAULT false,
    PRIMARY KEY (account_id, deal_id)
);
CREATE INDEX deals_created_idx ON analytics.deals (account_id, pipeline_id, created_at) WHERE NOT deleted;
CREATE INDEX deals_closed_idx ON analytics.deals (account_id, pipeline_id, closed_at) WHERE closed_at IS NOT NULL AND NOT deleted;
CREATE INDEX deals_open_idx ON analytics.deals (account_id, pipeline_id, stage_since) WHERE outcome = 0 AND NOT deleted;
-- Open deals per stage (time in stage, the forecast) from the index alone.
CREATE INDEX deals_open_stage_idx ON analytics.deals (account_id, pipeline_id, stage_id) INCLUDE (price, responsible_user_id) WHERE outcome = 0 AND NOT deleted;

-- Each stay of a deal in a stage.
CREATE TABLE analytics.stays (
    account_id  BIGINT      NOT NULL,
    deal_id     BIGINT      NOT NULL,
    pipeline_id BIGINT      NOT NULL,
    stage_id    BIGINT      NOT NULL,
    entered_at  TIMESTAMPTZ NOT NULL,
    left_at     TIMESTAMPTZ,
    -- The deal's, kept equal to its row in analytics.deals, so that stays are filtered without a
    -- join.
    responsible_user_id BIGINT   NOT NULL,
    tag_ids             BIGINT[] NOT NULL DEFAULT '{}',
    source              TEXT,
    deleted             BOOLEAN  NOT NULL DEFAULT false,
    PRIMARY KEY (account_id, deal_id, entered_at, stage_id)
);
CREATE INDEX stays_left_idx ON analytics.stays (account_id, pipeline_id, left_at)
    INCLUDE (stage_id, entered_at, responsible_user_id) WHERE left_at IS NOT NULL AND NOT deleted;

-- Where incoming leads came from. Kept apart from the deal rows because the lead's event and the
-- deal's event come from different modules, in either order, and a rebuild keeps it.
CREATE TABLE analytics.sources (
    account_id BIGINT NOT NULL,
    deal_id    BIGINT NOT NULL,
    channel    TEXT   NOT NULL,
    PRIMARY KEY (account_id, deal_id)
);

-- Everything else that is counted: contacts and companies created, tasks created and completed,
-- notes, messages in and out. `value` is the response time in seconds of an answer to a client.
CREATE TABLE analytics.activity (
    event_id   UUID        PRIMARY KEY,
    account_id BIGINT      NOT NULL,
    kind       TEXT        NOT NULL,
    user_id    BIGINT,
    deal_id    BIGINT,
    at         TIMESTAMPTZ NOT NULL,
    value      BIGINT
);
CREATE INDEX activity_at_idx ON analytics.activity (account_id, at);

-- Conversations whose client is waiting for an answer, since when.
CREATE TABLE analytics.waiting (
    account_id      BIGINT      NOT NULL,
    conversation_id BIGINT      NOT NULL,
    since           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, conversation_id)
);

-- Daily roll-ups for long periods: what the reports would group from the rows above, one row
-- per day and combination. A change to a deal, a stay or an activity marks its days dirty; a
-- report over a long period first recounts its account's dirty days (each from the rows above),
-- then reads these. Periods up to two months, and any tag filter, read the rows above directly.
-- Up to which day (exclusive) an account's roll-ups have been counted.
CREATE TABLE analytics.rolled (
    account_id BIGINT PRIMARY KEY,
    until      DATE   NOT NULL
);
CREATE TABLE analytics.dirty (
    account_id BIGINT NOT NULL,
    day        DATE   NOT NULL,
    PRIMARY KEY (account_id, day)
);
-- Deals by the day they were created, with how far they got (the funnel, created counts).
CREATE TABLE analytics.created_days (
    account_id          BIGINT   NOT NULL,
    day                 DATE     NOT NULL,
    pipeline_id         BIGINT   NOT NULL,
    responsible_user_id BIGINT   NOT NULL,
    source              TEXT,
    visited             BIGINT[] NOT NULL,
    outcome             SMALLINT NOT NULL,
    stage_id            BIGINT   NOT NULL,
    n                   BIGINT   NOT NULL,
    budget              BIGINT   NOT NULL
);
CREATE INDEX created_days_idx ON analytics.created_days (account_id, day);
-- Deals by the day they were closed.
CREATE TABLE analytics.closed_days (
    account_id          BIGINT   NOT NULL,
    day                 DATE     NOT NULL,
    pipeline_id         BIGINT   NOT NULL,
    responsible_user_id BIGINT   NOT NULL,
    source              TEXT,
    outcome             SMALLINT NOT NULL,
    loss_reason_id      BIGINT,
    n                   BIGINT   NOT NULL,
    budget              BIGINT   NOT NULL
);
CREATE INDEX closed_days_idx ON analytics.closed_days (account_id, day);
-- Activity by day, user and kind (with the sum and count of response times).
CREATE TABLE analytics.activity_days (
    account_id BIGINT NOT NULL,
    day        DATE   NOT NULL,
    user_id    BIGINT,
    kind       TEXT   NOT NULL,
    n          BIGINT NOT NULL,
    value_sum  BIGINT NOT NULL,
    value_n    BIGINT NOT NULL
);
CREATE INDEX activity_days_idx ON analytics.activity_days (account_id, day);
-- Ended stays by the day they ended, per stage, in duration buckets (ten per power of e), for
-- approximate percentiles over long periods.
CREATE TABLE analytics.stay_days (
    account_id  BIGINT   NOT NULL,
    day         DATE     NOT NULL,
    pipeline_id BIGINT   NOT NULL,
    source      TEXT,
    stage_id    BIGINT   NOT NULL,
    bucket      SMALLINT NOT NULL,
    n           BIGINT   NOT NULL
);
CREATE INDEX stay_days_idx ON analytics.stay_days (account_id, pipeline_id, day) INCLUDE (stage_id, bucket, n, source);
-- The same per responsible user, for reports on some people.
CREATE TABLE analytics.stay_user_days (
    account_id          BIGINT   NOT NULL,
    day                 DATE     NOT NULL,
    pipeline_id         BIGINT   NOT NULL,
    responsible_user_id BIGINT   NOT NULL,
    source              TEXT,
    stage_id            BIGINT   NOT NULL,
    bucket              SMALLINT NOT NULL,
    n                   BIGINT   NOT NULL
);
CREATE INDEX stay_user_days_idx ON analytics.stay_user_days (account_id, pipeline_id, responsible_user_id, day)
    INCLUDE (stage_id, bucket, n, source);

CREATE TABLE analytics.outbox (
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
CREATE INDEX outbox_unpublished_idx ON analytics.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON analytics.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TABLE analytics.outbox_relay (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    awake BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO analytics.outbox_relay DEFAULT VALUES;
CREATE FUNCTION analytics.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT awake FROM analytics.outbox_relay) THEN
        PERFORM pg_notify('voronka_outbox', 'analytics');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON analytics.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION analytics.outbox_notify();
CREATE TABLE analytics.inbox (
    subscriber   TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    account_id   BIGINT      NOT NULL,
    event_type   TEXT        NOT NULL,
    outcome      TEXT        NOT NULL,
    error        TEXT,
    handled_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX inbox_failed_idx ON analytics.inbox (subscriber, handled_at) WHERE outcome = 'failed';
