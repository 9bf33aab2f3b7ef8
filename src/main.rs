//! The `ccmart` command line: parsing (typed flags, checked as they are parsed) and dispatch. The command bodies
//! are in [`cli`]; errors become an exit code and a hint there.

mod cli;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cli::local::TokenRole;
use cli::remote::{QueryFormat, SourceActionArg};
use std::path::PathBuf;
use std::process::ExitCode;
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
        #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = cli::parse_url)]
        url: String,
        /// Output.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
    },
    /// Export a mart table as one Parquet file (--table), or one consistent mart version of every table as plain
    /// Hive-partitioned Parquet for data-lake tools (--snapshot; docs/lake.md).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["table", "snapshot"])))]
    Export {
        /// Mart table (e.g. INTERACTION_FACT), written to one file in --out.
        #[arg(long, requires = "out")]
        table: Option<String>,
        /// Directory (new or empty) to write a snapshot into: DIR/<table>/day=YYYY-MM-DD/part-0.parquet,
        /// DIR/<table>/part-0.parquet and DIR/_ccmart_snapshot.json, all of one mart version.
        #[arg(long, conflicts_with_all = ["from", "to", "out"])]
        snapshot: Option<PathBuf>,
        /// First day (YYYY-MM-DD).
        #[arg(long, value_parser = cli::parse_day)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD).
        #[arg(long, value_parser = cli::parse_day)]
        to: Option<String>,
        /// Output directory of --table.
        #[arg(long, requires = "table")]
        out: Option<PathBuf>,
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = cli::parse_url)]
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
        #[arg(long, value_parser = cli::parse_day)]
        day: Option<String>,
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = cli::parse_url)]
        url: String,
        /// Offline: read the mart in this data directory (the appliance must be stopped).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Compare this appliance's mart with another site's (active-active): identical, or every difference down to
    /// the key. Exits non-zero when they differ.
    Compare {
        /// The other appliance.
        #[arg(long, value_parser = cli::parse_url)]
        peer: String,
        /// This appliance.
        #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = cli::parse_url)]
        url: String,
        /// One table (default: all).
        #[arg(long)]
        table: Option<String>,
        /// One day (YYYY-MM-DD; default: all).
        #[arg(long, value_parser = cli::parse_day)]
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
        /// Stop waiting for the site's IDBs, or wait for them again.
        #[arg(value_enum)]
        action: SourceActionArg,
        /// The site (as in the [[idb]] `site` keys).
        site: String,
        /// Appliance URL.
        #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = cli::parse_url)]
        url: String,
    },
    /// Return to normal: copy the full mart of a running site into this (new or recovered) site's data directory,
    /// verifying every file, then start this appliance and it continues as standby. Resumes after an interruption
    /// (files already copied and verified are kept).
    Bootstrap {
        /// The running site's appliance URL.
        #[arg(long, value_parser = cli::parse_url)]
        from: String,
        /// This appliance's config (its data directory is filled; the appliance must be stopped).
        #[arg(long, short, env = "CCMART_CONFIG", default_value = "/etc/ccmart/ccmart.toml")]
        config: PathBuf,
        /// A peer-role token of the running site (default: replication.peer_token of the config).
        #[arg(long, env = "CCMART_PEER_TOKEN", hide_env_values = true)]
        peer_token: Option<String>,
        /// Bandwidth limit, MB/s (default: none).
        #[arg(long, value_parser = parse_bandwidth)]
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
        #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = cli::parse_url)]
        url: String,
    },
    /// Planned switchover: the active site finishes its cycle and steps down, its standby copies up to that exact
    /// mart version and becomes active at the next epoch. Nothing is lost; run it again with --from and --to
    /// swapped to go back. Needs an operator token at both sites (--token, and --to-token when they differ).
    Switchover {
        /// The active site's appliance URL.
        #[arg(long, value_parser = cli::parse_url)]
        from: String,
        /// Its standby's appliance URL.
        #[arg(long, value_parser = cli::parse_url)]
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
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// Who it is for (shown in audit trails).
        #[arg(long, default_value = "operator")]
        name: String,
    },
}

/// `--bandwidth-mbps`: a positive number.
fn parse_bandwidth(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{text}' is not a positive number of MB/s")),
    }
}

fn main() -> ExitCode {
    cli::exit_code(main_inner())
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
    let remote = cli::Remote { token: cli.token, cacert: cli.cacert };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Run { config, exit_when_idle } => cli::run::run(config, exit_when_idle).await,
            Command::Demo { listen, data_dir, seed, history_days } => {
                cli::run::demo(listen, data_dir, seed, history_days).await
            }
            Command::Simulate { config, days, live } => cli::run::simulate(config, days, live).await,
            Command::Query { sql, url, format } => cli::remote::query(&remote, &url, &sql, format).await,
            Command::Export { snapshot: Some(snapshot), url: _, data_dir: Some(dir), .. } => {
                cli::lake::snapshot_offline(&dir, &snapshot).await
            }
            Command::Export { snapshot: Some(snapshot), url, data_dir: None, .. } => {
                cli::lake::snapshot_remote(&remote, &url, &snapshot).await
            }
            Command::Export { table: Some(table), from, to, out: Some(out), url: _, data_dir: Some(dir), .. } => {
                cli::local::export_offline(&dir, &table, from, to, &out).await
            }
            Command::Export { table: Some(table), from, to, out: Some(out), url, data_dir: None, .. } => {
                cli::remote::export(&remote, &url, &table, from, to, &out).await
            }
            Command::Export { .. } => anyhow::bail!("export needs --table T --out DIR, or --snapshot DIR"),
            Command::Digest { table, day, url: _, data_dir: Some(dir) } => {
                cli::local::digest_offline(&dir, table, day).await
            }
            Command::Digest { table, day, url, data_dir: None } => cli::remote::digest(&remote, &url, table, day).await,
            Command::Compare { peer, url, table, day, max_keys, peer_token } => {
                let args = cli::remote::CompareArgs { url, peer, peer_token, table, day, max_keys };
                cli::remote::compare(&remote, args).await
            }
            Command::Bootstrap { from, config, peer_token, bandwidth_mbps, peer_site } => {
                let args = cli::remote::BootstrapArgs { from, config, peer_token, bandwidth_mbps, peer_site };
                cli::remote::bootstrap(&remote, args).await
            }
            Command::Switchover { from, to, to_token, timeout_secs } => {
                cli::remote::switchover(&remote, &from, &to, to_token, Duration::from_secs(timeout_secs)).await
            }
            Command::Promote { url } => cli::remote::promote(&remote, &url).await,
            Command::Sources { action, site, url } => cli::remote::sources(&remote, &url, action, &site).await,
            Command::Token { command: TokenCommand::Create { role, name } } => {
                cli::local::token_create(role, &name);
                Ok(())
            }
            Command::Contract => {
                cli::local::contract();
                Ok(())
            }
            Command::CheckIdb { config } => cli::local::check_idb(&config).await,
            Command::CheckConfig { config } => cli::local::check_config(&config),
        }
    })
}
