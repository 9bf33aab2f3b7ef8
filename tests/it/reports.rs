//! Every saved report against the ground truth, driven by `tests/data/reports/expected.toml`: for a fixed
//! simulator seed, each report's answer must agree with figures the simulator knows (sums, maxima, row counts).

use crate::common::*;
use ccmart::sim::truth::LegResult;
use ccmart::sim::GroundTruth;
use datafusion::arrow::array::{Array, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use std::collections::{BTreeMap, BTreeSet};

#[derive(serde::Deserialize)]
struct Expectations {
    check: Vec<Check>,
}

#[derive(serde::Deserialize)]
struct Check {
    report: String,
    measure: String,
    truth: String,
}

/// The figures of the ground truth that expectations may name.
fn truth_figures(t: &GroundTruth) -> BTreeMap<&'static str, f64> {
    let calls = t.calls.values();
    let visits = || t.calls.values().flat_map(|c| c.queue_visits.iter());
    let legs = || t.calls.values().flat_map(|c| c.legs.iter());
    let answered = |l: &&ccmart::sim::truth::TruthLeg| l.result != LegResult::Redirected;
    let not_ready = || t.states.iter().filter(|s| s.state == ccmart::source::contract::agent_state::NOT_READY);
    let queue_hours: BTreeSet<(i64, i64)> =
        visits().map(|v| (v.queue_dbid, v.start_ts - v.start_ts.rem_euclid(3600))).collect();
    let agents_with_states: BTreeSet<i64> = t.states.iter().map(|s| s.agent_dbid).collect();
    let n = |x: usize| x as f64;
    BTreeMap::from([
        ("calls", n(calls.len())),
        ("calls_answered", n(t.calls.values().filter(|c| c.legs.iter().any(|l| answered(&l))).count())),
        ("calls_never_answered", n(t.calls.values().filter(|c| !c.legs.iter().any(|l| answered(&l))).count())),
        (
            "calls_with_an_abandoned_visit",
            n(t.calls.values().filter(|c| c.queue_visits.iter().any(|v| v.abandoned)).count()),
        ),
        ("longest_call_secs", t.calls.values().map(|c| c.end_ts - c.start_ts).max().unwrap_or(0) as f64),
        ("queue_visits", n(visits().count())),
        ("queue_visits_up_to_50", n(visits().count().min(50))),
        ("abandoned_visits", n(visits().filter(|v| v.abandoned).count())),
        ("longest_wait_secs", visits().map(|v| v.end_ts - v.start_ts).max().unwrap_or(0) as f64),
        ("queue_hours_with_visits", n(queue_hours.len())),
        ("agent_legs", n(legs().count())),
        ("answered_legs", n(legs().filter(answered).count())),
        ("transferred_legs", n(legs().filter(|l| l.result == LegResult::Transferred).count())),
        ("redirected_legs", n(legs().filter(|l| l.result == LegResult::Redirected).count())),
        ("talk_secs", legs().filter(answered).map(|l| l.talk_secs).sum::<i64>() as f64),
        ("hold_secs", legs().filter(answered).map(|l| l.hold_secs).sum::<i64>() as f64),
        ("acw_secs", legs().filter(answered).map(|l| l.acw_secs).sum::<i64>() as f64),
        ("not_ready_periods", n(not_ready().count())),
        ("not_ready_secs", not_ready().map(|s| s.end_ts - s.start_ts).sum::<i64>() as f64),
        ("agents_with_state_time", n(agents_with_states.len())),
    ])
}

/// Evaluates `measure` (rows | sum(c) | max(c) | distinct(c)) over a report's answer.
fn measure(res: &ccmart::query::QueryResult, measure: &str) -> f64 {
    if measure == "rows" {
        return res.row_count as f64;
    }
    let (func, column) = measure.strip_suffix(')').and_then(|m| m.split_once('(')).expect("measure like sum(col)");
    let idx = res.schema.index_of(column).unwrap_or_else(|_| panic!("no column {column}"));
    match func {
        "distinct" => {
            let mut seen = BTreeSet::new();
            for b in &res.batches {
                let c = cast(b.column(idx), &DataType::Utf8).unwrap();
                let c = c.as_any().downcast_ref::<StringArray>().unwrap();
                seen.extend(c.iter().flatten().map(str::to_string));
            }
            seen.len() as f64
        }
        "sum" | "max" => {
            let values: Vec<f64> = res
                .batches
                .iter()
                .flat_map(|b| {
                    let c = cast(b.column(idx), &DataType::Float64).unwrap();
                    let c = c.as_any().downcast_ref::<Float64Array>().unwrap().clone();
                    (0..c.len()).filter(|i| !c.is_null(*i)).map(|i| c.value(i)).collect::<Vec<_>>()
                })
                .collect();
            if func == "sum" {
                values.iter().sum()
            } else {
                values.iter().cloned().fold(0.0, f64::max)
            }
        }
        other => panic!("unknown measure function {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saved_report_agrees_with_the_ground_truth() {
    let path = crate::common::repo_file("tests/data/reports/expected.toml").display().to_string();
    let spec: Expectations = toml::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .expect("expected.toml parses");
    let reports = ccmart::query::reports::saved_reports().unwrap();
    for name in reports.keys() {
        assert!(spec.check.iter().any(|c| &c.report == name), "report {name} has no expectation in {path}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 48, 3).await;
    let figures = truth_figures(&truth);
    let snap = app.store().latest_snapshot().unwrap().unwrap();
    let mut results = BTreeMap::new();
    let mut failures = Vec::new();
    for c in &spec.check {
        let report = reports.get(&c.report).unwrap_or_else(|| panic!("{path}: no saved report {}", c.report));
        if !results.contains_key(&c.report) {
            let params = ccmart::query::reports::bind(report, &Default::default()).unwrap();
            let res = app.engine().run_with_params(&snap, &report.sql, Some(params)).await.unwrap();
            assert!(!res.truncated, "{} answer is complete", c.report);
            results.insert(c.report.clone(), res);
        }
        let got = measure(&results[&c.report], &c.measure);
        let want = *figures.get(c.truth.as_str()).unwrap_or_else(|| panic!("{path}: unknown truth figure {}", c.truth));
        if (got - want).abs() > 1e-9 {
            failures.push(format!("{} {} = {got}, ground truth {} = {want}", c.report, c.measure, c.truth));
        }
    }
    assert!(failures.is_empty(), "reports disagree with the ground truth:\n{}", failures.join("\n"));
}
