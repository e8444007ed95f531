-- Field groups: a deal page shows its fields under these headings (amoCRM's field groups, the
-- tabs of a card). A field without a group is in the main list, shown first.
CREATE TABLE deals.field_groups (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    sort        INTEGER     NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX field_groups_account_name_key ON deals.field_groups (account_id, lower(name));

-- A group's deletion ungroups its fields (in code, in the same transaction, before the row goes).
ALTER TABLE deals.custom_fields
    ADD COLUMN group_id BIGINT,
    ADD FOREIGN KEY (account_id, group_id) REFERENCES deals.field_groups (account_id, id);
CREATE INDEX custom_fields_group_idx ON deals.custom_fields (account_id, group_id) WHERE group_id IS NOT NULL;
