//! Structural checks: migrations reverse cleanly, module boundaries hold, each module's SQL stays
//! in its own schema, and bad configuration stops the start.

use std::path::{Path, PathBuf};
use std::process::Command;

use kernel::migrate;
use kernel::testing::TestDb;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

#[test]
fn migrations_go_up_down_and_up_with_an_identical_schema() {
    let db = TestDb::empty();
    let modules = voronka::database::MIGRATIONS;
    for m in modules {
        let applied = migrate::run_pending(&db.url, m).unwrap();
        assert_eq!(
            applied.len(),
            migrate::versions(m).unwrap().len(),
            "{} applies all",
            m.schema
        );
        assert!(
            migrate::run_pending(&db.url, m).unwrap().is_empty(),
            "{}: a rerun applies nothing",
            m.schema
        );
    }
    let first: Vec<String> = modules
        .iter()
        .map(|m| migrate::schema_dump(&db.url, m.schema).unwrap())
        .collect();
    for (m, dump) in modules.iter().zip(&first) {
        assert!(
            dump.contains("column "),
            "{}: the dump sees the tables",
            m.schema
        );
    }
    for m in modules.iter().rev() {
        migrate::revert_all(&db.url, m).unwrap();
        assert_eq!(
            migrate::schema_dump(&db.url, m.schema).unwrap(),
            "",
            "{}: down removes everything",
            m.schema
        );
    }
    for m in modules {
        migrate::run_pending(&db.url, m).unwrap();
    }
    let second: Vec<String> = modules
        .iter()
        .map(|m| migrate::schema_dump(&db.url, m.schema).unwrap())
        .collect();
    assert_eq!(first, second);
}

#[test]
fn implementation_crates_depend_only_on_kernel_and_api_crates() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let path_of = |p: &serde_json::Value| p["manifest_path"].as_str().unwrap().to_string();
    let implementations: Vec<String> = packages
        .iter()
        .filter(|p| {
            path_of(p).contains("/modules/") && !p["name"].as_str().unwrap().ends_with("-api")
        })
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert!(implementations.contains(&"accounts".to_string()));
    let mut broken = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let is_app = path_of(p).contains("/app/");
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            if implementations.iter().any(|i| i == dep) && !is_app {
                broken.push(format!("{name} -> {dep}"));
            }
            // Contracts stay light: an -api crate depends on kernel and other -api crates only.
            if name.ends_with("-api")
                && d["path"].is_string()
                && dep != "kernel"
                && !dep.ends_with("-api")
            {
                broken.push(format!("{name} -> {dep}"));
            }
        }
    }
    assert!(broken.is_empty(), "crate boundaries broken: {broken:?}");
}

/// Every schema a module may own; a module's SQL may name only its own.
const SCHEMAS: &[&str] = &[
    "accounts",
    "contacts",
    "deals",
    "activities",
    "automation",
    "messaging",
    "analytics",
    "public",
    "apalis",
];

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// `schema.` references to schemas other than `own` in a piece of SQL.
fn foreign_refs(sql: &str, own: &str) -> Vec<String> {
    let lower = sql.to_lowercase();
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    for schema in SCHEMAS.iter().filter(|s| **s != own) {
        let pat = format!("{schema}.");
        let mut from = 0;
        while let Some(i) = lower[from..].find(&pat) {
            let at = from + i;
            let before_ok = at == 0
                || !(bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b'.');
            let after = bytes.get(at + pat.len()).copied().unwrap_or(b' ');
            if before_ok && (after.is_ascii_alphabetic() || after == b'_' || after == b'"') {
                found.push(format!("{schema}.…"));
            }
            from = at + pat.len();
        }
    }
    found
}

