//! Settings: users, groups, roles and rights, API tokens, the user's own profile, imports.

pub mod contact_fields;
pub mod deals;
pub mod groups;
pub mod import;
pub mod integrations;
pub mod jobs;
pub mod profile;
pub mod roles;
pub mod task_types;
pub mod tokens;
pub mod users;
