//! Fencing between two real appliances over HTTP: a standby writes nothing; promotion raises the epoch and the
//! old active stops writing as soon as it hears of it; two actives at the same epoch (split-brain) both stop
//! writing, so their marts cannot diverge, until an operator promotes one.

use crate::common::*;
use ccmart::config::Config;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::replicate::fencing::Role;
use ccmart::sim::Simulator;

/// Two appliances over their own embedded IDBs (fed by simulators with the same seed: same IDB contents), each
/// serving HTTP on an ephemeral loopback port and checking the other as its peer.
async fn pair(
    dirs: [&std::path::Path; 2],
    seed: u64,
    roles: [Role; 2],
) -> [(Appliance, Config, String, tokio::sync::oneshot::Sender<()>); 2] {
    let l0 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let urls = [format!("http://{}", l0.local_addr().unwrap()), format!("http://{}", l1.local_addr().unwrap())];
    let mut out = Vec::new();
    for (i, listener) in [l0, l1].into_iter().enumerate() {
        let mut cfg = embedded_config(dirs[i], small_settings(seed));
        cfg.replication.initial_role = roles[i];
        let sites = ["site1", "site2"];
        set_peer(&mut cfg, sites[i], &urls[1 - i], sites[1 - i]);
        cfg.maintenance.interval_secs = 0;
        let app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ccmart::serve::serve(listener, app.serve_state(), async move {
            let _ = rx.await;
        }));
        out.push((app, cfg, urls[i].clone(), tx));
    }
    let second = out.pop().unwrap();
    let first = out.pop().unwrap();
    [first, second]
}

async fn feed(app: &Appliance, cfg: &Config, seed: u64, from: i64, hours: i64) -> SimulationDriver {
    let mut d =
        SimulationDriver::new(cfg, Simulator::new(small_settings(seed), T0), app.embedded_idbs()).await.unwrap();
    d.advance(T0, from + hours * 3600, 1800).await.unwrap();
    d
}

