-- While a relay is draining the outbox, inserts skip NOTIFY (see kernel::outbox::set_relay_awake).
CREATE TABLE accounts.outbox_relay (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    awake BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO accounts.outbox_relay DEFAULT VALUES;
CREATE OR REPLACE FUNCTION accounts.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT awake FROM accounts.outbox_relay) THEN
        PERFORM pg_notify('voronka_outbox', 'accounts');
    END IF;
    RETURN NULL;
END $$;
