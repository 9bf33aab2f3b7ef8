//! Maintenance on a real mart: vacuum deletes exactly the files no retained version needs (the mart still equals
//! the ground truth, expired versions are refused), retention removes whole old days and nothing else, and every
//! task is recorded with its figures in `ccmart_maintenance_runs`.

use crate::common::*;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::sim::Simulator;

fn parquet_files(app: &Appliance, table: &str) -> u64 {
    ccmart::maintenance::storage_of(&app.mart().root().join(table)).0
}

/// Calls and talk seconds as mart version `v` saw them.
async fn count_at(app: &Appliance, v: u64) -> String {
    let snap = app.store().snapshot(v).unwrap().expect("version retained");
    let q = "SELECT count(*) AS n, sum(duration) AS d FROM interaction_fact";
    let r = app.engine().run(&snap, q).await.unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&r.batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_and_retention_keep_what_is_needed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(46);
    let mut cfg = embedded_config(dir.path(), settings.clone());
    cfg.maintenance.interval_secs = 0;
    cfg.maintenance.version_retention_secs = 0;
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    // Six hours across midnight, published hour by hour: many versions, each rewriting today's partitions.
    let start = T0 - 3 * 3600;
    let mut d = SimulationDriver::new(&cfg, Simulator::new(settings, start), app.embedded_idbs()).await.unwrap();
    for h in 0..6 {
        d.advance(start + h * 3600, start + (h + 1) * 3600, 1800).await.unwrap();
        app.drain(1000).await.unwrap();
    }
    d.finish(start + 6 * 3600).await.unwrap();
    app.drain(1000).await.unwrap();
    let truth = d.simulator().truth();
    assert_mart_matches_truth(&app, &truth).await;
    let latest = app.store().latest_snapshot().unwrap().unwrap();
    assert!(latest.version >= 6, "{} versions", latest.version);
    assert!(app.store().snapshot(1).unwrap().is_some());
    // With a version retention, vacuum keeps what retained versions read: version 1 still answers the same.
    let v1 = count_at(&app, 1).await;
    app.set_maintenance(ccmart::maintenance::MaintenanceSettings { version_retention_secs: 3600, ..cfg.maintenance });
    let kept = app.maintain(chrono::Utc::now().timestamp()).await.unwrap();
    assert_eq!(kept.versions_dropped, 0);
    assert_eq!(count_at(&app, 1).await, v1, "an old version reads the same after vacuum");
    app.set_maintenance(cfg.maintenance);
    let before = parquet_files(&app, "interaction_fact");

    // Vacuum with no version retention: only the newest version's files stay, and the mart is unchanged.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = app.maintain(chrono::Utc::now().timestamp()).await.unwrap();
    assert_eq!(report.expired_partitions, 0);
    assert_eq!(report.versions_dropped as u64, latest.version - 1);
    assert!(report.files_deleted > 0);
    let after = parquet_files(&app, "interaction_fact");
    assert!(after <= before, "interaction_fact: {before} files before, {after} after");
    // What is left is exactly what the newest version reads — no file of an older version, no orphan — and no
    // partition holds more than the appends of the cycles since its last compaction.
    let newest = app.store().latest_snapshot().unwrap().unwrap();
    for t in ccmart::transform::schema::MART_TABLES {
        let read = app.mart().files_at(t.name, newest.tables[t.name]).await.unwrap();
        assert_eq!(
            parquet_files(&app, t.name),
            read.len() as u64,
            "{}: only the files the newest version reads",
            t.name
        );
        let mut per_partition: std::collections::BTreeMap<String, usize> = Default::default();
        for f in &read {
            *per_partition.entry(f.path.split('/').next().unwrap_or("").to_string()).or_default() += 1;
        }
        let most = per_partition.values().max().copied().unwrap_or(0);
        assert!(most < ccmart::mart::COMPACT_AFTER_FILES, "{}: {most} files in one partition", t.name);
    }
    assert!(app.store().snapshot(1).unwrap().is_none(), "expired versions are refused, not half-readable");
    assert_mart_matches_truth(&app, &truth).await;
    // Idempotent.
    assert_eq!(app.maintain(chrono::Utc::now().timestamp()).await.unwrap().files_deleted, 0);

    // Retention: with the clock moved on so that only the second day is within the kept days.
    let first_day = ccmart::transform::day_of(start);
    let second_day = ccmart::transform::day_of(start + 6 * 3600);
    assert_ne!(first_day, second_day);
    let per_day = |rows: Vec<Vec<String>>| rows.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect::<Vec<_>>();
    let q = "SELECT day, count(*) FROM interaction_fact GROUP BY day ORDER BY day";
    let counts = per_day(sql(&app, q).await);
    assert_eq!(counts.len(), 2, "{counts:?}");
    let kept_days = 30;
    let now = start + 6 * 3600 + i64::from(kept_days) * 86_400;
    app.set_maintenance(ccmart::maintenance::MaintenanceSettings { mart_retention_days: kept_days, ..cfg.maintenance });
    let report = app.maintain(now).await.unwrap();
    assert!(report.expired_partitions > 0);
    assert_eq!(per_day(sql(&app, q).await), vec![counts[1].clone()], "only {first_day} left the mart");
    for t in ccmart::transform::schema::MART_TABLES.iter().filter(|t| t.partitioned) {
        let left = sql(&app, &format!("SELECT count(*) FROM {} WHERE day < '{second_day}'", t.name)).await;
        assert_eq!(left[0][0], "0", "{} keeps nothing before {second_day}", t.name);
    }

    let runs = sql(
        &app,
        "SELECT task, table_name, files_before, files_after, detail FROM ccmart_maintenance_runs ORDER BY seq",
    )
    .await;
    // Runs: kept (retention 1 h), vacuumed (no retention), idempotent, day retention.
    let vacuum =
        runs.iter().filter(|r| r[0] == "vacuum" && r[1] == "interaction_fact").nth(1).expect("vacuum recorded");
    assert_eq!((vacuum[2].clone(), vacuum[3].clone()), (before.to_string(), after.to_string()), "{vacuum:?}");
    assert!(runs.iter().any(|r| r[0] == "retention" && r[1] == "interaction_fact" && r[4].contains(&first_day)));
    assert!(runs.iter().any(|r| r[0] == "catalog"));

    // An operator can ask for a run now; it happens after the next cycle.
    let before = sql(&app, "SELECT count(*) FROM ccmart_maintenance_runs").await;
    let (base, _stop) = serve_app(&app).await;
    let r = reqwest::Client::new().post(format!("{base}/v1/admin/maintenance")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["newly_requested"], true);
    app.cycle().await.unwrap();
    let after = sql(&app, "SELECT count(*) FROM ccmart_maintenance_runs").await;
    assert!(after[0][0].parse::<u64>().unwrap() > before[0][0].parse::<u64>().unwrap(), "a run was recorded");
}

