DROP FUNCTION deals.create_deals(bigint, bigint, bigint, jsonb, text, integer, timestamptz, bigint[], bigint[], text[], bigint[], bigint[], jsonb[], bigint[], jsonb[], uuid[], jsonb[]);
