//! A private PostgreSQL cluster under Voronka's data directory, for machines where nobody has set
//! up a database. It uses the PostgreSQL server binaries installed on the machine (Debian's
//! `postgresql` package), listens on 127.0.0.1 only, on a free port chosen at each start, and
//! requires a password generated at creation. `initdb` and `postgres` refuse to run as root, so
//! under root the cluster runs as the unprivileged `postgres` user (or a `voronka` system user).

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::Rng;
use rand::distr::Alphanumeric;

pub const SUPERUSER: &str = "voronka";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. Install them with \
         `apt-get install postgresql` (Debian/Ubuntu), or set database_url to an existing server"
    )]
    BinariesMissing,
    #[error("{0}")]
    Io(String),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
}

impl From<std::io::Error> for ClusterError {
    fn from(e: std::io::Error) -> Self {
        ClusterError::Io(e.to_string())
    }
}

/// How the cluster should trade durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Normal PostgreSQL settings: for real data.
    Durable,
    /// fsync off: for throwaway test databases only.
    Ephemeral,
}

#[derive(Debug, Clone)]
pub struct PrivateCluster {
    pgdata: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<(u32, u32)>,
    /// True when this process started the server (and so should stop it).
    pub started_here: bool,
}

/// Finds the directory holding `initdb`/`pg_ctl`: the newest `/usr/lib/postgresql/N/bin`, then PATH.
pub fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

fn is_root() -> bool {
    // /proc/self belongs to the process's effective user.
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The unprivileged user a root process runs PostgreSQL as.
fn service_user() -> Result<(u32, u32), ClusterError> {
    if let Some(ids) = lookup_user("postgres").or_else(|| lookup_user("voronka")) {
        return Ok(ids);
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "voronka",
        ])
        .output()?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            what: "useradd voronka".into(),
            detail: stderr(&out),
        });
    }
    lookup_user("voronka").ok_or_else(|| ClusterError::Io("user voronka was not created".into()))
}

