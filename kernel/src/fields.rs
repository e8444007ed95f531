//! Custom fields: the types a field can have, and how a value is checked and normalised before
//! it is stored. Deals, contacts and companies keep their own field definitions and values; the
//! rules for what a value of each type looks like live here, once.
//!
//! Stored values (JSON, by field id in the entity's `custom_fields` object):
//! text, textarea, url → string; numeric → string of a decimal number ("1250.5"), as amoCRM's
//! API returns it; checkbox → bool; select → enum id; multiselect → sorted array of enum ids;
//! date → "YYYY-MM-DD"; date_time → RFC 3339 in UTC.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Textarea,
    Numeric,
    Checkbox,
    Select,
    Multiselect,
    Date,
    DateTime,
    Url,
}

impl FieldType {
    pub const ALL: [FieldType; 9] = [
        FieldType::Text,
        FieldType::Textarea,
        FieldType::Numeric,
        FieldType::Checkbox,
        FieldType::Select,
        FieldType::Multiselect,
        FieldType::Date,
        FieldType::DateTime,
        FieldType::Url,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Textarea => "textarea",
            FieldType::Numeric => "numeric",
            FieldType::Checkbox => "checkbox",
            FieldType::Select => "select",
            FieldType::Multiselect => "multiselect",
            FieldType::Date => "date",
            FieldType::DateTime => "date_time",
            FieldType::Url => "url",
        }
    }

    pub fn parse(s: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether values are chosen from the field's enums.
    pub fn has_enums(self) -> bool {
        matches!(self, FieldType::Select | FieldType::Multiselect)
    }
}

/// One choice of a select or multiselect field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldEnum {
    pub id: i64,
    pub value: String,
    pub sort: i32,
}

/// A heading a record's fields are shown under (amoCRM's field groups, the tabs of a card).
/// Fields without a group form the main list, shown first; groups follow in `sort` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldGroup {
    pub id: i64,
    pub name: String,
    pub sort: i32,
}

impl FieldGroup {
    /// Whether a field in `group` is in this one (a form's selected group).
    pub fn holds(&self, group: Option<i64>) -> bool {
        group == Some(self.id)
    }
}

/// A group to create, or a group's new name and place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFieldGroup {
    pub name: String,
    /// Its place among the groups; a new group without one goes last, a renamed one stays.
    #[serde(default)]
    pub sort: Option<i32>,
}

/// The longest field group name.
pub const MAX_GROUP_NAME: usize = 100;
/// The most field groups an entity type may have.
pub const MAX_GROUPS: usize = 50;

/// Checks a group's name (trimmed, 1 to [`MAX_GROUP_NAME`] characters) and returns it.
pub fn group_name(name: &str) -> Result<String, crate::AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(crate::AppError::validation(
            "name",
            "required",
            "enter the group's name",
        ));
    }
    if name.chars().count() > MAX_GROUP_NAME {
        return Err(crate::AppError::validation(
            "name",
            "too_long",
            &format!("at most {MAX_GROUP_NAME} characters"),
        ));
    }
    Ok(name.to_string())
}

/// `fields` split by group for a card: the ungrouped ones (if any) under `None`, then each
/// group that has fields, in the groups' order. `group_of` tells a field's group.
pub fn by_group<'a, F>(
    groups: &'a [FieldGroup],
    fields: &'a [F],
    group_of: impl Fn(&F) -> Option<i64>,
) -> Vec<(Option<&'a FieldGroup>, Vec<&'a F>)> {
    let mut out: Vec<(Option<&FieldGroup>, Vec<&F>)> = Vec::new();
    let known = |g: Option<i64>| g.filter(|g| groups.iter().any(|x| x.id == *g));
    let main: Vec<&F> = fields
        .iter()
        .filter(|f| known(group_of(f)).is_none())
        .collect();
    if !main.is_empty() {
        out.push((None, main));
    }
    for g in groups {
        let mine: Vec<&F> = fields
            .iter()
            .filter(|f| group_of(f) == Some(g.id))
            .collect();
        if !mine.is_empty() {
            out.push((Some(g), mine));
        }
    }
    out
}

/// The most choices a select or multiselect field may have, and the longest one.
pub const MAX_CHOICES: usize = 500;
pub const MAX_CHOICE: usize = 255;

