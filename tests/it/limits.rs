//! Query limits against a hostile-SQL corpus (`tests/data/hostile_sql/`), sent over HTTP and over the PostgreSQL
//! protocol (simple and extended): every statement is refused or bounded (time, memory, rows, bytes, generated
//! values, nesting, plan size), while it runs another user's query still answers, right, and afterwards not one
//! byte under the data directory has changed (a reader can never write).
//! The concurrency gate queues and then turns queries away with 503 + `Retry-After`.

use crate::common::*;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::Appliance;
use std::time::{Duration, Instant};

const TIMEOUT_SECS: u64 = 3;
/// How often the canary is asked again when it passed its own time limit (a loaded machine, not the hostile query:
/// that one is bounded by the same limit). CI once saw a canary need 15.5 s over three tries beside the whole suite.
const CANARY_RETRIES: usize = 3;
/// The canary's answer comes within this, whatever the hostile query does (each try is bounded by the limit).
const CANARY_BOUND: Duration = Duration::from_secs((CANARY_RETRIES as u64 + 1) * (TIMEOUT_SECS + 2));

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

async fn query(base: &str, sql: &str) -> (u16, serde_json::Value, Option<String>) {
    query_as(base, sql, None).await
}

async fn query_as(base: &str, sql: &str, token: Option<&str>) -> (u16, serde_json::Value, Option<String>) {
    let mut request = client().post(format!("{base}/v1/query")).json(&serde_json::json!({ "sql": sql }));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body = r.bytes().await.unwrap();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{status}: answer is JSON: {}", String::from_utf8_lossy(&body)));
    (status, v, retry)
}

fn corpus() -> Vec<(String, String, String)> {
    let dir = crate::common::repo_file("tests/data/hostile_sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let expect = text.lines().next().and_then(|l| l.strip_prefix("-- expect: ")).unwrap().trim().to_string();
            assert!(["refused", "bounded"].contains(&expect.as_str()), "{}: expect refused|bounded", p.display());
            (p.file_stem().unwrap().to_string_lossy().into_owned(), expect, text)
        })
        .collect()
}

