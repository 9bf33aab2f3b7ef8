//! A throwaway PostgreSQL cluster for the integration tests.
//!
//! The cluster is created lazily by the first call to [`cluster`] and shared by
//! every test in this test binary. Each test asks for its own empty database
//! with [`PgCluster::create_database`], so tests never see each other's rows.
//!
//! Only std is used. The server binaries are taken from the highest version
//! under `/usr/lib/postgresql/*/bin` (override with `CCMART_PG_BIN=/path/to/bin`).
//! PostgreSQL refuses to run as root, so when the tests run as root the server
//! tools (`initdb`, `pg_ctl`) are run through `runuser -u postgres --`; `psql`
//! connects over TCP as the `postgres` role with trust authentication, so it
//! runs as the current user.
//!
//! Cleanup does not depend on destructors (statics are never dropped, and a
//! killed test binary runs no code at all): a detached watchdog shell, in its
//! own process group so a Ctrl-C aimed at `cargo test` does not hit it, polls
//! the test binary's pid and, once it is gone, stops the server with
//! `pg_ctl -m immediate stop` and removes the cluster directory.
//!
//! A missing PostgreSQL installation makes the tests FAIL (panic) with a message
//! saying what to install; they are never skipped.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What to tell the person running the tests when PostgreSQL is missing.
const INSTALL_HINT: &str = "install the PostgreSQL server with `apt-get install -y postgresql` \
     (or run the tests through `bash scripts/test.sh`, which installs it); \
     `CCMART_PG_BIN` may point at another directory holding initdb, pg_ctl and psql";

/// Unix socket paths are limited to 107 bytes; the socket is `DIR/.s.PGSQL.NNNNN`.
const MAX_DIR_LEN: usize = 80;

/// How many ports to try when another process grabs the chosen port first.
const START_ATTEMPTS: usize = 3;

