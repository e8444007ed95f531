//! Reading deals: a filter turned into SQL conditions, board columns and the list, keyset paged.

use deals_api::*;
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::fields;
use kernel::paging::{Page, PageRequest};
use kernel::{AccountId, AppError, AppResult, FieldError};
use serde_json::Value;

use crate::access::Scope;
use crate::ops::deals_out;
use crate::rows::DealRow;
use crate::schema::deals;

/// A custom-field condition, ready for SQL.
#[derive(Debug, Clone)]
enum FieldCondition {
    /// `custom_fields @> {"id": value}` (choices, numbers, dates, checkboxes).
    Contains(Value),
    /// Part of a text value: `custom_fields ->> 'id' ILIKE pattern`.
    TextLike(String, String),
}

/// A filter checked against the account's fields, with the caller's scope.
pub(crate) struct Resolved {
    filter: DealFilter,
    fields: Vec<FieldCondition>,
    scope: Option<Vec<i64>>,
}

impl Resolved {
    /// Whether only the scope limits it (then the maintained totals are exact).
    pub fn is_unfiltered(&self) -> bool {
        self.filter.is_empty()
    }
}

/// Checks the custom-field parts of a filter against the definitions.
pub(crate) fn resolve(
    filter: &DealFilter,
    defs: &[CustomField],
    scope: &Scope,
) -> AppResult<Resolved> {
    let mut errors = Vec::new();
    let mut conditions = Vec::new();
    for (id, raw) in &filter.fields {
        let name = format!("custom_fields.{}", id.0);
        let Some(def) = defs.iter().find(|d| d.id == *id) else {
            errors.push(FieldError {
                field: name,
                code: "not_found".into(),
                message: "no such field".into(),
            });
            continue;
        };
        let key = id.0.to_string();
        match def.field_type {
            FieldType::Text | FieldType::Textarea | FieldType::Url => {
                if let Some(s) = raw.as_str().map(str::trim).filter(|s| !s.is_empty()) {
                    conditions.push(FieldCondition::TextLike(key, kernel::db::like_pattern(s)));
                }
            }
            ty => match fields::normalize(ty, &def.enums, raw) {
                Ok(Some(v)) => {
                    // A multiselect matches when it holds the chosen item(s).
                    let mut m = serde_json::Map::new();
                    m.insert(key, v);
                    conditions.push(FieldCondition::Contains(Value::Object(m)));
                }
                Ok(None) => {}
                Err(e) => errors.push(FieldError {
                    field: name,
                    code: e.code.into(),
                    message: format!("{}: {}", def.name, e.message),
                }),
            },
        }
    }
    if !errors.is_empty() {
        return Err(AppError::from_fields(errors));
    }
    Ok(Resolved {
        filter: filter.clone(),
        fields: conditions,
        scope: scope.ids(),
    })
}

type Boxed<'a> = deals::BoxedQuery<'a, Pg>;

