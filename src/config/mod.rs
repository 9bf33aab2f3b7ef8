//! The appliance configuration: one TOML file, every key with a named default, validated at start-up with
//! errors that name the key. `ccmart check-config` prints the effective configuration.

use crate::extract::{DEFAULT_CHUNK_ROWS, DEFAULT_MAX_CHUNKS_PER_CYCLE};
use crate::query::QueryLimits;
pub use crate::serve::auth::TokenConfig;
use crate::serve::pgwire as pg;
pub use crate::serve::pgwire::DEFAULT_PGWIRE_MAX_CONNECTIONS;
use crate::sim::SimSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Default seconds between pipeline cycles.
pub const DEFAULT_CYCLE_SECS: u64 = 5;
/// Default seconds between mart publications while extraction works off a backlog.
pub const DEFAULT_BACKLOG_PUBLISH_SECS: u64 = 60;
/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default listen address of the Prometheus metrics endpoint (loopback only).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:8249";
/// Default listen address of the PostgreSQL wire protocol (BI tools); 5433 so it never collides with a local
/// PostgreSQL server on 5432.
pub const DEFAULT_PGWIRE_LISTEN: &str = "127.0.0.1:5433";
/// Default data directory of an installed appliance.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ccmart";
/// URL scheme of an in-process simulated IDB.
pub const EMBEDDED_SCHEME: &str = "embedded";

/// Largest `appliance.cycle_secs`: an hour.
pub const MAX_CYCLE_SECS: u64 = 3_600;
/// Largest `appliance.staging_cache_mb`: 64 GiB.
pub const MAX_STAGING_CACHE_MB: usize = 65_536;
/// Largest `appliance.max_http_connections` and `pgwire.max_connections`.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Largest `appliance.http_header_timeout_secs` and `pgwire.startup_timeout_secs`: five minutes.
pub const MAX_HANDSHAKE_SECS: u64 = 300;
/// Largest `appliance.http_send_timeout_secs` and `pgwire.send_timeout_secs`: an hour.
pub const MAX_SEND_SECS: u64 = 3_600;
/// Largest `extract.chunk_rows`.
pub const MAX_CHUNK_ROWS: usize = 1_000_000;
/// Largest `extract.max_chunks_per_cycle`.
pub const MAX_CHUNKS_PER_CYCLE: usize = 100_000;
/// Largest `extract.transform_batch`.
pub const MAX_TRANSFORM_BATCH: usize = 1_000_000;
/// Largest period of a recurring task or a retry wait (`extract.backlog_publish_secs`, `extract.retry_max_secs`,
/// `maintenance.interval_secs`, `pgwire.login_failure_window_secs`): a day.
pub const MAX_INTERVAL_SECS: u64 = 86_400;
/// Largest `query.max_rows`.
pub const MAX_QUERY_ROWS: usize = 100_000_000;
/// Largest `query.timeout_secs`: a day.
pub const MAX_QUERY_TIMEOUT_SECS: u64 = 86_400;
/// Largest `query.memory_limit_mb`: 1 TiB.
pub const MAX_QUERY_MEMORY_MB: usize = 1 << 20;
/// Largest `query.max_result_mb`: 16 GiB (an answer is held in memory).
pub const MAX_RESULT_MB: usize = 16_384;
/// Largest `query.spill_limit_mb`: 16 TiB.
pub const MAX_SPILL_MB: u64 = 1 << 24;
/// Largest `query.max_concurrent`.
pub const MAX_CONCURRENT_QUERIES: usize = 256;
/// Largest `query.max_queued`.
pub const MAX_QUEUED_QUERIES: usize = 10_000;
/// Largest `pgwire.idle_session_timeout_secs`: a week.
pub const MAX_IDLE_SESSION_SECS: u64 = 7 * 86_400;
/// Largest `pgwire.max_login_failures`.
pub const MAX_LOGIN_FAILURES: u32 = 1_000;
/// Largest span of history a duration may cover (`maintenance.version_retention_secs`,
/// `merge.backfill_window_secs`, simulated fault times): 400 days.
pub const MAX_HISTORY_SECS: u64 = 400 * 86_400;
/// Largest `maintenance.mart_retention_days` and `maintenance.staging_retention_days`: 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Largest `merge.stuck_threshold_secs`: 30 days.
pub const MAX_STUCK_THRESHOLD_SECS: u64 = 30 * 86_400;
/// Largest `merge.max_call_duration_secs`: a week.
pub const MAX_CALL_DURATION_SECS: u64 = 7 * 86_400;
/// Largest service-level and short-abandon threshold (`[transform]`, `[[transform.queue]]`): a day.
pub const MAX_THRESHOLD_SECS: u64 = 86_400;

/// `Ok` when `min <= value <= max`; otherwise the error names the key, the value, the range and its unit.
fn within<V, B>(key: &str, value: V, min: B, max: B, unit: &str) -> Result<(), ConfigError>
where
    V: TryInto<i128> + Copy + std::fmt::Display,
    B: TryInto<i128> + Copy + std::fmt::Display,
{
    let as_wide = |x: V| x.try_into().ok();
    let bound = |x: B| x.try_into().ok();
    match (as_wide(value), bound(min), bound(max)) {
        (Some(v), Some(lo), Some(hi)) if lo <= v && v <= hi => Ok(()),
        _ => Err(ConfigError::Invalid {
            key: key.into(),
            message: format!("{value} is out of range {min}..={max} ({unit}); set a value in that range"),
        }),
    }
}

/// Configuration errors: which key, what is wrong, what to do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// Path.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown/mistyped keys.
    #[error("config file {path} is not valid")]
    Parse {
        /// Path.
        path: PathBuf,
        /// What the TOML parser said (with line and column).
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong and what is accepted.
        message: String,
    },
}

