//! Roles and epochs: which appliance may write its mart.
//!
//! Exactly one appliance of a pair of sites is `active` (extracts, transforms, publishes); the other is `standby`
//! (serves reads, writes nothing). Every change of role is tied to an epoch that only grows: promotion makes a
//! standby active at epoch + 1. An appliance that learns of a peer with a higher epoch stops writing at once and
//! becomes standby at that epoch; two appliances that find each other active at the *same* epoch (a partition
//! healed after both were promoted, or a misconfiguration) both stop writing and report split-brain, so their marts
//! can never diverge silently — an operator promotes one of them, which raises the epoch and settles it.

use serde::{Deserialize, Serialize};

pub use crate::model::fence::{Fence, PeerFence, Role, MAX_EPOCH};

/// `[replication]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSettings {
    /// Role of a new appliance (an empty data directory); afterwards the persisted role and epoch rule.
    pub initial_role: Role,
    /// The other site's appliance (`http(s)://host:port`); its role and epoch are checked every cycle.
    pub peer_url: Option<String>,
    /// Token this appliance presents to the peer (a `peer`-role token configured there).
    pub peer_token: Option<String>,
    /// PEM file of the CA (or self-signed certificate) to trust for an `https://` `peer_url`, besides the system's
    /// roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_ca: Option<std::path::PathBuf>,
    /// With a `peer_url`, the active writes a staging checkpoint after a publish at most this often (0: after
    /// every publish); the standby copies it with the mart and resumes extraction from it when promoted.
    pub checkpoint_interval_secs: u64,
    /// The site the peer must report (its `[appliance] site`). Required with `peer_url`: every fence answer and
    /// manifest from another site is refused, whatever it says, and nothing changes here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_site: Option<String>,
    /// Accept a plain `http://` `peer_url` to a host that is not loopback (unencrypted, unauthenticated line between
    /// the sites). Off: such a URL is refused by `check-config` and at run time.
    pub allow_insecure_http: bool,
}

/// Default seconds between staging checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 300;

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            initial_role: Role::Active,
            peer_url: None,
            peer_token: None,
            peer_ca: None,
            checkpoint_interval_secs: DEFAULT_CHECKPOINT_INTERVAL_SECS,
            peer_site: None,
            allow_insecure_http: false,
        }
    }
}

impl ReplicationSettings {
    /// The first problem of these settings for an appliance at `own_site`: (dotted key, what is wrong and what to
    /// do). `check-config` refuses it; the pipeline refuses to talk to such a peer.
    pub fn problem(&self, own_site: &str) -> Option<(&'static str, String)> {
        let url = self.peer_url.as_deref()?;
        if let Some(problem) = self.peer_url_problem(url) {
            return Some(("replication.peer_url", problem));
        }
        match self.peer_site.as_deref().map(str::trim) {
            None | Some("") => Some((
                "replication.peer_site",
                format!(
                    "required with peer_url: the site name the appliance at {url} reports (its [appliance] site), \
                     e.g. peer_site = \"site2\"; its answers are refused unless they come from that site"
                ),
            )),
            Some(site) if site == own_site => Some((
                "replication.peer_site",
                format!("'{site}' is this appliance's own site (appliance.site); name the other site"),
            )),
            Some(_) => None,
        }
    }

    /// Why `url` may not be used as the peer's URL: not http(s), or plain http to a host other than loopback
    /// without `allow_insecure_http`.
    pub fn peer_url_problem(&self, url: &str) -> Option<String> {
        let parsed = match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            _ => return Some(format!("'{url}' is not an http(s) URL like https://site2:8080")),
        };
        let loopback = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        (parsed.scheme() == "http" && !loopback && !self.allow_insecure_http).then(|| {
            format!(
                "'{url}' is plain HTTP to another host: anyone on the line could answer as the peer. Use https:// \
                 (with replication.peer_ca for a private CA), or set replication.allow_insecure_http = true to \
                 accept it"
            )
        })
    }
}

/// Why a fence answer from the peer is not believed: another site than `expected` (`replication.peer_site`), or
/// an epoch beyond [`MAX_EPOCH`]. The message names the field.
pub fn check_peer_fence(peer: &PeerFence, expected: &str) -> Result<(), String> {
    if peer.site != expected {
        return Err(format!(
            "the peer answered as site '{}', but replication.peer_site is '{expected}': answer refused, nothing \
             changed",
            peer.site.chars().take(200).collect::<String>()
        ));
    }
    if peer.fence.epoch > MAX_EPOCH {
        return Err(format!(
            "fence.epoch {} from site {expected} is out of range (at most {MAX_EPOCH}): answer refused, nothing \
             changed",
            peer.fence.epoch
        ));
    }
    Ok(())
}

