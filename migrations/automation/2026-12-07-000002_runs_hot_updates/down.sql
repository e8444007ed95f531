ALTER TABLE automation.runs RESET (fillfactor);
DROP INDEX automation.runs_open_idx;
DROP INDEX automation.runs_failed_idx;
DROP INDEX automation.runs_created_idx;
CREATE INDEX runs_due_idx ON automation.runs (run_at) WHERE status = 'pending';
CREATE INDEX runs_queued_idx ON automation.runs (queued_at) WHERE status = 'queued';
CREATE INDEX runs_failed_idx ON automation.runs (account_id, trigger_id, created_at)
    WHERE status IN ('failed', 'cut');
CREATE INDEX runs_created_idx ON automation.runs (created_at) WHERE status IN ('done', 'skipped', 'failed', 'cut');
