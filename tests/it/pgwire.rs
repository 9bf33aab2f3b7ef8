//! The PostgreSQL protocol with real clients on a real socket: `psql` (queries, `\dt`, `\d TABLE`), the
//! `tokio-postgres` driver (prepared statements with parameters, simple protocol), and the catalog queries DBeaver,
//! Metabase and Grafana send on connect (`tests/data/bi_catalog.toml`). Answers are checked against the simulator's
//! ground truth; tokens, read-only policy and limits against what the HTTP API promises.

use crate::common::*;
use ccmart::config::TokenConfig;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::Appliance;
use ccmart::serve::auth::hash_token;
use ccmart::sim::GroundTruth;
use std::time::{Duration, Instant};

const READER: &str = "ccm_reader_secret_for_tests";
const OPERATOR: &str = "ccm_operator_secret_for_tests";
const PEER: &str = "ccm_peer_secret_for_tests";
const TIMEOUT_SECS: u64 = 4;

/// An appliance with reader, operator and peer tokens over `hours` of simulated calls, and its PostgreSQL listener
/// on an ephemeral loopback port.
async fn pg_appliance(
    dir: &std::path::Path,
    seed: u64,
    hours: i64,
    max_rows: usize,
) -> (Appliance, GroundTruth, u16, tokio::sync::oneshot::Sender<()>) {
    pg_appliance_with(dir, seed, hours, max_rows, |_| {}).await
}

/// [`pg_appliance`] with `tune` applied to the configuration last.
async fn pg_appliance_with(
    dir: &std::path::Path,
    seed: u64,
    hours: i64,
    max_rows: usize,
    tune: impl FnOnce(&mut ccmart::config::Config),
) -> (Appliance, GroundTruth, u16, tokio::sync::oneshot::Sender<()>) {
    let settings = small_settings(seed);
    let mut cfg = embedded_config(dir, settings.clone());
    for (name, role, secret) in [("bi", "reader", READER), ("ops", "operator", OPERATOR), ("site2", "peer", PEER)] {
        cfg.tokens.push(TokenConfig { name: name.into(), role: role.into(), sha256: hash_token(secret) });
    }
    cfg.query.max_rows = max_rows;
    cfg.query.timeout_secs = TIMEOUT_SECS;
    tune(&mut cfg);
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.expect("open appliance");
    let truth = simulate(&cfg, Some(&app), settings, hours).await;
    app.drain(1000).await.expect("drain");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = listener.local_addr().expect("local address").port();
    let st = app.serve_state();
    let frontend = ccmart::serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::pgwire::serve(listener, frontend, 16, None, async move {
        let _ = rx.await;
    }));
    (app, truth, port, tx)
}

