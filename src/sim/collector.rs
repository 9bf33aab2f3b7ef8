//! The collectors (ICON instances) between the simulated SIP Servers and the IDBs, with the faults that make
//! HA pairs necessary.
//!
//! Both collectors of a pair receive the same event stream from their site's SIP Server. Each writes what it
//! received into its own IDB through a persistent queue, and keeps the data source session control rows
//! (`G_DSS_GCC_PROVIDER`, `G_DSS_GLS_PROVIDER`) of that IDB up to date: a row per connection to the data source
//! and a heartbeat (`LEVENT_ITIME`) after every batch, meaning "every event before this time is written".
//!
//! Faults ([`FaultSpec`]) act on this layer, with the consequences the vendor documents: a collector that is
//! disconnected from its data source or down misses events (its IDB has a gap, visible in session control); a
//! collector that cannot reach its IDB queues and writes late with the original timestamps; a CTI link loss
//! holds back the call events of a site and releases them when the link returns (calls look stuck meanwhile);
//! a network partition between sites does the latter for every collector whose IDB is at the other site and
//! makes the remote IDBs unreachable for the appliance; a site failure takes a site's collectors and IDBs away.

use crate::source::{IdbValue, IdbWrite, WriteKind};
use serde::{Deserialize, Serialize};

/// Tables whose writes describe interactions (held back by a CTI link loss).
const INTERACTION_TABLES: &[&str] = &["G_CALL", "G_PARTY", "G_PARTY_HISTORY", "G_USERDATA_HISTORY"];
/// The session-control tables a collector with roles `gcc` and `gls` keeps.
const SESSION_CONTROL: &[&str] = &["G_DSS_GCC_PROVIDER", "G_DSS_GLS_PROVIDER"];

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The collector writing into IDB `target` loses its data source connection: its IDB misses the events.
    DataSourceDisconnect,
    /// The collector of IDB `target` crashes and restarts; its persistent queue is replayed after the restart.
    CollectorCrash,
    /// Like `collector_crash`, but the persistent queue is lost (rows not yet written are gone).
    CollectorCrashNoReplay,
    /// IDB `target` cannot be written by its collector, which queues and writes late with original timestamps.
    IdbUnreachable,
    /// The SIP Server of site `target` loses its CTI link: call events are held back and delivered on return.
    CtiLinkLoss,
    /// The network between the sites fails: collectors queue for IDBs at the other site, and the appliance cannot
    /// read IDBs at the other site.
    NetworkPartition,
    /// Site `target` is lost: its collectors stop and its IDBs become unreachable for good.
    SiteFailure,
}

/// One injected fault. Times are epoch seconds of simulated time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What happens.
    pub kind: FaultKind,
    /// An IDB name for collector and IDB faults, a site name for `cti_link_loss` and `site_failure`; unused for
    /// `network_partition`.
    #[serde(default)]
    pub target: String,
    /// When it starts, seconds after the start of the simulation.
    pub start_secs: i64,
    /// How long it lasts; 0 means until the end of the simulation.
    #[serde(default)]
    pub duration_secs: i64,
}

impl FaultSpec {
    fn active(&self, sim_start: i64, t: i64) -> bool {
        let start = sim_start + self.start_secs;
        t > start && (self.duration_secs <= 0 || t <= start + self.duration_secs)
    }
}

/// Where a collector and its IDB are.
#[derive(Debug, Clone)]
pub struct CollectorPlacement {
    /// The IDB it writes into.
    pub idb: String,
    /// Site of that IDB.
    pub idb_site: String,
    /// Site of the collector (that of the SIP Server it listens to).
    pub collector_site: String,
    /// Its configuration DBID (`ICON_DBID`).
    pub icon_dbid: i64,
}

#[derive(Debug)]
struct Collector {
    place: CollectorPlacement,
    /// Handle of the open session-control row while connected and running.
    session: Option<i64>,
    sessions: i64,
    queue: Vec<IdbWrite>,
    crashed: bool,
}

/// The collectors of every HA pair: turns each site's event stream into what each IDB receives.
#[derive(Debug)]
pub struct Collectors {
    sim_start: i64,
    faults: Vec<FaultSpec>,
    /// Per site (SIP Server): its collectors, one per IDB of the pair.
    sites: Vec<Vec<Collector>>,
    /// Per site: call events held back by a CTI link loss.
    held: Vec<Vec<IdbWrite>>,
    site_names: Vec<String>,
}

/// Name of simulated site `s` (0-based), as the configuration's `site` keys use it.
pub fn site_name(s: usize) -> String {
    format!("site{}", s + 1)
}

