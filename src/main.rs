//! The `ccmart` command line.

use anyhow::{bail, Context, Result};
use ccmart::config::Config;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::progress::ProgressUnit;
use ccmart::serve;
use ccmart::sim::Simulator;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// ccmart — contact-center reporting appliance (IDB extraction, HA merge, star schema on Delta, SQL over HTTP).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Bearer token for calls to a running appliance (query, export, digest, compare, sources): the secret printed
    /// by `ccmart token create`. Not needed when the appliance has no tokens configured.
    #[arg(long, global = true, env = "CCMART_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of a CA (or an appliance's self-signed certificate) to trust for https:// URLs, besides the
    /// system's roots.
    #[arg(long, global = true, env = "CCMART_CACERT")]
    cacert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The `--token` of this invocation, sent with every call to a running appliance.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
/// The `--cacert` of this invocation.
static CACERT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// An appliance the command line talks to, trusting `--cacert`.
fn endpoint(url: &str, token: Option<String>) -> ccmart::replicate::Endpoint {
    ccmart::replicate::Endpoint { url: url.to_string(), token, ca: CACERT.get().cloned().flatten() }
}

/// The HTTP client of the command line (trusts `--cacert` besides the system's roots).
fn http() -> Result<reqwest::Client> {
    ccmart::replicate::client_for(&[&endpoint("", None)], Duration::from_secs(600)).map_err(anyhow::Error::msg)
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance with a config file: extract, transform, publish every cycle, serve HTTP.
    Run {
        /// Config file (TOML).
        #[arg(long, short, env = "CCMART_CONFIG", default_value = "/etc/ccmart/ccmart.toml")]
        config: PathBuf,
        /// Batch mode: extract and transform everything the IDBs hold, print figures and exit (no HTTP server).
        #[arg(long)]
        exit_when_idle: bool,
    },
    /// Run the embedded default: a simulated two-site contact center with HA pairs → mart → HTTP.
    Demo {
        /// HTTP listen address.
        #[arg(long, default_value = ccmart::config::DEFAULT_LISTEN)]
        listen: String,
        /// Data directory (staging + mart); a fresh temporary one by default.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Simulator seed.
        #[arg(long, default_value_t = ccmart::sim::DEFAULT_SEED)]
        seed: u64,
        /// Days of history to generate before going live.
        #[arg(long, default_value_t = 1.0)]
        history_days: f64,
    },
    /// Fill the PostgreSQL IDBs of a config with simulated history (and optionally keep generating live).
    Simulate {
        /// Config file with [[idb]] entries and a [simulator] section.
        #[arg(long, short)]
        config: PathBuf,
        /// Override the days of history.
        #[arg(long)]
        days: Option<f64>,
        /// Keep generating live calls after the history (until Ctrl-C).
        #[arg(long)]
        live: bool,
    },
    /// Run one SQL query against a running appliance and print the result.
    Query {
        /// The SQL.
        sql: String,
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Output: table, csv or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Export a mart table as Parquet from a running appliance.
    Export {
        /// Mart table (e.g. INTERACTION_FACT).
        #[arg(long)]
        table: String,
        /// First day (YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Offline: read the mart in this data directory instead of asking a running appliance (the appliance
        /// must be stopped: it holds the staging store exclusively).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print a content digest per table and day, to compare two appliances (sites) row for row.
    Digest {
        /// One table (default: all).
        #[arg(long)]
        table: Option<String>,
        /// One day (YYYY-MM-DD; default: all).
        #[arg(long)]
        day: Option<String>,
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Offline: read the mart in this data directory (the appliance must be stopped).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Compare this appliance's mart with another site's (active-active): identical, or every difference down to
    /// the key. Exits non-zero when they differ.
    Compare {
        /// The other appliance.
        #[arg(long)]
        peer: String,
        /// This appliance.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// One table (default: all).
        #[arg(long)]
        table: Option<String>,
        /// One day (default: all).
        #[arg(long)]
        day: Option<String>,
        /// Keys listed per differing partition.
        #[arg(long, default_value_t = 20)]
        max_keys: usize,
        /// Token for the other appliance (reader or peer role there); `--token` is used for this one.
        #[arg(long, env = "CCMART_PEER_TOKEN", hide_env_values = true)]
        peer_token: Option<String>,
    },
    /// Disaster recovery: stop (or resume) waiting for the IDBs of a failed site, on a running appliance, without
    /// a restart. Needs an operator token.
    Sources {
        /// `ignore` or `restore`.
        #[arg(value_parser = ["ignore", "restore"])]
        action: String,
        /// The site (as in the [[idb]] `site` keys).
        site: String,
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Return to normal: copy the full mart of a running site into this (new or recovered) site's data directory,
    /// verifying every file, then start this appliance and it continues as standby. Resumes after an interruption
    /// (files already copied and verified are kept).
    Bootstrap {
        /// The running site's appliance URL.
        #[arg(long)]
        from: String,
        /// This appliance's config (its data directory is filled; the appliance must be stopped).
        #[arg(long, short, env = "CCMART_CONFIG", default_value = "/etc/ccmart/ccmart.toml")]
        config: PathBuf,
        /// A peer-role token of the running site (default: replication.peer_token of the config).
        #[arg(long, env = "CCMART_PEER_TOKEN", hide_env_values = true)]
        peer_token: Option<String>,
        /// Bandwidth limit, MB/s (default: none).
        #[arg(long)]
        bandwidth_mbps: Option<f64>,
        /// The running site's name, as it reports it (its [appliance] site); its answers are refused unless they
        /// come from that site (default: replication.peer_site of the config).
        #[arg(long)]
        peer_site: Option<String>,
    },
    /// Disaster recovery: make this standby appliance active at the next epoch (operator token). The other site
    /// stops writing as soon as it hears of the higher epoch.
    Promote {
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Planned switchover: the active site finishes its cycle and steps down, its standby copies up to that exact
    /// mart version and becomes active at the next epoch. Nothing is lost; run it again with --from and --to
    /// swapped to go back. Needs an operator token at both sites (--token, and --to-token when they differ).
    Switchover {
        /// The active site's appliance URL.
        #[arg(long)]
        from: String,
        /// Its standby's appliance URL.
        #[arg(long)]
        to: String,
        /// Operator token of the standby site, when it differs from --token.
        #[arg(long, env = "CCMART_TO_TOKEN", hide_env_values = true)]
        to_token: Option<String>,
        /// Seconds to wait for the standby to copy the last version.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the IDB contract: per extracted table, the columns ccmart reads (for DBAs and benchmarks).
    Contract,
    /// Compare every IDB of a config with the contract: per IDB and table, OK or exactly which columns are
    /// missing or typed differently. Exits with 2 when a table is missing, a required column is missing or
    /// mistyped, or an IDB cannot be reached.
    CheckIdb {
        /// Config file.
        #[arg(long, short, env = "CCMART_CONFIG", default_value = "/etc/ccmart/ccmart.toml")]
        config: PathBuf,
    },
    /// Validate a config file and print the effective configuration.
    CheckConfig {
        /// Config file.
        #[arg(long, short, env = "CCMART_CONFIG", default_value = "/etc/ccmart/ccmart.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new token: prints the secret once (give it to the user) and the `[[token]]` entry for the config,
    /// which holds only its SHA-256.
    Create {
        /// `reader`, `operator` or `peer`.
        #[arg(long, value_parser = ["reader", "operator", "peer"])]
        role: String,
        /// Who it is for (shown in audit trails).
        #[arg(long, default_value = "operator")]
        name: String,
    },
}

/// Exit code of `ccmart run --exit-when-idle` when it finished but data is held back: a pair waits for an IDB
/// (documented in docs/operations.md). Errors exit with 1.
const EXIT_DATA_HELD: i32 = 3;

/// `ccmart run --exit-when-idle` loaded what it could, but data waits for an IDB of a pair: the mart is not
/// complete, and a script must not treat it as such.
#[derive(Debug)]
struct DataHeld(String);

impl std::fmt::Display for DataHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataHeld {}

fn main() {
    if let Err(e) = main_inner() {
        if let Some(held) = e.downcast_ref::<DataHeld>() {
            eprintln!("held back: {held}");
            std::process::exit(EXIT_DATA_HELD);
        }
        if let Some(problems) = e.downcast_ref::<ccmart::source::schema_check::ContractProblems>() {
            eprintln!("error: {problems}");
            std::process::exit(ccmart::source::schema_check::EXIT_CONTRACT_PROBLEM);
        }
        eprintln!("error: {e:#}");
        if let Some(h) = hint(&e) {
            eprintln!("hint: {h}");
        }
        std::process::exit(1);
    }
}

/// What to do about the common failures, by the kind of error anywhere in the chain.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    for cause in e.chain() {
        if cause.downcast_ref::<ccmart::config::ConfigError>().is_some() {
            return Some("every key and its default is documented in /etc/ccmart/ccmart.toml (packaging/ccmart.toml); `ccmart check-config --config FILE` checks a file");
        }
        if let Some(r) = cause.downcast_ref::<reqwest::Error>() {
            if r.is_connect() || r.is_timeout() {
                return Some("is the appliance running and listening there? Check --url (default http://127.0.0.1:8080) and `systemctl status ccmart`");
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::AddrInUse => {
                    return Some(
                        "another process listens on that address; stop it or change appliance.listen / metrics_listen / pgwire.listen",
                    )
                }
                std::io::ErrorKind::PermissionDenied => {
                    return Some(
                        "run as the ccmart user (sudo -u ccmart ...) or check who owns the data directory and config",
                    )
                }
                _ => {}
            }
        }
    }
    None
}

fn main_inner() -> Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            // Vacuum's keep-versions option logs a warning on every use; it is how maintenance works.
            "ccmart=info,warn,deltalake_core::operations::vacuum=error".into()
        }))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let _ = TOKEN.set(cli.token.clone());
    let _ = CACERT.set(cli.cacert.clone());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Run { config, exit_when_idle } => {
                let cfg = Config::load(&config)?;
                if exit_when_idle {
                    return run_batch(cfg).await;
                }
                run_appliance(cfg, false).await
            }
            Command::Demo { listen, data_dir, seed, history_days } => {
                let (dir, _keep) = match data_dir {
                    Some(d) if d.join("staging.redb").exists() => bail!(
                        "{} already holds a demo mart; the demo's simulated IDBs live in memory and start afresh, so \
                         use an empty or new --data-dir (or omit it for a temporary one)",
                        d.display()
                    ),
                    Some(d) => (d, None),
                    None => {
                        let t = tempfile::Builder::new()
                            .prefix("ccmart-demo-")
                            .tempdir()
                            .context("creating a temporary data directory")?;
                        (t.path().to_path_buf(), Some(t))
                    }
                };
                let mut cfg = Config::demo(&dir, &listen, seed);
                if let Some(sim) = cfg.simulator.as_mut() {
                    sim.history_days = history_days;
                }
                cfg.validate()?;
                run_appliance(cfg, true).await
            }
            Command::Simulate { config, days, live } => simulate(config, days, live).await,
            Command::Query { sql, url, format } => query(&url, &sql, &format).await,
            Command::Export { table, from, to, out, url: _, data_dir: Some(dir) } => {
                export_offline(&dir, &table, from, to, &out).await
            }
            Command::Export { table, from, to, out, url, data_dir: None } => export(&url, &table, from, to, &out).await,
            Command::Digest { table, day, url, data_dir } => digest(&url, data_dir.as_deref(), table, day).await,
            Command::Compare { peer, url, table, day, max_keys, peer_token } => {
                let local = endpoint(&url, cli.token.clone());
                let other = endpoint(&peer, peer_token);
                let c = ccmart::replicate::compare(&local, &other, table.as_deref(), day.as_deref()).await?;
                println!("# {url} (mart version {}) vs {peer} (mart version {})", c.versions.0, c.versions.1);
                if c.differences.is_empty() {
                    println!("identical: {} partitions, {} rows", c.partitions, c.rows);
                    return Ok(());
                }
                for d in &c.differences {
                    let day = if d.day.is_empty() { "-" } else { d.day.as_str() };
                    let n = |v: Option<u64>| v.map_or("missing".to_string(), |v| v.to_string());
                    println!("DIFFERENT {} {day}: rows {} vs {}", d.table, n(d.rows.0), n(d.rows.1));
                    for (what, keys) in
                        [("only here", &d.only_local), ("only at peer", &d.only_peer), ("different", &d.different)]
                    {
                        if !keys.is_empty() {
                            let shown: Vec<String> = keys.iter().take(max_keys).map(i64::to_string).collect();
                            let more = if keys.len() > max_keys {
                                format!(" (+{} more)", keys.len() - max_keys)
                            } else {
                                String::new()
                            };
                            println!("  {what}: {}{more}", shown.join(" "));
                        }
                    }
                }
                bail!("the marts differ in {} of {} partitions", c.differences.len(), c.partitions)
            }
            Command::Bootstrap { from, config, peer_token, bandwidth_mbps, peer_site } => {
                let cfg = Config::load(&config)?;
                let Some(site) = peer_site.or(cfg.replication.peer_site.clone()) else {
                    bail!(
                        "bootstrap needs the running site's name to check its answers: --peer-site SITE, or \
                         replication.peer_site in {}",
                        config.display()
                    );
                };
                if let Some(problem) = cfg.replication.peer_url_problem(&from) {
                    bail!("--from: {problem}");
                }
                let dir = &cfg.appliance.data_dir;
                std::fs::create_dir_all(dir.join("mart")).with_context(|| format!("creating {}", dir.display()))?;
                let store = std::sync::Arc::new(
                    ccmart::staging::Store::open(&dir.join("staging.redb"), FaultInjector::disarmed())
                        .context("opening staging (is the appliance still running?)")?,
                );
                let fence = ccmart::replicate::fencing::SharedFence::load(
                    store.clone(),
                    ccmart::replicate::fencing::Role::Standby,
                    chrono::Utc::now().timestamp(),
                )?;
                if fence.is_active() && store.latest_snapshot()?.is_some() {
                    bail!("{} holds an active mart; bootstrap only fills a new or standby site", dir.display());
                }
                let mut peer = endpoint(&from, peer_token.or(cfg.replication.peer_token.clone()));
                if peer.ca.is_none() {
                    peer.ca = cfg.replication.peer_ca.clone();
                }
                let options = ccmart::replicate::sync::PullOptions {
                    bandwidth: bandwidth_mbps.map(|m| (m * 1_000_000.0) as u64),
                    progress: true,
                };
                let cache = ccmart::replicate::sync::HashCache::default();
                let trust = ccmart::replicate::sync::PeerTrust { site, epoch: fence.get().epoch };
                let r = ccmart::replicate::sync::pull_with(&peer, &trust, &dir.join("mart"), &store, &cache, &options)
                    .await?;
                println!(
                    "bootstrapped from {from}: {} file(s), {} bytes, mart version {}; start the appliance: it continues as standby{}",
                    r.files,
                    r.bytes,
                    r.mart_version.map_or("none".into(), |v| v.to_string()),
                    if cfg.replication.peer_url.is_none() { " (set replication.peer_url so it keeps copying)" } else { "" }
                );
                Ok(())
            }
            Command::Switchover { from, to, to_token, timeout_secs } => {
                let token = TOKEN.get().cloned().flatten();
                let from = endpoint(&from, token.clone());
                let to = endpoint(&to, to_token.or(token));
                let started = std::time::Instant::now();
                let report = ccmart::replicate::switchover::switchover(
                    &from,
                    &to,
                    Duration::from_secs(timeout_secs),
                    |step| eprintln!("  {step} ({:.1} s)", started.elapsed().as_secs_f64()),
                )
                .await?;
                println!(
                    "switchover done in {:.1} s: {} is active at epoch {}, from mart version {} \
                     (step down {} ms, catch up {} ms, promote {} ms); {} copies from it as standby",
                    started.elapsed().as_secs_f64(),
                    to.url,
                    report.fence.epoch,
                    report.mart_version.map_or("none".into(), |v| v.to_string()),
                    report.step_down_ms,
                    report.catch_up_ms,
                    report.promote_ms,
                    from.url
                );
                Ok(())
            }
            Command::Promote { url } => {
                let endpoint = format!("{}/v1/admin/promote", url.trim_end_matches('/'));
                let body = fetch(http()?.post(&endpoint), &endpoint).await?;
                let v: serde_json::Value = serde_json::from_slice(&body).context("reading the appliance's answer")?;
                println!("active at epoch {} ({})", v["epoch"], v["reason"].as_str().unwrap_or_default());
                Ok(())
            }
            Command::Sources { action, site, url } => {
                let endpoint = format!("{}/v1/admin/sources/{site}/{action}", url.trim_end_matches('/'));
                let body = fetch(http()?.post(&endpoint), &endpoint).await?;
                let v: serde_json::Value = serde_json::from_slice(&body).context("reading the appliance's answer")?;
                let changed = v.get("changed").and_then(|c| c.as_bool()).unwrap_or(false);
                println!(
                    "site {site}: {}{}",
                    if action == "ignore" { "ignored" } else { "restored" },
                    if changed { "" } else { " (it already was)" }
                );
                Ok(())
            }
            Command::Token { command: TokenCommand::Create { role, name } } => {
                let secret = serve::auth::new_token_secret();
                println!("# Token for {name} (role {role}). The secret is shown only now:");
                println!("#   {secret}");
                println!("# Add this to the config file and restart the appliance:");
                println!(
                    "[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"",
                    serve::auth::hash_token(&secret)
                );
                Ok(())
            }
            Command::Contract => {
                for t in ccmart::source::contract::EXTRACTED_TABLES {
                    let cols: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
                    println!("{} {}", t.name, cols.join(","));
                }
                Ok(())
            }
            Command::CheckIdb { config } => {
                let cfg = Config::load(&config)?;
                let idbs: Vec<(String, String)> = cfg.idbs.iter().map(|i| (i.name.clone(), i.url.clone())).collect();
                let outcome = ccmart::source::schema_check::check_idbs(&idbs).await;
                print!("{}", outcome.text);
                Ok(outcome.result()?)
            }
            Command::CheckConfig { config } => {
                let cfg = Config::load(&config)?;
                for w in cfg.warnings() {
                    println!("# warning: {w}");
                }
                println!("# {}: valid", config.display());
                print!("{}", cfg.to_toml());
                Ok(())
            }
        }
    })
}

