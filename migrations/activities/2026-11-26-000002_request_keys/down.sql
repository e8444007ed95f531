DROP INDEX activities.tasks_request_key_idx;
DROP INDEX activities.notes_request_key_idx;
ALTER TABLE activities.tasks DROP COLUMN request_key;
ALTER TABLE activities.notes DROP COLUMN request_key;
