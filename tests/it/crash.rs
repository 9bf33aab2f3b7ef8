//! Crash safety (DESIGN.md invariant 1: nothing lost, nothing doubled).
//!
//! 1. An injected crash before the N-th durable step (staging chunk commit, fact commit, Delta partition commit,
//!    catalog publish), for many N spread over a whole run, followed by a restart, gives the same mart as a run
//!    without a crash — checked against the simulator's ground truth.
//! 2. A real `kill -9` of a child `ccmart run` process in the middle of extraction, twice, then a restart: the
//!    mart still equals the ground truth.

use crate::common::*;
use crate::pg_e2e::four_idbs;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::Appliance;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_crash_at_many_points_then_restart_matches_truth() {
    let settings = small_settings(5);
    // A run without a crash tells how many durable steps there are.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = embedded_config(dir.path(), settings.clone());
    cfg.extract.chunk_rows = 60;
    cfg.extract.transform_batch = 40;
    let counter = FaultInjector::disarmed();
    let mut app = Appliance::open(cfg.clone(), counter.clone()).await.unwrap();
    let truth = simulate(&cfg, Some(&app), settings.clone(), 2).await;
    app.drain(10_000).await.unwrap();
    assert_mart_matches_truth(&app, &truth).await;
    let total = counter.steps();
    assert!(total > 50, "a run has many durable steps: {total}");
    drop(app);

    let points: Vec<u64> =
        [1, 2, 3, 5].into_iter().chain((1..=10).map(|i| total * i / 11)).chain([total - 2, total - 1]).collect();
    for n in points {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg.clone();
        c.appliance.data_dir = dir.path().to_path_buf();
        let mut app = Appliance::open(c.clone(), FaultInjector::crash_at(n)).await.unwrap();
        simulate(&c, Some(&app), settings.clone(), 2).await;
        let err = app.drain(10_000).await.expect_err("the injected crash stops the run");
        assert!(err.to_string().contains("injected crash"), "crash at step {n}: {err}");
        drop(app);
        // Restart: same IDB contents (the simulator is deterministic), same data directory.
        let mut app = Appliance::open(c.clone(), FaultInjector::disarmed()).await.unwrap();
        // Whatever the crash interrupted, the published version is whole: every interaction has its resource
        // facts and every resource fact its interaction (they are rewritten in separate Delta commits).
        if app.store().latest_snapshot().unwrap().is_some() {
            let orphans = sql(
                &app,
                "SELECT (SELECT count(*) FROM interaction_fact WHERE interaction_id NOT IN (SELECT interaction_id FROM interaction_resource_fact)) \
                 + (SELECT count(*) FROM interaction_resource_fact WHERE interaction_id NOT IN (SELECT interaction_id FROM interaction_fact))",
            )
            .await;
            assert_eq!(orphans, vec![vec!["0".to_string()]], "half a cycle visible after a crash at step {n}");
        }
        simulate(&c, Some(&app), settings.clone(), 2).await;
        app.drain(10_000).await.unwrap();
        assert_mart_matches_truth(&app, &truth).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_run(config: &std::path::Path) -> std::process::Child {
    // The log goes next to the config (appended across restarts), for the failure messages of the tests.
    let log = std::fs::OpenOptions::new().create(true).append(true).open(config.with_extension("log")).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ccmart run")
}

/// The last lines of the log of the appliance run with `config` (see [`spawn_run`]).
fn log_tail(config: &std::path::Path) -> String {
    let text = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// Polls `/v1/status` until `pred` holds (bounded in time).
async fn wait_status(base: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    try_wait_status(base, pred).await.unwrap_or_else(|| panic!("timed out waiting for: {what}"))
}

/// [`wait_status`], `None` after three minutes.
async fn try_wait_status(base: &str, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/v1/status")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if pred(&v) {
                    return Some(v);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn staged(v: &serde_json::Value) -> u64 {
    v["idbs"].as_array().map_or(0, |a| a.iter().filter_map(|i| i["rows_staged"].as_u64()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_during_extraction_then_restart_matches_truth() {
    let urls = four_idbs("kill");
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(9);
    let mut cfg = postgres_config(dir.path(), [&urls[0], &urls[1], &urls[2], &urls[3]], settings.clone());
    cfg.extract.chunk_rows = 100;
    cfg.extract.max_chunks_per_cycle = 3;
    // This test calls the appliance idle when a cycle stages nothing; with a settling mark a cycle that re-reads
    // rows staged before the kill also stages nothing while a backlog remains (late commits: pg_e2e.rs).
    cfg.extract.settle_secs = 0;
    cfg.appliance.cycle_secs = 1;
    let port = free_port();
    cfg.appliance.listen = format!("127.0.0.1:{port}");
    let metrics_port = free_port();
    cfg.appliance.metrics_listen = format!("127.0.0.1:{metrics_port}");
    cfg.simulator = None;
    let truth = simulate(
        &postgres_config(dir.path(), [&urls[0], &urls[1], &urls[2], &urls[3]], settings.clone()),
        None,
        settings,
        4,
    )
    .await;
    let config_file = dir.path().join("ccmart.toml");
    std::fs::write(&config_file, cfg.to_toml()).unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // First kill: as soon as extraction has staged something.
    let mut child = spawn_run(&config_file);
    wait_status(&base, "first rows staged", |v| staged(v) > 0).await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Second kill: in the middle of a later cycle.
    let mut child = spawn_run(&config_file);
    wait_status(&base, "more rows staged after restart", |v| staged(v) > 1500).await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Final run to completion.
    let mut child = spawn_run(&config_file);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "mart did not reach the simulated call count in time");
        let r = client
            .post(format!("{base}/v1/query"))
            .json(&serde_json::json!({"sql": "SELECT count(*) FROM interaction_fact"}))
            .send()
            .await;
        if let Ok(r) = r {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["rows"][0][0].as_u64() == Some(truth.call_count() as u64) {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the appliance settle (after-call work arrives with later rows), then stop it and check everything.
    wait_status(&base, "idle cycle", |v| {
        v["last_cycle"]["rows_staged"].as_u64() == Some(0) && v["last_cycle"]["groups_transformed"].as_u64() == Some(0)
    })
    .await;
    // The running process's metrics say the same as its status.
    let status: serde_json::Value = client.get(format!("{base}/v1/status")).send().await.unwrap().json().await.unwrap();
    let m = scrape(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    let version = metric(&m, "ccmart_mart_version", &[]).expect("mart version series");
    assert!(version >= status["mart_version"].as_f64().unwrap(), "metrics are set after each cycle");
    assert!(metric(&m, "ccmart_cycles_total", &[("outcome", "ok")]).unwrap() >= 1.0);
    for idb in ["site1-voice-a", "site1-voice-b", "site2-voice-a", "site2-voice-b"] {
        assert_eq!(metric(&m, "ccmart_idb_reachable", &[("idb", idb)]), Some(1.0), "{idb}");
    }
    let extracted: f64 = m.iter().filter(|s| s.metric == "ccmart_idb_rows_extracted_total").count() as f64;
    assert_eq!(extracted, 4.0, "one extraction counter per IDB");
    // Storage per table, as on disk.
    fn parquet_files(dir: &std::path::Path) -> f64 {
        std::fs::read_dir(dir).map_or(0.0, |d| {
            d.flatten()
                .map(|e| match e.file_type().unwrap().is_dir() {
                    true => parquet_files(&e.path()),
                    false => f64::from(u8::from(e.path().extension().is_some_and(|x| x == "parquet"))),
                })
                .sum()
        })
    }
    let on_disk = parquet_files(&cfg.appliance.data_dir.join("mart").join("interaction_fact"));
    assert!(on_disk > 0.0);
    assert_eq!(metric(&m, "ccmart_mart_table_files", &[("table", "interaction_fact")]), Some(on_disk));
    child.kill().unwrap();
    child.wait().unwrap();
    let app = Appliance::open(cfg, FaultInjector::disarmed()).await.unwrap();
    assert_mart_matches_truth(&app, &truth).await;
}

/// Waits (bounded) until a file under `root` is half copied — a `.partial` download is on disk.
async fn half_copied(root: &std::path::Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if has_partial(root) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

/// Whether a `.partial` download is on disk under `root` (names only: reading every file would widen the window
/// between seeing it and acting on it).
fn has_partial(root: &std::path::Path) -> bool {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".partial") {
                return true;
            }
        }
    }
    false
}

/// The standby's answer to a count, with the version it came from (`None` while it is down or has no version).
async fn count_at(client: &reqwest::Client, base: &str, version: Option<u64>) -> Option<(u64, u64)> {
    let mut body = serde_json::json!({"sql": "SELECT count(*) FROM interaction_fact"});
    if let Some(v) = version {
        body["mart_version"] = v.into();
    }
    let r = client.post(format!("{base}/v1/query")).json(&body).send().await.ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    Some((v["mart_version"].as_u64()?, v["rows"][0][0].as_u64()?))
}

/// Active and standby as two real `ccmart run` processes over PostgreSQL IDBs, the line between them slow enough
/// to interrupt. Three times, the standby is killed with -9 while a file is half copied and the active while it
/// extracts. Every answer the standby gave meanwhile equals the active's at the same version (no partial version is
/// ever served), and after the restarts both hold the same mart, equal to the ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_of_both_sites_during_replication_converges() {
    use ccmart::replicate::fencing::Role;
    let urls = four_idbs("repl");
    let urls = [urls[0].as_str(), urls[1].as_str(), urls[2].as_str(), urls[3].as_str()];
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let settings = small_settings(13);
    // Calls keep coming during the test: the simulator writes into the IDBs in steps.
    let mut feed = ccmart::pipeline::SimulationDriver::new(
        &postgres_config(da.path(), urls, settings.clone()),
        ccmart::sim::Simulator::new(settings.clone(), T0),
        &[],
    )
    .await
    .unwrap();
    let mut fed_to = T0 + 2 * 3600;
    feed.advance(T0, fed_to, 1800).await.unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (base_a, base_b) = (format!("http://127.0.0.1:{pa}"), format!("http://127.0.0.1:{pb}"));
    let line = std::sync::Arc::new(LineDamage::default());
    line.slow_ms.store(40, std::sync::atomic::Ordering::SeqCst);
    let proxy = relay_proxy(base_a.clone(), line.clone()).await;
    let config = |dir: &std::path::Path, port: u16, role: Role, peer: &str, sites: [&str; 2]| {
        let mut cfg = postgres_config(dir, urls, settings.clone());
        cfg.extract.chunk_rows = 100;
        cfg.extract.max_chunks_per_cycle = 3;
        // As in the test above: idleness is judged by a cycle staging nothing, which a settling mark breaks.
        cfg.extract.settle_secs = 0;
        cfg.appliance.cycle_secs = 1;
        cfg.appliance.listen = format!("127.0.0.1:{port}");
        cfg.appliance.metrics_listen = String::new();
        cfg.pgwire.listen = String::new();
        cfg.maintenance.interval_secs = 0;
        cfg.simulator = None;
        cfg.replication.initial_role = role;
        set_peer(&mut cfg, sites[0], peer, sites[1]);
        let file = dir.join("ccmart.toml");
        std::fs::write(&file, cfg.to_toml()).unwrap();
        (cfg, file)
    };
    let (cfg_a, file_a) = config(da.path(), pa, Role::Active, &base_b, ["site1", "site2"]);
    let (_, file_b) = config(db.path(), pb, Role::Standby, &proxy, ["site2", "site1"]);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut a = spawn_run(&file_a);
    let mut b = spawn_run(&file_b);
    let mut answers = Vec::new();
    for round in 0..3 {
        // New calls: the active publishes them and the standby copies; it is killed in the middle of a file (the
        // line holds the second half of the file until then).
        line.hold.store(true, std::sync::atomic::Ordering::SeqCst);
        feed.advance(fed_to, fed_to + 1200, 600).await.unwrap();
        fed_to += 1200;
        assert!(
            half_copied(&db.path().join("mart")).await,
            "round {round}: the standby copies:\n{}",
            log_tail(&file_b)
        );
        b.kill().unwrap();
        b.wait().unwrap();
        line.hold.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(has_partial(&db.path().join("mart")), "round {round}: killed in the middle of a file");
        b = spawn_run(&file_b);
        // More calls: the active is killed as soon as it has staged some of them.
        let Some(before) = try_wait_status(&base_a, |_| true).await else {
            panic!("round {round}: the active does not answer:\n{}", log_tail(&file_a));
        };
        feed.advance(fed_to, fed_to + 1200, 600).await.unwrap();
        fed_to += 1200;
        let so_far = staged(&before);
        if try_wait_status(&base_a, |v| staged(v) > so_far).await.is_none() {
            panic!("round {round}: the active does not extract:\n{}", log_tail(&file_a));
        }
        a.kill().unwrap();
        a.wait().unwrap();
        a = spawn_run(&file_a);
        // The restarted standby answers (from complete versions only: checked at the end).
        let mut here = 0;
        for _ in 0..200 {
            if let Some(a) = count_at(&client, &base_b, None).await {
                answers.push(a);
                here += 1;
                if here == 3 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    feed.finish(fed_to).await.unwrap();
    let truth = feed.simulator().truth();
    // Both run to the end: the active reaches the truth, the standby its last version.
    let deadline = Instant::now() + Duration::from_secs(300);
    let calls = truth.call_count() as u64;
    let last = loop {
        assert!(Instant::now() < deadline, "the active did not finish in time");
        let idle = wait_status(&base_a, "an idle cycle", |v| v["last_cycle"]["rows_staged"].as_u64() == Some(0)).await;
        let v = idle["mart_version"].as_u64();
        if let (Some(v), Some((_, n))) = (v, count_at(&client, &base_a, v).await) {
            if n == calls {
                break v;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_status(&base_b, "the standby catches up", |v| v["mart_version"].as_u64() >= Some(last)).await;
    answers.extend(count_at(&client, &base_b, None).await);
    assert!(answers.len() >= 7, "the standby answered in every round: {answers:?}");
    for (version, n) in &answers {
        assert_eq!(count_at(&client, &base_a, Some(*version)).await, Some((*version, *n)), "version {version}");
    }
    let digests = |base: String| {
        let client = client.clone();
        async move {
            let v: serde_json::Value =
                client.get(format!("{base}/v1/digest")).send().await.unwrap().json().await.unwrap();
            (v["mart_version"].clone(), v["digests"].clone())
        }
    };
    assert_eq!(digests(base_b.clone()).await, digests(base_a.clone()).await, "the same mart, partition by partition");
    a.kill().unwrap();
    a.wait().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
    let app = Appliance::open(cfg_a, FaultInjector::disarmed()).await.unwrap();
    assert_mart_matches_truth(&app, &truth).await;
}
