//! `ccmart export --snapshot`: one mart version of every table as plain Parquet, read by DuckDB and pyarrow and
//! equal to the appliance's own SQL answer at that version, while globbing the live mart folders is not.

use crate::common::*;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::sim::Simulator;
use ccmart::transform::schema::{ColumnKind, MartTable, MART_TABLES};
use std::collections::BTreeMap;
use std::path::Path;

/// Per table, per day ("" for an unpartitioned table): the row count, then the sum of every integer column (as
/// text, exact: keys are 63-bit, so the sums need 128 bits).
type Answer = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn int_columns(t: &MartTable) -> Vec<&'static str> {
    t.columns.iter().filter(|(_, k)| matches!(k, ColumnKind::Int)).map(|(c, _)| *c).collect()
}

/// The appliance's answer at mart version `version`.
async fn appliance_answer(app: &Appliance, version: u64) -> Answer {
    let snap = app.store().snapshot(version).unwrap().expect("a served mart version");
    let mut out = Answer::new();
    for t in MART_TABLES {
        let sums: Vec<String> =
            int_columns(t).iter().map(|c| format!("CAST(sum(CAST({c} AS DECIMAL(38,0))) AS VARCHAR)")).collect();
        let (day, group) = if t.partitioned { ("CAST(day AS VARCHAR)", " GROUP BY 1") } else { ("''", "") };
        let q = format!("SELECT {day}, CAST(count(*) AS VARCHAR), {} FROM {}{group}", sums.join(", "), t.name);
        let r = app.engine().run(&snap, &q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        let days = out.entry(t.name.to_string()).or_default();
        for b in &r.batches {
            for i in 0..b.num_rows() {
                let row: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(i) {
                            String::new()
                        } else {
                            datafusion::arrow::util::display::array_value_to_string(c, i).unwrap()
                        }
                    })
                    .collect();
                days.insert(row[0].clone(), row[1..].to_vec());
            }
        }
    }
    out
}

/// Reads a snapshot with DuckDB (`read_parquet(..., hive_partitioning=true)`) and with pyarrow (`dataset(...,
/// partitioning="hive")`, and `pq.read_table` for the row count), and counts the rows of the live mart folders
/// globbed as plain Parquet (what a lake user without a Delta reader would do).
const READERS: &str = r#"
import glob, json, sys
import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
snap, mart, tables = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect()
out = {"duckdb": {}, "pyarrow": {}, "pq_rows": {}, "raw_rows": {}}
for name, partitioned, ints in tables:
    pattern = f"{snap}/{name}/*/*.parquet" if partitioned else f"{snap}/{name}/*.parquet"
    live = f"{mart}/{name}/day=*/*.parquet" if partitioned else f"{mart}/{name}/*.parquet"
    out["raw_rows"][name] = con.execute(f"SELECT count(*) FROM read_parquet('{live}')").fetchone()[0] if glob.glob(live) else 0
    if not glob.glob(pattern):
        out["duckdb"][name], out["pyarrow"][name], out["pq_rows"][name] = {}, {}, 0
        continue
    sums = ", ".join(f"CAST(sum(CAST({c} AS HUGEINT)) AS VARCHAR)" for c in ints)
    if partitioned:
        q = (f"SELECT CAST(day AS VARCHAR), CAST(count(*) AS VARCHAR), {sums} "
             f"FROM read_parquet('{pattern}', hive_partitioning=true) GROUP BY 1")
    else:
        q = f"SELECT '', CAST(count(*) AS VARCHAR), {sums} FROM read_parquet('{pattern}')"
    out["duckdb"][name] = {r[0]: ["" if v is None else v for v in r[1:]] for r in con.execute(q).fetchall()}
    t = ds.dataset(f"{snap}/{name}", format="parquet", partitioning="hive" if partitioned else None).to_table()
    cols = {c: t.column(c).to_pylist() for c in ints}
    days = t.column("day").to_pylist() if partitioned else [""] * t.num_rows
    agg = {} if partitioned else {"": [0] + [None] * len(ints)}
    for i, d in enumerate(days):
        a = agg.setdefault(d, [0] + [None] * len(ints))
        a[0] += 1
        for j, c in enumerate(ints):
            v = cols[c][i]
            if v is not None:
                a[j + 1] = v if a[j + 1] is None else a[j + 1] + v
    out["pyarrow"][name] = {d: ["" if v is None else str(v) for v in a] for d, a in agg.items()}
    out["pq_rows"][name] = pq.read_table(f"{snap}/{name}").num_rows
