//! HA-pair merge: both collectors of a pair write the same events into two IDBs whose row ids and counters
//! differ. The merge never matches rows across IDBs; it chooses, per group (one interaction, one login session),
//! the IDB whose copy is the most complete and takes the whole group from it, so nothing is counted twice.
//! Configuration rows carry DBIDs that are the same everywhere and are merged row by row (newest change wins).
//!
//! The choice is a pure function of the staged rows and the configured IDB order, so two appliances that staged
//! the same rows choose the same IDB (DESIGN.md invariant 2).

use crate::source::contract::{self, call_state, login_state};
use crate::staging::StagedRow;
use std::collections::BTreeMap;

/// Rows of one group as staged: (IDB, table) → rows.
pub type GroupRows = BTreeMap<(String, String), Vec<StagedRow>>;

/// The rows the transform should use for a group, and why.
#[derive(Debug, Clone, Default)]
pub struct MergedGroup {
    /// The IDB the group was taken from (None for configuration, which is merged per row).
    pub chosen_idb: Option<String>,
    /// Table → rows.
    pub tables: BTreeMap<String, Vec<StagedRow>>,
}

impl MergedGroup {
    /// Rows of one table (empty when none).
    pub fn rows(&self, table: &str) -> &[StagedRow] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }
}

/// Merges one group. `preference` lists IDB names in configured order (earlier wins ties).
pub fn merge_group(group: &str, rows: GroupRows, preference: &[String]) -> MergedGroup {
    if group.starts_with("C:") {
        return merge_configuration(rows, preference);
    }
    let rank = |idb: &str| preference.iter().position(|p| p == idb).unwrap_or(usize::MAX);
    let mut per_idb: BTreeMap<String, BTreeMap<String, Vec<StagedRow>>> = BTreeMap::new();
    for ((idb, table), r) in rows {
        per_idb.entry(idb).or_default().insert(table, r);
    }
    let complete = |tables: &BTreeMap<String, Vec<StagedRow>>| -> bool {
        let (table, state_col, done) = if group.starts_with("I:") {
            (contract::G_CALL, "STATE", call_state::TERMINATED)
        } else {
            (contract::G_LOGIN_SESSION, "STATE", login_state::ENDED)
        };
        let idx = table.column_index(state_col).unwrap_or(0);
        tables.get(table.name).is_some_and(|r| r.iter().any(|row| row.int(idx) == Some(done)))
    };
    let best = per_idb
        .iter()
        .map(|(idb, tables)| {
            let n: usize = tables.values().map(Vec::len).sum();
            ((complete(tables), n, std::cmp::Reverse(rank(idb))), idb.clone())
        })
        .max();
    let Some((_, idb)) = best else {
        return MergedGroup::default();
    };
    let tables = per_idb.remove(&idb).unwrap_or_default();
    MergedGroup { chosen_idb: Some(idb), tables }
}

fn merge_configuration(rows: GroupRows, preference: &[String]) -> MergedGroup {
    let rank = |idb: &str| preference.iter().position(|p| p == idb).unwrap_or(usize::MAX);
    let mut tables: BTreeMap<String, BTreeMap<i64, (i64, usize, StagedRow)>> = BTreeMap::new();
    for ((idb, table), rs) in rows {
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
    MergedGroup {
        chosen_idb: None,
        tables: tables.into_iter().map(|(t, m)| (t, m.into_values().map(|(_, _, r)| r).collect())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::Value;

    fn call(state: i64, version: i64) -> StagedRow {
        let idx = contract::G_CALL.column_index("STATE").unwrap();
        let mut values = vec![None; contract::G_CALL.columns.len()];
        values[0] = Some(Value::Int(version));
        values[idx] = Some(Value::Int(state));
        StagedRow { version, values }
    }

    fn rows(copies: &[(&str, Vec<StagedRow>)]) -> GroupRows {
        copies.iter().map(|(idb, r)| ((idb.to_string(), "G_CALL".to_string()), r.clone())).collect()
    }

    #[test]
    fn complete_copy_wins_then_configured_order() {
        let pref = vec!["a".to_string(), "b".to_string()];
        let m = merge_group(
            "I:X",
            rows(&[("a", vec![call(call_state::ALIVE, 1)]), ("b", vec![call(call_state::TERMINATED, 2)])]),
            &pref,
        );
        assert_eq!(m.chosen_idb.as_deref(), Some("b"));
        let m = merge_group(
            "I:X",
            rows(&[("a", vec![call(call_state::TERMINATED, 1)]), ("b", vec![call(call_state::TERMINATED, 2)])]),
            &pref,
        );
        assert_eq!(m.chosen_idb.as_deref(), Some("a"), "tie → first configured IDB");
        let swapped = vec!["b".to_string(), "a".to_string()];
        let m = merge_group(
            "I:X",
            rows(&[("a", vec![call(call_state::TERMINATED, 1)]), ("b", vec![call(call_state::TERMINATED, 2)])]),
            &swapped,
        );
        assert_eq!(m.chosen_idb.as_deref(), Some("b"));
        assert_eq!(m.rows("G_CALL").len(), 1, "one copy only: never both");
    }
}
