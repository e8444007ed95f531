//! Background jobs on apalis (PostgreSQL storage, schema `apalis`).
//!
//! Retries are persistent and back off: a job whose handler fails transiently is pushed back to
//! `run_at = now() + backoff(attempt)` (exponential, with jitter) before the handler returns the
//! error, so apalis only fetches it again when that time comes, even across restarts. After
//! `max_attempts` the job stays `Failed` for good: that is the dead-letter list, shown on the
//! admin page, where a job can be run again or discarded.
//!
//! With `jobs.store = "redis"` (scale-out) jobs wait in Redis (apalis-redis); there a failed
//! job is retried inside its worker with the same backoff, and after `max_attempts` it is
//! killed into the queue's dead set, from which the admin page runs it again or discards it.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: base · 2^(attempt−1), capped, ±25 % jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let jitter = rand::rng().random_range(0.75..1.25);
        raw.mul_f64(jitter)
    }
}

/// Pushes a failed job's next run into the future (see the module docs).
pub async fn defer(pool: &PgPool, task_id: &str, delay: Duration) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $2) WHERE id = $1")
        .bind(task_id)
        .bind(delay.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(())
}

/// After a job's handler failed: on PostgreSQL the next attempt is put off by the backoff (even
/// across restarts); on Redis the worker's retry layer waits the backoff, and at the cap the
/// job is killed into the dead set (apalis-redis would otherwise retry 25 times, a second
/// apart) — the error to return for that is given back.
pub async fn after_failure(
    jobs: &JobStore,
    retry: RetryPolicy,
    id: &apalis::prelude::TaskId,
    attempt: &apalis::prelude::Attempt,
    error: String,
) -> Option<apalis::prelude::BoxDynError> {
    let n = attempt.current().max(1) as u32;
    let delay = retry.backoff(n);
    tracing::info!(
        attempt = n,
        ?delay,
        "job failed; next attempt after the backoff"
    );
    match jobs {
        JobStore::Postgres(pool) => {
            if let Err(db) = defer(pool, &id.to_string(), delay).await {
                tracing::warn!(error = %db, "could not defer the retry");
            }
            None
        }
        JobStore::Redis(..) if n as i32 >= retry.max_attempts => {
            Some(Box::new(apalis::prelude::AbortError::new(error)))
        }
        JobStore::Redis(..) => None,
    }
}

/// What a panic said (its payload, when it is text).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

async fn pg_enqueue<T>(
    pool: &PgPool,
    queue: &str,
    job: T,
    delay: Option<Duration>,
    policy: RetryPolicy,
) -> Result<(), String>
where
    T: Serialize + serde::de::DeserializeOwned + Send + Sync + Unpin + 'static,
{
    use apalis::prelude::{TaskBuilder, TaskSink};
    let mut storage = apalis_postgres::PostgresStorage::<T>::new(pool)
        .with_config(apalis_postgres::Config::default().queue(queue));
    let mut task = TaskBuilder::new(job).max_attempts(policy.max_attempts as usize);
    if let Some(d) = delay {
        task = task.run_after(d);
    }
    storage
        .push_task(task.build())
        .await
        .map_err(|e| format!("enqueue on {queue}: {e}"))
}

/// The Redis store's sweep of one queue's finished jobs: apalis keeps each job's data, metadata
/// and result, and its id in the queue's done set, forever. Removes up to ARGV[2] jobs finished
/// (status Done) more than ARGV[1] seconds ago; dead jobs stay for the admin. KEYS: the done set,
/// the data hash, the metadata prefix.
const SWEEP_DONE_LUA: &str = r#"
local cutoff = tonumber(redis.call("TIME")[1]) - tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local removed = 0
local cursor = "0"
repeat
  local page = redis.call("SSCAN", KEYS[1], cursor, "COUNT", 1000)
  cursor = page[1]
  for _, id in ipairs(page[2]) do
    if removed >= limit then break end
    local meta = KEYS[3] .. ":" .. id
    local status = redis.call("HGET", meta, "status")
    local done_at = tonumber(redis.call("HGET", meta, "done_at"))
    if status == false or (status == "Done" and done_at ~= nil and done_at <= cutoff) then
      redis.call("HDEL", KEYS[2], id)
      redis.call("HDEL", KEYS[3] .. ":result", id)
      redis.call("DEL", meta)
      redis.call("SREM", KEYS[1], id)
      removed = removed + 1
    end
  end
until cursor == "0" or removed >= limit
return removed
"#;

/// Where this installation's jobs wait.
#[derive(Clone)]
pub enum JobStore {
    Postgres(PgPool),
    /// The connection, and the queues that exist (Redis keeps no list of them).
    Redis(redis::aio::ConnectionManager, std::sync::Arc<Vec<String>>),
}

pub type StoreError = String;

