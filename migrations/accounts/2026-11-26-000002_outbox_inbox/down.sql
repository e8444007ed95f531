DROP TABLE accounts.inbox;
DROP TRIGGER outbox_notify ON accounts.outbox;
DROP FUNCTION accounts.outbox_notify();
DROP TABLE accounts.outbox;
