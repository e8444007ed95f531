-- Finished runs and deliveries are kept for `[automation] keep_days`, then removed oldest first.
CREATE INDEX runs_created_idx ON automation.runs (created_at) WHERE status IN ('done', 'skipped', 'failed', 'cut');
CREATE INDEX deliveries_created_idx ON automation.deliveries (created_at) WHERE status IN ('delivered', 'failed');
CREATE INDEX bot_runs_updated_idx ON automation.bot_runs (updated_at) WHERE status IN ('done', 'stopped', 'failed');
