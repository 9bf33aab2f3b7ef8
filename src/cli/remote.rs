//! Commands that talk to running appliances, all through the one peer client ([`ccmart::replicate::client`]):
//! query, export, digest, promote, sources, compare, switchover, and bootstrap (which fills a stopped appliance's
//! data directory from a running one).

use super::{cli_error, Remote};
use anyhow::{bail, Context, Result};
use ccmart::config::Config;
use ccmart::fault::FaultInjector;
use ccmart::model::wire;
use ccmart::progress::ProgressUnit;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How `ccmart query` prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// A text table (asks for Arrow IPC and prints it).
    Table,
    /// CSV as the appliance answers it.
    Csv,
    /// JSON as the appliance answers it.
    Json,
}

impl QueryFormat {
    /// The `format` of the request.
    fn wire(self) -> &'static str {
        match self {
            QueryFormat::Table => "arrow",
            QueryFormat::Csv => "csv",
            QueryFormat::Json => "json",
        }
    }
}

/// `ccmart sources ignore|restore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceActionArg {
    /// Stop waiting for the site's IDBs.
    Ignore,
    /// Wait for them again.
    Restore,
}

impl From<SourceActionArg> for wire::SourceAction {
    fn from(a: SourceActionArg) -> Self {
        match a {
            SourceActionArg::Ignore => wire::SourceAction::Ignore,
            SourceActionArg::Restore => wire::SourceAction::Restore,
        }
    }
}