async fn connect(port: u16, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conn = format!("host=127.0.0.1 port={port} user=bi password={password} dbname=ccmart connect_timeout=10");
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The server's message and SQLSTATE, or the client-side error.
fn detail(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| format!("{}: {}", d.code().code(), d.message()))
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// Runs psql (the PostgreSQL installation's own client) against the listener; unaligned, tuples only.
async fn psql(port: u16, password: &str, commands: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(crate::support::pg::psql_binary());
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "bi", "-d", "ccmart"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable");
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run psql")).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_a_driver_read_the_mart_with_tokens_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let max_rows = 40;
    let (app, truth, port, _stop) = pg_appliance(dir.path(), 61, 3, max_rows).await;
    let calls = truth.call_count() as i64;
    assert!(calls > max_rows as i64, "the row limit test needs more calls than {max_rows}");
    let total_secs: i64 = truth.calls.values().map(|c| c.end_ts - c.start_ts).sum();

    // The driver, simple protocol.
    let client = connect(port, READER).await.expect("a reader token logs in");
    let rows = client.simple_query("SELECT count(*) AS n, sum(duration) AS secs FROM interaction_fact").await.unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("one row");
    assert_eq!(row.get("n"), Some(calls.to_string().as_str()));
    assert_eq!(row.get("secs"), Some(total_secs.to_string().as_str()));

    // Prepared statements with parameters, bound as values (extended protocol, binary results).
    let long = 120i64;
    let stmt = client.prepare("SELECT count(*) FROM interaction_fact WHERE duration >= $1").await.unwrap();
    let n: i64 = client.query_one(&stmt, &[&long]).await.unwrap().get(0);
    assert_eq!(n, truth.calls.values().filter(|c| c.end_ts - c.start_ts >= long).count() as i64);
    let some = truth.calls.values().nth(3).expect("a call");
    let r = client
        .query_one("SELECT duration FROM INTERACTION_FACT WHERE media_server_ixn_guid = $1", &[&some.callid])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), some.end_ts - some.start_ts);
    let hostile = "x' OR '1'='1";
    let none = client
        .query("SELECT duration FROM interaction_fact WHERE media_server_ixn_guid = $1", &[&hostile])
        .await
        .unwrap();
    assert!(none.is_empty(), "a parameter is a value, never SQL");

    // Read-only: every kind of write is refused with a precise SQLSTATE, and nothing changes.
    for (sql, code) in [
        ("CREATE TABLE scratch (a INT)", "25006"),
        ("INSERT INTO interaction_fact (duration) VALUES (1)", "25006"),
        ("DELETE FROM interaction_fact", "25006"),
        ("DROP TABLE interaction_fact", "25006"),
        ("COPY interaction_fact TO '/tmp/x.csv'", "25006"),
        ("SET datafusion.execution.enable_recursive_ctes = true", "42501"),
    ] {
        let e = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
        let e = client.prepare(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql} (prepared): {e}");
    }
    // The size guards hold here too (a giant value is refused before it is made), and the time limit ends a
    // statement that would run for hours; the connection goes on.
    let e = client.query("SELECT repeat('x', 1000000000)", &[]).await.expect_err("guarded");
    assert!(detail(&e).contains("repeat"), "{}", detail(&e));
    let started = std::time::Instant::now();
    let e = client.simple_query("SELECT count(*) FROM generate_series(1, 100000000000)").await.expect_err("bounded");
    assert_eq!(sqlstate(&e), "57014", "{}", detail(&e));
    assert!(started.elapsed() < Duration::from_secs(TIMEOUT_SECS * 4), "stopped at the time limit");
    // Client settings are accepted.
    client.simple_query("SET application_name = 'test'; SET extra_float_digits = 3; BEGIN; COMMIT").await.unwrap();
    let n: i64 = client.query_one("SELECT count(*) FROM interaction_fact", &[]).await.unwrap().get(0);
    assert_eq!(n, calls, "the refused writes changed nothing");

    // The row limit: a result longer than query.max_rows ends in an error, not a silently cut answer.
    let e = client.query("SELECT * FROM interaction_fact", &[]).await.expect_err("over the row limit");
    assert_eq!(sqlstate(&e), "54000", "{e}");
    let e = client.simple_query("SELECT * FROM interaction_fact").await.expect_err("over the row limit");
    assert_eq!(sqlstate(&e), "54000", "{e}");
    let few = client.query("SELECT * FROM interaction_fact LIMIT 5", &[]).await.unwrap();
    assert_eq!(few.len(), 5, "the same connection keeps answering");

    // Logins: a wrong password and a peer token are refused, and counted.
    let Err(e) = connect(port, "not-a-token").await else { panic!("a wrong password is refused") };
    assert_eq!(sqlstate(&e), "28P01", "{e}");
    let Err(e) = connect(port, PEER).await else { panic!("a peer token may not query") };
    assert_eq!(sqlstate(&e), "28000", "{e}");
    connect(port, OPERATOR).await.expect("an operator token logs in");
    let samples = scrape_metrics_as(&app, Some(OPERATOR)).await;
    assert_eq!(metric(&samples, "ccmart_auth_failures_total", &[("endpoint", "pgwire")]), Some(2.0));
    assert!(
        metric(&samples, "ccmart_pgwire_statements_total", &[("outcome", "ok")]).is_some_and(|n| n >= 5.0),
        "statements are counted"
    );
    assert!(metric(&samples, "ccmart_pgwire_statements_total", &[("outcome", "54")]).is_some_and(|n| n >= 2.0));

    // psql: a query, then the meta-commands users type first.
    let (ok, out, err) = psql(port, READER, &["SELECT count(*) FROM interaction_fact"]).await;
    assert!(ok, "psql: {err}");
    assert_eq!(out.trim(), calls.to_string());
    let (ok, out, err) = psql(port, READER, &["\\dt"]).await;
    assert!(ok, "psql \\dt: {err}");
    for table in ["interaction_fact", "interaction_resource_fact", "ag2_queue_day", "resource_"] {
        assert!(out.lines().any(|l| l.split('|').nth(1) == Some(table)), "\\dt lists {table}:\n{out}");
    }
    let (ok, out, err) = psql(port, READER, &["\\d interaction_fact"]).await;
    assert!(ok, "psql \\d: {err}");
    for column in ["media_server_ixn_guid", "duration", "day"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{column}|"))), "\\d shows {column}:\n{out}");
    }
    let (ok, _, err) = psql(port, "wrong", &["SELECT 1"]).await;
    assert!(!ok && err.to_lowercase().contains("password authentication failed"), "psql with a wrong password: {err}");
}

