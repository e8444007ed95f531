
-- A channel: one Telegram bot, WhatsApp number or Instagram account of an account. Credentials
-- (tokens, app secret, verify and secret tokens) are encrypted by the module (AES-256-GCM).
CREATE TABLE messaging.channels (
    id                  BIGSERIAL PRIMARY KEY,
    account_id          BIGINT      NOT NULL,
    provider            TEXT        NOT NULL,
    name                TEXT        NOT NULL,
    webhook_key         TEXT        NOT NULL UNIQUE,
    external_id         TEXT        NOT NULL,
    base_url            TEXT        NOT NULL,
    api_version         TEXT        NOT NULL DEFAULT '',
    credentials         BYTEA       NOT NULL,
    pipeline_id         BIGINT      NOT NULL,
    responsible_user_id BIGINT      NOT NULL,
    rate_per_second     INTEGER     NOT NULL,
    active              BOOLEAN     NOT NULL DEFAULT true,
    error               TEXT,
    created_by          BIGINT      NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at          TIMESTAMPTZ
);
CREATE INDEX channels_account_idx ON messaging.channels (account_id, id) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX channels_external_idx ON messaging.channels (account_id, provider, external_id)
    WHERE deleted_at IS NULL;

-- Webhook bodies as they arrived, stored once per delivery (Telegram's update_id, else the
-- body's hash), processed by a job.
CREATE TABLE messaging.inbound (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT      NOT NULL,
    channel_id   BIGINT      NOT NULL,
    dedup_key    TEXT        NOT NULL,
    body         BYTEA,
    status       TEXT        NOT NULL DEFAULT 'pending',
    -- pending work is taken from this time (a failed attempt puts it later)
    due_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    queued_at    TIMESTAMPTZ,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    error        TEXT,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at TIMESTAMPTZ,
    UNIQUE (channel_id, dedup_key)
);
CREATE INDEX inbound_pending_idx ON messaging.inbound (due_at, id) WHERE status = 'pending';
CREATE INDEX inbound_queued_idx ON messaging.inbound (queued_at) WHERE status = 'queued';
CREATE INDEX inbound_done_idx ON messaging.inbound (processed_at) WHERE body IS NOT NULL AND status = 'done';

-- A client as a messenger knows them (Telegram user id, WhatsApp wa_id, Instagram IGSID), and
-- the contact they are.
CREATE TABLE messaging.identities (
    id               BIGSERIAL PRIMARY KEY,
    account_id       BIGINT      NOT NULL,
    channel_id       BIGINT      NOT NULL,
    provider         TEXT        NOT NULL,
    external_user_id TEXT        NOT NULL,
    name             TEXT        NOT NULL DEFAULT '',
    username         TEXT        NOT NULL DEFAULT '',
    phone            TEXT        NOT NULL DEFAULT '',
    contact_id       BIGINT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (channel_id, external_user_id)
);
CREATE INDEX identities_username_idx ON messaging.identities (account_id, provider, lower(username))
    WHERE username <> '' AND contact_id IS NOT NULL;
CREATE INDEX identities_phone_idx ON messaging.identities (account_id, phone)
    WHERE phone <> '' AND contact_id IS NOT NULL;

-- A chat with one client on one channel.
CREATE TABLE messaging.conversations (
    id               BIGSERIAL PRIMARY KEY,
    account_id       BIGINT      NOT NULL,
    channel_id       BIGINT      NOT NULL,
    identity_id      BIGINT      NOT NULL,
    external_chat    TEXT        NOT NULL,
    contact_id       BIGINT,
    deal_id          BIGINT,
    title            TEXT        NOT NULL DEFAULT '',
    handle           TEXT        NOT NULL DEFAULT '',
    assigned_user_id BIGINT      NOT NULL,
    unread           INTEGER     NOT NULL DEFAULT 0,
    last_text        TEXT        NOT NULL DEFAULT '',
    last_message_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_incoming_at TIMESTAMPTZ,
    -- queued messages are due to be sent from this time (null: nothing to send)
    send_at          TIMESTAMPTZ,
    -- handed to a worker at; a worker holds the conversation until `sending_until`
    send_queued_at   TIMESTAMPTZ,
    sending_until    TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (channel_id, external_chat)
);
CREATE INDEX conversations_recent_idx ON messaging.conversations (account_id, last_message_at DESC, id DESC);
CREATE INDEX conversations_assigned_idx ON messaging.conversations (account_id, assigned_user_id, last_message_at DESC, id DESC);
CREATE INDEX conversations_unread_idx ON messaging.conversations (account_id, last_message_at DESC, id DESC) WHERE unread > 0;
CREATE INDEX conversations_deal_idx ON messaging.conversations (account_id, deal_id) WHERE deal_id IS NOT NULL;
CREATE INDEX conversations_due_idx ON messaging.conversations (send_at) WHERE send_at IS NOT NULL;

CREATE TABLE messaging.messages (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT      NOT NULL,
    channel_id      BIGINT      NOT NULL,
    conversation_id BIGINT      NOT NULL,
    direction       TEXT        NOT NULL,
    text            TEXT        NOT NULL,
    status          TEXT        NOT NULL,
    error           TEXT,
    -- the provider's id (Telegram: chat:message_id; WhatsApp: wamid; Instagram: mid)
    external_id     TEXT,
    author_user_id  BIGINT,
    robot_id        BIGINT,
    template        JSONB,
    buttons         JSONB       NOT NULL DEFAULT '[]',
    idempotency_key UUID        UNIQUE,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ
);
CREATE UNIQUE INDEX messages_external_idx ON messaging.messages (channel_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX messages_conversation_idx ON messaging.messages (conversation_id, id);
CREATE INDEX messages_queued_idx ON messaging.messages (conversation_id, id) WHERE status IN ('queued', 'sending');

-- Reply templates with variables; a WhatsApp template name makes one sendable outside the
-- 24-hour window.
CREATE TABLE messaging.templates (
    id                BIGSERIAL PRIMARY KEY,
    account_id        BIGINT      NOT NULL,
    name              TEXT        NOT NULL,
    body              TEXT        NOT NULL,
    whatsapp_name     TEXT,
    whatsapp_language TEXT        NOT NULL DEFAULT 'en_US',
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX templates_name_idx ON messaging.templates (account_id, lower(name));

-- In-app notifications: one unread row per subject (`about`), refreshed while unread.
CREATE TABLE messaging.notifications (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT      NOT NULL,
    user_id    BIGINT      NOT NULL,
    kind       TEXT        NOT NULL,
    about      TEXT        NOT NULL,
    text       TEXT        NOT NULL,
    link       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    read_at    TIMESTAMPTZ
);
CREATE INDEX notifications_user_idx ON messaging.notifications (account_id, user_id, id DESC);
CREATE UNIQUE INDEX notifications_unread_idx ON messaging.notifications (account_id, user_id, about)
    WHERE read_at IS NULL;

CREATE TABLE messaging.outbox (
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
CREATE INDEX outbox_unpublished_idx ON messaging.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON messaging.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TABLE messaging.outbox_relay (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    awake BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO messaging.outbox_relay DEFAULT VALUES;
CREATE FUNCTION messaging.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT awake FROM messaging.outbox_relay) THEN
        PERFORM pg_notify('voronka_outbox', 'messaging');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON messaging.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION messaging.outbox_notify();
CREATE TABLE messaging.inbox (
    subscriber   TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    account_id   BIGINT      NOT NULL,
    event_type   TEXT        NOT NULL,
    outcome      TEXT        NOT NULL,
    error        TEXT,
    handled_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX inbox_failed_idx ON messaging.inbox (subscriber, handled_at) WHERE outcome = 'failed';
