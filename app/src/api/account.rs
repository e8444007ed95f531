//! `GET /api/v4/account`: the token's account, in amoCRM v4's shape.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiAuth, ApiError, HAL_JSON, base_url};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AccountQuery {
    with: Option<String>,
}

pub async fn get(
    req: HttpRequest,
    auth: ApiAuth,
    state: web::Data<AppState>,
    q: web::Query<AccountQuery>,
) -> Result<HttpResponse, ApiError> {
    let accounts = &state.modules.accounts;
    let account = accounts.account(auth.0.account_id).await?;
    let with: Vec<&str> = q
        .with
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let currency: kernel::money::Currency = account
        .currency
        .parse()
        .unwrap_or(kernel::money::Currency::RUB);
    let mut body = json!({
        "id": account.id,
        "name": account.name,
        "subdomain": account.subdomain,
        "created_at": account.created_at.timestamp(),
        "created_by": 0,
        "updated_at": account.updated_at.timestamp(),
        "updated_by": 0,
        "current_user_id": auth.0.user_id,
        "country": account.country,
        "currency": currency.code(),
        "currency_symbol": currency.symbol(),
        "customers_mode": "disabled",
        "is_unsorted_on": true,
        "mobile_feature_version": 0,
        "is_loss_reason_enabled": true,
        "is_helpbot_enabled": false,
        "is_technical_account": false,
        "contact_name_display_order": 1,
        "_links": { "self": { "href": format!("{}/api/v4/account", base_url(&req)) } },
    });
    let mut embedded = serde_json::Map::new();
    for w in with {
        match w {
            "uuid" => body["uuid"] = json!(account.uuid),
            "version" => body["version"] = json!(env!("CARGO_PKG_VERSION")),
            "users_groups" => {
                let groups = accounts.list_groups(auth.caller()).await?;
                let list: Vec<Value> = groups
                    .into_iter()
                    .map(|g| json!({"id": g.id, "name": g.name, "uuid": Value::Null}))
                    .collect();
                embedded.insert("users_groups".into(), Value::Array(list));
            }
            "datetime_settings" => {
                let user = accounts.user(auth.caller(), auth.0.user_id).await?;
                embedded.insert(
                    "datetime_settings".into(),
                    json!({
                        "date_pattern": "d.m.Y H:i",
                        "short_date_pattern": "d.m.Y",
                        "short_time_pattern": "H:i",
                        "date_format": "d.m.Y",
                        "time_format": "H:i:s",
                        "timezone": user.time_zone,
                    }),
                );
            }
            "task_types" => {
                let types = state.modules.activities.task_types(auth.caller()).await?;
                let list: Vec<Value> = types
                    .into_iter()
                    .map(|t| {
                        let code = match t.id.0 {
                            1 => json!("FOLLOW_UP"),
                            2 => json!("MEETING"),
                            3 => json!("CALL"),
                            _ => Value::Null,
                        };
                        json!({"id": t.id.0, "name": t.name, "color": Value::Null, "icon_id": Value::Null, "code": code})
                    })
                    .collect();
                embedded.insert("task_types".into(), Value::Array(list));
            }
            // Parts of `with` Voronka has no counterpart for (amojo, drive) are ignored, as
            // amoCRM ignores an unknown value.
            _ => {}
        }
    }
    if !embedded.is_empty() {
        body["_embedded"] = Value::Object(embedded);
    }
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HAL_JSON))
        .body(body.to_string()))
}
