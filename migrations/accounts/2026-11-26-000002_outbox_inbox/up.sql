-- The accounts module's transactional outbox and its subscribers' inbox (see kernel::outbox).
CREATE TABLE accounts.outbox (
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
CREATE INDEX outbox_unpublished_idx ON accounts.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON accounts.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE FUNCTION accounts.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('voronka_outbox', 'accounts'); RETURN NULL; END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON accounts.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION accounts.outbox_notify();
CREATE TABLE accounts.inbox (
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
CREATE INDEX inbox_failed_idx ON accounts.inbox (subscriber, handled_at) WHERE outcome = 'failed';