impl Collectors {
    /// Collectors for `placements[s]` = the IDBs of site `s`'s HA pair.
    pub fn new(sim_start: i64, placements: Vec<Vec<CollectorPlacement>>, faults: Vec<FaultSpec>) -> Self {
        let site_names = (0..placements.len()).map(site_name).collect();
        let held = placements.iter().map(|_| Vec::new()).collect();
        let sites = placements
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .map(|place| Collector { place, session: None, sessions: 0, queue: Vec::new(), crashed: false })
                    .collect()
            })
            .collect();
        Collectors { sim_start, faults, sites, held, site_names }
    }

    /// The faults, with absolute times (ground truth for tests).
    pub fn faults(&self) -> &[FaultSpec] {
        &self.faults
    }

    fn fault(&self, t: i64, kind: FaultKind, target: &str) -> bool {
        self.faults.iter().any(|f| f.kind == kind && (f.target == target) && f.active(self.sim_start, t))
    }

    fn partitioned(&self, t: i64) -> bool {
        self.faults.iter().any(|f| f.kind == FaultKind::NetworkPartition && f.active(self.sim_start, t))
    }

    /// Whether an appliance at `appliance_site` can read an IDB at `idb_site` at time `t`.
    pub fn readable(&self, idb_site: &str, appliance_site: &str, t: i64) -> bool {
        !self.fault(t, FaultKind::SiteFailure, idb_site) && (idb_site == appliance_site || !self.partitioned(t))
    }

    /// One batch: `events[s]` is what site `s`'s SIP Server reported up to `t`. Returns per site, per collector,
    /// the writes that reach its IDB now (in order).
    pub fn step(&mut self, from: i64, t: i64, events: Vec<Vec<IdbWrite>>) -> Vec<Vec<Vec<IdbWrite>>> {
        let mut out = Vec::with_capacity(self.sites.len());
        for (s, mut stream) in events.into_iter().enumerate() {
            let site = self.site_names.get(s).cloned().unwrap_or_default();
            if self.fault(t, FaultKind::CtiLinkLoss, &site) {
                let (calls, rest): (Vec<_>, Vec<_>) =
                    stream.into_iter().partition(|w| INTERACTION_TABLES.contains(&w.table));
                if let Some(h) = self.held.get_mut(s) {
                    h.extend(calls);
                }
                stream = rest;
            } else if let Some(h) = self.held.get_mut(s) {
                let mut released = std::mem::take(h);
                released.extend(stream);
                stream = released;
            }
            let states: Vec<(bool, bool, bool, bool)> = self
                .sites
                .get(s)
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            let p = &c.place;
                            let site_lost = self.fault(t, FaultKind::SiteFailure, &p.collector_site);
                            let crash = self.fault(t, FaultKind::CollectorCrash, &p.idb)
                                || self.fault(t, FaultKind::CollectorCrashNoReplay, &p.idb)
                                || site_lost;
                            let lose_queue = self.fault(t, FaultKind::CollectorCrashNoReplay, &p.idb) || site_lost;
                            let disconnected = self.fault(t, FaultKind::DataSourceDisconnect, &p.idb);
                            let writable = !self.fault(t, FaultKind::IdbUnreachable, &p.idb)
                                && !self.fault(t, FaultKind::SiteFailure, &p.idb_site)
                                && (p.idb_site == p.collector_site || !self.partitioned(t));
                            (crash, lose_queue, disconnected, writable)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut per_collector = Vec::new();
            for (c, (crash, lose_queue, disconnected, writable)) in
                self.sites.get_mut(s).into_iter().flatten().zip(states)
            {
                c.step(from, t, &stream, crash, lose_queue, disconnected);
                per_collector.push(if writable { std::mem::take(&mut c.queue) } else { Vec::new() });
            }
            out.push(per_collector);
        }
        out
    }
}

impl Collector {
    /// One batch of events in `(from, t]` for this collector. Fault boundaries fall on batch boundaries.
    fn step(&mut self, from: i64, t: i64, events: &[IdbWrite], crash: bool, lose_queue: bool, disconnected: bool) {
        if crash {
            if !self.crashed && lose_queue {
                self.queue.clear();
            }
            // A crash writes nothing: the open session-control row keeps its last heartbeat.
            self.crashed = true;
            self.session = None;
            return;
        }
        let restarted = std::mem::replace(&mut self.crashed, false);
        if disconnected {
            if let Some(h) = self.session.take() {
                let end =
                    vec![("DSCONN_ETIME", IdbValue::Timestamp(from)), ("LEVENT_ITIME", IdbValue::Timestamp(from))];
                self.session_update(h, end);
            }
            return;
        }
        if self.session.is_none() {
            self.sessions += 1;
            let h = self.sessions;
            let conn_type = if self.sessions == 1 || restarted { 1 } else { 2 };
            for table in SESSION_CONTROL {
                self.queue.push(IdbWrite {
                    table,
                    handle: h,
                    kind: WriteKind::Insert,
                    columns: vec![
                        ("ICON_DBID", IdbValue::Int(self.place.icon_dbid)),
                        ("DS_TYPE", IdbValue::Int(1)),
                        ("ICON_STIME", IdbValue::Timestamp(from)),
                        ("DSCONN_STIME", IdbValue::Timestamp(from)),
                        ("DSCONN_TYPE", IdbValue::Int(conn_type)),
                        ("DSCONN_SDSTIME", IdbValue::Timestamp(from)),
                        ("DSCONN_SDSTS", IdbValue::Int(from)),
                        ("FEVENT_ITIME", IdbValue::Timestamp(from)),
                        ("LEVENT_ITIME", IdbValue::Timestamp(from)),
                    ],
                });
            }
            self.session = Some(h);
        }
        self.queue.extend(events.iter().cloned());
        if let Some(h) = self.session {
            self.session_update(h, vec![("LEVENT_ITIME", IdbValue::Timestamp(t))]);
        }
    }

