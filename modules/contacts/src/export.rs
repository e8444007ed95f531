//! Exports of a contact or company list (or a segment) to CSV or XLSX, written by a job and
//! kept for download. Only users with the export right may export, and only the records the
//! right reaches; the file's columns read back in through the import's mapping.

use std::collections::HashMap;

use accounts_api::Action;
use chrono::{DateTime, Utc};
use contacts_api::*;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use kernel::paging::PageRequest;
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, UserId, fields};
use serde_json::Value;

use crate::service::{ContactsService, load_fields};
use crate::tabular;

#[derive(QueryableByName)]
struct ExportRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Text)]
    entity: String,
    #[diesel(sql_type = Text)]
    format: String,
    #[diesel(sql_type = Jsonb)]
    filter: Value,
    #[diesel(sql_type = Text)]
    title: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    rows: i32,
    #[diesel(sql_type = Text)]
    error: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<DateTime<Utc>>,
}

const EXPORT_COLUMNS: &str =
    "id, user_id, entity, format, filter, title, status, rows, error, created_at, finished_at";

impl ExportRow {
    fn entity(&self) -> Entity {
        Entity::parse(&self.entity).unwrap_or(Entity::Contact)
    }

    fn format(&self) -> FileFormat {
        FileFormat::parse(&self.format).unwrap_or(FileFormat::Csv)
    }

    fn info(&self) -> ExportInfo {
        ExportInfo {
            id: ExportId(self.id),
            entity: self.entity(),
            format: self.format(),
            title: self.title.clone(),
            status: JobStatus::parse(&self.status),
            rows: self.rows,
            error: self.error.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
        }
    }
}

/// Rows fetched per page while writing.
const PAGE: u32 = 250;

