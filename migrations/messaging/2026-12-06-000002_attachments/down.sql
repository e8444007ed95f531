DROP TABLE messaging.attachments;