/// A running throwaway PostgreSQL cluster (see the module documentation).
#[derive(Debug)]
pub struct PgCluster {
    /// Directory holding `data/` (the cluster), `log` (the server log) and the unix socket.
    dir: PathBuf,
    /// Directory holding `initdb`, `pg_ctl` and `psql`.
    bin: PathBuf,
    /// TCP port the server listens on (127.0.0.1 only).
    port: u16,
    /// Whether server tools must be run through `runuser -u postgres --`.
    as_root: bool,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A throwaway PostgreSQL cluster for this test binary (started once, lazily,
/// shared by all tests).
///
/// Panics with a clear message (including what to install) if PostgreSQL is
/// not available or the cluster cannot be started. A failed start is
/// remembered, so every test that needs the cluster fails with the same
/// message instead of retrying the whole setup.
pub fn cluster() -> &'static PgCluster {
    match CLUSTER.get_or_init(PgCluster::start) {
        Ok(cluster) => cluster,
        Err(msg) => panic!("test PostgreSQL cluster is not available: {msg}"),
    }
}

impl PgCluster {
    /// TCP port of the server (it listens on 127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new empty database with a unique name (sanitised `prefix`, a
    /// per-process counter and the pid) and returns its URL
    /// `postgres://postgres@127.0.0.1:PORT/NAME` (trust auth, no password).
    pub fn create_database(&self, prefix: &str) -> String {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}_{n}_{}", sanitize_prefix(prefix), std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\";"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL through psql on a database of this cluster, given either its
    /// URL (as returned by [`PgCluster::create_database`]) or its bare name.
    ///
    /// The SQL is fed on stdin (`-f -`), so it may hold several statements and
    /// psql meta-commands; psql stops at the first error (`ON_ERROR_STOP`).
    /// Output is unaligned and tuples-only (`-A -t`: one row per line, columns
    /// separated by `|`, no headers), with trailing whitespace trimmed.
    /// Panics with psql's stderr on failure.
    pub fn psql(&self, db_url_or_name: &str, sql: &str) -> String {
        let db = db_name(db_url_or_name);
        let psql = self.bin.join("psql");
        let mut cmd = Command::new(&psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", &db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        clear_pg_env(&mut cmd);
        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("could not run {} ({e}); {INSTALL_HINT}", psql.display()));
        let mut stdin = child.stdin.take().expect("psql stdin was requested as a pipe");
        // Write from a separate thread so a large output cannot deadlock against a large input.
        let input = sql.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("could not wait for psql on database {db}: {e}"));
        let written = writer.join().expect("thread feeding SQL to psql panicked");
        if !out.status.success() {
            panic!(
                "psql failed on database {db} ({}):\n--- SQL ---\n{sql}\n--- stderr ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        written.unwrap_or_else(|e| panic!("could not feed SQL to psql on database {db}: {e}"));
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Creates, initialises and starts the cluster; the error is the panic message.
    fn start() -> Result<PgCluster, String> {
        let t0 = Instant::now();
        let bin = find_bin_dir()?;
        let as_root = is_root();
        let dir = make_cluster_dir(as_root)?;
        let cluster = PgCluster { dir, bin, port: 0, as_root };

        // Arm the cleanup before anything else, so even a kill during initdb leaves nothing behind.
        cluster.spawn_watchdog()?;
        match cluster.init_and_start() {
            Ok(port) => {
                eprintln!(
                    "test PostgreSQL cluster ready on 127.0.0.1:{port} in {} ({:.1}s)",
                    cluster.dir.display(),
                    t0.elapsed().as_secs_f64()
                );
                Ok(PgCluster { port, ..cluster })
            }
            Err(e) => {
                // The server never came up (or pg_ctl reported failure): stop whatever may run, clean up.
                let _ = cluster
                    .server_cmd("pg_ctl")
                    .arg("-D")
                    .arg(cluster.data_dir())
                    .args(["-m", "immediate", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = std::fs::remove_dir_all(&cluster.dir);
                Err(e)
            }
        }
    }

    /// Runs initdb and starts the server, returning the port it listens on.
    fn init_and_start(&self) -> Result<u16, String> {
        if self.as_root {
            run(
                Command::new("chown").args(["-R", "postgres:"]).arg(&self.dir),
                "chown the cluster directory to the postgres user",
                "`chown` comes with coreutils; the `postgres` system user comes with \
                 `apt-get install -y postgresql`",
            )?;
        }
        run(
            self.server_cmd("initdb").arg("-D").arg(self.data_dir()).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]),
            "initdb",
            INSTALL_HINT,
        )?;

        let log = self.dir.join("log");
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                sh_quote(&self.dir.to_string_lossy())
            );
            let result = run(
                self.server_cmd("pg_ctl")
                    .arg("-D")
                    .arg(self.data_dir())
                    .arg("-l")
                    .arg(&log)
                    .arg("-o")
                    .arg(&opts)
                    .args(["-w", "-t", "120", "start"]),
                "pg_ctl start",
                INSTALL_HINT,
            );
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            match result {
                Ok(_) => return Ok(port),
                Err(e) => {
                    last_err = format!("{e}\n--- server log {} ---\n{}", log.display(), log_text.trim_end());
                    // Someone else took the port between our probe and the server's bind: try another.
                    if !log_text.contains("could not bind") && !log_text.contains("already in use") {
                        break;
                    }
                    let _ = std::fs::remove_file(&log);
                }
            }
        }
        Err(last_err)
    }

    /// Spawns the detached shell that stops the server and removes the
    /// cluster directory once this test binary has exited.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let pg_ctl = self.bin.join("pg_ctl");
        let runuser = if self.as_root { "runuser -u postgres -- " } else { "" };
        let dir = sh_quote(&self.dir.to_string_lossy());
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {runuser}{pg_ctl} -D {data} -m immediate stop; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = sh_quote(&pg_ctl.to_string_lossy()),
            data = sh_quote(&self.data_dir().to_string_lossy()),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(drop)
            .map_err(|e| format!("could not spawn the cleanup watchdog `sh -c ...`: {e}"))
    }

