//! `DealsService`: the deals module's implementation of the `Deals` trait.

use std::sync::Arc;

use accounts_api::{Accounts, Action};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deals_api::events::DealCreated;
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
use crate::fields;
use crate::ops::{self, GAP};
use crate::query;
use crate::rows::{DealRow, StageRow};
use crate::schema::{
    custom_fields, deals, field_groups, loss_reasons, pipelines, saved_filters, stage_history,
    stage_totals, stages,
};

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

    /// Checks and inserts one new deal on `conn` (the caller's right to create and the
    /// responsible user are checked by the callers, once per call or batch).
    async fn insert_new(
        conn: &mut AsyncPgConnection,
        caller: Caller,
        new: NewDeal,
        responsible: UserId,
    ) -> AppResult<DealRow> {
        let (name, tag_names, contacts) = check_new(&new)?;
        // A command with a request key (the caller's cause) creates its deal once: a repeat
        // gets the deal made the first time.
        if let Some(key) = caller.cause {
            let done = ops::requested(conn, caller.account_id, key).await?;
            if let Some(row) = done {
                return Ok(row);
            }
        }
        // Most creates carry no tags or field values: one statement does it all.
        if tag_names.is_empty() && new.custom_fields.is_empty() && caller.cause.is_none() {
            let fast = NewDeal {
                contact_ids: contacts.clone(),
                main_contact_id: <[i64]>::first(&contacts).copied(),
                ..new.clone()
            };
            if let Some(row) = ops::create_fast(conn, caller, &fast, &name, responsible).await? {
                return Ok(row);
            }
        }
        let Some(stage) = ops::find_stage(
            conn,
            caller.account_id,
            new.pipeline_id.0,
            new.stage_id.map(|s| s.0),
        )
        .await?
        else {
            let pipeline_exists: i64 = pipelines::table
                .filter(pipelines::account_id.eq(caller.account_id.0))
                .filter(pipelines::id.eq(new.pipeline_id.0))
                .select(count_star())
                .first(conn)
                .await?;
            return Err(if pipeline_exists == 0 {
                AppError::validation("pipeline_id", "not_found", "no such pipeline")
            } else {
                AppError::validation("stage_id", "not_found", "no such stage in this pipeline")
            });
        };
        // Custom fields: checked only when given or required at the stage (the common create
        // has neither, and costs no extra query).
        let mut values = FieldValues::new();
        if !new.custom_fields.is_empty() || stage.has_required {
            let defs = fields::load(conn, caller.account_id).await?;
            let mut errors = Vec::new();
            values = kernel::fields::apply_values(&defs, &values, &new.custom_fields, &mut errors);
            if !caller.actor.is_import() {
                fields::check_required(
                    &defs,
                    new.pipeline_id,
                    StageId(stage.row.id),
                    &stage.row.name,
                    &values,
                    &mut errors,
                );
            }
            finish(errors)?;
        }
        let pipeline_id = PipelineId(stage.row.pipeline_id);
        let stage_id = StageId(stage.row.id);
        let closed = stage.kind().is_closed();
        let account = caller.account_id;
        let values = serde_json::Value::Object(values);
        let main_contact = <[i64]>::first(&contacts).copied();
        conn.transaction::<_, AppError, _>(async |tx| {
            let tag_ids = fields::ensure_tags(tx, account, &tag_names).await?;
            let row = ops::insert_deal(
                tx,
                caller,
                &ops::Insert {
                    pipeline: pipeline_id.0,
                    stage: stage_id.0,
                    name: &name,
                    price: new.price,
                    responsible: responsible.0,
                    closed,
                    tag_ids: &tag_ids,
                    custom_fields: &values,
                    contact_ids: &contacts,
                    main_contact_id: main_contact,
                    company_ids: &new.company_ids,
                },
            )
            .await?;
            if let Some(key) = caller.cause {
                kernel::sql::query("UPDATE deals.deals SET request_key = $2 WHERE id = $1")
                    .bind::<BigInt, _>(row.id)
                    .bind::<diesel::sql_types::Uuid, _>(key)
                    .execute(tx)
                    .await?;
            }
            let event = DealCreated {
                deal_id: DealId(row.id),
                name: row.name.clone(),
                price: row.price,
                pipeline_id,
                stage_id,
                responsible_user_id: responsible,
                tag_ids: row.tag_ids.clone(),
                contact_ids: Some(row.contact_ids.clone()),
            };
            outbox::append(tx, crate::SCHEMA, &[EventEnvelope::new(caller, &event)?]).await?;
            Ok(row)
        })
        .await
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

    /// A filter checked against the account's custom fields (loaded only when it uses some).
    async fn resolve(
        &self,
        conn: &mut AsyncPgConnection,
        caller: Caller,
        filter: &DealFilter,
        scope: &Scope,
    ) -> AppResult<query::Resolved> {
        let defs = if filter.fields.is_empty() {
            Vec::new()
        } else {
            fields::load(conn, caller.account_id).await?
        };
        query::resolve(filter, &defs, scope)
    }
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

/// A new deal's own values checked: its trimmed name, its tag names, and its contacts with the
/// main one first.
fn check_new(new: &NewDeal) -> AppResult<(String, Vec<String>, Vec<i64>)> {
    let mut errors = Vec::new();
    let name = check_name("name", &new.name, 255, &mut errors);
    if new.price < 0 {
        errors.push(FieldError {
            field: "price".into(),
            code: "negative".into(),
            message: "the budget cannot be negative".into(),
        });
    }
    let tags = kernel::fields::clean_tags(&new.tags, fields::MAX_TAGS_PER_DEAL, &mut errors);
    let contacts = ops::order_contacts(&new.contact_ids, new.main_contact_id, &mut errors);
    finish(errors)?;
    Ok((name, tags, contacts))
}

/// A unique-name violation as the form error it is.
fn name_taken(e: diesel::result::Error) -> AppError {
    let e = AppError::from(e);
    if e.code == ErrorCode::Conflict {
        AppError::validation("name", "taken", "this name is already used")
    } else {
        e
    }
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

/// The advisory lock class under which batches of deal creates of one account take turns.
const BATCH_LOCK: i32 = 0x6465_616c;

/// Takes the account's batch lock exclusively until the transaction ends, for a batch done deal
/// by deal (it writes the totals in its own order). Batches that write them in key order take
/// it shared inside `deals.create_deals_locked`, under the same key (`bit(32)` of the account id
/// there is `as i32` here).
async fn batch_turn(tx: &mut AsyncPgConnection, account: kernel::AccountId) -> AppResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind::<diesel::sql_types::Integer, _>(BATCH_LOCK)
        .bind::<diesel::sql_types::Integer, _>(account.0 as i32)
        .execute(tx)
        .await?;
    Ok(())
}

/// The totals shard a deal counts in (see the migration).
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

    /// The pipelines and all their stages in two statements sent together (one round trip,
    /// however many pipelines): every API write of leads starts with this.
    async fn pipelines(&self, caller: Caller) -> AppResult<Vec<Pipeline>> {
        let conn = self.conn().await?;
        let mut shared: &AsyncPgConnection = &conn;
        let heads = pipelines::table
            .filter(pipelines::account_id.eq(caller.account_id.0))
            .order((pipelines::sort, pipelines::id))
            .select((
                pipelines::id,
                pipelines::name,
                pipelines::sort,
                pipelines::is_main,
            ))
            .load::<(i64, String, i32, bool)>(&mut shared);
        let stage_rows = stages::table
            .filter(stages::account_id.eq(caller.account_id.0))
            .order((stages::pipeline_id, stages::sort, stages::id))
            .select(StageRow::as_select())
            .load::<StageRow>(&mut shared);
        let (heads, stage_rows) = futures_util::future::try_join(heads, stage_rows).await?;
        let mut stages_of: std::collections::HashMap<i64, Vec<Stage>> =
            std::collections::HashMap::new();
        for r in stage_rows {
            stages_of.entry(r.pipeline_id).or_default().push(r.into());
        }
        Ok(heads
            .into_iter()
            .map(|(id, name, sort, is_main)| Pipeline {
                id: PipelineId(id),
                name,
                sort,
                is_main,
                stages: stages_of.remove(&id).unwrap_or_default(),
            })
            .collect())
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

    async fn update_pipeline(
        &self,
        caller: Caller,
        id: PipelineId,
        patch: PipelinePatch,
    ) -> AppResult<Pipeline> {
        self.require_admin(caller).await?;
        let mut errors = Vec::new();
        let name = patch
            .name
            .as_deref()
            .map(|n| check_name("name", n, 100, &mut errors));
        if patch.sort.is_some_and(|s| !(0..=1_000_000).contains(&s)) {
            errors.push(FieldError {
                field: "sort".into(),
                code: "out_of_range".into(),
                message: "a sort key from 0 to 1,000,000".into(),
            });
        }
        finish(errors)?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            // The account's pipelines are locked so that two pipelines never both become main.
            let all: Vec<(i64, String, i32, bool)> = pipelines::table
                .filter(pipelines::account_id.eq(account.0))
                .select((pipelines::id, pipelines::name, pipelines::sort, pipelines::is_main))
                .for_update()
                .load(tx)
                .await?;
            let (_, cur_name, cur_sort, cur_main) = all
                .iter()
                .find(|p| p.0 == id.0)
                .cloned()
                .ok_or_else(|| AppError::not_found("pipeline"))?;
            if cur_main && patch.is_main == Some(false) {
                return Err(AppError::validation(
                    "is_main",
                    "main_required",
                    "an account keeps one main pipeline: make another pipeline the main one instead",
                ));
            }
            let is_main = patch.is_main.unwrap_or(cur_main);
            if is_main && !cur_main {
                diesel::update(
                    pipelines::table
                        .filter(pipelines::account_id.eq(account.0))
                        .filter(pipelines::is_main.eq(true)),
                )
                .set((pipelines::is_main.eq(false), pipelines::updated_at.eq(now)))
                .execute(tx)
                .await?;
            }
            diesel::update(
                pipelines::table
                    .filter(pipelines::account_id.eq(account.0))
                    .filter(pipelines::id.eq(id.0)),
            )
            .set((
                pipelines::name.eq(name.clone().unwrap_or(cur_name)),
                pipelines::sort.eq(patch.sort.unwrap_or(cur_sort)),
                pipelines::is_main.eq(is_main),
                pipelines::updated_at.eq(now),
            ))
            .execute(tx)
            .await?;
            Ok(())
        })
        .await?;
        load_pipeline(&mut conn, account, id).await
    }

    async fn delete_pipeline(&self, caller: Caller, id: PipelineId) -> AppResult<()> {
        self.require_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            // The lock makes a deal created into this pipeline meanwhile wait for the verdict
            // (its foreign key checks the pipeline's row).
            let is_main: bool = pipelines::table
                .filter(pipelines::account_id.eq(account.0))
                .filter(pipelines::id.eq(id.0))
                .select(pipelines::is_main)
                .for_update()
                .first(tx)
                .await
                .optional()?
                .ok_or_else(|| AppError::not_found("pipeline"))?;
            if is_main {
                return Err(AppError::validation(
                    "pipeline_id",
                    "main",
                    "the main pipeline cannot be deleted: make another pipeline the main one first",
                ));
            }
            let holds: bool = diesel::select(diesel::dsl::exists(
                deals::table
                    .filter(deals::account_id.eq(account.0))
                    .filter(deals::pipeline_id.eq(id.0)),
            ))
            .get_result(tx)
            .await?;
            if holds {
                return Err(AppError::validation(
                    "pipeline_id",
                    "not_empty",
                    "the pipeline holds deals (deleted ones count, as they can be restored): \
                     move or remove them first",
                ));
            }
            diesel::delete(
                stage_totals::table
                    .filter(stage_totals::account_id.eq(account.0))
                    .filter(stage_totals::pipeline_id.eq(id.0)),
            )
            .execute(tx)
            .await?;
            diesel::delete(
                stages::table
                    .filter(stages::account_id.eq(account.0))
                    .filter(stages::pipeline_id.eq(id.0)),
            )
            .execute(tx)
            .await?;
            diesel::delete(
                pipelines::table
                    .filter(pipelines::account_id.eq(account.0))
                    .filter(pipelines::id.eq(id.0)),
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
            .map_err(name_taken)?;
        Ok(LossReason {
            id: LossReasonId(id),
            name,
        })
    }

    async fn update_loss_reason(
        &self,
        caller: Caller,
        id: LossReasonId,
        name: &str,
    ) -> AppResult<LossReason> {
        self.require_admin(caller).await?;
        let mut errors = Vec::new();
        let name = check_name("name", name, 100, &mut errors);
        finish(errors)?;
        let mut conn = self.conn().await?;
        let n = diesel::update(
            loss_reasons::table
                .filter(loss_reasons::account_id.eq(caller.account_id.0))
                .filter(loss_reasons::id.eq(id.0)),
        )
        .set(loss_reasons::name.eq(&name))
        .execute(&mut conn)
        .await
        .map_err(name_taken)?;
        if n == 0 {
            return Err(AppError::not_found("loss reason"));
        }
        Ok(LossReason { id, name })
    }

    async fn delete_loss_reason(&self, caller: Caller, id: LossReasonId) -> AppResult<()> {
        self.require_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let found: Option<i64> = loss_reasons::table
                .filter(loss_reasons::account_id.eq(account.0))
                .filter(loss_reasons::id.eq(id.0))
                .select(loss_reasons::id)
                .for_update()
                .first(tx)
                .await
                .optional()?;
            if found.is_none() {
                return Err(AppError::not_found("loss reason"));
            }
            let used: bool = diesel::select(diesel::dsl::exists(
                deals::table
                    .filter(deals::account_id.eq(account.0))
                    .filter(deals::loss_reason_id.eq(id.0)),
            ))
            .get_result(tx)
            .await?;
            if used {
                return Err(AppError::validation(
                    "loss_reason_id",
                    "in_use",
                    "deals give this reason: it can be renamed but not deleted",
                ));
            }
            diesel::delete(
                loss_reasons::table
                    .filter(loss_reasons::account_id.eq(account.0))
                    .filter(loss_reasons::id.eq(id.0)),
            )
            .execute(tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn create_deal(&self, caller: Caller, new: NewDeal) -> AppResult<Deal> {
        access::scope(&*self.accounts, caller, Action::Create).await?;
        let responsible = access::responsible(
            &*self.accounts,
            caller,
            new.responsible_user_id.or(caller.actor.user_id()),
        )
        .await?;
        let mut conn = self.conn().await?;
        let row = Self::insert_new(&mut conn, caller, new, responsible).await?;
        ops::deal_out(&mut conn, caller.account_id, row).await
    }

    async fn create_deals(&self, caller: Caller, news: Vec<NewDeal>) -> AppResult<Vec<Deal>> {
        access::scope(&*self.accounts, caller, Action::Create).await?;
        if news.len() > MAX_BULK {
            return Err(AppError::validation(
                "deals",
                "too_many",
                &format!("at most {MAX_BULK} deals at once"),
            ));
        }
        // Each responsible user is checked once for the batch.
        let mut checked: Vec<(Option<UserId>, UserId)> = Vec::new();
        for new in &news {
            let asked = new.responsible_user_id.or(caller.actor.user_id());
            if !checked.iter().any(|(a, _)| *a == asked) {
                let r = access::responsible(&*self.accounts, caller, asked).await?;
                checked.push((asked, r));
            }
        }
        let responsible_of = |new: &NewDeal| {
            let asked = new.responsible_user_id.or(caller.actor.user_id());
            checked
                .iter()
                .find(|(a, _)| *a == asked)
                .map(|(_, r)| *r)
                .ok_or_else(|| AppError::internal("responsible not checked"))
        };
        // A batch touches several rows of its columns' totals (one per shard). The common batch
        // (no tags, no field values) is one statement that writes them in key order, so such
        // batches of one account run side by side (sharing the account's batch lock); a batch
        // done deal by deal writes them in its own order and runs alone (holding it exclusively),
        // or two could deadlock. A single create touches one row and needs no turn.
        let mut conn = self.conn().await?;
        if news
            .iter()
            .all(|n| n.tags.is_empty() && n.custom_fields.is_empty())
        {
            let mut batch = Vec::with_capacity(news.len());
            for new in &news {
                let (name, _, contacts) = check_new(new)?;
                batch.push(ops::FastNew {
                    new,
                    name,
                    contacts,
                    responsible: responsible_of(new)?,
                });
            }
            // One statement on its own (its own transaction), the shared turn included.
            let turn = (batch.len() > 1).then_some(BATCH_LOCK);
            let done = ops::create_fast_many(&mut conn, caller, &batch, turn).await?;
            // None: some deal's stage did not qualify and nothing was written; the checked path
            // below says why.
            if let Some(rows) = done {
                return ops::deals_out(&mut conn, caller.account_id, rows).await;
            }
        }
        let rows = conn
            .transaction::<_, AppError, _>(async |tx| {
                if news.len() > 1 {
                    batch_turn(tx, caller.account_id).await?;
                }
                let mut rows = Vec::with_capacity(news.len());
                for new in news {
                    let responsible = responsible_of(&new)?;
                    rows.push(Self::insert_new(tx, caller, new, responsible).await?);
                }
                Ok(rows)
            })
            .await?;
        ops::deals_out(&mut conn, caller.account_id, rows).await
    }

    async fn deal(&self, caller: Caller, id: DealId) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let row = visible_deal(&mut conn, caller.account_id, &scope, id).await?;
        ops::deal_out(&mut conn, caller.account_id, row).await
    }

    async fn requested_deal(&self, caller: Caller, key: uuid::Uuid) -> AppResult<Option<Deal>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        match ops::requested(&mut conn, caller.account_id, key).await? {
            Some(row) if scope.allows(UserId(row.responsible_user_id)) => Ok(Some(
                ops::deal_out(&mut conn, caller.account_id, row).await?,
            )),
            _ => Ok(None),
        }
    }

    async fn visible_deals(&self, caller: Caller, ids: Vec<DealId>) -> AppResult<Vec<DealId>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<(i64, i64)> = deals::table
            .filter(deals::account_id.eq(caller.account_id.0))
            .filter(deals::id.eq_any(ids.iter().map(|d| d.0).collect::<Vec<_>>()))
            .filter(deals::deleted_at.is_null())
            .select((deals::id, deals::responsible_user_id))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, r)| scope.allows(UserId(*r)))
            .map(|(id, _)| DealId(id))
            .collect())
    }

    async fn open_deal_counts(
        &self,
        caller: Caller,
        users: Vec<UserId>,
    ) -> AppResult<Vec<(UserId, i64)>> {
        access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<(i64, i64)> = deals::table
            .filter(deals::account_id.eq(caller.account_id.0))
            .filter(
                deals::responsible_user_id.eq_any(users.iter().map(|u| u.0).collect::<Vec<_>>()),
            )
            .filter(deals::deleted_at.is_null())
            .filter(deals::closed_at.is_null())
            .group_by(deals::responsible_user_id)
            .select((deals::responsible_user_id, diesel::dsl::count_star()))
            .load(&mut conn)
            .await?;
        Ok(rows.into_iter().map(|(u, n)| (UserId(u), n)).collect())
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
        let tag_names = patch
            .tags
            .as_ref()
            .map(|t| kernel::fields::clean_tags(t, fields::MAX_TAGS_PER_DEAL, &mut errors));
        if let Some(c) = &patch.contact_ids {
            ops::order_contacts(c, None, &mut errors);
        }
        finish(errors)?;
        let responsible = match patch.responsible_user_id {
            Some(u) => Some(
                access::responsible(&*self.accounts, caller, Some(u))
                    .await?
                    .0,
            ),
            None => None,
        };
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let defs = match &patch.custom_fields {
            Some(v) if !v.is_empty() => fields::load(&mut conn, account).await?,
            _ => Vec::new(),
        };
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                let current = ops::lock_deal(tx, account, id, false).await?;
                if !scope.allows(UserId(current.responsible_user_id)) {
                    return Err(AppError::not_found("deal"));
                }
                let tags = match &tag_names {
                    Some(names) => Some(ops::TagChange::Set(
                        fields::ensure_tags(tx, account, names).await?,
                    )),
                    None => None,
                };
                let change = ops::Change {
                    name: name.clone(),
                    price: patch.price,
                    responsible,
                    tags,
                    custom_fields: patch.custom_fields.clone(),
                    contact_ids: patch.contact_ids.clone(),
                    main_contact_id: patch.main_contact_id,
                    company_ids: patch.company_ids.clone(),
                };
                ops::update_locked(tx, caller, &defs, &current, &change).await
            })
            .await?;
        ops::deal_out(&mut conn, account, row).await
    }

    async fn delete_deal(&self, caller: Caller, id: DealId) -> AppResult<()> {
        let scope = access::scope(&*self.accounts, caller, Action::Delete).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let current = ops::lock_deal(tx, account, id, false).await?;
            if !scope.allows(UserId(current.responsible_user_id)) {
                return Err(AppError::not_found("deal"));
            }
            ops::delete_locked(tx, caller, &current).await
        })
        .await
    }

    async fn restore_deal(&self, caller: Caller, id: DealId) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::Delete).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                let current = ops::lock_deal(tx, account, id, true).await?;
                if !scope.allows(UserId(current.responsible_user_id)) {
                    return Err(AppError::not_found("deal"));
                }
                ops::restore_locked(tx, caller, &current).await
            })
            .await?;
        ops::deal_out(&mut conn, account, row).await
    }

    async fn move_deal(&self, caller: Caller, id: DealId, to: MoveTo) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::Edit).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        // The common move (to the top of a stage) in one statement, when it applies (never to
        // lost, which asks for a reason the statement does not check).
        if to.after.is_none() && to.stage_id != LOST {
            let allowed = scope.ids();
            if let Some(row) =
                ops::move_fast(&mut conn, caller, allowed.as_deref(), id, to.stage_id).await?
            {
                return ops::deal_out(&mut conn, account, row).await;
            }
        }
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                // The row lock (it serialises concurrent moves of the same deal), the stage and
                // the column's top, in one round trip.
                let conn: &diesel_async::AsyncPgConnection = tx;
                let (current, (target, top)) = futures_util::future::try_join(
                    ops::lock_deal(conn, account, id, false),
                    ops::move_lookup(conn, account, id.0, to.stage_id.0),
                )
                .await?;
                if !scope.allows(UserId(current.responsible_user_id)) {
                    return Err(AppError::not_found("deal"));
                }
                // Moved to another pipeline meanwhile: the stage is looked up again.
                let (target, top) = match target {
                    Some(t) if t.row.pipeline_id == current.pipeline_id => (Some(t), Some(top)),
                    _ => (
                        ops::find_stage(conn, account, current.pipeline_id, Some(to.stage_id.0))
                            .await?,
                        None,
                    ),
                };
                let target = target.ok_or_else(|| {
                    AppError::validation(
                        "stage_id",
                        "not_found",
                        "no such stage in the deal's pipeline",
                    )
                })?;
                let defs = if target.has_required && current.stage_id != target.row.id {
                    fields::load(tx, account).await?
                } else {
                    Vec::new()
                };
                ops::move_locked(
                    tx,
                    caller,
                    &defs,
                    &current,
                    &target,
                    match to.after {
                        Some(d) => ops::Place::After(d.0),
                        None => ops::Place::Top(top),
                    },
                    to.loss_reason_id,
                )
                .await
            })
            .await?;
        ops::deal_out(&mut conn, account, row).await
    }

    async fn move_deal_to_pipeline(
        &self,
        caller: Caller,
        id: DealId,
        pipeline: PipelineId,
        stage: Option<StageId>,
        loss_reason_id: Option<LossReasonId>,
    ) -> AppResult<Deal> {
        let scope = access::scope(&*self.accounts, caller, Action::Edit).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let row = conn
            .transaction::<_, AppError, _>(async |tx| {
                let current = ops::lock_deal(tx, account, id, false).await?;
                if !scope.allows(UserId(current.responsible_user_id)) {
                    return Err(AppError::not_found("deal"));
                }
                let target = ops::find_stage(tx, account, pipeline.0, stage.map(|s| s.0))
                    .await?
                    .ok_or_else(|| {
                        AppError::validation(
                            "status_id",
                            "not_found",
                            "no such pipeline, or no such stage in it",
                        )
                    })?;
                let defs = if target.has_required {
                    fields::load(tx, account).await?
                } else {
                    Vec::new()
                };
                ops::move_locked(
                    tx,
                    caller,
                    &defs,
                    &current,
                    &target,
                    ops::Place::Top(None),
                    loss_reason_id,
                )
                .await
            })
            .await?;
        ops::deal_out(&mut conn, account, row).await
    }

    async fn stage_history(&self, caller: Caller, id: DealId) -> AppResult<Vec<StageVisit>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        visible_deal(&mut conn, caller.account_id, &scope, id).await?;
        let rows: Vec<(
            i64,
            i64,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            serde_json::Value,
        )> = stage_history::table
            .filter(stage_history::account_id.eq(caller.account_id.0))
            .filter(stage_history::deal_id.eq(id.0))
            .order((stage_history::entered_at, stage_history::id))
            .select((
                stage_history::pipeline_id,
                stage_history::stage_id,
                stage_history::entered_at,
                stage_history::left_at,
                stage_history::entered_by,
            ))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(p, s, entered_at, left_at, by)| StageVisit {
                pipeline_id: PipelineId(p),
                stage_id: StageId(s),
                entered_at,
                left_at,
                entered_by: serde_json::from_value(by)
                    .unwrap_or(kernel::Actor::System { import: false }),
            })
            .collect())
    }

    async fn history(
        &self,
        caller: Caller,
        after: Option<DealId>,
        limit: u32,
    ) -> AppResult<Vec<DealHistory>> {
        self.require_admin(caller).await?;
        let account = caller.account_id.0;
        let limit = i64::from(limit.clamp(1, MAX_HISTORY_PAGE));
        let mut conn = self.conn().await?;
        type Head = (
            i64,
            i64,
            i64,
            i64,
            i64,
            Option<i64>,
            Vec<i64>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        let heads: Vec<Head> = deals::table
            .filter(deals::account_id.eq(account))
            .filter(deals::id.gt(after.map_or(0, |d| d.0)))
            .order(deals::id)
            .limit(limit)
            .select((
                deals::id,
                deals::pipeline_id,
                deals::stage_id,
                deals::price,
                deals::responsible_user_id,
                deals::loss_reason_id,
                deals::tag_ids,
                deals::created_at,
                deals::closed_at,
                deals::deleted_at,
            ))
            .load(&mut conn)
            .await?;
        let (Some(first), Some(last)) = (<[_]>::first(&heads), heads.last()) else {
            return Ok(Vec::new());
        };
        type Visit = (
            i64,
            i64,
            i64,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            serde_json::Value,
        );
        let visits: Vec<Visit> = stage_history::table
            .filter(stage_history::account_id.eq(account))
            .filter(stage_history::deal_id.between(first.0, last.0))
            .order((
                stage_history::deal_id,
                stage_history::entered_at,
                stage_history::id,
            ))
            .select((
                stage_history::deal_id,
                stage_history::pipeline_id,
                stage_history::stage_id,
                stage_history::entered_at,
                stage_history::left_at,
                stage_history::entered_by,
            ))
            .load(&mut conn)
            .await?;
        let mut visits = visits.into_iter().peekable();
        let mut out = Vec::with_capacity(heads.len());
        for (id, pipeline, stage, price, responsible, reason, tags, created, closed, deleted) in
            heads
        {
            let mut mine = Vec::new();
            while let Some(v) = visits.next_if(|v| v.0 <= id) {
                if v.0 == id {
                    mine.push(StageVisit {
                        pipeline_id: PipelineId(v.1),
                        stage_id: StageId(v.2),
                        entered_at: v.3,
                        left_at: v.4,
                        entered_by: serde_json::from_value(v.5)
                            .unwrap_or(kernel::Actor::System { import: false }),
                    });
                }
            }
            out.push(DealHistory {
                id: DealId(id),
                pipeline_id: PipelineId(pipeline),
                stage_id: StageId(stage),
                price,
                responsible_user_id: UserId(responsible),
                loss_reason_id: reason.map(LossReasonId),
                tag_ids: tags.into_iter().map(TagId).collect(),
                created_at: created,
                closed_at: closed,
                deleted: deleted.is_some(),
                visits: mine,
            });
        }
        Ok(out)
    }

    async fn bulk(&self, caller: Caller, ids: Vec<DealId>, action: BulkAction) -> AppResult<usize> {
        let right = match action {
            BulkAction::Delete => Action::Delete,
            _ => Action::Edit,
        };
        let scope = access::scope(&*self.accounts, caller, right).await?;
        let mut ids: Vec<i64> = ids.iter().map(|d| d.0).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(AppError::validation(
                "ids",
                "required",
                "choose at least one deal",
            ));
        }
        if ids.len() > MAX_BULK {
            return Err(AppError::validation(
                "ids",
                "too_many",
                &format!("at most {MAX_BULK} deals at once"),
            ));
        }
        let mut errors = Vec::new();
        let tag_names = match &action {
            BulkAction::AddTags { tags } | BulkAction::RemoveTags { tags } => {
                let t = kernel::fields::clean_tags(tags, fields::MAX_TAGS_PER_DEAL, &mut errors);
                if t.is_empty() {
                    errors.push(FieldError {
                        field: "tags".into(),
                        code: "required".into(),
                        message: "name at least one tag".into(),
                    });
                }
                t
            }
            _ => Vec::new(),
        };
        finish(errors)?;
        let responsible = match &action {
            BulkAction::Responsible { user_id } => Some(
                access::responsible(&*self.accounts, caller, Some(*user_id))
                    .await?
                    .0,
            ),
            _ => None,
        };
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let defs = match &action {
            BulkAction::Move { .. } => fields::load(&mut conn, account).await?,
            _ => Vec::new(),
        };
        let action = &action;
        conn.transaction::<_, AppError, _>(async |tx| {
            let rows = ops::lock_many(tx, account, &ids).await?;
            if rows
                .iter()
                .any(|r| !scope.allows(UserId(r.responsible_user_id)))
            {
                return Err(AppError::not_found("deal"));
            }
            let tags = match action {
                BulkAction::AddTags { .. } => Some(ops::TagChange::Add(
                    fields::ensure_tags(tx, account, &tag_names).await?,
                )),
                BulkAction::RemoveTags { .. } => Some(ops::TagChange::Remove(
                    fields::find_tags(tx, account, &tag_names).await?,
                )),
                _ => None,
            };
            let mut targets: Vec<ops::TargetStage> = Vec::new();
            for row in &rows {
                match action {
                    BulkAction::Move {
                        stage_id,
                        loss_reason_id,
                    } => {
                        // Deals of several pipelines: each goes to that stage of its own.
                        let i = match targets
                            .iter()
                            .position(|t| t.row.pipeline_id == row.pipeline_id)
                        {
                            Some(i) => i,
                            None => {
                                let t =
                                    ops::find_stage(tx, account, row.pipeline_id, Some(stage_id.0))
                                        .await?
                                        .ok_or_else(|| {
                                            AppError::validation(
                                                "stage_id",
                                                "not_found",
                                                "no such stage in the deals' pipeline",
                                            )
                                        })?;
                                targets.push(t);
                                targets.len() - 1
                            }
                        };
                        if row.stage_id != stage_id.0 {
                            ops::move_locked(
                                tx,
                                caller,
                                &defs,
                                row,
                                &targets[i],
                                ops::Place::Top(None),
                                *loss_reason_id,
                            )
                            .await
                            .map_err(|e| in_deal(e, row))?;
                        }
                    }
                    BulkAction::Delete => ops::delete_locked(tx, caller, row).await?,
                    BulkAction::Responsible { .. } => {
                        let change = ops::Change {
                            responsible,
                            ..Default::default()
                        };
                        ops::update_locked(tx, caller, &defs, row, &change).await?;
                    }
                    BulkAction::AddTags { .. } | BulkAction::RemoveTags { .. } => {
                        let change = ops::Change {
                            tags: tags.clone(),
                            ..Default::default()
                        };
                        ops::update_locked(tx, caller, &defs, row, &change).await?;
                    }
                }
            }
            Ok(rows.len())
        })
        .await
    }

    async fn custom_fields(&self, caller: Caller) -> AppResult<Vec<CustomField>> {
        access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        fields::load(&mut conn, caller.account_id).await
    }

    async fn create_custom_field(
        &self,
        caller: Caller,
        new: NewCustomField,
    ) -> AppResult<CustomField> {
        self.require_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let (name, enums) = fields::check_definition(&mut conn, account, &new).await?;
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let count: i64 = custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .count()
                    .get_result(tx)
                    .await?;
                if count as usize >= fields::MAX_FIELDS {
                    return Err(AppError::validation(
                        "name",
                        "too_many",
                        &format!("at most {} fields", fields::MAX_FIELDS),
                    ));
                }
                let id: i64 = diesel::insert_into(custom_fields::table)
                    .values((
                        custom_fields::account_id.eq(account.0),
                        custom_fields::name.eq(&name),
                        custom_fields::field_type.eq(new.field_type.as_str()),
                        custom_fields::sort.eq(count as i32),
                        custom_fields::required_statuses
                            .eq(fields::required_json(&new.required_statuses)),
                        custom_fields::group_id.eq(new.group_id),
                    ))
                    .returning(custom_fields::id)
                    .get_result(tx)
                    .await
                    .map_err(|e| unique_as(e, "name", "a field with this name exists"))?;
                kernel::fields::write_choices(tx, "deals", "deals.deals", account, id, &enums)
                    .await?;
                Ok(id)
            })
            .await?;
        field_by_id(&mut conn, account, id).await
    }

    async fn update_custom_field(
        &self,
        caller: Caller,
        id: FieldId,
        new: NewCustomField,
    ) -> AppResult<CustomField> {
        self.require_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let existing = field_by_id(&mut conn, account, id.0).await?;
        if existing.field_type != new.field_type {
            return Err(AppError::validation(
                "field_type",
                "immutable",
                "a field's type cannot change",
            ));
        }
        let (name, enums) = fields::check_definition(&mut conn, account, &new).await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            diesel::update(
                custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .filter(custom_fields::id.eq(id.0)),
            )
            .set((
                custom_fields::name.eq(&name),
                custom_fields::required_statuses.eq(fields::required_json(&new.required_statuses)),
                custom_fields::group_id.eq(new.group_id),
                custom_fields::updated_at.eq(now),
            ))
            .execute(tx)
            .await
            .map_err(|e| unique_as(e, "name", "a field with this name exists"))?;
            if new.field_type.has_enums() {
                kernel::fields::write_choices(tx, "deals", "deals.deals", account, id.0, &enums)
                    .await?;
            }
            Ok(())
        })
        .await?;
        field_by_id(&mut conn, account, id.0).await
    }

    async fn delete_custom_field(&self, caller: Caller, id: FieldId) -> AppResult<()> {
        self.require_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            let n = diesel::delete(
                custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .filter(custom_fields::id.eq(id.0)),
            )
            .execute(tx)
            .await?;
            if n == 0 {
                return Err(AppError::not_found("field"));
            }
            diesel::sql_query(
                "UPDATE deals.deals SET custom_fields = custom_fields - $2
                  WHERE account_id = $1 AND custom_fields ? $2",
            )
            .bind::<BigInt, _>(account.0)
            .bind::<diesel::sql_types::Text, _>(id.0.to_string())
            .execute(tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn field_groups(&self, caller: Caller) -> AppResult<Vec<FieldGroup>> {
        access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        fields::load_groups(&mut conn, caller.account_id).await
    }

    async fn create_field_group(
        &self,
        caller: Caller,
        new: NewFieldGroup,
    ) -> AppResult<FieldGroup> {
        self.require_admin(caller).await?;
        let name = kernel::fields::group_name(&new.name)?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let id = conn
            .transaction::<_, AppError, _>(async |tx| {
                let existing = fields::load_groups(tx, account).await?;
                if existing.len() >= kernel::fields::MAX_GROUPS {
                    return Err(AppError::validation(
                        "name",
                        "too_many",
                        &format!("at most {} field groups", kernel::fields::MAX_GROUPS),
                    ));
                }
                let sort = new
                    .sort
                    .unwrap_or_else(|| existing.iter().map(|g| g.sort + 1).max().unwrap_or(0));
                diesel::insert_into(field_groups::table)
                    .values((
                        field_groups::account_id.eq(account.0),
                        field_groups::name.eq(&name),
                        field_groups::sort.eq(sort),
                    ))
                    .returning(field_groups::id)
                    .get_result::<i64>(tx)
                    .await
                    .map_err(|e| unique_as(e, "name", "a field group with this name exists"))
            })
            .await?;
        group_by_id(&mut conn, account, id).await
    }

    async fn update_field_group(
        &self,
        caller: Caller,
        id: i64,
        new: NewFieldGroup,
    ) -> AppResult<FieldGroup> {
        self.require_admin(caller).await?;
        let name = kernel::fields::group_name(&new.name)?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        let current = group_by_id(&mut conn, account, id).await?;
        diesel::update(
            field_groups::table
                .filter(field_groups::account_id.eq(account.0))
                .filter(field_groups::id.eq(id)),
        )
        .set((
            field_groups::name.eq(&name),
            field_groups::sort.eq(new.sort.unwrap_or(current.sort)),
        ))
        .execute(&mut conn)
        .await
        .map_err(|e| unique_as(e, "name", "a field group with this name exists"))?;
        group_by_id(&mut conn, account, id).await
    }

    async fn delete_field_group(&self, caller: Caller, id: i64) -> AppResult<()> {
        self.require_admin(caller).await?;
        let account = caller.account_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |tx| {
            diesel::update(
                custom_fields::table
                    .filter(custom_fields::account_id.eq(account.0))
                    .filter(custom_fields::group_id.eq(id)),
            )
            .set(custom_fields::group_id.eq(None::<i64>))
            .execute(tx)
            .await?;
            let n = diesel::delete(
                field_groups::table
                    .filter(field_groups::account_id.eq(account.0))
                    .filter(field_groups::id.eq(id)),
            )
            .execute(tx)
            .await?;
            if n == 0 {
                return Err(AppError::not_found("field group"));
            }
            Ok(())
        })
        .await
    }

    async fn tags(&self, caller: Caller) -> AppResult<Vec<Tag>> {
        access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        fields::all_tags(&mut conn, caller.account_id).await
    }

    async fn create_tags(&self, caller: Caller, names: Vec<String>) -> AppResult<Vec<Tag>> {
        access::scope(&*self.accounts, caller, Action::Edit).await?;
        let mut errors = Vec::new();
        let names = kernel::fields::clean_tags(&names, MAX_BULK, &mut errors);
        finish(errors)?;
        let mut conn = self.conn().await?;
        let ids = fields::ensure_tags(&mut conn, caller.account_id, &names).await?;
        let stored = fields::tag_names(&mut conn, caller.account_id, &ids).await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                stored.get(&id).map(|name| Tag {
                    id: TagId(id),
                    name: name.clone(),
                })
            })
            .collect())
    }

    async fn restore_provenance(
        &self,
        caller: Caller,
        items: Vec<kernel::provenance::Provenance>,
    ) -> AppResult<usize> {
        use diesel::sql_types::{Array, Nullable, Timestamptz};
        kernel::provenance::check(&items)?;
        accounts_api::access::system_or_admin(&*self.accounts, caller).await?;
        if items.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let changed = conn
            .transaction::<_, AppError, _>(async |tx| {
                let ids: Vec<i64> = items.iter().map(|p| p.id).collect();
                let changed = kernel::sql::query(
                    "UPDATE deals.deals d
                        SET created_at = x.created_at, updated_at = x.updated_at,
                            created_by = x.created_by, updated_by = x.updated_by,
                            closed_at = CASE WHEN d.closed_at IS NULL THEN NULL
                                             ELSE coalesce(x.closed_at, d.closed_at) END
                       FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[],
                                   $5::bigint[], $6::bigint[], $7::timestamptz[])
                            AS x(id, created_at, updated_at, created_by, updated_by, closed_at)
                      WHERE d.account_id = $1 AND d.id = x.id",
                )
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<Array<BigInt>, _>(&ids)
                .bind::<Array<Timestamptz>, _>(items.iter().map(|p| p.created_at).collect::<Vec<_>>())
                .bind::<Array<Timestamptz>, _>(items.iter().map(|p| p.updated_at).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(items.iter().map(|p| p.created_by).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(items.iter().map(|p| p.updated_by).collect::<Vec<_>>())
                .bind::<Array<Nullable<Timestamptz>>, _>(
                    items.iter().map(|p| p.closed_at).collect::<Vec<_>>(),
                )
                .execute(tx)
                .await?;
                // A deal with a single stay entered its stage when it was made (or closed).
                kernel::sql::query(
                    "UPDATE deals.stage_history h
                        SET entered_at = coalesce(d.closed_at, d.created_at)
                       FROM deals.deals d
                      WHERE d.account_id = $1 AND d.id = ANY($2)
                        AND h.account_id = $1 AND h.deal_id = d.id AND h.left_at IS NULL
                        AND NOT EXISTS (SELECT 1 FROM deals.stage_history o
                                         WHERE o.account_id = $1 AND o.deal_id = d.id AND o.id <> h.id)",
                )
                .bind::<BigInt, _>(caller.account_id.0)
                .bind::<Array<BigInt>, _>(&ids)
                .execute(tx)
                .await?;
                Ok(changed)
            })
            .await?;
        Ok(changed)
    }

    async fn seed_deals(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        count: i64,
        users: Vec<UserId>,
    ) -> AppResult<Seeded> {
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
        // Every 10th deal is tagged "vip", every 25th also "partner": something to filter by.
        let tags = fields::ensure_tags(
            &mut conn,
            caller.account_id,
            &["vip".into(), "partner".into()],
        )
        .await?;
        let (vip, partner) = (tags[0], tags[1]);
        let (first, last) = conn.transaction::<_, AppError, _>(async |tx| {
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
                                            created_by, updated_by, created_at, updated_at, tag_ids)
                   SELECT $1, $2, stage_id, 'Deal #' || n, price, responsible_user_id, -n * 1048576, 0, 0,
                          now() - make_interval(mins => (n % 100000)::int), now(),
                          CASE WHEN n % 25 = 0 THEN ARRAY[$3, $4]::bigint[] WHEN n % 10 = 0 THEN ARRAY[$3]::bigint[]
                               ELSE '{}'::bigint[] END
                     FROM seeded
                   RETURNING id, stage_id, responsible_user_id, price, created_at)
                 SELECT * FROM ins",
            )
            .bind::<BigInt, _>(account)
            .bind::<BigInt, _>(pipeline.0)
            .bind::<BigInt, _>(vip)
            .bind::<BigInt, _>(partner)
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
            #[derive(diesel::QueryableByName)]
            struct Range {
                #[diesel(sql_type = BigInt)]
                first: i64,
                #[diesel(sql_type = BigInt)]
                last: i64,
            }
            let r: Range = diesel::sql_query("SELECT min(id) AS first, max(id) AS last FROM inserted")
                .get_result(tx)
                .await?;
            Ok((r.first, r.last))
        })
        .await?;
        // Fresh statistics for the planner after a bulk load.
        diesel::sql_query("ANALYZE deals.deals")
            .execute(&mut conn)
            .await?;
        Ok(Seeded {
            count,
            first: DealId(first),
            last: DealId(last),
        })
    }

    async fn board(
        &self,
        caller: Caller,
        pipeline: PipelineId,
        filter: &DealFilter,
        page: PageRequest,
    ) -> AppResult<Vec<BoardColumn>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let p = load_pipeline(&mut conn, caller.account_id, pipeline).await?;
        let resolved = self.resolve(&mut conn, caller, filter, &scope).await?;
        // Unfiltered: every column's totals in one query over the maintained totals (never over
        // the deals). Filtered: each column counted up to the cap.
        #[derive(diesel::QueryableByName)]
        struct ColumnTotal {
            #[diesel(sql_type = BigInt)]
            stage_id: i64,
            #[diesel(sql_type = BigInt)]
            deals: i64,
            #[diesel(sql_type = BigInt)]
            budget: i64,
        }
        let exact: Vec<ColumnTotal> = if resolved.is_unfiltered() {
            diesel::sql_query(
                "SELECT stage_id, sum(deals)::bigint AS deals, sum(budget)::bigint AS budget FROM deals.stage_totals
                  WHERE account_id = $1 AND pipeline_id = $2 AND ($3::bigint[] IS NULL OR responsible_user_id = ANY($3))
                  GROUP BY stage_id",
            )
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(pipeline.0)
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Array<BigInt>>, _>(scope.ids())
            .load(&mut conn)
            .await?
        } else {
            Vec::new()
        };
        let mut columns = Vec::with_capacity(p.stages.len());
        for stage in p.stages {
            let totals = if resolved.is_unfiltered() {
                exact
                    .iter()
                    .find(|t| t.stage_id == stage.id.0)
                    .map(|t| Totals {
                        deals: t.deals,
                        budget: t.budget,
                        capped: false,
                    })
                    .unwrap_or_default()
            } else {
                query::capped_totals(&mut conn, caller.account_id, pipeline, stage.id, &resolved)
                    .await?
            };
            let deals = query::column_page(
                &mut conn,
                caller.account_id,
                pipeline,
                stage.id,
                &resolved,
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
        filter: &DealFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> AppResult<Page<Deal>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let resolved = self.resolve(&mut conn, caller, filter, &scope).await?;
        query::column_page(
            &mut conn,
            caller.account_id,
            pipeline,
            stage,
            &resolved,
            &PageRequest::new(after, Some(limit)),
        )
        .await
    }

    async fn list(
        &self,
        caller: Caller,
        filter: &DealFilter,
        sort: ListSort,
        desc: bool,
        page: PageRequest,
    ) -> AppResult<Page<Deal>> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let resolved = self.resolve(&mut conn, caller, filter, &scope).await?;
        query::list_page(&mut conn, caller.account_id, &resolved, sort, desc, &page).await
    }

    async fn list_at(
        &self,
        caller: Caller,
        filter: &DealFilter,
        sort: ListSort,
        desc: bool,
        page: u32,
        limit: u32,
    ) -> AppResult<(Vec<Deal>, bool)> {
        let scope = access::scope(&*self.accounts, caller, Action::View).await?;
        let mut conn = self.conn().await?;
        let resolved = self.resolve(&mut conn, caller, filter, &scope).await?;
        query::list_at(
            &mut conn,
            caller.account_id,
            &resolved,
            sort,
            desc,
            page,
            limit,
        )
        .await
    }

    async fn saved_filters(&self, caller: Caller) -> AppResult<Vec<SavedFilter>> {
        let me = me(caller)?;
        let mut conn = self.conn().await?;
        let rows: Vec<(i64, String, String)> = saved_filters::table
            .filter(saved_filters::account_id.eq(caller.account_id.0))
            .filter(saved_filters::user_id.eq(me))
            .order(saved_filters::id)
            .select((saved_filters::id, saved_filters::name, saved_filters::query))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, query)| SavedFilter {
                id: SavedFilterId(id),
                name,
                query,
            })
            .collect())
    }

    async fn save_filter(&self, caller: Caller, name: &str, query: &str) -> AppResult<SavedFilter> {
        let me = me(caller)?;
        let mut errors = Vec::new();
        let name = check_name("name", name, 100, &mut errors);
        if query.len() > 2000 {
            errors.push(FieldError {
                field: "query".into(),
                code: "too_long".into(),
                message: "the filter is too long".into(),
            });
        }
        finish(errors)?;
        let mut conn = self.conn().await?;
        let count: i64 = saved_filters::table
            .filter(saved_filters::account_id.eq(caller.account_id.0))
            .filter(saved_filters::user_id.eq(me))
            .count()
            .get_result(&mut conn)
            .await?;
        if count >= 50 {
            return Err(AppError::validation(
                "name",
                "too_many",
                "at most 50 saved filters",
            ));
        }
        let id: i64 = diesel::insert_into(saved_filters::table)
            .values((
                saved_filters::account_id.eq(caller.account_id.0),
                saved_filters::user_id.eq(me),
                saved_filters::name.eq(&name),
                saved_filters::query.eq(query),
            ))
            .returning(saved_filters::id)
            .get_result(&mut conn)
            .await?;
        Ok(SavedFilter {
            id: SavedFilterId(id),
            name,
            query: query.to_string(),
        })
    }

    async fn delete_saved_filter(&self, caller: Caller, id: SavedFilterId) -> AppResult<()> {
        let me = me(caller)?;
        let mut conn = self.conn().await?;
        let n = diesel::delete(
            saved_filters::table
                .filter(saved_filters::account_id.eq(caller.account_id.0))
                .filter(saved_filters::user_id.eq(me))
                .filter(saved_filters::id.eq(id.0)),
        )
        .execute(&mut conn)
        .await?;
        if n == 0 {
            return Err(AppError::not_found("saved filter"));
        }
        Ok(())
    }
}

