//! Surrogate keys that stay distinct when two natural keys hash alike, and the same at both sites.
//!
//! A fact's key is the first 63 bits of a hash of its natural key (`transform::surrogate_key`). At the largest sites
//! (1 M calls a day, 400 days kept, ~3 keys per call in the largest fact table) two natural keys of one table
//! share a hash with a probability of several percent over the retention. When that happens the claimants of the
//! key — every group whose facts of that table hash to it — are ranked by their group key, which is made of
//! natural keys (`CALLID`, login session id, day) and is the same at both sites. The first keeps the hash; the
//! `r`-th gets [`probe_key`]`(table, hash, r)`. A group that takes a lower rank than a group already stored moves
//! that group's facts to their new key in the same transaction, together with the group's own references to it
//! (an `interaction_id` pointing at its `INTERACTION_FACT` row). So the mart never holds two rows of one key, and
//! the keys it ends with depend on the set of natural keys, not on the order in which the sites saw them.
//!
//! The claims are stored only for keys that did collide (`key_claims`), so the usual cost is one lookup in an
//! empty table per batch.

use super::FactAddress;
use super::FactRow;
use redb::TableDefinition;
use std::collections::BTreeMap;

/// (mart table, hashed key) → the groups claiming that key, sorted (MessagePack of `Vec<String>`): written only
/// when a key collided. Their order is their rank.
pub(super) const KEY_CLAIMS: TableDefinition<(&[u8], i64), &[u8]> = TableDefinition::new("key_claims");

/// The key the claimant of rank `rank` of hashed key `base` of `table` gets: `base` for the first, a hash of
/// (table, base, rank) — positive, 63 bits like every surrogate key — for the others.
pub fn probe_key(table: &str, base: i64, rank: usize) -> i64 {
    if rank == 0 {
        return base;
    }
    let mut h = blake3::Hasher::new();
    h.update(b"ccmart-key-probe\x1f");
    h.update(table.as_bytes());
    h.update(&base.to_le_bytes());
    h.update(&(rank as u64).to_le_bytes());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&h.finalize().as_bytes()[..8]);
    (u64::from_le_bytes(eight) >> 1) as i64
}

/// Which columns of a group's facts hold the key of another of its facts (the transform's foreign keys between
/// fact tables): they move with the key they point at. Staging knows nothing of the star schema; the pipeline
/// hands this in from `transform::schema::FOREIGN_KEYS`.
#[derive(Debug, Clone, Default)]
pub struct KeyReferences {
    /// Referenced table → (referencing table, column position).
    by_target: BTreeMap<String, Vec<(String, usize)>>,
}

impl KeyReferences {
    /// From (referenced table, referencing table, column position) triples.
    pub fn new(references: impl IntoIterator<Item = (String, String, usize)>) -> Self {
        let mut by_target: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        for (target, table, column) in references {
            by_target.entry(target).or_default().push((table, column));
        }
        KeyReferences { by_target }
    }

    fn of(&self, target: &str) -> &[(String, usize)] {
        self.by_target.get(target).map_or(&[], Vec::as_slice)
    }
}

/// Moves the facts of `table` keyed `from` to key `to` (address and first column), and every reference to them
/// among `facts` (cells of referencing columns equal to `from`). Returns whether anything changed.
pub(super) fn rekey(
    facts: &mut [(FactAddress, FactRow)],
    table: &str,
    from: i64,
    to: i64,
    refs: &KeyReferences,
) -> bool {
    use super::Cell;
    let mut changed = false;
    let referencing = refs.of(table);
    for (a, row) in facts.iter_mut() {
        if a.table == table && a.key == from {
            a.key = to;
            if let Some(c @ Cell::Int(_)) = row.0.first_mut() {
                if *c == Cell::Int(from) {
                    *c = Cell::Int(to);
                }
            }
            changed = true;
        }
        for (t, column) in referencing {
            if a.table == *t {
                if let Some(c) = row.0.get_mut(*column) {
                    if *c == Cell::Int(from) {
                        *c = Cell::Int(to);
                        changed = true;
                    }
                }
            }
        }
    }
    changed
}

/// The claimants of hashed key `base` of `table` (empty when it never collided).
pub(super) fn read_claims(
    claims: &redb::Table<'_, (&[u8], i64), &[u8]>,
    table: &str,
    base: i64,
) -> super::Result<Vec<String>> {
    use redb::ReadableTable;
    match claims.get((table.as_bytes(), base)).map_err(super::storage("read key claims"))? {
        Some(v) => rmp_serde::from_slice(v.value())
            .map_err(|source| super::StagingError::Decode { table: "key_claims", source }),
        None => Ok(Vec::new()),
    }
}

/// A stored claimant whose key changes because a new claimant ranks before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyMove {
    /// The claimant (a group key, or an aggregate row's identity).
    pub claimant: String,
    /// Its key before.
    pub from: i64,
    /// Its key from now on.
    pub to: i64,
}

/// Records `newcomer` as a claimant of hashed key `base` of `table`, on finding the key held by `holder`. Returns
/// the newcomer's key and the stored claimants whose key moves, last rank first, so that each one's new key is
/// free when its turn comes. Refused (nothing recorded) when `holder` is no claimant of `base` — the key it holds
/// is a probe that equals another row's hash — or `newcomer` is one already.
pub(super) fn admit(
    claims: &mut redb::Table<'_, (&'static [u8], i64), &'static [u8]>,
    table: &str,
    base: i64,
    holder: &str,
    newcomer: &str,
) -> super::Result<(i64, Vec<KeyMove>)> {
    let stored = read_claims(claims, table, base)?;
    let before = if stored.is_empty() { vec![holder.to_string()] } else { stored };
    if rank_of(&before, holder).is_none() || rank_of(&before, newcomer).is_some() {
        return Err(super::StagingError::KeyCollision {
            table: table.into(),
            key: base,
            owner: holder.into(),
            other: newcomer.into(),
        });
    }
    let mut after = before.clone();
    after.push(newcomer.to_string());
    after.sort();
    let bytes =
        rmp_serde::to_vec(&after).map_err(|source| super::StagingError::Encode { table: "key_claims", source })?;
    claims.insert((table.as_bytes(), base), bytes.as_slice()).map_err(super::storage("record key claims"))?;
    tracing::warn!(
        table, key = base, claimants = ?after,
        "surrogate key collision: the claimants are ranked by natural key and the later ones get probe keys"
    );
    let moves = before
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(old, claimant)| {
            let new = rank_of(&after, claimant)?;
            (new != old).then(|| KeyMove {
                claimant: claimant.clone(),
                from: probe_key(table, base, old),
                to: probe_key(table, base, new),
            })
        })
        .collect();
    let rank = rank_of(&after, newcomer).unwrap_or(0);
    Ok((probe_key(table, base, rank), moves))
}

/// The rank of `group` among `claimants` (sorted), if it is one.
pub(super) fn rank_of(claimants: &[String], group: &str) -> Option<usize> {
    claimants.binary_search_by(|c| c.as_str().cmp(group)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_positive_distinct_and_the_first_rank_keeps_the_hash() {
        assert_eq!(probe_key("interaction_fact", 42, 0), 42);
        let probes: Vec<i64> = (1..50).map(|r| probe_key("interaction_fact", 42, r)).collect();
        assert!(probes.iter().all(|k| *k > 0 && *k != 42));
        let distinct: std::collections::BTreeSet<_> = probes.iter().collect();
        assert_eq!(distinct.len(), probes.len());
        assert_ne!(probe_key("interaction_fact", 42, 1), probe_key("mediation_segment_fact", 42, 1));
    }
}
