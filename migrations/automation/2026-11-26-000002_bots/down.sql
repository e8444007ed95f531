DROP TABLE automation.bots;