/// A definition's choices as given, trimmed, without empty or repeated ones. Refused (into
/// `errors`, under `enums`) when a list field has none, another type has some, or there are too
/// many or too long ones.
pub fn check_choices(ty: FieldType, given: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut choices: Vec<String> = Vec::new();
    for c in given {
        let c = c.trim();
        if !c.is_empty() && !choices.iter().any(|x| x == c) {
            choices.push(c.to_string());
        }
    }
    let mut refuse = |code: &str, message: String| {
        errors.push(FieldError {
            field: "enums".into(),
            code: code.into(),
            message,
        })
    };
    if ty.has_enums() && choices.is_empty() {
        refuse("required", "a list field needs at least one choice".into());
    }
    if !ty.has_enums() && !choices.is_empty() {
        refuse(
            "not_allowed",
            "only select and multiselect fields have choices".into(),
        );
    }
    if choices.len() > MAX_CHOICES || choices.iter().any(|c| c.chars().count() > MAX_CHOICE) {
        refuse(
            "too_long",
            format!("at most {MAX_CHOICES} choices of up to {MAX_CHOICE} characters"),
        );
    }
    choices
}

/// Writes a field's choices into `{schema}.custom_field_enums`: existing ones keep their ids by
/// text (and take their new place), new ones are added, the rest are removed and taken out of
/// the values stored in `records` (a table with `account_id` and a `custom_fields` object). A
/// select's value is cleared, a multiselect loses those items (and is cleared when none are
/// left). `schema` and `records` are the calling module's own names, never input.
pub async fn write_choices(
    conn: &mut diesel_async::AsyncPgConnection,
    schema: &str,
    records: &str,
    account: crate::AccountId,
    field: i64,
    values: &[String],
) -> crate::AppResult<()> {
    use diesel::sql_types::{Array, BigInt, Integer, Text};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Existing {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        value: String,
    }
    let existing: Vec<Existing> = diesel::sql_query(format!(
        "SELECT id, value FROM {schema}.custom_field_enums WHERE account_id = $1 AND field_id = $2"
    ))
    .bind::<BigInt, _>(account.0)
    .bind::<BigInt, _>(field)
    .load(conn)
    .await?;
    let gone: Vec<i64> = existing
        .iter()
        .filter(|e| !values.contains(&e.value))
        .map(|e| e.id)
        .collect();
    if !gone.is_empty() {
        diesel::sql_query(format!(
            "DELETE FROM {schema}.custom_field_enums WHERE id = ANY($1)"
        ))
        .bind::<Array<BigInt>, _>(&gone)
        .execute(conn)
        .await?;
        diesel::sql_query(format!(
            "UPDATE {records} SET custom_fields = CASE
                 WHEN jsonb_typeof(custom_fields -> $2) = 'array' THEN
                     CASE WHEN (SELECT count(*) FROM jsonb_array_elements(custom_fields -> $2) e
                                 WHERE NOT (e::bigint = ANY($3))) = 0
                          THEN custom_fields - $2
                          ELSE jsonb_set(custom_fields, ARRAY[$2], (SELECT jsonb_agg(e) FROM jsonb_array_elements(custom_fields -> $2) e
                                 WHERE NOT (e::bigint = ANY($3)))) END
                 ELSE custom_fields - $2 END
              WHERE account_id = $1 AND custom_fields ? $2
                AND (CASE WHEN jsonb_typeof(custom_fields -> $2) = 'array'
                          THEN EXISTS (SELECT 1 FROM jsonb_array_elements(custom_fields -> $2) e WHERE e::bigint = ANY($3))
                          ELSE (custom_fields ->> $2)::bigint = ANY($3) END)"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(field.to_string())
        .bind::<Array<BigInt>, _>(&gone)
        .execute(conn)
        .await?;
    }
    for (sort, value) in values.iter().enumerate() {
        match existing.iter().find(|e| &e.value == value) {
            Some(e) => {
                diesel::sql_query(format!(
                    "UPDATE {schema}.custom_field_enums SET sort = $2 WHERE id = $1"
                ))
                .bind::<BigInt, _>(e.id)
                .bind::<Integer, _>(sort as i32)
                .execute(conn)
                .await?;
            }
            None => {
                diesel::sql_query(format!(
                    "INSERT INTO {schema}.custom_field_enums (account_id, field_id, value, sort)
                     VALUES ($1, $2, $3, $4)"
                ))
                .bind::<BigInt, _>(account.0)
                .bind::<BigInt, _>(field)
                .bind::<Text, _>(value)
                .bind::<Integer, _>(sort as i32)
                .execute(conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Why a value was refused: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> ValueError {
    ValueError {
        code,
        message: message.into(),
    }
}

/// The longest text value accepted (textarea; other text types are shorter).
pub const MAX_TEXTAREA: usize = 10_000;
pub const MAX_TEXT: usize = 1_000;

/// Checks `input` as a value of a field of type `ty` with the given enums and returns the value
/// to store; `Ok(None)` means "no value" (an empty string, null, an empty list, or an unticked
/// checkbox). Strings are accepted for every type, as they come from forms: "42" for a number,
/// "true"/"on"/"1" for a checkbox, an enum's id or its exact text for a select.
pub fn normalize(
    ty: FieldType,
    enums: &[FieldEnum],
    input: &Value,
) -> Result<Option<Value>, ValueError> {
    if input.is_null() {
        return Ok(None);
    }
    if let Value::String(s) = input
        && s.trim().is_empty()
        && ty != FieldType::Checkbox
    {
        return Ok(None);
    }
    match ty {
        FieldType::Text | FieldType::Textarea => {
            let s = as_text(input)?;
            let max = if ty == FieldType::Text {
                MAX_TEXT
            } else {
                MAX_TEXTAREA
            };
            let s = if ty == FieldType::Text {
                s.trim().to_string()
            } else {
                s
            };
            if s.chars().count() > max {
                return Err(bad("too_long", format!("at most {max} characters")));
            }
            Ok(Some(Value::String(s)))
        }
        FieldType::Url => {
            let s = as_text(input)?.trim().to_string();
            if !is_url(&s) {
                return Err(bad("invalid", "not a web address (http:// or https://)"));
            }
            Ok(Some(Value::String(s)))
        }
        FieldType::Numeric => {
            let text = match input {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().replace([' ', '\u{a0}'], "").replace(',', "."),
                _ => return Err(bad("not_a_number", "must be a number")),
            };
            let n: f64 = text
                .parse()
                .map_err(|_| bad("not_a_number", "must be a number"))?;
            if !n.is_finite() || text.contains(['e', 'E', 'i', 'n', 'N']) {
                return Err(bad("not_a_number", "must be a number"));
            }
            Ok(Some(Value::String(canonical_number(&text))))
        }
        FieldType::Checkbox => match input {
            Value::Bool(b) => Ok((*b).then_some(Value::Bool(true))),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "1" | "yes" => Ok(Some(Value::Bool(true))),
                "false" | "off" | "0" | "no" | "" => Ok(None),
                _ => Err(bad("not_a_boolean", "must be yes or no")),
            },
            _ => Err(bad("not_a_boolean", "must be yes or no")),
        },
        FieldType::Select => {
            let id = enum_id(enums, input)?;
            Ok(Some(Value::from(id)))
        }
        FieldType::Multiselect => {
            let items: Vec<&Value> = match input {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                if item.as_str().is_some_and(|s| s.trim().is_empty()) {
                    continue;
                }
                ids.push(enum_id(enums, item)?);
            }
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                return Ok(None);
            }
            Ok(Some(Value::from(ids)))
        }
        FieldType::Date => {
            let s = as_text(input)?;
            let s = s.trim();
            // A date, or the date part of a date and time.
            let d = NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                .map_err(|_| bad("not_a_date", "must be a date, YYYY-MM-DD"))?;
            if s.len() != 10 && DateTime::parse_from_rfc3339(s).is_err() {
                return Err(bad("not_a_date", "must be a date, YYYY-MM-DD"));
            }
            Ok(Some(Value::String(d.format("%Y-%m-%d").to_string())))
        }
        FieldType::DateTime => {
            let t: DateTime<Utc> = match input {
                // Unix seconds, as amoCRM's API sends dates.
                Value::Number(n) => n
                    .as_i64()
                    .and_then(|s| DateTime::from_timestamp(s, 0))
                    .ok_or_else(|| bad("not_a_datetime", "must be a date and time"))?,
                Value::String(s) => parse_datetime(s.trim())
                    .ok_or_else(|| bad("not_a_datetime", "must be a date and time"))?,
                _ => return Err(bad("not_a_datetime", "must be a date and time")),
            };
            Ok(Some(Value::String(
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )))
        }
    }
}

fn as_text(input: &Value) -> Result<String, ValueError> {
    match input {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad("not_text", "must be text")),
    }
}

fn enum_id(enums: &[FieldEnum], input: &Value) -> Result<i64, ValueError> {
    let found = match input {
        Value::Number(n) => n.as_i64().and_then(|id| enums.iter().find(|e| e.id == id)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .and_then(|id| enums.iter().find(|e| e.id == id))
                .or_else(|| enums.iter().find(|e| e.value == s))
        }
        _ => None,
    };
    found
        .map(|e| e.id)
        .ok_or_else(|| bad("unknown_choice", "not one of the field's choices"))
}

/// "007.50" → "7.5", "-0" → "0", "12." → "12".
fn canonical_number(text: &str) -> String {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    if neg && body != "0" {
        format!("-{body}")
    } else {
        body
    }
}

fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // What an <input type="datetime-local"> sends (taken as UTC here; the caller converts
    // from the user's time zone before it gets this far when it knows it).
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

fn is_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    s.len() <= 2048
        && !host.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '@'))
}

/// A custom-field definition as `apply_values` needs it; every module's field type provides it.
pub trait FieldDef {
    fn field_id(&self) -> i64;
    fn field_name(&self) -> &str;
    fn field_type(&self) -> FieldType;
    fn field_enums(&self) -> &[FieldEnum];
    /// The group the field is shown under (`None`: the main list).
    fn field_group(&self) -> Option<i64> {
        None
    }
}

/// Checks `input` (values by field id, as given) against the definitions and merges it into
/// `current`: a value is set, or removed when empty. Unknown fields and values of the wrong type
/// are refused, naming the field as `custom_fields.<id>`.
pub fn apply_values<D: FieldDef>(
    defs: &[D],
    current: &Map<String, Value>,
    input: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Map<String, Value> {
    let mut out = current.clone();
    for (key, raw) in input {
        let name = format!("custom_fields.{key}");
        let Some(def) = key
            .parse::<i64>()
            .ok()
            .and_then(|id| defs.iter().find(|d| d.field_id() == id))
        else {
            errors.push(FieldError {
                field: name,
                code: "not_found".into(),
                message: "no such field".into(),
            });
            continue;
        };
        match normalize(def.field_type(), def.field_enums(), raw) {
            Ok(Some(v)) => {
                out.insert(key.clone(), v);
            }
            Ok(None) => {
                out.remove(key);
            }
            Err(e) => errors.push(FieldError {
                field: name,
                code: e.code.into(),
                message: format!("{}: {}", def.field_name(), e.message),
            }),
        }
    }
    out
}

/// The longest tag name.
pub const MAX_TAG: usize = 50;

/// Cleans tag names: trimmed, empty ones dropped, no duplicates ignoring case, at most
/// `MAX_TAG` characters each and `max` in all (errors name the field `tags`).
pub fn clean_tags(names: &[String], max: usize, errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if n.chars().count() > MAX_TAG {
            errors.push(FieldError {
                field: "tags".into(),
                code: "too_long".into(),
                message: format!("a tag has at most {MAX_TAG} characters"),
            });
        } else if !out.iter().any(|x| x.to_lowercase() == n.to_lowercase()) {
            out.push(n.to_string());
        }
    }
    if out.len() > max {
        errors.push(FieldError {
            field: "tags".into(),
            code: "too_many".into(),
            message: format!("at most {max} tags"),
        });
    }
    out
}

/// Whether a stored value counts as filled in (for fields required at a stage).
pub fn is_filled(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(_) => true,
    }
}

