//! Files in chats. A client's file is downloaded from the provider by a job (retried when the
//! provider says "later", failed with the reason when it says "never") and kept in the
//! database with its message. A manager's file is stored when it is queued; the provider
//! fetches it through a signed link (`/hooks/files/<id>/<token>/<name>`) when the message is sent.

use std::collections::HashMap;

use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use hmac::{Hmac, Mac};
use kernel::{AppError, AppResult, Caller};
use messaging_api::*;
use sha2::{Digest, Sha256};

use crate::provider::{Endpoint, FetchError};
use crate::service::{Inner, field_error};

/// The largest file kept: Telegram bots download at most 20 MB, and the providers take files
/// sent by link up to about that size.
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// Download attempts before a client's file is given up on.
const MAX_FETCH_ATTEMPTS: i32 = 8;
/// A file's caption: Telegram takes at most 1,024 characters with a photo or document.
const MAX_CAPTION_CHARS: usize = 1024;

#[derive(QueryableByName)]
pub(crate) struct AttachmentRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub message_id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub file_name: String,
    #[diesel(sql_type = Text)]
    pub mime_type: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub size: Option<i64>,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
}

impl From<AttachmentRow> for Attachment {
    fn from(r: AttachmentRow) -> Attachment {
        Attachment {
            id: r.id,
            kind: r.kind,
            file_name: r.file_name,
            mime_type: r.mime_type,
            size: r.size,
            status: match r.status.as_str() {
                "stored" => AttachmentStatus::Stored,
                "failed" => AttachmentStatus::Failed,
                _ => AttachmentStatus::Pending,
            },
            error: r.error,
        }
    }
}

const ATTACHMENT_COLUMNS: &str = "id, message_id, kind, file_name, mime_type, size, status, error";

#[derive(QueryableByName)]
struct FetchRow {
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Text)]
    provider_ref: String,
    #[diesel(sql_type = Text)]
    file_name: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

#[derive(QueryableByName)]
struct ContentRow {
    #[diesel(sql_type = BigInt)]
    conversation_id: i64,
    #[diesel(sql_type = Text)]
    file_name: String,
    #[diesel(sql_type = Text)]
    mime_type: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    content: Option<Vec<u8>>,
}

/// The type of a file by its name's extension, for uploads that name none.
pub fn guess_mime(file_name: &str) -> &'static str {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "zip" => "application/zip",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

/// The kind of file a type is, as messages name them.
pub fn kind_of(mime_type: &str) -> &'static str {
    match mime_type.split('/').next().unwrap_or_default() {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        _ => "document",
    }
}

/// The checked file of an outgoing message: its name (no path, no control characters), type
/// and contents; errors name the `file` field.
pub fn checked_upload(file: &FileUpload, caption: &str) -> AppResult<FileUpload> {
    let name: String = file
        .file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let name = name.trim().to_string();
    let mut errors = Vec::new();
    if file.content.is_empty() {
        errors.push(field_error("file", "required", "choose a file"));
    }
    if file.content.len() > MAX_FILE_BYTES {
        errors.push(field_error(
            "file",
            "too_large",
            &format!("at most {} MB", MAX_FILE_BYTES / 1024 / 1024),
        ));
    }
    if name.is_empty() {
        errors.push(field_error("file", "invalid", "the file needs a name"));
    }
    let mime = file.mime_type.trim();
    if !mime.is_empty()
        && (!mime.contains('/') || mime.len() > 100 || mime.chars().any(char::is_whitespace))
    {
        errors.push(field_error("file", "invalid", "not a media type"));
    }
    if caption.chars().count() > MAX_CAPTION_CHARS {
        errors.push(field_error(
            "text",
            "too_long",
            &format!("a file's caption is at most {MAX_CAPTION_CHARS} characters"),
        ));
    }
    if !errors.is_empty() {
        return Err(AppError::from_fields(errors));
    }
    let mime_type = if mime.is_empty() || mime == "application/octet-stream" {
        guess_mime(&name).to_string()
    } else {
        mime.to_ascii_lowercase()
    };
    Ok(FileUpload {
        file_name: name,
        mime_type,
        content: file.content.clone(),
    })
}

