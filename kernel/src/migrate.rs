//! Each module's migrations, applied into that module's own PostgreSQL schema.
//!
//! The history table (`__diesel_schema_migrations`) lands in the module's schema too, so a schema
//! can be moved to another database together with its history. Runs take an advisory lock per
//! schema, so several processes starting at once apply each migration exactly once.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::{QueryableByName, RunQueryDsl, sql_query, sql_types::Text};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

type SyncConn = AsyncConnectionWrapper<AsyncPgConnection>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A module's schema and the migrations embedded from `migrations/<module>/`.
#[derive(Clone, Copy)]
pub struct ModuleMigrations {
    pub schema: &'static str,
    /// Returns the module's `embed_migrations!` constant (the type is not `Clone`).
    pub migrations: fn() -> EmbeddedMigrations,
}

fn connect(url: &str) -> Result<SyncConn, BoxError> {
    use diesel::Connection;
    Ok(SyncConn::establish(url)?)
}

fn with_schema_lock<T>(
    url: &str,
    schema: &str,
    f: impl FnOnce(&mut SyncConn) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    let mut conn = connect(url)?;
    conn.batch_execute(&format!(
        "SELECT pg_advisory_lock(hashtext('voronka:migrate:{schema}'));
         CREATE SCHEMA IF NOT EXISTS {schema};
         SET search_path TO {schema};"
    ))?;
    let result = f(&mut conn);
    conn.batch_execute(&format!(
        "SELECT pg_advisory_unlock(hashtext('voronka:migrate:{schema}'))"
    ))?;
    result
}

/// Applies the pending migrations of one module; returns the versions applied. Blocking.
pub fn run_pending(url: &str, module: &ModuleMigrations) -> Result<Vec<String>, BoxError> {
    with_schema_lock(url, module.schema, |conn| {
        let applied = conn.run_pending_migrations((module.migrations)())?;
        Ok(applied.into_iter().map(|v| v.to_string()).collect())
    })
}

/// Reverts every applied migration of one module, newest first. Blocking; for tests and tooling.
pub fn revert_all(url: &str, module: &ModuleMigrations) -> Result<Vec<String>, BoxError> {
    with_schema_lock(url, module.schema, |conn| {
        let reverted = conn.revert_all_migrations((module.migrations)())?;
        Ok(reverted.into_iter().map(|v| v.to_string()).collect())
    })
}

/// The migrations a module ships, by version, oldest first.
pub fn versions(module: &ModuleMigrations) -> Result<Vec<String>, BoxError> {
    let migrations = MigrationSource::<Pg>::migrations(&(module.migrations)())?;
    let mut names: Vec<String> = migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// Applies every module's pending migrations, in the given order, off the async runtime.
pub async fn run_all(
    url: &str,
    modules: &[ModuleMigrations],
) -> Result<Vec<(String, String)>, BoxError> {
    let url = url.to_string();
    let modules = modules.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut applied = Vec::new();
        for m in &modules {
            for v in run_pending(&url, m)? {
                applied.push((m.schema.to_string(), v));
            }
        }
        Ok(applied)
    })
    .await?
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// A textual dump of a schema's structure (tables, columns, constraints, indexes, sequences,
/// functions, triggers), stable across runs, to compare after migrating down and up again.
/// The migration history table is left out. Blocking.
pub fn schema_dump(url: &str, schema: &str) -> Result<String, BoxError> {
    let mut conn = connect(url)?;
    let q = format!(
        "SELECT line FROM (
           SELECT 'column ' || c.table_name || '.' || c.column_name || ' ' || c.data_type
                  || ' null=' || c.is_nullable || ' default=' || coalesce(c.column_default, '') AS line
             FROM information_schema.columns c
            WHERE c.table_schema = '{schema}' AND c.table_name <> '__diesel_schema_migrations'
           UNION ALL
           SELECT 'constraint ' || cl.relname || '.' || con.conname || ' ' || pg_get_constraintdef(con.oid)
             FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = cl.relnamespace
            WHERE n.nspname = '{schema}' AND cl.relname <> '__diesel_schema_migrations'
           UNION ALL
           SELECT 'index ' || indexdef FROM pg_indexes
            WHERE schemaname = '{schema}' AND tablename <> '__diesel_schema_migrations'
           UNION ALL
           SELECT 'sequence ' || sequence_name FROM information_schema.sequences
            WHERE sequence_schema = '{schema}'
           UNION ALL
           SELECT 'function ' || p.proname || '(' || pg_get_function_arguments(p.oid) || ') '
                  || md5(p.prosrc)
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '{schema}'
           UNION ALL
           SELECT 'trigger ' || pg_get_triggerdef(t.oid)
             FROM pg_trigger t JOIN pg_class cl ON cl.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = cl.relnamespace
            WHERE n.nspname = '{schema}' AND NOT t.tgisinternal
           UNION ALL
           SELECT 'type ' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = '{schema}' AND t.typtype IN ('e', 'd', 'c')
              AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)
         ) dump ORDER BY line"
    );
    let lines: Vec<Line> = sql_query(q).load(&mut conn)?;
    Ok(lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Creates `database` on the server of `admin_url` unless it exists. Blocking.
pub fn ensure_database(admin_url: &str, database: &str) -> Result<bool, BoxError> {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!("database name {database:?} must be letters, digits and _").into());
    }
    let mut conn = connect(admin_url)?;
    let found: Exists =
        sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(database)
            .get_result(&mut conn)?;
    if found.exists {
        return Ok(false);
    }
    conn.batch_execute(&format!("CREATE DATABASE {database}"))?;
    Ok(true)
}

/// Client connections to the server other than this one. Blocking.
pub fn other_connections(url: &str) -> Result<i64, BoxError> {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = connect(url)?;
    let n: N = sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .get_result(&mut conn)?;
    Ok(n.n)
}