    fn session_update(&mut self, handle: i64, columns: Vec<(&'static str, IdbValue)>) {
        for table in SESSION_CONTROL {
            self.queue.push(IdbWrite { table, handle, kind: WriteKind::Update, columns: columns.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(idb: &str, idb_site: &str) -> CollectorPlacement {
        CollectorPlacement { idb: idb.into(), idb_site: idb_site.into(), collector_site: "site1".into(), icon_dbid: 1 }
    }

    fn call(handle: i64) -> IdbWrite {
        IdbWrite { table: "G_CALL", handle, kind: WriteKind::Insert, columns: vec![] }
    }

    fn calls(w: &[IdbWrite]) -> Vec<i64> {
        w.iter().filter(|w| w.table == "G_CALL").map(|w| w.handle).collect()
    }

    #[test]
    fn queue_replays_late_crash_without_replay_loses_it_disconnect_leaves_a_gap() {
        let fault = |kind, start_secs, duration_secs| FaultSpec { kind, target: "a".into(), start_secs, duration_secs };
        let run = |faults: Vec<FaultSpec>| {
            let mut c = Collectors::new(0, vec![vec![place("a", "site1"), place("b", "site2")]], faults);
            (1..=6)
                .map(|i| c.step(i * 10 - 10, i * 10, vec![vec![call(i)]]))
                .map(|o| calls(&o[0][0]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(vec![]), vec![vec![1], vec![2], vec![3], vec![4], vec![5], vec![6]]);
        assert_eq!(
            run(vec![fault(FaultKind::IdbUnreachable, 20, 20)]),
            vec![vec![1], vec![2], vec![], vec![], vec![3, 4, 5], vec![6]],
            "queued while unreachable, written late in order"
        );
        assert_eq!(
            run(vec![fault(FaultKind::DataSourceDisconnect, 20, 20)]),
            vec![vec![1], vec![2], vec![], vec![], vec![5], vec![6]],
            "a gap, then a new session"
        );
        assert_eq!(
            run(vec![fault(FaultKind::IdbUnreachable, 10, 30), fault(FaultKind::CollectorCrashNoReplay, 30, 10)]),
            vec![vec![1], vec![], vec![], vec![], vec![5], vec![6]],
            "the queue died with the collector"
        );
        assert_eq!(
            run(vec![fault(FaultKind::IdbUnreachable, 10, 30), fault(FaultKind::CollectorCrash, 30, 10)]),
            vec![vec![1], vec![], vec![], vec![], vec![2, 3, 5], vec![6]],
            "the queue survived the crash"
        );
    }

    #[test]
    fn partition_queues_remote_writes_and_cti_loss_holds_call_events() {
        let partition =
            FaultSpec { kind: FaultKind::NetworkPartition, target: String::new(), start_secs: 20, duration_secs: 20 };
        let mut c = Collectors::new(0, vec![vec![place("a", "site1"), place("b", "site2")]], vec![partition]);
        assert!(c.readable("site2", "site1", 10));
        assert!(!c.readable("site2", "site1", 30));
        assert!(c.readable("site1", "site1", 30));
        let out: Vec<_> = (1..=5).map(|i| c.step(i * 10 - 10, i * 10, vec![vec![call(i)]])).collect();
        assert_eq!(calls(&out[2][0][0]), vec![3], "local IDB keeps flowing");
        assert_eq!(calls(&out[2][0][1]), Vec::<i64>::new(), "remote IDB is queued");
        assert_eq!(calls(&out[4][0][1]), vec![3, 4, 5]);

        let cti = FaultSpec { kind: FaultKind::CtiLinkLoss, target: "site1".into(), start_secs: 10, duration_secs: 20 };
        let mut c = Collectors::new(0, vec![vec![place("a", "site1")]], vec![cti]);
        let out: Vec<_> = (1..=4).map(|i| c.step(i * 10 - 10, i * 10, vec![vec![call(i)]])).collect();
        assert_eq!(calls(&out[1][0][0]), Vec::<i64>::new());
        assert!(out[1][0][0].iter().any(|w| w.table == "G_DSS_GCC_PROVIDER"), "heartbeats go on");
        assert_eq!(calls(&out[3][0][0]), vec![2, 3, 4]);
    }
}
