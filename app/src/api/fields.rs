//! Custom-field values in amoCRM's shape:
//! `[{"field_id", "field_name", "field_code", "field_type", "values": [{"value", "enum_id"}]}]`,
//! read and written against the entity's field definitions.

use chrono::{DateTime, NaiveDate, Utc};
use kernel::fields::{FieldDef, FieldType};
use serde_json::{Map, Value, json};

use super::body::Item;

/// Stored values → `custom_fields_values` (`null` when there are none, as amoCRM answers).
pub fn values_out<D: FieldDef>(values: &Map<String, Value>, defs: &[D]) -> Value {
    let mut out = Vec::new();
    for def in defs {
        let Some(v) = values.get(&def.field_id().to_string()) else {
            continue;
        };
        if v.is_null() {
            continue;
        }
        let enum_value = |id: i64| {
            def.field_enums()
                .iter()
                .find(|e| e.id == id)
                .map(|e| json!({"value": e.value, "enum_id": e.id}))
        };
        let values: Vec<Value> = match def.field_type() {
            FieldType::Select => v.as_i64().and_then(enum_value).into_iter().collect(),
            FieldType::Multiselect => v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_i64().and_then(enum_value))
                        .collect()
                })
                .unwrap_or_default(),
            FieldType::Date => v
                .as_str()
                .and_then(|s| NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| json!({"value": d.and_utc().timestamp()}))
                .into_iter()
                .collect(),
            FieldType::DateTime => v
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| json!({"value": d.with_timezone(&Utc).timestamp()}))
                .or_else(|| v.as_i64().map(|n| json!({"value": n})))
                .into_iter()
                .collect(),
            _ => vec![json!({ "value": v })],
        };
        if values.is_empty() {
            continue;
        }
        out.push(json!({
            "field_id": def.field_id(),
            "field_name": def.field_name(),
            "field_code": Value::Null,
            "field_type": def.field_type().as_str(),
            "values": values,
        }));
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Array(out)
    }
}

/// One value as amoCRM sends it (`{"value": …}` or `{"enum_id": …}`) → what our fields take.
fn value_in(ty: FieldType, v: &Value) -> Value {
    let enum_id = v.get("enum_id").filter(|e| !e.is_null());
    let value = v.get("value").unwrap_or(v);
    match ty {
        FieldType::Select | FieldType::Multiselect => enum_id.cloned().unwrap_or(value.clone()),
        // Dates come as unix seconds or as text; ours are "YYYY-MM-DD".
        FieldType::Date => match value.as_i64() {
            Some(n) => DateTime::from_timestamp(n, 0)
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .unwrap_or(Value::Null),
            None => value.clone(),
        },
        _ => value.clone(),
    }
}

/// `custom_fields_values` of a write → values by field id, checked against the definitions;
/// unknown fields and bad values are reported on `item` with their paths.
/// Fields named by `field_code` are passed to `by_code` (e.g. a contact's PHONE and EMAIL);
/// it returns false for a code it does not know.
pub fn values_in<D: FieldDef>(
    item: &mut Item<'_>,
    key: &str,
    defs: &[D],
    mut by_code: impl FnMut(&str, &[Value]) -> bool,
) -> Option<Map<String, Value>> {
    let list = item.array(key)?;
    let mut out = Map::new();
    for (i, entry) in list.iter().enumerate() {
        let path = format!("{key}.{i}");
        let values: Vec<Value> = match entry.get("values") {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                item.fail(
                    &format!("{path}.values"),
                    "InvalidType",
                    "This value should be of type array.",
                );
                continue;
            }
        };
        let def = match (entry.get("field_id"), entry.get("field_code")) {
            (Some(id), _) if !id.is_null() => match id.as_i64() {
                Some(id) => match defs.iter().find(|d| d.field_id() == id) {
                    Some(d) => d,
                    None => {
                        item.fail(&format!("{path}.field_id"), "NotFound", "No such field");
                        continue;
                    }
                },
                None => {
                    item.fail(
                        &format!("{path}.field_id"),
                        "InvalidType",
                        "This value should be of type int.",
                    );
                    continue;
                }
            },
            (_, Some(Value::String(code))) => {
                if !by_code(code, &values) {
                    item.fail(&format!("{path}.field_code"), "NotFound", "No such field");
                }
                continue;
            }
            _ => {
                item.fail(&path, "Required", "field_id or field_code is required");
                continue;
            }
        };
        let ty = def.field_type();
        let raw = if ty == FieldType::Multiselect {
            Value::Array(values.iter().map(|v| value_in(ty, v)).collect())
        } else {
            values
                .first()
                .map(|v| value_in(ty, v))
                .unwrap_or(Value::Null)
        };
        if let Err(e) = kernel::fields::normalize(ty, def.field_enums(), &raw) {
            let code = if ty.has_enums() {
                "NotSupportedChoice"
            } else {
                "InvalidValue"
            };
            item.fail(
                &format!("{path}.values"),
                code,
                format!("{}: {}", def.field_name(), e.message),
            );
            continue;
        }
        out.insert(def.field_id().to_string(), raw);
    }
    Some(out)
}
