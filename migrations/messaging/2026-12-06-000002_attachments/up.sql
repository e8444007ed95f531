-- Files in chats: photos, documents, voice notes and videos that clients send (downloaded from
-- the provider by a job: Telegram's getFile, WhatsApp's media id, Instagram's attachment URL)
-- and files managers send (uploaded here; the provider fetches them through a signed link).
CREATE TABLE messaging.attachments (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT      NOT NULL,
    message_id   BIGINT      NOT NULL REFERENCES messaging.messages (id) ON DELETE CASCADE,
    -- image | video | audio | voice | document | sticker
    kind         TEXT        NOT NULL,
    file_name    TEXT        NOT NULL DEFAULT '',
    mime_type    TEXT        NOT NULL DEFAULT 'application/octet-stream',
    size         BIGINT,
    -- where the provider keeps it: Telegram's file_id, WhatsApp's media id, Instagram's URL
    provider_ref TEXT        NOT NULL DEFAULT '',
    -- pending (to download) | queued (a worker has it) | stored | failed
    status       TEXT        NOT NULL,
    error        TEXT,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    due_at       TIMESTAMPTZ,
    queued_at    TIMESTAMPTZ,
    sha256       TEXT,
    content      BYTEA,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX attachments_message_idx ON messaging.attachments (message_id, id);
CREATE INDEX attachments_due_idx ON messaging.attachments (due_at) WHERE status IN ('pending', 'queued');
