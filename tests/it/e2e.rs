//! The whole pipeline over embedded IDBs: simulator → two HA pairs → extraction → merge → transform → mart.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_pipeline_matches_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    // From 21:00 to 03:00 UTC: calls, sessions, state periods and aggregates span midnight.
    let (app, truth) = embedded_mart_from(dir.path(), 7, T0 - 3 * 3600, 6).await;
    assert!(truth.calls.values().any(|c| c.start_ts < T0 && c.end_ts > T0), "a call spans midnight");
    assert!(truth.call_count() > 500, "enough calls to mean something: {}", truth.call_count());
    let n = assert_mart_matches_truth(&app, &truth).await;
    eprintln!("{n} calls match");
    // Offline export of the stopped appliance's mart, read back by DuckDB.
    drop(app);
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["export", "--table", "SM_RES_STATE_FACT", "--data-dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "offline export: {}", String::from_utf8_lossy(&o.stderr));
    let f = out.path().join("sm_res_state_fact_all_all.parquet");
    let secs: i64 = truth.states.iter().map(|s| s.end_ts - s.start_ts).sum();
    assert_eq!(
        duckdb_scalar(&f, "SELECT count(*) || ',' || sum(total_duration) FROM read_parquet('{}')"),
        format!("{},{secs}", truth.states.len())
    );
    // Offline digests: one line per partition, the interaction rows adding up to the calls.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["digest", "--table", "interaction_fact", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "offline digest: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: usize = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').nth(2).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(rows, n);
}

/// Every saved report in queries/ runs against a real mart and returns rows (data-driven: adding a report adds
/// no Rust code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_queries_run() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _truth) = embedded_mart(dir.path(), 8, 3).await;
    let mut n = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/queries")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let rows = sql(&app, &text).await;
        assert!(!rows.is_empty(), "{} returns rows", path.display());
        n += 1;
    }
    assert!(n >= 5, "saved queries found: {n}");
}
