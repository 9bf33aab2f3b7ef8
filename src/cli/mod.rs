//! The bodies of the `ccmart` commands (bin-only): `main.rs` parses and dispatches, each command is a function here.
//! [`run`] runs an appliance (or the demo, or the simulator); [`remote`] talks to a running appliance through the
//! one peer client ([`ccmart::replicate::client`]); [`local`] works on files (a stopped appliance's data
//! directory, a config, the contract); [`lake`] exports one mart version of every table as plain Parquet
//! (`ccmart export --snapshot`), from either.

pub mod lake;
pub mod local;
pub mod remote;
pub mod run;

use anyhow::Result;
use ccmart::replicate::client::{self, PeerClient, PeerError};
use ccmart::replicate::Endpoint;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of `ccmart run --exit-when-idle` when it finished but data is held back: a pair waits for an IDB
/// (documented in docs/operations.md). Errors exit with 1.
pub const EXIT_DATA_HELD: u8 = 3;

/// `ccmart run --exit-when-idle` loaded what it could, but data waits for an IDB of a pair: the mart is not
/// complete, and a script must not treat it as such.
#[derive(Debug)]
pub struct DataHeld(pub String);

impl std::fmt::Display for DataHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataHeld {}

/// How the command line reaches a running appliance: the global `--token` and `--cacert`.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// Bearer token sent to the appliance named by `--url`.
    pub token: Option<String>,
    /// CA to trust for https:// URLs, besides the system's roots.
    pub cacert: Option<PathBuf>,
}

impl Remote {
    /// The appliance at `url`, called with `token`, trusting `--cacert`.
    pub fn endpoint(&self, url: &str, token: Option<String>) -> Endpoint {
        Endpoint { url: url.to_string(), token, ca: self.cacert.clone() }
    }

    /// A client for the appliance at `url` with `--token`.
    pub fn appliance(&self, url: &str) -> Result<PeerClient> {
        PeerClient::new(&self.endpoint(url, self.token.clone()), client::CLI_TIMEOUT).map_err(cli_error)
    }
}

/// A failed call to the appliance, worded for the command line: the cause stays in the chain (so [`hint`] finds a
/// connection failure), a 401 says how to pass a token, another refusal shows the appliance's message.
pub fn cli_error(e: PeerError) -> anyhow::Error {
    match e {
        PeerError::Unreachable { url, source } => {
            anyhow::Error::new(source).context(format!("cannot reach the appliance at {url}"))
        }
        PeerError::Status { status: 401, .. } => anyhow::anyhow!(
            "{}: the appliance needs a token; pass --token SECRET or set CCMART_TOKEN (`ccmart token create`)",
            client::status_text(&401)
        ),
        PeerError::Status { status, body, .. } => anyhow::anyhow!("{}: {body}", client::status_text(&status)),
        e => e.into(),
    }
}

/// How the process ends after `result`: 0, [`EXIT_DATA_HELD`], the contract check's code, or 1 with the error
/// and a hint on stderr.
pub fn exit_code(result: Result<()>) -> ExitCode {
    let Err(e) = result else { return ExitCode::SUCCESS };
    if let Some(held) = e.downcast_ref::<DataHeld>() {
        eprintln!("held back: {held}");
        return ExitCode::from(EXIT_DATA_HELD);
    }
    if let Some(problems) = e.downcast_ref::<ccmart::source::schema_check::ContractProblems>() {
        eprintln!("error: {problems}");
        return ExitCode::from(ccmart::source::schema_check::EXIT_CONTRACT_PROBLEM as u8);
    }
    eprintln!("error: {e:#}");
    if let Some(h) = hint(&e) {
        eprintln!("hint: {h}");
    }
    ExitCode::FAILURE
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

/// `--day`, `--from`, `--to`: a date like 2026-11-24, checked when the command line is parsed.
pub fn parse_day(text: &str) -> Result<String, String> {
    text.parse::<ccmart::model::Day>().map(|d| d.to_string()).map_err(|e| e.to_string())
}

/// `--url`, `--peer`, `--from`, `--to` of the remote commands: an http:// or https:// base URL, checked when the
/// command line is parsed.
pub fn parse_url(text: &str) -> Result<String, String> {
    client::check_base(text.trim_end_matches('/'))
        .map_err(|e| format!("{e}; use http://HOST:PORT or https://HOST:PORT"))?;
    Ok(text.to_string())
}