#[derive(serde::Deserialize)]
struct CatalogCorpus {
    statement: Vec<CatalogStatement>,
}

#[derive(serde::Deserialize)]
struct CatalogStatement {
    client: String,
    sql: String,
    expect: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_tool_catalog_queries_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, _truth, port, _stop) = pg_appliance(dir.path(), 62, 1, 100_000).await;
    let path = repo_file("tests/data/bi_catalog.toml");
    let corpus: CatalogCorpus =
        toml::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .expect("bi_catalog.toml parses");
    assert!(corpus.statement.len() >= 20, "the corpus holds the tools' connect sequences");
    let client = connect(port, READER).await.expect("log in");
    let mut failures = Vec::new();
    for s in &corpus.statement {
        // Simple protocol (psql, pgAdmin), as text.
        let answer =
            tokio::time::timeout(Duration::from_secs(60), client.simple_query(&s.sql)).await.expect("answered in time");
        match answer {
            Ok(messages) => {
                let values: Vec<String> = messages
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                        _ => None,
                    })
                    .flat_map(|r| (0..r.len()).filter_map(|i| r.get(i).map(str::to_string)).collect::<Vec<_>>())
                    .collect();
                if let Some(want) = &s.expect {
                    if !values.iter().any(|v| v == want) {
                        failures.push(format!("{}: the answer lacks {want}: {values:?}\n{}", s.client, s.sql));
                    }
                }
            }
            Err(e) => failures.push(format!("{} (simple protocol): {}\n{}", s.client, detail(&e), s.sql)),
        }
        // Extended protocol (JDBC, pgx): parse, describe, bind, execute.
        match client.prepare(&s.sql).await {
            Ok(stmt) => {
                if let Err(e) = client.query(&stmt, &[]).await {
                    failures.push(format!("{} (execute): {}\n{}", s.client, detail(&e), s.sql));
                }
            }
            Err(e) => failures.push(format!("{} (prepare): {}\n{}", s.client, detail(&e), s.sql)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} statements failed:\n\n{}",
        failures.len(),
        2 * corpus.statement.len(),
        failures.join("\n\n")
    );
}

