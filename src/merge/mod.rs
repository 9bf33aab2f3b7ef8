//! HA-pair merge: both collectors of a pair write the same events into two IDBs whose row ids and counters
//! differ. The merge never matches rows across IDBs; it decides from the data source session control timelines
//! ([`SessionTimeline`]) which IDB was connected for the whole of an interaction or login session and takes the
//! whole group from it, so nothing is counted twice. Configuration rows carry DBIDs that are the same everywhere
//! and are merged row by row (newest change wins).
//!
//! It also decides *when* a group may be transformed ([`PairProgress`]): while an IDB that may still deliver data
//! for a time range is behind, that range is held back, until the IDB lags the newest IDB by more than the stuck
//! threshold. Every choice is a pure function of the staged rows, the configuration and the persisted
//! [`PairState`], so two appliances that staged the same rows choose the same IDB (DESIGN.md invariant 2).

mod merger;
mod progress;

pub use merger::{MergeDecisions, Merger, PairMember, SessionControlRows, DECISION_WINDOW_SECS};

pub use progress::{pair_progress, slice_decisions, MergeSettings, PairProgress, PairState, SliceDecision, Wait};

use crate::model::GroupKey;
use crate::source::contract::{self, G_DSS_GCC_PROVIDER};
use crate::staging::StagedRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Rows of one group as staged: (IDB, table) → rows.
pub type GroupRows = BTreeMap<(String, String), Vec<StagedRow>>;

/// How much the merged copy of a group can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DataQuality {
    /// Taken from an IDB whose collector was connected for the whole interaction.
    #[default]
    Complete,
    /// No IDB was connected for the whole interaction; the most complete copy was taken.
    Uncovered,
    /// Never closed by the source; closed by ccmart after the maximum duration.
    Stuck,
}

impl DataQuality {
    /// The value shown in the mart (`data_quality`).
    pub fn name(self) -> &'static str {
        match self {
            DataQuality::Complete => "complete",
            DataQuality::Uncovered => "uncovered",
            DataQuality::Stuck => "stuck",
        }
    }
}

/// The rows the transform should use for a group, and why.
#[derive(Debug, Clone, Default)]
pub struct MergedGroup {
    /// The IDB the group was taken from (None for configuration, which is merged per row).
    pub chosen_idb: Option<String>,
    /// Table → rows.
    pub tables: BTreeMap<String, Vec<StagedRow>>,
    /// How far the copy can be trusted.
    pub quality: DataQuality,
    /// For an interaction the source never closed: the time ccmart closes it at (see `max_call_duration_secs`).
    pub close_stuck_at: Option<i64>,
}

impl MergedGroup {
    /// Rows of one table (empty when none).
    pub fn rows(&self, table: &str) -> &[StagedRow] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }

    /// Whether the source closed the interaction or login session.
    pub fn is_closed(&self) -> bool {
        copy_closed(&self.tables)
    }

    /// Earliest and latest event time in the copy.
    pub fn span(&self) -> Option<(i64, i64)> {
        copy_span(&self.tables)
    }
}

/// When one IDB's collector was connected to its data source, and how far the IDB has progressed, from the rows
/// of its session-control tables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionTimeline {
    /// Connected periods `[from, to)`, sorted and disjoint: every event in them is (or will be) in the IDB.
    pub covered: Vec<(i64, i64)>,
    /// The newest connection is still open: the IDB will receive more. `None` when the IDB has no session control.
    pub open: Option<bool>,
    /// Heartbeat of the newest connection: every event before it is in the IDB.
    pub known_through: Option<i64>,
}

