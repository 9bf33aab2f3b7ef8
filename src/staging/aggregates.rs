//! Aggregates kept by 15-minute bucket, updated by the facts that change, in the transaction that changes them.
//!
//! Every fact row of a table that feeds an aggregate contributes integer measures to one or more 15-minute buckets
//! of an entity (a queue, an agent): what it contributes is a function of the row alone (the transform's
//! [`AggregateRules::contributions`]). Staging keeps the sum of the contributions of every bucket
//! (`aggregate_buckets`). When a group's facts are replaced, the old rows' contributions are subtracted and the new
//! rows' added, to the sums of the bucket, of its hour and of its day (each kept as its own record); the spans whose
//! sums moved get their aggregate rows again. So a cycle touches exactly the buckets its new, changed or removed facts
//! fall into; sums of integers make the result independent of the order in which facts arrived; and the largest
//! wait of a bucket stays exact under removals because every wait is kept with its count.

use super::keys::{admit, probe_key, rank_of, read_claims};
use super::{storage, FactRow, Result, StagingError};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// (family, width, start of the span, entity) → [`BucketSums`] (MessagePack): the sums of every 15-minute bucket,
/// hour and day of every entity, each updated directly by the contributions that fall into it (so writing a row
/// reads one record, and retention drops whole ranges by start).
pub(super) const AGGREGATE_BUCKETS: TableDefinition<(u8, i64, i64, i64), &[u8]> =
    TableDefinition::new("aggregate_buckets");

/// Seconds in a bucket.
pub const BUCKET_SECS: i64 = 900;
/// The widths aggregate rows are kept at: the bucket, the hour, the day (UTC).
pub const WIDTHS: [i64; 3] = [BUCKET_SECS, 3600, 86_400];

/// What one fact row adds to one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// Which aggregate family (the transform's numbering: queue, agent, …).
    pub family: u8,
    /// The entity aggregated over (a resource key).
    pub entity: i64,
    /// Start of the 15-minute bucket (epoch seconds, a multiple of [`BUCKET_SECS`]).
    pub bucket: i64,
    /// Integer measures, in the family's order.
    pub measures: Vec<i64>,
    /// A wait whose maximum the aggregate reports.
    pub wait: Option<i64>,
}

/// The sums of one bucket (or of the buckets of an hour or a day).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSums {
    /// Number of contributions: the bucket has an aggregate row while it is positive.
    pub count: i64,
    /// Sum of each measure.
    pub measures: Vec<i64>,
    /// Every wait with the number of contributions that had it, so the maximum survives removals.
    pub waits: BTreeMap<i64, i64>,
}

impl BucketSums {
    fn add(&mut self, c: &Contribution, sign: i64) {
        self.count += sign;
        if self.measures.len() < c.measures.len() {
            self.measures.resize(c.measures.len(), 0);
        }
        for (s, m) in self.measures.iter_mut().zip(&c.measures) {
            *s += sign * m;
        }
        if let Some(w) = c.wait {
            let n = self.waits.entry(w).or_default();
            *n += sign;
            if *n == 0 {
                self.waits.remove(&w);
            }
        }
    }

    fn merge(&mut self, other: &BucketSums) {
        self.count += other.count;
        if self.measures.len() < other.measures.len() {
            self.measures.resize(other.measures.len(), 0);
        }
        for (s, m) in self.measures.iter_mut().zip(&other.measures) {
            *s += m;
        }
        for (w, n) in &other.waits {
            *self.waits.entry(*w).or_default() += n;
        }
    }

    /// The largest wait (0 without any).
    pub fn max_wait(&self) -> i64 {
        self.waits.keys().next_back().copied().unwrap_or(0)
    }
}

/// One aggregate row as the transform builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    /// Mart table.
    pub table: &'static str,
    /// Day partition.
    pub day: String,
    /// The hashed key of the row (a probe key replaces it when it collided, see [`super::keys`]).
    pub key: i64,
    /// The row, its key first.
    pub row: FactRow,
}

