-- A bot talking on a deal: the step it is at, the client's last reply, what it did, and when the
-- workers should go on with it (now, or when its wait for a reply times out).
CREATE TABLE automation.bot_runs (
    id            UUID        PRIMARY KEY,
    account_id    BIGINT      NOT NULL,
    bot_id        BIGINT      NOT NULL,
    deal_id       BIGINT      NOT NULL,
    status        TEXT        NOT NULL,
    step          INTEGER     NOT NULL DEFAULT 0,
    reply         TEXT,
    due_at        TIMESTAMPTZ,
    queued_at     TIMESTAMPTZ,
    history       JSONB       NOT NULL DEFAULT '[]',
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One run of a bot per deal at a time.
CREATE UNIQUE INDEX bot_runs_active_idx ON automation.bot_runs (bot_id, deal_id)
    WHERE status IN ('running', 'waiting');
CREATE INDEX bot_runs_due_idx ON automation.bot_runs (due_at) WHERE status IN ('running', 'waiting');
CREATE INDEX bot_runs_waiting_idx ON automation.bot_runs (account_id, deal_id) WHERE status = 'waiting';
CREATE INDEX bot_runs_deal_idx ON automation.bot_runs (account_id, deal_id, created_at DESC);