/// The string literals of a Rust source file (where its SQL lives).
fn string_literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            while let Some(ch) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            s.push(escaped);
                        }
                    }
                    '"' => break,
                    _ => s.push(ch),
                }
            }
            out.push(s);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for ch in chars.by_ref() {
                if ch == '\n' {
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn each_modules_sql_names_only_its_own_schema() {
    let root = root();
    let mut problems = Vec::new();
    let mut modules_checked = 0;
    for entry in std::fs::read_dir(root.join("modules")).unwrap().flatten() {
        let module = entry.file_name().to_string_lossy().to_string();
        // A module whose contract (`api/`) exists before its implementation has no schema yet.
        if !entry.path().join("src").exists() {
            continue;
        }
        // A module without a schema of its own (the importer) works only through the other
        // modules' traits: no SQL in its sources.
        if !root.join("migrations").join(&module).exists() {
            let mut rs = Vec::new();
            files(&entry.path().join("src"), "rs", &mut rs);
            for f in rs {
                let src = std::fs::read_to_string(&f).unwrap();
                assert!(
                    !src.contains("sql_query(") && !src.contains("sql::query("),
                    "{} runs SQL but {module} has no migrations (no schema of its own)",
                    f.display()
                );
            }
            continue;
        }
        modules_checked += 1;
        let mut sql_files = Vec::new();
        files(
            &root.join("migrations").join(&module),
            "sql",
            &mut sql_files,
        );
        assert!(!sql_files.is_empty(), "{module} has migrations");
        for f in sql_files {
            for r in foreign_refs(&std::fs::read_to_string(&f).unwrap(), &module) {
                problems.push(format!("{}: {r}", f.display()));
            }
        }
        let mut rs_files = Vec::new();
        files(&entry.path().join("src"), "rs", &mut rs_files);
        for f in rs_files {
            let src = std::fs::read_to_string(&f).unwrap();
            // diesel table declarations: `schema.table (id) {`
            for line in src.lines() {
                let l = line.trim();
                if let Some((schema, rest)) = l.split_once('.')
                    && rest.contains(" (")
                    && l.ends_with('{')
                    && !schema.is_empty()
                    && schema
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && schema != module
                {
                    problems.push(format!("{}: table in schema {schema}", f.display()));
                }
            }
            for lit in string_literals(&src) {
                for r in foreign_refs(&lit, &module) {
                    problems.push(format!("{}: {r} in {lit:?}", f.display()));
                }
            }
        }
    }
    assert!(modules_checked >= 1);
    assert!(problems.is_empty(), "SQL crossing schemas: {problems:#?}");
}

#[test]
fn the_schema_check_itself_catches_a_foreign_reference() {
    assert!(
        foreign_refs(
            "SELECT * FROM deals.deals d JOIN accounts.users u ON true",
            "deals"
        )
        .len()
            == 1
    );
    assert!(foreign_refs("select 1 from accounts.users", "accounts").is_empty());
    assert!(foreign_refs("SELECT public.foo()", "accounts").len() == 1);
    assert_eq!(
        string_literals("let a = \"x.y\"; // \"deals.z\"\nlet b = \"q\\\"r\";"),
        vec!["x.y", "q\"r"]
    );
}

#[test]
fn a_bad_configuration_value_stops_the_start_with_a_clear_message() {
    let cases = [
        ("VORONKA_LISTEN", "not-an-address", "`listen`"),
        ("VORONKA_DB__POOL_SIZE", "0", "db.pool_size"),
        ("VORONKA_LOG__FORMAT", "xml", "log.format"),
        (
            "VORONKA_MODULES__ACCOUNTS__MODE",
            "sideways",
            "modules.accounts.mode",
        ),
        ("VORONKA_DATABASE_URL", "mysql://x", "database_url"),
    ];
    for (key, value, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_voronka"))
            .arg("serve")
            .env(key, value)
            .env_remove("DATABASE_URL")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {stderr}");
        assert!(
            stderr.contains("configuration error") && stderr.contains(expected),
            "{key}={value}: {stderr}"
        );
    }
    let dir = std::env::temp_dir().join(format!("voronka-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("voronka.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\n[web]\nworkerz = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voronka"))
        .args(["--config", file.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("workerz"), "{stderr}");
}

#[test]
fn test_harness_variables_are_not_configuration() {
    // The configuration is accepted; the start then fails on the unreachable database (exit 1).
    let out = Command::new(env!("CARGO_BIN_EXE_voronka"))
        .args(["migrate"])
        .env("VORONKA_TEST_ANYTHING", "1")
        .env("VORONKA_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env_remove("DATABASE_URL")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("configuration error"), "{stderr}");
}

#[test]
fn every_modules_outbox_and_inbox_have_the_shape_the_relay_expects() {
    use diesel::connection::SimpleConnection;
    let db = TestDb::new(voronka::database::MIGRATIONS);
    let mut conn = <diesel_async::async_connection_wrapper::AsyncConnectionWrapper<
        diesel_async::AsyncPgConnection,
    > as diesel::Connection>::establish(&db.url)
    .unwrap();
    conn.batch_execute(&format!(
        "CREATE SCHEMA shape_reference; {}",
        kernel::outbox::ddl("shape_reference")
    ))
    .unwrap();
    let reference = migrate::schema_dump(&db.url, "shape_reference").unwrap();
    assert!(
        reference.contains("trigger CREATE TRIGGER outbox_notify")
            && reference.contains("column inbox.event_id")
    );
    for m in voronka::database::MIGRATIONS {
        let dump = migrate::schema_dump(&db.url, m.schema)
            .unwrap()
            .replace(m.schema, "shape_reference");
        if voronka::server::NO_OUTBOX.contains(&m.schema) {
            assert!(
                !dump.contains("outbox") && !dump.contains("inbox"),
                "{}: a schema the relay skips has an outbox or inbox",
                m.schema
            );
            assert!(
                !voronka::server::outbox_schemas(&voronka::config::Config::default())
                    .contains(&m.schema)
            );
            continue;
        }
        // The notify function's body names its schema, so its hash differs by design.
        for line in reference.lines().filter(|l| !l.starts_with("function ")) {
            assert!(
                dump.lines().any(|l| l == line),
                "{}: outbox/inbox differ from kernel::outbox::ddl at {line:?}",
                m.schema
            );
        }
    }
}