/// Top-level configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This appliance.
    #[serde(default)]
    pub appliance: ApplianceConfig,
    /// Extraction settings.
    #[serde(default)]
    pub extract: ExtractConfig,
    /// Query limits.
    #[serde(default)]
    pub query: QueryLimits,
    /// Thresholds of the queue aggregates and the reporting time zone.
    #[serde(default)]
    pub transform: crate::transform::aggregate::TransformSettings,
    /// HA-pair merge: stuck threshold, backfill window, stuck calls, ignored sites (`[merge]`).
    #[serde(default)]
    pub merge: crate::merge::MergeSettings,
    /// Retention, catalog pruning and vacuum (`[maintenance]`).
    #[serde(default)]
    pub maintenance: crate::maintenance::MaintenanceSettings,
    /// Role, epoch and the peer site (`[replication]`).
    #[serde(default)]
    pub replication: crate::replicate::fencing::ReplicationSettings,
    /// PostgreSQL wire protocol for BI tools.
    #[serde(default)]
    pub pgwire: PgwireConfig,
    /// API tokens (`[[token]]`), stored as SHA-256 hashes; `ccmart token create` makes one.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    /// The IDBs to extract from; each belongs to an HA pair.
    #[serde(default, rename = "idb")]
    pub idbs: Vec<IdbConfig>,
    /// Optional simulator that fills the IDBs (demo, tests, benchmarks).
    #[serde(default)]
    pub simulator: Option<SimulatorConfig>,
}

/// Settings of this appliance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplianceConfig {
    /// Name of the site this appliance runs at.
    pub site: String,
    /// Where staging (redb) and the mart (Delta tables) live.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: String,
    /// Listen address of the Prometheus metrics endpoint (`GET /metrics`); empty disables it.
    pub metrics_listen: String,
    /// Seconds between pipeline cycles.
    pub cycle_secs: u64,
    /// Page cache of the staging store (redb), MiB.
    pub staging_cache_mb: usize,
    /// PEM certificate chain for HTTPS on `listen`; with `tls_key`. Unset: plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Simultaneous HTTP connections on `listen` (TLS handshakes included); more are closed at once.
    pub max_http_connections: usize,
    /// Seconds a client has to send the headers of a request (the first one, and each next one on a kept-alive
    /// connection); a client that is slower (or idle) is disconnected.
    pub http_header_timeout_secs: u64,
    /// Seconds a response may wait for the client to read it (no progress at all); then the connection is
    /// closed and the answer's query slot freed.
    pub http_send_timeout_secs: u64,
}

impl Default for ApplianceConfig {
    fn default() -> Self {
        ApplianceConfig {
            site: "site1".into(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.into(),
            metrics_listen: DEFAULT_METRICS_LISTEN.into(),
            cycle_secs: DEFAULT_CYCLE_SECS,
            staging_cache_mb: crate::staging::DEFAULT_CACHE_MB,
            tls_cert: None,
            tls_key: None,
            max_http_connections: crate::serve::DEFAULT_MAX_HTTP_CONNECTIONS,
            http_header_timeout_secs: crate::serve::DEFAULT_HTTP_HEADER_TIMEOUT.as_secs(),
            http_send_timeout_secs: crate::serve::DEFAULT_HTTP_SEND_TIMEOUT.as_secs(),
        }
    }
}

/// The PostgreSQL wire-protocol listener: BI tools (psql, DBeaver, Metabase, Grafana, drivers) connect here and
/// read the same snapshots as `/v1/query`, with the same tokens as passwords and the same query limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgwireConfig {
    /// Listen address; empty disables the listener.
    pub listen: String,
    /// Simultaneous logged-in sessions; a login beyond them is refused (SQLSTATE 53300). At most as many
    /// connections may be logging in at once besides; when they are all taken the oldest is closed to make room.
    pub max_connections: usize,
    /// Simultaneous logged-in sessions from one client address (SQLSTATE 53300 beyond), so that one host cannot
    /// take every session.
    pub max_connections_per_client: usize,
    /// Seconds a connection has to complete TLS, startup and login; then it is closed.
    pub startup_timeout_secs: u64,
    /// Seconds a logged-in session may wait between statements before it is closed (SQLSTATE 57P05); 0: never.
    pub idle_session_timeout_secs: u64,
    /// Failed logins from one client address within `login_failure_window_secs` after which its logins are
    /// refused (SQLSTATE 53300) until the window has passed.
    pub max_login_failures: u32,
    /// See `max_login_failures`, seconds.
    pub login_failure_window_secs: u64,
    /// Seconds rows may wait for the client to read them (no progress at all); then the session is closed and
    /// its statement's query slot freed.
    pub send_timeout_secs: u64,
    /// PEM certificate chain for TLS (clients ask with `sslmode=require`); with `tls_key`. Unset: plain only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl PgwireConfig {
    /// The connection limits of the listener as configured.
    pub fn limits(&self) -> crate::serve::pgwire::ConnectionLimits {
        crate::serve::pgwire::ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            startup_timeout: Duration::from_secs(self.startup_timeout_secs),
            idle_session_timeout: (self.idle_session_timeout_secs > 0)
                .then(|| Duration::from_secs(self.idle_session_timeout_secs)),
            max_login_failures: self.max_login_failures,
            login_failure_window: Duration::from_secs(self.login_failure_window_secs),
            send_timeout: Duration::from_secs(self.send_timeout_secs),
        }
    }
}

impl ApplianceConfig {
    /// The connection limits of the HTTP listener as configured.
    pub fn http_limits(&self) -> crate::serve::HttpLimits {
        crate::serve::HttpLimits {
            max_connections: self.max_http_connections,
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            send_timeout: Duration::from_secs(self.http_send_timeout_secs),
        }
    }
}

