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
    /// The text, or the file's caption.
    pub text: &'a str,
    pub template: Option<&'a TemplateSend>,
    pub buttons: &'a [String],
    pub file: Option<OutFile<'a>>,
}

/// A file sent by link: the provider fetches it from `url`.
pub struct OutFile<'a> {
    pub url: &'a str,
    pub file_name: &'a str,
    pub mime_type: &'a str,
    /// Sent as a picture (the providers take JPEG and PNG pictures up to 5 MB), else as a
    /// document.
    pub as_photo: bool,
}

/// Pictures the providers show as photos: JPEG and PNG up to 5 MB (Telegram's limit for a
/// photo sent by URL, WhatsApp's for an image); anything else goes as a document.
pub fn sendable_as_photo(mime_type: &str, size: usize) -> bool {
    matches!(mime_type, "image/jpeg" | "image/png") && size <= 5 * 1024 * 1024
}

/// A file downloaded from the provider.
#[derive(Debug)]
pub struct Downloaded {
    pub bytes: Vec<u8>,
    pub mime_type: Option<String>,
    /// The provider's own name for it (Telegram's file path), when the message gave none.
    pub file_name: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    /// Worth another try later (network, 429, 5xx).
    Retry(String),
    /// Never going to work (gone, too large, refused).
    Failed(String),
}

fn fetch_status(what: &str, status: u16, detail: &str) -> FetchError {
    let reason = format!("{what}: HTTP {status} {detail}").trim().to_string();
    if status == 429 || status >= 500 {
        FetchError::Retry(reason)
    } else {
        FetchError::Failed(reason)
    }
}

