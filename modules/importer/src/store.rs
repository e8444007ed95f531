//! The importer's own bookkeeping (schema `importer`): runs with their progress, and the map
//! from amoCRM ids to Voronka ids.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use kernel::db::DbPool;
use kernel::{AccountId, AppResult};

use crate::run::Progress;

#[derive(QueryableByName)]
struct RunRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Jsonb)]
    progress: serde_json::Value,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    started_by: Option<i64>,
    #[diesel(sql_type = Timestamptz)]
    started_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str =
    "id, source, state, progress, error, started_by, started_at, updated_at, finished_at";

/// A run as stored.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    /// The amoCRM account's base URL.
    pub source: String,
    /// `queued` (waiting for a worker), `running`, `done` or `failed`.
    pub state: String,
    pub progress: Progress,
    pub error: Option<String>,
    /// The user who started it from the settings (None: the command line).
    pub started_by: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A run that saved nothing for this long is taken for dead (its process stopped) and may be
/// started again.
pub const STALE_MINUTES: i64 = 5;

impl From<RunRow> for Run {
    fn from(r: RunRow) -> Run {
        Run {
            id: r.id,
            source: r.source,
            state: r.state,
            progress: serde_json::from_value(r.progress).unwrap_or_default(),
            error: r.error,
            started_by: r.started_by,
            started_at: r.started_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: DbPool,
}

impl Store {
    pub fn new(pool: DbPool) -> Store {
        Store { pool }
    }

    /// The run to go on with for this account and source: the last one unless it finished
    /// (then a new one, which updates what the earlier ones brought).
    pub async fn open_run(&self, account: AccountId, source: &str) -> AppResult<(Run, bool)> {
        let mut conn = self.pool.get().await?;
        let last: Option<RunRow> = kernel::sql::query(format!(
            "SELECT {RUN_COLUMNS} FROM importer.runs
              WHERE account_id = $1 AND source = $2 ORDER BY id DESC LIMIT 1"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(source)
        .get_result(&mut conn)
        .await
        .optional()?;
        if let Some(r) = last
            && r.state != "done"
        {
            kernel::sql::query(
                "UPDATE importer.runs SET state = 'running', error = NULL, updated_at = now() WHERE id = $1",
            )
            .bind::<BigInt, _>(r.id)
            .execute(&mut conn)
            .await?;
            let run = Run::from(r);
            // A run queued from the settings and not begun yet starts afresh.
            let resumed = !run.progress.done.is_empty() || !run.progress.step.is_empty();
            return Ok((run, resumed));
        }
        let r: RunRow = kernel::sql::query(format!(
            "INSERT INTO importer.runs (account_id, source) VALUES ($1, $2)
             RETURNING {RUN_COLUMNS}"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(source)
        .get_result(&mut conn)
        .await?;
        Ok((r.into(), false))
    }

    pub async fn run(&self, account: AccountId, id: i64) -> AppResult<Option<Run>> {
        let mut conn = self.pool.get().await?;
        let r: Option<RunRow> = kernel::sql::query(format!(
            "SELECT {RUN_COLUMNS} FROM importer.runs WHERE account_id = $1 AND id = $2"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?;
        Ok(r.map(Run::from))
    }

    /// The account's runs, newest first.
    pub async fn runs(&self, account: AccountId, limit: i64) -> AppResult<Vec<Run>> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<RunRow> = kernel::sql::query(format!(
            "SELECT {RUN_COLUMNS} FROM importer.runs WHERE account_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(Run::from).collect())
    }

    /// Queues a run started from the settings, keeping its token for the background job: the
    /// unfinished run of this account and source goes on (else a new one begins, which updates
    /// what earlier ones brought). Refused while a run of them is under way.
    pub async fn queue(
        &self,
        account: AccountId,
        source: &str,
        token: &str,
        oauth: Option<&serde_json::Value>,
        by: i64,
    ) -> AppResult<i64> {
        #[derive(QueryableByName)]
        struct Last {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            state: String,
            #[diesel(sql_type = diesel::sql_types::Bool)]
            fresh: bool,
        }
        let mut conn = self.pool.get().await?;
        let last: Option<Last> = kernel::sql::query(
            "SELECT id, state, updated_at > now() - make_interval(mins => $3::int) AS fresh
               FROM importer.runs WHERE account_id = $1 AND source = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(source)
        .bind::<BigInt, _>(STALE_MINUTES)
        .get_result(&mut conn)
        .await
        .optional()?;
        let busy = || {
            kernel::AppError::new(
                kernel::ErrorCode::Conflict,
                "an import from this amoCRM account is under way: wait for it to finish",
            )
        };
        match last {
            Some(l) if (l.state == "queued" || l.state == "running") && l.fresh => Err(busy()),
            Some(l) if l.state != "done" => {
                let n = kernel::sql::query(
                    "UPDATE importer.runs SET state = 'queued', token = $2, started_by = $3,
                            oauth = $5, updated_at = now()
                      WHERE id = $1 AND state = $4",
                )
                .bind::<BigInt, _>(l.id)
                .bind::<Text, _>(token)
                .bind::<BigInt, _>(by)
                .bind::<Text, _>(&l.state)
                .bind::<Nullable<Jsonb>, _>(oauth)
                .execute(&mut conn)
                .await?;
                if n == 0 {
                    return Err(busy());
                }
                Ok(l.id)
            }
            _ => {
                #[derive(QueryableByName)]
                struct Id {
                    #[diesel(sql_type = BigInt)]
                    id: i64,
                }
                let r: Result<Id, diesel::result::Error> = kernel::sql::query(
                    "INSERT INTO importer.runs (account_id, source, state, token, started_by, oauth)
                     VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING id",
                )
                .bind::<BigInt, _>(account.0)
                .bind::<Text, _>(source)
                .bind::<Text, _>(token)
                .bind::<BigInt, _>(by)
                .bind::<Nullable<Jsonb>, _>(oauth)
                .get_result(&mut conn)
                .await;
                match r {
                    Ok(r) => Ok(r.id),
                    // Another start got in first (one unfinished run per account and source).
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => Err(busy()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// The token a queued run was started with, and its OAuth integration when it was started
    /// with one (None once the run has ended).
    pub async fn token(&self, run: i64) -> AppResult<Option<(String, Option<serde_json::Value>)>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Nullable<Text>)]
            token: Option<String>,
            #[diesel(sql_type = Nullable<Jsonb>)]
            oauth: Option<serde_json::Value>,
        }
        let mut conn = self.pool.get().await?;
        let r: Option<Row> =
            kernel::sql::query("SELECT token, oauth FROM importer.runs WHERE id = $1")
                .bind::<BigInt, _>(run)
                .get_result(&mut conn)
                .await
                .optional()?;
        Ok(r.and_then(|r| r.token.map(|t| (t, r.oauth))))
    }

    /// Keeps an OAuth run's new token pair (amoCRM rotates both at every renewal): a retry of
    /// the run goes on with these.
    pub async fn save_tokens(&self, run: i64, access: &str, refresh: &str) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        kernel::sql::query(
            "UPDATE importer.runs
                SET token = $2, oauth = jsonb_set(oauth, '{refresh_token}', to_jsonb($3::text))
              WHERE id = $1 AND oauth IS NOT NULL AND token IS NOT NULL",
        )
        .bind::<BigInt, _>(run)
        .bind::<Text, _>(access)
        .bind::<Text, _>(refresh)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// A run whose attempt failed in a way a retry may cure waits for its next attempt.
    pub async fn requeue(&self, run: i64, error: &str) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        kernel::sql::query(
            "UPDATE importer.runs SET state = 'queued', error = $2, updated_at = now() WHERE id = $1",
        )
        .bind::<BigInt, _>(run)
        .bind::<Text, _>(error)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Ends a run that will not be tried again: its token is wiped, and a run not finished is
    /// marked failed with `error`.
    pub async fn give_up(&self, run: i64, error: &str) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        kernel::sql::query(
            "UPDATE importer.runs
                SET token = NULL, oauth = NULL, updated_at = now(),
                    state = CASE WHEN state = 'done' THEN state ELSE 'failed' END,
                    error = CASE WHEN state = 'done' THEN error ELSE $2 END
              WHERE id = $1",
        )
        .bind::<BigInt, _>(run)
        .bind::<Text, _>(error)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Saves where a run stands.
    pub async fn save(&self, run: i64, progress: &Progress) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        let json = serde_json::to_value(progress)
            .map_err(|e| kernel::AppError::internal(e.to_string()))?;
        kernel::sql::query(
            "UPDATE importer.runs SET progress = $2, updated_at = now() WHERE id = $1",
        )
        .bind::<BigInt, _>(run)
        .bind::<Jsonb, _>(&json)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Marks a run finished (`error` None) or failed.
    pub async fn finish(&self, run: i64, error: Option<&str>) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        kernel::sql::query(
            "UPDATE importer.runs
                SET state = CASE WHEN $2::text IS NULL THEN 'done' ELSE 'failed' END,
                    error = $2, updated_at = now(),
                    finished_at = CASE WHEN $2::text IS NULL THEN now() END,
                    token = CASE WHEN $2::text IS NULL THEN NULL ELSE token END,
                    oauth = CASE WHEN $2::text IS NULL THEN NULL ELSE oauth END
              WHERE id = $1",
        )
        .bind::<BigInt, _>(run)
        .bind::<Nullable<Text>, _>(error)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Every id mapped so far for this account and source, by (entity, amoCRM id).
    pub async fn ids(
        &self,
        account: AccountId,
        source: &str,
    ) -> AppResult<HashMap<(String, i64), i64>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            entity: String,
            #[diesel(sql_type = BigInt)]
            amo_id: i64,
            #[diesel(sql_type = BigInt)]
            local_id: i64,
        }
        let mut conn = self.pool.get().await?;
        let rows: Vec<Row> = kernel::sql::query(
            "SELECT entity, amo_id, local_id FROM importer.ids WHERE account_id = $1 AND source = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(source)
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.entity, r.amo_id), r.local_id))
            .collect())
    }

    /// Records ids mapped (a repeat overwrites).
    pub async fn map(
        &self,
        account: AccountId,
        source: &str,
        entity: &str,
        pairs: &[(i64, i64)],
    ) -> AppResult<()> {
        use diesel::sql_types::Array;
        if pairs.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        kernel::sql::query(
            "INSERT INTO importer.ids (account_id, source, entity, amo_id, local_id)
             SELECT $1, $2, $3, a, l FROM unnest($4::bigint[], $5::bigint[]) AS x(a, l)
             ON CONFLICT (account_id, source, entity, amo_id) DO UPDATE SET local_id = EXCLUDED.local_id",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(source)
        .bind::<Text, _>(entity)
        .bind::<Array<BigInt>, _>(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}
