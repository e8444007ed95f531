DROP TABLE messaging.channel_pace;
