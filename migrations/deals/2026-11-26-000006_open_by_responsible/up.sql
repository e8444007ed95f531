-- Open deals per responsible user (automation's "least loaded" assignment), counted from the index.
CREATE INDEX deals_open_responsible_idx ON deals.deals (account_id, responsible_user_id)
    WHERE deleted_at IS NULL AND closed_at IS NULL;
