DROP TABLE activities.inbox;
DROP TRIGGER outbox_notify ON activities.outbox;
DROP FUNCTION activities.outbox_notify();
DROP TABLE activities.outbox_relay;
DROP TABLE activities.outbox;
DROP TABLE activities.log;
DROP TABLE activities.tasks;
DROP TABLE activities.task_types;
DROP TABLE activities.notes;