/// The fence this appliance must move to, given its own and its peer's, or `None` to stay.
pub fn after_hearing(local: &Fence, peer: &PeerFence, now: i64) -> Option<Fence> {
    let p = &peer.fence;
    if p.epoch > local.epoch {
        let reason = match p.role {
            Role::Active => format!("site {} is active at epoch {}", peer.site, p.epoch),
            Role::Standby => format!("site {} is at the higher epoch {}", peer.site, p.epoch),
        };
        return Some(Fence { role: Role::Standby, epoch: p.epoch, since: now, reason, split_brain: false });
    }
    // Both active at one epoch — or the peer already stopped over exactly that: nobody may go on writing.
    if p.epoch == local.epoch && local.role == Role::Active && (p.role == Role::Active || p.split_brain) {
        let reason = format!(
            "split-brain: site {} is also active at epoch {}; both stopped writing — promote one site",
            peer.site, p.epoch
        );
        return Some(Fence { role: Role::Standby, epoch: local.epoch, since: now, reason, split_brain: true });
    }
    None
}

/// The fence after promoting `current`: active at the next epoch. `None` when it already is active.
/// `None` too when the epoch cannot grow (it is at [`MAX_EPOCH`]).
pub fn promoted(current: &Fence, by: &str, now: i64) -> Option<Fence> {
    let epoch = current.epoch.checked_add(1).filter(|e| *e <= MAX_EPOCH)?;
    (current.role == Role::Standby).then(|| Fence {
        role: Role::Active,
        epoch,
        since: now,
        reason: format!("promoted by {by}"),
        split_brain: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(role: Role, epoch: u64) -> Fence {
        Fence { role, epoch, since: 0, reason: String::new(), split_brain: false }
    }
    fn peer(role: Role, epoch: u64) -> PeerFence {
        PeerFence { site: "site2".into(), fence: f(role, epoch) }
    }

    #[test]
    fn a_higher_epoch_fences_and_an_equal_active_epoch_is_split_brain() {
        let demoted = after_hearing(&f(Role::Active, 1), &peer(Role::Active, 2), 5).unwrap();
        assert_eq!((demoted.role, demoted.epoch), (Role::Standby, 2));
        let split = after_hearing(&f(Role::Active, 3), &peer(Role::Active, 3), 5).unwrap();
        assert_eq!((split.role, split.epoch), (Role::Standby, 3));
        assert!(split.reason.contains("split-brain"));
        assert_eq!(after_hearing(&f(Role::Active, 3), &peer(Role::Standby, 3), 5), None);
        let stopped = PeerFence { site: "site2".into(), fence: split };
        let both = after_hearing(&f(Role::Active, 3), &stopped, 5).unwrap();
        assert!(both.split_brain && both.role == Role::Standby, "the second site stops too");
        assert_eq!(after_hearing(&f(Role::Active, 3), &peer(Role::Active, 2), 5), None, "a lower epoch is ignored");
        assert_eq!(after_hearing(&f(Role::Standby, 2), &peer(Role::Active, 2), 5), None);
        let p = promoted(&f(Role::Standby, 2), "ops", 9).unwrap();
        assert_eq!((p.role, p.epoch), (Role::Active, 3));
        assert_eq!(promoted(&p, "ops", 9), None);
        assert_eq!(promoted(&f(Role::Standby, MAX_EPOCH), "ops", 9), None, "the epoch cannot grow past its limit");
        assert_eq!(promoted(&f(Role::Standby, u64::MAX), "ops", 9), None, "no overflow");
    }

    #[test]
    fn peer_answers_from_another_site_or_beyond_the_epoch_limit_are_refused() {
        assert_eq!(check_peer_fence(&peer(Role::Active, 2), "site2"), Ok(()));
        let e = check_peer_fence(&peer(Role::Active, 2), "site3").unwrap_err();
        assert!(e.contains("'site2'") && e.contains("replication.peer_site is 'site3'"), "{e}");
        let e = check_peer_fence(&peer(Role::Active, u64::MAX), "site2").unwrap_err();
        assert!(e.contains("fence.epoch 18446744073709551615"), "{e}");
        let mut shared = f(Role::Active, 1);
        assert_eq!(after_hearing(&shared, &peer(Role::Active, MAX_EPOCH), 0).map(|x| x.epoch), Some(MAX_EPOCH));
        shared.epoch = MAX_EPOCH;
        assert_eq!(promoted(&Fence { role: Role::Standby, ..shared }, "ops", 0), None);
    }

    #[test]
    fn plain_http_is_only_for_loopback_unless_allowed() {
        let mut s = ReplicationSettings { peer_site: Some("site2".into()), ..Default::default() };
        for (url, ok) in [
            ("https://site2.example:8080", true),
            ("http://127.0.0.1:8080", true),
            ("http://[::1]:8080", true),
            ("http://localhost:8080", true),
            ("http://site2.example:8080", false),
            ("http://10.1.2.3:8080", false),
            ("ftp://site2.example", false),
            ("not a url", false),
        ] {
            s.peer_url = Some(url.into());
            assert_eq!(s.problem("site1").is_none(), ok, "{url}: {:?}", s.problem("site1"));
        }
        s.peer_url = Some("http://site2.example:8080".into());
        assert_eq!(s.problem("site1").map(|p| p.0), Some("replication.peer_url"));
        s.allow_insecure_http = true;
        assert_eq!(s.problem("site1"), None);
        s.peer_site = None;
        assert_eq!(s.problem("site1").map(|p| p.0), Some("replication.peer_site"), "required with peer_url");
        s.peer_site = Some("site1".into());
        assert!(s.problem("site1").is_some_and(|p| p.1.contains("own site")));
        assert_eq!(ReplicationSettings::default().problem("site1"), None, "no peer, nothing to check");
    }
}

/// The fence shared by the pipeline (which obeys it and reacts to the peer) and the HTTP server (promotion);
/// every change is persisted before it is visible.
#[derive(Debug, Clone)]
pub struct SharedFence {
    current: std::sync::Arc<std::sync::RwLock<Fence>>,
    store: std::sync::Arc<crate::staging::Store>,
    /// Held by the pipeline while it writes (an active cycle) and by a planned demotion, so a demotion waits for
    /// the cycle in flight and the version it reports is the last one this site writes.
    writing: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SharedFence {
    /// The fence persisted in `store`, or `initial` (persisted now) for a new data directory.
    pub fn load(
        store: std::sync::Arc<crate::staging::Store>,
        initial: Role,
        now: i64,
    ) -> Result<Self, crate::staging::StagingError> {
        let fence = match store.fence()? {
            Some(f) => f,
            None => {
                let reason = "initial role from the configuration".to_string();
                let f = Fence { role: initial, epoch: 1, since: now, reason, split_brain: false };
                store.set_fence(&f)?;
                f
            }
        };
        Ok(SharedFence {
            current: std::sync::Arc::new(std::sync::RwLock::new(fence)),
            store,
            writing: std::sync::Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The fence now.
    pub fn get(&self) -> Fence {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when this appliance may write its mart.
    pub fn is_active(&self) -> bool {
        self.get().role == Role::Active
    }

    fn replace(&self, next: Fence) -> Result<Fence, crate::staging::StagingError> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        self.store.set_fence(&next)?;
        *guard = next.clone();
        Ok(next)
    }

    /// Promotes a standby (epoch + 1); `Ok(None)` when already active.
    pub fn promote(&self, by: &str, now: i64) -> Result<Option<Fence>, crate::staging::StagingError> {
        match promoted(&self.get(), by, now) {
            Some(next) => {
                tracing::warn!(epoch = next.epoch, by, "promoted to active");
                self.replace(next).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Exclusive right to write the mart while the guard lives: the pipeline takes it for a cycle, [`demote`]
    /// (`Self::demote`) waits for it.
    pub async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// Planned switchover, first step: the active site finishes the cycle in flight, then stops writing and becomes
    /// standby at the same epoch (the other site is then promoted to epoch + 1). `Ok(None)` when not active.
    pub async fn demote(&self, by: &str, now: i64) -> Result<Option<Fence>, crate::staging::StagingError> {
        let _writing = self.writing().await;
        let current = self.get();
        if current.role != Role::Active {
            return Ok(None);
        }
        let next = Fence {
            role: Role::Standby,
            epoch: current.epoch,
            since: now,
            reason: format!("stepped down for a planned switchover by {by}"),
            split_brain: false,
        };
        tracing::warn!(epoch = next.epoch, by, "stepped down: now standby");
        self.replace(next).map(Some)
    }

    /// Applies what the peer said (see [`after_hearing`]); returns the new fence when it changed. An epoch beyond
    /// [`MAX_EPOCH`] changes nothing (callers check the answer first with [`check_peer_fence`]).
    pub fn hear(&self, peer: &PeerFence, now: i64) -> Result<Option<Fence>, crate::staging::StagingError> {
        if peer.fence.epoch > MAX_EPOCH {
            return Ok(None);
        }
        match after_hearing(&self.get(), peer, now) {
            Some(next) => {
                tracing::error!(epoch = next.epoch, reason = next.reason, "stopped writing: now standby");
                self.replace(next).map(Some)
            }
            None => Ok(None),
        }
    }
}