async fn run_appliance(cfg: Config, demo: bool) -> Result<()> {
    let listen = cfg.appliance.listen.clone();
    let cycle = Duration::from_secs(cfg.appliance.cycle_secs);
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await?;
    let tls = match (&cfg.appliance.tls_cert, &cfg.appliance.tls_key) {
        (Some(cert), Some(key)) => Some(serve::tls::server_config(cert, key).context("appliance.tls_cert / tls_key")?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let state = app.serve_state();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let stopped = async move {
        let _ = server_stop.changed().await;
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = tokio::spawn(serve::serve_with(listener, state, cfg.appliance.http_limits(), tls, stopped));
    tracing::info!(%addr, scheme, "HTTP API listening");
    let metrics_addr = match cfg.appliance.metrics_listen.as_str() {
        "" => None,
        m => {
            let listener = bind_service(m, demo, "metrics", "appliance.metrics_listen").await?;
            let maddr = listener.local_addr()?;
            let mut metrics_stop = stop_rx.clone();
            tokio::spawn(serve::metrics::serve_metrics(listener, app.metrics(), app.tokens(), async move {
                let _ = metrics_stop.changed().await;
            }));
            tracing::info!(addr = %maddr, "Prometheus metrics at /metrics");
            Some(maddr)
        }
    };
    let pg_addr = match cfg.pgwire.listen.as_str() {
        "" => None,
        p => {
            let pg_tls = match (&cfg.pgwire.tls_cert, &cfg.pgwire.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(serve::tls::server_config(cert, key).context("pgwire.tls_cert / tls_key")?)
                }
                _ => None,
            };
            let listener = bind_service(p, demo, "PostgreSQL protocol", "pgwire.listen").await?;
            let paddr = listener.local_addr()?;
            let st = app.serve_state();
            let frontend = serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
            let mut pg_stop = stop_rx.clone();
            let secure = pg_tls.is_some();
            tokio::spawn(serve::pgwire::serve_with(listener, frontend, cfg.pgwire.limits(), pg_tls, async move {
                let _ = pg_stop.changed().await;
            }));
            tracing::info!(addr = %paddr, tls = secure, "PostgreSQL protocol listening");
            Some(paddr)
        }
    };

    // The simulator feeds embedded IDBs (demo, or a config with embedded IDBs).
    let mut driver = None;
    if let Some(simcfg) = cfg.simulator.clone().filter(|_| !app.embedded_idbs().is_empty()) {
        let now = chrono::Utc::now().timestamp();
        let start = now - (simcfg.history_days * 86_400.0) as i64;
        let sim = Simulator::new(simcfg.settings.clone(), start);
        let mut d = SimulationDriver::new(&cfg, sim, app.embedded_idbs()).await?;
        let n = simulate_history(&mut d, Some(&mut app), start, now).await?;
        tracing::debug!(writes = n, idbs = app.embedded_idbs().len(), "simulated history written");
        driver = Some((d, simcfg.live));
    }
    eprintln!("Building the mart...");
    let cycles = app.drain(10_000).await?;
    let snap = app.store().latest_snapshot()?;
    eprintln!("  mart version {} after {cycles} cycle(s)", snap.map_or(0, |s| s.version));
    if demo {
        print_examples(&addr.to_string(), metrics_addr, pg_addr);
    }
    let mut ticker = tokio::time::interval(cycle);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sim = chrono::Utc::now().timestamp();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {
                if let Some((d, true)) = driver.as_mut() {
                    let now = chrono::Utc::now().timestamp();
                    if let Err(e) = d.advance(last_sim, now, 60).await {
                        tracing::error!(error = %e, "simulator write failed");
                    }
                    last_sim = now;
                }
                match app.cycle().await {
                    Ok(r) => if let Some(v) = r.mart_version { tracing::info!(mart_version = v, rows = r.rows_staged, groups = r.groups, "published") },
                    Err(e) => tracing::error!(error = %e, "cycle failed; retrying next cycle"),
                }
            }
        }
    }
    eprintln!("Shutting down.");
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(())
}