/// Reads a body of at most `max` bytes.
async fn read_limited(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>, FetchError> {
    if res.content_length().is_some_and(|n| n as usize > max) {
        return Err(too_large(max));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| FetchError::Retry(format!("the download broke off: {e}")))?
    {
        if bytes.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn too_large(max: usize) -> FetchError {
    FetchError::Failed(format!("the file is larger than {} MB", max / 1024 / 1024))
}

/// Downloads a client's file: Telegram's getFile then the file path; WhatsApp's media URL (by
/// its id) with the token; Instagram's attachment URL as it is.
pub async fn download(
    http: &reqwest::Client,
    e: &Endpoint<'_>,
    reference: &str,
    max: usize,
) -> Result<Downloaded, FetchError> {
    let unreachable = |err: reqwest::Error| {
        FetchError::Retry(format!("{} cannot be reached: {err}", e.provider.as_str()))
    };
    match e.provider {
        Provider::Telegram => {
            let res = http
                .get(url(e, &format!("/bot{}/getFile", e.token)))
                .query(&[("file_id", reference)])
                .send()
                .await
                .map_err(unreachable)?;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if body["ok"].as_bool() != Some(true) {
                return Err(fetch_status(
                    "Telegram's getFile",
                    status,
                    body["description"].as_str().unwrap_or_default(),
                ));
            }
            if body["result"]["file_size"]
                .as_u64()
                .is_some_and(|n| n as usize > max)
            {
                return Err(too_large(max));
            }
            let Some(path) = body["result"]["file_path"].as_str() else {
                return Err(FetchError::Failed(
                    "Telegram gave no file path (files over 20 MB cannot be downloaded by bots)"
                        .into(),
                ));
            };
            let res = http
                .get(url(e, &format!("/file/bot{}/{path}", e.token)))
                .send()
                .await
                .map_err(unreachable)?;
            let status = res.status().as_u16();
            if !res.status().is_success() {
                return Err(fetch_status("Telegram's file download", status, ""));
            }
            Ok(Downloaded {
                bytes: read_limited(res, max).await?,
                mime_type: None,
                file_name: path.rsplit('/').next().map(str::to_string),
            })
        }
        Provider::Whatsapp => {
            let res = http
                .get(url(e, &format!("/{}/{reference}", e.api_version)))
                .bearer_auth(e.token)
                .send()
                .await
                .map_err(unreachable)?;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let Some(media_url) = body["url"]
                .as_str()
                .filter(|_| (200..300).contains(&status))
            else {
                return Err(fetch_status(
                    "WhatsApp's media lookup",
                    status,
                    body["error"]["message"].as_str().unwrap_or_default(),
                ));
            };
            if body["file_size"]
                .as_u64()
                .or_else(|| body["file_size"].as_str().and_then(|s| s.parse().ok()))
                .is_some_and(|n| n as usize > max)
            {
                return Err(too_large(max));
            }
            let res = http
                .get(media_url)
                .bearer_auth(e.token)
                .send()
                .await
                .map_err(unreachable)?;
            let status = res.status().as_u16();
            if !res.status().is_success() {
                return Err(fetch_status("WhatsApp's media download", status, ""));
            }
            Ok(Downloaded {
                bytes: read_limited(res, max).await?,
                mime_type: body["mime_type"].as_str().map(str::to_string),
                file_name: None,
            })
        }
        Provider::Instagram => {
            let res = http.get(reference).send().await.map_err(unreachable)?;
            let status = res.status().as_u16();
            if !res.status().is_success() {
                return Err(fetch_status("Instagram's attachment download", status, ""));
            }
            let mime = res
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
                .filter(|m| m.contains('/') && m != "application/octet-stream");
            Ok(Downloaded {
                bytes: read_limited(res, max).await?,
                mime_type: mime,
                file_name: None,
            })
        }
    }
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
            let (method, mut body) = match &m.file {
                None => ("sendMessage", json!({"chat_id": chat, "text": m.text})),
                Some(f) if f.as_photo => (
                    "sendPhoto",
                    json!({"chat_id": chat, "photo": f.url, "caption": m.text}),
                ),
                Some(f) => (
                    "sendDocument",
                    json!({"chat_id": chat, "document": f.url, "caption": m.text}),
                ),
            };
            if !m.buttons.is_empty() {
                body["reply_markup"] = json!({
                    "keyboard": m.buttons.iter().map(|b| vec![json!({"text": b})]).collect::<Vec<_>>(),
                    "one_time_keyboard": true,
                    "resize_keyboard": true,
                });
            }
            http.post(url(e, &format!("/bot{}/{method}", e.token)))
                .json(&body)
        }
        Provider::Whatsapp => {
            let body = match (m.template, m.buttons.is_empty()) {
                (None, _) if m.file.is_some() => {
                    let f = m.file.as_ref().expect("checked");
                    let (kind, mut media) = if f.as_photo {
                        ("image", json!({"link": f.url}))
                    } else {
                        ("document", json!({"link": f.url, "filename": f.file_name}))
                    };
                    if !m.text.is_empty() {
                        media["caption"] = json!(m.text);
                    }
                    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": m.chat,
                           "type": kind, kind: media})
                }
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
            // An attachment carries no text (messaging queues a file's caption as a text
            // message of its own).
            let mut message = match &m.file {
                Some(f) => json!({"attachment": {
                    "type": if f.mime_type.starts_with("image/") { "image" }
                            else if f.mime_type.starts_with("video/") { "video" }
                            else if f.mime_type.starts_with("audio/") { "audio" }
                            else { "file" },
                    "payload": {"url": f.url},
                }}),
                None => json!({"text": m.text}),
            };
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
    /// The text or the files' caption (empty for a file without one).
    pub text: String,
    pub at: DateTime<Utc>,
    /// Files to download from the provider.
    pub attachments: Vec<InAttachment>,
}

impl InMessage {
    /// What lists and events show: the text, else what kind of file came.
    pub fn label(&self) -> String {
        match (self.text.is_empty(), self.attachments.first()) {
            (true, Some(a)) => attachment_text(&a.kind),
            _ => self.text.clone(),
        }
    }
}

/// A file of an incoming message, as the provider names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InAttachment {
    /// `image`, `video`, `audio`, `voice`, `document` or `sticker`.
    pub kind: String,
    /// Telegram's `file_id`, WhatsApp's media id, Instagram's attachment URL.
    pub reference: String,
    pub file_name: String,
    pub mime_type: String,
    pub size: Option<i64>,
}

/// A file's name when the provider gives none: the kind, with the type's usual extension.
fn default_name(kind: &str, mime: &str) -> String {
    let ext = match mime.split(';').next().unwrap_or_default().trim() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/aac" => "aac",
        "audio/mp4" => "m4a",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    format!("{kind}.{ext}")
}

fn in_attachment(
    kind: &str,
    reference: Option<&str>,
    file_name: Option<&str>,
    mime_type: Option<&str>,
    default_mime: &str,
    size: Option<i64>,
) -> Option<InAttachment> {
    let reference = reference.filter(|r| !r.is_empty())?;
    let mime = mime_type
        .filter(|m| !m.is_empty())
        .unwrap_or(default_mime)
        .to_string();
    Some(InAttachment {
        kind: kind.to_string(),
        reference: reference.to_string(),
        file_name: file_name
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().to_string())
            .unwrap_or_else(|| default_name(kind, &mime)),
        mime_type: mime,
        size,
    })
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
    let attachments = telegram_files(m);
    let text = m["text"]
        .as_str()
        .or(m["caption"].as_str())
        .map(str::to_string)
        .or_else(|| telegram_shared(m))
        .or_else(|| {
            ["poll", "dice", "game", "venue"]
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
        attachments,
    })]
}

