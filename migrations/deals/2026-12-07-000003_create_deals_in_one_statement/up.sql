-- deals.create_deals with the account's batch lock taken in the same statement, so that the common
-- create of a batch is one statement run on its own (one round trip), instead of BEGIN, the
-- lock, the create and COMMIT. `p_batch_lock` is the key of the account's batch lock, taken
-- shared (batches of this kind run side by side; a batch done deal by deal holds it exclusively),
-- or null for a single deal, which needs no turn. The lock is held until the statement's
-- transaction ends, as before.
CREATE FUNCTION deals.create_deals_locked(
    p_batch_lock integer,
    p_account bigint, p_gap bigint, p_actor_id bigint, p_actor jsonb, p_event_type text,
    p_event_version integer, p_occurred_at timestamptz,
    p_pipelines bigint[], p_stages bigint[], p_names text[], p_prices bigint[],
    p_responsibles bigint[], p_contacts jsonb[], p_main_contacts bigint[], p_companies jsonb[],
    p_event_ids uuid[], p_payloads jsonb[]
) RETURNS SETOF deals.deals LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_batch_lock IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock_shared(p_batch_lock, p_account::bit(32)::integer);
    END IF;
    RETURN QUERY SELECT * FROM deals.create_deals(
        p_account, p_gap, p_actor_id, p_actor, p_event_type, p_event_version, p_occurred_at,
        p_pipelines, p_stages, p_names, p_prices, p_responsibles, p_contacts, p_main_contacts,
        p_companies, p_event_ids, p_payloads);
END
$fn$;
