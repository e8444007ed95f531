CREATE INDEX outbox_published_idx ON analytics.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE analytics.outbox ADD CONSTRAINT outbox_id_key UNIQUE (id);
