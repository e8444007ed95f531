CREATE OR REPLACE FUNCTION accounts.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('voronka_outbox', 'accounts'); RETURN NULL; END $$;
DROP TABLE accounts.outbox_relay;