fn version(app: &Appliance) -> Option<u64> {
    app.store().latest_snapshot().unwrap().map(|s| s.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_fences_the_old_active_and_survives_a_restart() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let [(mut a, cfg_a, base_a, stop_a), (mut b, cfg_b, base_b, _stop_b)] =
        pair([da.path(), db.path()], 50, [Role::Active, Role::Standby]).await;

    let mut feed_a = feed(&a, &cfg_a, 50, T0, 2).await;
    let mut feed_b = feed(&b, &cfg_b, 50, T0, 2).await;
    a.drain(1000).await.unwrap();
    b.drain(1000).await.unwrap();
    assert!(version(&a).is_some(), "the active site publishes");
    assert_eq!(b.store().staged_row_count().unwrap(), 0, "the standby extracts nothing");
    assert_eq!(version(&b), version(&a), "it serves the active's versions, copied");
    let http = reqwest::Client::new();
    let refused = http.post(format!("{base_b}/v1/admin/sources/site2/ignore")).send().await.unwrap();
    assert_eq!(refused.status(), 409, "a standby refuses writes");

    // Disaster recovery: promote B. A hears of epoch 2 on its next cycle and stops writing.
    let r = http.post(format!("{base_b}/v1/admin/promote")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let f: serde_json::Value = r.json().await.unwrap();
    assert_eq!((f["role"].as_str(), f["epoch"].as_u64()), (Some("active"), Some(2)));
    assert_eq!(http.post(format!("{base_b}/v1/admin/promote")).send().await.unwrap().status(), 409);
    let frozen = version(&a);
    feed_a.advance(T0 + 2 * 3600, T0 + 3 * 3600, 1800).await.unwrap();
    feed_b.advance(T0 + 2 * 3600, T0 + 3 * 3600, 1800).await.unwrap();
    a.drain(1000).await.unwrap();
    assert_eq!(a.fence().get().role, Role::Standby);
    assert_eq!(a.fence().get().epoch, 2);
    assert_eq!(version(&a), frozen, "the fenced site published nothing more");
    let status: serde_json::Value = http.get(format!("{base_a}/v1/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!((status["role"].as_str(), status["epoch"].as_u64()), (Some("standby"), Some(2)));
    assert_eq!(status["peer"]["reachable"], true);
    // B extracts from the IDBs: after the calls end, its mart is the ground truth.
    feed_b.finish(T0 + 3 * 3600).await.unwrap();
    b.drain(1000).await.unwrap();
    assert_mart_matches_truth(&b, &feed_b.simulator().truth()).await;
    // A restart keeps the fence.
    drop(stop_a);
    drop(feed_a);
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let a = Appliance::open(cfg_a, FaultInjector::disarmed()).await.unwrap();
    assert_eq!((a.fence().get().role, a.fence().get().epoch), (Role::Standby, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_stops_both_sites_until_one_is_promoted() {
    let (dc, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let [(mut c, cfg_c, base_c, _s1), (mut d, cfg_d, _base_d, _s2)] =
        pair([dc.path(), dd.path()], 51, [Role::Active, Role::Active]).await;
    let _fc = feed(&c, &cfg_c, 51, T0, 1).await;
    let _fd = feed(&d, &cfg_d, 51, T0, 1).await;
    // Both believe they are active at epoch 1: the first cycle of each finds the other active too.
    c.cycle().await.unwrap();
    d.cycle().await.unwrap();
    for app in [&c, &d] {
        let f = app.fence().get();
        assert_eq!(f.role, Role::Standby, "{}", f.reason);
        assert!(f.reason.contains("split-brain"), "{}", f.reason);
    }
    assert_eq!((version(&c), version(&d)), (None, None), "neither wrote: no divergence");
    // The operator promotes C; D hears of epoch 2 and stays standby.
    let r = reqwest::Client::new().post(format!("{base_c}/v1/admin/promote")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    c.drain(1000).await.unwrap();
    d.drain(1000).await.unwrap();
    assert!(version(&c).is_some());
    assert_eq!(d.store().staged_row_count().unwrap(), 0, "the fenced site extracts nothing");
    assert_eq!(version(&d), version(&c), "and serves the promoted site's versions, copied");
    assert_eq!((d.fence().get().role, d.fence().get().epoch), (Role::Standby, 2));
}

async fn digests(app: &Appliance) -> Vec<ccmart::query::digest::PartitionDigest> {
    let snap = app.store().latest_snapshot().unwrap().expect("a mart version");
    ccmart::query::digest::digests(&app.engine(), &snap, &[], None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_copies_the_active_mart_verifies_it_and_takes_over() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let [(mut a, cfg_a, base_a, _sa), (mut b, cfg_b, base_b, _sb)] =
        pair([da.path(), db.path()], 52, [Role::Active, Role::Standby]).await;
    let mut feed_a = feed(&a, &cfg_a, 52, T0, 2).await;
    let mut feed_b = feed(&b, &cfg_b, 52, T0, 2).await;
    a.drain(1000).await.unwrap();
    b.cycle().await.unwrap();
    assert_eq!(version(&b), version(&a), "the standby serves the active's newest version");
    assert_eq!(digests(&b).await, digests(&a).await, "identical content, table by table and day by day");
    let http = reqwest::Client::new();
    let status: serde_json::Value = http.get(format!("{base_b}/v1/status")).send().await.unwrap().json().await.unwrap();
    let first_bytes = status["replication"]["bytes_received"].as_u64().unwrap();
    assert!(first_bytes > 0 && status["replication"]["versions_behind"] == 0, "{status}");
    // Reads at the standby say they come from a copy, and how old it is.
    let ask = |base: String, format: &'static str| {
        let http = http.clone();
        async move {
            let body = serde_json::json!({"sql": "SELECT count(*) FROM interaction_fact", "format": format});
            http.post(format!("{base}/v1/query")).json(&body).send().await.unwrap()
        }
    };
    let at_b: serde_json::Value = ask(base_b.clone(), "json").await.json().await.unwrap();
    assert_eq!(at_b["role"], "standby", "{at_b}");
    assert!(at_b["lag_seconds"].as_i64().is_some_and(|l| l >= 0), "{at_b}");
    assert_eq!(at_b["mart_version"].as_u64(), version(&a));
    let csv = ask(base_b.clone(), "csv").await;
    assert_eq!(csv.headers()["x-ccmart-role"], "standby");
    assert!(csv.headers().contains_key("x-ccmart-lag-seconds"));
    let at_a: serde_json::Value = ask(base_a.clone(), "json").await.json().await.unwrap();
    assert_eq!((at_a["role"].as_str(), at_a["lag_seconds"].is_null()), (Some("active"), true), "{at_a}");
    assert_eq!(at_a["rows"], at_b["rows"], "the same answer at the same version");

    // Incremental: an hour more at the active ships only what changed.
    feed_a.advance(T0 + 2 * 3600, T0 + 3 * 3600, 1800).await.unwrap();
    a.drain(1000).await.unwrap();
    b.cycle().await.unwrap();
    assert_eq!(version(&b), version(&a));
    assert_eq!(digests(&b).await, digests(&a).await);
    let status: serde_json::Value = http.get(format!("{base_b}/v1/status")).send().await.unwrap().json().await.unwrap();
    let second = status["replication"]["bytes_received"].as_u64().unwrap() - first_bytes;
    assert!(second > 0 && second < first_bytes, "incremental: {second} bytes after {first_bytes}");

    // A damaged file at the standby no longer matches the manifest: it is fetched again, never served as is.
    let victim = std::fs::read_dir(db.path().join("mart").join("interaction_fact"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("a data file");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    b.cycle().await.unwrap();
    assert_eq!(digests(&b).await, digests(&a).await, "the damaged file was replaced");

    // The active's maintenance reaches the standby, which never vacuums on its own: the versions and files the
    // active dropped are gone there too, and both directories hold exactly the same files.
    let before = mart_files(&db.path().join("mart"));
    a.set_maintenance(ccmart::maintenance::MaintenanceSettings {
        interval_secs: 0,
        version_retention_secs: 0,
        mart_retention_days: 100_000,
        staging_retention_days: 100_000,
    });
    let done = a.maintain(chrono::Utc::now().timestamp()).await.unwrap();
    assert!(done.files_deleted > 0, "the active vacuumed");
    b.cycle().await.unwrap();
    let (files_a, files_b) = (mart_files(&da.path().join("mart")), mart_files(&db.path().join("mart")));
    assert!(before.keys().any(|p| !files_b.contains_key(p)), "the standby removed what the active vacuumed");
    assert_eq!(files_b.keys().collect::<Vec<_>>(), files_a.keys().collect::<Vec<_>>());
    assert!(files_a.iter().all(|(p, bytes)| files_b.get(p) == Some(bytes)), "byte for byte");
    assert_eq!(b.store().snapshot(1).unwrap(), None, "pruned versions are pruned at the standby too");
    assert_eq!(digests(&b).await, digests(&a).await);

    // Disaster: promote the standby. It resumes from the active's staging checkpoint (copied with the mart).
    assert_eq!(b.store().staged_row_count().unwrap(), 0, "a standby stages nothing itself");
    let r = http.post(format!("{base_b}/v1/admin/promote")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The checkpoint is the one written after the active's first publish (two hours of calls): the third hour is
    // all the promoted site reads from its IDBs, and it ends with the same staging as the active.
    feed_b.advance(T0 + 2 * 3600, T0 + 3 * 3600, 1800).await.unwrap();
    let mut read_after_promotion = 0;
    for _ in 0..1000 {
        let r = b.cycle().await.unwrap();
        read_after_promotion += r.rows_staged;
        if !r.more && r.rows_staged == 0 && r.groups == 0 {
            break;
        }
    }
    let total = a.store().staged_row_count().unwrap() as usize;
    assert_eq!(b.store().staged_row_count().unwrap() as usize, total, "the same staging as the active");
    assert!(
        read_after_promotion > 0 && read_after_promotion * 2 < total,
        "extraction resumed from the checkpoint's high-water marks: {read_after_promotion} of {total} rows read"
    );
    feed_b.finish(T0 + 3 * 3600).await.unwrap();
    b.drain(1000).await.unwrap();
    assert_mart_matches_truth(&b, &feed_b.simulator().truth()).await;
    a.cycle().await.unwrap();
    assert_eq!(a.fence().get().role, Role::Standby, "the old active heard of the promotion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_copies_a_running_site_resumes_after_an_interruption_and_continues_as_standby() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let [(mut a, cfg_a, base_a, _sa), (b, cfg_b, _base_b, sb)] =
        pair([da.path(), db.path()], 53, [Role::Active, Role::Standby]).await;
    // B's directory is to be filled by the command line, not by a running appliance.
    drop(sb);
    drop(b);
    std::fs::remove_dir_all(db.path()).unwrap();
    let mut feed_a = feed(&a, &cfg_a, 53, T0, 3).await;
    a.drain(1000).await.unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), cfg_b.to_toml()).unwrap();
    let bootstrap = |limit: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"));
        c.args(["bootstrap", "--from", &base_a, "--config"]).arg(config.path());
        if let Some(l) = limit {
            c.args(["--bandwidth-mbps", l]);
        }
        c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        c
    };
    // Interrupted: a slow copy killed after a moment.
    let mut slow = bootstrap(Some("0.02")).spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    slow.kill().unwrap();
    let _ = slow.wait();
    // The running site goes on writing meanwhile.
    let before = version(&a);
    feed_a.advance(T0 + 3 * 3600, T0 + 4 * 3600, 1800).await.unwrap();
    a.drain(1000).await.unwrap();
    assert!(version(&a) > before);
    // Resumed: completes, keeping what was already copied and verified.
    let mut resumed = bootstrap(None);
    let out = tokio::task::spawn_blocking(move || resumed.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bootstrap: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("continues as standby"));
    let figure = |name: &str| -> usize {
        stderr
            .split(&format!(" {name}="))
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the copy says {name}: {stderr}"))
    };
    assert!(figure("already_present") > 0, "the resumed copy kept the files the first one finished: {stderr}");
    assert!(figure("files") > 0, "and copied the rest: {stderr}");
    assert!(stderr.contains("mart copy: "), "progress summary: {stderr}");
    // The copied site starts as standby and serves exactly the running site's mart.
    let mut b = Appliance::open(cfg_b, FaultInjector::disarmed()).await.unwrap();
    assert_eq!(b.fence().get().role, Role::Standby);
    assert_eq!(version(&b), version(&a));
    assert_eq!(digests(&b).await, digests(&a).await);
    // And it keeps up as standby with what the running site writes next.
    feed_a.advance(T0 + 4 * 3600, T0 + 5 * 3600, 1800).await.unwrap();
    a.drain(1000).await.unwrap();
    b.cycle().await.unwrap();
    assert_eq!(version(&b), version(&a));
    assert_eq!(digests(&b).await, digests(&a).await);
}

/// Runs both appliances' cycles (every 50 ms, at most 1200 rounds) until `task` — a switchover driven over HTTP,
/// which needs both sites live — has finished.
async fn cycle_both_until<T>(a: &mut Appliance, b: &mut Appliance, task: tokio::task::JoinHandle<T>) -> T {
    for _ in 0..1200 {
        if task.is_finished() {
            return task.await.unwrap();
        }
        a.cycle().await.unwrap();
        if task.is_finished() {
            return task.await.unwrap();
        }
        b.cycle().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the switchover did not finish within 1200 rounds of cycles");
}

fn endpoint(url: &str) -> ccmart::replicate::Endpoint {
    ccmart::replicate::Endpoint::new(url, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_there_and_back_loses_nothing() {
    use ccmart::replicate::switchover::switchover;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let [(mut a, cfg_a, base_a, _sa), (mut b, cfg_b, base_b, _sb)] =
        pair([da.path(), db.path()], 54, [Role::Active, Role::Standby]).await;
    let mut feed_a = feed(&a, &cfg_a, 54, T0, 2).await;
    let mut feed_b = feed(&b, &cfg_b, 54, T0, 2).await;
    a.drain(1000).await.unwrap();
    b.drain(1000).await.unwrap();
    assert_eq!(version(&b), version(&a));

    // A → B while both sites run: A steps down after its cycle, B copies exactly A's last version, B takes over.
    let task = tokio::spawn({
        let (from, to) = (endpoint(&base_a), endpoint(&base_b));
        async move { switchover(&from, &to, std::time::Duration::from_secs(60), |_| {}).await }
    });
    let r = cycle_both_until(&mut a, &mut b, task).await.expect("switchover A → B");
    assert_eq!((r.fence.role, r.fence.epoch), (Role::Active, 2));
    assert_eq!(version(&a), r.mart_version, "A wrote nothing after stepping down");
    assert_eq!(b.fence().get().role, Role::Active);
    // Calls keep coming; B extracts them, A (standby at B's epoch) copies them.
    feed_a.advance(T0 + 2 * 3600, T0 + 3 * 3600, 1800).await.unwrap();
    feed_b.advance(T0 + 2 * 3600, T0 + 3 * 3600, 1800).await.unwrap();
    b.drain(1000).await.unwrap();
    a.drain(1000).await.unwrap();
    assert_eq!((a.fence().get().role, a.fence().get().epoch), (Role::Standby, 2));
    assert!(version(&b) > r.mart_version, "B publishes as the active site");
    assert_eq!(version(&a), version(&b), "A copies B's versions");

    // A wrong direction is refused before anything changes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["switchover", "--from", &base_a, "--to", &base_b])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not active"), "{err}");
    assert_eq!(b.fence().get().role, Role::Active, "nothing changed");

    // And back, B → A, through the command line.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccmart"));
    cmd.args(["switchover", "--from", &base_b, "--to", &base_a, "--timeout-secs", "60"]);
    let task = tokio::spawn(async move { cmd.output().await.unwrap() });
    let out = cycle_both_until(&mut b, &mut a, task).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("is active at epoch 3"), "{stdout}");
    assert!(stderr.contains("steps down") && stderr.contains("copies up to mart version"), "{stderr}");
    assert_eq!((a.fence().get().role, a.fence().get().epoch), (Role::Active, 3));

    // The last hour, every call ended: both marts are the ground truth, identical.
    feed_a.advance(T0 + 3 * 3600, T0 + 4 * 3600, 1800).await.unwrap();
    feed_b.advance(T0 + 3 * 3600, T0 + 4 * 3600, 1800).await.unwrap();
    feed_a.finish(T0 + 4 * 3600).await.unwrap();
    feed_b.finish(T0 + 4 * 3600).await.unwrap();
    a.drain(1000).await.unwrap();
    b.drain(1000).await.unwrap();
    assert_eq!((b.fence().get().role, b.fence().get().epoch), (Role::Standby, 3));
    assert_mart_matches_truth(&a, &feed_a.simulator().truth()).await;
    assert_eq!(version(&b), version(&a));
    assert_eq!(digests(&b).await, digests(&a).await, "the standby holds the same mart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_on_the_wire_are_detected_fetched_again_and_never_applied() {
    use std::sync::Arc;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg_a = embedded_config(da.path(), small_settings(55));
    cfg_a.maintenance.interval_secs = 0;
    let mut a = Appliance::open(cfg_a.clone(), FaultInjector::disarmed()).await.unwrap();
    let (base_a, _stop_a) = serve_app(&a).await;
    let line = Arc::new(LineDamage::default());
    let proxy = relay_proxy(base_a, line.clone()).await;
    let mut cfg_b = embedded_config(db.path(), small_settings(55));
    cfg_b.maintenance.interval_secs = 0;
    cfg_b.replication.initial_role = Role::Standby;
    set_peer(&mut cfg_b, "site2", &proxy, "site1");
    let mut b = Appliance::open(cfg_b, FaultInjector::disarmed()).await.unwrap();
    let _feed = feed(&a, &cfg_a, 55, T0, 2).await;
    a.drain(1000).await.unwrap();
    let (root_a, root_b) = (da.path().join("mart"), db.path().join("mart"));

    // The standby's own empty tables (made when it opened) are what it holds before any transfer.
    let own = mart_files(&root_b);
    // Two flipped files, then two cut short: a pass that meets one stops, discards what it was downloading, and
    // serves nothing (files are fetched several at a time, so one pass may meet more than one).
    let damage_left =
        || line.flips.load(std::sync::atomic::Ordering::SeqCst) + line.cuts.load(std::sync::atomic::Ordering::SeqCst);
    let mut failed_passes = 0;
    for (kind, counter) in [("flipped", &line.flips), ("cut", &line.cuts)] {
        counter.store(2, std::sync::atomic::Ordering::SeqCst);
        let before = failed_passes;
        loop {
            // A request the last pass gave up on may still take a damage: count only once the line is quiet.
            line.settle().await;
            if damage_left() == 0 {
                break;
            }
            assert!(failed_passes < before + 4, "{kind}: the damage is met");
            failed_passes += 1;
            let damage = format!("{kind}, pass {failed_passes}");
            b.cycle().await.unwrap();
            let r = b.status().get().replication.expect("replication status");
            let e = r.last_error.unwrap_or_else(|| panic!("a {damage} file fails the pass"));
            assert!(e.contains("checksum") || e.contains("BLAKE3"), "{damage}: {e}");
            assert_eq!(version(&b), None, "{damage}: no version is served before all its files verify");
            let (here, there) = (mart_files(&root_b), mart_files(&root_a));
            for (path, bytes) in &here {
                assert!(!path.ends_with(".partial"), "{damage}: the damaged download is removed: {path}");
                // Verified downloads wait in the incoming directory until the whole pass verifies.
                let name = path.strip_prefix("_ccmart_incoming/");
                if name.is_some() || own.get(path) != Some(bytes) {
                    let name = name.unwrap_or(path);
                    assert_eq!(Some(bytes), there.get(name), "{damage}: every file received is byte-identical: {path}");
                }
            }
        }
        assert!(failed_passes > before, "{kind} files failed a pass");
    }
    // The line is clean again: the next pass completes and serves exactly the active's mart.
    b.cycle().await.unwrap();
    assert_eq!(b.status().get().replication.unwrap().last_error, None);
    assert_eq!(version(&b), version(&a));
    assert_eq!(digests(&b).await, digests(&a).await);
}
