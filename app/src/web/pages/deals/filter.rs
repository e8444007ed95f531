//! The deal filter as a query string: what the filter bar sends, what saved filters keep, and
//! what the board, the list and the move endpoint read back.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use deals_api::{DealFilter, FieldId, PipelineId, StageId, TagId};
use kernel::{AppError, FieldError, UserId};

/// Query-string pairs that make up a filter (others, such as `sort`, are left alone).
pub const KEYS: &[&str] = &[
    "q",
    "responsible",
    "tag",
    "created_from",
    "created_to",
    "updated_from",
    "updated_to",
    "closed_from",
    "closed_to",
    "stage",
    "visited",
    "source",
];

pub fn is_filter_key(k: &str) -> bool {
    KEYS.contains(&k) || k.starts_with("cf_")
}

/// The filter part of a query, re-encoded (empty values dropped), for links and saved filters.
pub fn canonical(pairs: &[(String, String)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, v)| is_filter_key(k) && !v.trim().is_empty())
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

fn bad(field: &str, code: &str, message: &str) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

fn day(field: &str, v: &str, errors: &mut Vec<FieldError>) -> Option<chrono::DateTime<Utc>> {
    match NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d") {
        Ok(d) => Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)),
        Err(_) => {
            errors.push(bad(field, "invalid", "a date, YYYY-MM-DD"));
            None
        }
    }
}

fn id(field: &str, v: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    match v.trim().parse::<i64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            errors.push(bad(field, "invalid", "an id"));
            None
        }
    }
}

/// Reads a filter from query pairs; a bad value is a validation error naming the parameter.
pub fn parse(pairs: &[(String, String)]) -> Result<DealFilter, AppError> {
    let mut f = DealFilter::default();
    let mut errors = Vec::new();
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "q" => f.query = Some(v.chars().take(200).collect()),
            "responsible" => f.responsible.extend(id(k, v, &mut errors).map(UserId)),
            "tag" => f.tags.extend(id(k, v, &mut errors).map(TagId)),
            "stage" => f.stages.extend(id(k, v, &mut errors).map(StageId)),
            "visited" => f.visited.extend(id(k, v, &mut errors).map(StageId)),
            "pipeline" => f.pipeline_id = id(k, v, &mut errors).map(PipelineId),
            "created_from" => f.created_from = day(k, v, &mut errors),
            // "to" days are inclusive.
            "created_to" => f.created_to = day(k, v, &mut errors).map(|d| d + Duration::days(1)),
            "updated_from" => f.updated_from = day(k, v, &mut errors),
            "updated_to" => f.updated_to = day(k, v, &mut errors).map(|d| d + Duration::days(1)),
            "closed_from" => f.closed_from = day(k, v, &mut errors),
            "closed_to" => f.closed_to = day(k, v, &mut errors).map(|d| d + Duration::days(1)),
            other => {
                if let Some(field) = other
                    .strip_prefix("cf_")
                    .and_then(|field| id(k, field, &mut errors))
                {
                    f.fields
                        .push((FieldId(field), serde_json::Value::String(v.to_string())));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(f)
    } else {
        Err(AppError::from_fields(errors))
    }
}

/// Narrows `f` to the deals that came in through the `source` channel, if one is asked for
/// (analytics knows each incoming lead's channel; the deals module does not).
pub async fn with_source(
    state: &crate::state::AppState,
    caller: kernel::Caller,
    pairs: &[(String, String)],
    f: &mut DealFilter,
) -> Result<(), AppError> {
    let source = get(pairs, "source").trim();
    if source.is_empty() {
        return Ok(());
    }
    let ids = state
        .modules
        .analytics
        .deals_of_source(caller, source)
        .await?;
    // No deal from that channel: an id no deal has, so that the list is empty (an empty
    // list of ids means "any").
    f.ids = if ids.is_empty() {
        vec![deals_api::DealId(0)]
    } else {
        ids.into_iter().map(deals_api::DealId).collect()
    };
    Ok(())
}

/// The value of `key` in the pairs (the first one).
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Whether `key=value` is among the pairs (for multi-selects).
pub fn has(pairs: &[(String, String)], key: &str, value: &str) -> bool {
    pairs.iter().any(|(k, v)| k == key && v == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(s).unwrap()
    }

    #[test]
    fn a_filter_reads_from_and_back_to_a_query() {
        let p = pairs(
            "q=acme&responsible=3&responsible=4&tag=9&created_to=2026-01-31&cf_12=7&sort=name&x=",
        );
        let f = parse(&p).unwrap();
        assert_eq!(f.query.as_deref(), Some("acme"));
        assert_eq!(f.responsible, vec![UserId(3), UserId(4)]);
        assert_eq!(f.tags, vec![TagId(9)]);
        assert_eq!(
            f.created_to.unwrap().to_rfc3339(),
            "2026-02-01T00:00:00+00:00"
        );
        assert_eq!(f.fields, vec![(FieldId(12), serde_json::json!("7"))]);
        assert_eq!(
            canonical(&p),
            "q=acme&responsible=3&responsible=4&tag=9&created_to=2026-01-31&cf_12=7"
        );
        let err = parse(&pairs("created_from=yesterday&tag=x")).unwrap_err();
        assert_eq!(err.fields.len(), 2);
    }
}