/// Live deals of the account that pass the filter and the scope.
fn filtered<'a>(account: AccountId, r: &'a Resolved) -> Boxed<'a> {
    let f = &r.filter;
    let mut q = deals::table
        .filter(deals::account_id.eq(account.0))
        .filter(deals::deleted_at.is_null())
        .into_boxed();
    if let Some(ids) = &r.scope {
        q = q.filter(deals::responsible_user_id.eq_any(ids.clone()));
    }
    if let Some(p) = f.pipeline_id {
        q = q.filter(deals::pipeline_id.eq(p.0));
    }
    if !f.stages.is_empty() {
        q = q.filter(deals::stage_id.eq_any(f.stages.iter().map(|s| s.0).collect::<Vec<_>>()));
    }
    if !f.responsible.is_empty() {
        q = q.filter(
            deals::responsible_user_id
                .eq_any(f.responsible.iter().map(|u| u.0).collect::<Vec<_>>()),
        );
    }
    if !f.tags.is_empty() {
        q = q.filter(deals::tag_ids.overlaps_with(f.tags.iter().map(|t| t.0).collect::<Vec<_>>()));
    }
    if let Some(c) = f.contact {
        q = q
            .filter(deals::contact_ids.ne(Vec::<i64>::new()))
            .filter(deals::contact_ids.contains(vec![c]));
    }
    if let Some(c) = f.company {
        q = q
            .filter(deals::company_ids.ne(Vec::<i64>::new()))
            .filter(deals::company_ids.contains(vec![c]));
    }
    if let Some(text) = f.query.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        q = q.filter(deals::name.ilike(kernel::db::like_pattern(text)));
    }
    if let Some(t) = f.created_from {
        q = q.filter(deals::created_at.ge(t));
    }
    if let Some(t) = f.created_to {
        q = q.filter(deals::created_at.lt(t));
    }
    if let Some(t) = f.updated_from {
        q = q.filter(deals::updated_at.ge(t));
    }
    if let Some(t) = f.updated_to {
        q = q.filter(deals::updated_at.lt(t));
    }
    if let Some(t) = f.closed_from {
        q = q.filter(deals::closed_at.ge(t));
    }
    if let Some(t) = f.closed_to {
        q = q.filter(deals::closed_at.lt(t));
    }
    if !f.ids.is_empty() {
        q = q.filter(deals::id.eq_any(f.ids.iter().map(|d| d.0).collect::<Vec<_>>()));
    }
    if !f.visited.is_empty() {
        q = q.filter(
            sql::<Bool>(
                "EXISTS (SELECT 1 FROM deals.stage_history h
                          WHERE h.account_id = \"deals\".\"deals\".\"account_id\"
                            AND h.deal_id = \"deals\".\"deals\".\"id\" AND h.stage_id = ANY(",
            )
            .bind::<Array<BigInt>, _>(f.visited.iter().map(|s| s.0).collect::<Vec<_>>())
            .sql("))"),
        );
    }
    if !f.pipelines.is_empty() {
        q = q
            .filter(deals::pipeline_id.eq_any(f.pipelines.iter().map(|p| p.0).collect::<Vec<_>>()));
    }
    if !f.statuses.is_empty() {
        let (ps, ss): (Vec<i64>, Vec<i64>) = f.statuses.iter().map(|(p, s)| (p.0, s.0)).unzip();
        q = q.filter(
            sql::<Bool>("(pipeline_id, stage_id) IN (SELECT * FROM unnest(")
                .bind::<Array<BigInt>, _>(ps)
                .sql(", ")
                .bind::<Array<BigInt>, _>(ss)
                .sql("))"),
        );
    }
    if let Some(p) = f.price_from {
        q = q.filter(deals::price.ge(p));
    }
    if let Some(p) = f.price_to {
        q = q.filter(deals::price.le(p));
    }
    if !f.created_by.is_empty() {
        q = q.filter(deals::created_by.eq_any(f.created_by.clone()));
    }
    if !f.updated_by.is_empty() {
        q = q.filter(deals::updated_by.eq_any(f.updated_by.clone()));
    }
    for c in &r.fields {
        q = match c {
            FieldCondition::Contains(v) => q.filter(deals::custom_fields.contains(v.clone())),
            FieldCondition::TextLike(key, pattern) => q.filter(
                sql::<Bool>("(custom_fields ->> ")
                    .bind::<Text, _>(key.clone())
                    .sql(") ILIKE ")
                    .bind::<Text, _>(pattern.clone()),
            ),
        };
    }
    q
}

/// One page of a column, in board order.
pub(crate) async fn column_page(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pipeline: PipelineId,
    stage: StageId,
    r: &Resolved,
    page: &PageRequest,
) -> AppResult<Page<Deal>> {
    let mut q = filtered(account, r)
        .filter(deals::pipeline_id.eq(pipeline.0))
        .filter(deals::stage_id.eq(stage.0))
        .order((deals::position, deals::id))
        .limit(page.fetch_limit());
    if let Some(after) = &page.after {
        let (pos, id): (i64, i64) = after.decode()?;
        q = q.filter(
            deals::position
                .gt(pos)
                .or(deals::position.eq(pos).and(deals::id.gt(id))),
        );
    }
    let rows: Vec<DealRow> = q.select(DealRow::as_select()).load(conn).await?;
    let page = Page::from_rows(rows, page, |r| (r.position, r.id));
    let next = page.next.clone();
    let items = deals_out(conn, account, page.items).await?;
    Ok(Page { items, next })
}