/// Binds a secondary listener (metrics, PostgreSQL protocol). The demo must start on a machine where a default
/// port is taken, so it falls back to a free port there; an installed appliance must not silently move a port that
/// scrapers and BI tools are configured with.
async fn bind_service(addr: &str, demo: bool, what: &str, key: &str) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if demo => {
            tracing::warn!(error = %e, "{what} port {addr} is taken; the demo uses a free port instead");
            let ip = addr.parse::<std::net::SocketAddr>().map(|a| a.ip()).unwrap_or([127, 0, 0, 1].into());
            tokio::net::TcpListener::bind((ip, 0)).await.with_context(|| format!("listening for {what}"))
        }
        Err(e) => Err(e).with_context(|| format!("listening for {what} on {addr} ({key})")),
    }
}

async fn run_batch(cfg: Config) -> Result<()> {
    let t0 = std::time::Instant::now();
    let mut app = Appliance::open(cfg, FaultInjector::disarmed()).await?;
    let mut staged = 0usize;
    let mut cycles = 0usize;
    let held = loop {
        let r = app.cycle().await?;
        cycles += 1;
        staged += r.rows_staged;
        if !r.more && r.rows_staged == 0 && r.groups == 0 {
            break r.held;
        }
        eprintln!(
            "  cycle {cycles}: {} rows staged, {} groups transformed, {} partitions published \
             (extract {} ms, transform {} ms, publish {} ms; {:.1}s in all)",
            r.rows_staged,
            r.groups,
            r.partitions,
            r.extract_ms,
            r.transform_ms,
            r.publish_ms,
            t0.elapsed().as_secs_f64()
        );
    };
    let status = app.status().get();
    if let Some(unreachable) = status.idbs.iter().find(|i| !i.reachable) {
        bail!("IDB '{}' could not be read: {}", unreachable.idb, unreachable.last_error.clone().unwrap_or_default());
    }
    let snap = app.store().latest_snapshot()?;
    let waits: Vec<String> = status
        .pairs
        .iter()
        .flat_map(|p| p.waits.iter().map(move |w| (p, w)))
        .filter(|(_, w)| !w.stuck)
        .map(|(p, w)| format!("pair '{}' waits for IDB '{}' ({} s behind)", p.pair, w.idb, w.behind_secs))
        .collect();
    println!(
        "{{\"rows_staged\": {staged}, \"cycles\": {cycles}, \"seconds\": {:.3}, \"mart_version\": {}, \"quarantined\": {}, \"held_groups\": {held}, \"waiting_for\": {}}}",
        t0.elapsed().as_secs_f64(),
        snap.map_or(0, |s| s.version),
        status.quarantined_rows,
        serde_json::to_string(&waits)?
    );
    if held > 0 && !waits.is_empty() {
        return Err(DataHeld(format!(
            "{held} interaction(s) or session(s) are not in the mart yet: {}. Run again when the IDB has caught up, \
             wait for merge.stuck_threshold_secs, or list the failed site in merge.ignore_sources",
            waits.join("; ")
        ))
        .into());
    }
    if held > 0 {
        eprintln!("  {held} interaction(s) or session(s) are still open in the IDBs; they reach the mart once closed");
    }
    Ok(())
}

