CREATE INDEX outbox_published_idx ON messaging.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE messaging.outbox ADD CONSTRAINT outbox_id_key UNIQUE (id);
