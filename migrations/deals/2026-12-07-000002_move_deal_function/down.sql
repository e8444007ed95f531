DROP FUNCTION deals.move_deal(bigint, bigint, bigint, bigint[], bigint, bigint, jsonb, uuid, text, integer, timestamptz, uuid);
DROP FUNCTION deals.move_totals(bigint, smallint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint);
