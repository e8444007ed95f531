//! Deal custom fields (definitions, value checks, fields required at a stage) and tags.

use std::collections::HashMap;

use deals_api::{
    CustomField, FieldEnum, FieldGroup, FieldId, FieldType, FieldValues, NewCustomField,
    PipelineId, RequiredAt, StageId, Tag, TagId,
};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::fields;
use kernel::{AccountId, AppError, AppResult, FieldError};
use serde_json::Value;

use crate::schema::{custom_field_enums, custom_fields, field_groups, stages, tags};

pub const MAX_FIELDS: usize = 200;
pub const MAX_TAGS_PER_DEAL: usize = 50;

#[derive(Queryable, Selectable)]
#[diesel(table_name = custom_fields, check_for_backend(diesel::pg::Pg))]
struct FieldRow {
    id: i64,
    name: String,
    field_type: String,
    sort: i32,
    required_statuses: Value,
    group_id: Option<i64>,
}

/// Every custom field of the account's deals, in order, with its choices.
pub async fn load(conn: &mut AsyncPgConnection, account: AccountId) -> AppResult<Vec<CustomField>> {
    let rows: Vec<FieldRow> = custom_fields::table
        .filter(custom_fields::account_id.eq(account.0))
        .order((custom_fields::sort, custom_fields::id))
        .select(FieldRow::as_select())
        .load(conn)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let enums: Vec<(i64, i64, String, i32)> = custom_field_enums::table
        .filter(custom_field_enums::account_id.eq(account.0))
        .order((custom_field_enums::sort, custom_field_enums::id))
        .select((
            custom_field_enums::field_id,
            custom_field_enums::id,
            custom_field_enums::value,
            custom_field_enums::sort,
        ))
        .load(conn)
        .await?;
    let mut by_field: HashMap<i64, Vec<FieldEnum>> = HashMap::new();
    for (field, id, value, sort) in enums {
        by_field
            .entry(field)
            .or_default()
            .push(FieldEnum { id, value, sort });
    }
    Ok(rows
        .into_iter()
        .map(|r| CustomField {
            id: FieldId(r.id),
            name: r.name,
            field_type: FieldType::parse(&r.field_type).unwrap_or(FieldType::Text),
            sort: r.sort,
            enums: by_field.remove(&r.id).unwrap_or_default(),
            required_statuses: serde_json::from_value(r.required_statuses).unwrap_or_default(),
            group_id: r.group_id,
        })
        .collect())
}

/// The account's field groups, in order.
pub async fn load_groups(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> AppResult<Vec<FieldGroup>> {
    let rows: Vec<(i64, String, i32)> = field_groups::table
        .filter(field_groups::account_id.eq(account.0))
        .order((field_groups::sort, field_groups::id))
        .select((field_groups::id, field_groups::name, field_groups::sort))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, sort)| FieldGroup { id, name, sort })
        .collect())
}

fn field_error(field: String, code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        code: code.into(),
        message: message.into(),
    }
}

/// Checks a definition; returns the trimmed name and the choices' texts.
pub async fn check_definition(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    new: &NewCustomField,
) -> AppResult<(String, Vec<String>)> {
    let mut errors = Vec::new();
    let name = new.name.trim().to_string();
    if name.is_empty() {
        errors.push(field_error("name".into(), "required", "enter a name"));
    } else if name.chars().count() > 100 {
        errors.push(field_error(
            "name".into(),
            "too_long",
            "at most 100 characters",
        ));
    }
    let enums = fields::check_choices(new.field_type, &new.enums, &mut errors);
    if let Some(group) = new.group_id {
        let found: i64 = field_groups::table
            .filter(field_groups::account_id.eq(account.0))
            .filter(field_groups::id.eq(group))
            .count()
            .get_result(conn)
            .await?;
        if found == 0 {
            errors.push(field_error(
                "group_id".into(),
                "not_found",
                "no such field group",
            ));
        }
    }
    for (i, r) in new.required_statuses.iter().enumerate() {
        let found: i64 = stages::table
            .filter(stages::account_id.eq(account.0))
            .filter(stages::pipeline_id.eq(r.pipeline_id.0))
            .filter(stages::id.eq(r.status_id.0))
            .count()
            .get_result(conn)
            .await?;
        if found == 0 {
            errors.push(field_error(
                format!("required_statuses[{i}]"),
                "not_found",
                "no such stage",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(AppError::from_fields(errors));
    }
    Ok((name, enums))
}

pub fn required_json(required: &[RequiredAt]) -> Value {
    serde_json::to_value(required).unwrap_or_else(|_| Value::Array(Vec::new()))
}

/// The fields required at `stage` that `values` leaves empty, as errors.
pub fn check_required(
    defs: &[CustomField],
    pipeline: PipelineId,
    stage: StageId,
    stage_name: &str,
    values: &FieldValues,
    errors: &mut Vec<FieldError>,
) {
    for def in defs.iter().filter(|d| d.required_at(pipeline, stage)) {
        if !fields::is_filled(values.get(&def.id.0.to_string())) {
            errors.push(field_error(
                format!("custom_fields.{}", def.id.0),
                "required",
                format!(
                    "“{}” must be filled in for the stage “{stage_name}”",
                    def.name
                ),
            ));
        }
    }
}

/// The ids of the named tags, creating the ones the account does not have yet.
pub async fn ensure_tags(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    names: &[String],
) -> AppResult<Vec<i64>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "INSERT INTO deals.tags (account_id, name) SELECT $1, n FROM unnest($2::text[]) n
         ON CONFLICT (account_id, lower(name)) DO NOTHING",
    )
    .bind::<BigInt, _>(account.0)
    .bind::<Array<Text>, _>(names)
    .execute(conn)
    .await?;
    let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let found: Vec<(i64, String)> = tags::table
        .filter(tags::account_id.eq(account.0))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(name) = ANY(")
                .bind::<Array<Text>, _>(&lower)
                .sql(")"),
        )
        .select((tags::id, tags::name))
        .load(conn)
        .await?;
    // In the order given.
    Ok(lower
        .iter()
        .filter_map(|l| {
            found
                .iter()
                .find(|(_, n)| &n.to_lowercase() == l)
                .map(|(id, _)| *id)
        })
        .collect())
}

/// Existing tags by name (no creation), for filters and removals.
pub async fn find_tags(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    names: &[String],
) -> AppResult<Vec<i64>> {
    let lower: Vec<String> = names.iter().map(|n| n.trim().to_lowercase()).collect();
    Ok(tags::table
        .filter(tags::account_id.eq(account.0))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(name) = ANY(")
                .bind::<Array<Text>, _>(&lower)
                .sql(")"),
        )
        .select(tags::id)
        .load(conn)
        .await?)
}

/// Names of the given tag ids.
pub async fn tag_names(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    ids: &[i64],
) -> AppResult<HashMap<i64, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, String)> = tags::table
        .filter(tags::account_id.eq(account.0))
        .filter(tags::id.eq_any(ids))
        .select((tags::id, tags::name))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

pub async fn all_tags(conn: &mut AsyncPgConnection, account: AccountId) -> AppResult<Vec<Tag>> {
    let rows: Vec<(i64, String)> = tags::table
        .filter(tags::account_id.eq(account.0))
        .order(tags::name)
        .select((tags::id, tags::name))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| Tag {
            id: TagId(id),
            name,
        })
        .collect())
}
