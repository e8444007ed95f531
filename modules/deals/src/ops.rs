//! Changes to one deal, each inside a caller's transaction with the deal's row locked: the
//! building blocks of the single-deal calls and of bulk actions.

use deals_api::events::{
    DealDeleted, DealResponsibleChanged, DealRestored, DealStageChanged, DealUpdated,
};
use deals_api::*;
use diesel::dsl::{count_star, now};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::events::EventEnvelope;
use kernel::{AccountId, AppError, AppResult, Caller, FieldError, UserId, outbox};
use serde_json::Value;

use crate::fields;
use crate::rows::{DealRow, StageRow};
use crate::schema::{deals, loss_reasons, stage_history, stage_totals};

/// The gap between neighbours in a column: room for 20 halvings before a column is renumbered.
pub(crate) const GAP: i64 = 1 << 20;

pub(crate) fn actor_of(caller: Caller) -> i64 {
    caller.actor.user_id().map(|u| u.0).unwrap_or(0)
}

pub(crate) fn shard_of(deal: i64) -> i16 {
    (deal.rem_euclid(16)) as i16
}

/// Adds a deal, as it is in `row`, to its column's totals for its responsible user
/// (`delta` = 1), or removes it (-1). A removal updates the existing row (an upsert would check
/// its insert values, -1, against `deals >= 0`).
pub(crate) async fn bump_totals(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    row: &DealRow,
    delta: i64,
) -> AppResult<()> {
    let (pipeline, stage, responsible) = (row.pipeline_id, row.stage_id, row.responsible_user_id);
    let budget = delta * row.price;
    let shard = shard_of(row.id);
    if delta < 0 {
        let n = diesel::update(
            stage_totals::table
                .filter(stage_totals::account_id.eq(account.0))
                .filter(stage_totals::pipeline_id.eq(pipeline))
                .filter(stage_totals::stage_id.eq(stage))
                .filter(stage_totals::responsible_user_id.eq(responsible))
                .filter(stage_totals::shard.eq(shard)),
        )
        .set((
            stage_totals::deals.eq(stage_totals::deals + delta),
            stage_totals::budget.eq(stage_totals::budget + budget),
        ))
        .execute(conn)
        .await?;
        if n != 1 {
            return Err(AppError::internal(
                "stage totals out of step with the deals",
            ));
        }
        return Ok(());
    }
    diesel::insert_into(stage_totals::table)
        .values((
            stage_totals::account_id.eq(account.0),
            stage_totals::pipeline_id.eq(pipeline),
            stage_totals::stage_id.eq(stage),
            stage_totals::responsible_user_id.eq(responsible),
            stage_totals::shard.eq(shard),
            stage_totals::deals.eq(delta),
            stage_totals::budget.eq(budget),
        ))
        .on_conflict((
            stage_totals::account_id,
            stage_totals::pipeline_id,
            stage_totals::stage_id,
            stage_totals::responsible_user_id,
            stage_totals::shard,
        ))
        .do_update()
        .set((
            stage_totals::deals.eq(stage_totals::deals + delta),
            stage_totals::budget.eq(stage_totals::budget + budget),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves a deal's count from its column's totals as it was (`from`) to those of its column now
/// (`to`), in one statement (`deals.move_totals`, which writes the two rows in key order so that
/// crossing moves never deadlock). The rows may be the same one (a new price).
pub(crate) async fn move_counts(
    mut conn: &AsyncPgConnection,
    account: AccountId,
    from: &DealRow,
    to: &DealRow,
) -> AppResult<()> {
    use diesel::sql_types::SmallInt;
    kernel::sql::query("SELECT deals.move_totals($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind::<BigInt, _>(account.0)
        .bind::<SmallInt, _>(shard_of(from.id))
        .bind::<BigInt, _>(from.pipeline_id)
        .bind::<BigInt, _>(from.stage_id)
        .bind::<BigInt, _>(from.responsible_user_id)
        .bind::<BigInt, _>(from.price)
        .bind::<BigInt, _>(to.pipeline_id)
        .bind::<BigInt, _>(to.stage_id)
        .bind::<BigInt, _>(to.responsible_user_id)
        .bind::<BigInt, _>(to.price)
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Counts a deal, as it is in `row`, into its column's totals.
pub(crate) async fn count_in(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    row: &DealRow,
) -> AppResult<()> {
    bump_totals(conn, account, row, 1).await
}

/// Takes a deal, as it was in `row`, out of its column's totals.
pub(crate) async fn count_out(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    row: &DealRow,
) -> AppResult<()> {
    bump_totals(conn, account, row, -1).await
}

/// Closes the deal's open stage-history row and opens one for `stage` (both statements sent
/// together).
pub(crate) async fn enter_stage(
    mut conn: &AsyncPgConnection,
    caller: Caller,
    deal: i64,
    pipeline: i64,
    stage: i64,
) -> AppResult<()> {
    let actor =
        serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
    // Raw SQL: diesel never caches an UPDATE's prepared statement, and this one runs on every
    // move (it was planned again each time).
    let close = kernel::sql::query(
        "UPDATE deals.stage_history SET left_at = now(), left_by = $2 WHERE deal_id = $1 AND left_at IS NULL",
    )
    .bind::<BigInt, _>(deal)
    .bind::<diesel::sql_types::Jsonb, _>(actor.clone())
    .execute(&mut conn);
    let open = diesel::insert_into(stage_history::table)
        .values((
            stage_history::account_id.eq(caller.account_id.0),
            stage_history::deal_id.eq(deal),
            stage_history::pipeline_id.eq(pipeline),
            stage_history::stage_id.eq(stage),
            stage_history::entered_by.eq(actor),
        ))
        .execute(&mut conn);
    futures_util::future::try_join(close, open).await?;
    Ok(())
}

/// Locks a deal of the account for a change: a live one, or (`deleted`) a deleted one.
pub(crate) async fn lock_deal(
    mut conn: &AsyncPgConnection,
    account: AccountId,
    id: DealId,
    deleted: bool,
) -> AppResult<DealRow> {
    let of_account = deals::account_id.eq(account.0).and(deals::id.eq(id.0));
    let found: Option<DealRow> = if deleted {
        deals::table
            .filter(of_account.and(deals::deleted_at.is_not_null()))
            .select(DealRow::as_select())
            .for_update()
            .first(&mut conn)
            .await
            .optional()?
    } else {
        deals::table
            .filter(of_account.and(deals::deleted_at.is_null()))
            .select(DealRow::as_select())
            .for_update()
            .first(&mut conn)
            .await
            .optional()?
    };
    found.ok_or_else(|| AppError::not_found("deal"))
}

/// The position for a deal placed at the top of a column, or right after `after`.
pub(crate) async fn position_in(
    mut conn: &AsyncPgConnection,
    account: AccountId,
    pipeline: i64,
    stage: i64,
    after: Option<i64>,
    moving: Option<i64>,
) -> AppResult<i64> {
    let column = deals::table
        .filter(deals::account_id.eq(account.0))
        .filter(deals::pipeline_id.eq(pipeline))
        .filter(deals::stage_id.eq(stage))
        .filter(deals::deleted_at.is_null())
        .filter(deals::id.ne(moving.unwrap_or(0)));
    let Some(after) = after else {
        let first: Option<i64> = column
            .select(deals::position)
            .order((deals::position, deals::id))
            .first(&mut conn)
            .await
            .optional()?;
        return Ok(first.map(|p| p - GAP).unwrap_or(0));
    };
    let anchor: i64 = column
        .filter(deals::id.eq(after))
        .select(deals::position)
        .first(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| {
            AppError::validation(
                "after",
                "not_found",
                "the deal to place it after is not in that column",
            )
        })?;
    let next: Option<i64> = column
        .filter(deals::position.gt(anchor))
        .select(deals::position)
        .order((deals::position, deals::id))
        .first(&mut conn)
        .await
        .optional()?;
    match next {
        None => Ok(anchor + GAP),
        Some(n) if n - anchor > 1 => Ok(anchor + (n - anchor) / 2),
        Some(_) => {
            // No room left between neighbours: space the column out again, then place it.
            kernel::sql::query(
                "UPDATE deals.deals d SET position = r.rn * $4 FROM (
                   SELECT id, row_number() OVER (ORDER BY position, id) AS rn FROM deals.deals
                    WHERE account_id = $1 AND pipeline_id = $2 AND stage_id = $3 AND deleted_at IS NULL
                 ) r WHERE d.id = r.id",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(pipeline)
            .bind::<BigInt, _>(stage)
            .bind::<BigInt, _>(GAP)
            .execute(&mut conn)
            .await?;
            let anchor: i64 = deals::table
                .filter(deals::id.eq(after))
                .select(deals::position)
                .first(&mut conn)
                .await?;
            Ok(anchor + GAP / 2)
        }
    }
}

/// A stage looked up for a deal to enter, and whether any custom field is required there.
pub(crate) struct TargetStage {
    pub row: StageRow,
    pub has_required: bool,
}

impl TargetStage {
    pub fn kind(&self) -> StageKind {
        StageKind::parse(&self.row.kind).unwrap_or(StageKind::Open)
    }
}

/// A stage's columns and whether a custom field is required there (`StageWithRequired`).
const STAGE_WITH_REQUIRED: &str = "SELECT s.pipeline_id, s.id, s.name, s.color, s.sort, s.kind,
                EXISTS (SELECT 1 FROM deals.custom_fields f
                         WHERE f.account_id = s.account_id
                           AND f.required_statuses @> jsonb_build_array(jsonb_build_object('pipeline_id', s.pipeline_id, 'status_id', s.id))
                       ) AS has_required
           FROM deals.stages s";

impl From<StageWithRequired> for TargetStage {
    fn from(f: StageWithRequired) -> TargetStage {
        TargetStage {
            row: f.stage,
            has_required: f.has_required,
        }
    }
}

#[derive(QueryableByName)]
struct StageWithRequired {
    #[diesel(embed)]
    stage: StageRow,
    #[diesel(sql_type = Bool)]
    has_required: bool,
}

/// For a move of a deal within its pipeline, looked up while the deal's row lock is asked for
/// (the three go in one round trip): the stage, and the top of its column. The pipeline is the
/// deal's as read before the lock; the caller checks it against the locked row.
pub(crate) async fn move_lookup(
    mut conn: &AsyncPgConnection,
    account: AccountId,
    deal: i64,
    stage: i64,
) -> AppResult<(Option<TargetStage>, i64)> {
    #[derive(QueryableByName)]
    struct Top {
        #[diesel(sql_type = Nullable<BigInt>)]
        top: Option<i64>,
    }
    let found = kernel::sql::query(
        format!(
        "{STAGE_WITH_REQUIRED}
          WHERE s.account_id = $1 AND s.id = $3
            AND s.pipeline_id = (SELECT d.pipeline_id FROM deals.deals d WHERE d.account_id = $1 AND d.id = $2)"
    ),
    )
    .bind::<BigInt, _>(account.0)
    .bind::<BigInt, _>(deal)
    .bind::<BigInt, _>(stage)
    .get_result::<StageWithRequired>(&mut conn);
    let top = kernel::sql::query(
        "SELECT min(c.position) AS top FROM deals.deals c
          WHERE c.account_id = $1
            AND c.pipeline_id = (SELECT d.pipeline_id FROM deals.deals d WHERE d.account_id = $1 AND d.id = $2)
            AND c.stage_id = $3 AND c.deleted_at IS NULL AND c.id <> $2",
    )
    .bind::<BigInt, _>(account.0)
    .bind::<BigInt, _>(deal)
    .bind::<BigInt, _>(stage)
    .get_result::<Top>(&mut conn);
    let (found, top) =
        futures_util::future::try_join(async { found.await.optional() }, top).await?;
    Ok((
        found.map(TargetStage::from),
        top.top.map(|p| p - GAP).unwrap_or(0),
    ))
}

/// A stage of the pipeline: the one asked for, or (none asked) the first open stage.
pub(crate) async fn find_stage(
    mut conn: &AsyncPgConnection,
    account: AccountId,
    pipeline: i64,
    stage: Option<i64>,
) -> AppResult<Option<TargetStage>> {
    let found: Option<StageWithRequired> = kernel::sql::query(format!(
        "{STAGE_WITH_REQUIRED}
          WHERE s.account_id = $1 AND s.pipeline_id = $2 AND ($3::bigint IS NULL OR s.id = $3)
          ORDER BY (s.kind <> 'open'), s.sort, s.id LIMIT 1"
    ))
    .bind::<BigInt, _>(account.0)
    .bind::<BigInt, _>(pipeline)
    .bind::<Nullable<BigInt>, _>(stage)
    .get_result(&mut conn)
    .await
    .optional()?;
    Ok(found.map(TargetStage::from))
}

/// Deals out of rows, with their tags' names (one query for all of them, none without tags).
pub(crate) async fn deals_out(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: Vec<DealRow>,
) -> AppResult<Vec<Deal>> {
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.tag_ids.iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names = fields::tag_names(conn, account, &ids).await?;
    Ok(rows.into_iter().map(|r| r.into_deal(&names)).collect())
}

pub(crate) async fn deal_out(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    row: DealRow,
) -> AppResult<Deal> {
    Ok(deals_out(conn, account, vec![row]).await?.remove(0))
}

/// What to do with a deal's tags.
#[derive(Debug, Clone)]
pub(crate) enum TagChange {
    Set(Vec<i64>),
    Add(Vec<i64>),
    Remove(Vec<i64>),
}

/// A checked change to a deal's own fields (`None`: leave as it is).
#[derive(Debug, Clone, Default)]
pub(crate) struct Change {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub responsible: Option<i64>,
    pub tags: Option<TagChange>,
    /// Values as given, checked against the definitions when applied.
    pub custom_fields: Option<FieldValues>,
    pub contact_ids: Option<Vec<i64>>,
    pub main_contact_id: Option<Option<i64>>,
    pub company_ids: Option<Vec<i64>>,
}

/// Contacts with the main one first, no duplicates, positive ids.
pub(crate) fn order_contacts(
    contacts: &[i64],
    main: Option<i64>,
    errors: &mut Vec<FieldError>,
) -> Vec<i64> {
    let mut out: Vec<i64> = main.into_iter().collect();
    for c in contacts {
        if !out.contains(c) {
            out.push(*c);
        }
    }
    if out.iter().any(|c| *c <= 0) {
        errors.push(FieldError {
            field: "contact_ids".into(),
            code: "invalid".into(),
            message: "contact ids are positive numbers".into(),
        });
    }
    out
}

fn json_ids(ids: &[i64]) -> Value {
    Value::from(ids.to_vec())
}

/// Applies `change` to the locked deal `current`; records totals and events.
pub(crate) async fn update_locked(
    tx: &mut AsyncPgConnection,
    caller: Caller,
    defs: &[CustomField],
    current: &DealRow,
    change: &Change,
) -> AppResult<DealRow> {
    let account = caller.account_id;
    let mut errors = Vec::new();
    let current_values = match &current.custom_fields {
        Value::Object(m) => m.clone(),
        _ => FieldValues::new(),
    };
    let values = match &change.custom_fields {
        Some(input) => {
            let values = kernel::fields::apply_values(defs, &current_values, input, &mut errors);
            // A field required at the deal's stage cannot be emptied while it is there.
            let mut missing = Vec::new();
            fields::check_required(
                defs,
                PipelineId(current.pipeline_id),
                StageId(current.stage_id),
                "",
                &values,
                &mut missing,
            );
            // Only the fields this change empties: a deal that entered its stage before the
            // field became required keeps its other values as they are.
            errors.extend(
                missing
                    .into_iter()
                    .filter(|_| !caller.actor.is_import())
                    .filter(|e| input.contains_key(e.field.trim_start_matches("custom_fields.")))
                    .map(|mut e| {
                        e.message = "this field is required at the deal's stage".into();
                        e
                    }),
            );
            values
        }
        None => current_values.clone(),
    };
    if !errors.is_empty() {
        return Err(AppError::from_fields(errors));
    }
    let tag_ids: Vec<i64> = match &change.tags {
        None => current.tag_ids.clone(),
        Some(TagChange::Set(ids)) => ids.clone(),
        Some(TagChange::Add(ids)) => {
            let mut t = current.tag_ids.clone();
            t.extend(ids.iter().filter(|i| !current.tag_ids.contains(i)));
            t
        }
        Some(TagChange::Remove(ids)) => current
            .tag_ids
            .iter()
            .copied()
            .filter(|i| !ids.contains(i))
            .collect(),
    };
    if tag_ids.len() > fields::MAX_TAGS_PER_DEAL {
        return Err(AppError::validation(
            "tags",
            "too_many",
            "too many tags on a deal",
        ));
    }
    let main = change.main_contact_id.unwrap_or(current.main_contact_id);
    let mut contact_errors = Vec::new();
    let contacts = match (&change.contact_ids, change.main_contact_id) {
        (None, None) => current.contact_ids.clone(),
        (given, _) => order_contacts(
            given.as_deref().unwrap_or(&current.contact_ids),
            main,
            &mut contact_errors,
        ),
    };
    if !contact_errors.is_empty() {
        return Err(AppError::from_fields(contact_errors));
    }
    let main = main.or_else(|| <[i64]>::first(&contacts).copied());
    let companies = change
        .company_ids
        .clone()
        .unwrap_or_else(|| current.company_ids.clone());
    let values_json = Value::Object(values.clone());
    // Raw SQL, so that the prepared statement is kept (diesel never caches an UPDATE's).
    use diesel::sql_types::{Array, Jsonb, Text};
    let row: DealRow = kernel::sql::query(
        "UPDATE deals.deals SET name = $2, price = $3, responsible_user_id = $4, tag_ids = $5,
                custom_fields = $6, contact_ids = $7, main_contact_id = $8, company_ids = $9,
                updated_at = now(), updated_by = $10
          WHERE id = $1 RETURNING *",
    )
    .bind::<BigInt, _>(current.id)
    .bind::<Text, _>(change.name.clone().unwrap_or_else(|| current.name.clone()))
    .bind::<BigInt, _>(change.price.unwrap_or(current.price))
    .bind::<BigInt, _>(change.responsible.unwrap_or(current.responsible_user_id))
    .bind::<Array<BigInt>, _>(tag_ids)
    .bind::<Jsonb, _>(values_json)
    .bind::<Array<BigInt>, _>(contacts)
    .bind::<Nullable<BigInt>, _>(main)
    .bind::<Array<BigInt>, _>(companies)
    .bind::<BigInt, _>(actor_of(caller))
    .get_result(tx)
    .await?;
    if row.price != current.price || row.responsible_user_id != current.responsible_user_id {
        move_counts(tx, account, current, &row).await?;
    }
    let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
    let mut diff = |key: &str, b: Value, a: Value| {
        if b != a {
            before.insert(key.into(), b);
            after.insert(key.into(), a);
        }
    };
    diff("name", current.name.clone().into(), row.name.clone().into());
    diff("price", current.price.into(), row.price.into());
    diff(
        "responsible_user_id",
        current.responsible_user_id.into(),
        row.responsible_user_id.into(),
    );
    diff(
        "tag_ids",
        json_ids(&current.tag_ids),
        json_ids(&row.tag_ids),
    );
    diff(
        "contact_ids",
        json_ids(&current.contact_ids),
        json_ids(&row.contact_ids),
    );
    diff(
        "company_ids",
        json_ids(&current.company_ids),
        json_ids(&row.company_ids),
    );
    // Custom fields: only the ones that changed, by id.
    let (mut cf_before, mut cf_after) = (serde_json::Map::new(), serde_json::Map::new());
    let keys: std::collections::BTreeSet<&String> =
        current_values.keys().chain(values.keys()).collect();
    for k in keys {
        let (b, a) = (current_values.get(k), values.get(k));
        if b != a {
            cf_before.insert(k.clone(), b.cloned().unwrap_or(Value::Null));
            cf_after.insert(k.clone(), a.cloned().unwrap_or(Value::Null));
        }
    }
    if !cf_after.is_empty() {
        diff("custom_fields", cf_before.into(), cf_after.into());
    }
    let mut events = Vec::new();
    if !after.is_empty() {
        events.push(EventEnvelope::new(
            caller,
            &DealUpdated {
                deal_id: DealId(row.id),
                before: before.into(),
                after: after.into(),
            },
        )?);
    }
    if row.responsible_user_id != current.responsible_user_id {
        events.push(EventEnvelope::new(
            caller,
            &DealResponsibleChanged {
                deal_id: DealId(row.id),
                from_user_id: UserId(current.responsible_user_id),
                to_user_id: UserId(row.responsible_user_id),
            },
        )?);
    }
    outbox::append(tx, crate::SCHEMA, &events).await?;
    Ok(row)
}

/// Moves the locked deal `current` to `target` (of its pipeline), after `after` or at the top.
/// `defs` must hold the account's fields when the target stage requires some.
/// Where in the column a moved deal goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place {
    /// At the top; the position there when the caller looked it up already.
    Top(Option<i64>),
    /// Right after this deal.
    After(i64),
}

impl Place {
    fn after(self) -> Option<i64> {
        match self {
            Place::After(d) => Some(d),
            Place::Top(_) => None,
        }
    }
}

pub(crate) async fn move_locked(
    tx: &mut AsyncPgConnection,
    caller: Caller,
    defs: &[CustomField],
    current: &DealRow,
    target: &TargetStage,
    place: Place,
    loss_reason: Option<LossReasonId>,
) -> AppResult<DealRow> {
    let account = caller.account_id;
    let kind = target.kind();
    let loss_reason = match (kind, loss_reason) {
        (StageKind::Lost, Some(r)) => {
            let found: i64 = loss_reasons::table
                .filter(loss_reasons::account_id.eq(account.0))
                .filter(loss_reasons::id.eq(r.0))
                .select(count_star())
                .first(tx)
                .await?;
            if found == 0 {
                return Err(AppError::validation(
                    "loss_reason_id",
                    "not_found",
                    "no such loss reason",
                ));
            }
            Some(r.0)
        }
        (StageKind::Lost, None) => {
            return Err(AppError::validation(
                "loss_reason_id",
                "required",
                "say why the deal was lost",
            ));
        }
        _ => None,
    };
    // The closing stages' ids are shared by the pipelines: a move to another pipeline's 142 is
    // a change too.
    let changed_stage =
        current.stage_id != target.row.id || current.pipeline_id != target.row.pipeline_id;
    if changed_stage && target.has_required && !caller.actor.is_import() {
        let values = match &current.custom_fields {
            Value::Object(m) => m.clone(),
            _ => FieldValues::new(),
        };
        let mut errors = Vec::new();
        fields::check_required(
            defs,
            PipelineId(target.row.pipeline_id),
            StageId(target.row.id),
            &target.row.name,
            &values,
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(AppError::from_fields(errors));
        }
    }
    // The top of the column, when the caller looked it up already (together with the stage).
    let position = match place {
        Place::Top(Some(p)) => p,
        Place::Top(None) | Place::After(_) => {
            position_in(
                tx,
                account,
                target.row.pipeline_id,
                target.row.id,
                place.after(),
                Some(current.id),
            )
            .await?
        }
    };
    let closed_at = match (kind.is_closed(), current.closed_at) {
        (true, Some(t)) if !changed_stage => Some(t),
        (true, _) => Some(chrono::Utc::now()),
        (false, _) => None,
    };
    // Raw SQL, so that the prepared statement is kept (diesel never caches an UPDATE's): the
    // board's every move runs it.
    let row: DealRow = kernel::sql::query(
        "UPDATE deals.deals SET pipeline_id = $2, stage_id = $3, position = $4, loss_reason_id = $5,
                closed_at = $6, updated_at = now(), updated_by = $7
          WHERE id = $1 RETURNING *",
    )
    .bind::<BigInt, _>(current.id)
    .bind::<BigInt, _>(target.row.pipeline_id)
    .bind::<BigInt, _>(target.row.id)
    .bind::<BigInt, _>(position)
    .bind::<Nullable<BigInt>, _>(loss_reason)
    .bind::<Nullable<diesel::sql_types::Timestamptz>, _>(closed_at)
    .bind::<BigInt, _>(actor_of(caller))
    .get_result(tx)
    .await?;
    if changed_stage {
        let event = DealStageChanged {
            deal_id: DealId(row.id),
            pipeline_id: PipelineId(row.pipeline_id),
            from_stage_id: StageId(current.stage_id),
            to_stage_id: StageId(row.stage_id),
            loss_reason_id: row.loss_reason_id.map(LossReasonId),
            from_pipeline_id: (current.pipeline_id != row.pipeline_id)
                .then_some(PipelineId(current.pipeline_id)),
        };
        let events = [EventEnvelope::new(caller, &event)?];
        // The stage history, the event and the totals in one round trip (pipelined). The
        // totals last: their rows are shared by the column's movers, so they are held for as
        // short a time as can be (until the commit).
        let conn: &AsyncPgConnection = tx;
        futures_util::future::try_join3(
            enter_stage(conn, caller, row.id, row.pipeline_id, row.stage_id),
            outbox::append(conn, crate::SCHEMA, &events),
            move_counts(conn, account, current, &row),
        )
        .await?;
    }
    Ok(row)
}

/// The common move in one statement, so one round trip and one commit (see the
/// `deals.move_deal` function): a deal of the caller's `scope` to the top of another open or won
/// stage of its pipeline that requires no field. The row lock, the stage lookup, the update, the
/// stage history, the DealStageChanged event and the column's totals happen in it, atomically,
/// with the same effects as [`move_locked`]. `None`, with nothing written, otherwise (no such
/// deal or stage, not the caller's, the same stage, a lost stage, required fields): the caller
/// then takes the checked path, which says why or makes the move.
pub(crate) async fn move_fast(
    conn: &mut AsyncPgConnection,
    caller: Caller,
    allowed: Option<&[i64]>,
    deal: DealId,
    stage: StageId,
) -> AppResult<Option<DealRow>> {
    use diesel::sql_types::{Integer, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
    use kernel::events::DomainEvent;
    let actor =
        serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
    let (id, occurred_at) = (uuid::Uuid::now_v7(), chrono::Utc::now());
    let row: Option<DealRow> = kernel::sql::query(
        "SELECT * FROM deals.move_deal($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind::<BigInt, _>(caller.account_id.0)
    .bind::<BigInt, _>(deal.0)
    .bind::<BigInt, _>(stage.0)
    .bind::<Nullable<diesel::sql_types::Array<BigInt>>, _>(allowed)
    .bind::<BigInt, _>(GAP)
    .bind::<BigInt, _>(actor_of(caller))
    .bind::<Jsonb, _>(&actor)
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(DealStageChanged::TYPE)
    .bind::<Integer, _>(DealStageChanged::VERSION)
    .bind::<Timestamptz, _>(occurred_at)
    .bind::<Nullable<SqlUuid>, _>(caller.cause)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row)
}

/// The deal a command with request key `key` (a caller's cause) created, deleted or not.
pub(crate) async fn requested(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    key: uuid::Uuid,
) -> AppResult<Option<DealRow>> {
    Ok(
        kernel::sql::query("SELECT * FROM deals.deals WHERE account_id = $1 AND request_key = $2")
            .bind::<BigInt, _>(account.0)
            .bind::<diesel::sql_types::Uuid, _>(key)
            .get_result(conn)
            .await
            .optional()?,
    )
}

/// Soft-deletes the locked deal `current`.
pub(crate) async fn delete_locked(
    tx: &mut AsyncPgConnection,
    caller: Caller,
    current: &DealRow,
) -> AppResult<()> {
    diesel::update(deals::table.filter(deals::id.eq(current.id)))
        .set((
            deals::deleted_at.eq(now),
            deals::updated_at.eq(now),
            deals::updated_by.eq(actor_of(caller)),
        ))
        .execute(tx)
        .await?;
    count_out(tx, caller.account_id, current).await?;
    outbox::append(
        tx,
        crate::SCHEMA,
        &[EventEnvelope::new(
            caller,
            &DealDeleted {
                deal_id: DealId(current.id),
            },
        )?],
    )
    .await
}

/// Restores the locked, deleted deal `current`.
pub(crate) async fn restore_locked(
    tx: &mut AsyncPgConnection,
    caller: Caller,
    current: &DealRow,
) -> AppResult<DealRow> {
    let row: DealRow = diesel::update(deals::table.filter(deals::id.eq(current.id)))
        .set((
            deals::deleted_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            deals::updated_at.eq(now),
            deals::updated_by.eq(actor_of(caller)),
        ))
        .returning(DealRow::as_returning())
        .get_result(tx)
        .await?;
    count_in(tx, caller.account_id, &row).await?;
    outbox::append(
        tx,
        crate::SCHEMA,
        &[EventEnvelope::new(
            caller,
            &DealRestored {
                deal_id: DealId(row.id),
            },
        )?],
    )
    .await?;
    Ok(row)
}

/// Locks several live deals of the account, in id order (so concurrent batches never
/// deadlock); every id must be found.
pub(crate) async fn lock_many(
    tx: &mut AsyncPgConnection,
    account: AccountId,
    ids: &[i64],
) -> AppResult<Vec<DealRow>> {
    let rows: Vec<DealRow> = deals::table
        .filter(deals::account_id.eq(account.0))
        .filter(deals::id.eq_any(ids))
        .filter(deals::deleted_at.is_null())
        .order(deals::id)
        .select(DealRow::as_select())
        .for_update()
        .load(tx)
        .await?;
    if rows.len() != ids.len() {
        return Err(AppError::not_found("deal"));
    }
    Ok(rows)
}

/// A new deal's own values, checked.
pub(crate) struct Insert<'a> {
    pub pipeline: i64,
    pub stage: i64,
    pub name: &'a str,
    pub price: i64,
    pub responsible: i64,
    pub closed: bool,
    pub tag_ids: &'a [i64],
    pub custom_fields: &'a Value,
    pub contact_ids: &'a [i64],
    pub main_contact_id: Option<i64>,
    pub company_ids: &'a [i64],
}

/// Inserts a deal at the top of its column, opens its stage history and counts it into the
/// column's totals, in one statement (the hot path of every create: one round trip, not four).
pub(crate) async fn insert_deal(
    tx: &mut AsyncPgConnection,
    caller: Caller,
    new: &Insert<'_>,
) -> AppResult<DealRow> {
    use diesel::sql_types::{Array, Jsonb, Text, Timestamptz};
    let actor =
        serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
    let row: DealRow = kernel::sql::query(
        "WITH top AS (
            SELECT coalesce(min(position) - $13, 0) AS position FROM deals.deals
             WHERE account_id = $1 AND pipeline_id = $2 AND stage_id = $3 AND deleted_at IS NULL
         ), d AS (
            INSERT INTO deals.deals (account_id, pipeline_id, stage_id, name, price, responsible_user_id,
                                     position, created_by, updated_by, closed_at, tag_ids, custom_fields,
                                     contact_ids, main_contact_id, company_ids)
            SELECT $1, $2, $3, $4, $5, $6, top.position, $7, $7, $8, $9, $10, $11, $12, $14 FROM top
            RETURNING *
         ), h AS (
            INSERT INTO deals.stage_history (account_id, deal_id, pipeline_id, stage_id, entered_by)
            SELECT account_id, id, pipeline_id, stage_id, $15 FROM d
         ), t AS (
            INSERT INTO deals.stage_totals AS t (account_id, pipeline_id, stage_id, responsible_user_id, shard, deals, budget)
            SELECT account_id, pipeline_id, stage_id, responsible_user_id, (id % 16)::smallint, 1, price FROM d
            ON CONFLICT (account_id, pipeline_id, stage_id, responsible_user_id, shard)
            DO UPDATE SET deals = t.deals + 1, budget = t.budget + EXCLUDED.budget
         )
         SELECT * FROM d",
    )
    .bind::<BigInt, _>(caller.account_id.0)
    .bind::<BigInt, _>(new.pipeline)
    .bind::<BigInt, _>(new.stage)
    .bind::<Text, _>(new.name)
    .bind::<BigInt, _>(new.price)
    .bind::<BigInt, _>(new.responsible)
    .bind::<BigInt, _>(actor_of(caller))
    .bind::<Nullable<Timestamptz>, _>(new.closed.then(chrono::Utc::now))
    .bind::<Array<BigInt>, _>(new.tag_ids)
    .bind::<Jsonb, _>(new.custom_fields)
    .bind::<Array<BigInt>, _>(new.contact_ids)
    .bind::<Nullable<BigInt>, _>(new.main_contact_id)
    .bind::<BigInt, _>(GAP)
    .bind::<Array<BigInt>, _>(new.company_ids)
    .bind::<Jsonb, _>(&actor)
    .get_result(tx)
    .await?;
    Ok(row)
}

/// The common create in one statement, so one round trip and one commit: a deal without tags or
/// custom-field values into a stage (the one asked for, or the first open one) that requires no
/// field. The stage lookup, the insert at the top of the column, the stage history, the column's
/// totals and the DealCreated event all happen in it, atomically. `None` when the stage is not
/// there or requires fields: the caller then takes the checked path, which says why.
pub(crate) async fn create_fast(
    conn: &mut AsyncPgConnection,
    caller: Caller,
    new: &NewDeal,
    name: &str,
    responsible: UserId,
) -> AppResult<Option<DealRow>> {
    use diesel::sql_types::{Integer, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
    // The event with what is known now; the statement fills in the deal's id and its stage.
    let event = EventEnvelope::new(
        caller,
        &deals_api::events::DealCreated {
            deal_id: DealId(0),
            name: name.to_string(),
            price: new.price,
            pipeline_id: new.pipeline_id,
            stage_id: new.stage_id.unwrap_or(StageId(0)),
            responsible_user_id: responsible,
            tag_ids: Vec::new(),
            contact_ids: Some(new.contact_ids.clone()),
        },
    )?;
    let actor =
        serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
    let row: Option<DealRow> = kernel::sql::query(
        "SELECT * FROM deals.create_deal($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind::<BigInt, _>(caller.account_id.0)
    .bind::<BigInt, _>(new.pipeline_id.0)
    .bind::<Nullable<BigInt>, _>(new.stage_id.map(|s| s.0))
    .bind::<Text, _>(name)
    .bind::<BigInt, _>(new.price)
    .bind::<BigInt, _>(responsible.0)
    .bind::<BigInt, _>(GAP)
    .bind::<BigInt, _>(actor_of(caller))
    .bind::<diesel::sql_types::Array<BigInt>, _>(&new.contact_ids)
    .bind::<Nullable<BigInt>, _>(new.main_contact_id)
    .bind::<diesel::sql_types::Array<BigInt>, _>(&new.company_ids)
    .bind::<Jsonb, _>(&actor)
    .bind::<SqlUuid, _>(event.id)
    .bind::<Text, _>(&event.event_type)
    .bind::<Integer, _>(event.version)
    .bind::<Timestamptz, _>(event.occurred_at)
    .bind::<Jsonb, _>(&event.payload)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row)
}

/// One deal of a batch for [`create_fast_many`], checked already: its trimmed name and its
/// contacts with the main one first.
pub(crate) struct FastNew<'a> {
    pub new: &'a NewDeal,
    pub name: String,
    pub contacts: Vec<i64>,
    pub responsible: UserId,
}

/// The common create of a whole batch in one statement (see the `deals.create_deals`
/// function): deals without tags or custom-field values into stages that require no field.
/// `None`, with nothing written, when any deal's stage is not there or requires fields: the
/// caller then takes the checked path for each deal, which says why. With `batch_lock`, the
/// statement first takes the account's batch lock of that class, shared, until its transaction
/// ends (run on its own, the statement is its transaction: one round trip in all).
pub(crate) async fn create_fast_many(
    conn: &mut AsyncPgConnection,
    caller: Caller,
    batch: &[FastNew<'_>],
    batch_lock: Option<i32>,
) -> AppResult<Option<Vec<DealRow>>> {
    use diesel::sql_types::{Array, Integer, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
    if batch.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut events = Vec::with_capacity(batch.len());
    for f in batch {
        events.push(EventEnvelope::new(
            caller,
            &deals_api::events::DealCreated {
                deal_id: DealId(0),
                name: f.name.clone(),
                price: f.new.price,
                pipeline_id: f.new.pipeline_id,
                stage_id: f.new.stage_id.unwrap_or(StageId(0)),
                responsible_user_id: f.responsible,
                tag_ids: Vec::new(),
                contact_ids: Some(f.contacts.clone()),
            },
        )?);
    }
    let first = &events[0];
    let actor =
        serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
    let rows: Vec<DealRow> = kernel::sql::query(
        "SELECT * FROM deals.create_deals_locked($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind::<Nullable<Integer>, _>(batch_lock)
    .bind::<BigInt, _>(caller.account_id.0)
    .bind::<BigInt, _>(GAP)
    .bind::<BigInt, _>(actor_of(caller))
    .bind::<Jsonb, _>(&actor)
    .bind::<Text, _>(&first.event_type)
    .bind::<Integer, _>(first.version)
    .bind::<Timestamptz, _>(first.occurred_at)
    .bind::<Array<BigInt>, _>(batch.iter().map(|f| f.new.pipeline_id.0).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(
        batch
            .iter()
            .map(|f| f.new.stage_id.map(|s| s.0))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(batch.iter().map(|f| f.name.as_str()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(batch.iter().map(|f| f.new.price).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(batch.iter().map(|f| f.responsible.0).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(
        batch
            .iter()
            .map(|f| json_ids(&f.contacts))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<BigInt>>, _>(
        batch
            .iter()
            .map(|f| <[i64]>::first(&f.contacts).copied())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Jsonb>, _>(
        batch
            .iter()
            .map(|f| json_ids(&f.new.company_ids))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<SqlUuid>, _>(events.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(events.iter().map(|e| &e.payload).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok((rows.len() == batch.len()).then_some(rows))
}