/// The files of a Telegram message: the largest size of a photo; a document, voice note,
/// audio, video, round video, animation or sticker.
fn telegram_files(m: &Value) -> Vec<InAttachment> {
    let size = |f: &Value| f["file_size"].as_i64();
    let file = |kind: &str, f: &Value, default_mime: &str| {
        in_attachment(
            kind,
            f["file_id"].as_str(),
            f["file_name"].as_str(),
            f["mime_type"].as_str(),
            default_mime,
            size(f),
        )
    };
    let found = if let Some(largest) = m["photo"].as_array().and_then(|p| p.last()) {
        file("image", largest, "image/jpeg")
    } else if m["animation"].is_object() {
        // An animation comes with a `document` copy of itself: one file.
        file("video", &m["animation"], "video/mp4")
    } else if m["document"].is_object() {
        file("document", &m["document"], "application/octet-stream")
    } else if m["voice"].is_object() {
        file("voice", &m["voice"], "audio/ogg")
    } else if m["audio"].is_object() {
        file("audio", &m["audio"], "audio/mpeg")
    } else if m["video"].is_object() {
        file("video", &m["video"], "video/mp4")
    } else if m["video_note"].is_object() {
        file("video", &m["video_note"], "video/mp4")
    } else if m["sticker"].is_object() {
        let st = &m["sticker"];
        let mime = if st["is_video"].as_bool() == Some(true) {
            "video/webm"
        } else if st["is_animated"].as_bool() == Some(true) {
            "application/x-tgsticker"
        } else {
            "image/webp"
        };
        file("sticker", st, mime)
    } else {
        None
    };
    found.into_iter().collect()
}