/// `ccmart query`.
pub async fn query(remote: &Remote, url: &str, sql: &str, format: QueryFormat) -> Result<()> {
    let request = wire::QueryRequest {
        sql: sql.to_string(),
        format: Some(format.wire().into()),
        mart_version: None,
        time_zone: None,
        int64: None,
    };
    let body = remote.appliance(url)?.query(&request).await.map_err(cli_error)?;
    if format == QueryFormat::Table {
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)?;
        let batches: Vec<_> = reader.collect::<std::result::Result<_, _>>()?;
        println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
    } else {
        print!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// `ccmart digest --url`: the running appliance's digests.
pub async fn digest(remote: &Remote, url: &str, table: Option<String>, day: Option<String>) -> Result<()> {
    let params = wire::DigestParams { table, day, mart_version: None };
    let list = remote.appliance(url)?.digests(&params).await.map_err(cli_error)?;
    print_digests(&list);
    Ok(())
}

/// One line per partition: table, day (`-` when unpartitioned), rows, digest.
pub fn print_digests(list: &wire::DigestList) {
    println!("# mart version {}", list.mart_version);
    for d in &list.digests {
        let day = if d.day.is_empty() { "-" } else { d.day.as_str() };
        println!("{}\t{day}\t{}\t{}", d.table, d.rows, d.digest);
    }
}

/// `ccmart export --url`: streams the Parquet file to `out`, under a temporary name until complete.
pub async fn export(
    remote: &Remote,
    url: &str,
    table: &str,
    from: Option<String>,
    to: Option<String>,
    out: &Path,
) -> Result<()> {
    let params = wire::ExportParams { from: from.clone(), to: to.clone(), mart_version: None, day_column: None };
    let mut body = remote.appliance(url)?.export(table, &params).await.map_err(cli_error)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(super::local::export_file_name(table, &from, &to));
    // Written under a temporary name and renamed when complete: an interrupted export leaves no partial file.
    let partial = path.with_extension("parquet.partial");
    let mut file = tokio::fs::File::create(&partial).await.with_context(|| format!("writing {}", partial.display()))?;
    let mut progress =
        ccmart::progress::Progress::new(format!("export {table}"), body.content_length(), ProgressUnit::Bytes);
    while let Some(chunk) = body.chunk().await.context("the export was cut off")? {
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

/// `ccmart promote`.
pub async fn promote(remote: &Remote, url: &str) -> Result<()> {
    let fence = remote.appliance(url)?.promote().await.map_err(cli_error)?;
    println!("active at epoch {} ({})", fence.epoch, fence.reason);
    Ok(())
}

/// `ccmart sources ignore|restore`.
pub async fn sources(remote: &Remote, url: &str, action: SourceActionArg, site: &str) -> Result<()> {
    let change = remote.appliance(url)?.change_source(site, action.into()).await.map_err(cli_error)?;
    println!(
        "site {site}: {}{}",
        if action == SourceActionArg::Ignore { "ignored" } else { "restored" },
        if change.changed { "" } else { " (it already was)" }
    );
    Ok(())
}

/// What `ccmart compare` compares.
pub struct CompareArgs {
    /// This appliance.
    pub url: String,
    /// The other one.
    pub peer: String,
    /// Its token.
    pub peer_token: Option<String>,
    /// One table.
    pub table: Option<String>,
    /// One day.
    pub day: Option<String>,
    /// Keys listed per differing partition.
    pub max_keys: usize,
}

/// `ccmart compare`: fails when the marts differ.
pub async fn compare(remote: &Remote, args: CompareArgs) -> Result<()> {
    let CompareArgs { url, peer, peer_token, table, day, max_keys } = args;
    let local = remote.endpoint(&url, remote.token.clone());
    let other = remote.endpoint(&peer, peer_token);
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
        for (what, keys) in [("only here", &d.only_local), ("only at peer", &d.only_peer), ("different", &d.different)]
        {
            if !keys.is_empty() {
                let shown: Vec<String> = keys.iter().take(max_keys).map(i64::to_string).collect();
                let more =
                    if keys.len() > max_keys { format!(" (+{} more)", keys.len() - max_keys) } else { String::new() };
                println!("  {what}: {}{more}", shown.join(" "));
            }
        }
    }
    bail!("the marts differ in {} of {} partitions", c.differences.len(), c.partitions)
}

/// `ccmart switchover`.
pub async fn switchover(
    remote: &Remote,
    from: &str,
    to: &str,
    to_token: Option<String>,
    timeout: Duration,
) -> Result<()> {
    let from = remote.endpoint(from, remote.token.clone());
    let to = remote.endpoint(to, to_token.or(remote.token.clone()));
    let started = std::time::Instant::now();
    let report = ccmart::replicate::switchover::switchover(&from, &to, timeout, |step| {
        eprintln!("  {step} ({:.1} s)", started.elapsed().as_secs_f64())
    })
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

/// What `ccmart bootstrap` copies from where.
pub struct BootstrapArgs {
    /// The running site.
    pub from: String,
    /// This appliance's config.
    pub config: PathBuf,
    /// A peer-role token of the running site.
    pub peer_token: Option<String>,
    /// MB/s.
    pub bandwidth_mbps: Option<f64>,
    /// The running site's name.
    pub peer_site: Option<String>,
}

/// `ccmart bootstrap`: fills this (stopped) appliance's data directory from a running site, as its standby.
pub async fn bootstrap(remote: &Remote, args: BootstrapArgs) -> Result<()> {
    let BootstrapArgs { from, config, peer_token, bandwidth_mbps, peer_site } = args;
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
    let mut peer = remote.endpoint(&from, peer_token.or(cfg.replication.peer_token.clone()));
    if peer.ca.is_none() {
        peer.ca = cfg.replication.peer_ca.clone();
    }
    let options = ccmart::replicate::sync::PullOptions {
        bandwidth: bandwidth_mbps.map(|m| (m * 1_000_000.0) as u64),
        progress: true,
    };
    let cache = ccmart::replicate::sync::HashCache::default();
    let trust = ccmart::replicate::sync::PeerTrust { site, epoch: fence.get().epoch };
    let r = ccmart::replicate::sync::pull_with(&peer, &trust, &dir.join("mart"), &store, &cache, &options).await?;
    println!(
        "bootstrapped from {from}: {} file(s), {} bytes, mart version {}; start the appliance: it continues as standby{}",
        r.files,
        r.bytes,
        r.mart_version.map_or("none".into(), |v| v.to_string()),
        if cfg.replication.peer_url.is_none() { " (set replication.peer_url so it keeps copying)" } else { "" }
    );
    Ok(())
}
