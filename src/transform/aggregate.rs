//! Queue aggregates (`AG2_QUEUE_SUBHR`, `AG2_QUEUE_HOUR`, `AG2_QUEUE_DAY`): offered, accepted, abandoned, service
//! level and waits per queue and interval, attributed to the interval in which the interaction entered the queue.
//!
//! They are recomputed per day from that day's `MEDIATION_SEGMENT_FACT` rows whenever an interaction of that day
//! is transformed (group `Z:AGQ:<day>`), so late or corrected data fixes exactly the buckets of its day and the
//! result does not depend on the order in which facts arrived.

use super::schema::{MartTable, AG2_QUEUE_DAY, AG2_QUEUE_HOUR, AG2_QUEUE_SUBHR, MEDIATION_SEGMENT_FACT};
use super::{surrogate_key, INTERVAL_SECS};
use crate::staging::{Cell, FactAddress, FactRow, GroupOutput};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default service-level threshold: a call accepted within this many seconds of entering the queue counts as
/// answered within service level.
pub const DEFAULT_SERVICE_LEVEL_SECS: i64 = 20;
/// Default short-abandon threshold: a call abandoned within this many seconds counts as a short abandon.
pub const DEFAULT_SHORT_ABANDON_SECS: i64 = 10;

/// Thresholds of the queue aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueThresholds {
    /// Service-level threshold, seconds.
    pub service_level_secs: i64,
    /// Short-abandon threshold, seconds.
    pub short_abandon_secs: i64,
}

impl Default for QueueThresholds {
    fn default() -> Self {
        QueueThresholds {
            service_level_secs: DEFAULT_SERVICE_LEVEL_SECS,
            short_abandon_secs: DEFAULT_SHORT_ABANDON_SECS,
        }
    }
}

/// The aggregate group that covers `day`.
pub fn queue_aggregate_group(day: &str) -> String {
    format!("Z:AGQ:{day}")
}

#[derive(Debug, Default, Clone, Copy)]
struct Measures {
    offered: i64,
    accepted: i64,
    abandoned: i64,
    short_abandoned: i64,
    accepted_within_sl: i64,
    accepted_wait: i64,
    abandoned_wait: i64,
    max_wait: i64,
}

fn col(t: &MartTable, name: &str) -> usize {
    t.columns.iter().position(|(c, _)| *c == name).unwrap_or(usize::MAX)
}

fn int_at(r: &FactRow, i: usize) -> Option<i64> {
    match r.0.get(i) {
        Some(Cell::Int(v)) => Some(*v),
        _ => None,
    }
}

/// Computes the three queue aggregate tables of `day` from that day's mediation segments.
pub fn queue_aggregates(day: &str, segments: &[FactRow], thresholds: QueueThresholds) -> GroupOutput {
    let t = &MEDIATION_SEGMENT_FACT;
    let (queue, start, wait, abandoned, distributed) = (
        col(t, "resource_key"),
        col(t, "start_ts"),
        col(t, "mediation_duration"),
        col(t, "abandoned"),
        col(t, "distributed"),
    );
    let mut out = GroupOutput { group: queue_aggregate_group(day), ..Default::default() };
    for (table, width) in [(&AG2_QUEUE_SUBHR, INTERVAL_SECS), (&AG2_QUEUE_HOUR, 3600), (&AG2_QUEUE_DAY, 86_400)] {
        let mut buckets: BTreeMap<(i64, i64), Measures> = BTreeMap::new();
        for r in segments {
            let (Some(q), Some(s), Some(w)) = (int_at(r, queue), int_at(r, start), int_at(r, wait)) else { continue };
            let m = buckets.entry((q, s - s.rem_euclid(width))).or_default();
            m.offered += 1;
            m.max_wait = m.max_wait.max(w);
            if int_at(r, distributed) == Some(1) {
                m.accepted += 1;
                m.accepted_wait += w;
                if w <= thresholds.service_level_secs {
                    m.accepted_within_sl += 1;
                }
            } else if int_at(r, abandoned) == Some(1) {
                m.abandoned += 1;
                m.abandoned_wait += w;
                if w <= thresholds.short_abandon_secs {
                    m.short_abandoned += 1;
                }
            }
        }
        for ((q, bucket), m) in buckets {
            let key = surrogate_key(&[table.name, &q.to_string(), &bucket.to_string()]);
            out.facts.push((
                FactAddress { table: table.name.to_string(), day: day.to_string(), key },
                FactRow(vec![
                    Cell::Int(key),
                    Cell::Int(q),
                    Cell::Int(bucket),
                    Cell::Int(m.offered),
                    Cell::Int(m.accepted),
                    Cell::Int(m.abandoned),
                    Cell::Int(m.short_abandoned),
                    Cell::Int(m.accepted_within_sl),
                    Cell::Int(m.accepted_wait),
                    Cell::Int(m.abandoned_wait),
                    Cell::Int(m.max_wait),
                    Cell::Text(day.to_string()),
                ]),
            ));
        }
    }
    out
}