/// One statement of the corpus over HTTP, while another user's query must keep answering, right.
async fn http_case(base: &str, name: &str, expect: &str, sql: &str, calls: i64) {
    let canary = "SELECT count(*) AS n FROM interaction_fact";
    let started = Instant::now();
    let hostile = tokio::spawn({
        let (base, sql) = (base.to_string(), sql.to_string());
        async move { query_as(&base, &sql, Some(READER)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another user meanwhile: answered, correctly, without waiting for the hostile query's time limit.
    // (On a loaded 2-core machine, the whole suite beside it, the canary may itself pass the 3 s limit: it is asked
    // again, at most three times, within the bound on the total.)
    let c0 = Instant::now();
    let mut answer = query_as(base, canary, Some(READER)).await;
    for _ in 0..CANARY_RETRIES {
        if answer.1["error"]["code"] != "timeout" {
            break;
        }
        answer = query_as(base, canary, Some(READER)).await;
    }
    let (status, v, _) = answer;
    assert_eq!((status, v["rows"][0][0].as_i64()), (200, Some(calls)), "canary during {name}: {v}");
    assert!(c0.elapsed() < CANARY_BOUND, "canary during {name} took {:?}", c0.elapsed());

    let (status, v, _) = hostile.await.unwrap();
    let took = started.elapsed();
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    assert!(took < Duration::from_secs(TIMEOUT_SECS + 20), "{name} took {took:?}");
    match expect {
        "refused" => {
            assert_eq!(status, 400, "{name} refused: {v}");
            assert!(!code.is_empty() && v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}");
        }
        _ => {
            let bounded = match status {
                200 => v["truncated"] == true || v["row_count"].as_u64().is_some_and(|n| n <= 10_000),
                400 | 408 | 422 => !code.is_empty(),
                _ => false,
            };
            assert!(bounded, "{name} bounded: {status} {v}");
            if status == 200 {
                let bytes = serde_json::to_string(&v).unwrap().len();
                assert!(bytes < 64 * 1024 * 1024, "{name}: a {bytes}-byte answer");
            }
        }
    }
    eprintln!("{name} (http): {status} {code} in {took:?}");
}

/// One statement of the corpus over pgwire (simple or extended protocol), while the canary connection keeps
/// answering, right, and the sending connection stays usable.
async fn pg_case(
    port: u16,
    canary: &tokio_postgres::Client,
    name: &str,
    expect: &str,
    sql: &str,
    extended: bool,
    calls: i64,
) {
    let started = Instant::now();
    let hostile = tokio::spawn({
        let sql = sql.to_string();
        async move {
            let client = pg_connect(port).await;
            let answer = pg_answer(&client, &sql, extended).await;
            // The connection that sent it still answers.
            let after = client.query_one("SELECT 1::BIGINT", &[]).await.map(|r| r.get::<_, i64>(0));
            (answer, after.ok())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c0 = Instant::now();
    let mut answer = canary.query_one("SELECT count(*) AS n FROM interaction_fact", &[]).await;
    for _ in 0..CANARY_RETRIES {
        if !matches!(&answer, Err(e) if e.code().is_some_and(|c| c.code() == "57014")) {
            break;
        }
        answer = canary.query_one("SELECT count(*) AS n FROM interaction_fact", &[]).await;
    }
    let n: i64 = answer.expect("canary").get(0);
    assert_eq!(n, calls, "canary during {name}");
    assert!(c0.elapsed() < CANARY_BOUND, "canary during {name}: {:?}", c0.elapsed());
    let (answer, after) = hostile.await.expect("the hostile client's task");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(TIMEOUT_SECS + 20), "{name} took {took:?}");
    let protocol = if extended { "extended" } else { "simple" };
    match (expect, &answer) {
        ("refused", Err(e)) => assert!(
            !e.starts_with("XX") && !e.starts_with("57014") && !e.starts_with("no SQLSTATE"),
            "{name} ({protocol}) is refused with a precise SQLSTATE, not run: {e}"
        ),
        ("refused", Ok(rows)) => panic!("{name} ({protocol}) was answered with {rows} rows"),
        (_, Ok(rows)) => assert!(*rows <= 10_000, "{name} ({protocol}): {rows} rows"),
        (_, Err(e)) => assert!(!e.starts_with("no SQLSTATE"), "{name} ({protocol}): {e}"),
    }
    assert_eq!(after, Some(1), "{name} ({protocol}): the connection still answers");
    eprintln!("{name} ({protocol}): {answer:?} in {took:?}");
}

/// The corpus, one statement at a time, over HTTP and both pgwire protocols of one appliance, as a reader. (One
/// test, not one per protocol: two corpus runs side by side would each be the other's hostile load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_refused_or_bounded_over_http_and_pgwire_and_nothing_is_written() {
    let _alone = cpu_heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(43);
    let mut cfg = embedded_config(dir.path(), settings.clone());
    cfg.tokens.push(ccmart::config::TokenConfig {
        name: "bi".into(),
        role: "reader".into(),
        sha256: ccmart::serve::auth::hash_token(READER),
    });
    cfg.query.timeout_secs = TIMEOUT_SECS;
    cfg.query.memory_limit_mb = 128;
    cfg.query.max_rows = 10_000;
    cfg.query.max_result_mb = 4;
    cfg.query.max_concurrent = 2;
    cfg.validate().unwrap();
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    let truth = simulate(&cfg, Some(&app), settings, 2).await;
    app.drain(1000).await.unwrap();
    let calls = truth.call_count() as i64;
    let (base, _stop_http) = serve_app(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let st = app.serve_state();
    let frontend = ccmart::serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
    let (_stop_pg, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::pgwire::serve(listener, frontend, 16, None, async move {
        let _ = rx.await;
    }));
    let before = fingerprint(dir.path());
    let canary = pg_connect(port).await;

    let cases = corpus();
    assert!(cases.len() >= 30, "the corpus has {} statements", cases.len());
    for (name, expect, sql) in cases {
        http_case(&base, &name, &expect, &sql, calls).await;
        for extended in [false, true] {
            pg_case(port, &canary, &name, &expect, &sql, extended, calls).await;
        }
    }
    // One statement over the size bound, sent as text over pgwire (HTTP's body limit is the same 1 MiB): refused
    // before it is parsed.
    let huge = format!("SELECT '{}'", "x".repeat(ccmart::query::gate::MAX_STATEMENT_BYTES + 10));
    let e = pg_answer(&pg_connect(port).await, &huge, false).await.expect_err("too large");
    assert!(e.starts_with("54001"), "{e}");

    // The script operators run against a deployment (docs/security.md) agrees, over HTTP and psql.
    let url = base.clone();
    let script = move |only: &[&str], corpus: &std::path::Path| {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(crate::common::repo_file("scripts/hostile_corpus.py"))
            .arg("--corpus")
            .arg(corpus)
            .args(["--url", &url, "--pg", &format!("host=127.0.0.1 port={port} user=bi dbname=ccmart sslmode=disable")])
            .args(["--psql", &crate::support::pg::psql_binary().to_string_lossy()])
            .args(["--max-rows", "10000", "--timeout-secs", &TIMEOUT_SECS.to_string(), "--only"])
            .args(only)
            .env("CCMART_TOKEN", READER);
        cmd
    };
    let only = ["select_into", "explain_analyze_copy", "left_deep_plus", "repeat_per_row", "cross_join_rows"];
    let repo_corpus = crate::common::repo_file("tests/data/hostile_sql");
    let run = tokio::task::spawn_blocking({
        let script = script.clone();
        move || script(&only, &repo_corpus).output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{out}{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(out.lines().filter(|l| l.starts_with("ok   ")).count(), 10, "{out}");
    // And it fails when a statement that should be refused is answered.
    let wrong = tempfile::tempdir().unwrap();
    std::fs::write(wrong.path().join("harmless.sql"), "-- expect: refused\nSELECT 1\n").unwrap();
    let wrong_dir = wrong.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || script(&["harmless"], &wrong_dir).output()).await.unwrap().unwrap();
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("FAIL harmless")).count(), 2, "{out}");

    // Still up, nothing changed.
    let r = client().get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, v, _) = query_as(&base, "SELECT count(*) AS n FROM interaction_fact", Some(READER)).await;
    assert_eq!((status, v["rows"][0][0].as_i64()), (200, Some(calls)));
    let n: i64 = canary.query_one("SELECT count(*) FROM interaction_fact", &[]).await.unwrap().get(0);
    assert_eq!(n, calls);
    assert!(!std::path::Path::new("/tmp/ccmart-hostile.csv").exists(), "COPY TO wrote nothing");
    assert!(!std::path::Path::new("/tmp/ccmart-hostile-explain.csv").exists(), "EXPLAIN ANALYZE COPY wrote nothing");
    let after = fingerprint(dir.path());
    let changed: Vec<_> =
        after.iter().filter(|f| !before.contains(f)).chain(before.iter().filter(|f| !after.contains(f))).collect();
    assert!(changed.is_empty(), "the data directory is byte for byte unchanged; changed: {changed:?}");
}

/// Every file under `dir` (the spill directory aside) with its BLAKE3 digest.
fn fingerprint(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if rel == "tmp" || rel.starts_with("tmp/") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((rel, blake3::hash(&std::fs::read(&path).unwrap()).to_hex().to_string()));
            }
        }
    }
    out.sort();
    out
}

const READER: &str = "ccm_reader_secret_for_limits";

async fn pg_connect(port: u16) -> tokio_postgres::Client {
    let conn = format!("host=127.0.0.1 port={port} user=bi password={READER} dbname=ccmart connect_timeout=10");
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.expect("reader logs in");
    tokio::spawn(connection);
    client
}

/// The answer of one statement over pgwire: `Ok(rows)` or `Err(SQLSTATE: message)`.
async fn pg_answer(client: &tokio_postgres::Client, sql: &str, extended: bool) -> Result<usize, String> {
    let detail = |e: tokio_postgres::Error| {
        e.as_db_error().map_or_else(|| format!("no SQLSTATE: {e}"), |d| format!("{}: {}", d.code().code(), d.message()))
    };
    if extended {
        let stmt = client.prepare(sql).await.map_err(detail)?;
        client.query(&stmt, &[]).await.map(|r| r.len()).map_err(detail)
    } else {
        let messages = client.simple_query(sql).await.map_err(detail)?;
        Ok(messages.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_turns_queries_away_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 44, 1).await;
    let slow = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let limits = ccmart::query::QueryLimits {
        timeout_secs: TIMEOUT_SECS,
        max_concurrent: 1,
        max_queued: 1,
        ..Default::default()
    };
    let mart = ccmart::mart::Mart::open(&dir.path().join("mart")).await.unwrap();
    let mut state = app.serve_state();
    state.engine = ccmart::query::QueryEngine::new(mart, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::serve(listener, state, async move {
        let _ = rx.await;
    }));

    let running = tokio::spawn({
        let base = base.clone();
        async move { query(&base, slow).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued = tokio::spawn({
        let base = base.clone();
        async move { query(&base, "SELECT count(*) FROM interaction_fact").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One running, one waiting: a third is turned away at once.
    let t = Instant::now();
    let (status, v, retry) = query(&base, "SELECT 1").await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "busy");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(t.elapsed() < Duration::from_secs(2), "refused without waiting");

    let (status, v, _) = running.await.unwrap();
    assert_eq!((status, v["error"]["code"].as_str()), (408, Some("timeout")), "{v}");
    // The queued query ran once the slot was free.
    let (status, v, _) = queued.await.unwrap();
    assert_eq!((status, v["rows"][0][0].as_i64()), (200, Some(truth.call_count() as i64)), "{v}");
    let (status, _, _) = query(&base, "SELECT 1").await;
    assert_eq!(status, 200);
    drop(tx);
}
