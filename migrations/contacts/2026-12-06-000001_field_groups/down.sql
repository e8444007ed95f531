ALTER TABLE contacts.custom_fields DROP COLUMN group_id;
DROP TABLE contacts.field_groups;
