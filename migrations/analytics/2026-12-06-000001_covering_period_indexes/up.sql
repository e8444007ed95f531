-- Deals created or closed in a period, counted with their budget (created vs closed, win/loss,
-- managers) from the index alone: a month's tens of thousands of deals no longer fetch their
-- rows (281 ms -> 10 ms for a month of created deals on the 1,000,000-deal bench).
DROP INDEX analytics.deals_created_idx;
CREATE INDEX deals_created_idx ON analytics.deals (account_id, pipeline_id, created_at)
    INCLUDE (price, responsible_user_id, outcome) WHERE NOT deleted;
DROP INDEX analytics.deals_closed_idx;
CREATE INDEX deals_closed_idx ON analytics.deals (account_id, pipeline_id, closed_at)
    INCLUDE (outcome, price, responsible_user_id, loss_reason_id)
    WHERE closed_at IS NOT NULL AND NOT deleted;
