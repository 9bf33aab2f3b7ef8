//! The merge stage's state and policy: which HA pair each IDB belongs to, the session-control timelines, the data
//! clock, every pair's progress (waits, stuck IDBs, late-data cut-offs) and persisted state, and the decision per
//! group — merge it now, or hold it back. The pipeline hands it staged rows and persists what it says; nothing
//! else decides readiness, late rows or stuck calls.

use super::{
    copy_span_of, merge_group, pair_progress, rows_span, slice_decisions, DataQuality, GroupRows, MergeSettings,
    MergedGroup, PairProgress, PairState, SessionTimeline, SliceDecision,
};
use crate::model::status::{PairStatus, PairWait};
use crate::model::GroupKey;
use crate::staging::StagedRow;
use std::collections::{BTreeMap, BTreeSet};

/// How far back (data time) slice decisions are recomputed each cycle; older ones stay as last decided.
pub const DECISION_WINDOW_SECS: i64 = 2 * 86_400;

/// One configured IDB as the merge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairMember {
    /// IDB name.
    pub idb: String,
    /// Its HA pair.
    pub pair: String,
    /// The site it is at.
    pub site: String,
}

/// Session-control rows of every IDB: IDB → table → rows (the staging group [`GroupKey::SessionControl`]).
pub type SessionControlRows = BTreeMap<String, BTreeMap<String, Vec<StagedRow>>>;

/// What one [`Merger::advance`] decided, for staging to persist before any group is merged with it.
#[derive(Debug, Clone, Default)]
pub struct MergeDecisions {
    /// (pair, slice start, decision) of the slices in the decision window.
    pub slices: Vec<(String, i64, SliceDecision)>,
}

/// The merge stage: owns the pairs' memory between cycles.
#[derive(Debug, Clone)]
pub struct Merger {
    settings: MergeSettings,
    /// IDBs in configured order (the preference among copies when nothing else decides).
    preference: Vec<String>,
    pair_of: BTreeMap<String, String>,
    /// Pair → (IDB, site) in configured order.
    pair_members: BTreeMap<String, Vec<(String, String)>>,
    pair_states: BTreeMap<String, PairState>,
    progress: BTreeMap<String, PairProgress>,
    timelines: BTreeMap<String, SessionTimeline>,
    data_clock: Option<i64>,
    ignored_sites: BTreeSet<String>,
    /// (pair, IDB) → wall-clock time it was first seen behind.
    waiting_since: BTreeMap<(String, String), i64>,
}

impl Merger {
    /// The merge of `members` (in configured order), resuming from the persisted pair states.
    pub fn new(members: &[PairMember], settings: MergeSettings, pair_states: BTreeMap<String, PairState>) -> Self {
        let mut pair_members: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for m in members {
            pair_members.entry(m.pair.clone()).or_default().push((m.idb.clone(), m.site.clone()));
        }
        Merger {
            settings,
            preference: members.iter().map(|m| m.idb.clone()).collect(),
            pair_of: members.iter().map(|m| (m.idb.clone(), m.pair.clone())).collect(),
            pair_members,
            pair_states,
            progress: BTreeMap::new(),
            timelines: BTreeMap::new(),
            data_clock: None,
            ignored_sites: BTreeSet::new(),
            waiting_since: BTreeMap::new(),
        }
    }

    /// Takes the pair states of an imported staging checkpoint (promotion).
    pub fn resume_from(&mut self, pair_states: BTreeMap<String, PairState>) {
        self.pair_states = pair_states;
    }

    /// The pairs' state, to persist with [`MergeDecisions`].
    pub fn pair_states(&self) -> &BTreeMap<String, PairState> {
        &self.pair_states
    }

