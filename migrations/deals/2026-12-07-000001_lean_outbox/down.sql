CREATE INDEX outbox_published_idx ON deals.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE deals.outbox ADD CONSTRAINT outbox_id_key UNIQUE (id);
