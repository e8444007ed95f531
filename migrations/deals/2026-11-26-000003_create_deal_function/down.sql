DROP FUNCTION deals.create_deal(bigint, bigint, bigint, text, bigint, bigint, bigint, bigint, bigint[], bigint, bigint[], jsonb, uuid, text, integer, timestamptz, jsonb);
