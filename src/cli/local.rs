//! Commands that work on files only: a stopped appliance's data directory (export, digest), a config file
//! (check-config, check-idb), the contract and new tokens.

use anyhow::{Context, Result};
use ccmart::config::Config;
use ccmart::fault::FaultInjector;
use ccmart::model::wire;
use ccmart::query::QueryEngine;
use ccmart::serve;
use ccmart::staging::MartSnapshot;
use std::path::Path;

/// The role of a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// Queries, exports, reports, status.
    Reader,
    /// Everything a reader may, plus the admin API (promote, demote, sources, maintenance).
    Operator,
    /// The other site's appliance: fence, manifest, files, digests.
    Peer,
}

impl TokenRole {
    /// As the config spells it.
    fn as_str(self) -> &'static str {
        match self {
            TokenRole::Reader => "reader",
            TokenRole::Operator => "operator",
            TokenRole::Peer => "peer",
        }
    }
}

/// A stopped appliance's mart, opened for reading: its newest published version and a query engine over it.
pub struct Offline {
    /// The newest published version.
    pub snapshot: MartSnapshot,
    /// Queries at that version.
    pub engine: QueryEngine,
}

/// Opens a stopped appliance's data directory for offline commands (the appliance holds staging exclusively, so
/// this fails while it runs).
pub async fn open_offline(dir: &Path) -> Result<Offline> {
    let store = ccmart::staging::Store::open(&dir.join("staging.redb"), FaultInjector::disarmed())
        .context("opening staging (is the appliance still running?)")?;
    let snapshot =
        store.latest_snapshot()?.with_context(|| format!("{} holds no published mart version", dir.display()))?;
    let mart = ccmart::mart::Mart::open(&dir.join("mart")).await?;
    Ok(Offline { snapshot, engine: QueryEngine::new(mart, Default::default()) })
}

/// The file an export of `table` from `from` to `to` is written to.
pub fn export_file_name(table: &str, from: &Option<String>, to: &Option<String>) -> String {
    format!("{}_{}_{}.parquet", table.to_lowercase(), from.as_deref().unwrap_or("all"), to.as_deref().unwrap_or("all"))
}

fn mart_table(name: &str) -> Result<&'static ccmart::transform::schema::MartTable> {
    ccmart::transform::schema::mart_table(name).with_context(|| format!("no mart table '{name}'"))
}

/// `ccmart export --data-dir`.
pub async fn export_offline(
    dir: &Path,
    table: &str,
    from: Option<String>,
    to: Option<String>,
    out: &Path,
) -> Result<()> {
    let t = mart_table(table)?;
    let Offline { snapshot, engine } = open_offline(dir).await?;
    let export = serve::ParquetExport::write(&engine, &snapshot, t, from.as_deref(), to.as_deref()).await?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(export_file_name(table, &from, &to));
    let rows = export.rows;
    export.persist(&path).with_context(|| format!("writing {}", path.display()))?;
    println!("{} ({rows} rows, mart version {})", path.display(), snapshot.version);
    Ok(())
}

/// `ccmart digest --data-dir`.
pub async fn digest_offline(dir: &Path, table: Option<String>, day: Option<String>) -> Result<()> {
    let tables = match &table {
        Some(t) => vec![mart_table(t)?],
        None => Vec::new(),
    };
    let Offline { snapshot, engine } = open_offline(dir).await?;
    let digests = ccmart::query::digest::digests(&engine, &snapshot, &tables, day.as_deref()).await?;
    super::remote::print_digests(&wire::DigestList { mart_version: snapshot.version, digests });
    Ok(())
}

/// `ccmart token create`.
pub fn token_create(role: TokenRole, name: &str) {
    let role = role.as_str();
    let secret = serve::auth::new_token_secret();
    println!("# Token for {name} (role {role}). The secret is shown only now:");
    println!("#   {secret}");
    println!("# Add this to the config file and restart the appliance:");
    println!("[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"", serve::auth::hash_token(&secret));
}

/// `ccmart contract`.
pub fn contract() {
    for t in ccmart::source::contract::EXTRACTED_TABLES {
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
        println!("{} {}", t.name, cols.join(","));
    }
}

/// `ccmart check-idb`.
pub async fn check_idb(config: &Path) -> Result<()> {
    let cfg = Config::load(config)?;
    let idbs: Vec<(String, String)> = cfg.idbs.iter().map(|i| (i.name.clone(), i.url.clone())).collect();
    let outcome = ccmart::source::schema_check::check_idbs(&idbs).await;
    print!("{}", outcome.text);
    Ok(outcome.result()?)
}

/// `ccmart check-config`.
pub fn check_config(config: &Path) -> Result<()> {
    let cfg = Config::load(config)?;
    for o in ccmart::config::ENV_OVERRIDES.iter().filter(|o| std::env::var_os(o.var).is_some()) {
        println!("# {} from the environment ({})", o.key, o.var);
    }
    for w in cfg.warnings() {
        println!("# warning: {w}");
    }
    println!("# {}: valid", config.display());
    print!("{}", cfg.to_toml());
    Ok(())
}