impl JobStore {
    /// Adds a job to `queue`, to run now or after `delay`; returns once it is stored.
    pub async fn enqueue<T>(
        &self,
        queue: &str,
        job: T,
        delay: Option<Duration>,
        policy: RetryPolicy,
    ) -> Result<(), StoreError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + Sync + Unpin + 'static,
    {
        match self {
            JobStore::Postgres(pool) => pg_enqueue(pool, queue, job, delay, policy).await,
            JobStore::Redis(conn, _) => {
                use apalis::prelude::{TaskBuilder, TaskSink};
                let mut storage = apalis_redis::RedisStorage::<T>::new(conn.clone())
                    .with_config(apalis_redis::Config::default().queue(queue));
                let mut task = TaskBuilder::new(job).max_attempts(policy.max_attempts as usize);
                if let Some(d) = delay {
                    task = task.run_after(d);
                }
                storage
                    .push_task(task.build())
                    .await
                    .map_err(|e| format!("enqueue on {queue}: {e}"))
            }
        }
    }

    /// Removes jobs finished more than `keep` ago, a batch at a time (dead jobs stay); returns
    /// how many went. apalis keeps every finished job, so without this the PostgreSQL table (and
    /// each fetch's work) grows with every event delivered, and so does Redis (each job's data,
    /// metadata and result; see [`SWEEP_DONE_LUA`]).
    pub async fn prune_done(&self, keep: Duration) -> Result<u64, StoreError> {
        const BATCH: i64 = 5000;
        let pool = match self {
            JobStore::Postgres(pool) => pool,
            JobStore::Redis(conn, queues) => {
                let mut conn = conn.clone();
                let sweep = redis::Script::new(SWEEP_DONE_LUA);
                let mut total = 0;
                for q in queues.iter() {
                    let c = apalis_redis::Config::default().queue(q);
                    // A queue in batches, so that one call never holds Redis for long.
                    loop {
                        let gone: u64 = sweep
                            .key(c.done_jobs_set())
                            .key(c.job_data_hash())
                            .key(c.job_meta_hash())
                            .arg(keep.as_secs())
                            .arg(BATCH)
                            .invoke_async(&mut conn)
                            .await
                            .map_err(|e| e.to_string())?;
                        total += gone;
                        if (gone as i64) < BATCH {
                            break;
                        }
                    }
                }
                return Ok(total);
            }
        };
        let mut total = 0;
        loop {
            let gone = sqlx::query(
                "DELETE FROM apalis.jobs WHERE id IN (
                     SELECT id FROM apalis.jobs
                      WHERE status = 'Done' AND done_at < now() - make_interval(secs => $1)
                      LIMIT $2)",
            )
            .bind(keep.as_secs_f64())
            .bind(BATCH)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?
            .rows_affected();
            total += gone;
            if (gone as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        match self {
            JobStore::Postgres(pool) => pg_queue_stats(pool).await.map_err(|e| e.to_string()),
            JobStore::Redis(conn, queues) => {
                use redis::AsyncCommands;
                let mut conn = conn.clone();
                let mut out = Vec::new();
                for q in queues.iter() {
                    let c = apalis_redis::Config::default().queue(q);
                    let e = |e: redis::RedisError| e.to_string();
                    let active: i64 = conn.llen(c.active_jobs_list()).await.map_err(e)?;
                    let scheduled: i64 = conn.zcard(c.scheduled_jobs_set()).await.map_err(e)?;
                    let running: i64 = conn.scard(c.inflight_jobs_set()).await.map_err(e)?;
                    let dead: i64 = conn.scard(c.dead_jobs_set()).await.map_err(e)?;
                    let done: i64 = conn.scard(c.done_jobs_set()).await.map_err(e)?;
                    out.push(QueueStats {
                        queue: q.clone(),
                        pending: active + scheduled,
                        running,
                        retrying: 0,
                        dead,
                        done,
                    });
                }
                Ok(out)
            }
        }
    }

    pub async fn dead_jobs(&self, limit: i64) -> Result<Vec<DeadJob>, StoreError> {
        match self {
            JobStore::Postgres(pool) => pg_dead_jobs(pool, limit).await.map_err(|e| e.to_string()),
            JobStore::Redis(conn, queues) => {
                use redis::AsyncCommands;
                let mut conn = conn.clone();
                let mut out = Vec::new();
                for q in queues.iter() {
                    let c = apalis_redis::Config::default().queue(q);
                    let ids: Vec<String> = conn
                        .smembers(c.dead_jobs_set())
                        .await
                        .map_err(|e| e.to_string())?;
                    for id in ids {
                        let meta: std::collections::HashMap<String, String> = conn
                            .hgetall(format!("{}:{id}", c.job_meta_hash()))
                            .await
                            .map_err(|e| e.to_string())?;
                        out.push(DeadJob {
                            error: meta
                                .get("result")
                                .map(|r| last_error(r))
                                .unwrap_or_default(),
                            attempts: meta
                                .get("attempts")
                                .and_then(|a| a.parse().ok())
                                .unwrap_or(0),
                            failed_at: meta.get("done_at").cloned(),
                            queue: q.clone(),
                            id,
                        });
                        if out.len() as i64 >= limit {
                            return Ok(out);
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// Runs a dead job again from its first attempt. False if there is no such dead job.
    pub async fn retry_dead(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            JobStore::Postgres(pool) => pg_retry_dead(pool, id).await.map_err(|e| e.to_string()),
            JobStore::Redis(conn, queues) => {
                let mut conn = conn.clone();
                let Some(c) = redis_dead_queue(&mut conn, queues, id).await? else {
                    return Ok(false);
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                // Back into the scheduled set, due now: the next fetch promotes it to the active list.
                redis::pipe()
                    .atomic()
                    .srem(c.dead_jobs_set(), id)
                    .hset(format!("{}:{id}", c.job_meta_hash()), "attempts", 0)
                    .zadd(c.scheduled_jobs_set(), id, now)
                    .del(c.signal_list())
                    .lpush(c.signal_list(), 1)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
        }
    }

    pub async fn discard_dead(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            JobStore::Postgres(pool) => pg_discard_dead(pool, id).await.map_err(|e| e.to_string()),
            JobStore::Redis(conn, queues) => {
                let mut conn = conn.clone();
                let Some(c) = redis_dead_queue(&mut conn, queues, id).await? else {
                    return Ok(false);
                };
                redis::pipe()
                    .atomic()
                    .srem(c.dead_jobs_set(), id)
                    .hdel(c.job_data_hash(), id)
                    .del(format!("{}:{id}", c.job_meta_hash()))
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
        }
    }
}

/// The queue whose dead set holds `id`.
async fn redis_dead_queue(
    conn: &mut redis::aio::ConnectionManager,
    queues: &[String],
    id: &str,
) -> Result<Option<apalis_redis::Config>, StoreError> {
    use redis::AsyncCommands;
    for q in queues {
        let c = apalis_redis::Config::default().queue(q);
        if conn
            .sismember(c.dead_jobs_set(), id)
            .await
            .map_err(|e: redis::RedisError| e.to_string())?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    pub queue: String,
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub dead: i64,
    pub done: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadJob {
    pub id: String,
    pub queue: String,
    pub attempts: i32,
    pub error: String,
    pub failed_at: Option<String>,
}

/// The condition of a dead job (a macro, so queries stay static strings).
macro_rules! dead {
    () => {
        "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))"
    };
}

async fn pg_queue_stats(pool: &PgPool) -> Result<Vec<QueueStats>, sqlx::Error> {
    let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(concat!(
        "SELECT job_type,
                count(*) FILTER (WHERE status IN ('Pending', 'Queued')),
                count(*) FILTER (WHERE status = 'Running'),
                count(*) FILTER (WHERE status = 'Failed' AND attempts < max_attempts),
                count(*) FILTER (WHERE ",
        dead!(),
        "),
                count(*) FILTER (WHERE status = 'Done')
           FROM apalis.jobs GROUP BY job_type ORDER BY job_type"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(queue, pending, running, retrying, dead, done)| QueueStats {
                queue,
                pending,
                running,
                retrying,
                dead,
                done,
            },
        )
        .collect())
}

/// The newest dead jobs with their last error.
async fn pg_dead_jobs(pool: &PgPool, limit: i64) -> Result<Vec<DeadJob>, sqlx::Error> {
    /// id, queue, attempts, last result (JSON text), failed at (text)
    type DeadRow = (String, String, i32, Option<String>, Option<String>);
    let rows: Vec<DeadRow> =
        sqlx::query_as(concat!(
            "SELECT id, job_type, attempts, last_result::text, to_char(done_at, 'YYYY-MM-DD HH24:MI:SS') FROM apalis.jobs WHERE ",
            dead!(),
            " ORDER BY done_at DESC NULLS LAST LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, queue, attempts, result, failed_at)| DeadJob {
            id,
            queue,
            attempts,
            error: result.map(|r| last_error(&r)).unwrap_or_default(),
            failed_at,
        })
        .collect())
}

/// The message of a stored `{"Err": "…"}` result (or the result as it is).
fn last_error(result: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(result) {
        Ok(v) => match v.get("Err") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => v.to_string(),
        },
        Err(_) => result.to_string(),
    }
}

/// Runs a dead job again from its first attempt. False if there is no such dead job.
async fn pg_retry_dead(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(), lock_by = NULL, lock_at = NULL,
                done_at = NULL, last_result = NULL
          WHERE id = $1 AND ",
        dead!()
    ))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn pg_discard_dead(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "DELETE FROM apalis.jobs WHERE id = $1 AND ",
        dead!()
    ))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for (attempt, nominal) in [
            (1u32, 100u64),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let d = p.backoff(attempt).as_millis() as u64;
            assert!(
                d >= nominal * 3 / 4 && d <= nominal * 5 / 4,
                "attempt {attempt}: {d} ms"
            );
        }
    }
}
