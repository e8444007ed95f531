-- The outbox keeps two indexes: its key and the unpublished rows. Publishing rewrites each row,
-- and every index gets an entry for the new version: the unique event id (ids are random UUIDs,
-- and nothing looks events up by id here) and the index of published rows (pruning walks the
-- key, oldest first) cost an entry each per event for nothing.
ALTER TABLE deals.outbox DROP CONSTRAINT outbox_id_key;
DROP INDEX deals.outbox_published_idx;
