//! When a pair's data may be transformed: delay while an IDB is behind, proceed after the stuck threshold,
//! and which late data is still merged in when the IDB comes back.
//!
//! All times here are *data* times: the collectors' heartbeats in session control, not the appliance's clock.
//! That keeps the decisions a pure function of the IDB contents (two sites decide alike, a test with simulated
//! time behaves like production), and an outage is measured as the gap between the newest heartbeat any IDB
//! has and the heartbeat of the IDB that stopped.

use super::SessionTimeline;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The vendor's `extract-data-stuck-threshold` default: 8 hours and 1 minute.
pub const DEFAULT_STUCK_THRESHOLD_SECS: i64 = 28_860;
/// The vendor's `max-call-duration` default.
pub const DEFAULT_MAX_CALL_DURATION_SECS: i64 = 3_600;
/// Length of one merge decision slice (one `DATE_TIME` interval).
pub const DEFAULT_SLICE_SECS: i64 = 900;

/// `[merge]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeSettings {
    /// How far (seconds of data time) an IDB may fall behind the newest IDB before the merge stops waiting for it
    /// and proceeds with what the other IDB of the pair has (`extract-data-stuck-threshold`).
    pub stuck_threshold_secs: i64,
    /// How old late data may be and still be merged in when a stuck IDB comes back, seconds before the newest
    /// heartbeat at that moment. Unset (the default): everything the IDB still holds. Set it to
    /// `stuck_threshold_secs` for the vendor's behaviour.
    pub backfill_window_secs: Option<i64>,
    /// An interaction the source never closed is closed (and flagged `stuck`) once it is this old and the pair is
    /// ready past that point (`max-call-duration`). A later real end replaces it.
    pub max_call_duration_secs: i64,
    /// Length of one slice in `ccmart_merge_decisions`.
    pub slice_secs: i64,
    /// Sites whose IDBs the merge does not wait for (disaster recovery). Also settable at run time with
    /// `ccmart sources ignore SITE`.
    pub ignore_sources: Vec<String>,
}

impl Default for MergeSettings {
    fn default() -> Self {
        MergeSettings {
            stuck_threshold_secs: DEFAULT_STUCK_THRESHOLD_SECS,
            backfill_window_secs: None,
            max_call_duration_secs: DEFAULT_MAX_CALL_DURATION_SECS,
            slice_secs: DEFAULT_SLICE_SECS,
            ignore_sources: Vec::new(),
        }
    }
}

/// What the merge remembers about a pair between cycles (persisted in staging).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairState {
    /// IDB → the data-time range `[from, to)` the merge has proceeded over without it because it was stuck.
    pub proceeding_without: BTreeMap<String, (i64, i64)>,
    /// IDB → ranges whose late rows from that IDB are not merged (older than the backfill window when the IDB
    /// came back). Empty with the default window.
    pub dropped: BTreeMap<String, Vec<(i64, i64)>>,
    /// The highest `ready_through` reached so far.
    pub decided_through: Option<i64>,
}

impl PairState {
    /// Whether late rows of `idb` for a group starting at `start` are dropped.
    pub fn drops(&self, idb: &str, start: i64) -> bool {
        self.dropped.get(idb).is_some_and(|r| r.iter().any(|(a, b)| *a <= start && start < *b))
    }
}

/// An IDB the pair is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wait {
    /// IDB name.
    pub idb: String,
    /// Its newest heartbeat (data time): it has been behind since then.
    pub since: i64,
    /// Seconds (data time) it is behind the newest heartbeat of any IDB.
    pub behind_secs: i64,
    /// Behind by more than the stuck threshold: the merge proceeds without it.
    pub stuck: bool,
}

/// Where a pair stands in this cycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairProgress {
    /// Pair name.
    pub pair: String,
    /// Its IDBs in configured order.
    pub members: Vec<String>,
    /// Groups whose events all lie before this time may be transformed. `None`: no IDB of the pair has session
    /// control, nothing is held back.
    pub ready_through: Option<i64>,
    /// IDBs that are behind (waited for, or stuck and proceeded without).
    pub waits: Vec<Wait>,
    /// IDBs not waited for because their site is ignored.
    pub ignored: Vec<String>,
}