impl Inner {
    /// The token of a file's link: an HMAC of its id under the credentials key, so a link
    /// cannot be guessed from another.
    pub(crate) fn link_token(&self, id: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.settings.credentials_key)
            .expect("HMAC takes any key length");
        mac.update(format!("voronka:attachment-link:{id}").as_bytes());
        crate::crypto::hex(&mac.finalize().into_bytes()[..16])
    }

    /// The link a provider fetches a file being sent from.
    pub(crate) fn file_link(&self, id: i64, file_name: &str) -> AppResult<String> {
        let Some(base) = &self.settings.public_url else {
            return Err(AppError::internal(
                "no public URL is configured, so the provider cannot fetch the file",
            ));
        };
        let name: String = file_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(format!(
            "{}/hooks/files/{id}/{}/{name}",
            base.trim_end_matches('/'),
            self.link_token(id)
        ))
    }

    /// The files of these messages, by message.
    pub(crate) async fn attachments_of(
        &self,
        messages: &[i64],
    ) -> AppResult<HashMap<i64, Vec<Attachment>>> {
        let mut by_message: HashMap<i64, Vec<Attachment>> = HashMap::new();
        if messages.is_empty() {
            return Ok(by_message);
        }
        let mut conn = self.conn().await?;
        let rows: Vec<AttachmentRow> = kernel::sql::query(format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM messaging.attachments
              WHERE message_id = ANY($1) ORDER BY message_id, id"
        ))
        .bind::<Array<BigInt>, _>(messages)
        .load(&mut conn)
        .await?;
        for r in rows {
            by_message.entry(r.message_id).or_default().push(r.into());
        }
        Ok(by_message)
    }

    /// Downloads a client's file from the provider.
    pub(crate) async fn process_fetch(&self, id: i64) -> AppResult<()> {
        let row: Option<FetchRow> = {
            let mut conn = self.conn().await?;
            kernel::sql::query(
                "SELECT m.channel_id, a.provider_ref, a.file_name, a.kind, a.status, a.attempts
                   FROM messaging.attachments a JOIN messaging.messages m ON m.id = a.message_id
                  WHERE a.id = $1",
            )
            .bind::<BigInt, _>(id)
            .get_result(&mut conn)
            .await
            .optional()?
        };
        let Some(row) = row else { return Ok(()) };
        if row.status == "stored" || row.status == "failed" {
            return Ok(());
        }
        let channel = self.live_by_id(row.channel_id).await?;
        let result = crate::provider::download(
            &self.http,
            &Endpoint {
                provider: channel.row.provider(),
                base_url: &channel.row.base_url,
                api_version: &channel.row.api_version,
                external_id: &channel.row.external_id,
                token: &channel.secrets.token,
            },
            &row.provider_ref,
            MAX_FILE_BYTES,
        )
        .await;
        let mut conn = self.conn().await?;
        match result {
            Ok(file) => {
                let sha = crate::crypto::hex(&Sha256::digest(&file.bytes));
                // A name made up from the kind gives way to the provider's own.
                let generic = row.file_name.starts_with(&format!("{}.", row.kind));
                let name = match file.file_name {
                    Some(n) if generic && !n.is_empty() => n,
                    _ => row.file_name.clone(),
                };
                kernel::sql::query(
                    "UPDATE messaging.attachments
                        SET status = 'stored', content = $2, size = $3, sha256 = $4, error = NULL,
                            file_name = $5, mime_type = COALESCE($6, mime_type), attempts = attempts + 1,
                            due_at = NULL
                      WHERE id = $1 AND status IN ('pending', 'queued')",
                )
                .bind::<BigInt, _>(id)
                .bind::<Bytea, _>(&file.bytes)
                .bind::<BigInt, _>(file.bytes.len() as i64)
                .bind::<Text, _>(&sha)
                .bind::<Text, _>(&name)
                .bind::<Nullable<Text>, _>(file.mime_type.filter(|m| m.contains('/')))
                .execute(&mut conn)
                .await?;
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                let (permanent, reason) = match e {
                    FetchError::Failed(r) => (true, r),
                    FetchError::Retry(r) => (attempts >= MAX_FETCH_ATTEMPTS, r),
                };
                tracing::warn!(attachment = id, attempts, permanent, %reason, "a client's file could not be downloaded");
                let wait = 2f64.powi(attempts.min(12));
                kernel::sql::query(
                    "UPDATE messaging.attachments
                        SET status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END, attempts = $2, error = $4,
                            due_at = CASE WHEN $3 THEN NULL ELSE now() + make_interval(secs => $5) END
                      WHERE id = $1 AND status IN ('pending', 'queued')",
                )
                .bind::<BigInt, _>(id)
                .bind::<Integer, _>(attempts)
                .bind::<diesel::sql_types::Bool, _>(permanent)
                .bind::<Text, _>(&reason)
                .bind::<diesel::sql_types::Double, _>(wait)
                .execute(&mut conn)
                .await?;
            }
        }
        Ok(())
    }

    /// A stored file on a conversation the caller may see.
    pub(crate) async fn attachment(&self, caller: Caller, id: i64) -> AppResult<FileContent> {
        let row = self.content(id, Some(caller.account_id.0)).await?;
        // The caller must see the conversation (a manager sees only their own chats).
        self.conversation_row(caller, row.conversation_id).await?;
        stored(row)
    }

    /// A file being sent, for the provider holding its signed link.
    pub(crate) async fn linked_attachment(&self, id: i64, token: &str) -> AppResult<FileContent> {
        if !crate::crypto::same(token, &self.link_token(id)) {
            return Err(AppError::not_found("file"));
        }
        stored(self.content(id, None).await?)
    }

    async fn content(&self, id: i64, account: Option<i64>) -> AppResult<ContentRow> {
        let mut conn = self.conn().await?;
        kernel::sql::query(
            "SELECT m.conversation_id, a.file_name, a.mime_type, a.content
               FROM messaging.attachments a JOIN messaging.messages m ON m.id = a.message_id
              WHERE a.id = $1 AND ($2::bigint IS NULL OR a.account_id = $2) AND a.status = 'stored'",
        )
        .bind::<BigInt, _>(id)
        .bind::<Nullable<BigInt>, _>(account)
        .get_result(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("file"))
    }
}

fn stored(row: ContentRow) -> AppResult<FileContent> {
    Ok(FileContent {
        file_name: row.file_name,
        mime_type: row.mime_type,
        content: row.content.ok_or_else(|| AppError::not_found("file"))?,
    })
}
