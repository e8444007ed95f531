//! The contacts schema's tables. Names carry the schema so queries never depend on search_path.

diesel::table! {
    contacts.contacts (id) {
        id -> BigInt,
        account_id -> BigInt,
        first_name -> Text,
        last_name -> Text,
        name -> Text,
        position -> Text,
        responsible_user_id -> BigInt,
        tag_ids -> Array<BigInt>,
        custom_fields -> Jsonb,
        created_by -> BigInt,
        updated_by -> BigInt,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        merged_into -> Nullable<BigInt>,
        open_deals -> Integer,
        last_contacted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    contacts.companies (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        web -> Text,
        address -> Text,
        responsible_user_id -> BigInt,
        tag_ids -> Array<BigInt>,
        custom_fields -> Jsonb,
        created_by -> BigInt,
        updated_by -> BigInt,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        merged_into -> Nullable<BigInt>,
    }
}

diesel::table! {
    contacts.phones (id) {
        id -> BigInt,
        account_id -> BigInt,
        owner_kind -> Text,
        owner_id -> BigInt,
        kind -> Text,
        raw -> Text,
        normalized -> Text,
        sort -> Integer,
    }
}

diesel::table! {
    contacts.emails (id) {
        id -> BigInt,
        account_id -> BigInt,
        owner_kind -> Text,
        owner_id -> BigInt,
        kind -> Text,
        email -> Text,
        sort -> Integer,
    }
}

diesel::table! {
    contacts.contact_companies (account_id, contact_id, company_id) {
        account_id -> BigInt,
        contact_id -> BigInt,
        company_id -> BigInt,
    }
}

diesel::table! {
    contacts.custom_fields (id) {
        id -> BigInt,
        account_id -> BigInt,
        entity -> Text,
        name -> Text,
        field_type -> Text,
        sort -> Integer,
        created_at -> Timestamptz,
        group_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    contacts.field_groups (id) {
        id -> BigInt,
        account_id -> BigInt,
        entity -> Text,
        name -> Text,
        sort -> Integer,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    contacts.custom_field_enums (id) {
        id -> BigInt,
        account_id -> BigInt,
        field_id -> BigInt,
        value -> Text,
        sort -> Integer,
    }
}

diesel::table! {
    contacts.tags (id) {
        id -> BigInt,
        account_id -> BigInt,
        entity -> Text,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    contacts.segments (id) {
        id -> BigInt,
        account_id -> BigInt,
        entity -> Text,
        name -> Text,
        filter -> Jsonb,
        created_by -> BigInt,
        created_at -> Timestamptz,
        size -> Nullable<Integer>,
        size_capped -> Bool,
        counted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    contacts.contact_tags (account_id, tag_id, created_at, contact_id) {
        account_id -> BigInt,
        tag_id -> BigInt,
        created_at -> Timestamptz,
        contact_id -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    contacts,
    companies,
    phones,
    emails,
    contact_companies,
    custom_fields,
    custom_field_enums,
    tags
);
