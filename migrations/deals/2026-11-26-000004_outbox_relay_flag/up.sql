-- While a relay is draining the outbox, inserts skip NOTIFY (see kernel::outbox::set_relay_awake).
CREATE TABLE deals.outbox_relay (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    awake BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO deals.outbox_relay DEFAULT VALUES;
CREATE OR REPLACE FUNCTION deals.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT awake FROM deals.outbox_relay) THEN
        PERFORM pg_notify('voronka_outbox', 'deals');
    END IF;
    RETURN NULL;
END $$;
