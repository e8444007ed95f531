//! Bots: Salesbot-style scenarios of steps, stored as JSON and checked on save.

use automation_api::*;
use chrono::{DateTime, Utc};
use diesel::OptionalExtension;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Jsonb, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use kernel::{AppError, AppResult, Caller};
use serde_json::Value;

use crate::service::Inner;

#[derive(QueryableByName)]
struct BotRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    pipeline_id: i64,
    #[diesel(sql_type = Jsonb)]
    steps: Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

const BOT_COLUMNS: &str = "id, name, pipeline_id, steps, created_at, updated_at";

impl BotRow {
    fn bot(self) -> AppResult<Bot> {
        Ok(Bot {
            id: BotId(self.id),
            name: self.name,
            pipeline_id: self.pipeline_id,
            steps: serde_json::from_value(self.steps)
                .map_err(|e| AppError::internal(format!("stored bot steps: {e}")))?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Inner {
    pub(crate) async fn bots(&self, caller: Caller) -> AppResult<Vec<Bot>> {
        self.accounts_member(caller).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<BotRow> = diesel::sql_query(format!(
            "SELECT {BOT_COLUMNS} FROM automation.bots WHERE account_id = $1 ORDER BY lower(name), id"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .load(&mut conn)
        .await?;
        rows.into_iter().map(BotRow::bot).collect()
    }

    pub(crate) async fn bot(&self, caller: Caller, id: BotId) -> AppResult<Bot> {
        self.accounts_member(caller).await?;
        let mut conn = self.conn().await?;
        let row: Option<BotRow> = diesel::sql_query(format!(
            "SELECT {BOT_COLUMNS} FROM automation.bots WHERE account_id = $1 AND id = $2"
        ))
        .bind::<BigInt, _>(caller.account_id.0)
        .bind::<BigInt, _>(id.0)
        .get_result(&mut conn)
        .await
        .optional()?;
        row.ok_or_else(|| AppError::not_found("bot"))?.bot()
    }

    pub(crate) async fn save_bot(
        &self,
        caller: Caller,
        id: Option<BotId>,
        draft: BotDraft,
    ) -> AppResult<Bot> {
        self.require_admin(caller).await?;
        // The bot's actions and deal conditions, checked as a trigger's are.
        let mut conditions = Vec::new();
        let mut actions = Vec::new();
        for s in &draft.steps {
            match s {
                BotStep::Act { action } => actions.push(action.clone()),
                BotStep::Branch { rules, .. } => {
                    for r in rules {
                        if let Match::Deal { condition } = &r.when {
                            conditions.push(condition.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let parts = self
            .known_parts(caller, draft.pipeline_id, &conditions, &actions)
            .await?;
        let d = crate::check::bot(draft, &parts.known(self))?;
        let steps = serde_json::to_value(&d.steps)
            .map_err(|e| AppError::internal(format!("encoding a bot: {e}")))?;
        let mut conn = self.conn().await?;
        let result: Result<Option<BotRow>, diesel::result::Error> = match id {
            None => diesel::sql_query(format!(
                "INSERT INTO automation.bots (account_id, pipeline_id, name, steps, created_by)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {BOT_COLUMNS}"
            ))
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(d.pipeline_id)
            .bind::<Text, _>(&d.name)
            .bind::<Jsonb, _>(&steps)
            .bind::<BigInt, _>(caller.actor.user_id().map(|u| u.0).unwrap_or(0))
            .get_result(&mut conn)
            .await
            .optional(),
            Some(id) => diesel::sql_query(format!(
                "UPDATE automation.bots SET pipeline_id = $3, name = $4, steps = $5, updated_at = now()
                  WHERE account_id = $1 AND id = $2 RETURNING {BOT_COLUMNS}"
            ))
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(id.0)
            .bind::<BigInt, _>(d.pipeline_id)
            .bind::<Text, _>(&d.name)
            .bind::<Jsonb, _>(&steps)
            .get_result(&mut conn)
            .await
            .optional(),
        };
        match result {
            Ok(Some(row)) => row.bot(),
            Ok(None) => Err(AppError::not_found("bot")),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Err(AppError::validation(
                "name",
                "taken",
                "a bot with this name exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn delete_bot(&self, caller: Caller, id: BotId) -> AppResult<()> {
        self.require_admin(caller).await?;
        let mut conn = self.conn().await?;
        let n = diesel::sql_query("DELETE FROM automation.bots WHERE account_id = $1 AND id = $2")
            .bind::<BigInt, _>(caller.account_id.0)
            .bind::<BigInt, _>(id.0)
            .execute(&mut conn)
            .await?;
        if n == 0 {
            return Err(AppError::not_found("bot"));
        }
        Ok(())
    }
}
