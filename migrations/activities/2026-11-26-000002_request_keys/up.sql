-- A robot's command (an automation action) creates its note or task once, however often it is
-- redelivered: the command's id is kept with the row, unique per account.
ALTER TABLE activities.notes ADD COLUMN request_key uuid;
ALTER TABLE activities.tasks ADD COLUMN request_key uuid;
CREATE UNIQUE INDEX notes_request_key_idx ON activities.notes (account_id, request_key)
    WHERE request_key IS NOT NULL;
CREATE UNIQUE INDEX tasks_request_key_idx ON activities.tasks (account_id, request_key)
    WHERE request_key IS NOT NULL;
