-- How deep the chain of robots that started a bot is: the changes the bot makes count one more,
-- so a loop through a bot is cut like a loop of triggers.
ALTER TABLE automation.bot_runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 1;