/// What staging needs from the transform to keep aggregates (staging knows nothing of the star schema).
pub trait AggregateRules {
    /// What a fact row of `table` contributes (nothing for tables no aggregate reads).
    fn contributions(&self, table: &str, row: &FactRow) -> Vec<Contribution>;
    /// Whether facts of `table` feed an aggregate (rows of other tables are not decoded for it).
    fn feeds_aggregates(&self, table: &str) -> bool {
        self.source_tables().contains(&table)
    }
    /// The fact tables aggregates are computed from.
    fn source_tables(&self) -> Vec<&'static str>;
    /// The aggregate tables.
    fn aggregate_tables(&self) -> Vec<&'static str>;
    /// The aggregate row of `family` for `entity` over `[start, start + width)`, from its sums.
    fn row(&self, family: u8, width: i64, entity: i64, start: i64, sums: &BucketSums) -> AggregateRow;
}

/// Rules for a store without aggregates (tests of other parts of staging).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAggregates;

impl AggregateRules for NoAggregates {
    fn contributions(&self, _: &str, _: &FactRow) -> Vec<Contribution> {
        Vec::new()
    }
    fn source_tables(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn aggregate_tables(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn row(&self, _: u8, _: i64, _: i64, _: i64, _: &BucketSums) -> AggregateRow {
        AggregateRow { table: "", day: String::new(), key: 0, row: FactRow(Vec::new()) }
    }
}

/// The contribution changes of one transaction, summed per span (family, width, start, entity) before they touch
/// the store.
#[derive(Debug, Default)]
pub(super) struct AggregateDeltas(BTreeMap<(u8, i64, i64, i64), BucketSums>);

impl AggregateDeltas {
    /// Adds (`sign` 1) or takes away (`sign` -1) the contributions of `row` of `table`.
    pub(super) fn apply(&mut self, rules: &dyn AggregateRules, table: &str, row: &FactRow, sign: i64) {
        if !rules.feeds_aggregates(table) {
            return;
        }
        for c in rules.contributions(table, row) {
            for width in WIDTHS {
                let start = c.bucket - c.bucket.rem_euclid(width);
                self.0.entry((c.family, width, start, c.entity)).or_default().add(&c, sign);
            }
        }
    }

    /// Adds the stored bytes of a row (decoded only if its table feeds an aggregate).
    pub(super) fn apply_bytes(
        &mut self,
        rules: &dyn AggregateRules,
        table: &str,
        bytes: &[u8],
        sign: i64,
    ) -> Result<()> {
        if rules.feeds_aggregates(table) {
            self.apply(rules, table, &FactRow::decode(bytes)?, sign);
        }
        Ok(())
    }
}

/// The tables an aggregate write touches, open in a write transaction.
pub(super) struct AggregateStore<'a, 't> {
    pub(super) buckets: &'a mut redb::Table<'t, (u8, i64, i64, i64), &'static [u8]>,
    pub(super) facts: &'a mut redb::Table<'t, super::FactKey, &'static [u8]>,
    pub(super) owners: &'a mut redb::Table<'t, (&'static [u8], i64), &'static str>,
    pub(super) claims: &'a mut redb::Table<'t, (&'static [u8], i64), &'static [u8]>,
    pub(super) parts: &'a mut redb::Table<'t, (&'static str, &'static str), ()>,
}

const DURING: &str = "update aggregates";

fn decode_sums(bytes: &[u8]) -> Result<BucketSums> {
    rmp_serde::from_slice(bytes).map_err(|source| StagingError::Decode { table: "aggregate_buckets", source })
}

impl AggregateStore<'_, '_> {
    /// Applies `deltas` to the bucket sums and writes the aggregate rows of every bucket, hour and day they moved
    /// (removing the rows of those left without contributions). Returns the number of rows written or removed.
    pub(super) fn apply(&mut self, deltas: AggregateDeltas, rules: &dyn AggregateRules) -> Result<usize> {
        let mut written = 0;
        for ((family, width, start, entity), delta) in deltas.0 {
            if delta.count == 0 && delta.measures.iter().all(|m| *m == 0) && delta.waits.values().all(|n| *n == 0) {
                continue;
            }
            let key = (family, width, start, entity);
            let mut sums = match self.buckets.get(key).map_err(storage(DURING))? {
                Some(v) => decode_sums(v.value())?,
                None => BucketSums::default(),
            };
            sums.merge(&delta);
            sums.waits.retain(|_, n| *n != 0);
            if sums.count <= 0 {
                self.buckets.remove(key).map_err(storage(DURING))?;
            } else {
                let bytes = rmp_serde::to_vec(&sums)
                    .map_err(|source| StagingError::Encode { table: "aggregate_buckets", source })?;
                self.buckets.insert(key, bytes.as_slice()).map_err(storage(DURING))?;
            }
            let row = rules.row(family, width, entity, start, &sums);
            let identity = format!("A:{family}:{width}:{entity}:{start}");
            self.put(row, &identity, sums.count > 0)?;
            written += 1;
        }
        Ok(written)
    }

    /// Writes (`present`) or removes the aggregate row `row` of `identity` (a span of one entity), under its hashed
    /// key or, when that key collided, the probe key of its rank among the claimants (ranked by identity, which
    /// is the same at both sites; see [`super::keys`]).
    fn put(&mut self, row: AggregateRow, identity: &str, present: bool) -> Result<()> {
        let table = row.table;
        let base = row.key;
        for _ in 0..64 {
            let claimants = read_claims(self.claims, table, base)?;
            let key = rank_of(&claimants, identity).map_or(base, |r| probe_key(table, base, r));
            let owner =
                self.owners.get((table.as_bytes(), key)).map_err(storage(DURING))?.map(|o| o.value().to_string());
            let address = (table.as_bytes(), row.day.as_bytes(), key);
            if !present {
                if owner.as_deref() == Some(identity) {
                    self.facts.remove(address).map_err(storage(DURING))?;
                    self.owners.remove((table.as_bytes(), key)).map_err(storage(DURING))?;
                    self.parts.insert((table, row.day.as_str()), ()).map_err(storage(DURING))?;
                }
                return Ok(());
            }
            match owner {
                Some(o) if o != identity => {
                    let (_, moves) = admit(self.claims, table, base, &o, identity)?;
                    for m in moves {
                        self.move_row(table, &m.claimant, m.from, m.to)?;
                    }
                }
                _ => {
                    let mut cells = row.row;
                    if let Some(first) = cells.0.first_mut() {
                        *first = super::Cell::Int(key);
                    }
                    let bytes = cells.encode()?;
                    let same = self
                        .facts
                        .get(address)
                        .map_err(storage(DURING))?
                        .is_some_and(|v| v.value() == bytes.as_slice());
                    if !same {
                        self.facts.insert(address, bytes.as_slice()).map_err(storage(DURING))?;
                        self.parts.insert((table, row.day.as_str()), ()).map_err(storage(DURING))?;
                    }
                    if owner.is_none() {
                        self.owners.insert((table.as_bytes(), key), identity).map_err(storage(DURING))?;
                    }
                    return Ok(());
                }
            }
        }
        Err(StagingError::KeyCollision {
            table: table.into(),
            key: base,
            owner: identity.into(),
            other: identity.into(),
        })
    }

    /// Moves the aggregate row of `identity` from key `from` to `to` (its day is in its identity).
    fn move_row(&mut self, table: &'static str, identity: &str, from: i64, to: i64) -> Result<()> {
        let start: i64 = identity.rsplit(':').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let day = crate::model::Day::of_timestamp(start).map(|d| d.to_string()).unwrap_or_default();
        let old = (table.as_bytes(), day.as_bytes(), from);
        let Some(bytes) = self.facts.get(old).map_err(storage(DURING))?.map(|v| v.value().to_vec()) else {
            return Ok(());
        };
        if let Some(o) =
            self.owners.get((table.as_bytes(), to)).map_err(storage(DURING))?.map(|o| o.value().to_string())
        {
            if o != identity {
                return Err(StagingError::KeyCollision {
                    table: table.into(),
                    key: to,
                    owner: o,
                    other: identity.into(),
                });
            }
        }
        let mut row = FactRow::decode(&bytes)?;
        if let Some(first) = row.0.first_mut() {
            *first = super::Cell::Int(to);
        }
        self.facts.remove(old).map_err(storage(DURING))?;
        let bytes = row.encode()?;
        self.facts.insert((table.as_bytes(), day.as_bytes(), to), bytes.as_slice()).map_err(storage(DURING))?;
        self.owners.remove((table.as_bytes(), from)).map_err(storage(DURING))?;
        self.owners.insert((table.as_bytes(), to), identity).map_err(storage(DURING))?;
        self.parts.insert((table, day.as_str()), ()).map_err(storage(DURING))?;
        Ok(())
    }
}
