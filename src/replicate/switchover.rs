//! Planned switchover: the standby becomes active and the active becomes standby, with nothing lost and no moment
//! where both write.
//!
//! The order makes it safe:
//! 1. the active site steps down: it finishes the cycle in flight, stops writing, and reports its last mart
//!    version V (still at epoch E);
//! 2. the standby copies up to exactly V (its replication runs every cycle; the files of V are verified as usual);
//! 3. the standby is promoted to epoch E + 1; the old active hears of it on its next cycle and copies from it.
//!
//! Between 1 and 3 neither site writes; IDB data keeps accumulating in the IDBs and is extracted by the new active
//! from where the mart stands. If step 2 does not finish in time, nothing has changed but that both are standby:
//! the error says how to go back (promote the old active) or on (promote the standby anyway).

use super::client::{self, PeerClient, PeerError};
use super::fencing::{Fence, Role};
use super::Endpoint;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a switchover stopped, with what to do next.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SwitchoverError {
    /// An appliance could not be reached or refused a call; `hint` says what to do about a refusal.
    #[error("{error}{hint}")]
    Site {
        /// The call that failed.
        #[source]
        error: PeerError,
        /// What to do next (empty when there is nothing particular to say).
        hint: &'static str,
    },
    /// The two sites are not an active and its standby.
    #[error("{0}")]
    NotAPair(String),
    /// The standby did not copy the last version in time.
    #[error(
        "{to} did not reach mart version {version} within {waited_secs} s (it has {reached:?}); both sites are standby \
         now and nothing is lost. Go back: `ccmart promote --url {from}`; or go on once it has caught up: \
         `ccmart promote --url {to}`"
    )]
    CatchUpTimeout {
        /// The site that stepped down.
        from: String,
        /// The site that was to take over.
        to: String,
        /// The version it had to reach.
        version: u64,
        /// The version it holds.
        reached: Option<u64>,
        /// Seconds waited.
        waited_secs: u64,
    },
}

impl From<PeerError> for SwitchoverError {
    fn from(error: PeerError) -> Self {
        let hint = match error.status() {
            Some(401 | 403) => " (an operator token of that site is needed: --token, or --to-token for the standby)",
            _ => "",
        };
        SwitchoverError::Site { error, hint }
    }
}

/// What a switchover did and how long each step took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverReport {
    /// The new active site's fence (epoch E + 1).
    pub fence: Fence,
    /// The mart version both sites held at the swap.
    pub mart_version: Option<u64>,
    /// Milliseconds the old active took to finish its cycle and step down.
    pub step_down_ms: u64,
    /// Milliseconds the standby took to copy the last version.
    pub catch_up_ms: u64,
    /// Milliseconds of the promotion.
    pub promote_ms: u64,
}

/// Switches the roles of `from` (active) and `to` (its standby); `step` is told each step as it starts.
pub async fn switchover(
    from: &Endpoint,
    to: &Endpoint,
    timeout: Duration,
    mut step: impl FnMut(&str),
) -> Result<SwitchoverReport, SwitchoverError> {
    let limit = timeout.max(client::SWITCHOVER_MIN_TIMEOUT);
    let (active, standby) = (PeerClient::new(from, limit)?, PeerClient::new(to, limit)?);
    let a = active.fence().await?;
    let b = standby.fence().await?;
    if a.fence.role != Role::Active {
        return Err(SwitchoverError::NotAPair(format!(
            "{} (site {}) is not active (it is {} at epoch {}): a switchover starts at the active site",
            from.url,
            a.site,
            a.fence.role.as_str(),
            a.fence.epoch
        )));
    }
    // Promotion gives the standby epoch + 1; only from the active's own epoch does that outrank the active.
    if b.fence.role != Role::Standby || b.fence.epoch != a.fence.epoch {
        return Err(SwitchoverError::NotAPair(format!(
            "{} (site {}) is {} at epoch {}, not the standby of {} (epoch {}); a standby adopts its active's epoch              when it checks its peer (replication.peer_url), so check that and retry after its next cycle",
            to.url,
            b.site,
            b.fence.role.as_str(),
            b.fence.epoch,
            from.url,
            a.fence.epoch
        )));
    }

    step(&format!("site {} finishes its cycle and steps down", a.site));
    let t = Instant::now();
    let down = active.demote().await?;
    let step_down_ms = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    if let Some(version) = down.mart_version {
        step(&format!("site {} copies up to mart version {version}", b.site));
        loop {
            let reached = standby.status().await?.mart_version;
            if reached.is_some_and(|r| r >= version) {
                break;
            }
            if t.elapsed() >= timeout {
                return Err(SwitchoverError::CatchUpTimeout {
                    from: from.url.clone(),
                    to: to.url.clone(),
                    version,
                    reached,
                    waited_secs: t.elapsed().as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let catch_up_ms = t.elapsed().as_millis() as u64;

    step(&format!("site {} becomes active", b.site));
    let t = Instant::now();
    let fence = standby.promote().await?;
    Ok(SwitchoverReport {
        fence,
        mart_version: down.mart_version,
        step_down_ms,
        catch_up_ms,
        promote_ms: t.elapsed().as_millis() as u64,
    })
}
