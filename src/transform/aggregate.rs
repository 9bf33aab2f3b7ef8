//! Queue aggregates (`AG2_QUEUE_SUBHR`, `AG2_QUEUE_HOUR`, `AG2_QUEUE_DAY`): offered, accepted, abandoned, service
//! level (with each queue's own thresholds), average speed of answer and waits per queue and interval, attributed to
//! the interval in which the interaction entered the queue; and agent aggregates (`AG2_AGENT_*`): legs, talk, hold,
//! after-call work, engage and handle time, state time and occupancy per agent and interval.
//!
//! A day's aggregates (groups `Z:AGQ:<day>`, `Z:AGA:<day>`) are recomputed from the facts of that day and the day
//! before whenever staging sees one of those facts added, changed or removed ([`dependents`]), so late or corrected
//! data fixes the buckets it falls into, a re-transform that changes nothing recomputes nothing, and the result does
//! not depend on the order in which facts arrived. Rows of buckets whose figures did not change stay as they were.

use super::schema::{MartTable, AG2_QUEUE_DAY, AG2_QUEUE_HOUR, AG2_QUEUE_SUBHR, MEDIATION_SEGMENT_FACT};
use super::{surrogate_key, INTERVAL_SECS};
use crate::model::{Day, GroupKey};
use crate::staging::{Cell, FactAddress, FactRow, GroupOutput};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default service-level threshold: a call accepted within this many seconds of entering the queue counts as
/// answered within service level.
pub const DEFAULT_SERVICE_LEVEL_SECS: i64 = 20;
/// Default short-abandon threshold: a call abandoned within this many seconds counts as a short abandon.
pub const DEFAULT_SHORT_ABANDON_SECS: i64 = 10;

/// Transform settings (`[transform]` in the config): aggregate thresholds and the reporting time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSettings {
    /// Service-level threshold, seconds (queues without an entry in `queue`).
    pub service_level_secs: i64,
    /// Short-abandon threshold, seconds (queues without an entry in `queue`).
    pub short_abandon_secs: i64,
    /// IANA time zone of the `DATE_TIME` `local_*` columns (e.g. `Europe/Berlin`).
    pub time_zone: String,
    /// Attached-data keys reported in `INTERACTION_USER_DATA_FACT`.
    pub user_data_keys: Vec<String>,
    /// Per-queue thresholds (`[[transform.queue]]`), by the queue's configuration DBID.
    #[serde(rename = "queue", skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueThresholds>,
}

/// Service-level and short-abandon thresholds of one queue, overriding the `[transform]` defaults. Queues are
/// named by their configuration DBID (`RESOURCE_.resource_cfg_dbid`), which survives a rename of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueThresholds {
    /// Configuration DBID of the queue (its DN in `GC_ENDPOINT`).
    pub dbid: i64,
    /// Service-level threshold of this queue, seconds (unset: `transform.service_level_secs`).
    pub service_level_secs: Option<i64>,
    /// Short-abandon threshold of this queue, seconds (unset: `transform.short_abandon_secs`).
    pub short_abandon_secs: Option<i64>,
}

impl Default for TransformSettings {
    fn default() -> Self {
        TransformSettings {
            service_level_secs: DEFAULT_SERVICE_LEVEL_SECS,
            short_abandon_secs: DEFAULT_SHORT_ABANDON_SECS,
            time_zone: "UTC".into(),
            user_data_keys: vec!["ServiceType".into(), "CustomerSegment".into()],
            queues: Vec::new(),
        }
    }
}

impl TransformSettings {
    /// The configured time zone (UTC when it does not parse; configuration validation rejects that earlier).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// (service-level, short-abandon) thresholds of the queue with configuration DBID `dbid`.
    pub fn thresholds_for(&self, dbid: i64) -> (i64, i64) {
        let q = self.queues.iter().find(|q| q.dbid == dbid);
        (
            q.and_then(|q| q.service_level_secs).unwrap_or(self.service_level_secs),
            q.and_then(|q| q.short_abandon_secs).unwrap_or(self.short_abandon_secs),
        )
    }

    /// Thresholds by queue resource key (what the aggregate sees), for every queue with an override.
    fn thresholds_by_key(&self) -> BTreeMap<i64, (i64, i64)> {
        self.queues.iter().map(|q| (super::endpoint_resource_key(q.dbid), self.thresholds_for(q.dbid))).collect()
    }

