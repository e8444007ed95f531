//! The importer's own bookkeeping (schema `importer`): runs with their progress, and the map
//! from amoCRM ids to Voronka ids.

use std::collections::HashMap;

use diesel::sql_types::{BigInt, Jsonb, Nullable, Text};
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
    state: String,
    #[diesel(sql_type = Jsonb)]
    progress: serde_json::Value,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
}

/// A run as stored.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    pub state: String,
    pub progress: Progress,
    pub error: Option<String>,
}

impl From<RunRow> for Run {
    fn from(r: RunRow) -> Run {
        Run {
            id: r.id,
            state: r.state,
            progress: serde_json::from_value(r.progress).unwrap_or_default(),
            error: r.error,
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
        let last: Option<RunRow> = kernel::sql::query(
            "SELECT id, state, progress, error FROM importer.runs
              WHERE account_id = $1 AND source = $2 ORDER BY id DESC LIMIT 1",
        )
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
            return Ok((r.into(), true));
        }
        let r: RunRow = kernel::sql::query(
            "INSERT INTO importer.runs (account_id, source) VALUES ($1, $2)
             RETURNING id, state, progress, error",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<Text, _>(source)
        .get_result(&mut conn)
        .await?;
        Ok((r.into(), false))
    }

    pub async fn run(&self, account: AccountId, id: i64) -> AppResult<Option<Run>> {
        let mut conn = self.pool.get().await?;
        let r: Option<RunRow> = kernel::sql::query(
            "SELECT id, state, progress, error FROM importer.runs WHERE account_id = $1 AND id = $2",
        )
        .bind::<BigInt, _>(account.0)
        .bind::<BigInt, _>(id)
        .get_result(&mut conn)
        .await
        .optional()?;
        Ok(r.map(Run::from))
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
                    finished_at = CASE WHEN $2::text IS NULL THEN now() END
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
