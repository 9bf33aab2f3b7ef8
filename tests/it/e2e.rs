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

/// Every saved report in queries/ runs against a real mart with its default parameters and returns rows
/// (data-driven: adding a report adds no Rust code); parameters narrow the result and are bound as values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_reports_run_with_bound_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 8, 3).await;
    let snap = app.store().latest_snapshot().unwrap().unwrap();
    let reports = ccmart::query::reports::saved_reports().unwrap();
    assert!(reports.len() >= 10);
    for r in reports.values() {
        let bound = ccmart::query::reports::bind(r, &Default::default()).unwrap();
        let res = app
            .engine()
            .run_with_params(&snap, &r.sql, Some(bound))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        assert!(res.row_count > 0, "{} returns rows", r.name);
    }
    // The new reports against the ground truth: hourly volumes add up to every call; the handle-time buckets
    // hold every answered agent leg.
    let column_sum = |res: &ccmart::query::QueryResult, name: &str| -> i64 {
        let idx = res.schema.index_of(name).unwrap();
        res.batches
            .iter()
            .map(|b| {
                let c = datafusion::arrow::compute::cast(b.column(idx), &datafusion::arrow::datatypes::DataType::Int64)
                    .unwrap();
                c.as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().iter().flatten().sum::<i64>()
            })
            .sum()
    };
    let run_default = |name: &str| {
        let r = &reports[name];
        (r, ccmart::query::reports::bind(r, &Default::default()).unwrap())
    };
    let (r, p) = run_default("hourly_volumes");
    let res = app.engine().run_with_params(&snap, &r.sql, Some(p)).await.unwrap();
    assert_eq!(column_sum(&res, "interactions"), truth.call_count() as i64);
    let answered_calls = truth
        .calls
        .values()
        .filter(|c| c.legs.iter().any(|l| l.result != ccmart::sim::truth::LegResult::Redirected))
        .count();
    assert_eq!(column_sum(&res, "answered"), answered_calls as i64);
    let (r, p) = run_default("handle_time_distribution");
    let res = app.engine().run_with_params(&snap, &r.sql, Some(p)).await.unwrap();
    let answered_legs: usize = truth
        .calls
        .values()
        .map(|c| c.legs.iter().filter(|l| l.result != ccmart::sim::truth::LegResult::Redirected).count())
        .sum();
    assert_eq!(column_sum(&res, "answered"), answered_legs as i64);
    let (r, p) = run_default("calls_by_segment");
    let res = app.engine().run_with_params(&snap, &r.sql, Some(p)).await.unwrap();
    assert_eq!(column_sum(&res, "calls"), truth.call_count() as i64);

    // A day range: the per-interval counts add up to the calls of that day; another day has none.
    let r = &reports["calls_per_interval"];
    let day = ccmart::transform::day_of(T0);
    let run = |from: &str, to: &str| {
        let params: std::collections::HashMap<String, String> =
            [("from".to_string(), from.to_string()), ("to".to_string(), to.to_string())].into();
        ccmart::query::reports::bind(r, &params).unwrap()
    };
    let res = app.engine().run_with_params(&snap, &r.sql, Some(run(&day, &day))).await.unwrap();
    let idx = res.schema.index_of("interactions").unwrap();
    let total: i64 = res
        .batches
        .iter()
        .map(|b| {
            b.column(idx)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .iter()
                .flatten()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(total as usize, truth.calls.values().filter(|c| ccmart::transform::day_of(c.start_ts) == day).count());
    let res = app.engine().run_with_params(&snap, &r.sql, Some(run("2001-01-01", "2001-01-02"))).await.unwrap();
    assert_eq!(res.row_count, 0);
    // A text parameter is a value, never SQL: an injection attempt matches nothing and changes nothing.
    let q = &reports["abandon_rate_by_queue"];
    let params: std::collections::HashMap<String, String> = [("queue".to_string(), "x' OR '1'='1".to_string())].into();
    let res = app
        .engine()
        .run_with_params(&snap, &q.sql, Some(ccmart::query::reports::bind(q, &params).unwrap()))
        .await
        .unwrap();
    assert_eq!(res.row_count, 0);
    let params: std::collections::HashMap<String, String> = [("queue".to_string(), "Q_Sales%".to_string())].into();
    let res = app
        .engine()
        .run_with_params(&snap, &q.sql, Some(ccmart::query::reports::bind(q, &params).unwrap()))
        .await
        .unwrap();
    assert!(res.row_count >= 1);
}

/// Agents change group during the day (one per site every hour): the membership history in
/// `RESOURCE_GROUP_FACT` equals the simulator's, and joining a fact's time into it reports each leg in the group
/// the agent belonged to *then* — which differs from using any single assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_reported_in_the_group_of_each_period() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 11, 5).await;
    let moved = truth.memberships.iter().filter(|m| m.to.is_some()).count();
    assert!(moved >= 4, "agents changed group: {moved}");

    let history = sql(
        &app,
        "SELECT r.resource_cfg_dbid, g.group_cfg_dbid, g.group_name, m.start_ts, coalesce(m.end_ts, -1), m.active \
         FROM resource_group_fact m JOIN resource_ r USING (resource_key) JOIN resource_group g USING (group_key)",
    )
    .await;
    let expected: Vec<Vec<String>> = truth
        .memberships
        .iter()
        .map(|m| {
            let to = m.to.unwrap_or(-1);
            let active = i64::from(m.to.is_none());
            [m.agent_dbid.to_string(), m.group_dbid.to_string(), m.group_name.clone()]
                .into_iter()
                .chain([m.from.to_string(), to.to_string(), active.to_string()])
                .collect()
        })
        .collect();
    assert_same_rows(history, expected, "membership history");

    let by_group = sql(
        &app,
        "SELECT g.group_name, count(*), sum(f.talk_duration) FROM interaction_resource_fact f \
         JOIN resource_group_fact m ON f.resource_key = m.resource_key AND f.start_ts >= m.start_ts \
              AND (m.end_ts IS NULL OR f.start_ts < m.end_ts) \
         JOIN resource_group g ON g.group_key = m.group_key GROUP BY 1",
    )
    .await;
    let tally = |group_at: &dyn Fn(i64, i64) -> String| {
        let mut t: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for leg in truth.calls.values().flat_map(|c| &c.legs) {
            let e = t.entry(group_at(leg.agent_dbid, leg.start_ts)).or_default();
            e.0 += 1;
            e.1 += leg.talk_secs;
        }
        t.into_iter().map(|(g, (n, talk))| vec![g, n.to_string(), talk.to_string()]).collect::<Vec<_>>()
    };
    let in_period = tally(&|agent, ts| truth.group_of(agent, ts).expect("a member at every moment").group_name.clone());
    let first_group = tally(&|agent, _| {
        truth.memberships.iter().filter(|m| m.agent_dbid == agent).min_by_key(|m| m.from).unwrap().group_name.clone()
    });
    assert_ne!(in_period, first_group, "the history matters for this data");
    assert_same_rows(by_group, in_period, "legs and talk time per group, by period");
}