    /// A digest of everything the aggregates depend on besides the facts. When it changes (a threshold was
    /// edited), every day's aggregates are recomputed, so the mart stays a function of the IDBs and the config.
    pub fn aggregate_fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(format!("sl={};short={};", self.service_level_secs, self.short_abandon_secs).as_bytes());
        for (key, (sl, short)) in self.thresholds_by_key() {
            h.update(format!("q{key}={sl},{short};").as_bytes());
        }
        h.finalize().to_hex()[..16].to_string()
    }
}

/// The aggregate groups computed from the facts of `table` on `day` (the partition day): facts of a day feed the
/// aggregates of that day and of the next (queue stays, legs and state periods can begin or run past midnight of
/// their partition's day). Staging wakes them whenever such a fact is added, changed or removed.
/// A partition that is not a day (the transform partitions aggregated tables by day only) has none.
pub fn dependents(table: &str, day: &str) -> Vec<GroupKey> {
    use super::schema::{INTERACTION_RESOURCE_FACT, SM_RES_STATE_FACT};
    let group: fn(Day) -> GroupKey = if table == MEDIATION_SEGMENT_FACT.name {
        GroupKey::QueueAggregateDay
    } else if table == INTERACTION_RESOURCE_FACT.name || table == SM_RES_STATE_FACT.name {
        GroupKey::AgentAggregateDay
    } else {
        return Vec::new();
    };
    let Ok(day) = day.parse::<Day>() else { return Vec::new() };
    std::iter::once(day).chain(day.next()).map(group).collect()
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

/// `scale * numerator / denominator`, NULL when the denominator is not positive (an interval without calls has no
/// average, not an average of zero).
fn ratio(numerator: i64, denominator: i64, scale: f64) -> Cell {
    if denominator > 0 {
        Cell::Float(scale * numerator as f64 / denominator as f64)
    } else {
        Cell::Null
    }
}

fn col(t: &MartTable, name: &str) -> usize {
    t.index(name)
}

fn int_at(r: &FactRow, i: usize) -> Option<i64> {
    match r.0.get(i) {
        Some(Cell::Int(v)) => Some(*v),
        _ => None,
    }
}

/// Computes the three queue aggregate tables of `day` from the mediation segments of `day` and the day before
/// (a queue stay can begin after midnight of its interaction's partition); only stays that began on `day` count.
pub fn queue_aggregates(day: Day, segments: &[FactRow], thresholds: &TransformSettings) -> GroupOutput {
    let t = &MEDIATION_SEGMENT_FACT;
    let (queue, start, wait, abandoned, distributed) = (
        col(t, "resource_key"),
        col(t, "start_ts"),
        col(t, "mediation_duration"),
        col(t, "abandoned"),
        col(t, "distributed"),
    );
    let mut out = GroupOutput::new(GroupKey::QueueAggregateDay(day));
    let d0 = day.start();
    let overrides = thresholds.thresholds_by_key();
    let limits =
        |q: i64| overrides.get(&q).copied().unwrap_or((thresholds.service_level_secs, thresholds.short_abandon_secs));
    for (table, width) in [(&AG2_QUEUE_SUBHR, INTERVAL_SECS), (&AG2_QUEUE_HOUR, 3600), (&AG2_QUEUE_DAY, 86_400)] {
        let mut buckets: BTreeMap<(i64, i64), Measures> = BTreeMap::new();
        for r in segments {
            let (Some(q), Some(s), Some(w)) = (int_at(r, queue), int_at(r, start), int_at(r, wait)) else { continue };
            if s < d0 || s >= d0 + 86_400 {
                continue;
            }
            let (sl, short) = limits(q);
            let m = buckets.entry((q, s - s.rem_euclid(width))).or_default();
            m.offered += 1;
            m.max_wait = m.max_wait.max(w);
            if int_at(r, distributed) == Some(1) {
                m.accepted += 1;
                m.accepted_wait += w;
                if w <= sl {
                    m.accepted_within_sl += 1;
                }
            } else if int_at(r, abandoned) == Some(1) {
                m.abandoned += 1;
                m.abandoned_wait += w;
                if w <= short {
                    m.short_abandoned += 1;
                }
            }
        }
        for ((q, bucket), m) in buckets {
            let (sl, short) = limits(q);
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
                    Cell::Int(sl),
                    Cell::Int(short),
                    ratio(m.accepted_wait, m.accepted, 1.0),
                    ratio(m.accepted_within_sl, m.offered - m.short_abandoned, 100.0),
                    ratio(m.abandoned, m.offered, 100.0),
                    Cell::Text(day.to_string()),
                ]),
            ));
        }
    }
    out
}

