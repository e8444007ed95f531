DROP INDEX deals.deals_account_created_idx;
DROP INDEX deals.deals_name_trgm_idx;
DROP INDEX deals.deals_custom_fields_idx;
DROP INDEX deals.deals_tags_idx;
DROP INDEX deals.deals_contacts_idx;
ALTER TABLE deals.deals
    DROP COLUMN company_ids,
    DROP COLUMN main_contact_id,
    DROP COLUMN contact_ids,
    DROP COLUMN custom_fields,
    DROP COLUMN tag_ids;
DROP TABLE deals.saved_filters;
DROP TABLE deals.tags;
DROP TABLE deals.custom_field_enums;
DROP TABLE deals.custom_fields;
-- pg_trgm stays: extensions are shared by the modules of the database.
