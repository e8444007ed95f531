-- Schema "activities": notes and tasks on deals, contacts and companies, the account's event log
-- (every module's events, append-only), and the module's outbox/inbox (shape of kernel::outbox).

CREATE TABLE activities.notes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    entity      TEXT        NOT NULL CHECK (entity IN ('deal', 'contact', 'company')),
    entity_id   BIGINT      NOT NULL,
    -- amoCRM's note types: common, call_in, call_out, service_message, sms_in, sms_out, ...
    note_type   TEXT        NOT NULL,
    text        TEXT        NOT NULL DEFAULT '' CHECK (char_length(text) <= 20000),
    -- Typed details (a call's direction, duration, result, link, phone).
    params      JSONB       NOT NULL DEFAULT '{}',
    pinned      BOOLEAN     NOT NULL DEFAULT false,
    created_by  BIGINT      NOT NULL DEFAULT 0,
    updated_by  BIGINT      NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at  TIMESTAMPTZ
);
CREATE INDEX notes_entity_idx ON activities.notes (account_id, entity, entity_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- Task types: 1 follow-up, 2 meeting, 3 call are everyone's; an account adds its own.
CREATE TABLE activities.task_types (
    id          BIGINT GENERATED ALWAYS AS IDENTITY (START WITH 1000) PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 50),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX task_types_name_key ON activities.task_types (account_id, lower(name));

CREATE TABLE activities.tasks (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          BIGINT      NOT NULL,
    entity              TEXT        CHECK (entity IN ('deal', 'contact', 'company')),
    entity_id           BIGINT,
    task_type_id        BIGINT      NOT NULL,
    text                TEXT        NOT NULL CHECK (char_length(text) BETWEEN 1 AND 5000),
    due_at              TIMESTAMPTZ NOT NULL,
    -- Due some time that day, rather than at a moment.
    whole_day           BOOLEAN     NOT NULL DEFAULT false,
    responsible_user_id BIGINT      NOT NULL,
    completed_at        TIMESTAMPTZ,
    completed_by        BIGINT,
    result              TEXT        NOT NULL DEFAULT '' CHECK (char_length(result) <= 5000),
    -- Set when TaskDue was published for this due time.
    due_notified        BOOLEAN     NOT NULL DEFAULT false,
    created_by          BIGINT      NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at          TIMESTAMPTZ,
    CHECK ((entity IS NULL) = (entity_id IS NULL))
);
CREATE INDEX tasks_open_due_idx ON activities.tasks (account_id, due_at, id) WHERE deleted_at IS NULL AND completed_at IS NULL;
CREATE INDEX tasks_responsible_idx ON activities.tasks (account_id, responsible_user_id, due_at, id) WHERE deleted_at IS NULL AND completed_at IS NULL;
CREATE INDEX tasks_entity_idx ON activities.tasks (account_id, entity, entity_id, due_at) WHERE deleted_at IS NULL;
CREATE INDEX tasks_due_unnotified_idx ON activities.tasks (due_at) WHERE deleted_at IS NULL AND completed_at IS NULL AND NOT due_notified;

-- The event log: every event of every module, once (by event id), never changed.
CREATE TABLE activities.log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    account_id   BIGINT      NOT NULL,
    event_type   TEXT        NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    -- user, robot, integration or system, and its id (0 for the system).
    actor_kind   TEXT        NOT NULL,
    actor_id     BIGINT      NOT NULL DEFAULT 0,
    entity       TEXT,
    entity_id    BIGINT,
    before       JSONB,
    after        JSONB,
    payload      JSONB       NOT NULL
);
CREATE INDEX log_entity_idx ON activities.log (account_id, entity, entity_id, occurred_at DESC, id DESC);
CREATE INDEX log_account_idx ON activities.log (account_id, occurred_at DESC, id DESC);
CREATE INDEX log_type_idx ON activities.log (account_id, event_type, occurred_at DESC, id DESC);
CREATE INDEX log_actor_idx ON activities.log (account_id, actor_id, occurred_at DESC, id DESC);

CREATE TABLE activities.outbox (
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
CREATE INDEX outbox_unpublished_idx ON activities.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON activities.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TABLE activities.outbox_relay (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    awake BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO activities.outbox_relay DEFAULT VALUES;
CREATE FUNCTION activities.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT awake FROM activities.outbox_relay) THEN
        PERFORM pg_notify('voronka_outbox', 'activities');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON activities.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION activities.outbox_notify();
CREATE TABLE activities.inbox (
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
CREATE INDEX inbox_failed_idx ON activities.inbox (subscriber, handled_at) WHERE outcome = 'failed';