impl Default for PgwireConfig {
    fn default() -> Self {
        PgwireConfig {
            listen: DEFAULT_PGWIRE_LISTEN.into(),
            max_connections: DEFAULT_PGWIRE_MAX_CONNECTIONS,
            max_connections_per_client: pg::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            startup_timeout_secs: pg::DEFAULT_STARTUP_TIMEOUT.as_secs(),
            idle_session_timeout_secs: pg::DEFAULT_IDLE_SESSION_TIMEOUT.as_secs(),
            max_login_failures: pg::DEFAULT_MAX_LOGIN_FAILURES,
            login_failure_window_secs: pg::DEFAULT_LOGIN_FAILURE_WINDOW.as_secs(),
            send_timeout_secs: pg::DEFAULT_SEND_TIMEOUT.as_secs(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Extraction settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractConfig {
    /// Rows per chunk read from an IDB (bounds memory and repeated work after a crash).
    pub chunk_rows: usize,
    /// Chunks per table per cycle.
    pub max_chunks_per_cycle: usize,
    /// Groups transformed per batch.
    pub transform_batch: usize,
    /// While extraction has a backlog (initial load, catch-up after an outage), publish a mart version at most this
    /// often, seconds; in steady state every cycle publishes.
    pub backlog_publish_secs: u64,
    /// Longest wait (seconds) before retrying an unreachable IDB; the wait doubles from 1 s up to this.
    pub retry_max_secs: u64,
    /// Seconds a counter value (`GSYS_SEQ` / `GSYS_USEQ`) must have been visible in a PostgreSQL IDB table before
    /// the high-water mark passes smaller ones; the rows above the mark are re-read every cycle meanwhile. A row
    /// that commits later than this after a row with a larger counter is missed. 0 trusts the IDB to commit in
    /// counter order (docs/idb-contract.md, *Incremental extraction*).
    pub settle_secs: u64,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            chunk_rows: DEFAULT_CHUNK_ROWS,
            max_chunks_per_cycle: DEFAULT_MAX_CHUNKS_PER_CYCLE,
            transform_batch: 2_000,
            backlog_publish_secs: DEFAULT_BACKLOG_PUBLISH_SECS,
            retry_max_secs: crate::extract::MAX_BACKOFF.as_secs(),
            settle_secs: crate::extract::DEFAULT_SETTLE_SECS,
        }
    }
}

/// One IDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdbConfig {
    /// Unique name used in status, metrics and quarantine records.
    pub name: String,
    /// The HA pair (data source) it belongs to; a pair has one or two IDBs.
    pub pair: String,
    /// Site where the IDB lives.
    pub site: String,
    /// `postgres://user:password@host:port/db`, or `embedded:` for an in-process simulated IDB.
    pub url: String,
    /// The data source the pair collects from: `voice` (SIP Server), `multimedia`, `configuration` or `outbound`.
    #[serde(default = "default_data_source")]
    pub data_source: String,
}

/// The data sources an HA pair can collect from.
pub const DATA_SOURCES: &[&str] = &["voice", "multimedia", "configuration", "outbound"];

fn default_data_source() -> String {
    "voice".into()
}

/// Roles a token can have.
pub const TOKEN_ROLES: &[&str] = &["reader", "operator", "peer"];

/// Environment variables that override a config key, for operators who configure services through the
/// environment (systemd `Environment=`, containers): applied after the file is read, before it is validated.
/// `check-config` prints the ones in force.
pub const ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride { var: "CCMART_SITE", key: "appliance.site", set: |c, v| c.appliance.site = v },
    EnvOverride { var: "CCMART_DATA_DIR", key: "appliance.data_dir", set: |c, v| c.appliance.data_dir = v.into() },
    EnvOverride { var: "CCMART_LISTEN", key: "appliance.listen", set: |c, v| c.appliance.listen = v },
    EnvOverride {
        var: "CCMART_METRICS_LISTEN",
        key: "appliance.metrics_listen",
        set: |c, v| c.appliance.metrics_listen = v,
    },
    EnvOverride { var: "CCMART_PGWIRE_LISTEN", key: "pgwire.listen", set: |c, v| c.pgwire.listen = v },
    EnvOverride {
        var: "CCMART_PEER_URL",
        key: "replication.peer_url",
        set: |c, v| c.replication.peer_url = optional(v),
    },
    EnvOverride {
        var: "CCMART_PEER_SITE",
        key: "replication.peer_site",
        set: |c, v| c.replication.peer_site = optional(v),
    },
    EnvOverride {
        var: "CCMART_PEER_TOKEN",
        key: "replication.peer_token",
        set: |c, v| c.replication.peer_token = optional(v),
    },
];

/// One environment variable of [`ENV_OVERRIDES`]: the key it overrides and how it is set, side by side.
pub struct EnvOverride {
    /// The variable.
    pub var: &'static str,
    /// The dotted config key it overrides.
    pub key: &'static str,
    /// Sets the key to the variable's value.
    pub set: fn(&mut Config, String),
}

/// An optional key from the environment: empty clears it.
fn optional(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl IdbConfig {
    /// True for an in-process simulated IDB.
    pub fn is_embedded(&self) -> bool {
        self.url.starts_with(EMBEDDED_SCHEME)
    }
}

/// The simulator's settings as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Days of history generated before going live.
    #[serde(default = "default_history_days")]
    pub history_days: f64,
    /// Keep generating live calls in real time.
    #[serde(default = "default_true")]
    pub live: bool,
    /// The contact center.
    #[serde(default)]
    pub settings: SimSettings,
    /// Injected faults (`[[simulator.fault]]`), applied by the simulated collectors.
    #[serde(default, rename = "fault")]
    pub faults: Vec<crate::sim::collector::FaultSpec>,
}

