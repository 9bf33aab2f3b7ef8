//! Small records the merge and the operators keep in staging next to the rows: the merge's per-pair state and
//! slice decisions, the sites ignored for disaster recovery, and the audit trail of ignore/restore.
//! Values are MessagePack of the caller's types, so this module knows nothing about the merge.

use super::{storage, Result, StagingError, Store};
use crate::model::GroupKind;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub(super) const MERGE_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("merge_state");
pub(super) const MERGE_DECISIONS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("merge_decisions");
pub(super) const IGNORED_SITES: TableDefinition<&str, ()> = TableDefinition::new("ignored_sites");
pub(super) const SOURCE_AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("source_audit");
pub(super) const MAINTENANCE_RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("maintenance_runs");
pub(super) const FENCE: TableDefinition<&str, &[u8]> = TableDefinition::new("fence");
/// Fingerprints of the settings the staged facts were computed with (they travel with the facts in a checkpoint).
pub(super) const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

/// One maintenance task on one table (`ccmart_maintenance_runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    /// Sequence number (1, 2, ...), assigned when recorded.
    pub seq: u64,
    /// When the task started (epoch seconds).
    pub started_at: i64,
    /// `vacuum`, `retention` or `catalog`.
    pub task: String,
    /// Mart table, or empty for the catalog.
    pub table: String,
    /// Parquet files on disk before and after.
    pub files_before: u64,
    /// See `files_before`.
    pub files_after: u64,
    /// Bytes of those files before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// What it did, for people (e.g. "deleted 12 files", "expired 3 days", or the error).
    pub detail: String,
}

/// One change of the set of ignored sites (`ccmart_source_audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceAuditEntry {
    /// Sequence number (1, 2, ...).
    pub seq: u64,
    /// When (epoch seconds, wall clock).
    pub at: i64,
    /// `ignore` or `restore`.
    pub action: String,
    /// The site.
    pub site: String,
    /// Who: `config`, or the name of the API token / `cli`.
    pub actor: String,
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|source| StagingError::Decode { table, source })
}

fn encode<T: Serialize>(table: &'static str, v: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(v).map_err(|source| StagingError::Encode { table, source })
}