/// Computes a pair's progress and updates its persisted state. `members` are (IDB, site) in configured order;
/// `clock` is the newest heartbeat of any IDB.
pub fn pair_progress(
    pair: &str,
    members: &[(String, String)],
    timelines: &BTreeMap<String, SessionTimeline>,
    ignored_sites: &BTreeSet<String>,
    clock: Option<i64>,
    settings: &MergeSettings,
    state: &mut PairState,
) -> PairProgress {
    let mut ready: Option<i64> = None;
    let mut any_session_control = false;
    let mut waits = Vec::new();
    let mut ignored = Vec::new();
    let mut stuck_members = Vec::new();
    for (idb, site) in members {
        let t = timelines.get(idb);
        any_session_control |= t.is_some_and(|t| t.open.is_some());
        if ignored_sites.contains(site) {
            ignored.push(idb.clone());
            continue;
        }
        let (Some(t), Some(clock)) = (t, clock) else { continue };
        let (Some(true), Some(known)) = (t.open, t.known_through) else {
            // Disconnected (or shut down): session control says nothing more will arrive for the past.
            recover(idb, clock, settings, state);
            continue;
        };
        let stuck = clock - known > settings.stuck_threshold_secs;
        if known < clock {
            waits.push(Wait { idb: idb.clone(), since: known, behind_secs: clock - known, stuck });
        }
        if stuck {
            // Past the threshold the merge stops waiting for it and proceeds with what the others have.
            stuck_members.push((idb.clone(), known));
            continue;
        }
        recover(idb, clock, settings, state);
        ready = Some(ready.map_or(known, |r: i64| r.min(known)));
    }
    let ready_through = match ready {
        Some(r) => Some(r),
        None if any_session_control => clock,
        None => None,
    };
    for (idb, known) in stuck_members {
        let to = ready_through.unwrap_or(known).max(known);
        let range = state.proceeding_without.entry(idb).or_insert((known, to));
        range.1 = range.1.max(to);
    }
    if let Some(r) = ready_through {
        state.decided_through = Some(state.decided_through.map_or(r, |d| d.max(r)));
    }
    PairProgress {
        pair: pair.to_string(),
        members: members.iter().map(|(m, _)| m.clone()).collect(),
        ready_through,
        waits,
        ignored,
    }
}

/// An IDB the merge proceeded without is current again: fix which part of its late data is too old to merge.
fn recover(idb: &str, clock: i64, settings: &MergeSettings, state: &mut PairState) {
    let Some((from, to)) = state.proceeding_without.remove(idb) else { return };
    let Some(window) = settings.backfill_window_secs else { return };
    let until = to.min(clock - window);
    if from < until {
        state.dropped.entry(idb.to_string()).or_default().push((from, until));
    }
}

/// One row of `ccmart_merge_decisions`: which IDB a pair's slice is taken from, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceDecision {
    /// Pair name.
    pub pair: String,
    /// Slice start (epoch seconds).
    pub slice_start: i64,
    /// Slice end (exclusive).
    pub slice_end: i64,
    /// The IDB the slice's interactions come from (None: each from its most complete copy, or waiting).
    pub chosen_idb: Option<String>,
    /// `decided` or `waiting`.
    pub state: String,
    /// IDBs whose collector was connected for the whole slice, comma-separated.
    pub complete_idbs: String,
    /// Why.
    pub reason: String,
}

