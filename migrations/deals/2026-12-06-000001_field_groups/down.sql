ALTER TABLE deals.custom_fields DROP COLUMN group_id;
DROP TABLE deals.field_groups;