fn print_examples(addr: &str, metrics: Option<std::net::SocketAddr>, pg: Option<std::net::SocketAddr>) {
    println!();
    println!("ccmart demo is ready: http://{addr}");
    println!("Status page: open http://{addr}/ in a browser. API description: http://{addr}/v1/openapi.json");
    println!("Try (copy and paste):");
    println!("  curl -s http://{addr}/v1/status");
    println!("  curl -s http://{addr}/v1/tables");
    println!(
        "  curl -s http://{addr}/v1/query -H 'content-type: application/json' -d '{{\"sql\": \"SELECT count(*) AS calls, avg(duration) AS avg_secs FROM INTERACTION_FACT\"}}'"
    );
    println!(
        "  curl -s http://{addr}/v1/query -H 'content-type: application/json' -d '{{\"sql\": \"SELECT r.resource_name, count(*) AS answered, sum(f.talk_duration) AS talk_secs FROM INTERACTION_RESOURCE_FACT f JOIN RESOURCE_ r USING (resource_key) WHERE f.resource_role = '\\''Received'\\'' AND f.talk_count > 0 GROUP BY 1 ORDER BY 2 DESC LIMIT 10\"}}'"
    );
    println!(
        "  curl -s http://{addr}/v1/query -H 'content-type: application/json' -d '{{\"sql\": \"SELECT technical_result, count(*) FROM INTERACTION_RESOURCE_FACT GROUP BY 1 ORDER BY 2 DESC\", \"format\": \"csv\"}}'"
    );
    println!("  curl -s http://{addr}/v1/reports");
    println!("  curl -s 'http://{addr}/v1/reports/queue_service_level?format=csv'");
    println!("  curl -s -o interactions.parquet 'http://{addr}/v1/export/INTERACTION_FACT'");
    if let Some(m) = metrics {
        println!("  curl -s http://{m}/metrics | grep -E '^ccmart_(pair|idb|freshness)'");
    }
    if let Some(p) = pg {
        // Any password works in the demo (no tokens are configured; loopback only).
        println!(
            "  psql 'postgresql://demo:demo@{}:{}/ccmart' -c '\\dt' -c 'SELECT r.resource_name AS queue, q.day, q.offered, q.abandoned, q.accepted_within_sl FROM ag2_queue_day q JOIN resource_ r USING (resource_key) ORDER BY 2, 1'",
            p.ip(),
            p.port()
        );
    }
    println!("Live calls keep arriving; press Ctrl-C to stop.");
}

