//! The dry run: reads the whole amoCRM account (politely, see [`crate::amo`]), counts what an
//! import would bring over and lists what it could not bring as it is, with the reason. Nothing is
//! written anywhere.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::Value;

use crate::amo::{AmoClient, AmoError, Traffic};

/// Something the import cannot bring over as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// amoCRM's entity (`users`, `leads/custom_fields`, …).
    pub entity: String,
    pub id: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// The account's name and id, as amoCRM gives them.
    pub account: Option<(String, i64)>,
    /// Items per entity, in reading order.
    pub counts: Vec<(String, usize)>,
    pub problems: Vec<Problem>,
    pub traffic: Traffic,
    pub seconds: f64,
}

/// What a custom field of amoCRM's `type` (and `code`) becomes in Voronka: one of its field
/// types, the contact's own phones or e-mails, or nothing.
pub fn counterpart(field_type: &str, code: Option<&str>) -> Option<&'static str> {
    Some(match field_type {
        "text" => "text",
        "textarea" | "streetaddress" => "textarea",
        "numeric" | "price" | "monetary" => "numeric",
        "checkbox" => "checkbox",
        "select" | "radiobutton" | "category" => "select",
        "multiselect" => "multiselect",
        "date" | "birthday" => "date",
        "date_time" => "datetime",
        "url" => "url",
        "multitext" => match code {
            Some("PHONE") => "phones",
            Some("EMAIL") => "emails",
            _ => "textarea",
        },
        _ => return None,
    })
}

const RECORDS: [&str; 3] = ["leads", "contacts", "companies"];

fn id_of(v: &Value) -> i64 {
    v.get("id").and_then(Value::as_i64).unwrap_or(0)
}