fn default_history_days() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg: Config =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        cfg.apply_env(|name| std::env::var(name).ok());
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets the keys of [`ENV_OVERRIDES`] whose variable `var` returns (the file's value otherwise), and returns
    /// the overrides applied. An empty value clears an optional key and empties a text one (an
    /// empty `metrics_listen` or `pgwire.listen` disables that listener). [`Self::load`] applies the process
    /// environment before validating, so a bad value is refused naming the key.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Vec<&'static EnvOverride> {
        let mut applied = Vec::new();
        for o in ENV_OVERRIDES {
            if let Some(value) = var(o.var) {
                (o.set)(self, value);
                applied.push(o);
            }
        }
        applied
    }

    /// The embedded default: a simulated two-site contact center whose four IDBs (two HA pairs, one IDB of each
    /// pair at each site) live in this process.
    pub fn demo(data_dir: &Path, listen: &str, seed: u64) -> Self {
        let idb = |name: &str, pair: &str, site: &str| IdbConfig {
            name: name.into(),
            pair: pair.into(),
            site: site.into(),
            url: format!("{EMBEDDED_SCHEME}:"),
            data_source: default_data_source(),
        };
        Config {
            appliance: ApplianceConfig {
                site: "site1".into(),
                data_dir: data_dir.into(),
                listen: listen.into(),
                ..ApplianceConfig::default()
            },
            extract: ExtractConfig::default(),
            query: QueryLimits::default(),
            maintenance: Default::default(),
            replication: Default::default(),
            // Tests ask for ephemeral ports; so does the PostgreSQL listener then.
            pgwire: PgwireConfig {
                listen: match listen.parse::<SocketAddr>() {
                    Ok(a) if a.port() == 0 => SocketAddr::new(a.ip(), 0).to_string(),
                    _ => DEFAULT_PGWIRE_LISTEN.into(),
                },
                ..PgwireConfig::default()
            },
            transform: Default::default(),
            merge: Default::default(),
            tokens: Vec::new(),
            idbs: vec![
                idb("site1-voice-a", "site1-voice", "site1"),
                idb("site1-voice-b", "site1-voice", "site2"),
                idb("site2-voice-a", "site2-voice", "site2"),
                idb("site2-voice-b", "site2-voice", "site1"),
            ],
            simulator: Some(SimulatorConfig {
                history_days: 1.0,
                live: true,
                settings: SimSettings { seed, ..SimSettings::default() },
                faults: Vec::new(),
            }),
        }
    }

    /// Checks every value; the first problem is returned with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_bounds()?;
        self.check_files_and_addresses()?;
        let invalid = |key: &str, message: String| Err(ConfigError::Invalid { key: key.into(), message });
        let m = &self.appliance.metrics_listen;
        if !m.is_empty() && m.parse::<SocketAddr>().is_err() {
            return invalid(
                "appliance.metrics_listen",
                format!("'{m}' is not an ip:port address (e.g. 127.0.0.1:8249); leave it empty to disable metrics"),
            );
        }
        if self.appliance.listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "appliance.listen",
                format!("'{}' is not an address like 127.0.0.1:8080", self.appliance.listen),
            );
        }
        if self.appliance.tls_cert.is_some() != self.appliance.tls_key.is_some() {
            return invalid(
                if self.appliance.tls_cert.is_some() { "appliance.tls_key" } else { "appliance.tls_cert" },
                "HTTPS needs both tls_cert and tls_key (PEM files); set both or neither".into(),
            );
        }
        if let Some(ca) = &self.replication.peer_ca {
            if !ca.is_file() {
                return invalid(
                    "replication.peer_ca",
                    format!("{} is not a readable file (a PEM certificate of the peer's CA)", ca.display()),
                );
            }
        }
        let p = &self.pgwire;
        if !p.listen.is_empty() && p.listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "pgwire.listen",
                format!("'{}' is not an ip:port address (e.g. 127.0.0.1:5433); leave it empty to disable", p.listen),
            );
        }
        if p.tls_cert.is_some() != p.tls_key.is_some() {
            return invalid(
                if p.tls_cert.is_some() { "pgwire.tls_key" } else { "pgwire.tls_cert" },
                "TLS needs both tls_cert and tls_key (PEM files); set both or neither".into(),
            );
        }
        if let Some((key, message)) = self.replication.problem(&self.appliance.site) {
            return invalid(key, message);
        }
        if self.transform.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return invalid(
                "transform.time_zone",
                format!("'{}' is not an IANA time zone like Europe/Berlin or UTC", self.transform.time_zone),
            );
        }
        let mut queues = std::collections::BTreeSet::new();
        for (i, q) in self.transform.queues.iter().enumerate() {
            let key = format!("transform.queue[{i}]");
            if !queues.insert(q.dbid) {
                return invalid(
                    &format!("{key}.dbid"),
                    format!("queue DBID {} has two entries; merge them into one", q.dbid),
                );
            }
            for (name, v) in
                [("service_level_secs", q.service_level_secs), ("short_abandon_secs", q.short_abandon_secs)]
            {
                if let Some(v) = v {
                    within(&format!("{key}.{name}"), v, 0, MAX_THRESHOLD_SECS, "seconds (a day at most)")?;
                }
            }
            if q.service_level_secs.is_none() && q.short_abandon_secs.is_none() {
                return invalid(
                    &key,
                    format!("queue DBID {} sets neither service_level_secs nor short_abandon_secs", q.dbid),
                );
            }
        }
        if self.idbs.is_empty() {
            return invalid("idb", "no IDB configured: add at least one [[idb]] with name, pair, site and url".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, idb) in self.idbs.iter().enumerate() {
            let key = format!("idb[{i}]");
            if idb.name.trim().is_empty() || !names.insert(idb.name.clone()) {
                return invalid(&format!("{key}.name"), format!("'{}' is empty or used twice", idb.name));
            }
            if !(idb.is_embedded() || idb.url.starts_with("postgres://") || idb.url.starts_with("postgresql://")) {
                return invalid(
                    &format!("{key}.url"),
                    format!("'{}' must start with postgres:// (or be '{EMBEDDED_SCHEME}:')", idb.url),
                );
            }
            if idb.is_embedded() && self.simulator.is_none() {
                return invalid(&format!("{key}.url"), "an embedded IDB needs a [simulator] section to fill it".into());
            }
        }
        for (pair, members) in self.pairs() {
            if members.len() > 2 {
                return invalid("idb", format!("HA pair '{pair}' has {} IDBs; a pair has one or two", members.len()));
            }
            let kinds: std::collections::BTreeSet<&str> =
                self.idbs.iter().filter(|i| i.pair == pair).map(|i| i.data_source.as_str()).collect();
            if kinds.len() > 1 {
                return invalid("idb", format!("HA pair '{pair}' mixes data sources {kinds:?}; both IDBs see one"));
            }
        }
        for (i, idb) in self.idbs.iter().enumerate() {
            if !DATA_SOURCES.contains(&idb.data_source.as_str()) {
                return invalid(
                    &format!("idb[{i}].data_source"),
                    format!("'{}' is not one of {DATA_SOURCES:?}", idb.data_source),
                );
            }
            if idb.site.trim().is_empty() {
                return invalid(&format!("idb[{i}].site"), "must name the site the IDB is at".into());
            }
        }
        let m = &self.merge;
        if 86_400 % m.slice_secs != 0 {
            return invalid("merge.slice_secs", format!("{} must be at least 60 and divide a day", m.slice_secs));
        }
        let sites: std::collections::BTreeSet<&str> = self.idbs.iter().map(|i| i.site.as_str()).collect();
        for (i, site) in m.ignore_sources.iter().enumerate() {
            if !sites.contains(site.as_str()) {
                return invalid(
                    &format!("merge.ignore_sources[{i}]"),
                    format!("'{site}' is not the site of any [[idb]] (sites: {sites:?})"),
                );
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if !TOKEN_ROLES.contains(&t.role.as_str()) {
                return invalid(&format!("token[{i}].role"), format!("'{}' is not one of {TOKEN_ROLES:?}", t.role));
            }
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    &format!("token[{i}].sha256"),
                    "must be 64 hex digits (the SHA-256 printed by `ccmart token create`)".into(),
                );
            }
        }
        if self.tokens.is_empty() {
            for (key, addr) in [
                ("appliance.listen", &self.appliance.listen),
                ("appliance.metrics_listen", &self.appliance.metrics_listen),
                ("pgwire.listen", &self.pgwire.listen),
            ] {
                if addr.parse::<SocketAddr>().is_ok_and(|a| !a.ip().is_loopback()) {
                    return invalid(
                        key,
                        format!(
                            "{addr} is reachable from other hosts but no [[token]] is configured, so anyone could \
                             read the whole mart; add tokens (`ccmart token create --role reader`, and one with \
                             --role operator) or listen on 127.0.0.1"
                        ),
                    );
                }
            }
        }
        if let Some(sim) = &self.simulator {
            let expected = sim.settings.sites;
            if self.pairs().len() < expected {
                return invalid(
                    "simulator.settings.sites",
                    format!(
                        "{expected} simulated sites need {expected} HA pairs (one per site's SIP Server), found {}",
                        self.pairs().len()
                    ),
                );
            }
            let names: std::collections::BTreeSet<&str> = self.idbs.iter().map(|i| i.name.as_str()).collect();
            let sites: std::collections::BTreeSet<&str> = self.idbs.iter().map(|i| i.site.as_str()).collect();
            for (i, f) in sim.faults.iter().enumerate() {
                use crate::sim::collector::FaultKind as K;
                let ok = match f.kind {
                    K::NetworkPartition => true,
                    K::CtiLinkLoss | K::SiteFailure => sites.contains(f.target.as_str()),
                    _ => names.contains(f.target.as_str()),
                };
                if !ok {
                    return invalid(
                        &format!("simulator.fault[{i}].target"),
                        format!("'{}' is not an IDB name (or, for cti_link_loss and site_failure, a site)", f.target),
                    );
                }
                within(&format!("simulator.fault[{i}].start_secs"), f.start_secs, 0, MAX_HISTORY_SECS, "seconds")?;
                within(
                    &format!("simulator.fault[{i}].duration_secs"),
                    f.duration_secs,
                    0,
                    MAX_HISTORY_SECS,
                    "seconds",
                )?;
            }
            if !(0.0..=400.0).contains(&sim.history_days) {
                return invalid("simulator.history_days", "must be between 0 and 400".into());
            }
        }
        Ok(())
    }

    /// Every size, count and duration against its range (the `MAX_*` constants of this module), so that no value
    /// that passes can overflow where it is turned into bytes, an instant or a deadline.
    fn check_bounds(&self) -> Result<(), ConfigError> {
        let (a, e, q, p) = (&self.appliance, &self.extract, &self.query, &self.pgwire);
        within("appliance.cycle_secs", a.cycle_secs, 1, MAX_CYCLE_SECS, "seconds")?;
        within("appliance.staging_cache_mb", a.staging_cache_mb, 16, MAX_STAGING_CACHE_MB, "MiB")?;
        within("appliance.max_http_connections", a.max_http_connections, 1, MAX_CONNECTIONS, "connections")?;
        within("appliance.http_header_timeout_secs", a.http_header_timeout_secs, 1, MAX_HANDSHAKE_SECS, "seconds")?;
        within("appliance.http_send_timeout_secs", a.http_send_timeout_secs, 1, MAX_SEND_SECS, "seconds")?;
        within("extract.chunk_rows", e.chunk_rows, 10, MAX_CHUNK_ROWS, "rows")?;
        within("extract.max_chunks_per_cycle", e.max_chunks_per_cycle, 1, MAX_CHUNKS_PER_CYCLE, "chunks")?;
        within("extract.transform_batch", e.transform_batch, 1, MAX_TRANSFORM_BATCH, "groups")?;
        within("extract.backlog_publish_secs", e.backlog_publish_secs, 0, MAX_INTERVAL_SECS, "seconds")?;
        within("extract.retry_max_secs", e.retry_max_secs, 0, MAX_INTERVAL_SECS, "seconds (0: every cycle)")?;
        within(
            "extract.settle_secs",
            e.settle_secs,
            0,
            MAX_INTERVAL_SECS,
            "seconds (rows above the mark are re-read for this long)",
        )?;
        within("query.max_rows", q.max_rows, 1, MAX_QUERY_ROWS, "rows")?;
        within("query.timeout_secs", q.timeout_secs, 1, MAX_QUERY_TIMEOUT_SECS, "seconds (a day at most)")?;
        within("query.memory_limit_mb", q.memory_limit_mb, 16, MAX_QUERY_MEMORY_MB, "MiB (1 TiB at most)")?;
        within("query.max_result_mb", q.max_result_mb, 1, MAX_RESULT_MB, "MiB (16 GiB at most)")?;
        within("query.spill_limit_mb", q.spill_limit_mb, 0, MAX_SPILL_MB, "MiB (16 TiB at most)")?;
        within("query.max_concurrent", q.max_concurrent, 1, MAX_CONCURRENT_QUERIES, "queries")?;
        within("query.max_queued", q.max_queued, 0, MAX_QUEUED_QUERIES, "queries")?;
        within("pgwire.max_connections", p.max_connections, 1, MAX_CONNECTIONS, "sessions")?;
        within(
            "pgwire.max_connections_per_client",
            p.max_connections_per_client,
            1,
            p.max_connections,
            "sessions (at most pgwire.max_connections)",
        )?;
        within("pgwire.startup_timeout_secs", p.startup_timeout_secs, 1, MAX_HANDSHAKE_SECS, "seconds")?;
        within(
            "pgwire.idle_session_timeout_secs",
            p.idle_session_timeout_secs,
            0,
            MAX_IDLE_SESSION_SECS,
            "seconds (0: never; a week at most)",
        )?;
        within("pgwire.max_login_failures", p.max_login_failures, 1, MAX_LOGIN_FAILURES, "failed logins")?;
        within("pgwire.login_failure_window_secs", p.login_failure_window_secs, 1, MAX_INTERVAL_SECS, "seconds")?;
        within("pgwire.send_timeout_secs", p.send_timeout_secs, 1, MAX_SEND_SECS, "seconds")?;
        let mt = &self.maintenance;
        within("maintenance.interval_secs", mt.interval_secs, 0, MAX_INTERVAL_SECS, "seconds (0: never)")?;
        within("maintenance.version_retention_secs", mt.version_retention_secs, 0, MAX_HISTORY_SECS, "seconds")?;
        within(
            "maintenance.mart_retention_days",
            mt.mart_retention_days,
            1,
            MAX_RETENTION_DAYS,
            "days of history kept",
        )?;
        within(
            "maintenance.staging_retention_days",
            mt.staging_retention_days,
            1,
            MAX_RETENTION_DAYS,
            "days the IDB rows of a transformed interaction are kept",
        )?;
        let m = &self.merge;
        within(
            "merge.stuck_threshold_secs",
            m.stuck_threshold_secs,
            1,
            MAX_STUCK_THRESHOLD_SECS,
            "seconds (30 days at most)",
        )?;
        if let Some(w) = m.backfill_window_secs {
            within("merge.backfill_window_secs", w, 0, MAX_HISTORY_SECS, "seconds (leave it out for no limit)")?;
        }
        within("merge.max_call_duration_secs", m.max_call_duration_secs, 60, MAX_CALL_DURATION_SECS, "seconds")?;
        within("merge.slice_secs", m.slice_secs, 60, 86_400, "seconds (and divide a day)")?;
        let t = &self.transform;
        within("transform.service_level_secs", t.service_level_secs, 0, MAX_THRESHOLD_SECS, "seconds (a day at most)")?;
        within("transform.short_abandon_secs", t.short_abandon_secs, 0, MAX_THRESHOLD_SECS, "seconds (a day at most)")?;
        Ok(())
    }

    /// Files and addresses as the appliance will use them: TLS files are loaded (a certificate, a private key that
    /// fits it), `data_dir` is a directory if it exists, and no two listeners share an address.
    fn check_files_and_addresses(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| Err(ConfigError::Invalid { key: key.into(), message });
        for (section, cert, key) in [
            ("appliance", &self.appliance.tls_cert, &self.appliance.tls_key),
            ("pgwire", &self.pgwire.tls_cert, &self.pgwire.tls_key),
        ] {
            if let (Some(cert), Some(key)) = (cert, key) {
                if let Err(e) = crate::serve::tls::server_config(cert, key) {
                    let which = match &e {
                        crate::serve::tls::TlsError::Pem { what: "private key", .. } => "tls_key",
                        _ => "tls_cert",
                    };
                    return invalid(
                        &format!("{section}.{which}"),
                        format!(
                            "{}; give a PEM certificate chain in tls_cert and its private key in tls_key",
                            crate::model::report(&e)
                        ),
                    );
                }
            }
        }
        let dir = &self.appliance.data_dir;
        if dir.exists() && !dir.is_dir() {
            return invalid(
                "appliance.data_dir",
                format!("{} exists but is not a directory; name a directory (it is created if missing)", dir.display()),
            );
        }
        let listeners = [
            ("appliance.listen", &self.appliance.listen),
            ("appliance.metrics_listen", &self.appliance.metrics_listen),
            ("pgwire.listen", &self.pgwire.listen),
        ];
        for (i, (key, addr)) in listeners.iter().enumerate() {
            for (other, other_addr) in &listeners[..i] {
                if let (Ok(a), Ok(b)) = (addr.parse::<SocketAddr>(), other_addr.parse::<SocketAddr>()) {
                    let same_ip = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
                    if a.port() != 0 && a.port() == b.port() && same_ip {
                        return invalid(
                            key,
                            format!("{addr} is also {other} ({other_addr}); give each listener a port of its own"),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// HA pairs in configured order: pair → IDB names.
    pub fn pairs(&self) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in &self.idbs {
            m.entry(i.pair.clone()).or_default().push(i.name.clone());
        }
        m
    }

    /// Human-readable warnings that do not stop the appliance (e.g. a pair without redundancy).
    pub fn warnings(&self) -> Vec<String> {
        self.pairs()
            .into_iter()
            .filter(|(_, m)| m.len() == 1)
            .map(|(p, m)| format!("HA pair '{p}' has one IDB ({}): no redundancy", m[0]))
            .collect()
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented variable sets its key (and only those), after the file and before validation: a bad
    /// value from the environment is refused like one from the file.
    #[test]
    fn environment_variables_override_their_keys() {
        let mut cfg = Config::demo(Path::new("/tmp/x"), "127.0.0.1:8080", 1);
        let env: BTreeMap<&str, &str> = [
            ("CCMART_SITE", "site9"),
            ("CCMART_DATA_DIR", "/var/lib/other"),
            ("CCMART_LISTEN", "0.0.0.0:9090"),
            ("CCMART_METRICS_LISTEN", ""),
            ("CCMART_PGWIRE_LISTEN", "127.0.0.1:6543"),
            ("CCMART_PEER_URL", "https://site2:8443"),
            ("CCMART_PEER_SITE", "site2"),
            ("CCMART_PEER_TOKEN", ""),
            ("CCMART_UNRELATED", "x"),
        ]
        .into_iter()
        .collect();
        let applied = cfg.apply_env(|n| env.get(n).map(|v| v.to_string()));
        assert_eq!(applied.len(), ENV_OVERRIDES.len());
        assert_eq!(cfg.appliance.site, "site9");
        assert_eq!(cfg.appliance.data_dir, PathBuf::from("/var/lib/other"));
        assert_eq!((cfg.appliance.listen.as_str(), cfg.appliance.metrics_listen.as_str()), ("0.0.0.0:9090", ""));
        assert_eq!(cfg.pgwire.listen, "127.0.0.1:6543");
        assert_eq!(cfg.replication.peer_url.as_deref(), Some("https://site2:8443"));
        assert_eq!(
            (cfg.replication.peer_site.as_deref(), cfg.replication.peer_token.as_deref()),
            (Some("site2"), None)
        );
        let mut untouched = Config::demo(Path::new("/tmp/x"), "127.0.0.1:8080", 1);
        assert!(untouched.apply_env(|_| None).is_empty());
        assert_eq!(untouched.appliance.listen, "127.0.0.1:8080");
        let mut bad = Config::demo(Path::new("/tmp/x"), "127.0.0.1:8080", 1);
        bad.apply_env(|n| (n == "CCMART_LISTEN").then(|| "not an address".to_string()));
        assert!(bad.validate().is_err(), "a bad listen address from the environment is refused");
    }

    #[test]
    fn network_listeners_need_tokens() {
        let mut c = Config::demo(Path::new("/tmp/x"), "0.0.0.0:8080", 1);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("appliance.listen") && e.contains("no [[token]]"), "{e}");
        c.appliance.listen = "127.0.0.1:8080".into();
        c.appliance.metrics_listen = "[::]:8249".into();
        assert!(c.validate().unwrap_err().to_string().contains("appliance.metrics_listen"));
        c.tokens.push(TokenConfig { name: "r".into(), role: "reader".into(), sha256: "ab".repeat(32) });
        c.validate().unwrap();
        c.tokens[0].role = "admin".into();
        assert!(c.validate().unwrap_err().to_string().contains("token[0].role"));
    }

    #[test]
    fn demo_config_is_valid_and_round_trips_through_toml() {
        let c = Config::demo(Path::new("/tmp/x"), DEFAULT_LISTEN, 1);
        c.validate().unwrap();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        back.validate().unwrap();
        assert_eq!(back.pairs().len(), 2);
        assert!(back.warnings().is_empty());
    }

    #[test]
    fn per_queue_thresholds_parse_and_bad_ones_name_their_entry() {
        let text = Config::demo(Path::new("/tmp/x"), DEFAULT_LISTEN, 1).to_toml()
            + "\n[[transform.queue]]\ndbid = 9001\nservice_level_secs = 30\n";
        let c: Config = toml::from_str(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.transform.thresholds_for(9001), (30, 10));
        assert_eq!(c.transform.thresholds_for(9002), (20, 10));
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back.transform, c.transform, "round trip through TOML");
        let mut dup = c.clone();
        dup.transform.queues.push(dup.transform.queues[0].clone());
        let e = dup.validate().unwrap_err().to_string();
        assert!(e.contains("transform.queue[1].dbid") && e.contains("two entries"), "{e}");
        let mut neg = c.clone();
        neg.transform.queues[0].service_level_secs = Some(-1);
        let e = neg.validate().unwrap_err().to_string();
        assert!(e.contains("transform.queue[0].service_level_secs") && e.contains("out of range 0..="), "{e}");
        let mut empty = c.clone();
        empty.transform.queues[0].service_level_secs = None;
        let e = empty.validate().unwrap_err().to_string();
        assert!(e.contains("sets neither"), "{e}");
        assert_eq!(c.transform.aggregate_fingerprint(), back.transform.aggregate_fingerprint());
        let default = crate::transform::aggregate::TransformSettings::default();
        assert_ne!(c.transform.aggregate_fingerprint(), default.aggregate_fingerprint(), "an override changes it");
    }

    /// The key named by the first problem `validate` finds.
    fn refused_key(c: &Config) -> String {
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a refused key, got {other:?}"),
        }
    }

    #[test]
    fn extreme_limits_are_refused_by_key_before_they_can_overflow() {
        let base = Config::demo(Path::new("/tmp/x"), "127.0.0.1:0", 1);
        type Edit = fn(&mut Config);
        let cases: &[(&str, Edit)] = &[
            ("query.memory_limit_mb", |c| c.query.memory_limit_mb = usize::MAX),
            ("query.memory_limit_mb", |c| c.query.memory_limit_mb = MAX_QUERY_MEMORY_MB + 1),
            ("query.spill_limit_mb", |c| c.query.spill_limit_mb = u64::MAX),
            ("query.max_result_mb", |c| c.query.max_result_mb = usize::MAX / 2),
            ("query.timeout_secs", |c| c.query.timeout_secs = i64::MAX as u64),
            ("query.timeout_secs", |c| c.query.timeout_secs = 0),
            ("query.max_rows", |c| c.query.max_rows = usize::MAX),
            ("appliance.max_http_connections", |c| c.appliance.max_http_connections = 0),
            ("appliance.http_header_timeout_secs", |c| c.appliance.http_header_timeout_secs = u64::MAX),
            ("appliance.http_send_timeout_secs", |c| c.appliance.http_send_timeout_secs = 0),
            ("appliance.http_send_timeout_secs", |c| c.appliance.http_send_timeout_secs = u64::MAX),
            ("pgwire.send_timeout_secs", |c| c.pgwire.send_timeout_secs = 0),
            ("extract.backlog_publish_secs", |c| c.extract.backlog_publish_secs = u64::MAX),
            ("extract.retry_max_secs", |c| c.extract.retry_max_secs = u64::MAX),
            ("extract.max_chunks_per_cycle", |c| c.extract.max_chunks_per_cycle = usize::MAX),
            ("pgwire.startup_timeout_secs", |c| c.pgwire.startup_timeout_secs = u64::MAX),
            ("pgwire.idle_session_timeout_secs", |c| c.pgwire.idle_session_timeout_secs = u64::MAX),
            ("pgwire.login_failure_window_secs", |c| c.pgwire.login_failure_window_secs = u64::MAX),
            ("pgwire.max_login_failures", |c| c.pgwire.max_login_failures = 0),
            ("pgwire.max_connections_per_client", |c| c.pgwire.max_connections_per_client = 65),
            ("maintenance.interval_secs", |c| c.maintenance.interval_secs = u64::MAX),
            ("maintenance.version_retention_secs", |c| c.maintenance.version_retention_secs = u64::MAX),
            ("merge.stuck_threshold_secs", |c| c.merge.stuck_threshold_secs = i64::MAX),
            ("merge.backfill_window_secs", |c| c.merge.backfill_window_secs = Some(i64::MAX)),
            ("merge.max_call_duration_secs", |c| c.merge.max_call_duration_secs = i64::MAX),
            ("transform.service_level_secs", |c| c.transform.service_level_secs = i64::MAX),
            ("transform.short_abandon_secs", |c| c.transform.short_abandon_secs = -1),
        ];
        for (key, edit) in cases {
            let mut c = base.clone();
            edit(&mut c);
            assert_eq!(refused_key(&c), *key);
            let message = c.validate().unwrap_err().to_string();
            assert!(message.contains("out of range") && message.contains("set a value"), "{message}");
        }
        // The largest accepted values multiply to bytes and durations without overflow.
        let mut c = base.clone();
        c.query.memory_limit_mb = MAX_QUERY_MEMORY_MB;
        c.query.spill_limit_mb = MAX_SPILL_MB;
        c.query.max_result_mb = MAX_RESULT_MB;
        c.query.timeout_secs = MAX_QUERY_TIMEOUT_SECS;
        c.pgwire.idle_session_timeout_secs = MAX_IDLE_SESSION_SECS;
        c.validate().unwrap();
        assert!(c.query.spill_limit_mb.checked_mul(1024 * 1024).is_some());
        assert!(c.query.memory_limit_mb.checked_mul(1024 * 1024).is_some());
        let far = std::time::Instant::now() + Duration::from_secs(c.query.timeout_secs + MAX_IDLE_SESSION_SECS);
        assert!(far > std::time::Instant::now());
    }

    #[test]
    fn extreme_limits_in_a_file_fail_check_config_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = Config::demo(dir.path(), "127.0.0.1:0", 1)
            .to_toml()
            .replace("memory_limit_mb = 1024", "memory_limit_mb = 9223372036854775807");
        let file = dir.path().join("ccmart.toml");
        std::fs::write(&file, text).unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.contains("query.memory_limit_mb") && e.contains("9223372036854775807"), "{e}");
    }

    #[test]
    fn files_and_addresses_are_checked_as_they_will_be_used() {
        let dir = tempfile::tempdir().unwrap();
        let base = Config::demo(dir.path(), "127.0.0.1:8080", 1);
        base.validate().unwrap();

        // TLS files that hold no certificate or no key.
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a PEM file\n").unwrap();
        let mut c = base.clone();
        (c.appliance.tls_cert, c.appliance.tls_key) = (Some(empty.clone()), Some(empty.clone()));
        assert_eq!(refused_key(&c), "appliance.tls_cert");
        assert!(c.validate().unwrap_err().to_string().contains("no CERTIFICATE"), "{:?}", c.validate());
        let mut c = base.clone();
        (c.pgwire.tls_cert, c.pgwire.tls_key) = (Some(dir.path().join("missing.pem")), Some(empty.clone()));
        assert_eq!(refused_key(&c), "pgwire.tls_cert");

        // A data directory that is a file.
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let mut c = base.clone();
        c.appliance.data_dir = file;
        assert_eq!(refused_key(&c), "appliance.data_dir");
        let mut c = base.clone();
        c.appliance.data_dir = dir.path().join("not-yet-created");
        c.validate().expect("a missing data directory is created at start");

        // Two listeners on one address.
        let mut c = base.clone();
        c.appliance.metrics_listen = c.appliance.listen.clone();
        assert_eq!(refused_key(&c), "appliance.metrics_listen");
        let mut c = base.clone();
        c.pgwire.listen = "0.0.0.0:8080".into();
        c.tokens.push(TokenConfig { name: "r".into(), role: "reader".into(), sha256: "ab".repeat(32) });
        assert_eq!(refused_key(&c), "pgwire.listen");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("appliance.listen") && e.contains("port of its own"), "{e}");
        let mut c = base.clone();
        c.pgwire.listen = "127.0.0.1:5433".into();
        c.appliance.metrics_listen = String::new();
        c.validate().expect("distinct ports");
    }

    #[test]
    fn a_pair_has_at_most_two_idbs() {
        let mut c = Config::demo(Path::new("/tmp/x"), DEFAULT_LISTEN, 1);
        c.idbs[2].pair = "site1-voice".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("has 3 IDBs"), "{e}");
    }
}