/// Queue thresholds are configuration the aggregates depend on: after an edit, a restart recomputes the queue
/// aggregates of every day with the new thresholds (not only days that get new calls), so the mart equals what an
/// appliance configured that way from the start would hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_queue_thresholds_recomputes_the_aggregates_of_every_day() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart_from(dir.path(), 52, T0 - 3 * 3600, 6).await;
    assert_mart_matches_truth(&app, &truth).await;
    let mut cfg = app.config().clone();
    drop(app);
    cfg.transform.service_level_secs = 7;
    cfg.transform.short_abandon_secs = 2;
    cfg.transform.queues = vec![ccmart::transform::aggregate::QueueThresholds {
        dbid: ccmart::sim::queue_dbid(1, 0),
        service_level_secs: Some(40),
        short_abandon_secs: None,
    }];
    cfg.validate().unwrap();
    // The IDBs hold no new rows for the reopened appliance (its embedded IDBs start empty): only the edit changes it.
    let app = open_and_drain(&cfg).await;
    assert_mart_matches_truth(&app, &truth).await;
    let applied = sql(
        &app,
        "SELECT DISTINCT r.resource_cfg_dbid, a.day, a.service_level_threshold_secs, a.short_abandon_threshold_secs \
         FROM ag2_queue_subhr a JOIN resource_ r ON a.resource_key = r.resource_key",
    )
    .await;
    let days: std::collections::BTreeSet<&str> = applied.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(days.len(), 2, "both days were recomputed: {applied:?}");
    for r in &applied {
        let want = if r[0] == ccmart::sim::queue_dbid(1, 0).to_string() { ["40", "2"] } else { ["7", "2"] };
        assert_eq!([r[2].as_str(), r[3].as_str()], want, "thresholds applied to queue {} on {}", r[0], r[1]);
    }
}