/// Reads everything an import would read, and says what it would do.
pub async fn survey(client: &AmoClient) -> Result<Survey, AmoError> {
    let started = Instant::now();
    let mut s = Survey::default();
    if let Some(a) = client.get("/api/v4/account", &[]).await? {
        s.account = Some((
            a.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            id_of(&a),
        ));
    }

    let mut users = 0;
    client
        .each_page("/api/v4/users", "users", &[], 1, |_, items| {
            users += items.len();
            for u in &items {
                let email = u.get("email").and_then(Value::as_str).unwrap_or("").trim();
                if email.is_empty() {
                    s.problems.push(Problem {
                        entity: "users".into(),
                        id: id_of(u),
                        reason: format!(
                            "{:?} has no e-mail: it becomes an inactive user that cannot sign in until an e-mail is set",
                            u.get("name").and_then(Value::as_str).unwrap_or("")
                        ),
                    });
                }
            }
            async { Ok(()) }
        })
        .await?;
    s.counts.push(("users".into(), users));

    let (mut pipelines, mut statuses) = (0, 0);
    client
        .each_page(
            "/api/v4/leads/pipelines",
            "pipelines",
            &[],
            1,
            |_, items| {
                pipelines += items.len();
                statuses += items
                    .iter()
                    .filter_map(|p| p.pointer("/_embedded/statuses").and_then(Value::as_array))
                    .map(Vec::len)
                    .sum::<usize>();
                async { Ok(()) }
            },
        )
        .await?;
    s.counts.push(("pipelines".into(), pipelines));
    s.counts.push(("statuses".into(), statuses));

    let reasons = client
        .count("/api/v4/leads/loss_reasons", "loss_reasons")
        .await?;
    s.counts.push(("loss reasons".into(), reasons));

    // Fields first: the records' values are checked against them.
    let mut unsupported: HashMap<i64, (String, String)> = HashMap::new();
    for e in RECORDS {
        let path = format!("/api/v4/{e}/custom_fields");
        let entity = format!("{e}/custom_fields");
        let n = client
            .each_page(&path, "custom_fields", &[], 1, |_, items| {
                for f in &items {
                    let t = f.get("type").and_then(Value::as_str).unwrap_or("");
                    let code = f.get("code").and_then(Value::as_str);
                    if counterpart(t, code).is_none() {
                        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
                        unsupported.insert(id_of(f), (name.to_string(), t.to_string()));
                        s.problems.push(Problem {
                            entity: entity.clone(),
                            id: id_of(f),
                            reason: format!(
                                "field {name:?} is of type {t:?}, which Voronka has no counterpart for: neither it nor its values are imported"
                            ),
                        });
                    }
                }
                async { Ok(()) }
            })
            .await?;
        s.counts.push((entity, n));
        let groups = client
            .count(
                &format!("/api/v4/{e}/custom_fields/groups"),
                "custom_field_groups",
            )
            .await?;
        s.counts.push((format!("{e}/custom_field_groups"), groups));
        let tags = client.count(&format!("/api/v4/{e}/tags"), "tags").await?;
        s.counts.push((format!("{e}/tags"), tags));
    }

    // The records, in the order an import writes them (companies before the contacts that
    // belong to them, both before the leads that link them).
    let mut dropped: BTreeMap<i64, usize> = BTreeMap::new();
    for e in ["companies", "contacts", "leads"] {
        let with: Vec<(&str, String)> = if e == "leads" {
            vec![("with", "contacts".to_string())]
        } else {
            Vec::new()
        };
        let n = client
            .each_page(&format!("/api/v4/{e}"), e, &with, 1, |_, items| {
                for r in &items {
                    for v in r
                        .get("custom_fields_values")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let field = v.get("field_id").and_then(Value::as_i64).unwrap_or(0);
                        if unsupported.contains_key(&field) {
                            *dropped.entry(field).or_default() += 1;
                        }
                    }
                }
                async { Ok(()) }
            })
            .await?;
        s.counts.push((e.into(), n));
    }
    for (field, n) in dropped {
        let (name, t) = &unsupported[&field];
        s.problems.push(Problem {
            entity: "values".into(),
            id: field,
            reason: format!("{n} value(s) of field {name:?} ({t}) are left behind"),
        });
    }

    for e in RECORDS {
        let n = client.count(&format!("/api/v4/{e}/notes"), "notes").await?;
        s.counts.push((format!("{e}/notes"), n));
    }
    let tasks = client.count("/api/v4/tasks", "tasks").await?;
    s.counts.push(("tasks".into(), tasks));
    let events = client.count("/api/v4/events", "events").await?;
    s.counts.push(("events".into(), events));

    s.traffic = client.traffic();
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

impl Survey {
    /// The report as printed by `voronka import amocrm --dry-run`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if let Some((name, id)) = &self.account {
            out.push_str(&format!("amoCRM account {name:?} (id {id})\n"));
        }
        out.push_str("would import:\n");
        for (entity, n) in &self.counts {
            out.push_str(&format!("  {entity:<32} {n:>9}\n"));
        }
        if self.problems.is_empty() {
            out.push_str("problems: none\n");
        } else {
            out.push_str(&format!("problems ({}):\n", self.problems.len()));
            for p in &self.problems {
                out.push_str(&format!("  {} {}: {}\n", p.entity, p.id, p.reason));
            }
        }
        let t = self.traffic;
        out.push_str(&format!(
            "read with {} requests in {:.1} s ({:.1}/s; throttled {} times, {} retries)\n",
            t.requests,
            self.seconds,
            t.requests as f64 / self.seconds.max(0.001),
            t.throttled,
            t.retried
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::counterpart;

    #[test]
    fn field_types_map_to_ours_or_to_nothing() {
        assert_eq!(counterpart("select", None), Some("select"));
        assert_eq!(counterpart("date_time", None), Some("datetime"));
        assert_eq!(counterpart("multitext", Some("PHONE")), Some("phones"));
        assert_eq!(counterpart("multitext", Some("EMAIL")), Some("emails"));
        assert_eq!(counterpart("legal_entity", None), None);
        assert_eq!(counterpart("items", None), None);
    }
}
