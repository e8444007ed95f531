//! `DealsService`: the deals module's implementation of the `Deals` trait.

use std::sync::Arc;

use accounts_api::{Accounts, Action};
use async_trait::async_trait;
use deals_api::events::{
    DealCreated, DealDeleted, DealResponsibleChanged, DealRestored, DealStageChanged, DealUpdated,
};
use deals_api::*;
use diesel::dsl::{count_star, now};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::db::DbPool;
use kernel::events::EventEnvelope;
use kernel::paging::{Cursor, Page, PageRequest};
use kernel::{AccountId, AppError, AppResult, Caller, ErrorCode, FieldError, UserId, outbox};

use crate::access::{self, Scope};
use crate::rows::{DealRow, StageRow};
use crate::schema::{deals, loss_reasons, pipelines, stage_history, stage_totals, stages};

/// The gap between neighbours in a column: room for 20 halvings before a column is renumbered.
const GAP: i64 = 1 << 20;

pub struct DealsService {
    pool: DbPool,
    accounts: Arc<dyn Accounts>,
}

impl DealsService {
    pub fn new(pool: DbPool, accounts: Arc<dyn Accounts>) -> DealsService {
        DealsService { pool, accounts }
    }

    async fn conn(&self) -> AppResult<kernel::db::DbConn> {
        Ok(self.pool.get().await?)
    }

    async fn require_admin(&self, caller: Caller) -> AppResult<()> {
        let Some(me) = caller.actor.user_id() else {
            return Ok(());
        };
        let user = self.accounts.user(caller, me).await?;
        if user.is_admin && user.is_active {
            Ok(())
        } else {
            Err(AppError::forbidden("only administrators manage pipelines"))
        }
    }
}

fn actor_of(caller: Caller) -> i64 {
    caller.actor.user_id().map(|u| u.0).unwrap_or(0)
}

fn check_name(field: &str, value: &str, max: usize, errors: &mut Vec<FieldError>) -> String {
    let v = value.trim().to_string();
    if v.is_empty() {
        errors.push(FieldError {
            field: field.into(),
            code: "required".into(),
            message: "this field is required".into(),
        });
    } else if v.chars().count() > max {
        errors.push(FieldError {
            field: field.into(),
            code: "too_long".into(),
            message: format!("at most {max} characters"),
        });
    }
    v
}

fn check_color(field: &str, value: &str, errors: &mut Vec<FieldError>) -> String {
    let v = value.trim().to_lowercase();
    let ok = v.len() == 7 && v.starts_with('#') && v[1..].chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        errors.push(FieldError {
            field: field.into(),
            code: "invalid".into(),
            message: "a colour such as #99ccff".into(),
        });
    }
    v
}

fn finish(errors: Vec<FieldError>) -> AppResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::from_fields(errors))
    }
}

async fn load_stages(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pipeline: PipelineId,
) -> AppResult<Vec<Stage>> {
    let rows: Vec<StageRow> = stages::table
        .filter(stages::account_id.eq(account.0))
        .filter(stages::pipeline_id.eq(pipeline.0))
        .order((stages::sort, stages::id))
        .select(StageRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

async fn load_pipeline(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: PipelineId,
) -> AppResult<Pipeline> {
    let (name, sort, is_main): (String, i32, bool) = pipelines::table
        .filter(pipelines::account_id.eq(account.0))
        .filter(pipelines::id.eq(id.0))
        .select((pipelines::name, pipelines::sort, pipelines::is_main))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("pipeline"))?;
    Ok(Pipeline {
        id,
        name,
        sort,
        is_main,
        stages: load_stages(conn, account, id).await?,
    })
}

/// Sort keys: incoming first, open stages in the middle, won and lost last.
const INCOMING_SORT: i32 = 0;
const WON_SORT: i32 = 100_000;
const LOST_SORT: i32 = 100_001;

/// A stage about to be stored; `id` is given for the system stages 142 and 143 only.
struct StageSpec<'a> {
    id: Option<i64>,
    name: &'a str,
    color: &'a str,
    sort: i32,
    kind: StageKind,
}

async fn insert_stage(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pipeline: PipelineId,
    spec: StageSpec<'_>,
) -> AppResult<Stage> {
    let StageSpec {
        id,
        name,
        color,
        sort,
        kind,
    } = spec;
    let id = match id {
        Some(id) => id,
        None => {
            diesel::select(diesel::dsl::sql::<BigInt>("nextval('deals.stage_ids')"))
                .get_result(conn)
                .await?
        }
    };
    let row: StageRow = diesel::insert_into(stages::table)
        .values((
            stages::pipeline_id.eq(pipeline.0),
            stages::id.eq(id),
            stages::account_id.eq(account.0),
            stages::name.eq(name),
            stages::color.eq(color),
            stages::sort.eq(sort),
            stages::kind.eq(kind.as_str()),
        ))
        .returning(StageRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row.into())
}

