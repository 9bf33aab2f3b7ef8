//! Connections an attacker can open without a token, over real sockets: slow and idle HTTP clients are closed
//! after the header timeout while others are served, the HTTP connection cap closes surplus connections at once,
//! idle pgwire sockets that never log in cannot lock a real login out, idle sessions are closed, sessions per
//! client are bounded, and repeated bad passwords lock their address out for the window (release blockers of
//! issue 15, findings 8 and 10). Also: SQL errors of the statement's own data are client errors, readers cannot
//! read the engine's settings, query-string rejections are the API's error JSON, and the OpenAPI schema of
//! answers matches real answers. A pgwire message announcing more than the message cap closes its connection
//! after its header, before its body is read; a client that stops reading its answer (HTTP or pgwire) loses it after
//! the send deadline and frees its query slot.

use crate::common::*;
use ccmart::config::TokenConfig;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::Appliance;
use ccmart::serve::auth::hash_token;
use ccmart::serve::pgwire::ConnectionLimits;
use ccmart::serve::HttpLimits;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READER: &str = "ccm_reader_secret_for_connection_tests";
const OPERATOR: &str = "ccm_operator_secret_for_connection_tests";

/// An appliance over one simulated hour with a reader and an operator token.
async fn appliance(dir: &std::path::Path, seed: u64) -> Appliance {
    appliance_with(dir, seed, |_| {}).await
}

/// [`appliance`] with `tune` applied to the configuration last.
async fn appliance_with(dir: &std::path::Path, seed: u64, tune: impl FnOnce(&mut ccmart::config::Config)) -> Appliance {
    let settings = small_settings(seed);
    let mut cfg = embedded_config(dir, settings.clone());
    for (name, role, secret) in [("bi", "reader", READER), ("ops", "operator", OPERATOR)] {
        cfg.tokens.push(TokenConfig { name: name.into(), role: role.into(), sha256: hash_token(secret) });
    }
    tune(&mut cfg);
    cfg.validate().expect("valid test config");
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.expect("open appliance");
    simulate(&cfg, Some(&app), settings, 1).await;
    app.drain(1000).await.expect("drain");
    app
}

/// Serves `app`'s HTTP API within `limits` on an ephemeral loopback port; stops when the sender is dropped.
async fn serve_http(app: &Appliance, limits: HttpLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::serve_with(listener, app.serve_state(), limits, None, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Serves `app`'s PostgreSQL protocol within `limits` on an ephemeral loopback port.
async fn serve_pg(app: &Appliance, limits: ConnectionLimits) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = listener.local_addr().expect("local address").port();
    let st = app.serve_state();
    let frontend = ccmart::serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::pgwire::serve_with(listener, frontend, limits, None, async move {
        let _ = rx.await;
    }));
    (port, tx)
}

