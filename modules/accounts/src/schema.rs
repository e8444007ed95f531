//! The accounts schema's tables. Names carry the schema so queries never depend on search_path.

diesel::table! {
    accounts.accounts (id) {
        id -> BigInt,
        uuid -> Uuid,
        name -> Text,
        subdomain -> Text,
        currency -> Text,
        country -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    accounts.groups (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    accounts.roles (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        rights -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    accounts.users (id) {
        id -> BigInt,
        account_id -> BigInt,
        email -> Text,
        name -> Text,
        name_key -> Text,
        password_hash -> Text,
        is_admin -> Bool,
        is_active -> Bool,
        lang -> Text,
        time_zone -> Text,
        group_id -> Nullable<BigInt>,
        role_id -> Nullable<BigInt>,
        rights -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    accounts.sessions (id) {
        id -> BigInt,
        account_id -> BigInt,
        user_id -> BigInt,
        token_hash -> Bytea,
        csrf_token -> Text,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    accounts.api_tokens (id) {
        id -> BigInt,
        account_id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        client_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    accounts.oauth_clients (id) {
        id -> BigInt,
        account_id -> BigInt,
        client_id -> Uuid,
        name -> Text,
        secret_hash -> Bytea,
        redirect_uri -> Text,
        created_by -> BigInt,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    accounts.oauth_codes (code_hash) {
        code_hash -> Bytea,
        account_id -> BigInt,
        client_id -> BigInt,
        user_id -> BigInt,
        redirect_uri -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    accounts.oauth_refresh_tokens (id) {
        id -> BigInt,
        account_id -> BigInt,
        client_id -> BigInt,
        user_id -> BigInt,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(users -> roles (role_id));
diesel::joinable!(users -> accounts (account_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    groups,
    roles,
    users,
    sessions,
    api_tokens,
    oauth_clients,
    oauth_codes,
    oauth_refresh_tokens
);