impl Store {
    /// Makes the staged facts agree with the settings named `name`, whose current fingerprint is `fingerprint`:
    /// when staging's facts were computed with other settings (or before fingerprints were kept), every group
    /// of kind `wake` that has facts is marked for the transform again, and the new
    /// fingerprint recorded, in one transaction. Returns the number of groups marked (0 when nothing changed).
    pub fn reconcile_settings(&self, name: &str, fingerprint: &str, wake: GroupKind) -> Result<usize> {
        let prefix = wake.prefix();
        let during = "reconcile settings";
        {
            let tx = self.db.begin_read().map_err(storage(during))?;
            // A store from before fingerprints were kept has no settings table: its facts are recomputed.
            match tx.open_table(SETTINGS) {
                Ok(t) => {
                    if t.get(name).map_err(storage(during))?.is_some_and(|v| v.value() == fingerprint) {
                        return Ok(0);
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(storage(during)(e)),
            }
        }
        self.faults.step("commit settings fingerprint")?;
        let tx = self.db.begin_write().map_err(storage(during))?;
        let mut woken = 0;
        {
            let group_facts = tx.open_table(super::GROUP_FACTS).map_err(storage(during))?;
            let mut dirty = tx.open_table(super::DIRTY_GROUPS).map_err(storage(during))?;
            for item in group_facts.range::<&[u8]>(prefix.as_bytes()..).map_err(storage(during))? {
                let (k, _) = item.map_err(storage(during))?;
                if !k.value().starts_with(prefix.as_bytes()) {
                    break;
                }
                dirty.insert(k.value(), ()).map_err(storage(during))?;
                woken += 1;
            }
            tx.open_table(SETTINGS).map_err(storage(during))?.insert(name, fingerprint).map_err(storage(during))?;
        }
        tx.commit().map_err(storage(during))?;
        Ok(woken)
    }

    /// Every pair's persisted merge state.
    pub fn merge_states<T: DeserializeOwned>(&self) -> Result<BTreeMap<String, T>> {
        let during = "read merge state";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(MERGE_STATE).map_err(storage(during))?;
        let mut out = BTreeMap::new();
        for item in t.iter().map_err(storage(during))? {
            let (k, v) = item.map_err(storage(during))?;
            out.insert(k.value().to_string(), decode("merge_state", v.value())?);
        }
        Ok(out)
    }

    /// Replaces the merge states that changed, and the decisions of the given slices, in one transaction.
    pub fn save_merge<T: Serialize, D: Serialize>(
        &self,
        states: &BTreeMap<String, T>,
        decisions: &[(String, i64, D)],
    ) -> Result<()> {
        self.faults.step("commit merge state")?;
        let during = "commit merge state";
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut t = tx.open_table(MERGE_STATE).map_err(storage(during))?;
            for (pair, s) in states {
                let bytes = encode("merge_state", s)?;
                if t.get(pair.as_str()).map_err(storage(during))?.is_none_or(|v| v.value() != bytes.as_slice()) {
                    t.insert(pair.as_str(), bytes.as_slice()).map_err(storage(during))?;
                }
            }
            let mut d = tx.open_table(MERGE_DECISIONS).map_err(storage(during))?;
            for (pair, slice, decision) in decisions {
                let bytes = encode("merge_decisions", decision)?;
                let key = (pair.as_str(), *slice);
                if d.get(key).map_err(storage(during))?.is_none_or(|v| v.value() != bytes.as_slice()) {
                    d.insert(key, bytes.as_slice()).map_err(storage(during))?;
                }
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(())
    }

    /// Every stored slice decision, by pair and slice.
    pub fn merge_decisions<D: DeserializeOwned>(&self) -> Result<Vec<D>> {
        let during = "read merge decisions";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(MERGE_DECISIONS).map_err(storage(during))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage(during))? {
            out.push(decode("merge_decisions", item.map_err(storage(during))?.1.value())?);
        }
        Ok(out)
    }

    /// Sites currently ignored at run time (in addition to the configuration's `ignore_sources`).
    pub fn ignored_sites(&self) -> Result<BTreeSet<String>> {
        let during = "read ignored sites";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(IGNORED_SITES).map_err(storage(during))?;
        let mut out = BTreeSet::new();
        for item in t.iter().map_err(storage(during))? {
            out.insert(item.map_err(storage(during))?.0.value().to_string());
        }
        Ok(out)
    }

    /// Ignores (or restores) a site and records who did it. Returns false when nothing changed (no audit row).
    pub fn set_site_ignored(&self, site: &str, ignore: bool, actor: &str) -> Result<bool> {
        let during = "change ignored sites";
        let tx = self.db.begin_write().map_err(storage(during))?;
        let changed;
        {
            let mut t = tx.open_table(IGNORED_SITES).map_err(storage(during))?;
            changed = if ignore {
                t.insert(site, ()).map_err(storage(during))?.is_none()
            } else {
                t.remove(site).map_err(storage(during))?.is_some()
            };
            if changed {
                let mut audit = tx.open_table(SOURCE_AUDIT).map_err(storage(during))?;
                let seq = audit.last().map_err(storage(during))?.map_or(1, |(k, _)| k.value() + 1);
                let entry = SourceAuditEntry {
                    seq,
                    at: chrono::Utc::now().timestamp(),
                    action: if ignore { "ignore" } else { "restore" }.into(),
                    site: site.into(),
                    actor: actor.into(),
                };
                audit.insert(seq, encode("source_audit", &entry)?.as_slice()).map_err(storage(during))?;
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(changed)
    }

    /// This appliance's role and epoch, if one was ever recorded.
    pub fn fence(&self) -> Result<Option<crate::model::Fence>> {
        let during = "read fence";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(FENCE).map_err(storage(during))?;
        let v = t.get("fence").map_err(storage(during))?;
        v.map(|v| decode("fence", v.value())).transpose()
    }

    /// Records this appliance's role and epoch (durably, before anyone acts on it).
    pub fn set_fence(&self, fence: &crate::model::Fence) -> Result<()> {
        let during = "write fence";
        let tx = self.db.begin_write().map_err(storage(during))?;
        tx.open_table(FENCE)
            .map_err(storage(during))?
            .insert("fence", encode("fence", fence)?.as_slice())
            .map_err(storage(during))?;
        tx.commit().map_err(storage(during))?;
        Ok(())
    }

    /// Appends maintenance records (their `seq` is assigned here), in one transaction.
    pub fn record_maintenance(&self, records: &[MaintenanceRecord]) -> Result<()> {
        let during = "record maintenance";
        let tx = self.db.begin_write().map_err(storage(during))?;
        {
            let mut t = tx.open_table(MAINTENANCE_RUNS).map_err(storage(during))?;
            let mut seq = t.last().map_err(storage(during))?.map_or(0, |(k, _)| k.value());
            for r in records {
                seq += 1;
                let r = MaintenanceRecord { seq, ..r.clone() };
                t.insert(seq, encode("maintenance_runs", &r)?.as_slice()).map_err(storage(during))?;
            }
        }
        tx.commit().map_err(storage(during))?;
        Ok(())
    }

    /// Every maintenance record, oldest first.
    pub fn maintenance_runs(&self) -> Result<Vec<MaintenanceRecord>> {
        let during = "read maintenance runs";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(MAINTENANCE_RUNS).map_err(storage(during))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage(during))? {
            out.push(decode("maintenance_runs", item.map_err(storage(during))?.1.value())?);
        }
        Ok(out)
    }

    /// The audit trail of ignore/restore, oldest first.
    pub fn source_audit(&self) -> Result<Vec<SourceAuditEntry>> {
        let during = "read source audit";
        let tx = self.db.begin_read().map_err(storage(during))?;
        let t = tx.open_table(SOURCE_AUDIT).map_err(storage(during))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage(during))? {
            out.push(decode("source_audit", item.map_err(storage(during))?.1.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultInjector;

    #[test]
    fn ignore_and_restore_are_audited_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), FaultInjector::disarmed()).unwrap();
        assert!(store.set_site_ignored("site2", true, "cli").unwrap());
        assert!(!store.set_site_ignored("site2", true, "cli").unwrap(), "already ignored");
        assert_eq!(store.ignored_sites().unwrap(), BTreeSet::from(["site2".to_string()]));
        assert!(store.set_site_ignored("site2", false, "api:ops").unwrap());
        let audit = store.source_audit().unwrap();
        assert_eq!(
            audit.iter().map(|a| (a.seq, a.action.as_str())).collect::<Vec<_>>(),
            [(1, "ignore"), (2, "restore")]
        );
        assert!(store.ignored_sites().unwrap().is_empty());
    }
}
