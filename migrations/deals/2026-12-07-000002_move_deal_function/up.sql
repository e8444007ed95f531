-- Moves a deal's count and budget from one column's totals row (as the deal was) to another's
-- (as it is now; the shard is the deal's). The two rows are written in key order, whichever
-- way the deal goes, so that deals crossing between two columns at once never deadlock on each
-- other's rows. Both the move below and the checked path (ops::move_counts) use it.
CREATE FUNCTION deals.move_totals(
    p_account bigint, p_shard smallint,
    p_from_pipeline bigint, p_from_stage bigint, p_from_responsible bigint, p_from_price bigint,
    p_to_pipeline bigint, p_to_stage bigint, p_to_responsible bigint, p_to_price bigint
) RETURNS void LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    from_first boolean := (p_from_pipeline, p_from_stage, p_from_responsible)
                          < (p_to_pipeline, p_to_stage, p_to_responsible);
    n integer;
BEGIN
    FOR turn IN 0..1 LOOP
        IF (turn = 0) = from_first THEN
            UPDATE deals.stage_totals SET deals = deals - 1, budget = budget - p_from_price
             WHERE account_id = p_account AND pipeline_id = p_from_pipeline AND stage_id = p_from_stage
               AND responsible_user_id = p_from_responsible AND shard = p_shard;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n <> 1 THEN
                RAISE EXCEPTION 'stage totals out of step with the deals';
            END IF;
        ELSE
            INSERT INTO deals.stage_totals AS t (account_id, pipeline_id, stage_id, responsible_user_id, shard, deals, budget)
            VALUES (p_account, p_to_pipeline, p_to_stage, p_to_responsible, p_shard, 1, p_to_price)
            ON CONFLICT (account_id, pipeline_id, stage_id, responsible_user_id, shard)
            DO UPDATE SET deals = t.deals + 1, budget = t.budget + EXCLUDED.budget;
        END IF;
    END LOOP;
END
$fn$;

-- The common move of a deal as one prepared unit: to the top of another open or won stage of its
-- pipeline that requires no field. The row lock, the stage lookup, the update at the top of the
-- column, the stage history, the DealStageChanged event and the column totals happen in one
-- statement, so one round trip and one commit instead of four round trips and ten statements
-- (PL/pgSQL keeps the plans of its statements for the session). It returns no row, having
-- written nothing, when the deal is not there or not the caller's (`p_allowed`, null for all),
-- already in that stage, or when the stage is not there, is lost or requires fields: the service
-- then takes its checked path, which says why. Kept in step with ops::move_fast's documentation
-- and ops::move_locked, whose effects it repeats.
CREATE FUNCTION deals.move_deal(
    p_account bigint, p_deal bigint, p_stage bigint, p_allowed bigint[], p_gap bigint,
    p_actor_id bigint, p_actor jsonb, p_event_id uuid, p_event_type text, p_event_version integer,
    p_occurred_at timestamptz, p_causation uuid
) RETURNS SETOF deals.deals LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    was deals.deals;
    moved deals.deals;
    target_kind text;
BEGIN
    SELECT * INTO was FROM deals.deals
     WHERE account_id = p_account AND id = p_deal AND deleted_at IS NULL
       FOR UPDATE;
    IF NOT FOUND OR was.stage_id = p_stage
       OR (p_allowed IS NOT NULL AND NOT (was.responsible_user_id = ANY (p_allowed))) THEN
        RETURN;
    END IF;
    SELECT s.kind INTO target_kind FROM deals.stages s
     WHERE s.account_id = p_account AND s.pipeline_id = was.pipeline_id AND s.id = p_stage
       AND s.kind IN ('open', 'won')
       AND NOT EXISTS (SELECT 1 FROM deals.custom_fields f
                        WHERE f.account_id = p_account
                          AND f.required_statuses @> jsonb_build_array(jsonb_build_object('pipeline_id', s.pipeline_id, 'status_id', s.id)));
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE deals.deals d
       SET stage_id = p_stage,
           position = coalesce((SELECT min(c.position) FROM deals.deals c
                                 WHERE c.account_id = p_account AND c.pipeline_id = was.pipeline_id
                                   AND c.stage_id = p_stage AND c.deleted_at IS NULL AND c.id <> p_deal) - p_gap, 0),
           loss_reason_id = NULL,
           closed_at = CASE WHEN target_kind = 'won' THEN now() END,
           updated_at = now(), updated_by = p_actor_id
     WHERE d.id = p_deal
    RETURNING * INTO moved;
    UPDATE deals.stage_history SET left_at = now(), left_by = p_actor
     WHERE deal_id = p_deal AND left_at IS NULL;
    INSERT INTO deals.stage_history (account_id, deal_id, pipeline_id, stage_id, entered_by)
    VALUES (p_account, p_deal, moved.pipeline_id, moved.stage_id, p_actor);
    INSERT INTO deals.outbox (id, account_id, event_type, version, actor, occurred_at, causation_id, payload)
    VALUES (p_event_id, p_account, p_event_type, p_event_version, p_actor, p_occurred_at, p_causation,
            jsonb_build_object('deal_id', p_deal, 'pipeline_id', moved.pipeline_id,
                               'from_stage_id', was.stage_id, 'to_stage_id', moved.stage_id,
                               'loss_reason_id', NULL));
    -- The totals last: their rows are shared by the column's movers (held until the commit).
    PERFORM deals.move_totals(p_account, (p_deal % 16)::smallint,
                              was.pipeline_id, was.stage_id, was.responsible_user_id, was.price,
                              moved.pipeline_id, moved.stage_id, moved.responsible_user_id, moved.price);
    RETURN NEXT moved;
END
$fn$;