/// A filtered column's count and budget, counted up to the cap.
pub(crate) async fn capped_totals(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pipeline: PipelineId,
    stage: StageId,
    r: &Resolved,
) -> AppResult<Totals> {
    let prices: Vec<i64> = filtered(account, r)
        .filter(deals::pipeline_id.eq(pipeline.0))
        .filter(deals::stage_id.eq(stage.0))
        .select(deals::price)
        .limit(FILTERED_COUNT_CAP + 1)
        .load(conn)
        .await?;
    let capped = prices.len() as i64 > FILTERED_COUNT_CAP;
    let counted = &prices[..prices.len().min(FILTERED_COUNT_CAP as usize)];
    Ok(Totals {
        deals: counted.len() as i64,
        budget: counted.iter().sum(),
        capped,
    })
}

/// The list: sorted by one key (then id), keyset paged in either direction.
pub(crate) async fn list_page(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    r: &Resolved,
    sort: ListSort,
    desc: bool,
    page: &PageRequest,
) -> AppResult<Page<Deal>> {
    let q = filtered(account, r).limit(page.fetch_limit());
    macro_rules! keyset {
        ($col:expr, $ty:ty, $key:expr) => {{
            let mut q = if desc {
                q.order(($col.desc(), deals::id.desc()))
            } else {
                q.order(($col.asc(), deals::id.asc()))
            };
            if let Some(after) = &page.after {
                let (v, id): ($ty, i64) = after.decode()?;
                q = if desc {
                    q.filter($col.lt(v.clone()).or($col.eq(v).and(deals::id.lt(id))))
                } else {
                    q.filter($col.gt(v.clone()).or($col.eq(v).and(deals::id.gt(id))))
                };
            }
            let rows: Vec<DealRow> = q.select(DealRow::as_select()).load(conn).await?;
            let page = Page::from_rows(rows, page, $key);
            let next = page.next.clone();
            let items = deals_out(conn, account, page.items).await?;
            Ok(Page { items, next })
        }};
    }
    match sort {
        ListSort::Created => keyset!(
            deals::created_at,
            chrono::DateTime<chrono::Utc>,
            |r: &DealRow| (r.created_at, r.id)
        ),
        ListSort::Updated => keyset!(
            deals::updated_at,
            chrono::DateTime<chrono::Utc>,
            |r: &DealRow| (r.updated_at, r.id)
        ),
        ListSort::Name => keyset!(deals::name, String, |r: &DealRow| (r.name.clone(), r.id)),
        ListSort::Price => keyset!(deals::price, i64, |r: &DealRow| (r.price, r.id)),
        ListSort::Id => keyset!(deals::id, i64, |r: &DealRow| (r.id, r.id)),
    }
}

/// The list by page number: `limit` rows after `(page - 1) * limit`, and whether more follow.
pub(crate) async fn list_at(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    r: &Resolved,
    sort: ListSort,
    desc: bool,
    page: u32,
    limit: u32,
) -> AppResult<(Vec<Deal>, bool)> {
    let limit = i64::from(limit.clamp(1, kernel::paging::MAX_LIMIT));
    let offset = i64::from(page.max(1) - 1) * limit;
    let q = filtered(account, r).limit(limit + 1).offset(offset);
    macro_rules! ordered {
        ($col:expr) => {
            if desc {
                q.order(($col.desc(), deals::id.desc()))
            } else {
                q.order(($col.asc(), deals::id.asc()))
            }
        };
    }
    let q = match sort {
        ListSort::Created => ordered!(deals::created_at),
        ListSort::Updated => ordered!(deals::updated_at),
        ListSort::Name => ordered!(deals::name),
        ListSort::Price => ordered!(deals::price),
        ListSort::Id if desc => q.order(deals::id.desc()),
        ListSort::Id => q.order(deals::id.asc()),
    };
    let mut rows: Vec<DealRow> = q.select(DealRow::as_select()).load(conn).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((deals_out(conn, account, rows).await?, more))
}