/// A stored value as people read it (enum ids shown as their text).
pub fn display(ty: FieldType, enums: &[FieldEnum], value: &Value) -> String {
    let name = |id: Option<i64>| {
        id.and_then(|id| enums.iter().find(|e| e.id == id))
            .map(|e| e.value.clone())
            .unwrap_or_default()
    };
    match (ty, value) {
        (FieldType::Select, v) => name(v.as_i64()),
        (FieldType::Multiselect, Value::Array(a)) => a
            .iter()
            .map(|v| name(v.as_i64()))
            .collect::<Vec<_>>()
            .join(", "),
        (FieldType::Checkbox, Value::Bool(true)) => "✓".into(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Null) => String::new(),
        (_, v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enums() -> Vec<FieldEnum> {
        vec![
            FieldEnum {
                id: 7,
                value: "Retail".into(),
                sort: 0,
            },
            FieldEnum {
                id: 9,
                value: "Wholesale".into(),
                sort: 1,
            },
        ]
    }

    #[test]
    fn values_are_normalised_by_type() {
        let e = enums();
        let n = |t, v: Value| normalize(t, &e, &v);
        assert_eq!(
            n(FieldType::Numeric, json!(" 1 250,50 ")),
            Ok(Some(json!("1250.5")))
        );
        assert_eq!(n(FieldType::Numeric, json!(-0.0)), Ok(Some(json!("0"))));
        assert_eq!(n(FieldType::Numeric, json!("007")), Ok(Some(json!("7"))));
        assert_eq!(
            n(FieldType::Numeric, json!("abc")).unwrap_err().code,
            "not_a_number"
        );
        assert_eq!(
            n(FieldType::Numeric, json!("1e5")).unwrap_err().code,
            "not_a_number"
        );
        assert_eq!(
            n(FieldType::Numeric, json!("NaN")).unwrap_err().code,
            "not_a_number"
        );
        assert_eq!(
            n(FieldType::Numeric, json!(true)).unwrap_err().code,
            "not_a_number"
        );
        assert_eq!(n(FieldType::Checkbox, json!("on")), Ok(Some(json!(true))));
        assert_eq!(n(FieldType::Checkbox, json!(false)), Ok(None));
        assert_eq!(
            n(FieldType::Checkbox, json!("maybe")).unwrap_err().code,
            "not_a_boolean"
        );
        assert_eq!(n(FieldType::Select, json!("Wholesale")), Ok(Some(json!(9))));
        assert_eq!(n(FieldType::Select, json!(7)), Ok(Some(json!(7))));
        assert_eq!(
            n(FieldType::Select, json!("8")).unwrap_err().code,
            "unknown_choice"
        );
        assert_eq!(
            n(FieldType::Multiselect, json!([9, "7", 9])),
            Ok(Some(json!([7, 9])))
        );
        assert_eq!(n(FieldType::Multiselect, json!([])), Ok(None));
        assert_eq!(
            n(FieldType::Date, json!("2026-02-28")),
            Ok(Some(json!("2026-02-28")))
        );
        assert_eq!(
            n(FieldType::Date, json!("2026-02-30")).unwrap_err().code,
            "not_a_date"
        );
        assert_eq!(
            n(FieldType::DateTime, json!("2026-02-28T10:00:00+03:00")),
            Ok(Some(json!("2026-02-28T07:00:00Z")))
        );
        assert_eq!(
            n(FieldType::DateTime, json!(0)),
            Ok(Some(json!("1970-01-01T00:00:00Z")))
        );
        assert_eq!(
            n(FieldType::DateTime, json!("soon")).unwrap_err().code,
            "not_a_datetime"
        );
        assert_eq!(
            n(FieldType::Url, json!("https://example.com/a?b")),
            Ok(Some(json!("https://example.com/a?b")))
        );
        assert_eq!(
            n(FieldType::Url, json!("javascript:alert(1)"))
                .unwrap_err()
                .code,
            "invalid"
        );
        assert_eq!(
            n(FieldType::Url, json!("https://a b")).unwrap_err().code,
            "invalid"
        );
        assert_eq!(n(FieldType::Text, json!("  hi ")), Ok(Some(json!("hi"))));
        assert_eq!(n(FieldType::Text, json!("")), Ok(None));
        assert_eq!(
            n(FieldType::Text, json!({"a": 1})).unwrap_err().code,
            "not_text"
        );
        assert_eq!(
            n(FieldType::Text, json!("x".repeat(MAX_TEXT + 1)))
                .unwrap_err()
                .code,
            "too_long"
        );
    }

    #[test]
    fn filled_and_display() {
        let e = enums();
        assert!(!is_filled(None));
        assert!(!is_filled(Some(&json!(""))));
        assert!(is_filled(Some(&json!([7]))));
        assert_eq!(
            display(FieldType::Multiselect, &e, &json!([7, 9])),
            "Retail, Wholesale"
        );
        assert_eq!(display(FieldType::Select, &e, &json!(9)), "Wholesale");
        for t in FieldType::ALL {
            assert_eq!(FieldType::parse(t.as_str()), Some(t));
        }
    }
}
