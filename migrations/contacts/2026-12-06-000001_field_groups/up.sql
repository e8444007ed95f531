-- Field groups of contacts and of companies: a card shows its fields under these headings
-- (amoCRM's field groups). A field without a group is in the main list, shown first.
CREATE TABLE contacts.field_groups (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT      NOT NULL,
    entity      TEXT        NOT NULL CHECK (entity IN ('contact', 'company')),
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    sort        INTEGER     NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    UNIQUE (account_id, entity, id)
);
CREATE UNIQUE INDEX field_groups_account_name_key ON contacts.field_groups (account_id, entity, lower(name));

-- A field's group is of the field's own entity; deleting a group ungroups its fields (in code).
ALTER TABLE contacts.custom_fields
    ADD COLUMN group_id BIGINT,
    ADD FOREIGN KEY (account_id, entity, group_id) REFERENCES contacts.field_groups (account_id, entity, id);
CREATE INDEX custom_fields_group_idx ON contacts.custom_fields (account_id, group_id) WHERE group_id IS NOT NULL;
