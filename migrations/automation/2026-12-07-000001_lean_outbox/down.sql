CREATE INDEX outbox_published_idx ON automation.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE automation.outbox ADD CONSTRAINT outbox_id_key UNIQUE (id);
