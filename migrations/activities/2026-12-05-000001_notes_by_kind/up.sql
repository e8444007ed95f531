-- The public API lists an entity kind's notes in id order (`GET /api/v4/leads/notes`).
CREATE INDEX notes_kind_idx ON activities.notes (account_id, entity, id) WHERE deleted_at IS NULL;