fn stderr(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if s.is_empty() {
        s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    s
}

fn free_port() -> Result<u16, ClusterError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PrivateCluster {
    /// Creates the cluster under `data_dir` if needed and starts it unless already running.
    /// Blocking: call before the async runtime does real work, or from `spawn_blocking`.
    pub fn ensure_started(
        data_dir: &Path,
        durability: Durability,
    ) -> Result<PrivateCluster, ClusterError> {
        let bin = find_bin_dir().ok_or(ClusterError::BinariesMissing)?;
        fs::create_dir_all(data_dir)?;
        let data_dir = data_dir.canonicalize()?;
        let run_as = if is_root() {
            Some(service_user()?)
        } else {
            None
        };
        let pgdata = Self::pgdata_location(&data_dir, run_as)?;
        let password_file = data_dir.join("postgres.password");
        let mut cluster = PrivateCluster {
            pgdata,
            bin,
            port: 0,
            password: String::new(),
            run_as,
            started_here: false,
        };
        if !cluster.pgdata.join("PG_VERSION").exists() {
            cluster.init(&password_file, durability)?;
        }
        cluster.password = fs::read_to_string(&password_file)
            .map_err(|e| ClusterError::Io(format!("cannot read {}: {e}", password_file.display())))?
            .trim()
            .to_string();
        match cluster.running_port() {
            Some(port) => cluster.port = port,
            None => {
                cluster.port = free_port()?;
                cluster.start()?;
                cluster.started_here = true;
            }
        }
        Ok(cluster)
    }

    /// Where the cluster's files live: `<data_dir>/postgres`, or, when the unprivileged user cannot
    /// reach the data directory (for example under root's home), a directory under
    /// `/var/lib/voronka` with a symlink at `<data_dir>/postgres` pointing to it.
    fn pgdata_location(
        data_dir: &Path,
        run_as: Option<(u32, u32)>,
    ) -> Result<PathBuf, ClusterError> {
        let inside = data_dir.join("postgres");
        let Some((uid, gid)) = run_as else {
            return Ok(inside);
        };
        if let Ok(target) = fs::read_link(&inside) {
            return Ok(target);
        }
        let reachable = Command::new("test")
            .arg("-x")
            .arg(data_dir)
            .uid(uid)
            .gid(gid)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if reachable {
            fs::create_dir_all(&inside)?;
            chown(&inside, Some(uid), Some(gid))?;
            return Ok(inside);
        }
        let digest = {
            use sha2::{Digest, Sha256};
            let h = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
            h.iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let outside = PathBuf::from("/var/lib/voronka").join(format!("postgres-{digest}"));
        if outside.exists() {
            // Left by an earlier data directory at the same path (its symlink and password are
            // gone with it): stop its server if one still runs, and start afresh.
            if outside.join("postmaster.pid").exists()
                && let Some(bin) = find_bin_dir()
            {
                let _ = Command::new(bin.join("pg_ctl"))
                    .arg("stop")
                    .arg("-D")
                    .arg(&outside)
                    .args(["-m", "immediate", "-w", "-s"])
                    .uid(uid)
                    .gid(gid)
                    .status();
            }
            fs::remove_dir_all(&outside)?;
        }
        fs::create_dir_all(&outside)?;
        for dir in [Path::new("/var/lib/voronka"), outside.as_path()] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        chown(&outside, Some(uid), Some(gid))?;
        if !inside.exists() {
            std::os::unix::fs::symlink(&outside, &inside)?;
        }
        Ok(outside)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        // Messages in English whatever the machine's locale, so that errors can be quoted.
        cmd.env("LC_ALL", "C").env("LANG", "C");
        cmd
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<(), ClusterError> {
        let out = cmd.output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ClusterError::Command {
                what: what.to_string(),
                detail: stderr(&out),
            })
        }
    }

    fn init(&self, password_file: &Path, durability: Durability) -> Result<(), ClusterError> {
        let password: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(password_file)?;
            f.write_all(password.as_bytes())?;
        }
        // initdb reads the password from a file the service user can read; removed right after.
        let pwfile = std::env::temp_dir().join(format!("voronka-initdb-{}", std::process::id()));
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&pwfile)?;
            f.write_all(password.as_bytes())?;
        }
        if let Some((uid, gid)) = self.run_as {
            chown(&pwfile, Some(uid), Some(gid))?;
        }
        fs::create_dir_all(&self.pgdata)?;
        if let Some((uid, gid)) = self.run_as {
            chown(&self.pgdata, Some(uid), Some(gid))?;
        }
        fs::set_permissions(&self.pgdata, fs::Permissions::from_mode(0o700))?;
        let result = self.run(
            "initdb",
            self.command("initdb")
                .arg("-D")
                .arg(&self.pgdata)
                .args([
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .arg("--no-instructions"),
        );
        let _ = fs::remove_file(&pwfile);
        result?;
        let mut conf = String::from(
            "\n# Voronka's private cluster: loopback TCP only, no Unix socket.\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             max_connections = 300\n",
        );
        if durability == Durability::Ephemeral {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        fs::OpenOptions::new()
            .append(true)
            .open(self.pgdata.join("postgresql.conf"))?
            .write_all(conf.as_bytes())?;
        Ok(())
    }

    /// The port of a server already running on this cluster, read from `postmaster.pid`.
    fn running_port(&self) -> Option<u16> {
        let status = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.pgdata)
            .output()
            .ok()?;
        if !status.status.success() {
            return None;
        }
        let pid_file = fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn start(&self) -> Result<(), ClusterError> {
        // Settings given at each start (not only at initdb) so that existing clusters get them.
        self.run(
            "pg_ctl start",
            self.command("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(&self.pgdata)
                .arg("-l")
                .arg(self.pgdata.join("server.log"))
                .args(["-w", "-t", "60", "-s"])
                .arg("-o")
                .arg(format!("-p {} {}", self.port, server_options(&self.bin))),
        )
        .map_err(|e| match e {
            ClusterError::Command { what, detail } => ClusterError::Command {
                what,
                detail: format!(
                    "{detail} (see {})",
                    self.pgdata.join("server.log").display()
                ),
            },
            other => other,
        })
    }

    /// Stops the server (fast shutdown: open transactions roll back, data is safe).
    pub fn stop(&self) -> Result<(), ClusterError> {
        self.run(
            "pg_ctl stop",
            self.command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&self.pgdata)
                .args(["-m", "fast", "-w", "-s"]),
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database` as the cluster's superuser.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }
}

/// Server settings for an OLTP workload on the machine at hand: shared buffers an eighth of the
/// memory (128 MB to 1 GB), no JIT (it costs more than it saves on short queries), compressed
/// full-page writes and fewer checkpoints under write load. Compression is LZ4 (full-page writes
/// and TOASTed values: job payloads, event payloads) where the server was built with it: pglz, the
/// default, costs several times the CPU for a similar ratio on such data.
fn server_options(bin: &Path) -> String {
    let mem_kb: u64 = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024 * 1024);
    let buffers_mb = (mem_kb / 1024 / 8).clamp(128, 1024);
    let compression = if has_lz4(bin) {
        "-c wal_compression=lz4 -c default_toast_compression=lz4"
    } else {
        "-c wal_compression=on"
    };
    format!("-c shared_buffers={buffers_mb}MB -c jit=off {compression} -c max_wal_size=2GB")
}

/// Whether the server in `bin` takes LZ4 for both WAL (PostgreSQL 15 on) and TOAST: built
/// `--with-lz4`, as `pg_config` beside it says. Without `pg_config`, no.
fn has_lz4(bin: &Path) -> bool {
    pg_config(bin, "--version")
        .and_then(|v| major_version(&v))
        .is_some_and(|m| m >= 15)
        && pg_config(bin, "--configure").is_some_and(|c| c.contains("--with-lz4"))
}

/// What `pg_config arg` in `bin` prints; None when it is not there or fails.
fn pg_config(bin: &Path, arg: &str) -> Option<String> {
    Command::new(bin.join("pg_config"))
        .arg(arg)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The major version in `pg_config --version`'s answer ("PostgreSQL 15.19 (Debian 15.19-0+deb12u1)",
/// "PostgreSQL 17beta2").
fn major_version(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_is_read_from_pg_configs_answer() {
        assert_eq!(
            major_version("PostgreSQL 15.19 (Debian 15.19-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(major_version("PostgreSQL 17beta2"), Some(17));
        assert_eq!(major_version("PostgreSQL 9.6.24"), Some(9));
        assert_eq!(major_version("PostgreSQL"), None);
        assert_eq!(major_version(""), None);
    }

    #[test]
    fn lz4_is_asked_for_only_where_pg_config_says_the_server_has_it() {
        // No pg_config there: the default compression, which every server takes.
        let none = server_options(Path::new("/nonexistent"));
        assert!(none.contains("-c wal_compression=on"), "{none}");
        assert!(!none.contains("lz4"), "{none}");
        // This machine's server, when it has one: LZ4 exactly when it was built with it.
        if let Some(bin) = find_bin_dir() {
            let expected = pg_config(&bin, "--configure").is_some_and(|c| c.contains("--with-lz4"))
                && pg_config(&bin, "--version")
                    .and_then(|v| major_version(&v))
                    .is_some_and(|m| m >= 15);
            let options = server_options(&bin);
            assert_eq!(
                options.contains("-c wal_compression=lz4 -c default_toast_compression=lz4"),
                expected,
                "{options}"
            );
        }
    }
}
