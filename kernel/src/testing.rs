//! Test support: a database per test, cloned from a migrated template.
//!
//! The server is `VORONKA_TEST_DATABASE_URL` when set (any PostgreSQL the tests may use freely);
//! otherwise a private, fsync-off cluster under `target/test-postgres` is created and started on
//! first use and shared by every test process. The template is named after a hash of the
//! migrations, so a changed migration gets a fresh template; each test clones it in milliseconds.

use std::path::PathBuf;
use std::sync::OnceLock;

use diesel::connection::SimpleConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

use crate::db::url_with_database;
use crate::migrate::{self, ModuleMigrations};
use crate::pg_cluster::{Durability, PrivateCluster};

type SyncConn = AsyncConnectionWrapper<AsyncPgConnection>;

fn workspace_target() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // kernel/ sits directly under the workspace root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// The URL of the server's maintenance database (`postgres`).
pub fn server_admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("VORONKA_TEST_DATABASE_URL") {
            return url_with_database(&url, "postgres");
        }
        let dir = workspace_target().join("test-postgres");
        std::fs::create_dir_all(&dir).expect("create target/test-postgres");
        // Several test processes may start at once: one of them creates and starts the cluster.
        let lock = std::fs::File::create(dir.join(".lock")).expect("create the cluster lock file");
        lock.lock().expect("lock the test cluster");
        let cluster = PrivateCluster::ensure_started(&dir, Durability::Ephemeral)
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}"));
        drop(lock);
        cluster.url("postgres")
    })
    .clone()
}

fn connect(url: &str) -> SyncConn {
    use diesel::Connection;
    SyncConn::establish(url).unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
}

fn template_name(modules: &[ModuleMigrations]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for m in modules {
        h.update(m.schema.as_bytes());
        for v in migrate::versions(m).expect("read migrations") {
            h.update(v.as_bytes());
        }
    }
    // The SQL files too: an edited migration must not reuse a stale template.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("migrations");
    let mut files: Vec<PathBuf> = walk(&root);
    files.sort();
    for f in files {
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    let digest = h.finalize();
    format!(
        "voronka_tpl_{}",
        digest
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Makes sure the migrated template database exists; returns its name.
fn ensure_template(modules: &[ModuleMigrations]) -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let admin = server_admin_url();
        let name = template_name(modules);
        let mut conn = connect(&admin);
        conn.batch_execute("SELECT pg_advisory_lock(hashtext('voronka:test-template'))")
            .expect("lock");
        if !template_ready(&mut conn, &name) {
            // Missing, or left half-made by a crashed run: build it from scratch.
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .expect("drop a stale template");
            conn.batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create the template database");
            let url = url_with_database(&admin, &name);
            for m in modules {
                migrate::run_pending(&url, m)
                    .unwrap_or_else(|e| panic!("migrating {}: {e}", m.schema));
            }
            conn.batch_execute(&format!("COMMENT ON DATABASE {name} IS 'ready'"))
                .expect("mark template");
        }
        conn.batch_execute("SELECT pg_advisory_unlock(hashtext('voronka:test-template'))")
            .expect("unlock");
        name
    })
    .clone()
}

fn template_ready(conn: &mut SyncConn, name: &str) -> bool {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Ready {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ready: bool,
    }
    diesel::sql_query(
        "SELECT coalesce(bool_or(shobj_description(oid, 'pg_database') = 'ready'), false) AS ready
           FROM pg_database WHERE datname = $1",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .get_result::<Ready>(conn)
    .map(|r| r.ready)
    .unwrap_or(false)
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh database with every given module migrated.
    pub fn new(modules: &[ModuleMigrations]) -> TestDb {
        let template = ensure_template(modules);
        Self::create(Some(&template))
    }

    /// A fresh, empty database (no migrations): for migration tests.
    pub fn empty() -> TestDb {
        Self::create(None)
    }

    fn create(template: Option<&str>) -> TestDb {
        let admin = server_admin_url();
        let name = format!("voronka_test_{}", uuid::Uuid::new_v4().simple());
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        connect(&admin)
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        TestDb {
            url: url_with_database(&admin, &name),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = server_admin_url();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Runs on its own thread: the connection wrapper must not block inside a test's runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(mut conn) = <SyncConn as diesel::Connection>::establish(&admin) {
                let _ = conn.batch_execute(&sql);
            }
        })
        .join();
    }
}