impl SessionTimeline {
    /// Builds the timeline of one IDB from its staged session-control rows (table → rows). With both `gcc` and
    /// `gls` rows the IDB covers what both cover.
    pub fn from_rows(tables: &BTreeMap<String, Vec<StagedRow>>) -> Self {
        // Every session-control table has the same columns (`SESSION_CONTROL_COLUMNS`).
        let c = |name: &str| G_DSS_GCC_PROVIDER.index(name);
        let (stime, etime, icon_end, heartbeat) =
            (c("DSCONN_STIME"), c("DSCONN_ETIME"), c("ICON_ETIME"), c("LEVENT_ITIME"));
        let mut result: Option<SessionTimeline> = None;
        for rows in tables.values().filter(|r| !r.is_empty()) {
            let mut sessions: Vec<(i64, Option<i64>, i64)> = rows
                .iter()
                .filter_map(|r| {
                    let from = r.int(stime)?;
                    let closed = r.int(etime).or(r.int(icon_end));
                    Some((from, closed, r.int(heartbeat).unwrap_or(from)))
                })
                .collect();
            sessions.sort();
            let mut covered: Vec<(i64, i64)> = Vec::new();
            for (from, closed, beat) in &sessions {
                let to = closed.unwrap_or(*beat).max(*from);
                match covered.last_mut() {
                    Some(last) if *from <= last.1 => last.1 = last.1.max(to),
                    _ => covered.push((*from, to)),
                }
            }
            let newest = sessions.last();
            let t = SessionTimeline {
                covered,
                open: newest.map(|n| n.1.is_none()),
                known_through: newest.map(|n| n.1.unwrap_or(n.2)),
            };
            result = Some(match result {
                None => t,
                Some(prev) => SessionTimeline {
                    covered: intersect(&prev.covered, &t.covered),
                    open: Some(prev.open == Some(true) || t.open == Some(true)),
                    known_through: prev.known_through.min(t.known_through).or(prev.known_through),
                },
            });
        }
        result.unwrap_or_default()
    }

    /// Whether every event in `[from, to]` is in the IDB. An IDB without session control is trusted.
    pub fn covers(&self, from: i64, to: i64) -> bool {
        self.open.is_none() || self.covered.iter().any(|(a, b)| *a <= from && to < *b)
    }
}

fn intersect(a: &[(i64, i64)], b: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for (a0, a1) in a {
        for (b0, b1) in b {
            let (from, to) = ((*a0).max(*b0), (*a1).min(*b1));
            if from < to {
                out.push((from, to));
            }
        }
    }
    out.sort();
    out
}

/// The time columns of a group's rows (epoch seconds).
const TIME_COLUMNS: &[&str] = &["CREATED_TS", "TERMINATED_TS", "ADDED_TS"];

/// Earliest and latest event time of some rows, given as (table, rows).
pub fn rows_span<'a>(rows: impl IntoIterator<Item = (&'a str, &'a [StagedRow])>) -> Option<(i64, i64)> {
    let mut span: Option<(i64, i64)> = None;
    for (table, rows) in rows {
        let Some(spec) = contract::table(table) else { continue };
        let cols: Vec<usize> = TIME_COLUMNS.iter().filter_map(|c| spec.column_index(c)).collect();
        for r in rows {
            for t in cols.iter().filter_map(|&i| r.int(i)) {
                span = Some(span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
            }
        }
    }
    span
}

fn copy_span(tables: &BTreeMap<String, Vec<StagedRow>>) -> Option<(i64, i64)> {
    rows_span(tables.iter().map(|(t, r)| (t.as_str(), r.as_slice())))
}

/// Earliest and latest event time over every copy of a group.
pub fn copy_span_of(rows: &GroupRows) -> Option<(i64, i64)> {
    rows_span(rows.iter().map(|((_, t), r)| (t.as_str(), r.as_slice())))
}

/// Whether the source closed the interaction or login session: its `TERMINATED_TS` is set (ICON's `STATE` codes
/// are not relied on).
fn copy_closed(tables: &BTreeMap<String, Vec<StagedRow>>) -> bool {
    [contract::G_CALL, contract::G_LOGIN_SESSION].iter().any(|spec| {
        let idx = spec.index("TERMINATED_TS");
        tables.get(spec.name).is_some_and(|r| r.iter().any(|row| row.int(idx).is_some()))
    })
}