#[derive(Debug, Default, Clone, Copy)]
struct AgentMeasures {
    offered: i64,
    accepted: i64,
    redirected: i64,
    transferred: i64,
    talk: i64,
    hold: i64,
    hold_count: i64,
    acw: i64,
    acw_count: i64,
    ready: i64,
    not_ready: i64,
    busy: i64,
    acw_state: i64,
}

fn text_at(r: &FactRow, i: usize) -> Option<&str> {
    match r.0.get(i) {
        Some(Cell::Text(v)) => Some(v),
        _ => None,
    }
}

/// Computes the three agent aggregate tables of `day`. `legs` are `INTERACTION_RESOURCE_FACT` rows and `states`
/// `SM_RES_STATE_FACT` rows of `day` and the day before (legs and state periods can start after, or run past,
/// midnight of the interaction's or period's own partition). Leg measures go to the bucket in which the agent was
/// offered the interaction; state time is split over the buckets it covers.
pub fn agent_aggregates(day: Day, legs: &[FactRow], states: &[FactRow]) -> GroupOutput {
    use super::schema::{
        AG2_AGENT_DAY, AG2_AGENT_HOUR, AG2_AGENT_SUBHR, INTERACTION_RESOURCE_FACT as IRF, SM_RES_STATE_FACT as SRS,
    };
    let mut out = GroupOutput::new(GroupKey::AgentAggregateDay(day));
    let d0 = day.start();
    let d1 = d0 + 86_400;
    let c = |t: &MartTable, n: &str| col(t, n);
    for (table, width) in [(&AG2_AGENT_SUBHR, INTERVAL_SECS), (&AG2_AGENT_HOUR, 3600), (&AG2_AGENT_DAY, 86_400)] {
        let mut buckets: BTreeMap<(i64, i64), AgentMeasures> = BTreeMap::new();
        for r in legs {
            if text_at(r, c(&IRF, "resource_role")) != Some("Received") {
                continue;
            }
            let (Some(agent), Some(start)) = (int_at(r, c(&IRF, "resource_key")), int_at(r, c(&IRF, "start_ts")))
            else {
                continue;
            };
            if start < d0 || start >= d1 {
                continue;
            }
            let m = buckets.entry((agent, start - start.rem_euclid(width))).or_default();
            m.offered += 1;
            let g = |n: &str| int_at(r, c(&IRF, n)).unwrap_or(0);
            if g("talk_count") > 0 {
                m.accepted += 1;
            }
            match text_at(r, c(&IRF, "technical_result")) {
                Some("Redirected") => m.redirected += 1,
                Some("Transferred") => m.transferred += 1,
                _ => {}
            }
            m.talk += g("talk_duration");
            m.hold += g("hold_duration");
            m.hold_count += g("hold_count");
            m.acw += g("after_call_work_duration");
            m.acw_count += g("after_call_work_count");
        }
        for r in states {
            let (Some(agent), Some(s), Some(e)) =
                (int_at(r, c(&SRS, "resource_key")), int_at(r, c(&SRS, "start_ts")), int_at(r, c(&SRS, "end_ts")))
            else {
                continue;
            };
            let (s, e) = (s.max(d0), e.min(d1));
            let mut b = s - s.rem_euclid(width);
            while b < e {
                let secs = e.min(b + width) - s.max(b);
                if secs > 0 {
                    let m = buckets.entry((agent, b)).or_default();
                    match text_at(r, c(&SRS, "resource_state")) {
                        Some("Ready") => m.ready += secs,
                        Some("NotReady") => m.not_ready += secs,
                        Some("Busy") => m.busy += secs,
                        Some("AfterCallWork") => m.acw_state += secs,
                        _ => {}
                    }
                }
                b += width;
            }
        }
        for ((agent, bucket), m) in buckets {
            let key = surrogate_key(&[table.name, &agent.to_string(), &bucket.to_string()]);
            let v = [
                m.offered,
                m.accepted,
                m.redirected,
                m.transferred,
                m.talk,
                m.hold,
                m.hold_count,
                m.acw,
                m.acw_count,
                m.ready,
                m.not_ready,
                m.busy,
                m.acw_state,
                m.talk + m.hold,
                m.talk + m.hold + m.acw,
            ];
            let mut row = vec![Cell::Int(key), Cell::Int(agent), Cell::Int(bucket)];
            row.extend(v.into_iter().map(Cell::Int));
            row.push(ratio(m.talk + m.hold + m.acw, m.accepted, 1.0));
            let working = m.busy + m.acw_state;
            row.push(ratio(working, m.ready + working, 100.0));
            row.push(Cell::Text(day.to_string()));
            out.facts.push((FactAddress { table: table.name.to_string(), day: day.to_string(), key }, FactRow(row)));
        }
    }
    out
}
