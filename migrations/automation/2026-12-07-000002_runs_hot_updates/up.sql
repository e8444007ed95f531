-- A run is written four times: recorded (pending), handed out (queued), claimed (running) and
-- finished. `status` and `queued_at` were in indexes (the partial indexes' predicates count), so
-- every write put a new entry in each of the table's indexes. Now no index mentions them: the
-- unfinished runs are those without `finished_at`, and the pages keep room for the new versions,
-- so handing out and claiming a run (and saving progress between actions) are HOT updates that
-- touch no index; only the finish adds index entries.
UPDATE automation.runs SET finished_at = coalesce(finished_at, created_at)
 WHERE finished_at IS NULL AND status IN ('done', 'skipped', 'failed', 'cut');
DROP INDEX automation.runs_due_idx;
DROP INDEX automation.runs_queued_idx;
DROP INDEX automation.runs_failed_idx;
DROP INDEX automation.runs_created_idx;
-- Unfinished runs by when they are due: the dispatcher's due runs and its sweep of runs handed
-- out long ago and never finished.
CREATE INDEX runs_open_idx ON automation.runs (run_at) WHERE finished_at IS NULL;
-- Finished with an error (failed, cut, or skipped with the reason): a trigger's recent failures.
CREATE INDEX runs_failed_idx ON automation.runs (account_id, trigger_id, created_at)
    WHERE finished_at IS NOT NULL AND error IS NOT NULL;
-- Retention: finished runs, oldest first.
CREATE INDEX runs_created_idx ON automation.runs (created_at) WHERE finished_at IS NOT NULL;
ALTER TABLE automation.runs SET (fillfactor = 70);