impl ContactsService {
    async fn load_export(&self, account: AccountId, id: ExportId) -> AppResult<ExportRow> {
        let mut conn = self.conn().await?;
        diesel::sql_query(format!(
            "SELECT {EXPORT_COLUMNS} FROM contacts.exports WHERE account_id = $1 AND id = $2"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(id.0)
        .get_result(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("export"))
    }

    pub(crate) async fn do_start_export(
        &self,
        caller: Caller,
        request: ExportRequest,
    ) -> AppResult<ExportInfo> {
        let Some(me) = caller.actor.user_id() else {
            return Err(AppError::forbidden("exports are made by users"));
        };
        let entity = request.entity;
        self.scope(caller, entity, Action::Export).await?;
        let (filter, title) = match request.segment {
            Some(sid) => {
                let seg = self
                    .segments(caller)
                    .await?
                    .into_iter()
                    .find(|s| s.id == sid)
                    .ok_or_else(|| AppError::not_found("segment"))?;
                (seg.filter, format!("segment: {}", seg.name))
            }
            None if request.filter.is_empty() => (
                request.filter,
                match entity {
                    Entity::Contact => "all contacts".to_string(),
                    Entity::Company => "all companies".to_string(),
                },
            ),
            None => (
                request.filter,
                match entity {
                    Entity::Contact => "filtered contacts".to_string(),
                    Entity::Company => "filtered companies".to_string(),
                },
            ),
        };
        // A filter that does not hold is refused now, not in the job.
        match entity {
            Entity::Contact => {
                self.list_contacts(caller, &filter, PageRequest::new(None, Some(1)))
                    .await?;
            }
            Entity::Company => {
                self.list_companies(caller, &filter, PageRequest::new(None, Some(1)))
                    .await?;
            }
        }
        let json = serde_json::to_value(&filter).map_err(|e| AppError::internal(e.to_string()))?;
        let mut conn = self.conn().await?;
        let row: ExportRow = diesel::sql_query(format!(
            "INSERT INTO contacts.exports (account_id, user_id, entity, format, filter, title)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {EXPORT_COLUMNS}"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(me.0)
        .bind::<Text, _>(entity.as_str())
        .bind::<Text, _>(request.format.as_str())
        .bind::<Jsonb, _>(&json)
        .bind::<Text, _>(&title)
        .get_result(&mut conn)
        .await?;
        Ok(row.info())
    }

    pub(crate) async fn do_exports(&self, caller: Caller) -> AppResult<Vec<ExportInfo>> {
        // One's own exports only: nobody else may download them.
        let mut conn = self.conn().await?;
        let rows: Vec<ExportRow> = diesel::sql_query(format!(
            "SELECT {EXPORT_COLUMNS} FROM contacts.exports WHERE account_id = $1 AND user_id = $2
              ORDER BY id DESC LIMIT 20"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(caller.actor.user_id().map(|u| u.0).unwrap_or(0))
        .load(&mut conn)
        .await?;
        Ok(rows.iter().map(ExportRow::info).collect())
    }

    pub(crate) async fn do_export_file(
        &self,
        caller: Caller,
        id: ExportId,
    ) -> AppResult<ExportFile> {
        let row = self.load_export(caller.account_id, id).await?;
        // Only its author downloads an export, and only while they hold the export right.
        if caller.actor.user_id().is_some_and(|me| me.0 != row.user_id) {
            return Err(AppError::not_found("export"));
        }
        self.scope(caller, row.entity(), Action::Export).await?;
        if JobStatus::parse(&row.status) != JobStatus::Done {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "the export is not ready yet",
            ));
        }
        let mut conn = self.conn().await?;
        #[derive(QueryableByName)]
        struct Data {
            #[diesel(sql_type = diesel::sql_types::Bytea)]
            data: Vec<u8>,
        }
        let d: Data = diesel::sql_query(
            "SELECT data FROM contacts.exports WHERE id = $1 AND data IS NOT NULL",
        )
        .bind::<BigInt, _>(id.0)
        .get_result(&mut conn)
        .await?;
        let format = row.format();
        Ok(ExportFile {
            file_name: format!(
                "{}-{}.{}",
                match row.entity() {
                    Entity::Contact => "contacts",
                    Entity::Company => "companies",
                },
                row.created_at.format("%Y%m%d-%H%M"),
                format.as_str()
            ),
            format,
            data: d.data,
        })
    }

    pub(crate) async fn do_run_export(
        &self,
        account: AccountId,
        id: ExportId,
    ) -> AppResult<ExportInfo> {
        let row = self.load_export(account, id).await?;
        if JobStatus::parse(&row.status).is_finished() {
            return Ok(row.info());
        }
        let caller = Caller::user(account, UserId(row.user_id));
        let entity = row.entity();
        let result = self.write_export(caller, entity, &row).await;
        let mut conn = self.conn().await?;
        match result {
            Ok((data, rows)) => {
                diesel::sql_query(
                    "UPDATE contacts.exports SET status = 'done', data = $2, rows = $3, finished_at = now() WHERE id = $1",
                )
                .bind::<BigInt, _>(id.0)
                .bind::<diesel::sql_types::Bytea, _>(&data)
                .bind::<Integer, _>(rows)
                .execute(&mut conn)
                .await?;
            }
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::Forbidden | ErrorCode::NotFound | ErrorCode::Validation
                ) =>
            {
                diesel::sql_query(
                    "UPDATE contacts.exports SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
                )
                .bind::<BigInt, _>(id.0)
                .bind::<Text, _>(&e.message)
                .execute(&mut conn)
                .await?;
            }
            Err(e) => return Err(e),
        }
        Ok(self.load_export(account, id).await?.info())
    }

    /// The file's bytes and its count of data rows.
    async fn write_export(
        &self,
        caller: Caller,
        entity: Entity,
        row: &ExportRow,
    ) -> AppResult<(Vec<u8>, i32)> {
        let scope = self.scope(caller, entity, Action::Export).await?;
        let filter: ContactFilter = serde_json::from_value(row.filter.clone()).unwrap_or_default();
        let mut conn = self.conn().await?;
        let defs = load_fields(&mut conn, caller.account_id, entity).await?;
        drop(conn);
        let users = self.user_display_names(caller.account_id).await?;
        let mut header: Vec<String> = match entity {
            Entity::Contact => [
                "ID",
                "Name",
                "First name",
                "Last name",
                "Position",
                "Phone",
                "Email",
                "Company",
                "Tags",
                "Responsible",
                "Created at",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            Entity::Company => [
                "ID",
                "Name",
                "Web",
                "Address",
                "Phone",
                "Email",
                "Tags",
                "Responsible",
                "Created at",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        header.extend(defs.iter().map(|d| d.name.clone()));
        let mut out: Vec<Vec<String>> = vec![header];
        let custom = |values: &FieldValues| -> Vec<String> {
            defs.iter()
                .map(|d| {
                    values
                        .get(&d.id.0.to_string())
                        .map(|v| fields::display(d.field_type, &d.enums, v))
                        .unwrap_or_default()
                })
                .collect()
        };
        let user = |id: UserId| users.get(&id.0).cloned().unwrap_or_default();
        let join = |v: Vec<String>| v.join(", ");
        let mut page = PageRequest::new(None, Some(PAGE));
        loop {
            let next = match entity {
                Entity::Contact => {
                    let p = self.list_contacts(caller, &filter, page.clone()).await?;
                    let company_ids: Vec<CompanyId> = p
                        .items
                        .iter()
                        .flat_map(|c| c.company_ids.iter().copied())
                        .collect();
                    let names = self.company_names(caller.account_id, &company_ids).await?;
                    for c in p
                        .items
                        .iter()
                        .filter(|c| scope.allows(c.responsible_user_id))
                    {
                        let mut r = vec![
                            c.id.0.to_string(),
                            c.name.clone(),
                            c.first_name.clone(),
                            c.last_name.clone(),
                            c.position.clone(),
                            join(c.phones.iter().map(|p| p.raw.clone()).collect()),
                            join(c.emails.iter().map(|e| e.email.clone()).collect()),
                            c.company_ids
                                .iter()
                                .filter_map(|i| names.get(&i.0).cloned())
                                .collect::<Vec<_>>()
                                .join("; "),
                            join(c.tags.iter().map(|t| t.name.clone()).collect()),
                            user(c.responsible_user_id),
                            c.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ];
                        r.extend(custom(&c.custom_fields));
                        out.push(r);
                    }
                    p.next
                }
                Entity::Company => {
                    let p = self.list_companies(caller, &filter, page.clone()).await?;
                    for c in p
                        .items
                        .iter()
                        .filter(|c| scope.allows(c.responsible_user_id))
                    {
                        let mut r = vec![
                            c.id.0.to_string(),
                            c.name.clone(),
                            c.web.clone(),
                            c.address.clone(),
                            join(c.phones.iter().map(|p| p.raw.clone()).collect()),
                            join(c.emails.iter().map(|e| e.email.clone()).collect()),
                            join(c.tags.iter().map(|t| t.name.clone()).collect()),
                            user(c.responsible_user_id),
                            c.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ];
                        r.extend(custom(&c.custom_fields));
                        out.push(r);
                    }
                    p.next
                }
            };
            match next {
                Some(n) => page = PageRequest::new(Some(n), Some(PAGE)),
                None => break,
            }
        }
        let rows = (out.len() - 1) as i32;
        let format = row.format();
        let data = tokio::task::spawn_blocking(move || tabular::write(format, &out))
            .await
            .map_err(|e| AppError::internal(e.to_string()))??;
        Ok((data, rows))
    }

    async fn company_names(
        &self,
        account: AccountId,
        ids: &[CompanyId],
    ) -> AppResult<HashMap<i64, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.conn().await?;
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            name: String,
        }
        let rows: Vec<N> = diesel::sql_query(
            "SELECT id, name FROM contacts.companies WHERE account_id = $1 AND id = ANY($2) AND deleted_at IS NULL",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Array<BigInt>, _>(ids.iter().map(|i| i.0).collect::<Vec<_>>())
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|n| (n.id, n.name)).collect())
    }

    /// Every user of the account (active or not), in pages.
    pub(crate) async fn all_users(
        &self,
        account: AccountId,
    ) -> AppResult<Vec<accounts_api::UserInfo>> {
        let mut out = Vec::new();
        let mut page = PageRequest::new(None, Some(250));
        loop {
            let p = self
                .accounts
                .list_users(Caller::system(account), page.clone())
                .await?;
            out.extend(p.items);
            match p.next {
                Some(n) => page = PageRequest::new(Some(n), Some(250)),
                None => break,
            }
        }
        Ok(out)
    }

    /// Users by id as an export names them: by e-mail, which an import reads back.
    async fn user_display_names(&self, account: AccountId) -> AppResult<HashMap<i64, String>> {
        Ok(self
            .all_users(account)
            .await?
            .into_iter()
            .map(|u| (u.id.0, u.email))
            .collect())
    }
}