/// The first column of the first row `sql` answers on `c`, as text (the simple protocol).
async fn first_text(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {}", detail(&e)));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

/// `arrow_typeof(now())` on `c`: the time zone its statements run in.
async fn zone_of(c: &tokio_postgres::Client) -> String {
    let rows = c.simple_query("SELECT arrow_typeof(now()) AS t").await.expect("now()");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("t").map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

/// Settings are per connection: one session's `SET TimeZone` (in each spelling clients send) changes its own
/// answers and nobody else's — not another connection's, not the HTTP API's — and an invalid zone is refused
/// without breaking anyone (it used to be written into the context every session shares).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _truth, port, _stop) = pg_appliance(dir.path(), 63, 1, 100_000).await;
    let (base, _stop_http) = serve_app(&app).await;
    let a = connect(port, READER).await.expect("log in a");
    let b = connect(port, READER).await.expect("log in b");
    let http_zone = || {
        let base = base.clone();
        async move {
            let v: serde_json::Value = reqwest::Client::new()
                .post(format!("{base}/v1/query"))
                .json(&serde_json::json!({"sql": "SELECT arrow_typeof(now()) AS t"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["rows"][0][0].as_str().unwrap_or_default().to_string()
        }
    };
    let (a0, b0, h0) = (zone_of(&a).await, zone_of(&b).await, http_zone().await);
    assert_eq!(a0, b0);
    for (i, set) in [
        "SET TimeZone = 'America/New_York'",
        "SET SESSION TIMEZONE TO 'America/New_York'",
        "SET TIME ZONE 'America/New_York'",
    ]
    .into_iter()
    .enumerate()
    {
        let c = connect(port, READER).await.expect("log in");
        c.simple_query(set).await.unwrap_or_else(|e| panic!("{set}: {}", detail(&e)));
        let mine = zone_of(&c).await;
        assert!(mine.contains("America/New_York"), "{set} changes this session ({i}): {mine}");
        assert_eq!(zone_of(&b).await, b0, "{set} leaves the other connection alone");
        assert_eq!(http_zone().await, h0, "{set} leaves the HTTP API alone");
        let shown = c.simple_query("SHOW TIME ZONE").await.unwrap();
        assert!(
            shown.iter().any(
                |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("America/New_York"))
            ),
            "SHOW TIME ZONE answers the session's zone"
        );
    }
    a.simple_query("SET TimeZone = 'Europe/Berlin'").await.unwrap();
    assert!(zone_of(&a).await.contains("Europe/Berlin"));
    let e = b.simple_query("SET timezone = 'Not/AZone'").await.expect_err("an invalid zone is refused");
    assert_eq!(sqlstate(&e), "22023", "{}", detail(&e));
    assert_eq!(zone_of(&b).await, b0, "the refused SET changed nothing");
    assert!(zone_of(&a).await.contains("Europe/Berlin"), "nor anyone else");
    let n: i64 = b.query_one("SELECT count(*) FROM interaction_fact", &[]).await.unwrap().get(0);
    assert!(n > 0, "queries still answer");
    assert_eq!(http_zone().await, h0);

    // A zone given at startup (`options=-c TimeZone=…`, as libpq's PGOPTIONS sends it) is the session's default:
    // it applies at once, `RESET` goes back to it, and, as in PostgreSQL, `to_timestamp(0)` is the epoch shown in
    // that zone (1970-01-01 09:00 in Tokyo) and `AT TIME ZONE 'UTC'` its UTC wall-clock time.
    let conn =
        format!("host=127.0.0.1 port={port} user=bi password={READER} dbname=ccmart options='-c TimeZone=Asia/Tokyo'");
    let (tokyo, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.expect("log in, Tokyo");
    tokio::spawn(connection);
    assert_eq!(first_text(&tokyo, "SHOW TimeZone").await, "Asia/Tokyo");
    let epoch = tokyo.query_one("SELECT to_timestamp(0) AS t", &[]).await.unwrap();
    let epoch: std::time::SystemTime = epoch.get(0);
    assert_eq!(epoch, std::time::UNIX_EPOCH, "to_timestamp(0) is the epoch, whatever the zone");
    assert!(first_text(&tokyo, "SELECT to_timestamp(0)").await.starts_with("1970-01-01 09:00:00"));
    assert!(first_text(&tokyo, "SELECT to_timestamp(0) AT TIME ZONE 'UTC'").await.starts_with("1970-01-01 00:00:00"));
    tokyo.simple_query("SET TIME ZONE 'UTC'").await.unwrap();
    assert_eq!(first_text(&tokyo, "SHOW TimeZone").await, "UTC");
    tokyo.simple_query("RESET TimeZone").await.unwrap();
    assert_eq!(first_text(&tokyo, "SHOW TimeZone").await, "Asia/Tokyo", "RESET goes back to the startup zone");
    tokyo.simple_query("SET TIME ZONE 'UTC'").await.unwrap();
    tokyo.simple_query("DISCARD ALL").await.unwrap();
    assert_eq!(first_text(&tokyo, "SHOW TimeZone").await, "Asia/Tokyo", "DISCARD ALL resets too");
    assert_eq!(first_text(&tokyo, "SELECT current_user").await, "bi", "current_user is the login name");
    assert_eq!(zone_of(&b).await, b0, "none of it reaches another connection");
    let bad =
        format!("host=127.0.0.1 port={port} user=bi password={READER} dbname=ccmart options='-c TimeZone=Not/AZone'");
    let e = tokio_postgres::connect(&bad, tokio_postgres::NoTls).await.err().expect("an invalid startup zone");
    assert_eq!(sqlstate(&e), "22023", "{}", detail(&e));
}

/// Row counts a client asks for are clamped before the protocol library reserves room for them: `FETCH` of a
/// trillion rows and an `Execute` of 2^31−1 rows answer (they used to abort the process), and a cursor is held to
/// `query.max_rows` like any query (`FETCH ALL` of a larger result ends in 54000 instead of buffering it all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_and_execute_row_counts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let max_rows = 40;
    let (_app, truth, port, _stop) = pg_appliance(dir.path(), 64, 3, max_rows).await;
    assert!(truth.call_count() > max_rows, "the test needs more calls than the row bound");
    let mut client = connect(port, READER).await.expect("log in");

    client.simple_query("DECLARE small CURSOR FOR SELECT duration FROM interaction_fact LIMIT 7").await.unwrap();
    let rows = client.simple_query("FETCH 1000000000000 FROM small").await.expect("a huge FETCH count answers");
    let n = rows.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count();
    assert_eq!(n, 7, "all rows of the cursor, no more");
    client.simple_query("CLOSE small").await.unwrap();

    client.simple_query("DECLARE big CURSOR FOR SELECT duration FROM interaction_fact").await.unwrap();
    let rows = client.simple_query("FETCH 5 FROM big").await.unwrap();
    assert_eq!(rows.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count(), 5);
    let e = client.simple_query("FETCH ALL FROM big").await.expect_err("past the row bound");
    assert_eq!(sqlstate(&e), "54000", "{}", detail(&e));
    let e = client.simple_query("DECLARE w CURSOR FOR DELETE FROM interaction_fact").await;
    assert!(e.is_err(), "a cursor over a write is refused");

    let tx = client.transaction().await.unwrap();
    let stmt = tx.prepare("SELECT duration FROM interaction_fact LIMIT 3").await.unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let rows = tx.query_portal(&portal, i32::MAX).await.expect("an Execute of 2^31-1 rows answers");
    assert_eq!(rows.len(), 3);
    let stmt = tx.prepare("SELECT duration FROM interaction_fact").await.unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 10).await.unwrap();
    assert_eq!(first.len(), 10, "an Execute with a row count suspends the portal there");
    let e = tx.query_portal(&portal, i32::MAX).await.expect_err("past the row bound");
    assert_eq!(sqlstate(&e), "54000", "{}", detail(&e));
    drop(tx);
    let n: i64 = client.query_one("SELECT count(*) FROM interaction_fact", &[]).await.unwrap().get(0);
    assert_eq!(n, truth.call_count() as i64, "the connection and the process keep answering");
}

/// A cursor keeps its statement's time limit even when it is never fetched (its query is stopped at the deadline,
/// not left running), and a session holds at most `MAX_OPEN_CURSORS` (54000 beyond; CLOSE gives room back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_keep_the_time_limit_and_are_bounded_per_session() {
    let dir = tempfile::tempdir().unwrap();
    // One query at a time: while the cursor's query runs, it holds the only slot.
    let (_app, truth, port, _stop) = pg_appliance_with(dir.path(), 65, 1, 10_000, |c| c.query.max_concurrent = 1).await;
    let client = connect(port, READER).await.expect("log in");
    client
        .simple_query("DECLARE endless CURSOR FOR SELECT count(*) FROM generate_series(1, 1000000000000000)")
        .await
        .expect("declared");
    tokio::time::sleep(Duration::from_secs(TIMEOUT_SECS + 1)).await;
    // Past its deadline the cursor's query has stopped and let the slot go, unfetched: another session's query
    // runs at once (it would wait for the slot and fail with 53000 otherwise).
    let other = connect(port, READER).await.expect("log in");
    let started = Instant::now();
    let n: i64 = other.query_one("SELECT count(*) FROM interaction_fact", &[]).await.expect("a slot is free").get(0);
    assert_eq!(n, truth.call_count() as i64);
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once: {:?}", started.elapsed());
    let started = Instant::now();
    let e = client.simple_query("FETCH 1 FROM endless").await.expect_err("past the time limit");
    assert_eq!(sqlstate(&e), "57014", "{}", detail(&e));
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once: {:?}", started.elapsed());
    client.simple_query("CLOSE endless").await.unwrap();

    let most = ccmart::serve::pgwire::MAX_OPEN_CURSORS;
    for i in 0..most {
        client
            .simple_query(&format!("DECLARE c{i} CURSOR FOR SELECT duration FROM interaction_fact LIMIT 5"))
            .await
            .unwrap();
    }
    let e = client.simple_query("DECLARE one_more CURSOR FOR SELECT 1").await.expect_err("one cursor too many");
    assert_eq!(sqlstate(&e), "54000", "{}", detail(&e));
    let e = client.simple_query("DECLARE c0 CURSOR FOR SELECT 1").await.expect_err("a name in use");
    assert_eq!(sqlstate(&e), "42P03", "{}", detail(&e));
    client.simple_query("CLOSE c3").await.unwrap();
    let e = client.simple_query("DECLARE c0 CURSOR FOR SELECT 1").await.expect_err("a name in use");
    assert_eq!(sqlstate(&e), "42P03", "{}", detail(&e));
    client.simple_query("DECLARE one_more CURSOR FOR SELECT 1").await.expect("CLOSE gave room back");
    client.simple_query("CLOSE ALL").await.unwrap();
    for i in 0..most {
        client.simple_query(&format!("DECLARE d{i} CURSOR FOR SELECT 1")).await.expect("CLOSE ALL gave room back");
    }
    let rows = client.simple_query("FETCH ALL FROM c5").await;
    assert!(rows.is_err(), "a closed cursor is gone");
    let n: i64 = client.query_one("SELECT count(*) FROM interaction_fact", &[]).await.unwrap().get(0);
    assert_eq!(n, truth.call_count() as i64);
}

/// `("schema.relname relkind", oid)` of every relation of the mart (tables, key indexes, `bi` views) in `pg_class`,
/// as a client reads them.
async fn table_oids(c: &tokio_postgres::Client) -> Vec<(String, String)> {
    let rows = c
        .simple_query(
            "SELECT n.nspname || '.' || c.relname || ' ' || c.relkind, CAST(c.oid AS TEXT) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname IN ('public', 'bi') ORDER BY 1",
        )
        .await
        .expect("pg_class");
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap_or_default().to_string(), r.get(1).unwrap_or_default().to_string()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_oids_and_declared_keys_hold_across_mart_versions() {
    use ccmart::transform::schema::{FOREIGN_KEYS, MART_TABLES};
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(64);
    let mut cfg = embedded_config(dir.path(), settings.clone());
    cfg.tokens.push(TokenConfig { name: "bi".into(), role: "reader".into(), sha256: hash_token(READER) });
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.expect("open appliance");
    let start = T0;
    let mut d = ccmart::pipeline::SimulationDriver::new(
        &cfg,
        ccmart::sim::Simulator::new(settings, start),
        app.embedded_idbs(),
    )
    .await
    .unwrap();
    d.advance(start, start + 1800, 1800).await.unwrap();
    app.drain(1000).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = listener.local_addr().expect("local address").port();
    let st = app.serve_state();
    let frontend = ccmart::serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::pgwire::serve(listener, frontend, 16, None, async move {
        let _ = rx.await;
    }));
    let c = connect(port, READER).await.expect("log in");
    let before = table_oids(&c).await;
    let calls_before = first_text(&c, "SELECT count(*) FROM interaction_fact").await;
    for listed in ["public.interaction_fact r", "public.interaction_fact_pkey i", "bi.interaction_fact v"] {
        assert!(before.iter().any(|(t, _)| t == listed), "{listed} in pg_class: {before:?}");
    }

    // A new mart version (more calls) gets a new query context; every table keeps its oid.
    d.advance(start + 1800, start + 3600, 1800).await.unwrap();
    d.finish(start + 3600).await.unwrap();
    app.drain(1000).await.unwrap();
    let calls_after = first_text(&c, "SELECT count(*) FROM interaction_fact").await;
    assert_ne!(calls_before, calls_after, "a new mart version was published");
    assert_eq!(table_oids(&c).await, before, "table oids are the same in every mart version");

    // The declared keys, read the way pgjdbc and SQLAlchemy read them, are the schema's.
    let rows = c
        .simple_query(
            "SELECT c.relname, a.attname, k.contype, coalesce(r.relname, ''), \
                    pg_catalog.pg_get_constraintdef(k.oid, true) \
             FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] \
             LEFT JOIN pg_catalog.pg_class r ON r.oid = k.confrelid \
             ORDER BY 1, 3, 2",
        )
        .await
        .expect("pg_constraint");
    let got: Vec<Vec<String>> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..5).map(|i| r.get(i).unwrap_or_default().to_string()).collect())
            }
            _ => None,
        })
        .collect();
    let mut want: Vec<Vec<String>> = MART_TABLES
        .iter()
        .map(|t| {
            let k = t.primary_key();
            vec![t.name.into(), k.into(), "p".into(), String::new(), format!("PRIMARY KEY ({k})")]
        })
        .chain(FOREIGN_KEYS.iter().map(|f| {
            let target = ccmart::transform::schema::mart_table(f.references).unwrap().primary_key();
            vec![
                f.table.into(),
                f.column.into(),
                "f".into(),
                f.references.into(),
                format!("FOREIGN KEY ({}) REFERENCES {}({target}) NOT VALID", f.column, f.references),
            ]
        }))
        .collect();
    want.sort_by(|a, b| (&a[0], &a[2], &a[1]).cmp(&(&b[0], &b[2], &b[1])));
    assert_eq!(got, want);
    // Only the search path's relations are visible: `\d interaction_fact` finds the table, not the bi view.
    assert_eq!(
        first_text(
            &c,
            "SELECT string_agg(n.nspname || ':' || CAST(pg_catalog.pg_table_is_visible(c.oid) AS TEXT), ',' \
             ORDER BY n.nspname) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'interaction_fact'"
        )
        .await,
        "bi:false,public:true"
    );
    // A key's column is NOT NULL, as PostgreSQL marks it.
    assert_eq!(
        first_text(
            &c,
            "SELECT CAST(a.attnotnull AS TEXT) FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             WHERE c.relname = 'interaction_fact' AND c.relkind = 'r' AND a.attname = 'interaction_id'"
        )
        .await,
        "true"
    );
}