/// The decisions of a pair's slices in `[from, to)` (aligned to `settings.slice_secs`).
pub fn slice_decisions(
    progress: &PairProgress,
    timelines: &BTreeMap<String, SessionTimeline>,
    state: &PairState,
    settings: &MergeSettings,
    from: i64,
    to: i64,
) -> Vec<SliceDecision> {
    let width = settings.slice_secs.max(60);
    let mut out = Vec::new();
    let mut start = from - from.rem_euclid(width);
    while start < to {
        let end = start + width;
        let complete: Vec<&String> = progress
            .members
            .iter()
            .filter(|m| timelines.get(*m).is_some_and(|t| t.open.is_some() && t.covers(start, end - 1)))
            .collect();
        let waiting = progress.ready_through.is_some_and(|r| end > r);
        let chosen = if waiting { None } else { complete.first().map(|s| (*s).clone()) };
        let mut reason = if waiting {
            let behind: Vec<String> = progress
                .waits
                .iter()
                .filter(|w| !w.stuck)
                .map(|w| format!("{} (behind since {})", w.idb, crate::source::format_timestamp(w.since)))
                .collect();
            format!("waiting for {}", if behind.is_empty() { "the IDBs to advance".into() } else { behind.join(", ") })
        } else if complete.is_empty() {
            "no IDB was connected for the whole slice: each interaction from its most complete copy".to_string()
        } else if complete.len() == progress.members.len() && complete.len() > 1 {
            "every IDB complete: first in configured order".to_string()
        } else if progress.members.len() == 1 {
            "only IDB of the pair (no redundancy)".to_string()
        } else {
            format!("only {} was connected for the whole slice", join(&complete))
        };
        for (idb, (a, b)) in &state.proceeding_without {
            if start < *b && end > *a {
                reason.push_str(&format!("; proceeded without {idb} after the stuck threshold"));
            }
        }
        for (idb, ranges) in &state.dropped {
            if ranges.iter().any(|(a, b)| start < *b && end > *a) {
                reason.push_str(&format!("; late data of {idb} older than the backfill window not merged"));
            }
        }
        for idb in &progress.ignored {
            reason.push_str(&format!("; {idb} ignored"));
        }
        out.push(SliceDecision {
            pair: progress.pair.clone(),
            slice_start: start,
            slice_end: end,
            chosen_idb: chosen,
            state: if waiting { "waiting" } else { "decided" }.to_string(),
            complete_idbs: join(&complete),
            reason,
        });
        start = end;
    }
    out
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(known: i64) -> SessionTimeline {
        SessionTimeline { covered: vec![(0, known)], open: Some(true), known_through: Some(known) }
    }

    #[test]
    fn waits_then_proceeds_after_threshold_then_drops_only_beyond_the_window() {
        let members = vec![("a".to_string(), "s1".to_string()), ("b".to_string(), "s2".to_string())];
        let settings =
            MergeSettings { stuck_threshold_secs: 100, backfill_window_secs: Some(100), ..Default::default() };
        let mut state = PairState::default();
        let none = BTreeSet::new();
        let tl = |a, b| BTreeMap::from([("a".to_string(), open(a)), ("b".to_string(), open(b))]);
        // b behind by 50: wait for it.
        let p = pair_progress("p", &members, &tl(1050, 1000), &none, Some(1050), &settings, &mut state);
        assert_eq!(p.ready_through, Some(1000));
        assert_eq!(p.waits, vec![Wait { idb: "b".into(), since: 1000, behind_secs: 50, stuck: false }]);
        // b behind by 400: stuck, proceed with a alone.
        let p = pair_progress("p", &members, &tl(1400, 1000), &none, Some(1400), &settings, &mut state);
        assert_eq!(p.ready_through, Some(1400));
        assert_eq!(state.proceeding_without.get("b"), Some(&(1000, 1400)));
        // b back at 1500: its late data before 1500 - 100 = 1400 is beyond the window.
        let p = pair_progress("p", &members, &tl(1500, 1500), &none, Some(1500), &settings, &mut state);
        assert_eq!(p.ready_through, Some(1500));
        assert!(state.drops("b", 1000) && state.drops("b", 1399) && !state.drops("b", 1400) && !state.drops("a", 1000));
        // With the default window nothing is dropped.
        let mut kept = PairState::default();
        let all = MergeSettings { stuck_threshold_secs: 100, ..Default::default() };
        pair_progress("p", &members, &tl(1400, 1000), &none, Some(1400), &all, &mut kept);
        pair_progress("p", &members, &tl(1500, 1500), &none, Some(1500), &all, &mut kept);
        assert!(kept.dropped.is_empty() && kept.proceeding_without.is_empty());
        // Ignoring b's site: no wait at all.
        let mut fresh = PairState::default();
        let ignored = BTreeSet::from(["s2".to_string()]);
        let p = pair_progress("p", &members, &tl(1400, 1000), &ignored, Some(1400), &settings, &mut fresh);
        assert_eq!(p.ready_through, Some(1400));
        assert_eq!(p.ignored, vec!["b".to_string()]);
    }

    #[test]
    fn default_window_keeps_all_late_data_and_slices_say_why() {
        let members = vec![("a".to_string(), "s1".to_string()), ("b".to_string(), "s2".to_string())];
        let settings = MergeSettings { stuck_threshold_secs: 100, slice_secs: 900, ..Default::default() };
        let mut state = PairState::default();
        let tl = BTreeMap::from([
            ("a".to_string(), open(3600)),
            (
                "b".to_string(),
                SessionTimeline { covered: vec![(0, 900), (1800, 3600)], open: Some(true), known_through: Some(3600) },
            ),
        ]);
        let p = pair_progress("p", &members, &tl, &BTreeSet::new(), Some(3600), &settings, &mut state);
        let d = slice_decisions(&p, &tl, &state, &settings, 0, 3600);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].complete_idbs, "a,b");
        assert_eq!(d[1].complete_idbs, "a");
        assert_eq!(d[1].chosen_idb.as_deref(), Some("a"));
        assert!(d[1].reason.contains("only a"), "{}", d[1].reason);
        assert!(state.dropped.is_empty());
    }
}
