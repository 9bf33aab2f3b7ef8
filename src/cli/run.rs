//! Running an appliance: `ccmart run` (a service, or a batch with `--exit-when-idle`), `ccmart demo` (the
//! embedded default) and `ccmart simulate` (filling PostgreSQL IDBs).

use anyhow::{bail, Context, Result};
use ccmart::config::Config;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::progress::ProgressUnit;
use ccmart::serve;
use ccmart::sim::Simulator;
use std::path::PathBuf;
use std::time::Duration;

/// `ccmart run`: the appliance of `config` as a service, or as a batch that exits once idle.
pub async fn run(config: PathBuf, exit_when_idle: bool) -> Result<()> {
    let cfg = Config::load(&config)?;
    if exit_when_idle {
        return run_batch(cfg).await;
    }
    run_appliance(cfg, false).await
}

/// `ccmart demo`: a simulated two-site contact center in a fresh (or given, empty) data directory.
pub async fn demo(listen: String, data_dir: Option<PathBuf>, seed: u64, history_days: f64) -> Result<()> {
    let (dir, _keep) = match data_dir {
        Some(d) if d.join("staging.redb").exists() => bail!(
            "{} already holds a demo mart; the demo's simulated IDBs live in memory and start afresh, so \
             use an empty or new --data-dir (or omit it for a temporary one)",
            d.display()
        ),
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("ccmart-demo-")
                .tempdir()
                .context("creating a temporary data directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut cfg = Config::demo(&dir, &listen, seed);
    if let Some(sim) = cfg.simulator.as_mut() {
        sim.history_days = history_days;
    }
    cfg.validate()?;
    run_appliance(cfg, true).await
}

pub async fn run_appliance(cfg: Config, demo: bool) -> Result<()> {
    let listen = cfg.appliance.listen.clone();
    let cycle = Duration::from_secs(cfg.appliance.cycle_secs);
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await?;
    let tls = match (&cfg.appliance.tls_cert, &cfg.appliance.tls_key) {
        (Some(cert), Some(key)) => Some(serve::tls::server_config(cert, key).context("appliance.tls_cert / tls_key")?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let state = app.serve_state();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let stopped = async move {
        let _ = server_stop.changed().await;
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = tokio::spawn(serve::serve_with(listener, state, cfg.appliance.http_limits(), tls, stopped));
    tracing::info!(%addr, scheme, "HTTP API listening");
    let metrics_addr = match cfg.appliance.metrics_listen.as_str() {
        "" => None,
        m => {
            let listener = bind_service(m, demo, "metrics", "appliance.metrics_listen").await?;
            let maddr = listener.local_addr()?;
            let mut metrics_stop = stop_rx.clone();
            tokio::spawn(serve::metrics::serve_metrics(listener, app.metrics(), app.tokens(), async move {
                let _ = metrics_stop.changed().await;
            }));
            tracing::info!(addr = %maddr, "Prometheus metrics at /metrics");
            Some(maddr)
        }
    };
    let pg_addr = match cfg.pgwire.listen.as_str() {
        "" => None,
        p => {
            let pg_tls = match (&cfg.pgwire.tls_cert, &cfg.pgwire.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(serve::tls::server_config(cert, key).context("pgwire.tls_cert / tls_key")?)
                }
                _ => None,
            };
            let listener = bind_service(p, demo, "PostgreSQL protocol", "pgwire.listen").await?;
            let paddr = listener.local_addr()?;
            let st = app.serve_state();
            let frontend = serve::pgwire::PgFrontend::new(st.engine, st.store, st.tokens, st.metrics);
            let mut pg_stop = stop_rx.clone();
            let secure = pg_tls.is_some();
            tokio::spawn(serve::pgwire::serve_with(listener, frontend, cfg.pgwire.limits(), pg_tls, async move {
                let _ = pg_stop.changed().await;
            }));
            tracing::info!(addr = %paddr, tls = secure, "PostgreSQL protocol listening");
            Some(paddr)
        }
    };

    // The simulator feeds embedded IDBs (demo, or a config with embedded IDBs).
    let mut driver = None;
    if let Some(simcfg) = cfg.simulator.clone().filter(|_| !app.embedded_idbs().is_empty()) {
        let now = chrono::Utc::now().timestamp();
        let start = now - (simcfg.history_days * 86_400.0) as i64;
        let sim = Simulator::new(simcfg.settings.clone(), start);
        let mut d = SimulationDriver::new(&cfg, sim, app.embedded_idbs()).await?;
        let n = simulate_history(&mut d, Some(&mut app), start, now).await?;
        tracing::debug!(writes = n, idbs = app.embedded_idbs().len(), "simulated history written");
        driver = Some((d, simcfg.live));
    }
    eprintln!("Building the mart...");
    let cycles = app.drain(10_000).await?;
    let snap = app.store().latest_snapshot()?;
    eprintln!("  mart version {} after {cycles} cycle(s)", snap.map_or(0, |s| s.version));
    if demo {
        print_examples(&addr.to_string(), metrics_addr, pg_addr);
    }
    let mut ticker = tokio::time::interval(cycle);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sim = chrono::Utc::now().timestamp();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {
                if let Some((d, true)) = driver.as_mut() {
                    let now = chrono::Utc::now().timestamp();
                    if let Err(e) = d.advance(last_sim, now, 60).await {
                        tracing::error!(error = %e, "simulator write failed");
                    }
                    last_sim = now;
                }
                match app.cycle().await {
                    Ok(r) => if let Some(v) = r.mart_version { tracing::info!(mart_version = v, rows = r.rows_staged, groups = r.groups, "published") },
                    Err(e) => tracing::error!(error = %ccmart::model::report(&e), "cycle failed; retrying next cycle"),
                }
            }
        }
    }
    eprintln!("Shutting down.");
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(())
}

/// Binds a secondary listener (metrics, PostgreSQL protocol). The demo must start on a machine where a default
/// port is taken, so it falls back to a free port there; an installed appliance must not silently move a port that
/// scrapers and BI tools are configured with.
async fn bind_service(addr: &str, demo: bool, what: &str, key: &str) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if demo => {
            tracing::warn!(error = %e, "{what} port {addr} is taken; the demo uses a free port instead");
            let ip = addr.parse::<std::net::SocketAddr>().map(|a| a.ip()).unwrap_or([127, 0, 0, 1].into());
            tokio::net::TcpListener::bind((ip, 0)).await.with_context(|| format!("listening for {what}"))
        }
        Err(e) => Err(e).with_context(|| format!("listening for {what} on {addr} ({key})")),
    }
}

