//! Import and export of contacts and companies: the upload form, the column mapping screen with
//! the dry run, the progress of a running import, its error report; exports of a list or a
//! segment and their downloads. The work itself runs as jobs (crate::work).

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use contacts_api::{
    COMPANY_TARGETS, CONTACT_TARGETS, ContactFilter, DuplicatePolicy, Entity, ExportId, ExportInfo,
    ExportRequest, FileFormat, ImportId, ImportInfo, ImportSettings, ImportUpload, JobStatus,
    MAX_IMPORT_BYTES, SegmentId, TextEncoding,
};
use futures_util::StreamExt;
use kernel::{AppError, ErrorCode};

use super::deals::filter;
use super::{FormErrors, html, is_form_error, see_other};
use crate::state::AppState;
use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::work::{self, ContactFiles};

#[derive(Template)]
#[template(path = "contacts/transfer.html")]
struct TransferTpl<'a> {
    ctx: &'a Ctx,
    kind: &'static str,
    imports: Vec<ImportInfo>,
    exports: Vec<ExportInfo>,
    /// Some export is still being written: the page refreshes itself.
    exports_running: bool,
    errors: FormErrors,
    /// The module's explanation of a refused file (English; the translated key is in errors).
    detail: String,
}

/// A column of the mapping screen.
pub struct ColumnView {
    pub index: usize,
    pub header: String,
    pub target: String,
    pub samples: Vec<String>,
}

#[derive(Template)]
#[template(path = "contacts/import.html")]
struct ImportTpl<'a> {
    ctx: &'a Ctx,
    kind: &'static str,
    imp: ImportInfo,
    columns: Vec<ColumnView>,
    /// (value, label) of each target, custom fields last.
    targets: Vec<(String, String)>,
    errors: FormErrors,
    detail: String,
    /// The first refused rows, shown under a finished run.
    row_errors: Vec<contacts_api::ImportRowError>,
}

#[derive(Template)]
#[template(path = "contacts/_import_progress.html")]
struct ProgressTpl<'a> {
    ctx: &'a Ctx,
    imp: ImportInfo,
}

fn entity_kind(e: Entity) -> &'static str {
    match e {
        Entity::Contact => "contacts",
        Entity::Company => "companies",
    }
}

async fn transfer_page(
    ctx: &Ctx,
    state: &AppState,
    status: StatusCode,
    errors: FormErrors,
    detail: String,
) -> PageResult {
    let caller = ctx.caller()?;
    let c = &state.modules.contacts;
    let exports = c.exports(caller).await?;
    html(
        status,
        &TransferTpl {
            ctx,
            kind: "transfer",
            imports: c.imports(caller).await?,
            exports_running: exports.iter().any(|x| !x.status.is_finished()),
            exports,
            errors,
            detail,
        },
    )
}

pub async fn transfer(ctx: Ctx, state: web::Data<AppState>) -> PageResult {
    transfer_page(
        &ctx,
        &state,
        StatusCode::OK,
        FormErrors::none(),
        String::new(),
    )
    .await
}

/// Tells htmx where to go next (the upload form posts through htmx, which carries the CSRF
/// header a multipart body cannot).
fn hx_redirect(req: &HttpRequest, to: &str) -> PageResult {
    if req.headers().contains_key("hx-request") {
        Ok(HttpResponse::Ok()
            .insert_header(("HX-Redirect", to))
            .finish())
    } else {
        see_other(to, None)
    }
}