async fn simulate(config: PathBuf, days: Option<f64>, live: bool) -> Result<()> {
    let cfg = Config::load(&config)?;
    let Some(simcfg) = cfg.simulator.clone() else { bail!("{} has no [simulator] section", config.display()) };
    let days = days.unwrap_or(simcfg.history_days);
    let now = chrono::Utc::now().timestamp();
    let start = now - (days * 86_400.0) as i64;
    let sim = Simulator::new(simcfg.settings.clone(), start);
    let mut d = SimulationDriver::new(&cfg, sim, &[]).await?;
    let writes = simulate_history(&mut d, None, start, now).await?;
    eprintln!("History of {days} day(s) written: {writes} IDB writes");
    if live {
        let mut last = now;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let now = chrono::Utc::now().timestamp();
                    d.advance(last, now, 60).await?;
                    last = now;
                }
            }
        }
    }
    Ok(())
}

/// Simulated history longer than this is fed to the appliance day by day (see [`simulate_history`]).
const HISTORY_IN_ONE_GO_SECS: i64 = 2 * 86_400;

/// Writes simulated history from `start` to `end` in one-hour steps, showing progress in simulated hours.
///
/// With the appliance whose embedded IDBs it writes (`app`), a history longer than two days is written a day at a
/// time: the appliance extracts and transforms each day before the next is simulated, and each embedded IDB then
/// forgets the rows written before the previous day (all extracted, and no call or session lasts a day). Memory
/// stays bounded by two days of IDB rows instead of growing with the history (a month at 50k calls a day is ~50
/// million rows). A shorter history is written in one go and the mart built afterwards.
async fn simulate_history(
    d: &mut SimulationDriver,
    mut app: Option<&mut Appliance>,
    start: i64,
    end: i64,
) -> Result<usize> {
    if end - start <= HISTORY_IN_ONE_GO_SECS {
        app = None;
    }
    let hours = ((end - start).max(0) as u64).div_ceil(3600);
    let mut progress = ccmart::progress::Progress::new("simulated history", Some(hours), ProgressUnit::Count("hours"));
    let (mut t, mut writes, mut forgotten) = (start, 0, 0);
    let mut marks: Vec<i64> =
        app.as_ref().map(|a| a.embedded_idbs().iter().map(|(_, idb)| idb.counter()).collect()).unwrap_or_default();
    while t < end {
        let next = (t + 3600).min(end);
        writes += d.advance(t, next, 3600).await?;
        t = next;
        progress.inc(1);
        if let Some(app) = app.as_deref_mut().filter(|_| (t - start) % 86_400 == 0 || t == end) {
            app.drain(10_000).await?;
            for ((_, idb), mark) in app.embedded_idbs().iter().zip(marks.iter_mut()) {
                forgotten += idb.forget_through(*mark);
                *mark = idb.counter();
            }
        }
    }
    let dropped =
        if forgotten > 0 { format!(", {forgotten} extracted rows older than a day dropped") } else { String::new() };
    progress.finish(&format!(", {writes} IDB writes{dropped}"));
    Ok(writes)
}

