//! The providers' protocols: sending a message (Telegram sendMessage, WhatsApp Cloud API, the
//! Instagram Send API) with each answer classified as sent, retry later, or failed for good;
//! and reading their webhook bodies into messages and delivery statuses.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use messaging_api::{MessageStatus, Provider, TemplateSend};
use serde_json::{Value, json};

/// Where and how to reach a channel's provider.
pub struct Endpoint<'a> {
    pub provider: Provider,
    pub base_url: &'a str,
    pub api_version: &'a str,
    /// WhatsApp's phone number id, Instagram's account id.
    pub external_id: &'a str,
    pub token: &'a str,
}

pub struct Outgoing<'a> {
    /// Telegram's chat id, WhatsApp's wa_id, Instagram's IGSID.
    pub chat: &'a str,
    pub text: &'a str,
    pub template: Option<&'a TemplateSend>,
    pub buttons: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted: the provider's message id.
    Sent(String),
    /// Not sent now; try again after this long (`None`: the sender's backoff).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Never going to work as it is; `channel` when the channel's credentials are at fault.
    Failed { reason: String, channel: bool },
}

fn url(e: &Endpoint<'_>, path: &str) -> String {
    format!("{}{path}", e.base_url.trim_end_matches('/'))
}

/// Telegram's getMe: the bot's username when the token is good.
pub async fn telegram_me(
    http: &reqwest::Client,
    base_url: &str,
    token: &str,
) -> Result<String, String> {
    let res = http
        .get(format!(
            "{}/bot{token}/getMe",
            base_url.trim_end_matches('/')
        ))
        .send()
        .await
        .map_err(|e| format!("Telegram cannot be reached: {e}"))?;
    let body: Value = res
        .json()
        .await
        .map_err(|e| format!("Telegram's answer is not JSON: {e}"))?;
    if body["ok"].as_bool() != Some(true) {
        return Err(format!(
            "Telegram refused the token: {}",
            body["description"].as_str().unwrap_or("no reason given")
        ));
    }
    Ok(body["result"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Meta's Graph API: the phone number (WhatsApp) or account (Instagram) as the token sees it;
/// a name to show when the token is good.
pub async fn meta_object(
    http: &reqwest::Client,
    base_url: &str,
    version: &str,
    id: &str,
    token: &str,
) -> Result<String, String> {
    let res = http
        .get(format!("{}/{version}/{id}", base_url.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("the Graph API cannot be reached: {e}"))?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        return Err(format!(
            "the Graph API refused the token or the id: {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        ));
    }
    Ok(body["verified_name"]
        .as_str()
        .or(body["username"].as_str())
        .or(body["name"].as_str())
        .unwrap_or_default()
        .to_string())
}

/// Telegram's setWebhook with a secret token.
pub async fn telegram_set_webhook(
    http: &reqwest::Client,
    base_url: &str,
    token: &str,
    webhook: &str,
    secret: &str,
) -> Result<(), String> {
    let res = http
        .post(format!(
            "{}/bot{token}/setWebhook",
            base_url.trim_end_matches('/')
        ))
        .json(&json!({
            "url": webhook,
            "secret_token": secret,
            "allowed_updates": ["message", "edited_message", "my_chat_member"],
        }))
        .send()
        .await
        .map_err(|e| format!("Telegram cannot be reached: {e}"))?;
    let body: Value = res
        .json()
        .await
        .map_err(|e| format!("Telegram's answer is not JSON: {e}"))?;
    if body["ok"].as_bool() != Some(true) {
        return Err(format!(
            "Telegram did not set the webhook: {}",
            body["description"].as_str().unwrap_or("no reason given")
        ));
    }
    Ok(())
}

pub async fn send(http: &reqwest::Client, e: &Endpoint<'_>, m: &Outgoing<'_>) -> SendOutcome {
    let request = match e.provider {
        Provider::Telegram => {
            let chat: Value = m
                .chat
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(json!(m.chat));
            let mut body = json!({"chat_id": chat, "text": m.text});
            if !m.buttons.is_empty() {
                body["reply_markup"] = json!({
                    "keyboard": m.buttons.iter().map(|b| vec![json!({"text": b})]).collect::<Vec<_>>(),
                    "one_time_keyboard": true,
                    "resize_keyboard": true,
                });
            }
            http.post(url(e, &format!("/bot{}/sendMessage", e.token)))
                .json(&body)
        }
        Provider::Whatsapp => {
            let body = match (m.template, m.buttons.is_empty()) {
                (Some(t), _) => {
                    let mut template = json!({"name": t.name, "language": {"code": t.language}});
                    if !t.params.is_empty() {
                        template["components"] = json!([{
                            "type": "body",
                            "parameters": t.params.iter().map(|p| json!({"type": "text", "text": p})).collect::<Vec<_>>(),
                        }]);
                    }
                    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": m.chat, "type": "template", "template": template})
                }
                (None, true) => json!({
                    "messaging_product": "whatsapp", "recipient_type": "individual", "to": m.chat,
                    "type": "text", "text": {"preview_url": false, "body": m.text},
                }),
                // Reply buttons: at most three, titles up to 20 characters.
                (None, false) => json!({
                    "messaging_product": "whatsapp", "recipient_type": "individual", "to": m.chat,
                    "type": "interactive",
                    "interactive": {
                        "type": "button",
                        "body": {"text": m.text},
                        "action": {"buttons": m.buttons.iter().take(3).enumerate().map(|(i, b)| json!({
                            "type": "reply", "reply": {"id": format!("b{i}"), "title": b.chars().take(20).collect::<String>()}
                        })).collect::<Vec<_>>()},
                    },
                }),
            };
            http.post(url(
                e,
                &format!("/{}/{}/messages", e.api_version, e.external_id),
            ))
            .bearer_auth(e.token)
            .json(&body)
        }
        Provider::Instagram => {
            let mut message = json!({"text": m.text});
            if !m.buttons.is_empty() {
                message["quick_replies"] = m
                    .buttons
                    .iter()
                    .take(13)
                    .map(|b| json!({"content_type": "text", "title": b, "payload": b}))
                    .collect::<Vec<_>>()
                    .into();
            }
            http.post(url(
                e,
                &format!("/{}/{}/messages", e.api_version, e.external_id),
            ))
            .bearer_auth(e.token)
            .json(&json!({"recipient": {"id": m.chat}, "message": message}))
        }
    };
    let res = match request.send().await {
        Ok(r) => r,
        Err(err) => {
            return SendOutcome::Retry {
                after: None,
                reason: format!("{} cannot be reached: {err}", e.provider.as_str()),
            };
        }
    };
    let status = res.status().as_u16();
    let header_wait = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: Value = res.json().await.unwrap_or(Value::Null);
    match e.provider {
        Provider::Telegram => telegram_outcome(status, &body, m.chat),
        _ => meta_outcome(e.provider, status, &body, header_wait),
    }
}

fn telegram_outcome(status: u16, body: &Value, chat: &str) -> SendOutcome {
    if body["ok"].as_bool() == Some(true) {
        return match body["result"]["message_id"].as_i64() {
            Some(id) => SendOutcome::Sent(format!("{chat}:{id}")),
            None => SendOutcome::Failed {
                reason: "Telegram accepted the message without an id".into(),
                channel: false,
            },
        };
    }
    let code = body["error_code"]
        .as_u64()
        .map(|c| c as u16)
        .unwrap_or(status);
    let description = body["description"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}"));
    let reason = format!("{code}, {description}");
    match code {
        429 => SendOutcome::Retry {
            after: Some(Duration::from_secs(
                body["parameters"]["retry_after"].as_u64().unwrap_or(1),
            )),
            reason,
        },
        401 | 404 => SendOutcome::Failed {
            reason,
            channel: true,
        },
        c if c >= 500 => SendOutcome::Retry {
            after: None,
            reason,
        },
        _ => SendOutcome::Failed {
            reason,
            channel: false,
        },
    }
}

fn meta_outcome(
    provider: Provider,
    status: u16,
    body: &Value,
    header_wait: Option<Duration>,
) -> SendOutcome {
    if (200..300).contains(&status) {
        let id = match provider {
            Provider::Whatsapp => body["messages"][0]["id"].as_str(),
            _ => body["message_id"].as_str(),
        };
        return match id {
            Some(id) => SendOutcome::Sent(id.to_string()),
            None => SendOutcome::Failed {
                reason: format!("{} accepted the message without an id", provider.as_str()),
                channel: false,
            },
        };
    }
    let error = &body["error"];
    let code = error["code"].as_i64().unwrap_or(0);
    let message = error["error_data"]["details"]
        .as_str()
        .or(error["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}"));
    let reason = format!("{code}: {message}");
    match code {
        // Throughput and rate limits, and temporary errors.
        1 | 2 | 4 | 80007 | 130429 | 131056 | 131057 => SendOutcome::Retry {
            after: header_wait,
            reason,
        },
        190 => SendOutcome::Failed {
            reason,
            channel: true,
        },
        _ if status == 429 || status >= 500 => SendOutcome::Retry {
            after: header_wait,
            reason,
        },
        _ if status == 401 => SendOutcome::Failed {
            reason,
            channel: true,
        },
        _ => SendOutcome::Failed {
            reason,
            channel: false,
        },
    }
}

/// Something a webhook body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    Message(InMessage),
    Status {
        external_id: String,
        status: MessageStatus,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMessage {
    /// The chat the reply goes to.
    pub chat: String,
    pub user: String,
    pub name: String,
    pub username: String,
    /// In international form without `+` (WhatsApp).
    pub phone: String,
    /// Unique per channel.
    pub external_id: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// The key a delivery is stored under once: Telegram's `update_id` (with the body's hash, as
/// Telegram starts its ids again at a random number after a quiet week), else the body's hash.
pub fn dedup_key(provider: Provider, body: &Value, raw: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let hash = crate::crypto::hex(&Sha256::digest(raw));
    match provider {
        Provider::Telegram => body["update_id"]
            .as_i64()
            .map(|u| format!("u{u}-{}", hash.get(..16).unwrap_or_default())),
        _ => Some(format!("h{hash}")),
    }
}

/// Whether a body has the provider's shape at all (else it is refused with 400, stored nowhere).
pub fn well_formed(provider: Provider, body: &Value) -> bool {
    match provider {
        Provider::Telegram => body["update_id"].is_i64(),
        Provider::Whatsapp => {
            body["object"] == "whatsapp_business_account" && body["entry"].is_array()
        }
        Provider::Instagram => {
            matches!(body["object"].as_str(), Some("instagram" | "page"))
                && body["entry"].is_array()
        }
    }
}

fn secs(v: &Value) -> DateTime<Utc> {
    let n = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    if n <= 0 {
        return Utc::now();
    }
    // Instagram counts milliseconds.
    let n = if n > 100_000_000_000 { n / 1000 } else { n };
    Utc.timestamp_opt(n, 0).single().unwrap_or_else(Utc::now)
}

fn attachment_text(kind: &str) -> String {
    format!("[{kind}]")
}

/// What the body says; `external_id` is the channel's own (WhatsApp's phone number id,
/// Instagram's account id): entries for other numbers or accounts are left out.
pub fn read(provider: Provider, body: &Value, external_id: &str) -> Vec<Happening> {
    match provider {
        Provider::Telegram => read_telegram(body),
        Provider::Whatsapp => read_whatsapp(body, external_id),
        Provider::Instagram => read_instagram(body, external_id),
    }
}

fn read_telegram(body: &Value) -> Vec<Happening> {
    // Edited messages, channel posts, button callbacks and membership changes are not chat
    // messages from a client.
    let m = &body["message"];
    if !m.is_object() || m["chat"]["type"].as_str().unwrap_or("private") != "private" {
        return Vec::new();
    }
    let (Some(chat), Some(message_id)) = (m["chat"]["id"].as_i64(), m["message_id"].as_i64())
    else {
        return Vec::new();
    };
    let from = if m["from"].is_object() {
        &m["from"]
    } else {
        &m["chat"]
    };
    let name = [from["first_name"].as_str(), from["last_name"].as_str()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let text = m["text"]
        .as_str()
        .or(m["caption"].as_str())
        .map(str::to_string)
        .or_else(|| {
            [
                "photo", "document", "voice", "audio", "video", "sticker", "contact", "location",
            ]
            .into_iter()
            .find(|k| !m[*k].is_null())
            .map(attachment_text)
        })
        .unwrap_or_default();
    let phone = m["contact"]["phone_number"]
        .as_str()
        .filter(|_| m["contact"]["user_id"].as_i64() == from["id"].as_i64())
        .map(|p| p.trim_start_matches('+').to_string())
        .unwrap_or_default();
    vec![Happening::Message(InMessage {
        chat: chat.to_string(),
        user: from["id"].as_i64().unwrap_or(chat).to_string(),
        name,
        username: from["username"].as_str().unwrap_or_default().to_string(),
        phone,
        external_id: format!("{chat}:{message_id}"),
        text,
        at: secs(&m["date"]),
    })]
}

fn read_whatsapp(body: &Value, phone_number_id: &str) -> Vec<Happening> {
    let mut out = Vec::new();
    for entry in body["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let v = &change["value"];
            let own = v["metadata"]["phone_number_id"]
                .as_str()
                .unwrap_or_default();
            if !phone_number_id.is_empty() && !own.is_empty() && own != phone_number_id {
                continue;
            }
            let names: Vec<(&str, &str)> = v["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((
                        c["wa_id"].as_str()?,
                        c["profile"]["name"].as_str().unwrap_or(""),
                    ))
                })
                .collect();
            for m in v["messages"].as_array().into_iter().flatten() {
                let (Some(from), Some(id)) = (m["from"].as_str(), m["id"].as_str()) else {
                    continue;
                };
                let kind = m["type"].as_str().unwrap_or("text");
                if matches!(
                    kind,
                    "reaction" | "ephemeral" | "unsupported" | "request_welcome" | "system"
                ) {
                    continue;
                }
                let text = match kind {
                    "text" => m["text"]["body"].as_str().unwrap_or_default().to_string(),
                    "button" => m["button"]["text"].as_str().unwrap_or_default().to_string(),
                    "interactive" => m["interactive"]["button_reply"]["title"]
                        .as_str()
                        .or(m["interactive"]["list_reply"]["title"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    other => m[other]["caption"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| attachment_text(other)),
                };
                let name = names
                    .iter()
                    .find(|(w, _)| *w == from)
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_default();
                out.push(Happening::Message(InMessage {
                    chat: from.to_string(),
                    user: from.to_string(),
                    name,
                    username: String::new(),
                    phone: from.to_string(),
                    external_id: id.to_string(),
                    text,
                    at: secs(&m["timestamp"]),
                }));
            }
            for s in v["statuses"].as_array().into_iter().flatten() {
                let (Some(id), Some(status)) = (s["id"].as_str(), s["status"].as_str()) else {
                    continue;
                };
                let status = match status {
                    "sent" => MessageStatus::Sent,
                    "delivered" => MessageStatus::Delivered,
                    "read" => MessageStatus::Read,
                    "failed" => MessageStatus::Failed,
                    _ => continue,
                };
                let error = s["errors"][0].as_object().map(|e| {
                    format!(
                        "{}: {}",
                        e.get("code").and_then(Value::as_i64).unwrap_or(0),
                        e.get("error_data")
                            .and_then(|d| d["details"].as_str())
                            .or(e.get("title").and_then(Value::as_str))
                            .unwrap_or("failed")
                    )
                });
                out.push(Happening::Status {
                    external_id: id.to_string(),
                    status,
                    error,
                });
            }
        }
    }
    out
}

fn read_instagram(body: &Value, account: &str) -> Vec<Happening> {
    let mut out = Vec::new();
    for entry in body["entry"].as_array().into_iter().flatten() {
        // Real messages come as `messaging[]`; the dashboard's test button sends `changes[]`.
        let events = entry["messaging"]
            .as_array()
            .into_iter()
            .flatten()
            .cloned()
            .chain(
                entry["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["field"] == "messages")
                    .map(|c| c["value"].clone()),
            );
        for ev in events {
            let sender = ev["sender"]["id"].as_str().unwrap_or_default();
            let recipient = ev["recipient"]["id"].as_str().unwrap_or_default();
            if !account.is_empty()
                && !recipient.is_empty()
                && recipient != account
                && sender != account
            {
                continue;
            }
            if let Some(mid) = ev["read"]["mid"].as_str() {
                out.push(Happening::Status {
                    external_id: mid.to_string(),
                    status: MessageStatus::Read,
                    error: None,
                });
                continue;
            }
            let m = &ev["message"];
            let Some(mid) = m["mid"].as_str() else {
                continue;
            };
            // Our own messages echoed back, deleted and unsupported ones are not the client's.
            if m["is_echo"].as_bool() == Some(true)
                || m["is_deleted"].as_bool() == Some(true)
                || m["is_unsupported"].as_bool() == Some(true)
                || sender.is_empty()
            {
                continue;
            }
            let text = m["text"]
                .as_str()
                .map(str::to_string)
                .or_else(|| m["attachments"][0]["type"].as_str().map(attachment_text))
                .unwrap_or_default();
            out.push(Happening::Message(InMessage {
                chat: sender.to_string(),
                user: sender.to_string(),
                name: String::new(),
                username: String::new(),
                phone: String::new(),
                external_id: mid.to_string(),
                text,
                at: secs(&ev["timestamp"]),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_telegram_sample_update_is_one_message() {
        let body: Value = serde_json::from_str(r#"{"update_id":10000,"message":{"date":1441645532,"chat":{"last_name":"Test Lastname","id":1111111,"type": "private","first_name":"Test Firstname","username":"Testusername"},"message_id":1365,"from":{"last_name":"Test Lastname","id":1111111,"first_name":"Test Firstname","username":"Testusername"},"text":"/start"}}"#).unwrap();
        assert!(well_formed(Provider::Telegram, &body));
        // The update id, with the body's hash (empty here) against Telegram's id resets.
        assert_eq!(
            dedup_key(Provider::Telegram, &body, b"").as_deref(),
            Some("u10000-e3b0c44298fc1c14")
        );
        let Happening::Message(m) = &read(Provider::Telegram, &body, "")[0] else {
            panic!()
        };
        assert_eq!(m.chat, "1111111");
        assert_eq!(m.name, "Test Firstname Test Lastname");
        assert_eq!(m.username, "Testusername");
        assert_eq!(m.external_id, "1111111:1365");
        assert_eq!(m.text, "/start");
        assert_eq!(m.at.timestamp(), 1441645532);
    }

    #[test]
    fn whatsapp_messages_and_statuses() {
        let body: Value = serde_json::from_str(r#"{"object":"whatsapp_business_account","entry":[{"id":"0","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"16505551111","phone_number_id":"123456123"},"contacts":[{"profile":{"name":"test user name"},"wa_id":"16315551181"}],"messages":[{"from":"16315551181","id":"ABGGFlA5Fpa","timestamp":"1504902988","type":"text","text":{"body":"this is a text message"}}]}}]}]}"#).unwrap();
        let Happening::Message(m) = &read(Provider::Whatsapp, &body, "123456123")[0] else {
            panic!()
        };
        assert_eq!(
            (m.chat.as_str(), m.phone.as_str(), m.name.as_str()),
            ("16315551181", "16315551181", "test user name")
        );
        assert!(read(Provider::Whatsapp, &body, "999").is_empty());
        let status: Value = serde_json::from_str(r#"{"object":"whatsapp_business_account","entry":[{"id":"122951744235903","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550984277","phone_number_id":"114896151713920"},"statuses":[{"id":"wamid.X","status":"delivered","timestamp":"1694492484","recipient_id":"60173526233"}]},"field":"messages"}]}]}"#).unwrap();
        assert_eq!(
            read(Provider::Whatsapp, &status, "114896151713920"),
            vec![Happening::Status {
                external_id: "wamid.X".into(),
                status: MessageStatus::Delivered,
                error: None
            }]
        );
    }

    #[test]
    fn instagram_messages_skip_echoes() {
        let body: Value = serde_json::from_str(r#"{"object":"instagram","entry":[{"id":"17841400000000000","time":1569262486134,"messaging":[{"sender":{"id":"1234567890123456"},"recipient":{"id":"17841400000000000"},"timestamp":1569262485349,"message":{"mid":"aWdf","text":"This is the first message from the customer"}},{"sender":{"id":"17841400000000000"},"recipient":{"id":"1234567890123456"},"timestamp":1569262485349,"message":{"mid":"echo1","text":"hi","is_echo":true}}]}]}"#).unwrap();
        let got = read(Provider::Instagram, &body, "17841400000000000");
        assert_eq!(got.len(), 1);
        let Happening::Message(m) = &got[0] else {
            panic!()
        };
        assert_eq!(m.at.timestamp(), 1569262485);
        assert_eq!(m.external_id, "aWdf");
    }

    #[test]
    fn answers_are_classified() {
        let t = |s, b: &str| telegram_outcome(s, &serde_json::from_str(b).unwrap(), "5");
        assert_eq!(
            t(200, r#"{"ok":true,"result":{"message_id":42}}"#),
            SendOutcome::Sent("5:42".into())
        );
        assert_eq!(
            t(
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#
            ),
            SendOutcome::Retry {
                after: Some(Duration::from_secs(5)),
                reason: "429, Too Many Requests: retry after 5".into()
            }
        );
        assert!(matches!(
            t(
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#
            ),
            SendOutcome::Failed { channel: false, .. }
        ));
        assert!(matches!(
            t(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            SendOutcome::Failed { channel: true, .. }
        ));
        let m = |s, b: &str| {
            meta_outcome(
                Provider::Whatsapp,
                s,
                &serde_json::from_str(b).unwrap(),
                None,
            )
        };
        assert!(matches!(
            m(
                400,
                r#"{"error":{"code":130429,"message":"(#130429) Rate limit hit"}}"#
            ),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            m(
                400,
                r#"{"error":{"code":131047,"message":"Re-engagement message"}}"#
            ),
            SendOutcome::Failed { channel: false, .. }
        ));
        assert!(matches!(
            m(401, r#"{"error":{"code":190,"message":"token"}}"#),
            SendOutcome::Failed { channel: true, .. }
        ));
        assert_eq!(
            m(200, r#"{"messages":[{"id":"wamid.1"}]}"#),
            SendOutcome::Sent("wamid.1".into())
        );
    }
}
