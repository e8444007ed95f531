ALTER TABLE automation.bot_runs DROP COLUMN depth;
