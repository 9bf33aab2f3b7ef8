//! Operating the appliance: an unreachable IDB is retried and reported (never a crash), completed calls are
//! visible after one cycle, bad config files get precise errors, and the README's demo command works.

use crate::common::*;
use crate::pg_e2e::four_idbs;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::sim::Simulator;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_idb_is_reported_and_its_pair_partner_keeps_the_mart_complete() {
    let urls = four_idbs("down");
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(41);
    let cfg = postgres_config(dir.path(), [&urls[0], &urls[1], &urls[2], &urls[3]], settings.clone());
    let truth = simulate(&cfg, None, settings.clone(), 2).await;
    // The appliance is pointed at a dead address for one IDB of the site-2 pair.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut broken = cfg.clone();
    broken.idbs[3].url = format!("postgres://postgres@127.0.0.1:{port}/gone");
    let mut app = Appliance::open(broken, FaultInjector::disarmed()).await.unwrap();
    let started = chrono::Utc::now().timestamp();
    app.drain(100).await.expect("an unreachable IDB does not stop the pipeline");
    let status = app.status().get();
    let down = status.idbs.iter().find(|i| i.idb == "site2-voice-b").unwrap();
    assert!(!down.reachable);
    assert!(down.failing_since.is_some_and(|t| t >= started));
    assert!(
        down.last_error.as_deref().is_some_and(|e| e.contains("site2-voice-b") && e.contains("unreachable")),
        "{:?}",
        down.last_error
    );
    assert!(status.idbs.iter().filter(|i| i.idb != "site2-voice-b").all(|i| i.reachable));
    assert_mart_matches_truth(&app, &truth).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_calls_are_visible_after_one_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(42);
    let cfg = embedded_config(dir.path(), settings.clone());
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    let sim = Simulator::new(settings, T0);
    let mut d = SimulationDriver::new(&cfg, sim, app.embedded_idbs()).await.unwrap();
    d.advance(T0, T0 + 3600, 600).await.unwrap();
    app.drain(100).await.unwrap();
    let before = d.simulator().truth().call_count();
    // Ten more minutes of live traffic, then exactly one cycle.
    d.advance(T0 + 3600, T0 + 4200, 60).await.unwrap();
    let truth = d.simulator().truth();
    assert!(truth.call_count() > before, "calls ended in the ten minutes");
    let old = app.store().latest_snapshot().unwrap().unwrap();
    let r = app.cycle().await.unwrap();
    assert!(r.mart_version.is_some_and(|v| v > old.version));
    // The previous version stays queryable and unchanged (queries pin a version).
    let pinned = app.engine().run(&old, "SELECT count(*) FROM interaction_fact").await.unwrap();
    let n =
        pinned.batches[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0);
    assert_eq!(n as usize, before, "version {} still shows the calls it had", old.version);
    let rows = sql(&app, "SELECT media_server_ixn_guid FROM interaction_fact").await;
    let mut got: Vec<String> = rows.into_iter().map(|r| r[0].clone()).collect();
    got.sort();
    let expected: Vec<String> = truth.calls.keys().cloned().collect();
    assert_eq!(got, expected, "every call that ended is in the mart after one cycle");
}

