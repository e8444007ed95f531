DROP FUNCTION deals.create_deals_locked(integer, bigint, bigint, bigint, jsonb, text, integer, timestamptz,
    bigint[], bigint[], text[], bigint[], bigint[], jsonb[], bigint[], jsonb[], uuid[], jsonb[]);
