//! One batch of dirty groups through the transform: every group merged (or held back) by the [`Merger`] and transformed, and the dimension rows the outputs need (the fixed
//! ones once, a reason code's row and a day's calendar rows the first time they are seen). The caller commits
//! the result to staging in one transaction.

use super::aggregate::TransformSettings;
use super::schema::{DATE_TIME, SM_RES_STATE_REASON_FACT};
use super::{calendar_day, fixed_dimensions, reason_dimension, transform_group};
use crate::merge::Merger;
use crate::model::{Day, GroupKey};
use crate::staging::{Cell, GroupOutput, StagingError, Store};
use std::collections::BTreeSet;

/// What the transform made of a batch.
#[derive(Debug, Clone, Default)]
pub struct TransformedBatch {
    /// Groups done (their dirty marks are cleared on commit).
    pub processed: Vec<GroupKey>,
    /// Their outputs, and the dimension rows they need.
    pub outputs: Vec<GroupOutput>,
    /// Groups the merge held back (they stay dirty).
    pub held: usize,
}

/// Transforms `groups` (in the order given) with `merger` deciding each interaction's and session's readiness.
pub fn transform_batch(
    store: &Store,
    merger: &Merger,
    groups: &[GroupKey],
    settings: &TransformSettings,
) -> Result<TransformedBatch, StagingError> {
    let mut batch = TransformedBatch::default();
    let mut days = BTreeSet::new();
    for (g, loaded) in groups.iter().zip(store.load_groups(groups)?) {
        match g {
            // Read by the merge, never transformed.
            GroupKey::SessionControl => {}
            // Aggregates are kept by staging as facts change; a day group woken by an earlier ccmart has nothing
            // left to do.
            GroupKey::AgentAggregateDay(_) | GroupKey::QueueAggregateDay(_) => {}
            _ => {
                let Some(merged) = merger.merge(g, loaded.rows) else {
                    batch.held += 1;
                    continue;
                };
                let out = transform_group(g, &merged, &loaded.after_call_work, settings);
                days.extend(out.facts.iter().filter(|(a, _)| !a.day.is_empty()).map(|(a, _)| a.day.clone()));
                batch.outputs.push(out);
            }
        }
        batch.processed.push(g.clone());
    }
    dimension_rows(store, &mut batch.outputs, days, settings)?;
    Ok(batch)
}

/// Adds the dimension rows `outputs` need and staging does not hold yet.
fn dimension_rows(
    store: &Store,
    outputs: &mut Vec<GroupOutput>,
    days: BTreeSet<String>,
    settings: &TransformSettings,
) -> Result<(), StagingError> {
    let fixed = fixed_dimensions();
    if let Some((a, row)) = fixed.facts.last() {
        if store.fact(&a.table, "", a.key)?.as_ref() != Some(row) {
            outputs.push(fixed);
        }
    }
    let reason_idx = SM_RES_STATE_REASON_FACT.index("reason_code");
    let mut reasons = BTreeSet::new();
    for out in outputs.iter() {
        for (a, row) in &out.facts {
            if a.table == SM_RES_STATE_REASON_FACT.name {
                if let Some(Cell::Text(code)) = row.0.get(reason_idx) {
                    reasons.insert(code.clone());
                }
            }
        }
    }
    for code in reasons {
        let dim = reason_dimension(&code);
        if let Some((a, _)) = dim.facts.first() {
            if store.fact(&a.table, "", a.key)?.is_none() {
                outputs.push(dim);
            }
        }
    }
    for text in days {
        let Ok(day) = text.parse::<Day>() else {
            tracing::error!(day = text, "a fact's partition is not a day; no calendar rows for it");
            continue;
        };
        let calendar = calendar_day(day, settings.tz());
        let exists = match calendar.facts.first() {
            Some((a, row)) => store.fact(DATE_TIME.name, &text, a.key)?.as_ref() == Some(row),
            None => true,
        };
        if !exists {
            outputs.push(calendar);
        }
    }
    Ok(())
}