/// Reads until the server closes the connection (end of stream or reset), at most `within`; how long that took.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn connect_pg(
    port: u16,
    password: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>), tokio_postgres::Error>
{
    let conn = format!("host=127.0.0.1 port={port} user=bi password={password} dbname=ccmart connect_timeout=10");
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    Ok((client, tokio::spawn(connection)))
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_closed_after_the_header_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 151).await;
    let timeout = Duration::from_secs(1);
    let (addr, _stop) =
        serve_http(&app, HttpLimits { max_connections: 16, header_timeout: timeout, ..HttpLimits::default() }).await;

    // A slow-loris client: a request line, then one header byte every 200 ms, never the end of the headers.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: ccmart\r\nX-Slow: ").await.unwrap();
    let drip = async {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"a").await.is_err() {
                break;
            }
        }
    };
    // A client that connects and sends nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let silent_since = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let served = async {
        let r = client.get(format!("http://{addr}/healthz")).send().await.expect("another client is served");
        assert_eq!(r.status(), 200);
    };
    tokio::join!(drip, served);
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
        Ok(Ok(n)) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "the slow client gets no answer but a timeout: {text}")
        }
        Ok(Err(_)) => {}
        Err(_) => panic!("the slow-loris connection is still open after 10 s of dripping headers"),
    }
    closed_within(&mut silent, Duration::from_secs(5)).await.expect("the silent client is closed");
    let took = silent_since.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}, the header timeout is {timeout:?}");

    // An idle kept-alive connection is closed after the timeout too, after its answered request.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: ccmart\r\n\r\n").await.unwrap();
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took =
        closed_within(&mut kept, Duration::from_secs(5)).await.expect("the idle kept-alive connection is closed");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_over_the_cap_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 152).await;
    let max = 4;
    let (addr, _stop) = serve_http(
        &app,
        HttpLimits { max_connections: max, header_timeout: Duration::from_secs(30), ..HttpLimits::default() },
    )
    .await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let health = || client.get(format!("http://{addr}/healthz")).send();

    let mut held = Vec::new();
    for _ in 0..max {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The server accepts in order, so the next connection is one over the cap.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: ccmart\r\n\r\n").await;
    let took = closed_within(&mut extra, Duration::from_secs(5))
        .await
        .expect("a connection beyond appliance.max_http_connections is closed, not queued");
    assert!(took < Duration::from_secs(1), "closed after {took:?}: promptly, not after a timeout");
    assert!(health().await.is_err(), "no request is served while the cap is reached");
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        if health().await.is_ok_and(|r| r.status() == 200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "closed connections give their slots back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_that_never_log_in_do_not_lock_out_a_real_login() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 153).await;
    // The defaults (64 connections, 10 s to log in): the finding was 64 idle sockets locking every login out.
    let limits = ConnectionLimits::default();
    let (port, _stop) = serve_pg(&app, limits).await;
    let mut idle = Vec::new();
    for _ in 0..limits.max_connections + 6 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let started = Instant::now();
    let (client, _conn) = connect_pg(port, READER).await.expect("a real login gets in at once");
    let rows = client.simple_query("SELECT 1").await.expect("and can query");
    assert!(!rows.is_empty());
    assert!(started.elapsed() < limits.startup_timeout, "logged in after {:?}", started.elapsed());
    // The oldest idle sockets were closed to make room.
    let oldest = closed_within(&mut idle[0], Duration::from_secs(2)).await;
    assert!(oldest.is_some(), "the oldest idle socket was closed to make room");
    drop(idle);

    // A silent socket is closed after the startup timeout.
    let limits = ConnectionLimits { startup_timeout: Duration::from_secs(1), ..ConnectionLimits::default() };
    let (port, _stop2) = serve_pg(&app, limits).await;
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5)).await.expect("a socket that never logs in is closed");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_and_sessions_per_client_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 154).await;
    let limits = ConnectionLimits {
        max_connections_per_client: 2,
        idle_session_timeout: Some(Duration::from_secs(1)),
        ..ConnectionLimits::default()
    };
    let (port, _stop) = serve_pg(&app, limits).await;

    // A session that keeps working stays; one that idles past the timeout is closed with 57P05.
    let (busy, _busy_conn) = connect_pg(port, READER).await.unwrap();
    let (idle, idle_conn) = connect_pg(port, READER).await.unwrap();
    let Err(e) = connect_pg(port, OPERATOR).await else { panic!("a third session from the same address is refused") };
    assert_eq!(sqlstate(&e), "53300", "{e}");
    assert!(message(&e).contains("max_connections_per_client"), "{}", message(&e));
    for _ in 0..6 {
        busy.simple_query("SELECT 1").await.expect("a session that keeps querying stays open");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(idle.is_closed(), "the idle session was closed");
    let ended = tokio::time::timeout(Duration::from_secs(5), idle_conn).await.expect("its connection ended").unwrap();
    let e = ended.expect_err("closed with an error");
    assert_eq!(sqlstate(&e), "57P05", "{e}");
    assert!(message(&e).contains("idle_session_timeout_secs"), "{}", message(&e));
    // The closed session gave its slot back.
    let mut again = None;
    for _ in 0..20 {
        match connect_pg(port, OPERATOR).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(again.is_some(), "the idle session's slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passwords_lock_their_address_out_for_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 155).await;
    let window = Duration::from_secs(3);
    let limits =
        ConnectionLimits { max_login_failures: 3, login_failure_window: window, ..ConnectionLimits::default() };
    let (port, _stop) = serve_pg(&app, limits).await;

    // Successful logins do not count.
    for _ in 0..4 {
        connect_pg(port, READER).await.expect("a good password logs in");
    }
    let first = Instant::now();
    for _ in 0..3 {
        let Err(e) = connect_pg(port, "wrong-secret").await else { panic!("a bad password is refused") };
        assert_eq!(sqlstate(&e), "28P01", "{e}");
    }
    // Locked out: even the right password is refused, without being looked at.
    let Err(e) = connect_pg(port, READER).await else { panic!("the address is locked out") };
    assert_eq!(sqlstate(&e), "53300", "{e}");
    assert!(message(&e).contains("too many failed logins"), "{}", message(&e));
    let e = connect_pg(port, "wrong-secret").await.err().unwrap();
    assert_eq!(sqlstate(&e), "53300", "bad passwords too: {e}");
    // After the window the right password works again.
    let wait = (first + window + Duration::from_millis(300)).saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    let (client, _conn) = connect_pg(port, READER).await.expect("the lock ends with the window");
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_is_a_client_error_and_settings_are_for_operators() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 156).await;
    let (addr, _stop) = serve_http(&app, HttpLimits::default()).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let query = |token: &'static str, sql: &'static str| {
        client
            .post(format!("http://{addr}/v1/query"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
    };

    // (DataFusion's `+`, `*` and `sum` on BIGINT wrap around instead of failing; see the report of issue 15.)
    for sql in ["SELECT abs(-9223372036854775808)", "SELECT CAST(3000000000 AS INT)", "SELECT CAST(1 AS BIGINT) / 0"] {
        let r = query(READER, sql).await.unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{sql}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query", "{sql}: {v}");
    }
    for sql in ["SELECT name, value FROM information_schema.df_settings", "SHOW ALL"] {
        let r = query(READER, sql).await.unwrap();
        assert_eq!(r.status(), 403, "{sql}: readers may not read the engine's settings");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("operator token"), "{v}");
        let r = query(OPERATOR, sql).await.unwrap();
        assert_eq!(r.status(), 200, "{sql}: operators may");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["row_count"].as_u64().unwrap() > 10, "{v}");
    }
    let r = query(READER, "SELECT table_name FROM information_schema.tables").await.unwrap();
    assert_eq!(r.status(), 200, "the rest of the information schema stays readable");

    let (port, _pg_stop) = serve_pg(&app, ConnectionLimits::default()).await;
    let (reader, _c1) = connect_pg(port, READER).await.unwrap();
    let (operator, _c2) = connect_pg(port, OPERATOR).await.unwrap();
    for (sql, code) in [
        ("SELECT abs(-9223372036854775808)", "22003"),
        ("SELECT CAST(3000000000 AS INT)", "22003"),
        ("SELECT CAST(1 AS BIGINT) / 0", "22012"),
        // At execution, not folded while planning.
        ("SELECT CAST(duration + 3000000000 AS INT) FROM interaction_fact", "22003"),
    ] {
        let e = reader.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
        let e = reader.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql} (extended protocol): {e}");
    }
    let settings = "SELECT name FROM information_schema.df_settings";
    let e = reader.simple_query(settings).await.expect_err("readers may not read the settings");
    assert_eq!(sqlstate(&e), "42501", "{e}");
    let e = reader.query(settings, &[]).await.expect_err("nor through a prepared statement");
    assert_eq!(sqlstate(&e), "42501", "{e}");
    assert!(!operator.query(settings, &[]).await.expect("operators may").is_empty());
    reader.simple_query("SELECT 1").await.expect("the reader's session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_rejections_are_error_json_and_answers_match_the_openapi_schema() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 157).await;
    let (addr, _stop) = serve_http(&app, HttpLimits::default()).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    for path in [
        "/v1/digest?mart_version=not-a-number",
        "/v1/digest?unknown=1",
        "/v1/export/INTERACTION_FACT?mart_version=-1",
        "/v1/digest/rows?table=INTERACTION_FACT&mart_version=x",
    ] {
        let r = client.get(format!("http://{addr}{path}")).bearer_auth(OPERATOR).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ct.as_deref(), Some("application/json"), "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_parameter", "{path}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }

    // A real answer validates against the documented QueryAnswer schema (rows are arrays of values).
    let answer: serde_json::Value = client
        .post(format!("http://{addr}/v1/query"))
        .bearer_auth(READER)
        .json(&serde_json::json!({"sql": "SELECT 1 AS n, 'a' AS s, NULL AS z, true AS b"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["rows"][0].is_array(), "{answer}");
    let doc: serde_json::Value =
        client.get(format!("http://{addr}/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schema_file = dir.path().join("openapi.json");
    let answer_file = dir.path().join("answer.json");
    std::fs::write(&schema_file, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::write(&answer_file, serde_json::to_vec(&answer).unwrap()).unwrap();
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, jsonschema\n\
             doc = json.load(open(sys.argv[1]))\n\
             schema = {'$ref': '#/components/schemas/QueryAnswer', 'components': doc['components']}\n\
             jsonschema.Draft202012Validator(schema).validate(json.load(open(sys.argv[2])))",
        ])
        .arg(&schema_file)
        .arg(&answer_file)
        .output()
        .expect("python3 with jsonschema (scripts/test.sh installs openapi-spec-validator, which brings it)");
    assert!(check.status.success(), "the answer does not match its schema: {}", String::from_utf8_lossy(&check.stderr));
}

/// Reads one backend message from a raw socket: its type and body (bounded in time).
async fn backend_message(socket: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut header = [0u8; 5];
        socket.read_exact(&mut header).await.ok()?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut body = vec![0u8; usize::try_from(len).ok()?.checked_sub(4)?];
        socket.read_exact(&mut body).await.ok()?;
        Some((header[0], body))
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok().flatten()
}

/// Logs the reader in over a raw socket (startup, cleartext password) up to ReadyForQuery.
async fn raw_login(mut socket: TcpStream) -> TcpStream {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0bi\0database\0ccmart\0\0");
    let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    startup.extend(body);
    socket.write_all(&startup).await.unwrap();
    let (kind, auth) = backend_message(&mut socket).await.expect("an authentication request");
    assert_eq!((kind, &auth[..4]), (b'R', &3i32.to_be_bytes()[..]), "cleartext password requested");
    let mut password = READER.as_bytes().to_vec();
    password.push(0);
    socket.write_all(&frontend_message(b'p', &password)).await.unwrap();
    loop {
        let (kind, _) = backend_message(&mut socket).await.expect("login answers");
        assert_ne!(kind, b'E', "the reader logs in");
        if kind == b'Z' {
            return socket;
        }
    }
}

/// A typed frontend message.
fn frontend_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// A loopback socket with a small receive buffer, so that an answer it does not read stalls the sender soon.
async fn stalling_socket(port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap()
}

/// An appliance whose one query slot a stalled reader could keep: one query at a time, answers up to 64 MiB.
async fn one_slot_appliance(dir: &std::path::Path, seed: u64) -> Appliance {
    appliance_with(dir, seed, |cfg| {
        cfg.query.max_concurrent = 1;
        cfg.query.timeout_secs = 30;
        cfg.query.max_rows = 200_000;
        cfg.query.max_result_mb = 64;
    })
    .await
}

/// About 40 MB of answer, more than any socket buffers hold.
const LARGE_ANSWER: &str = "SELECT repeat('x', 800) AS filler FROM generate_series(1, 50000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answer_loses_it_and_frees_the_query_slot() {
    let dir = tempfile::tempdir().unwrap();
    let app = one_slot_appliance(dir.path(), 157).await;
    let send_timeout = Duration::from_secs(1);
    let (addr, _stop_http) = serve_http(&app, HttpLimits { send_timeout, ..HttpLimits::default() }).await;
    let pg_limits = ConnectionLimits { send_timeout, ..ConnectionLimits::default() };
    let (port, _stop_pg) = serve_pg(&app, pg_limits).await;
    let count = |base: String| async move {
        let started = Instant::now();
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/query"))
            .bearer_auth(READER)
            .json(&serde_json::json!({"sql": "SELECT count(*) FROM interaction_fact"}))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), started.elapsed())
    };
    let base = format!("http://{addr}");

    // HTTP: a large answer asked for and never read holds the one query slot only until the send deadline.
    let mut stalled = stalling_socket(addr.port()).await;
    let body = serde_json::json!({ "sql": LARGE_ANSWER }).to_string();
    let request = format!(
        "POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {READER}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took) = count(base.clone()).await;
    assert_eq!(status, 200, "another query is answered");
    assert!(took < Duration::from_secs(15), "within the send deadline, not the 30 s query wait: {took:?}");
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received += n,
            Err(_) => break false,
        }
    };
    assert!(closed, "the stalled connection was closed");
    assert!(received < 20_000_000, "and its answer not sent whole: {received} bytes");

    // pgwire: the same with rows a session does not read.
    let mut stalled = raw_login(stalling_socket(port).await).await;
    let mut sql = LARGE_ANSWER.as_bytes().to_vec();
    sql.push(0);
    stalled.write_all(&frontend_message(b'Q', &sql)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took) = count(base.clone()).await;
    assert_eq!(status, 200, "another query is answered");
    assert!(took < Duration::from_secs(15), "within the send deadline, not the 30 s query wait: {took:?}");
    let (client, _conn) = connect_pg(port, READER).await.unwrap();
    let n: i64 = client.query_one("SELECT count(*) FROM interaction_fact", &[]).await.unwrap().get(0);
    assert!(n > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_announcing_more_than_the_cap_closes_the_connection_before_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path(), 156).await;
    let (port, _stop) = serve_pg(&app, ConnectionLimits::default()).await;
    let mut socket = raw_login(TcpStream::connect(("127.0.0.1", port)).await.unwrap()).await;
    // A Query announcing 512 MiB, of which only the header and a few bytes are sent: refused at once.
    let started = Instant::now();
    let mut query = vec![b'Q'];
    query.extend_from_slice(&(512i32 * 1024 * 1024).to_be_bytes());
    query.extend_from_slice(b"SELECT ");
    socket.write_all(&query).await.unwrap();
    let (kind, error) = backend_message(&mut socket).await.expect("an error before the body arrives");
    assert_eq!(kind, b'E');
    let text = String::from_utf8_lossy(&error).into_owned();
    assert!(text.contains("C54000") && text.contains("SFATAL"), "{text}");
    assert!(text.contains(&ccmart::serve::pgwire::framing::MAX_FRONTEND_MESSAGE_BYTES.to_string()), "{text}");
    assert!(closed_within(&mut socket, Duration::from_secs(5)).await.is_some(), "the connection is closed");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A statement over the statement bound but under the message cap is refused by the gate; its connection stays.
    let (client, _conn) = connect_pg(port, READER).await.unwrap();
    let long = format!("SELECT '{}'", "x".repeat(ccmart::query::gate::MAX_STATEMENT_BYTES + 10));
    let e = client.simple_query(&long).await.expect_err("too long");
    assert_eq!(sqlstate(&e), "54001", "{e}");
    let n: i64 = client.query_one("SELECT count(*) FROM interaction_fact", &[]).await.unwrap().get(0);
    assert!(n > 0);
}
