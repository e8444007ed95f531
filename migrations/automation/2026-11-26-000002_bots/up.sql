-- Bots (Salesbot-style scenarios): their steps as JSON checked by the module on save.
CREATE TABLE automation.bots (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    pipeline_id BIGINT      NOT NULL,
    name        TEXT        NOT NULL,
    steps       JSONB       NOT NULL,
    created_by  BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX bots_name_idx ON automation.bots (account_id, lower(name));
