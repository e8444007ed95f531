//! The deals schema's tables. Names carry the schema so queries never depend on search_path.

diesel::table! {
    deals.pipelines (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        sort -> Integer,
        is_main -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    deals.stages (pipeline_id, id) {
        pipeline_id -> BigInt,
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        color -> Text,
        sort -> Integer,
        kind -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    deals.loss_reasons (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        sort -> Integer,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deals.deals (id) {
        id -> BigInt,
        account_id -> BigInt,
        pipeline_id -> BigInt,
        stage_id -> BigInt,
        name -> Text,
        price -> BigInt,
        responsible_user_id -> BigInt,
        position -> BigInt,
        loss_reason_id -> Nullable<BigInt>,
        created_by -> BigInt,
        updated_by -> BigInt,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        closed_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        tag_ids -> Array<BigInt>,
        custom_fields -> Jsonb,
        contact_ids -> Array<BigInt>,
        main_contact_id -> Nullable<BigInt>,
        company_ids -> Array<BigInt>,
    }
}

diesel::table! {
    deals.stage_totals (account_id, pipeline_id, stage_id, responsible_user_id, shard) {
        account_id -> BigInt,
        pipeline_id -> BigInt,
        stage_id -> BigInt,
        responsible_user_id -> BigInt,
        shard -> SmallInt,
        deals -> BigInt,
        budget -> BigInt,
    }
}

diesel::table! {
    deals.stage_history (id) {
        id -> BigInt,
        account_id -> BigInt,
        deal_id -> BigInt,
        pipeline_id -> BigInt,
        stage_id -> BigInt,
        entered_at -> Timestamptz,
        left_at -> Nullable<Timestamptz>,
        entered_by -> Jsonb,
        left_by -> Nullable<Jsonb>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    pipelines,
    stages,
    loss_reasons,
    deals,
    stage_totals,
    stage_history
);

diesel::table! {
    deals.custom_fields (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        field_type -> Text,
        sort -> Integer,
        required_statuses -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        group_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    deals.field_groups (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        sort -> Integer,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deals.custom_field_enums (id) {
        id -> BigInt,
        account_id -> BigInt,
        field_id -> BigInt,
        value -> Text,
        sort -> Integer,
    }
}

diesel::table! {
    deals.tags (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deals.saved_filters (id) {
        id -> BigInt,
        account_id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        query -> Text,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(custom_fields, custom_field_enums);
