DROP FUNCTION deals.move_deal(bigint, bigint, bigint, bigint[], bigint, bigint, jsonb, uuid, text, integer, timestamptz, uuid);
