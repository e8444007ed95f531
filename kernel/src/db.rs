//! The async diesel connection pool shared by the modules of one process.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

pub use diesel_async::pooled_connection::deadpool::PoolError;

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_size: usize,
    /// How long a request waits for a free connection before it fails with `Unavailable`.
    pub wait_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
        }
    }
}

/// How long the server lets a session sit idle inside a transaction before it ends it.
pub const IDLE_IN_TRANSACTION_MS: u64 = 60_000;

/// Builds a pool; no connection is opened until the first checkout.
pub fn build_pool(url: &str, opts: &PoolOptions) -> Result<DbPool, String> {
    // `Fast` recycling: no `SELECT 1` round trip on every checkout (the default would double the
    // queries of a page). A connection that died is noticed on use and dropped by the pool.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    // A connection whose work was cancelled half-way through a transaction (a dropped request,
    // an aborted task) goes back to the pool still in that transaction, and is only found
    // broken when next checked out: until then it would hold its locks. The server ends such a
    // session after a minute, whatever the pool does. Nothing of ours leaves a transaction idle
    // that long on purpose.
    config.custom_setup = Box::new(|url| {
        let url = url.to_string();
        Box::pin(async move {
            use diesel_async::{AsyncConnection, SimpleAsyncConnection};
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}"
            ))
            .await
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(opts.max_size)
        .wait_timeout(Some(opts.wait_timeout))
        .create_timeout(Some(opts.wait_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("cannot build the database pool: {e}"))
}

/// Replaces the database name in a PostgreSQL URL (`postgres://u:p@h:port/db?x` → `/other?x`).
pub fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i);
    let root = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

/// The database name of a PostgreSQL URL, if it names one.
pub fn database_of(url: &str) -> Option<String> {
    let base = url.split('?').next()?;
    let after_scheme = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    let (_, db) = after_scheme.split_once('/')?;
    (!db.is_empty()).then(|| db.to_string())
}

/// A LIKE/ILIKE pattern matching `text` anywhere, with `%`, `_` and `\` taken literally.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_name_keeping_the_rest() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5/a", "b"),
            "postgres://u:p@h:5/b"
        );
        assert_eq!(
            url_with_database("postgres://h/a?sslmode=disable", "b"),
            "postgres://h/b?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://h:5432", "b"),
            "postgres://h:5432/b"
        );
        assert_eq!(
            database_of("postgres://u@h/crm?x=1").as_deref(),
            Some("crm")
        );
        assert_eq!(database_of("postgres://u@h"), None);
    }
}
