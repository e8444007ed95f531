-- The common create of a batch of deals (the public API's POST /leads, imports) as one
-- statement: one round trip and one plan for the whole batch instead of one call per deal.
-- Same rules as deals.create_deal, per deal: the stage asked for (NULL: the pipeline's first
-- open one) must exist and require no custom field; deals go to the top of their column in the
-- order given (the last one on top, as if created one after another). When any deal's stage
-- does not qualify, no row is returned and nothing is written: the service then takes its checked
-- path, which says why. Item i of every array describes deal i; contacts and companies are JSON
-- arrays of ids; each payload is the DealCreated event without its deal_id and stage_id. The
-- column totals are written in key order, so that concurrent batches wait for each other
-- instead of deadlocking.
CREATE FUNCTION deals.create_deals(
    p_account bigint, p_gap bigint, p_actor_id bigint, p_actor jsonb, p_event_type text,
    p_event_version integer, p_occurred_at timestamptz,
    p_pipelines bigint[], p_stages bigint[], p_names text[], p_prices bigint[],
    p_responsibles bigint[], p_contacts jsonb[], p_main_contacts bigint[], p_companies jsonb[],
    p_event_ids uuid[], p_payloads jsonb[]
) RETURNS SETOF deals.deals LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    resolved integer;
BEGIN
    SELECT count(*) INTO resolved
      FROM unnest(p_pipelines, p_stages) AS i(pipeline, stage)
      CROSS JOIN LATERAL (
            SELECT 1 FROM deals.stages s
             WHERE s.account_id = p_account AND s.pipeline_id = i.pipeline AND (i.stage IS NULL OR s.id = i.stage)
               AND NOT EXISTS (SELECT 1 FROM deals.custom_fields f
                                WHERE f.account_id = p_account
                                  AND f.required_statuses @> jsonb_build_array(jsonb_build_object('pipeline_id', s.pipeline_id, 'status_id', s.id)))
             LIMIT 1) ok;
    IF resolved < cardinality(p_names) THEN
        RETURN;
    END IF;
    RETURN QUERY
        WITH i AS (
            SELECT * FROM unnest(p_pipelines, p_stages, p_names, p_prices, p_responsibles, p_contacts,
                                 p_main_contacts, p_companies, p_event_ids, p_payloads)
                     WITH ORDINALITY AS u(pipeline, stage, name, price, responsible, contacts, main_contact,
                                          companies, event_id, payload, ord)
         ), s AS (
            SELECT i.*, st.pipeline_id, st.id AS stage_id, st.kind
              FROM i CROSS JOIN LATERAL (
                    SELECT s.pipeline_id, s.id, s.kind FROM deals.stages s
                     WHERE s.account_id = p_account AND s.pipeline_id = i.pipeline
                       AND (i.stage IS NULL OR s.id = i.stage)
                     ORDER BY (s.kind <> 'open'), s.sort, s.id LIMIT 1) st
         ), tops AS (
            SELECT c.pipeline_id, c.stage_id,
                   coalesce((SELECT p.position FROM deals.deals p
                              WHERE p.account_id = p_account AND p.pipeline_id = c.pipeline_id
                                AND p.stage_id = c.stage_id AND p.deleted_at IS NULL
                              ORDER BY p.position, p.id LIMIT 1), p_gap) AS top
              FROM (SELECT DISTINCT pipeline_id, stage_id FROM s) c
         ), numbered AS (
            -- Ids in the order given (the sorted subquery is read in order, one nextval a row).
            SELECT o.*, nextval(pg_get_serial_sequence('deals.deals', 'id')) AS id
              FROM (SELECT * FROM s ORDER BY s.ord) o
         ), n AS (
            SELECT x.*,
                   t.top - p_gap * row_number() OVER (PARTITION BY x.pipeline_id, x.stage_id ORDER BY x.ord) AS position
              FROM numbered x JOIN tops t ON t.pipeline_id = x.pipeline_id AND t.stage_id = x.stage_id
         ), d AS (
            INSERT INTO deals.deals (id, account_id, pipeline_id, stage_id, name, price, responsible_user_id,
                                     position, created_by, updated_by, closed_at, contact_ids, main_contact_id,
                                     company_ids)
            OVERRIDING SYSTEM VALUE
            SELECT n.id, p_account, n.pipeline_id, n.stage_id, n.name, n.price, n.responsible, n.position,
                   p_actor_id, p_actor_id, CASE WHEN n.kind IN ('won', 'lost') THEN now() END,
                   ARRAY(SELECT jsonb_array_elements_text(n.contacts)::bigint), n.main_contact,
                   ARRAY(SELECT jsonb_array_elements_text(n.companies)::bigint)
              FROM n ORDER BY n.ord
            RETURNING *
         ), h AS (
            INSERT INTO deals.stage_history (account_id, deal_id, pipeline_id, stage_id, entered_by)
            SELECT account_id, id, pipeline_id, stage_id, p_actor FROM d
         ), t AS (
            INSERT INTO deals.stage_totals AS t (account_id, pipeline_id, stage_id, responsible_user_id, shard, deals, budget)
            SELECT account_id, pipeline_id, stage_id, responsible_user_id, (id % 16)::smallint, count(*), sum(price)
              FROM d GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (account_id, pipeline_id, stage_id, responsible_user_id, shard)
            DO UPDATE SET deals = t.deals + EXCLUDED.deals, budget = t.budget + EXCLUDED.budget
         ), o AS (
            INSERT INTO deals.outbox (id, account_id, event_type, version, actor, occurred_at, causation_id, payload)
            SELECT n.event_id, p_account, p_event_type, p_event_version, p_actor, p_occurred_at, NULL,
                   n.payload || jsonb_build_object('deal_id', n.id, 'stage_id', n.stage_id, 'pipeline_id', n.pipeline_id)
              FROM n ORDER BY n.ord
         )
         SELECT d.* FROM d JOIN n ON n.id = d.id ORDER BY n.ord;
END
$fn$;
