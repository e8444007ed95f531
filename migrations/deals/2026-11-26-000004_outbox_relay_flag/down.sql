CREATE OR REPLACE FUNCTION deals.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('voronka_outbox', 'deals'); RETURN NULL; END $$;
DROP TABLE deals.outbox_relay;
