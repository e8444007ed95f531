//! Finding the database: the configured URL, or Voronka's private PostgreSQL cluster.

use kernel::migrate::ModuleMigrations;
use kernel::pg_cluster::{Durability, PrivateCluster};

use crate::config::Config;

/// Every module's migrations, in dependency order.
pub const MIGRATIONS: &[ModuleMigrations] = &[
    accounts::MIGRATIONS,
    deals::MIGRATIONS,
    contacts::MIGRATIONS,
    activities::MIGRATIONS,
    automation::MIGRATIONS,
    messaging::MIGRATIONS,
    analytics::MIGRATIONS,
    importer::MIGRATIONS,
];

/// The database name used in a private cluster.
const PRIVATE_DATABASE: &str = "voronka";

pub struct Database {
    pub url: String,
    /// Set when this process started a private cluster, which it stops on exit.
    pub cluster: Option<PrivateCluster>,
}

impl Database {
    /// Uses `database_url`, or starts (creating if needed) the private cluster under `data_dir`.
    pub async fn open(config: &Config) -> Result<Database, String> {
        if let Some(url) = &config.database_url {
            return Ok(Database {
                url: url.clone(),
                cluster: None,
            });
        }
        let dir = config.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let cluster = PrivateCluster::ensure_started(&dir, Durability::Durable)
                .map_err(|e| e.to_string())?;
            kernel::migrate::ensure_database(&cluster.url("postgres"), PRIVATE_DATABASE)
                .map_err(|e| format!("creating the database: {e}"))?;
            let url = cluster.url(PRIVATE_DATABASE);
            let started_here = cluster.started_here;
            Ok(Database {
                url,
                cluster: started_here.then_some(cluster),
            })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Applies the pending migrations of the modules this process runs (a remote module's
    /// schema lives in its service's database).
    pub async fn migrate(&self, config: &Config) -> Result<Vec<(String, String)>, String> {
        let local: Vec<ModuleMigrations> = MIGRATIONS
            .iter()
            .filter(|m| !config.is_remote(m.schema))
            .cloned()
            .collect();
        kernel::migrate::run_all(&self.url, &local)
            .await
            .map_err(|e| format!("migrations failed: {e}"))
    }

    /// Stops the private cluster if this process started it and no other process is using it
    /// (another `voronka` may have started later against the same data directory).
    pub async fn close(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            let _ = tokio::task::spawn_blocking(move || stop_unless_shared(cluster)).await;
        }
    }
}

fn stop_unless_shared(cluster: PrivateCluster) {
    // Our own pools close asynchronously: give their connections a moment to go.
    let url = cluster.url("postgres");
    let mut others = kernel::migrate::other_connections(&url);
    for _ in 0..30 {
        if !matches!(others, Ok(n) if n > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        others = kernel::migrate::other_connections(&url);
    }
    match others {
        Ok(n) if n > 0 => {
            tracing::info!(
                connections = n,
                "private PostgreSQL cluster left running: other processes use it"
            );
            return;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not check the cluster's other connections"),
    }
    match cluster.stop() {
        Ok(()) => tracing::info!("private PostgreSQL cluster stopped"),
        Err(e) => tracing::warn!(error = %e, "stopping the private PostgreSQL cluster"),
    }
}
