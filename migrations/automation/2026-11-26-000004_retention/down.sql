DROP INDEX automation.bot_runs_updated_idx;
DROP INDEX automation.deliveries_created_idx;
DROP INDEX automation.runs_created_idx;