/// Reads the upload: the file (up to the import limit) and the small fields around it.
async fn read_upload(mut form: Multipart) -> Result<ImportUpload, AppError> {
    let mut upload = ImportUpload {
        entity: Entity::Contact,
        file_name: String::new(),
        encoding: TextEncoding::Utf8,
        data: Vec::new(),
    };
    let too_large = || {
        AppError::validation(
            "file",
            "too_large",
            &format!("at most {} MB", MAX_IMPORT_BYTES / 1024 / 1024),
        )
    };
    let bad = |_| AppError::new(ErrorCode::BadRequest, "the upload cannot be read");
    while let Some(field) = form.next().await {
        let mut field = field.map_err(bad)?;
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            upload.file_name = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .unwrap_or("")
                .to_string();
        }
        let limit = if name == "file" {
            MAX_IMPORT_BYTES
        } else {
            1024
        };
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad)?;
            if data.len() + chunk.len() > limit {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&data).trim().to_string();
        match name.as_str() {
            "file" => upload.data = data,
            "entity" => {
                upload.entity = Entity::parse(&text()).ok_or_else(|| {
                    AppError::validation("entity", "invalid", "contact or company")
                })?
            }
            "encoding" => {
                upload.encoding = TextEncoding::parse(&text()).ok_or_else(|| {
                    AppError::validation("encoding", "invalid", "utf-8 or windows-1251")
                })?
            }
            _ => {}
        }
    }
    if upload.data.is_empty() {
        return Err(AppError::validation("file", "required", "choose a file"));
    }
    Ok(upload)
}