/// The staging purge frees the rows of interactions whose facts are all older than the staging retention: the
/// mart does not change (its partitions are rebuilt from facts, which stay), the newer interactions keep their
/// rows, and the run is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_purge_frees_old_rows_and_keeps_the_mart() {
    let dir = tempfile::tempdir().unwrap();
    let start = T0 - 3 * 3600;
    let (mut app, truth) = embedded_mart_from(dir.path(), 48, start, 6).await;
    let snap = app.store().latest_snapshot().unwrap().unwrap();
    let digests = |app: &Appliance| {
        let (engine, snap) = (app.engine(), app.store().latest_snapshot().unwrap().unwrap());
        async move { ccmart::query::digest::digests(&engine, &snap, &[], None).await.unwrap() }
    };
    let before = digests(&app).await;
    let staged = app.store().staged_row_count().unwrap();
    // The clock one day after the data, one day of staging retention: the first day's interactions go.
    let settings = ccmart::maintenance::MaintenanceSettings { staging_retention_days: 1, ..app.config().maintenance };
    app.set_maintenance(settings);
    let report = app.maintain(start + 6 * 3600 + 86_400).await.unwrap();
    assert!(report.staging_rows_purged > 0, "rows of the first day were purged");
    let left = app.store().staged_row_count().unwrap();
    assert_eq!(left + report.staging_rows_purged as u64, staged);
    assert!(left > 0, "interactions with facts on the second day keep their rows");
    // Nothing to transform again, the same mart.
    app.cycle().await.unwrap();
    assert_eq!(app.store().latest_snapshot().unwrap().unwrap().version, snap.version);
    assert_eq!(digests(&app).await, before);
    assert_mart_matches_truth(&app, &truth).await;
    let runs = sql(&app, "SELECT detail FROM ccmart_maintenance_runs WHERE task = 'staging purge'").await;
    assert!(runs.iter().any(|r| r[0].contains(&report.staging_rows_purged.to_string())), "{runs:?}");
}

fn maintenance_runs(app: &Appliance) -> usize {
    app.store().maintenance_runs().unwrap().len()
}

/// Maintenance is due by the appliance's clock: with a manual clock it runs exactly when its interval has passed
/// (and not again before the next one), with no test sleeping through an interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_runs_when_its_interval_passes_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(46);
    let mut cfg = embedded_config(dir.path(), settings.clone());
    cfg.maintenance.interval_secs = 3600;
    let clock = ccmart::clock::Clock::manual(T0 + 2 * 3600);
    let mut app = Appliance::open_with_clock(cfg.clone(), FaultInjector::disarmed(), clock.clone()).await.unwrap();
    let mut d = SimulationDriver::new(&cfg, Simulator::new(settings, T0), app.embedded_idbs()).await.unwrap();
    d.advance(T0, T0 + 3600, 1800).await.unwrap();
    app.drain(1000).await.unwrap();
    assert_eq!(maintenance_runs(&app), 0, "not before its first interval");
    clock.advance(std::time::Duration::from_secs(3599));
    app.cycle().await.unwrap();
    assert_eq!(maintenance_runs(&app), 0, "one second early");
    clock.advance(std::time::Duration::from_secs(1));
    app.cycle().await.unwrap();
    let first = maintenance_runs(&app);
    assert!(first > 0, "due once the interval has passed");
    app.cycle().await.unwrap();
    assert_eq!(maintenance_runs(&app), first, "not again before the next interval");
    clock.advance(std::time::Duration::from_secs(3600));
    app.cycle().await.unwrap();
    assert!(maintenance_runs(&app) > first, "and again after it");
}