print(json.dumps(out))
"#;

/// What the readers found in `snapshot` (see [`READERS`]).
fn read_snapshot(snapshot: &Path, mart: &Path) -> serde_json::Value {
    let tables: Vec<(&str, bool, Vec<&str>)> =
        MART_TABLES.iter().map(|t| (t.name, t.partitioned, int_columns(t))).collect();
    let o = std::process::Command::new("python3")
        .args(["-c", READERS])
        .arg(snapshot)
        .arg(mart)
        .arg(serde_json::to_string(&tables).unwrap())
        .output()
        .expect("python3 with the duckdb and pyarrow modules (scripts/test.sh installs them)");
    assert!(o.status.success(), "duckdb/pyarrow: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The snapshot in `dir` holds exactly `expected` (mart version `version`), as DuckDB and pyarrow read it; its
/// manifest agrees. Returns the row count of every table.
fn assert_snapshot(dir: &Path, mart: &Path, version: u64, expected: &Answer) -> BTreeMap<String, u64> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_ccmart_snapshot.json")).unwrap()).unwrap();
    assert_eq!(manifest["mart_version"], version, "{manifest}");
    let got = read_snapshot(dir, mart);
    let mut rows = BTreeMap::new();
    for t in MART_TABLES {
        let want = &expected[t.name];
        let n: u64 = want.values().map(|v| v[0].parse::<u64>().unwrap()).sum();
        for reader in ["duckdb", "pyarrow"] {
            let answer: BTreeMap<String, Vec<String>> = serde_json::from_value(got[reader][t.name].clone()).unwrap();
            assert_eq!(
                &answer, want,
                "{reader} on {} of the snapshot vs the appliance at mart version {version}",
                t.name
            );
        }
        assert_eq!(got["pq_rows"][t.name], n, "pq.read_table on {}", t.name);
        let m = &manifest["tables"][t.name];
        assert_eq!(m["rows"], n, "manifest rows of {}", t.name);
        let files = m["files"].as_array().unwrap();
        if t.partitioned {
            let days: Vec<String> = want.keys().map(|d| format!("{}/day={d}/part-0.parquet", t.name)).collect();
            let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
            assert_eq!(paths, days, "one file per day of {}", t.name);
            assert!(m["columns"].as_array().unwrap().iter().all(|c| c["name"] != "day"), "day only in the path");
        } else {
            assert_eq!(files.len(), 1, "{}", t.name);
        }
        assert_eq!(m["columns"].as_array().unwrap().len(), t.columns.len() - usize::from(t.partitioned), "{}", t.name);
        rows.insert(t.name.to_string(), got["raw_rows"][t.name].as_u64().unwrap());
    }
    rows
}

/// An HTTP proxy in front of `upstream` that answers the first `GET /v1/status` at once and holds every other
/// request until `go` turns true: an export started through it reads its mart version, then the test publishes
/// newer ones before any of its other requests arrive. `status_seen` turns true when that status was answered.
async fn gate_proxy(
    upstream: String,
    status_seen: tokio::sync::watch::Sender<bool>,
    go: tokio::sync::watch::Receiver<bool>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::new();
    let status_seen = std::sync::Arc::new(status_seen);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, upstream, status_seen, mut go) =
            (client.clone(), upstream.clone(), status_seen.clone(), go.clone());
        async move {
            let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let status = req.uri().path() == "/v1/status";
            if !status {
                let _ = go.wait_for(|g| *g).await;
            }
            let mut forward = client.request(req.method().clone(), format!("{upstream}{target}"));
            for (k, v) in req.headers().iter().filter(|(k, _)| *k != "host") {
                forward = forward.header(k, v);
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
            let resp = forward.body(body).send().await.unwrap();
            let mut out = axum::http::Response::builder().status(resp.status());
            for (k, v) in resp.headers().iter().filter(|(k, _)| *k != "content-length" && *k != "transfer-encoding") {
                out = out.header(k, v);
            }
            let bytes = resp.bytes().await.unwrap();
            if status {
                let _ = status_seen.send(true);
            }
            out.body(axum::body::Body::from(bytes)).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn ccmart() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_export_is_one_mart_version_that_plain_parquet_readers_count_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(53);
    let cfg = embedded_config(dir.path(), settings.clone());
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    // Four hours across midnight, published in parts: each publish rewrites the changed day partitions and the
    // dimensions, and the files it supersedes stay on disk (no maintenance runs here).
    let start = T0 - 2 * 3600;
    let mut d = SimulationDriver::new(&cfg, Simulator::new(settings, start), app.embedded_idbs()).await.unwrap();
    for h in 0..2 {
        d.advance(start + h * 3600, start + (h + 1) * 3600, 1800).await.unwrap();
        app.drain(1000).await.unwrap();
    }
    let (base, stop) = serve_app(&app).await;
    let out = tempfile::tempdir().unwrap();
    let remote_dir = out.path().join("remote");

    // Remote, while the appliance publishes more: the export reads the mart version, then (held by the proxy)
    // waits until newer versions are published; every later request is pinned to the version read first.
    let (seen_tx, mut seen) = tokio::sync::watch::channel(false);
    let (go, go_rx) = tokio::sync::watch::channel(false);
    let proxy = gate_proxy(base, seen_tx, go_rx).await;
    let export = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["export", "--url", &proxy, "--snapshot"])
        .arg(&remote_dir)
        .kill_on_drop(true)
        .output();
    let publish = async {
        tokio::time::timeout(std::time::Duration::from_secs(60), seen.wait_for(|s| *s))
            .await
            .expect("the export asks for the status first")
            .unwrap();
        for h in 2..4 {
            d.advance(start + h * 3600, start + (h + 1) * 3600, 1800).await.unwrap();
            app.drain(1000).await.unwrap();
        }
        d.finish(start + 4 * 3600).await.unwrap();
        app.drain(1000).await.unwrap();
        go.send(true).unwrap();
    };
    let (o, ()) = tokio::join!(export, publish);
    let o = o.unwrap();
    assert!(o.status.success(), "remote snapshot: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("interaction_fact: ") && stdout.contains("file(s)"), "progress per table: {stdout}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(remote_dir.join("_ccmart_snapshot.json")).unwrap()).unwrap();
    let remote_version = manifest["mart_version"].as_u64().unwrap();
    let latest = app.store().latest_snapshot().unwrap().unwrap().version;
    eprintln!("remote snapshot of mart version {remote_version}; the appliance is at {latest}");
    assert!(remote_version < latest, "versions were published while the export ran");
    let at_remote = appliance_answer(&app, remote_version).await;
    let at_latest = appliance_answer(&app, latest).await;
    assert_ne!(at_remote, at_latest, "the publishes during the export changed the mart (the test means something)");
    drop(stop);
    drop(app);

    let mart = dir.path().join("mart");
    let raw = assert_snapshot(&remote_dir, &mart, remote_version, &at_remote);

    // Offline, from the stopped appliance's data directory: its newest version.
    let offline_dir = out.path().join("offline");
    let o =
        ccmart().args(["export", "--data-dir"]).arg(dir.path()).arg("--snapshot").arg(&offline_dir).output().unwrap();
    assert!(o.status.success(), "offline snapshot: {}", String::from_utf8_lossy(&o.stderr));
    assert_snapshot(&offline_dir, &mart, latest, &at_latest);

    // The problem the snapshot solves: the live folders globbed as plain Parquet count superseded files too.
    let over: Vec<String> = MART_TABLES
        .iter()
        .filter_map(|t| {
            let truth: u64 = at_latest[t.name].values().map(|v| v[0].parse::<u64>().unwrap()).sum();
            (raw[t.name] > truth).then(|| format!("{} {}/{truth}", t.name, raw[t.name]))
        })
        .collect();
    eprintln!("plain-Parquet glob of the live mart overcounts: {}", over.join(", "));
    assert!(!over.is_empty(), "superseded files overcount: {over:?}");
    assert!(raw.iter().all(|(t, n)| *n >= at_latest[t].values().map(|v| v[0].parse::<u64>().unwrap()).sum()));

    // Refusals: a non-empty directory, --table with --snapshot; no half snapshot left behind.
    let o =
        ccmart().args(["export", "--data-dir"]).arg(dir.path()).arg("--snapshot").arg(&offline_dir).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not empty"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ccmart().args(["export", "--table", "resource_", "--snapshot"]).arg(out.path().join("x")).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "clap refuses --table with --snapshot");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ccmart().args(["export", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "one of --table and --snapshot is required");
    let left: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "remote" && n != "offline")
        .collect();
    assert!(left.is_empty(), "nothing but the two snapshots: {left:?}");
}