pub async fn run_batch(cfg: Config) -> Result<()> {
    let t0 = std::time::Instant::now();
    let mut app = Appliance::open(cfg, FaultInjector::disarmed()).await?;
    let mut staged = 0usize;
    let mut cycles = 0usize;
    let held = loop {
        let r = app.cycle().await?;
        cycles += 1;
        staged += r.rows_staged;
        if !r.more && r.rows_staged == 0 && r.groups == 0 {
            break r.held;
        }
        eprintln!(
            "  cycle {cycles}: {} rows staged, {} groups transformed, {} partitions published \
             (extract {} ms, transform {} ms, publish {} ms; {:.1}s in all)",
            r.rows_staged,
            r.groups,
            r.partitions,
            r.extract_ms,
            r.transform_ms,
            r.publish_ms,
            t0.elapsed().as_secs_f64()
        );
    };
    let status = app.status().get();
    if let Some(unreachable) = status.idbs.iter().find(|i| !i.reachable) {
        bail!("IDB '{}' could not be read: {}", unreachable.idb, unreachable.last_error.clone().unwrap_or_default());
    }
    let snap = app.store().latest_snapshot()?;
    let waits: Vec<String> = status
        .pairs
        .iter()
        .flat_map(|p| p.waits.iter().map(move |w| (p, w)))
        .filter(|(_, w)| !w.stuck)
        .map(|(p, w)| format!("pair '{}' waits for IDB '{}' ({} s behind)", p.pair, w.idb, w.behind_secs))
        .collect();
    println!(
        "{{\"rows_staged\": {staged}, \"cycles\": {cycles}, \"seconds\": {:.3}, \"mart_version\": {}, \"quarantined\": {}, \"held_groups\": {held}, \"waiting_for\": {}}}",
        t0.elapsed().as_secs_f64(),
        snap.map_or(0, |s| s.version),
        status.quarantined_rows,
        serde_json::to_string(&waits)?
    );
    if held > 0 && !waits.is_empty() {
        return Err(super::DataHeld(format!(
            "{held} interaction(s) or session(s) are not in the mart yet: {}. Run again when the IDB has caught up, \
             wait for merge.stuck_threshold_secs, or list the failed site in merge.ignore_sources",
            waits.join("; ")
        ))
        .into());
    }
    if held > 0 {
        eprintln!("  {held} interaction(s) or session(s) are still open in the IDBs; they reach the mart once closed");
    }
    Ok(())
}