    /// Reads the session-control timelines, works out every pair's progress with the sites in `ignored`
    /// (configuration and run-time ignores) not waited for, and returns the slice decisions to persist. `now` is
    /// wall-clock time, for how long an IDB has been waited for.
    pub fn advance(&mut self, rows: &SessionControlRows, ignored: BTreeSet<String>, now: i64) -> MergeDecisions {
        self.timelines = rows.iter().map(|(i, t)| (i.clone(), SessionTimeline::from_rows(t))).collect();
        self.data_clock = self.timelines.values().filter_map(|t| t.known_through).max();
        let mut decisions = MergeDecisions::default();
        let mut still_waiting = BTreeSet::new();
        for (pair, members) in &self.pair_members {
            let state = self.pair_states.entry(pair.clone()).or_default();
            let p = pair_progress(pair, members, &self.timelines, &ignored, self.data_clock, &self.settings, state);
            if let Some(clock) = self.data_clock {
                let first = members
                    .iter()
                    .filter_map(|(m, _)| self.timelines.get(m).and_then(|t| t.covered.first()).map(|c| c.0))
                    .min();
                let from = first.unwrap_or(clock).max(clock - DECISION_WINDOW_SECS);
                for d in slice_decisions(&p, &self.timelines, state, &self.settings, from, clock) {
                    decisions.slices.push((pair.clone(), d.slice_start, d));
                }
            }
            for w in &p.waits {
                let key = (pair.clone(), w.idb.clone());
                self.waiting_since.entry(key.clone()).or_insert(now);
                still_waiting.insert(key);
            }
            self.progress.insert(pair.clone(), p);
        }
        self.waiting_since.retain(|k, _| still_waiting.contains(k));
        self.ignored_sites = ignored;
        decisions
    }

    /// Merges a group, or returns `None` while the merge holds it back: its pair is not ready past the group's
    /// last event, or it is an interaction the source has not closed yet (and is not overdue as stuck). Rows of
    /// an IDB that its pair's state drops (late data past a cut-off) are left out.
    pub fn merge(&self, g: &GroupKey, mut rows: GroupRows) -> Option<MergedGroup> {
        if matches!(g, GroupKey::Configuration(_)) {
            return Some(merge_group(g, rows, &self.preference, &self.timelines));
        }
        let pair = rows.keys().find_map(|(idb, _)| self.pair_of.get(idb)).cloned();
        let progress = pair.as_ref().and_then(|p| self.progress.get(p));
        if let Some(state) = pair.as_ref().and_then(|p| self.pair_states.get(p)) {
            let mut starts: BTreeMap<String, i64> = BTreeMap::new();
            for ((idb, table), rs) in &rows {
                if let Some(s) = rows_span([(table.as_str(), rs.as_slice())]).map(|s| s.0) {
                    let e = starts.entry(idb.clone()).or_insert(s);
                    *e = (*e).min(s);
                }
            }
            rows.retain(|(idb, _), _| !starts.get(idb).is_some_and(|s| state.drops(idb, *s)));
        }
        let span = copy_span_of(&rows);
        let members: Vec<String> = progress.map(|p| p.members.clone()).unwrap_or_else(|| self.preference.clone());
        let mut merged = merge_group(g, rows, &members, &self.timelines);
        let Some((start, end)) = span else { return Some(merged) };
        let ready = progress.and_then(|p| p.ready_through);
        if ready.is_some_and(|r| end >= r) {
            return None;
        }
        if matches!(g, GroupKey::Interaction(_)) && !merged.is_closed() {
            let max = self.settings.max_call_duration_secs;
            let overdue = self.data_clock.is_some_and(|c| c - start > max) && ready.is_none_or(|r| r > start + max);
            if !overdue {
                return None;
            }
            merged.close_stuck_at = Some(merged.span().map_or(end, |s| s.1));
            merged.quality = DataQuality::Stuck;
        }
        Some(merged)
    }

    /// Newest heartbeat of any IDB (data time).
    pub fn data_clock(&self) -> Option<i64> {
        self.data_clock
    }

    /// Sites whose IDBs the merge does not wait for, as of the last [`Self::advance`].
    pub fn ignored_sites(&self) -> Vec<String> {
        self.ignored_sites.iter().cloned().collect()
    }

    /// Every pair as `/v1/status` shows it.
    pub fn pair_status(&self) -> Vec<PairStatus> {
        self.progress
            .values()
            .map(|p| PairStatus {
                pair: p.pair.clone(),
                members: p.members.clone(),
                ready_through: p.ready_through,
                waits: p
                    .waits
                    .iter()
                    .map(|w| PairWait {
                        idb: w.idb.clone(),
                        behind_since: w.since,
                        behind_secs: w.behind_secs,
                        stuck: w.stuck,
                        waiting_since: self
                            .waiting_since
                            .get(&(p.pair.clone(), w.idb.clone()))
                            .copied()
                            .unwrap_or_default(),
                    })
                    .collect(),
                ignored: p.ignored.clone(),
            })
            .collect()
    }
}