    /// A command running server tool `tool` from the bin dir, as the
    /// `postgres` user when we are root.
    fn server_cmd(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The postgres user may not be allowed into the caller's working directory.
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        clear_pg_env(&mut cmd);
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// Runs `cmd` to completion; on failure returns a message naming `what`,
/// the exit status and the command's output, plus `hint` if it could not be started.
fn run(cmd: &mut Command, what: &str, hint: &str) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            format!("{what}: could not run {shown}: {e}; {hint}")
        } else {
            format!("{what}: could not run {shown}: {e}")
        }
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}): {shown}\n--- stdout ---\n{}\n--- stderr ---\n{}\n(hint: {hint})",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// Finds the directory with `initdb`, `pg_ctl` and `psql`: `CCMART_PG_BIN` if
/// set, else the highest version under `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Result<PathBuf, String> {
    let has_tools = |bin: &Path| ["initdb", "pg_ctl", "psql"].iter().all(|t| bin.join(t).is_file());
    if let Some(bin) = std::env::var_os("CCMART_PG_BIN") {
        let bin = PathBuf::from(bin);
        return if has_tools(&bin) {
            Ok(bin)
        } else {
            Err(format!(
                "CCMART_PG_BIN={} does not hold initdb, pg_ctl and psql; unset it to use /usr/lib/postgresql/*/bin, where `apt-get install -y postgresql` puts them",
                bin.display()
            ))
        };
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = parse_version(&name) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_tools(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        format!("no PostgreSQL server binaries (initdb, pg_ctl, psql) under {}/*/bin; {INSTALL_HINT}", root.display())
    })
}

/// "15" -> [15], "9.6" -> [9, 6]; anything else is not a version directory.
fn parse_version(name: &OsStr) -> Option<Vec<u64>> {
    name.to_str()?.split('.').map(|p| p.parse().ok()).collect()
}

/// Whether the effective uid is 0 (PostgreSQL refuses to run as root).
fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            // Uid: real effective saved fs
            if let Some(euid) = line.split_whitespace().nth(2) {
                return euid == "0";
            }
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .expect("could not tell whether the tests run as root: /proc/self/status is unreadable and `id -u` failed")
}

/// Creates `ccmart-pg-<pid>-<nanos>` under the temp dir, falling back to /tmp
/// when the temp dir path is too long for a unix socket or, as root, not
/// reachable by the postgres user.
fn make_cluster_dir(as_root: bool) -> Result<PathBuf, String> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = format!("ccmart-pg-{}-{nanos}", std::process::id());
    let mut base = std::env::temp_dir();
    let too_long = base.join(&name).as_os_str().len() > MAX_DIR_LEN;
    if too_long || (as_root && !world_traversable(&base)) {
        base = PathBuf::from("/tmp");
    }
    let dir = base.join(name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("could not create the cluster directory {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Whether every directory from `/` down to `path` lets others traverse it.
fn world_traversable(path: &Path) -> bool {
    path.ancestors().all(|p| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o001 != 0).unwrap_or(false))
}

/// Picks a free TCP port on 127.0.0.1 by binding port 0 and closing the socket.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("could not bind 127.0.0.1:0 to find a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("could not read the address of a bound socket: {e}"))
}

/// Removes PG* variables (PGHOST, PGDATABASE, PGOPTIONS, PGSSLMODE, ...) that
/// could redirect or alter our tools' connections.
fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Makes a database-name prefix from `prefix`: lowercase ASCII letters,
/// digits and `_`, starting with a letter, at most 40 bytes (names stop at 63).
fn sanitize_prefix(prefix: &str) -> String {
    let mut s: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(40).collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "t_");
        s.truncate(40);
    }
    s
}

/// The database name of a `postgres://` / `postgresql://` URL (path, without
/// query string), or the argument itself when it is not a URL.
fn db_name(db_url_or_name: &str) -> String {
    let rest = db_url_or_name.strip_prefix("postgres://").or_else(|| db_url_or_name.strip_prefix("postgresql://"));
    match rest {
        None => db_url_or_name.to_owned(),
        Some(rest) => {
            let rest = rest.split(['?', '#']).next().unwrap_or("");
            match rest.split_once('/') {
                Some((_, name)) if !name.is_empty() => name.to_owned(),
                _ => "postgres".to_owned(),
            }
        }
    }
}

/// Quotes `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `psql` client of the PostgreSQL installation the tests use (the same one as the throwaway cluster's), for
/// tests that talk to ccmart's own PostgreSQL protocol. Panics with the install hint when it is missing.
pub fn psql_binary() -> PathBuf {
    find_bin_dir().unwrap_or_else(|e| panic!("{e}; {INSTALL_HINT}")).join("psql")
}
