CREATE INDEX outbox_published_idx ON accounts.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE accounts.outbox ADD CONSTRAINT outbox_id_key UNIQUE (id);