/// A shared contact or location, as text.
fn telegram_shared(m: &Value) -> Option<String> {
    if let Some(c) = m["contact"].as_object() {
        let name = [c.get("first_name"), c.get("last_name")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let phone = c.get("phone_number").and_then(Value::as_str).unwrap_or("");
        return Some(format!("[contact] {name} {phone}").trim().to_string());
    }
    let l = &m["location"];
    match (l["latitude"].as_f64(), l["longitude"].as_f64()) {
        (Some(lat), Some(lon)) => Some(format!("[location] {lat}, {lon}")),
        _ => None,
    }
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
                let mut attachments = Vec::new();
                let text = match kind {
                    "text" => m["text"]["body"].as_str().unwrap_or_default().to_string(),
                    "button" => m["button"]["text"].as_str().unwrap_or_default().to_string(),
                    "interactive" => m["interactive"]["button_reply"]["title"]
                        .as_str()
                        .or(m["interactive"]["list_reply"]["title"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    "image" | "video" | "audio" | "document" | "sticker" => {
                        let f = &m[kind];
                        let ours = match kind {
                            "audio" if f["voice"].as_bool() == Some(true) => "voice",
                            other => other,
                        };
                        attachments.extend(in_attachment(
                            ours,
                            f["id"].as_str(),
                            f["filename"].as_str(),
                            f["mime_type"].as_str(),
                            "application/octet-stream",
                            None,
                        ));
                        let caption = f["caption"].as_str().unwrap_or_default().to_string();
                        if attachments.is_empty() && caption.is_empty() {
                            attachment_text(kind)
                        } else {
                            caption
                        }
                    }
                    "location" => {
                        let l = &m["location"];
                        format!(
                            "[location] {}, {} {}",
                            l["latitude"].as_f64().unwrap_or_default(),
                            l["longitude"].as_f64().unwrap_or_default(),
                            l["name"].as_str().unwrap_or_default()
                        )
                        .trim()
                        .to_string()
                    }
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
                    attachments,
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
            let mut attachments = Vec::new();
            let mut links = Vec::new();
            for a in m["attachments"].as_array().into_iter().flatten() {
                let kind = a["type"].as_str().unwrap_or("file");
                let url = a["payload"]["url"].as_str();
                let (ours, mime) = match kind {
                    "image" => ("image", "image/jpeg"),
                    "video" => ("video", "video/mp4"),
                    "audio" => ("audio", "audio/mp4"),
                    "file" => ("document", "application/octet-stream"),
                    // Posts, reels and story mentions: links to Instagram, not files.
                    other => {
                        links.push(
                            format!("[{other}] {}", url.unwrap_or_default())
                                .trim()
                                .to_string(),
                        );
                        continue;
                    }
                };
                attachments.extend(in_attachment(ours, url, None, None, mime, None));
            }
            let text = m["text"]
                .as_str()
                .map(str::to_string)
                .or_else(|| (!links.is_empty()).then(|| links.join("\n")))
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
                attachments,
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
    fn files_are_read_from_each_providers_shape() {
        // Telegram: the largest photo size; an animation is one file, not two.
        let tg: Value = serde_json::from_str(r#"{"update_id":1,"message":{"message_id":5,"date":1700000000,"chat":{"id":42,"type":"private"},"from":{"id":42,"first_name":"A"},"photo":[{"file_id":"s","file_unique_id":"1","file_size":10,"width":90,"height":90},{"file_id":"L","file_unique_id":"2","file_size":900,"width":800,"height":800}],"caption":"look"}}"#).unwrap();
        let Happening::Message(m) = &read(Provider::Telegram, &tg, "")[0] else {
            panic!()
        };
        assert_eq!(m.text, "look");
        assert_eq!(m.attachments.len(), 1);
        let a = &m.attachments[0];
        assert_eq!(
            (
                a.kind.as_str(),
                a.reference.as_str(),
                a.mime_type.as_str(),
                a.file_name.as_str(),
                a.size
            ),
            ("image", "L", "image/jpeg", "image.jpg", Some(900))
        );
        let anim: Value = serde_json::from_str(r#"{"update_id":2,"message":{"message_id":6,"date":1700000000,"chat":{"id":42,"type":"private"},"animation":{"file_id":"an","file_unique_id":"3","mime_type":"video/mp4","file_name":"x.mp4"},"document":{"file_id":"an","file_unique_id":"3"}}}"#).unwrap();
        let Happening::Message(m) = &read(Provider::Telegram, &anim, "")[0] else {
            panic!()
        };
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.label(), "[video]");
        // A shared location is text, no file.
        let loc: Value = serde_json::from_str(r#"{"update_id":3,"message":{"message_id":7,"date":1700000000,"chat":{"id":42,"type":"private"},"location":{"latitude":55.75,"longitude":37.62}}}"#).unwrap();
        let Happening::Message(m) = &read(Provider::Telegram, &loc, "")[0] else {
            panic!()
        };
        assert!(m.attachments.is_empty());
        assert_eq!(m.text, "[location] 55.75, 37.62");
        // WhatsApp: an image by media id with its caption; a voice note is audio with `voice`.
        let wa: Value = serde_json::from_str(r#"{"object":"whatsapp_business_account","entry":[{"id":"0","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"1"},"messages":[{"from":"7","id":"wamid.A","timestamp":"1700000000","type":"image","image":{"caption":"hi","mime_type":"image/jpeg","sha256":"abc","id":"MEDIA1"}},{"from":"7","id":"wamid.B","timestamp":"1700000000","type":"audio","audio":{"mime_type":"audio/ogg; codecs=opus","sha256":"d","id":"MEDIA2","voice":true}}]}}]}]}"#).unwrap();
        let got = read(Provider::Whatsapp, &wa, "1");
        let Happening::Message(m) = &got[0] else {
            panic!()
        };
        assert_eq!(
            (m.text.as_str(), m.attachments[0].reference.as_str()),
            ("hi", "MEDIA1")
        );
        let Happening::Message(m) = &got[1] else {
            panic!()
        };
        assert_eq!(m.attachments[0].kind, "voice");
        assert_eq!(m.attachments[0].file_name, "voice.ogg");
        assert_eq!(m.label(), "[voice]");
        // Instagram: an image's URL is the file; a shared post is a link in the text.
        let ig: Value = serde_json::from_str(r#"{"object":"instagram","entry":[{"id":"9","time":1,"messaging":[{"sender":{"id":"5"},"recipient":{"id":"9"},"timestamp":1700000000000,"message":{"mid":"m1","attachments":[{"type":"image","payload":{"url":"https://cdn.example/i.jpg"}},{"type":"share","payload":{"url":"https://instagram.example/p/1"}}]}}]}]}"#).unwrap();
        let Happening::Message(m) = &read(Provider::Instagram, &ig, "9")[0] else {
            panic!()
        };
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].reference, "https://cdn.example/i.jpg");
        assert_eq!(m.text, "[share] https://instagram.example/p/1");
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
