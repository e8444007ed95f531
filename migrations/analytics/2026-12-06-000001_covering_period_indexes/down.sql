DROP INDEX analytics.deals_created_idx;
CREATE INDEX deals_created_idx ON analytics.deals (account_id, pipeline_id, created_at) WHERE NOT deleted;
DROP INDEX analytics.deals_closed_idx;
CREATE INDEX deals_closed_idx ON analytics.deals (account_id, pipeline_id, closed_at) WHERE closed_at IS NOT NULL AND NOT deleted;