/// Merges one group. `preference` lists the IDB names of the group's HA pair in configured order; `timelines`
/// holds each IDB's session-control timeline. The group is taken whole from an IDB whose collector was connected
/// for the group's whole time span — among those, the most complete copy (closed first, then most rows, then
/// configured order), so a copy that lost a row to quarantine yields to its partner; when no IDB covers the span,
/// from the most complete copy of all, marked [`DataQuality::Uncovered`].
pub fn merge_group(
    group: &GroupKey,
    rows: GroupRows,
    preference: &[String],
    timelines: &BTreeMap<String, SessionTimeline>,
) -> MergedGroup {
    if matches!(group, GroupKey::Configuration(_)) {
        return merge_configuration(rows, preference);
    }
    let rank = |idb: &str| preference.iter().position(|p| p == idb).unwrap_or(usize::MAX);
    let mut per_idb: BTreeMap<String, BTreeMap<String, Vec<StagedRow>>> = BTreeMap::new();
    for ((idb, table), r) in rows {
        per_idb.entry(idb).or_default().insert(table, r);
    }
    let span = per_idb.values().filter_map(copy_span).reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
    // How complete a copy is by its own rows: closed first, then more rows (a copy missing rows, e.g. one
    // quarantined, loses to its partner even when session control says both collectors were connected).
    let fullness = |tables: &BTreeMap<String, Vec<StagedRow>>| {
        let n: usize = tables.values().map(Vec::len).sum();
        (copy_closed(tables), n)
    };
    let best_by = |candidates: Vec<(&String, &BTreeMap<String, Vec<StagedRow>>)>| {
        candidates
            .into_iter()
            .map(|(idb, tables)| (fullness(tables), std::cmp::Reverse((rank(idb), idb.clone()))))
            .max()
            .map(|(_, std::cmp::Reverse((_, idb)))| idb)
    };
    let covering = best_by(
        per_idb
            .iter()
            .filter(|(idb, _)| span.is_some_and(|(from, to)| timelines.get(*idb).is_none_or(|t| t.covers(from, to))))
            .collect(),
    );
    let (idb, quality) = match covering {
        Some(idb) => (idb, DataQuality::Complete),
        None => match best_by(per_idb.iter().collect()) {
            Some(idb) => (idb, DataQuality::Uncovered),
            None => return MergedGroup::default(),
        },
    };
    let tables = per_idb.remove(&idb).unwrap_or_default();
    MergedGroup { chosen_idb: Some(idb), tables, quality, close_stuck_at: None }
}

/// Configuration rows: a `GC_*` row (keyed by its configuration DBID, the same in every IDB) is taken from the
/// copy with the newest `LASTCHANGE_TS`, then from the first configured IDB; `GCX_GROUP_AGENT` rows, numbered by
/// each IDB and without `LASTCHANGE`, are taken per group and agent from the most advanced copy
/// ([`merge_memberships`]).
fn merge_configuration(rows: GroupRows, preference: &[String]) -> MergedGroup {
    let rank = |idb: &str| preference.iter().position(|p| p == idb).unwrap_or(usize::MAX);
    let mut tables: BTreeMap<String, BTreeMap<i64, (i64, usize, StagedRow)>> = BTreeMap::new();
    let mut memberships: Vec<(String, Vec<StagedRow>)> = Vec::new();
    for ((idb, table), rs) in rows {
        if table == contract::GCX_GROUP_AGENT.name {
            memberships.push((idb, rs));
            continue;
        }
        let lastchange = contract::table(&table).and_then(|t| t.column_index("LASTCHANGE_TS"));
        for r in rs {
            let Some(id) = r.int(0) else { continue };
            let changed = lastchange.and_then(|i| r.int(i)).unwrap_or(0);
            let cand = (changed, rank(&idb), r);
            let slot = tables.entry(table.clone()).or_default();
            match slot.get(&id) {
                Some((c, rk, _)) if (*c, std::cmp::Reverse(*rk)) >= (cand.0, std::cmp::Reverse(cand.1)) => {}
                _ => {
                    slot.insert(id, cand);
                }
            }
        }
    }
    let mut tables: BTreeMap<String, Vec<StagedRow>> =
        tables.into_iter().map(|(t, m)| (t, m.into_values().map(|(_, _, r)| r).collect())).collect();
    if !memberships.is_empty() {
        tables.insert(contract::GCX_GROUP_AGENT.name.to_string(), merge_memberships(memberships, &rank));
    }
    MergedGroup { chosen_idb: None, quality: DataQuality::Complete, close_stuck_at: None, tables }
}

