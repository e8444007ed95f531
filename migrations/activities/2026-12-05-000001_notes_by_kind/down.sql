DROP INDEX IF EXISTS activities.notes_kind_idx;
