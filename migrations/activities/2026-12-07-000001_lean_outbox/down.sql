CREATE INDEX outbox_published_idx ON activities.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE activities.outbox ADD CONSTRAINT outbox_id_key UNIQUE (id);
