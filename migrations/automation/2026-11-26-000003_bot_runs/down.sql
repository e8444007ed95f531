DROP TABLE automation.bot_runs;