fn me(caller: Caller) -> AppResult<i64> {
    caller
        .actor
        .user_id()
        .map(|u| u.0)
        .ok_or_else(|| AppError::forbidden("saved filters belong to users"))
}

/// A live deal the scope lets the caller see (others look like no deal at all).
async fn visible_deal(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    scope: &Scope,
    id: DealId,
) -> AppResult<DealRow> {
    let row: DealRow = deals::table
        .filter(deals::account_id.eq(account.0))
        .filter(deals::id.eq(id.0))
        .filter(deals::deleted_at.is_null())
        .select(DealRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("deal"))?;
    if !scope.allows(UserId(row.responsible_user_id)) {
        return Err(AppError::not_found("deal"));
    }
    Ok(row)
}

/// Names the deal an error of a batch is about.
fn in_deal(mut e: AppError, row: &DealRow) -> AppError {
    e.message = format!("deal “{}”: {}", row.name, e.message);
    e
}

fn unique_as(e: diesel::result::Error, field: &str, message: &str) -> AppError {
    match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => AppError::validation(field, "taken", message),
        other => other.into(),
    }
}

async fn group_by_id(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: i64,
) -> AppResult<FieldGroup> {
    fields::load_groups(conn, account)
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| AppError::not_found("field group"))
}

async fn field_by_id(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: i64,
) -> AppResult<CustomField> {
    fields::load(conn, account)
        .await?
        .into_iter()
        .find(|f| f.id.0 == id)
        .ok_or_else(|| AppError::not_found("field"))
}
