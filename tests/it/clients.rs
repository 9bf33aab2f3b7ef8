//! The client libraries users already run — psql, psycopg2, psycopg 3, asyncpg, SQLAlchemy + pandas, Node `pg`,
//! pgjdbc — against ccmart and against a real PostgreSQL holding the same rows (`tests/clients/`, installed by the
//! test command). Each check compares what the library hands back from both servers; a check that differs fails
//! the test unless it is listed as a known gap in its script, and a listed gap that stops differing fails it too
//! (so the lists only shrink as ccmart gets closer).

use crate::common::*;
use ccmart::config::TokenConfig;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::Appliance;
use ccmart::serve::auth::hash_token;

const READER: &str = "ccm_reader_secret_for_client_checks";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_answer_as_postgresql_does_on_the_same_rows() {
    // Seven client processes (a JVM compiling the JDBC check among them) beside the hostile corpus left neither
    // the corpus's canary nor pgjdbc's 10 s login timeout enough of the two cores.
    let _alone = cpu_heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(71);
    let mut cfg = embedded_config(dir.path(), settings.clone());
    cfg.tokens.push(TokenConfig { name: "bi".into(), role: "reader".into(), sha256: hash_token(READER) });
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.expect("open appliance");
    let truth = simulate(&cfg, Some(&app), settings, 3).await;
    app.drain(1000).await.expect("drain");
    assert!(truth.call_count() > 50, "the checks need a mart with calls in it");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = listener.local_addr().expect("local address").port();
    let st = app.serve_state();
    let frontend = ccmart::serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::pgwire::serve(listener, frontend, 16, None, async move {
        let _ = rx.await;
    }));

    // The same rows in a real PostgreSQL, whose server time zone is UTC as ccmart's default is.
    let pg = crate::support::pg::cluster();
    let url = pg.create_database("clients");
    let name = url.rsplit('/').next().expect("database URL ends in its name").to_string();
    pg.psql("postgres", &format!("ALTER DATABASE \"{name}\" SET timezone TO 'UTC';"));
    let postgres = url.replacen("postgres://", "postgresql://", 1);
    let ccmart = format!("postgresql://bi:{READER}@127.0.0.1:{port}/ccmart");

    // For working on a check by hand: CCMART_CLIENTS_HOLD=<seconds> keeps both servers up (after the mirror) and
    // prints their DSNs, e.g. to run one script with --only.
    if let Some(secs) = std::env::var("CCMART_CLIENTS_HOLD").ok().and_then(|s| s.parse::<u64>().ok()) {
        let mirror = std::process::Command::new("python3")
            .arg(repo_file("tests/clients/mirror.py"))
            .args(["--ccmart", &ccmart, "--postgres", &postgres])
            .status()
            .expect("run mirror.py");
        assert!(mirror.success(), "mirror.py failed");
        eprintln!("CCMART_DSN={ccmart} POSTGRES_DSN={postgres} (held for {secs} s)");
        tokio::time::sleep(std::time::Duration::from_secs(secs.min(3600))).await;
    }
    let script = repo_file("tests/clients/run_all.sh");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .args(["--ccmart", &ccmart, "--postgres", &postgres])
            .env("SCRIPT_TIMEOUT", "300")
            .output()
            .expect("run tests/clients/run_all.sh")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> =
        stdout.lines().filter(|l| l.contains("\"ok\": false") && !l.contains("expected_gap")).collect();
    assert!(
        out.status.success(),
        "client checks differ from PostgreSQL (exit {:?}):\n{}\n--- every failing check:\n{}\n--- stderr:\n{}",
        out.status.code(),
        stdout.lines().filter(|l| l.contains("\"summary\"")).collect::<Vec<_>>().join("\n"),
        failed.join("\n"),
        stderr
    );
}