/// `GCX_GROUP_AGENT` from several IDBs: for each (group, agent), every membership row of the copy that knows the
/// most memberships, then the most ended ones (an IDB that lags behind knows fewer), then the first configured.
fn merge_memberships(copies: Vec<(String, Vec<StagedRow>)>, rank: &dyn Fn(&str) -> usize) -> Vec<StagedRow> {
    let spec = &contract::GCX_GROUP_AGENT;
    let col = |name: &str| spec.column_index(name);
    let (Some(group), Some(agent), Some(deleted)) = (col("GROUPID"), col("AGENTID"), col("DELETED_TS")) else {
        return Vec::new();
    };
    type Best = ((usize, usize, std::cmp::Reverse<usize>), Vec<StagedRow>);
    let mut best: BTreeMap<(i64, i64), Best> = BTreeMap::new();
    for (idb, rows) in copies {
        let mut per_pair: BTreeMap<(i64, i64), Vec<StagedRow>> = BTreeMap::new();
        for r in rows {
            if let (Some(g), Some(a)) = (r.int(group), r.int(agent)) {
                per_pair.entry((g, a)).or_default().push(r);
            }
        }
        for (pair, rows) in per_pair {
            let ended = rows.iter().filter(|r| r.int(deleted).is_some()).count();
            let score = (rows.len(), ended, std::cmp::Reverse(rank(&idb)));
            if best.get(&pair).is_none_or(|(old, _)| score > *old) {
                best.insert(pair, (score, rows));
            }
        }
    }
    best.into_values().flat_map(|(_, rows)| rows).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::contract::call_state;
    use crate::staging::Value;

    /// A `G_CALL` row; a terminated one has `TERMINATED_TS`, which is what closes it.
    fn call(state: i64, version: i64) -> StagedRow {
        let col = |name: &str| contract::G_CALL.column_index(name).unwrap();
        let mut values = vec![None; contract::G_CALL.columns.len()];
        values[0] = Some(Value::Int(version));
        values[col("STATE")] = Some(Value::Int(state));
        if state == call_state::TERMINATED {
            values[col("TERMINATED_TS")] = Some(Value::Int(1_000));
        }
        StagedRow { version, values }
    }

    fn rows(copies: &[(&str, Vec<StagedRow>)]) -> GroupRows {
        copies.iter().map(|(idb, r)| ((idb.to_string(), "G_CALL".to_string()), r.clone())).collect()
    }

    #[test]
    fn complete_copy_wins_then_configured_order() {
        let pref = vec!["a".to_string(), "b".to_string()];
        let m = merge_group(
            &GroupKey::Interaction("X".into()),
            rows(&[("a", vec![call(call_state::ALIVE, 1)]), ("b", vec![call(call_state::TERMINATED, 2)])]),
            &pref,
            &BTreeMap::new(),
        );
        assert_eq!(m.chosen_idb.as_deref(), Some("b"));
        let m = merge_group(
            &GroupKey::Interaction("X".into()),
            rows(&[("a", vec![call(call_state::TERMINATED, 1)]), ("b", vec![call(call_state::TERMINATED, 2)])]),
            &pref,
            &BTreeMap::new(),
        );
        assert_eq!(m.chosen_idb.as_deref(), Some("a"), "tie → first configured IDB");
        let swapped = vec!["b".to_string(), "a".to_string()];
        let m = merge_group(
            &GroupKey::Interaction("X".into()),
            rows(&[("a", vec![call(call_state::TERMINATED, 1)]), ("b", vec![call(call_state::TERMINATED, 2)])]),
            &swapped,
            &BTreeMap::new(),
        );
        assert_eq!(m.chosen_idb.as_deref(), Some("b"));
        assert_eq!(m.rows("G_CALL").len(), 1, "one copy only: never both");
    }
}