/// The totals shard a deal counts in (see the migration).
fn shard_of(deal: i64) -> i16 {
    (deal.rem_euclid(16)) as i16
}

/// Adds a deal, as it is in `row`, to its column's totals for its responsible user
/// (`delta` = 1), or removes it (-1). A removal updates the existing row (an upsert would check
/// its insert values, -1, against `deals >= 0`).
async fn bump_totals(
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

/// Counts a deal, as it is in `row`, into its column's totals.
async fn count_in(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    row: &DealRow,
) -> AppResult<()> {
    bump_totals(conn, account, row, 1).await
}

/// Takes a deal, as it was in `row`, out of its column's totals.
async fn count_out(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    row: &DealRow,
) -> AppResult<()> {
    bump_totals(conn, account, row, -1).await
}

/// Closes the deal's open stage-history row and opens one for `stage`.
async fn enter_stage(
    conn: &mut AsyncPgConnection,
    caller: Caller,
    deal: i64,
    pipeline: i64,
    stage: i64,
) -> AppResult<()> {
    let actor =
        serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
    diesel::update(
        stage_history::table
            .filter(stage_history::deal_id.eq(deal))
            .filter(stage_history::left_at.is_null()),
    )
    .set((
        stage_history::left_at.eq(now),
        stage_history::left_by.eq(Some(&actor)),
    ))
    .execute(conn)
    .await?;
    start_stage(conn, caller, deal, pipeline, stage).await
}

/// Opens a stage-history row (a new deal has none to close).
async fn start_stage(
    conn: &mut AsyncPgConnection,
    caller: Caller,
    deal: i64,
    pipeline: i64,
    stage: i64,
) -> AppResult<()> {
    let actor =
        serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
    diesel::insert_into(stage_history::table)
        .values((
            stage_history::account_id.eq(caller.account_id.0),
            stage_history::deal_id.eq(deal),
            stage_history::pipeline_id.eq(pipeline),
            stage_history::stage_id.eq(stage),
            stage_history::entered_by.eq(&actor),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks a deal of the account for a change: a live one, or (`deleted`) a deleted one.
async fn lock_deal(
    conn: &mut AsyncPgConnection,
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
            .first(conn)
            .await
            .optional()?
    } else {
        deals::table
            .filter(of_account.and(deals::deleted_at.is_null()))
            .select(DealRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
    };
    found.ok_or_else(|| AppError::not_found("deal"))
}

/// The position for a deal placed at the top of a column, or right after `after`.
async fn position_in(
    conn: &mut AsyncPgConnection,
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
            .first(conn)
            .await
            .optional()?;
        return Ok(first.map(|p| p - GAP).unwrap_or(0));
    };
    let anchor: i64 = column
        .filter(deals::id.eq(after))
        .select(deals::position)
        .first(conn)
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
        .first(conn)
        .await
        .optional()?;
    match next {
        None => Ok(anchor + GAP),
        Some(n) if n - anchor > 1 => Ok(anchor + (n - anchor) / 2),
        Some(_) => {
            // No room left between neighbours: space the column out again, then place it.
            diesel::sql_query(
                "UPDATE deals.deals d SET position = r.rn * $4 FROM (
                   SELECT id, row_number() OVER (ORDER BY position, id) AS rn FROM deals.deals
                    WHERE account_id = $1 AND pipeline_id = $2 AND stage_id = $3 AND deleted_at IS NULL
                 ) r WHERE d.id = r.id",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(pipeline)
            .bind::<BigInt, _>(stage)
            .bind::<BigInt, _>(GAP)
            .execute(conn)
            .await?;
            let anchor: i64 = deals::table
                .filter(deals::id.eq(after))
                .select(deals::position)
                .first(conn)
                .await?;
            Ok(anchor + GAP / 2)
        }
    }
}

#[async_trait]
impl Deals for DealsService {
    async fn create_pipeline(&self, caller: Caller, new: NewPipeline) -> AppResult<Pipeline> {
        self.require_admin(caller).await?;
        let mut errors = Vec::new();
        let name = check_name("name", &new.name, 100, &mut errors);
        let open: Vec<(String, String)> = new
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    check_name(&format!("stages.{i}.name"), &s.name, 100, &mut errors),
                    check_color(&format!("stages.{i}.color"), &s.color, &mut errors),
                )
            })
            .collect();
        if open.len() + 3 > MAX_STAGES {
            errors.push(FieldError {
                field: "stages".into(),
                code: "too_many".into(),
                message: format!("at most {MAX_STAGES} stages"),
            });
        }
        finish(errors)?;
        let mut conn = self.conn().await?;
        let account = caller.account_id;
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let existing: i64 = pipelines::table
                    .filter(pipelines::account_id.eq(account.0))
                    .select(count_star())
                    .first(tx)
                    .await?;
                if existing as usize >= MAX_PIPELINES {
                    return Err(AppError::validation(
                        "name",
                        "too_many",
                        "an account has at most 50 pipelines",
                    ));
                }
                let id: i64 = diesel::insert_into(pipelines::table)
                    .values((
                        pipelines::account_id.eq(account.0),
                        pipelines::name.eq(&name),
                        pipelines::sort.eq(existing as i32),
                        pipelines::is_main.eq(existing == 0),
                    ))
                    .returning(pipelines::id)
                    .get_result(tx)
                    .await?;
                let p = PipelineId(id);
                insert_stage(
                    tx,
                    account,
                    p,
                    StageSpec {
                        id: None,
                        name: "Incoming leads",
                        color: "#c1c1c1",
                        sort: INCOMING_SORT,
                        kind: StageKind::Incoming,
                    },
                )
                .await?;
                for (i, (n, c)) in open.iter().enumerate() {
                    insert_stage(
                        tx,
                        account,
                        p,
                        StageSpec {
                            id: None,
                            name: n,
                            color: c,
                            sort: (i as i32 + 1) * 10,
                            kind: StageKind::Open,
                        },
                    )
                    .await?;
                }
                insert_stage(
                    tx,
                    account,
                    p,
                    StageSpec {
                        id: Some(WON.0),
                        name: "Closed – won",
                        color: "#ccff66",
                        sort: WON_SORT,
                        kind: StageKind::Won,
                    },
                )
                .await?;
                insert_stage(
                    tx,
                    account,
                    p,
                    StageSpec {
                        id: Some(LOST.0),
                        name: "Closed – lost",
                        color: "#d5d8db",
                        sort: LOST_SORT,
                        kind: StageKind::Lost,
                    },
                )
                .await?;
                Ok(p)
            })
            .await?;
        load_pipeline(&mut conn, account, id).await
    }

    async fn pipelines(&self, caller: Caller) -> AppResult<Vec<Pipeline>> {
        let mut conn = self.conn().await?;
        let ids: Vec<i64> = pipelines::table
            .filter(pipelines::account_id.eq(caller.account_id.0))
            .order((pipelines::sort, pipelines::id))
            .select(pipelines::id)
            .load(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(load_pipeline(&mut conn, caller.account_id, PipelineId(id)).await?);
        }
        Ok(out)
    }

    async fn pipeline(&self, caller: Caller, id: PipelineId) -> AppResult<Pipeline> {
        let mut conn = self.conn().await?;
        load_pipeline(&mut conn, caller.account_id, id).await
    }

    async fn add_stage(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        new: NewStage,
    ) -> AppResult<Stage> {
        self.require_admin(caller).await?;
        let mut errors = Vec::new();
        let name = check_name("name", &new.name, 100, &mut errors);
        let color = check_color("color", &new.color, &mut errors);
        finish(errors)?;
        let mut conn = self.conn().await?;
        let p = load_pipeline(&mut conn, caller.account_id, pipeline).await?;
        if p.stages.len() >= MAX_STAGES {
            return Err(AppError::validation(
                "name",
                "too_many",
                "a pipeline has at most 100 stages",
            ));
        }
        let last_open = p
            .stages
            .iter()
            .filter(|s| s.kind == StageKind::Open)
            .map(|s| s.sort)
            .max()
            .unwrap_or(0);
        insert_stage(
            &mut conn,
            caller.account_id,
            pipeline,
            StageSpec {
                id: None,
                name: &name,
                color: &color,
                sort: last_open + 10,
                kind: StageKind::Open,
            },
        )
        .await
    }

    async fn update_stage(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        stage: StageId,
        new: NewStage,
    ) -> AppResult<Stage> {
        self.require_admin(caller).await?;
        let mut errors = Vec::new();
        let name = check_name("name", &new.name, 100, &mut errors);
        let color = check_color("color", &new.color, &mut errors);
        finish(errors)?;
        let mut conn = self.conn().await?;
        let row: Option<StageRow> = diesel::update(
            stages::table
                .filter(stages::account_id.eq(caller.account_id.0))
                .filter(stages::pipeline_id.eq(pipeline.0))
                .filter(stages::id.eq(stage.0)),
        )
        .set((
            stages::name.eq(&name),
            stages::color.eq(&color),
            stages::updated_at.eq(now),
        ))
        .returning(StageRow::as_returning())
        .get_result(&mut conn)
        .await
        .optional()?;
        row.map(Into::into)
            .ok_or_else(|| AppError::not_found("stage"))
    }

    async fn reorder_stages(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        order: Vec<StageId>,
    ) -> AppResult<Pipeline> {
        self.require_admin(caller).await?;
        let mut conn = self.conn().await?;
        let current = load_pipeline(&mut conn, caller.account_id, pipeline).await?;
        let mut open: Vec<StageId> = current
            .stages
            .iter()
            .filter(|s| s.kind == StageKind::Open)
            .map(|s| s.id)
            .collect();
        let mut given = order.clone();
        open.sort();
        given.sort();
        if open != given {
            return Err(AppError::validation(
                "order",
                "invalid",
                "list every open stage of the pipeline exactly once",
            ));
        }
        conn.transaction::<_, AppError, _>(async |tx| {
            for (i, s) in order.iter().enumerate() {
                diesel::update(
                    stages::table
                        .filter(stages::account_id.eq(caller.account_id.0))
                        .filter(stages::pipeline_id.eq(pipeline.0))
                        .filter(stages::id.eq(s.0)),
                )
                .set(stages::sort.eq((i as i32 + 1) * 10))
                .execute(tx)
                .await?;
            }
            Ok(())
        })
        .await?;
        load_pipeline(&mut conn, caller.account_id, pipeline).await
    }

    async fn delete_stage(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        stage: StageId,
        move_to: StageId,
    ) -> AppResult<()> {
        self.require_admin(caller).await?;
        let mut conn = self.conn().await?;
        let p = load_pipeline(&mut conn, caller.account_id, pipeline).await?;
        let gone = p
            .stages
            .iter()
            .find(|s| s.id == stage)
            .ok_or_else(|| AppError::not_found("stage"))?;
        if gone.kind != StageKind::Open {
            return Err(AppError::validation(
                "stage",
                "system",
                "system stages cannot be deleted",
            ));
        }
        if move_to == stage || !p.stages.iter().any(|s| s.id == move_to) {
            return Err(AppError::validation(
                "move_to",
                "invalid",
                "choose another stage of the same pipeline",
            ));
        }
        let account = caller.account_id;
        conn.transaction::<_, AppError, _>(async |tx| {
            // Move the deals (to the end of the target column), their totals and their history.
            let base: i64 = deals::table
                .filter(deals::account_id.eq(account.0))
                .filter(deals::pipeline_id.eq(pipeline.0))
                .filter(deals::stage_id.eq(move_to.0))
                .select(diesel::dsl::max(deals::position))
                .first::<Option<i64>>(tx)
                .await?
                .unwrap_or(0);
            diesel::sql_query(
                "UPDATE deals.deals d SET stage_id = $4, position = $5 + r.rn * $6, updated_at = now() FROM (
                   SELECT id, row_number() OVER (ORDER BY position, id) AS rn FROM deals.deals
                    WHERE account_id = $1 AND pipeline_id = $2 AND stage_id = $3
                 ) r WHERE d.id = r.id",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(pipeline.0)
            .bind::<BigInt, _>(stage.0)
            .bind::<BigInt, _>(move_to.0)
            .bind::<BigInt, _>(base)
            .bind::<BigInt, _>(GAP)
            .execute(tx)
            .await?;
            diesel::sql_query(
                "INSERT INTO deals.stage_totals AS t (account_id, pipeline_id, stage_id, responsible_user_id, shard, deals, budget)
                 SELECT account_id, pipeline_id, $4, responsible_user_id, shard, deals, budget FROM deals.stage_totals
                  WHERE account_id = $1 AND pipeline_id = $2 AND stage_id = $3
                 ON CONFLICT (account_id, pipeline_id, stage_id, responsible_user_id, shard)
                 DO UPDATE SET deals = t.deals + EXCLUDED.deals, budget = t.budget + EXCLUDED.budget",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<BigInt, _>(pipeline.0)
            .bind::<BigInt, _>(stage.0)
            .bind::<BigInt, _>(move_to.0)
            .execute(tx)
            .await?;
            diesel::delete(
                stage_totals::table
                    .filter(stage_totals::account_id.eq(account.0))
                    .filter(stage_totals::pipeline_id.eq(pipeline.0))
                    .filter(stage_totals::stage_id.eq(stage.0)),
            )
            .execute(tx)
            .await?;
            diesel::delete(
                stages::table
                    .filter(stages::account_id.eq(account.0))
                    .filter(stages::pipeline_id.eq(pipeline.0))
                    .filter(stages::id.eq(stage.0)),
            )
            .execute(tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn loss_reasons(&self, caller: Caller) -> AppResult<Vec<LossReason>> {
        let mut conn = self.conn().await?;
        let rows: Vec<(i64, String)> = loss_reasons::table
            .filter(loss_reasons::account_id.eq(caller.account_id.0))
            .order((loss_reasons::sort, loss_reasons::id))
            .select((loss_reasons::id, loss_reasons::name))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| LossReason {
                id: LossReasonId(id),
                name,
            })
            .collect())
    }

    async fn create_loss_reason(&self, caller: Caller, name: &str) -> AppResult<LossReason> {
        self.require_admin(caller).await?;
        let mut errors = Vec::new();
        let name = check_name("name", name, 100, &mut errors);
        finish(errors)?;
        let mut conn = self.conn().await?;
        let id: i64 = diesel::insert_into(loss_reasons::table)
            .values((
                loss_reasons::account_id.eq(caller.account_id.0),
                loss_reasons::name.eq(&name),
            ))
            .returning(loss_reasons::id)
            .get_result(&mut conn)
            .await
            .map_err(|e| {
                let e = AppError::from(e);
                if e.code == ErrorCode::Conflict {
                    AppError::validation("name", "taken", "this name is already used")
                } else {
                    e
                }
            })?;
        Ok(LossReason {
            id: LossReasonId(id),
            name,
        })
    }

    async fn create_deal(&self, caller: Caller, new: NewDeal) -> AppResult<Deal> {
        access::scope(&*self.accounts, caller, Action::Create).await?;
        let mut errors = Vec::new();
        let name = check_name("name", &new.name, 255, &mut errors);
        if new.price < 0 {
            errors.push(FieldError {
                field: "price".into(),
                code: "negative".into(),
                message: "the budget cannot be negative".into(),
            });
        }
        finish(errors)?;
        let responsible = match new.responsible_user_id.or(caller.actor.user_id()) {
            // The caller was just checked (active, in this account).
            Some(u) if Some(u) == caller.actor.user_id() => u,
            Some(u) => {
                // The responsible user must exist in this account.
                self.accounts.user(caller, u).await.map_err(|e| {
                    if e.code == ErrorCode::NotFound {
                        AppError::validation("responsible_user_id", "not_found", "no such user")
                    } else {
                        e
                    }
                })?;
                u
            }
            None => {
                return Err(AppError::validation(
                    "responsible_user_id",
                    "required",
                    "choose a responsible user",
                ));
            }
        };
        let mut conn = self.conn().await?;
        // The stage, in one query: the one asked for, or the pipeline's first open stage.
        let mut q = stages::table
            .filter(stages::account_id.eq(caller.account_id.0))
            .filter(stages::pipeline_id.eq(new.pipeline_id.0))
            .select(StageRow::as_select())
            .order((stages::kind.ne("open"), stages::sort, stages::id))
            .into_boxed();
        if let Some(id) = new.stage_id {
            q = q.filter(stages::id.eq(id.0));
        }
        let stage: Stage = match q.first::<StageRow>(&mut conn).await.optional()? {
            Some(row) => row.into(),
            None => {
                let pipeline_exists: i64 = pipelines::table
                    .filter(pipelines::account_id.eq(caller.account_id.0))
                    .filter(pipelines::id.eq(new.pipeline_id.0))
                    .select(count_star())
                    .first(&mut conn)
                    .await?;
                return Err(if pipeline_exists == 0 {
                    AppError::validation("pipeline_id", "not_found", "no such pipeline")
                } else {
                    AppError::validation("stage_id", "not_found", "no such stage in this pipeline")
                });
            }
        };
        let pipeline_id = stage.pipeline_id;
        let account = caller.account_id;
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                let position =
                    position_in(tx, account, pipeline_id.0, stage.id.0, None, None).await?;
                let closed = stage.kind.is_closed();
                let row: DealRow = diesel::insert_into(deals::table)
                    .values((
                        deals::account_id.eq(account.0),
                        deals::pipeline_id.eq(pipeline_id.0),
                        deals::stage_id.eq(stage.id.0),
                        deals::name.eq(&name),
                        deals::price.eq(new.price),
                        deals::responsible_user_id.eq(responsible.0),
                        deals::position.eq(position),
                        deals::created_by.eq(actor_of(caller)),
                        deals::updated_by.eq(actor_of(caller)),
                        deals::closed_at.eq(closed.then(chrono::Utc::now)),
                    ))
                    .returning(DealRow::as_returning())
                    .get_result(tx)
                    .await?;
                count_in(tx, account, &row).await?;
                start_stage(tx, caller, row.id, row.pipeline_id, row.stage_id).await?;
                let event = DealCreated {
                    deal_id: DealId(row.id),
                    name: row.name.clone(),
                    price: row.price,
                    pipeline_id,
                    stage_id: stage.id,
                    responsible_user_id: responsible,
                };
                outbox::append(tx, crate::SCHEMA, &[EventEnvelope::new(caller, &event)?]).await?;
                Ok(row)
            })
            .await?;
        Ok(row.into())
    }

    async fn deal(&self, caller: Caller, id: DealId) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let row: DealRow = deals::table
            .filter(deals::account_id.eq(caller.account_id.0))
            .filter(deals::id.eq(id.0))
            .filter(deals::deleted_at.is_null())
            .select(DealRow::as_select())
            .first(&mut conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("deal"))?;
        // A deal the caller may not see looks like no deal at all.
        if !scope.allows(UserId(row.responsible_user_id)) {
            return Err(AppError::not_found("deal"));
        }
        Ok(row.into())
    }

    async fn update_deal(&self, caller: Caller, id: DealId, patch: DealPatch) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::Edit).await?;
        let mut errors = Vec::new();
        let name = patch
            .name
            .as_deref()
            .map(|n| check_name("name", n, 255, &mut errors));
        if patch.price.is_some_and(|p| p < 0) {
            errors.push(FieldError {
                field: "price".into(),
                code: "negative".into(),
                message: "the budget cannot be negative".into(),
            });
        }
        finish(errors)?;
        if let Some(u) = patch.responsible_user_id {
            self.accounts.user(caller, u).await.map_err(|e| {
                if e.code == ErrorCode::NotFound {
                    AppError::validation("responsible_user_id", "not_found", "no such user")
                } else {
                    e
                }
            })?;
        }
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                let current = lock_deal(tx, account, id, false).await?;
                if !scope.allows(UserId(current.responsible_user_id)) {
                    return Err(AppError::not_found("deal"));
                }
                let row: DealRow = diesel::update(deals::table.filter(deals::id.eq(current.id)))
                    .set((
                        deals::name.eq(name.clone().unwrap_or_else(|| current.name.clone())),
                        deals::price.eq(patch.price.unwrap_or(current.price)),
                        deals::responsible_user_id.eq(patch
                            .responsible_user_id
                            .map(|u| u.0)
                            .unwrap_or(current.responsible_user_id)),
                        deals::updated_at.eq(now),
                        deals::updated_by.eq(actor_of(caller)),
                    ))
                    .returning(DealRow::as_returning())
                    .get_result(tx)
                    .await?;
                if row.price != current.price
                    || row.responsible_user_id != current.responsible_user_id
                {
                    count_out(tx, account, &current).await?;
                    count_in(tx, account, &row).await?;
                }
                let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
                if row.name != current.name {
                    before.insert("name".into(), current.name.clone().into());
                    after.insert("name".into(), row.name.clone().into());
                }
                if row.price != current.price {
                    before.insert("price".into(), current.price.into());
                    after.insert("price".into(), row.price.into());
                }
                let mut events = Vec::new();
                if row.responsible_user_id != current.responsible_user_id {
                    before.insert(
                        "responsible_user_id".into(),
                        current.responsible_user_id.into(),
                    );
                    after.insert("responsible_user_id".into(), row.responsible_user_id.into());
                    events.push(EventEnvelope::new(
                        caller,
                        &DealResponsibleChanged {
                            deal_id: id,
                            from_user_id: UserId(current.responsible_user_id),
                            to_user_id: UserId(row.responsible_user_id),
                        },
                    )?);
                }
                if !after.is_empty() {
                    events.insert(
                        0,
                        EventEnvelope::new(
                            caller,
                            &DealUpdated {
                                deal_id: id,
                                before: before.into(),
                                after: after.into(),
                            },
                        )?,
                    );
                }
                outbox::append(tx, crate::SCHEMA, &events).await?;
                Ok(row)
            })
            .await?;
        Ok(row.into())
    }

    async fn delete_deal(&self, caller: Caller, id: DealId) -> AppResult<()> {
        let scope = access::scope(&*self.accounts, caller, Action::Delete).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let current = lock_deal(tx, account, id, false).await?;
            if !scope.allows(UserId(current.responsible_user_id)) {
                return Err(AppError::not_found("deal"));
            }
            diesel::update(deals::table.filter(deals::id.eq(current.id)))
                .set((
                    deals::deleted_at.eq(now),
                    deals::updated_at.eq(now),
                    deals::updated_by.eq(actor_of(caller)),
                ))
                .execute(tx)
                .await?;
            count_out(tx, account, &current).await?;
            outbox::append(
                tx,
                crate::SCHEMA,
                &[EventEnvelope::new(caller, &DealDeleted { deal_id: id })?],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn restore_deal(&self, caller: Caller, id: DealId) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::Delete).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                let current = lock_deal(tx, account, id, true).await?;
                if !scope.allows(UserId(current.responsible_user_id)) {
                    return Err(AppError::not_found("deal"));
                }
                let row: DealRow = diesel::update(deals::table.filter(deals::id.eq(current.id)))
                    .set((
                        deals::deleted_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                        deals::updated_at.eq(now),
                        deals::updated_by.eq(actor_of(caller)),
                    ))
                    .returning(DealRow::as_returning())
                    .get_result(tx)
                    .await?;
                count_in(tx, account, &row).await?;
                outbox::append(
                    tx,
                    crate::SCHEMA,
                    &[EventEnvelope::new(caller, &DealRestored { deal_id: id })?],
                )
                .await?;
                Ok(row)
            })
            .await?;
        Ok(row.into())
    }

    async fn move_deal(&self, caller: Caller, id: DealId, to: MoveTo) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::Edit).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                // The row lock serialises concurrent moves of the same deal.
                let current: DealRow = deals::table
                    .filter(deals::account_id.eq(account.0))
                    .filter(deals::id.eq(id.0))
                    .filter(deals::deleted_at.is_null())
                    .select(DealRow::as_select())
                    .for_update()
                    .first(tx)
                    .await
                    .optional()?
                    .ok_or_else(|| AppError::not_found("deal"))?;
                if !scope.allows(UserId(current.responsible_user_id)) {
                    return Err(AppError::not_found("deal"));
                }
                let target: StageRow = stages::table
                    .filter(stages::account_id.eq(account.0))
                    .filter(stages::pipeline_id.eq(current.pipeline_id))
                    .filter(stages::id.eq(to.stage_id.0))
                    .select(StageRow::as_select())
                    .first(tx)
                    .await
                    .optional()?
                    .ok_or_else(|| {
                        AppError::validation(
                            "stage_id",
                            "not_found",
                            "no such stage in the deal's pipeline",
                        )
                    })?;
                let kind = StageKind::parse(&target.kind).unwrap_or(StageKind::Open);
                let loss_reason = match (kind, to.loss_reason_id) {
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
                let position = position_in(
                    tx,
                    account,
                    current.pipeline_id,
                    target.id,
                    to.after.map(|d| d.0),
                    Some(current.id),
                )
                .await?;
                let changed_stage = current.stage_id != target.id;
                let closed_at = match (kind.is_closed(), current.closed_at) {
                    (true, Some(t)) if !changed_stage => Some(t),
                    (true, _) => Some(chrono::Utc::now()),
                    (false, _) => None,
                };
                let row: DealRow = diesel::update(deals::table.filter(deals::id.eq(current.id)))
                    .set((
                        deals::stage_id.eq(target.id),
                        deals::position.eq(position),
                        deals::loss_reason_id.eq(loss_reason),
                        deals::closed_at.eq(closed_at),
                        deals::updated_at.eq(now),
                        deals::updated_by.eq(actor_of(caller)),
                    ))
                    .returning(DealRow::as_returning())
                    .get_result(tx)
                    .await?;
                if changed_stage {
                    count_out(tx, account, &current).await?;
                    count_in(tx, account, &row).await?;
                    enter_stage(tx, caller, row.id, row.pipeline_id, row.stage_id).await?;
                    let event = DealStageChanged {
                        deal_id: DealId(row.id),
                        pipeline_id: PipelineId(row.pipeline_id),
                        from_stage_id: StageId(current.stage_id),
                        to_stage_id: StageId(row.stage_id),
                        loss_reason_id: row.loss_reason_id.map(LossReasonId),
                    };
                    outbox::append(tx, crate::SCHEMA, &[EventEnvelope::new(caller, &event)?])
                        .await?;
                }
                Ok(row)
            })
            .await?;
        Ok(row.into())
    }

    async fn seed_deals(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        count: i64,
        users: Vec<UserId>,
    ) -> AppResult<i64> {
        self.require_admin(caller).await?;
        if !(1..=10_000_000).contains(&count) || users.is_empty() {
            return Err(AppError::validation(
                "count",
                "out_of_range",
                "1 to 10,000,000 deals, and at least one user",
            ));
        }
        let mut conn = self.conn().await?;
        let p = load_pipeline(&mut conn, caller.account_id, pipeline).await?;
        let open: Vec<i64> = p
            .stages
            .iter()
            .filter(|s| s.kind == StageKind::Open)
            .map(|s| s.id.0)
            .collect();
        if open.is_empty() {
            return Err(AppError::validation(
                "pipeline",
                "no_stages",
                "the pipeline has no open stages",
            ));
        }
        let users: Vec<i64> = users.iter().map(|u| u.0).collect();
        let account = caller.account_id.0;
        let actor =
            serde_json::to_value(caller.actor).map_err(|e| AppError::internal(e.to_string()))?;
        conn.transaction::<_, AppError, _>(async |tx| {
            diesel::sql_query(
                "CREATE TEMP TABLE seeded (n bigint, stage_id bigint, responsible_user_id bigint, price bigint) ON COMMIT DROP",
            )
            .execute(tx)
            .await?;
            diesel::sql_query(
                "INSERT INTO seeded SELECT g, ($1::bigint[])[1 + g % cardinality($1::bigint[])],
                        ($2::bigint[])[1 + (g / 7) % cardinality($2::bigint[])], (g * 7919 % 100000) * 10
                   FROM generate_series(1, $3) g",
            )
            .bind::<diesel::sql_types::Array<BigInt>, _>(&open)
            .bind::<diesel::sql_types::Array<BigInt>, _>(&users)
            .bind::<BigInt, _>(count)
            .execute(tx)
            .await?;
            diesel::sql_query(
                "CREATE TEMP TABLE inserted ON COMMIT DROP AS
                 WITH ins AS (
                   INSERT INTO deals.deals (account_id, pipeline_id, stage_id, name, price, responsible_user_id, position,
                                            created_by, updated_by, created_at, updated_at)
                   SELECT $1, $2, stage_id, 'Deal #' || n, price, responsible_user_id, -n * 1048576, 0, 0,
                          now() - make_interval(mins => (n % 100000)::int), now()
                     FROM seeded
                   RETURNING id, stage_id, responsible_user_id, price, created_at)
                 SELECT * FROM ins",
            )
            .bind::<BigInt, _>(account)
            .bind::<BigInt, _>(pipeline.0)
            .execute(tx)
            .await?;
            diesel::sql_query(
                "INSERT INTO deals.stage_history (account_id, deal_id, pipeline_id, stage_id, entered_at, entered_by)
                 SELECT $1, id, $2, stage_id, created_at, $3 FROM inserted",
            )
            .bind::<BigInt, _>(account)
            .bind::<BigInt, _>(pipeline.0)
            .bind::<diesel::sql_types::Jsonb, _>(&actor)
            .execute(tx)
            .await?;
            diesel::sql_query(
                "INSERT INTO deals.stage_totals AS t (account_id, pipeline_id, stage_id, responsible_user_id, shard, deals, budget)
                 SELECT $1, $2, stage_id, responsible_user_id, (id % 16)::smallint, count(*), sum(price) FROM inserted
                  GROUP BY stage_id, responsible_user_id, id % 16
                 ON CONFLICT (account_id, pipeline_id, stage_id, responsible_user_id, shard)
                 DO UPDATE SET deals = t.deals + EXCLUDED.deals, budget = t.budget + EXCLUDED.budget",
            )
            .bind::<BigInt, _>(account)
            .bind::<BigInt, _>(pipeline.0)
            .execute(tx)
            .await?;
            Ok(())
        })
        .await?;
        Ok(count)
    }

    async fn board(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        page: PageRequest,
    ) -> AppResult<Vec<BoardColumn>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let p = load_pipeline(&mut conn, caller.account_id, pipeline).await?;
        // Every column's totals in one query over the maintained totals (never over the deals).
        #[derive(diesel::QueryableByName)]
        struct ColumnTotal {
            #[diesel(sql_type = BigInt)]
            stage_id: i64,
            #[diesel(sql_type = BigInt)]
            deals: i64,
            #[diesel(sql_type = BigInt)]
            budget: i64,
        }
        let totals: Vec<ColumnTotal> = diesel::sql_query(
            "SELECT stage_id, sum(deals)::bigint AS deals, sum(budget)::bigint AS budget FROM deals.stage_totals
              WHERE account_id = $1 AND pipeline_id = $2 AND ($3::bigint[] IS NULL OR responsible_user_id = ANY($3))
              GROUP BY stage_id",
        )
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(pipeline.0)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Array<BigInt>>, _>(scope.ids())
        .load(&mut conn)
        .await?;
        let mut columns = Vec::with_capacity(p.stages.len());
        for stage in p.stages {
            let totals = totals
                .iter()
                .find(|t| t.stage_id == stage.id.0)
                .map(|t| Totals {
                    deals: t.deals,
                    budget: t.budget,
                })
                .unwrap_or_default();
            let deals = column_page(
                &mut conn,
                caller.account_id,
                pipeline,
                stage.id,
                &scope,
                &page,
            )
            .await?;
            columns.push(BoardColumn {
                stage,
                totals,
                deals,
            });
        }
        Ok(columns)
    }

    async fn column(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        stage: StageId,
        after: Option<Cursor>,
        limit: u32,
    ) -> AppResult<Page<Deal>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        column_page(
            &mut conn,
            caller.account_id,
            pipeline,
            stage,
            &scope,
            &PageRequest::new(after, Some(limit)),
        )
        .await
    }
}

/// One page of a column, in board order, limited to what the scope may see.
async fn column_page(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pipeline: PipelineId,
    stage: StageId,
    scope: &Scope,
    page: &PageRequest,
) -> AppResult<Page<Deal>> {
    let mut q = deals::table
        .filter(deals::account_id.eq(account.0))
        .filter(deals::pipeline_id.eq(pipeline.0))
        .filter(deals::stage_id.eq(stage.0))
        .filter(deals::deleted_at.is_null())
        .select(DealRow::as_select())
        .order((deals::position, deals::id))
        .limit(page.fetch_limit())
        .into_boxed();
    if let Some(ids) = scope.ids() {
        q = q.filter(deals::responsible_user_id.eq_any(ids));
    }
    if let Some(after) = &page.after {
        let (pos, id): (i64, i64) = after.decode()?;
        q = q.filter(
            deals::position
                .gt(pos)
                .or(deals::position.eq(pos).and(deals::id.gt(id))),
        );
    }
    let rows: Vec<DealRow> = q.load(conn).await?;
    Ok(Page::from_rows(rows, page, |r| (r.position, r.id)).map(Into::into))
}