pub async fn upload(
    ctx: Ctx,
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Multipart,
) -> PageResult {
    let caller = ctx.caller()?;
    let result = match read_upload(form).await {
        Ok(u) => state.modules.contacts.upload_import(caller, u).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(imp) => hx_redirect(&req, &format!("/contacts/import/{}", imp.id)),
        // Shown with 200 so that htmx swaps it in; the page names the problem.
        Err(e) if is_form_error(&e) => {
            let detail = first_detail(&e);
            transfer_page(
                &ctx,
                &state,
                StatusCode::OK,
                FormErrors::from_error(&e),
                detail,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

fn first_detail(e: &AppError) -> String {
    <[_]>::first(&e.fields)
        .map(|f| f.message.clone())
        .unwrap_or_else(|| e.message.clone())
}

async fn import_page(
    ctx: &Ctx,
    state: &AppState,
    id: ImportId,
    status: StatusCode,
    errors: FormErrors,
    detail: String,
    mapping: Option<Vec<String>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let c = &state.modules.contacts;
    let imp = c.import_info(caller, id).await?;
    let mapping = mapping.unwrap_or_else(|| imp.mapping.clone());
    let columns = imp
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| ColumnView {
            index: i,
            header: h.clone(),
            target: mapping.get(i).cloned().unwrap_or_default(),
            samples: imp
                .preview
                .iter()
                .filter_map(|r| r.get(i).cloned())
                .filter(|v| !v.is_empty())
                .take(3)
                .collect(),
        })
        .collect();
    let fixed: &[&str] = match imp.entity {
        Entity::Contact => &CONTACT_TARGETS,
        Entity::Company => &COMPANY_TARGETS,
    };
    let mut targets: Vec<(String, String)> = fixed
        .iter()
        .map(|t| {
            (
                t.to_string(),
                ctx.t(format!("import.target.{t}").as_str()).to_string(),
            )
        })
        .collect();
    for f in c.custom_fields(caller, imp.entity).await? {
        targets.push((format!("cf:{}", f.id), f.name));
    }
    let row_errors = if imp.status.is_finished() && imp.failed > 0 {
        c.import_errors(caller, id)
            .await?
            .into_iter()
            .take(20)
            .collect()
    } else {
        Vec::new()
    };
    html(
        status,
        &ImportTpl {
            ctx,
            kind: "transfer",
            imp,
            columns,
            targets,
            errors,
            detail,
            row_errors,
        },
    )
}

pub async fn import(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    import_page(
        &ctx,
        &state,
        ImportId(*path),
        StatusCode::OK,
        FormErrors::none(),
        String::new(),
        None,
    )
    .await
}

/// The progress bar, polled by htmx while the import runs.
pub async fn progress(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let imp = state
        .modules
        .contacts
        .import_info(caller, ImportId(*path))
        .await?;
    if imp.status.is_finished() {
        // Done: the whole page has the summary and the report.
        return Ok(HttpResponse::Ok()
            .insert_header(("HX-Redirect", format!("/contacts/import/{}", imp.id)))
            .finish());
    }
    html(StatusCode::OK, &ProgressTpl { ctx: &ctx, imp })
}

/// Starts the dry run or the import with the chosen mapping.
pub async fn start(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let id = ImportId(*path);
    let info = state.modules.contacts.import_info(caller, id).await?;
    let mapping: Vec<String> = (0..info.headers.len())
        .map(|i| filter::get(&f, &format!("col{i}")).to_string())
        .collect();
    let settings = ImportSettings {
        mapping: mapping.clone(),
        policy: DuplicatePolicy::parse(filter::get(&f, "policy")).unwrap_or_default(),
        tag: filter::get(&f, "tag").to_string(),
        dry_run: filter::get(&f, "action") == "dry_run",
    };
    let started = state
        .modules
        .contacts
        .start_import(caller, id, settings)
        .await;
    let result = match started {
        Ok(imp) => {
            work::enqueue(
                state.jobs.as_ref(),
                state.config.retry_policy(),
                ContactFiles::Import {
                    account_id: caller.account_id.0,
                    import_id: imp.id.0,
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => see_other(&format!("/contacts/import/{id}"), None),
        Err(e) if is_form_error(&e) || e.code == ErrorCode::Unavailable => {
            let detail = first_detail(&e);
            import_page(
                &ctx,
                &state,
                id,
                super::form_status(&e),
                FormErrors::from_error(&e),
                detail,
                Some(mapping),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// The refused rows as CSV: row, column, value, reason.
pub async fn error_report(
    ctx: Ctx,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> PageResult {
    let caller = ctx.caller()?;
    let rows = state
        .modules
        .contacts
        .import_errors(caller, ImportId(*path))
        .await?;
    let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    let internal = |e: csv::Error| AppError::internal(e.to_string());
    w.write_record(["row", "column", "value", "reason"])
        .map_err(internal)?;
    for r in rows {
        w.write_record([r.row.to_string(), r.field, r.value, r.message])
            .map_err(internal)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| AppError::internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"import-{}-errors.csv\"", *path),
        ))
        .body(body))
}

/// Queues an export of the list as filtered, or of a segment.
pub async fn export(
    ctx: Ctx,
    state: web::Data<AppState>,
    f: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let caller = ctx.caller()?;
    let entity = Entity::parse(filter::get(&f, "entity")).unwrap_or(Entity::Contact);
    let request = ExportRequest {
        entity,
        format: FileFormat::parse(filter::get(&f, "format")).unwrap_or(FileFormat::Csv),
        filter: if entity == Entity::Contact {
            super::contacts::filter_from(&f)
        } else {
            ContactFilter::default()
        },
        segment: filter::get(&f, "segment").parse().ok().map(SegmentId),
    };
    let result = match state.modules.contacts.start_export(caller, request).await {
        Ok(x) => {
            work::enqueue(
                state.jobs.as_ref(),
                state.config.retry_policy(),
                ContactFiles::Export {
                    account_id: caller.account_id.0,
                    export_id: x.id.0,
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => see_other("/contacts/transfer", Some("import.export_queued")),
        Err(e) if e.code == ErrorCode::Forbidden => see_other(
            &format!("/{}", entity_kind(entity)),
            Some("import.no_export_right"),
        ),
        Err(e) if is_form_error(&e) || e.code == ErrorCode::Unavailable => {
            let detail = first_detail(&e);
            transfer_page(
                &ctx,
                &state,
                super::form_status(&e),
                FormErrors::from_error(&e),
                detail,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn export_file(ctx: Ctx, state: web::Data<AppState>, path: web::Path<i64>) -> PageResult {
    let caller = ctx.caller()?;
    let file = state
        .modules
        .contacts
        .export_file(caller, ExportId(*path))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, file.format.content_type()))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", file.file_name),
        ))
        .body(file.data))
}

/// For templates: the state of a job as a translation key.
pub fn status_key(s: &JobStatus) -> String {
    format!("import.status.{}", s.as_str())
}