/// Sends a request to a running appliance; a non-2xx answer becomes an error carrying the appliance's message.
/// Sends `--token` when given.
async fn fetch(mut request: reqwest::RequestBuilder, url: &str) -> Result<bytes::Bytes> {
    if let Some(Some(token)) = TOKEN.get() {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.with_context(|| format!("cannot reach the appliance at {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        bail!("{status}: the appliance needs a token; pass --token SECRET or set CCMART_TOKEN (`ccmart token create`)");
    }
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

async fn query(url: &str, sql: &str, format: &str) -> Result<()> {
    let wire = match format {
        "table" => "arrow",
        "csv" | "json" => format,
        other => bail!("unknown --format '{other}': use table, csv or json"),
    };
    let request = http()?
        .post(format!("{}/v1/query", url.trim_end_matches('/')))
        .json(&serde_json::json!({"sql": sql, "format": wire}));
    let body = fetch(request, url).await?;
    if wire == "arrow" {
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)?;
        let batches: Vec<_> = reader.collect::<std::result::Result<_, _>>()?;
        println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
    } else {
        print!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

async fn digest(
    url: &str,
    data_dir: Option<&std::path::Path>,
    table: Option<String>,
    day: Option<String>,
) -> Result<()> {
    let digests: serde_json::Value = match data_dir {
        Some(dir) => {
            let tables = match &table {
                Some(t) => {
                    vec![ccmart::transform::schema::mart_table(t).with_context(|| format!("no mart table '{t}'"))?]
                }
                None => Vec::new(),
            };
            let day = ccmart::serve::parse_day("day", &day).map_err(anyhow::Error::msg)?;
            let (snap, engine) = open_offline(dir).await?;
            let d = ccmart::query::digest::digests(&engine, &snap, &tables, day.as_deref()).await?;
            serde_json::json!({"mart_version": snap.version, "digests": d})
        }
        None => {
            let mut params = vec![];
            if let Some(t) = &table {
                params.push(("table", t.clone()));
            }
            if let Some(d) = &day {
                params.push(("day", d.clone()));
            }
            let request = http()?.get(format!("{}/v1/digest", url.trim_end_matches('/'))).query(&params);
            serde_json::from_slice(&fetch(request, url).await?)?
        }
    };
    println!("# mart version {}", digests["mart_version"]);
    for d in digests["digests"].as_array().into_iter().flatten() {
        let day = d["day"].as_str().filter(|s| !s.is_empty()).unwrap_or("-");
        println!(
            "{}\t{}\t{}\t{}",
            d["table"].as_str().unwrap_or_default(),
            day,
            d["rows"],
            d["digest"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// Opens a stopped appliance's data directory read-only for offline commands.
async fn open_offline(dir: &std::path::Path) -> Result<(ccmart::staging::MartSnapshot, ccmart::query::QueryEngine)> {
    let store = ccmart::staging::Store::open(&dir.join("staging.redb"), FaultInjector::disarmed())?;
    let snap =
        store.latest_snapshot()?.with_context(|| format!("{} holds no published mart version", dir.display()))?;
    let mart = ccmart::mart::Mart::open(&dir.join("mart")).await?;
    Ok((snap, ccmart::query::QueryEngine::new(mart, Default::default())))
}

fn export_file_name(table: &str, from: &Option<String>, to: &Option<String>) -> String {
    format!("{}_{}_{}.parquet", table.to_lowercase(), from.as_deref().unwrap_or("all"), to.as_deref().unwrap_or("all"))
}

async fn export_offline(
    dir: &std::path::Path,
    table: &str,
    from: Option<String>,
    to: Option<String>,
    out: &std::path::Path,
) -> Result<()> {
    let t = ccmart::transform::schema::mart_table(table).with_context(|| format!("no mart table '{table}'"))?;
    let from_day = ccmart::serve::parse_day("from", &from).map_err(anyhow::Error::msg)?;
    let to_day = ccmart::serve::parse_day("to", &to).map_err(anyhow::Error::msg)?;
    let store = ccmart::staging::Store::open(&dir.join("staging.redb"), FaultInjector::disarmed())?;
    let snap =
        store.latest_snapshot()?.with_context(|| format!("{} holds no published mart version", dir.display()))?;
    let mart = ccmart::mart::Mart::open(&dir.join("mart")).await?;
    let engine = ccmart::query::QueryEngine::new(mart, Default::default());
    let export = ccmart::serve::ParquetExport::write(&engine, &snap, t, from_day.as_deref(), to_day.as_deref()).await?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(export_file_name(table, &from, &to));
    let rows = export.rows;
    export.persist(&path).with_context(|| format!("writing {}", path.display()))?;
    println!("{} ({rows} rows, mart version {})", path.display(), snap.version);
    Ok(())
}

async fn export(url: &str, table: &str, from: Option<String>, to: Option<String>, out: &std::path::Path) -> Result<()> {
    let mut params = vec![];
    if let Some(f) = &from {
        params.push(("from", f.clone()));
    }
    if let Some(t) = &to {
        params.push(("to", t.clone()));
    }
    let mut request = http()?.get(format!("{}/v1/export/{}", url.trim_end_matches('/'), table)).query(&params);
    if let Some(Some(token)) = TOKEN.get() {
        request = request.bearer_auth(token);
    }
    let mut resp = request.send().await.with_context(|| format!("cannot reach the appliance at {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("{status}: {}", resp.text().await.unwrap_or_default());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(export_file_name(table, &from, &to));
    // Written under a temporary name and renamed when complete: an interrupted export leaves no partial file.
    let partial = path.with_extension("parquet.partial");
    let mut file = tokio::fs::File::create(&partial).await.with_context(|| format!("writing {}", partial.display()))?;
    let mut progress =
        ccmart::progress::Progress::new(format!("export {table}"), resp.content_length(), ProgressUnit::Bytes);
    while let Some(chunk) = resp.chunk().await.context("the export was cut off")? {
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .with_context(|| format!("writing {}", partial.display()))?;
        progress.inc(chunk.len() as u64);
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    drop(file);
    std::fs::rename(&partial, &path).with_context(|| format!("renaming to {}", path.display()))?;
    progress.finish(&format!(" -> {}", path.display()));
    println!("{}", path.display());
    Ok(())
}
