//! HTTPS on the API port: a real TLS client with the server's certificate works; untrusted clients, plain HTTP
//! and stalled handshakes are turned away without disturbing anyone else; bad PEM files give precise errors.

use crate::common::*;
use std::path::Path;
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1 made with the openssl command line tool.
fn self_signed(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=ccmart-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // An end-entity certificate (webpki refuses a CA certificate as a server's own).
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed to make a test certificate");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_trusted_clients_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 45, 1).await;
    let (cert, key) = self_signed(dir.path(), "server");
    let config = ccmart::serve::tls::server_config(&cert, &key).expect("valid PEM pair");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::serve_tls(listener, app.serve_state(), config, async move {
        let _ = rx.await;
    }));

    // A client stalls in the handshake: it must not hold up the others.
    let _stalled = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let trusted = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let r = trusted
        .post(format!("{base}/v1/query"))
        .json(&serde_json::json!({"sql": "SELECT count(*) FROM interaction_fact"}))
        .send()
        .await
        .expect("HTTPS with the server's certificate trusted");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["rows"][0][0].as_i64(), Some(truth.call_count() as i64));

    // A client that does not trust the certificate fails the handshake.
    let untrusted = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let e = untrusted.get(format!("{base}/healthz")).send().await.expect_err("certificate not trusted");
    assert!(e.is_connect() || e.to_string().contains("certificate"), "{e}");

    // Plain HTTP to the TLS port gets no answer, and the server keeps serving.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    assert!(plain.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err(), "no plain HTTP");
    let r = trusted.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(tx);

    // Bad files name the file and the problem.
    let (other_cert, _) = self_signed(dir.path(), "other");
    let e = ccmart::serve::tls::server_config(&other_cert, &key).unwrap_err().to_string();
    assert!(e.contains("other.crt"), "a key that does not match the certificate: {e}");
    let e = ccmart::serve::tls::server_config(&dir.path().join("missing.crt"), &key).unwrap_err().to_string();
    assert!(e.contains("certificate") && e.contains("missing.crt"), "{e}");
    let e = ccmart::serve::tls::server_config(&cert, &cert).unwrap_err().to_string();
    assert!(e.contains("private key") && e.contains("server.crt"), "a certificate given as the key: {e}");
}

/// Between sites over HTTPS with a private certificate: the standby trusts it through `replication.peer_ca` and
/// copies the mart; without it, the pass fails on the certificate and nothing is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_over_https_trusts_the_configured_peer_ca() {
    use ccmart::fault::FaultInjector;
    use ccmart::pipeline::Appliance;
    use ccmart::replicate::fencing::Role;
    let (da, db, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (active, _truth) = embedded_mart(da.path(), 46, 1).await;
    let (cert, key) = self_signed(dc.path(), "site1");
    let config = ccmart::serve::tls::server_config(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::serve_tls(listener, active.serve_state(), config, async move {
        let _ = rx.await;
    }));
    let standby = |ca: Option<std::path::PathBuf>| {
        let mut cfg = embedded_config(db.path(), small_settings(46));
        cfg.replication.initial_role = Role::Standby;
        set_peer(&mut cfg, "site2", &url, "site1");
        cfg.replication.peer_ca = ca;
        cfg
    };
    let version = |app: &Appliance| app.store().latest_snapshot().unwrap().map(|s| s.version);

    let mut untrusting = Appliance::open(standby(None), FaultInjector::disarmed()).await.unwrap();
    untrusting.cycle().await.unwrap();
    let e = untrusting.status().get().replication.and_then(|r| r.last_error).expect("the pass fails");
    assert!(e.to_lowercase().contains("certificate") || e.contains("unreachable"), "{e}");
    assert_eq!(version(&untrusting), None);
    drop(untrusting);

    let cfg = standby(Some(cert.clone()));
    cfg.validate().expect("peer_ca names a readable file");
    let mut trusting = Appliance::open(cfg, FaultInjector::disarmed()).await.unwrap();
    trusting.cycle().await.unwrap();
    assert_eq!(trusting.status().get().replication.and_then(|r| r.last_error), None);
    assert_eq!(version(&trusting), version(&active));
    let status = trusting.status().get();
    assert_eq!(status.peer.and_then(|p| p.epoch), Some(1), "the fence check goes over HTTPS too");

    let mut bad = standby(Some(dc.path().join("missing.pem")));
    bad.replication.peer_ca = Some(dc.path().join("missing.pem"));
    assert!(bad.validate().unwrap_err().to_string().contains("replication.peer_ca"));
}

/// The PostgreSQL protocol with TLS: psql with `sslmode=verify-full` and the server's certificate as its root
/// gets an encrypted, verified connection; `sslmode=disable` still works (TLS is offered, not forced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgwire_speaks_tls_to_psql() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 47, 1).await;
    let (cert, key) = self_signed(dir.path(), "pg");
    let config = ccmart::serve::tls::server_config(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let st = app.serve_state();
    let frontend = ccmart::serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::pgwire::serve(listener, frontend, 8, Some(config), async move {
        let _ = rx.await;
    }));
    let psql = move |sslmode: &str| {
        let conn = format!(
            "host=127.0.0.1 port={port} dbname=ccmart user=bi sslmode={sslmode} sslrootcert={} connect_timeout=10",
            cert.display()
        );
        let out = std::process::Command::new(crate::support::pg::psql_binary())
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", &conn])
            .args(["-c", "SELECT count(*) FROM interaction_fact", "-c", "\\conninfo"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (tls, plain) = tokio::task::spawn_blocking(move || (psql("verify-full"), psql("disable"))).await.unwrap();
    let calls = truth.call_count().to_string();
    for ((ok, out, err), encrypted) in [(tls, true), (plain, false)] {
        assert!(ok, "psql (TLS {encrypted}): {err}");
        assert_eq!(out.lines().next(), Some(calls.as_str()));
        assert_eq!(out.contains("SSL connection"), encrypted, "{out}");
    }
}