fn print_examples(addr: &str, metrics: Option<std::net::SocketAddr>, pg: Option<std::net::SocketAddr>) {
    println!();
    println!("ccmart demo is ready: http://{addr}");
    println!("Status page: open http://{addr}/ in a browser. API description: http://{addr}/v1/openapi.json");
    println!("Try (copy and paste):");
    println!("  curl -s http://{addr}/v1/status");
    println!("  curl -s http://{addr}/v1/tables");
    println!(
        "  curl -s http://{addr}/v1/query -H 'content-type: application/json' -d '{{\"sql\": \"SELECT count(*) AS calls, avg(duration) AS avg_secs FROM INTERACTION_FACT\"}}'"
    );
    println!(
        "  curl -s http://{addr}/v1/query -H 'content-type: application/json' -d '{{\"sql\": \"SELECT r.resource_name, count(*) AS answered, sum(f.talk_duration) AS talk_secs FROM INTERACTION_RESOURCE_FACT f JOIN RESOURCE_ r USING (resource_key) WHERE f.resource_role = '\\''Received'\\'' AND f.talk_count > 0 GROUP BY 1 ORDER BY 2 DESC LIMIT 10\"}}'"
    );
    println!(
        "  curl -s http://{addr}/v1/query -H 'content-type: application/json' -d '{{\"sql\": \"SELECT technical_result, count(*) FROM INTERACTION_RESOURCE_FACT GROUP BY 1 ORDER BY 2 DESC\", \"format\": \"csv\"}}'"
    );
    println!("  curl -s http://{addr}/v1/reports");
    println!("  curl -s 'http://{addr}/v1/reports/queue_service_level?format=csv'");
    println!("  curl -s -o interactions.parquet 'http://{addr}/v1/export/INTERACTION_FACT'");
    if let Some(m) = metrics {
        println!("  curl -s http://{m}/metrics | grep -E '^ccmart_(pair|idb|freshness)'");
    }
    if let Some(p) = pg {
        // Any password works in the demo (no tokens are configured; loopback only).
        println!(
            "  psql 'postgresql://demo:demo@{}:{}/ccmart' -c '\\dt' -c 'SELECT r.resource_name AS queue, q.day, q.offered, q.abandoned, q.accepted_within_sl FROM ag2_queue_day q JOIN resource_ r USING (resource_key) ORDER BY 2, 1'",
            p.ip(),
            p.port()
        );
    }
    println!("Live calls keep arriving; press Ctrl-C to stop.");
}

pub async fn simulate(config: PathBuf, days: Option<f64>, live: bool) -> Result<()> {
    let cfg = Config::load(&config)?;
    let Some(simcfg) = cfg.simulator.clone() else { bail!("{} has no [simulator] section", config.display()) };
    let days = days.unwrap_or(simcfg.history_days);
    let now = chrono::Utc::now().timestamp();
    let start = now - (days * 86_400.0) as i64;
    let sim = Simulator::new(simcfg.settings.clone(), start);
    let mut d = SimulationDriver::new(&cfg, sim, &[]).await?;
    let writes = simulate_history(&mut d, None, start, now).await?;
    eprintln!("History of {days} day(s) written: {writes} IDB writes");
    if live {
        let mut last = now;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let now = chrono::Utc::now().timestamp();
                    d.advance(last, now, 60).await?;
                    last = now;
                }
            }
        }
    }
    Ok(())
}

/// Simulated history longer than this is fed to the appliance day by day (see [`simulate_history`]).
const HISTORY_IN_ONE_GO_SECS: i64 = 2 * 86_400;

/// Writes simulated history from `start` to `end` in one-hour steps, showing progress in simulated hours.
///
/// With the appliance whose embedded IDBs it writes (`app`), a history longer than two days is written a day at a
/// time: the appliance extracts and transforms each day before the next is simulated, and each embedded IDB then
/// forgets the rows written before the previous day (all extracted, and no call or session lasts a day). Memory
/// stays bounded by two days of IDB rows instead of growing with the history (a month at 50k calls a day is ~50
/// million rows). A shorter history is written in one go and the mart built afterwards.
async fn simulate_history(
    d: &mut SimulationDriver,
    mut app: Option<&mut Appliance>,
    start: i64,
    end: i64,
) -> Result<usize> {
    if end - start <= HISTORY_IN_ONE_GO_SECS {
        app = None;
    }
    let hours = ((end - start).max(0) as u64).div_ceil(3600);
    let mut progress = ccmart::progress::Progress::new("simulated history", Some(hours), ProgressUnit::Count("hours"));
    let (mut t, mut writes, mut forgotten) = (start, 0, 0);
    let mut marks: Vec<i64> =
        app.as_ref().map(|a| a.embedded_idbs().iter().map(|(_, idb)| idb.counter()).collect()).unwrap_or_default();
    while t < end {
        let next = (t + 3600).min(end);
        writes += d.advance(t, next, 3600).await?;
        t = next;
        progress.inc(1);
        if let Some(app) = app.as_deref_mut().filter(|_| (t - start) % 86_400 == 0 || t == end) {
            app.drain(10_000).await?;
            for ((_, idb), mark) in app.embedded_idbs().iter().zip(marks.iter_mut()) {
                forgotten += idb.forget_through(*mark);
                *mark = idb.counter();
            }
        }
    }
    let dropped =
        if forgotten > 0 { format!(", {forgotten} extracted rows older than a day dropped") } else { String::new() };
    progress.finish(&format!(", {writes} IDB writes{dropped}"));
    Ok(writes)
}
