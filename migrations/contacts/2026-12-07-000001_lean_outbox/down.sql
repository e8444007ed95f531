CREATE INDEX outbox_published_idx ON contacts.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE contacts.outbox ADD CONSTRAINT outbox_id_key UNIQUE (id);