fn ccmart(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ccmart")).args(args).output().expect("run ccmart")
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good = write(
        "good.toml",
        "[appliance]\nsite = \"site1\"\ndata_dir = \"/tmp/x\"\n[[idb]]\nname = \"a\"\npair = \"voice\"\nsite = \"site1\"\nurl = \"postgres://u@127.0.0.1/icon\"\n",
    );
    let o = ccmart(&["check-config", "--config", &good]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("no redundancy"), "single-IDB pair is reported: {out}");
    assert!(out.contains("cycle_secs = 5"), "effective config with defaults: {out}");
    for (text, expect) in [
        ("[appliance]\ncycle_secs = 0\n[[idb]]\nname = \"a\"\npair = \"p\"\nsite = \"s\"\nurl = \"postgres://x@127.0.0.1/y\"\n", "appliance.cycle_secs"),
        ("[appliance]\nlisten = \"nowhere\"\n", "appliance.listen"),
        ("[appliance]\ncycel_secs = 5\n", "unknown field `cycel_secs`"),
        ("[[idb]]\nname = \"a\"\npair = \"p\"\nsite = \"s\"\nurl = \"mysql://x\"\n", "idb[0].url"),
        ("[[idb]]\nname = \"a\"\npair = \"p\"\nsite = \"s\"\nurl = \"postgres://x@h/d\"\n[[idb]]\nname = \"a\"\npair = \"p\"\nsite = \"s\"\nurl = \"postgres://x@h/d\"\n", "idb[1].name"),
        ("[extract]\nchunk_rows = 1\n", "extract.chunk_rows"),
        ("[transform]\ntime_zone = \"Mars/Olympus\"\n[[idb]]\nname = \"a\"\npair = \"p\"\nsite = \"s\"\nurl = \"postgres://x@h/d\"\n", "transform.time_zone"),
        ("this is not toml", "line 1"),
    ] {
        let p = write("bad.toml", text);
        let o = ccmart(&["check-config", "--config", &p]);
        assert!(!o.status.success(), "{text} must be rejected");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "error for {text:?} names {expect}: {err}");
    }
    // The shipped example config is valid.
    let shipped = crate::common::repo_file("packaging/ccmart.toml");
    let o = ccmart(&["check-config", "--config", &shipped.to_string_lossy()]);
    assert!(o.status.success(), "packaging/ccmart.toml: {}", String::from_utf8_lossy(&o.stderr));
    let o = ccmart(&["check-config", "--config", "/nonexistent/ccmart.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot read config file"));
    // One line saying what went wrong, one saying what to do.
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("error: ") && lines[1].starts_with("hint: ") && lines[1].contains("check-config"));
    // Nothing listening there (a loopback port just released): the hint says what to check.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = ccmart(&["query", "SELECT 1", "--url", &format!("http://127.0.0.1:{port}")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: cannot reach the appliance") && err.contains("hint: is the appliance running"),
        "{err}"
    );
}

/// The README's first command: the demo builds a mart from the simulated two-site center and answers SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_command_serves_sql_over_http() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--history-days", "0.2", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The examples are printed once the history is loaded; the API may answer before that (progressive publish).
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = printed.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let example = format!("curl -s http://127.0.0.1:{port}/v1/query");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut calls = None;
    while Instant::now() < deadline && !(calls.is_some() && printed.lock().unwrap().contains(&example)) {
        if let Ok(r) = client
            .post(format!("http://127.0.0.1:{port}/v1/query"))
            .json(&serde_json::json!({"sql": "SELECT count(*) FROM INTERACTION_FACT"}))
            .send()
            .await
        {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if let Some(n) = v["rows"][0][0].as_i64().filter(|n| *n > 0) {
                    calls = Some(n);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let n = calls.expect("the demo answered a count of calls");
    assert!(n > 20, "0.2 days of two sites hold many calls: {n}");
    let printed = printed.lock().unwrap().clone();
    assert!(printed.contains(&example), "ready-to-paste examples: {printed}");
}

/// An IDB that fails is retried after its backoff as the appliance's clock measures it: not before (the cycle
/// skips it), and at the first cycle after — no test sleeps through a backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_idb_is_retried_after_its_backoff_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(46);
    let cfg = embedded_config(dir.path(), settings.clone());
    let clock = ccmart::clock::Clock::manual(T0 + 7200);
    let mut app = Appliance::open_with_clock(cfg.clone(), FaultInjector::disarmed(), clock.clone()).await.unwrap();
    let mut d = SimulationDriver::new(&cfg, Simulator::new(settings, T0), app.embedded_idbs()).await.unwrap();
    d.advance(T0, T0 + 600, 300).await.unwrap();
    let (name, idb) = app.embedded_idbs()[0].clone();
    let health = |app: &Appliance| {
        let h = app.status().get().idbs.into_iter().find(|i| i.idb == name).expect("the IDB is in the status");
        (h.reachable, h.rows_staged)
    };
    idb.set_reachable(false);
    app.cycle().await.unwrap();
    assert_eq!(health(&app), (false, 0), "the failure is recorded");
    idb.set_reachable(true);
    app.cycle().await.unwrap();
    assert_eq!(health(&app), (false, 0), "within its backoff the IDB is not tried again");
    clock.advance(ccmart::extract::INITIAL_BACKOFF);
    app.cycle().await.unwrap();
    let (reachable, staged) = health(&app);
    assert!(reachable && staged > 0, "tried again once the backoff has passed: {reachable} {staged}");
}
