//! Shared helpers: build an appliance over simulated IDBs and compare its mart with the simulator's truth.

use ccmart::config::{Config, IdbConfig};
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::sim::{GroundTruth, SimSettings, Simulator};
use ccmart::transform::aggregate::QueueThresholds;
use datafusion::arrow::util::display::array_value_to_string;
use std::collections::BTreeMap;
use std::path::Path;

/// Start of every simulated history in tests (a fixed instant, so runs are reproducible).
pub const T0: i64 = 1_790_000_000 - 1_790_000_000 % 86_400;

/// Small, fast contact-center settings.
pub fn small_settings(seed: u64) -> SimSettings {
    SimSettings { seed, agents_per_site: 6, calls_per_hour: 90.0, session_secs: 2 * 3600, ..SimSettings::default() }
}

/// The demo configuration (embedded IDBs) with test settings, rooted at `dir`.
pub fn embedded_config(dir: &Path, settings: SimSettings) -> Config {
    let mut cfg = Config::demo(dir, "127.0.0.1:0", settings.seed);
    if let Some(s) = cfg.simulator.as_mut() {
        s.settings = settings;
    }
    // One queue with thresholds of its own, so every ground-truth comparison covers per-queue thresholds.
    cfg.transform.queues = vec![QueueThresholds {
        dbid: ccmart::sim::queue_dbid(0, 1),
        service_level_secs: Some(5),
        short_abandon_secs: Some(3),
    }];
    cfg
}

/// Makes `cfg` the appliance of site `own` whose peer is the appliance at `url`, which reports site `peer`
/// (`replication.peer_site`: answers from any other site are refused).
pub fn set_peer(cfg: &mut Config, own: &str, url: &str, peer: &str) {
    cfg.appliance.site = own.into();
    cfg.replication.peer_url = Some(url.into());
    cfg.replication.peer_site = Some(peer.into());
}

/// A config whose IDBs are PostgreSQL databases (two HA pairs).
pub fn postgres_config(dir: &Path, urls: [&str; 4], settings: SimSettings) -> Config {
    let mut cfg = embedded_config(dir, settings);
    let names = ["site1-voice-a", "site1-voice-b", "site2-voice-a", "site2-voice-b"];
    let pairs = ["site1-voice", "site1-voice", "site2-voice", "site2-voice"];
    let sites = ["site1", "site2", "site2", "site1"];
    cfg.idbs = (0..4)
        .map(|i| IdbConfig {
            name: names[i].into(),
            pair: pairs[i].into(),
            site: sites[i].into(),
            url: urls[i].into(),
            data_source: "voice".into(),
        })
        .collect();
    cfg
}

/// Simulates `hours` of history into the config's IDBs (embedded ones from `app`), then lets every call end.
pub async fn simulate(cfg: &Config, app: Option<&Appliance>, settings: SimSettings, hours: i64) -> GroundTruth {
    simulate_from(cfg, app, settings, T0, hours).await
}

/// Like [`simulate`], starting at `start` (e.g. before midnight, so facts and aggregates span two days).
pub async fn simulate_from(
    cfg: &Config,
    app: Option<&Appliance>,
    settings: SimSettings,
    start: i64,
    hours: i64,
) -> GroundTruth {
    let sim = Simulator::new(settings, start);
    let embedded = app.map(|a| a.embedded_idbs().to_vec()).unwrap_or_default();
    let mut d = SimulationDriver::new(cfg, sim, &embedded).await.expect("simulator sinks");
    d.advance(start, start + hours * 3600, 1800).await.expect("simulate");
    d.finish(start + hours * 3600).await.expect("finish");
    d.simulator().truth()
}

/// An appliance over embedded IDBs filled with `hours` of simulated history, run until idle.
pub async fn embedded_mart(dir: &Path, seed: u64, hours: i64) -> (Appliance, GroundTruth) {
    embedded_mart_from(dir, seed, T0, hours).await
}

/// Like [`embedded_mart`], starting at `start`.
pub async fn embedded_mart_from(dir: &Path, seed: u64, start: i64, hours: i64) -> (Appliance, GroundTruth) {
    let settings = small_settings(seed);
    let cfg = embedded_config(dir, settings.clone());
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.expect("open appliance");
    let truth = simulate_from(&cfg, Some(&app), settings, start, hours).await;
    app.drain(1000).await.expect("drain");
    (app, truth)
}

/// Opens an appliance and runs it until idle.
pub async fn open_and_drain(cfg: &Config) -> Appliance {
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.expect("open appliance");
    app.drain(1000).await.expect("drain");
    app
}

/// Runs SQL on the newest mart version; every value rendered as text ("" for NULL).
pub async fn sql(app: &Appliance, q: &str) -> Vec<Vec<String>> {
    let snap = app.store().latest_snapshot().expect("catalog").expect("a published mart version");
    let r = app.engine().run(&snap, q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut out = Vec::new();
    for b in &r.batches {
        for i in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| if c.is_null(i) { String::new() } else { array_value_to_string(c, i).unwrap_or_default() })
                    .collect(),
            );
        }
    }
    out
}

/// Asserts two row sets are equal regardless of order, with the first differing row in the message.
pub fn assert_same_rows(mut got: Vec<Vec<String>>, mut expected: Vec<Vec<String>>, what: impl std::fmt::Display) {
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len(), "{what}: row count");
    if let Some((g, e)) = got.iter().zip(&expected).find(|(g, e)| g != e) {
        panic!("{what}: first difference\n  mart:  {g:?}\n  truth: {e:?}");
    }
}

/// Serves an appliance's HTTP API on an ephemeral loopback port until the returned sender is dropped.
pub async fn serve_app(app: &Appliance) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let state = app.serve_state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::serve(listener, state, async move {
        let _ = rx.await;
    }));
    (base, tx)
}

/// Scrapes the appliance's Prometheus endpoint over real HTTP (ephemeral loopback port); see [`scrape`].
pub async fn scrape_metrics(app: &Appliance) -> Vec<prometheus_parse::Sample> {
    scrape_metrics_as(app, None).await
}

/// [`scrape_metrics`] with a bearer token (needed when the appliance has tokens configured).
pub async fn scrape_metrics_as(app: &Appliance, token: Option<&str>) -> Vec<prometheus_parse::Sample> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}/metrics", listener.local_addr().expect("local address"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::metrics::serve_metrics(listener, app.metrics(), app.tokens(), async move {
        let _ = rx.await;
    }));
    let samples = scrape_as(&url, token).await;
    drop(tx);
    samples
}

/// GETs a Prometheus endpoint and parses it with an independent parser of the text format; a malformed
/// exposition or a wrong content type fails here.
pub async fn scrape(url: &str) -> Vec<prometheus_parse::Sample> {
    scrape_as(url, None).await
}

/// [`scrape`] with a bearer token.
pub async fn scrape_as(url: &str, token: Option<&str>) -> Vec<prometheus_parse::Sample> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("scrape /metrics");
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = r.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition");
    // Nothing silently dropped: every counter and gauge line is a sample, every histogram has one.
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = l.split_once(' ').expect("TYPE line");
        let parsed = scrape.samples.iter().filter(|s| s.metric == name).count();
        let lines = text.lines().filter(|x| x.starts_with(&format!("{name}{{")) || x.starts_with(&format!("{name} ")));
        match kind {
            "counter" | "gauge" => assert_eq!(parsed, lines.count(), "series of {name} parse: {text}"),
            _ => assert!(parsed > 0, "{name} parses: {text}"),
        }
    }
    scrape.samples
}

/// The value of the series `name` whose labels include `labels` (counters, gauges, untyped).
pub fn metric(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.iter().filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).find_map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        },
    )
}

/// Asserts the mart equals the ground truth: every call, every agent leg and queue visit with its durations and
/// result, every agent state period. Returns the number of calls compared.
/// A mart login session id as the simulator's truth names it: a simulator running with per-IDB session ids
/// appends `~<IDB>` to the id in each IDB (`SimSettings::per_idb_login_session_ids`).
const SESSION_ID: &str = "split_part(login_session_id, '~', 1)";

pub async fn assert_mart_matches_truth(app: &Appliance, truth: &GroundTruth) -> usize {
    // Interactions.
    let rows = sql(app, "SELECT media_server_ixn_guid, start_ts, end_ts FROM INTERACTION_FACT").await;
    assert_eq!(rows.len(), truth.calls.len(), "one INTERACTION_FACT row per simulated call");
    let mart: BTreeMap<String, (i64, i64)> =
        rows.iter().map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].parse().unwrap()))).collect();
    assert_eq!(mart.len(), rows.len(), "no interaction twice");
    for (id, c) in &truth.calls {
        assert_eq!(mart.get(id), Some(&(c.start_ts, c.end_ts)), "call {id}");
    }
    // Agent legs.
    let rows = sql(
        app,
        "SELECT f.media_server_ixn_guid, r.resource_cfg_dbid, f.start_ts, f.end_ts, f.ring_duration, f.talk_duration, \
         f.hold_count, f.hold_duration, f.after_call_work_count, f.after_call_work_duration, f.technical_result \
         FROM INTERACTION_RESOURCE_FACT f JOIN RESOURCE_ r ON f.resource_key = r.resource_key WHERE f.resource_role = 'Received'",
    )
    .await;
    let mut expected: Vec<Vec<String>> = Vec::new();
    for c in truth.calls.values() {
        for l in &c.legs {
            let result = match l.result {
                ccmart::sim::truth::LegResult::Completed => "Completed",
                ccmart::sim::truth::LegResult::Transferred => "Transferred",
                ccmart::sim::truth::LegResult::Redirected => "Redirected",
            };
            expected.push(
                [
                    c.callid.clone(),
                    l.agent_dbid.to_string(),
                    l.start_ts.to_string(),
                    l.end_ts.to_string(),
                    l.ring_secs.to_string(),
                    l.talk_secs.to_string(),
                    l.hold_count.to_string(),
                    l.hold_secs.to_string(),
                    l.acw_count.to_string(),
                    l.acw_secs.to_string(),
                    result.to_string(),
                ]
                .to_vec(),
            );
        }
    }
    assert_same_rows(
        rows,
        expected,
        "agent legs (callid, agent, start, end, ring, talk, holds, hold, acw count, acw, result)",
    );
    // Queue visits.
    let rows = sql(
        app,
        "SELECT f.media_server_ixn_guid, r.resource_cfg_dbid, f.start_ts, f.mediation_duration, f.technical_result \
         FROM INTERACTION_RESOURCE_FACT f JOIN RESOURCE_ r ON f.resource_key = r.resource_key WHERE f.resource_role = 'Queue'",
    )
    .await;
    let expected: Vec<Vec<String>> = truth
        .calls
        .values()
        .flat_map(|c| {
            c.queue_visits.iter().map(move |v| {
                vec![
                    c.callid.clone(),
                    v.queue_dbid.to_string(),
                    v.start_ts.to_string(),
                    (v.end_ts - v.start_ts).to_string(),
                    if v.abandoned { "Abandoned" } else { "Diverted" }.to_string(),
                ]
            })
        })
        .collect();
    assert_same_rows(rows, expected, "queue visits (callid, queue, start, wait, result)");
    // Agent states.
    let rows = sql(
        app,
        &format!("SELECT {SESSION_ID}, start_ts, end_ts, resource_state, state_reason FROM SM_RES_STATE_FACT"),
    )
    .await;
    let expected: Vec<Vec<String>> = truth
        .states
        .iter()
        .map(|s| {
            vec![
                s.session_id.clone(),
                s.start_ts.to_string(),
                s.end_ts.to_string(),
                ccmart::source::contract::agent_state::name(s.state).to_string(),
                s.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    assert_same_rows(rows, expected, "agent state periods");
    // Attached data: the configured keys (default ServiceType, CustomerSegment) of every call.
    let rows = sql(app, "SELECT media_server_ixn_guid, key_name, value FROM INTERACTION_USER_DATA_FACT").await;
    let expected: Vec<Vec<String>> = truth
        .calls
        .values()
        .flat_map(|c| c.user_data.iter().map(move |(k, v)| vec![c.callid.clone(), k.clone(), v.clone()]))
        .collect();
    assert!(!expected.is_empty());
    assert_same_rows(rows, expected, "attached data (callid, key, value)");
    // Dimensions: every key on a fact resolves, and the reason dimension holds exactly the codes agents used.
    for (fact, dim, key) in [
        ("interaction_fact", "interaction_type", "interaction_type_key"),
        ("interaction_fact", "media_type", "media_type_key"),
        ("interaction_resource_fact", "technical_descriptor", "technical_descriptor_key"),
        ("sm_res_state_fact", "resource_state", "resource_state_key"),
        ("sm_res_state_reason_fact", "resource_state_reason", "resource_state_reason_key"),
    ] {
        let orphans = sql(
            app,
            &format!("SELECT count(*) FROM {fact} f LEFT JOIN {dim} d ON f.{key} = d.{key} WHERE d.{key} IS NULL"),
        )
        .await;
        assert_eq!(orphans, vec![vec!["0".to_string()]], "{fact}.{key} → {dim}");
    }
    let mut codes: Vec<String> =
        sql(app, "SELECT reason_code FROM resource_state_reason").await.into_iter().map(|r| r[0].clone()).collect();
    codes.sort();
    let mut expected: Vec<String> = truth.states.iter().filter_map(|s| s.reason.clone()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(codes, expected, "reason codes");
    // Persons: each site's supervisor is in RESOURCE_ as a supervisor (GC_AGENT.TYPE), not as an agent.
    let supervisors =
        sql(app, "SELECT resource_cfg_dbid FROM RESOURCE_ WHERE resource_type = 'Supervisor' ORDER BY 1").await;
    let sites: std::collections::BTreeSet<usize> = truth.calls.values().map(|c| c.site).collect();
    let expected: Vec<Vec<String>> = sites.iter().map(|&s| vec![ccmart::sim::supervisor_dbid(s).to_string()]).collect();
    assert_eq!(supervisors, expected, "supervisors");
    // Every technical result docs/schema.md lists, per role, once.
    let descriptors = sql(app, "SELECT resource_role, technical_result FROM technical_descriptor ORDER BY 1, 2").await;
    let expected: Vec<Vec<String>> = [
        ("Queue", "Abandoned"),
        ("Queue", "Diverted"),
        ("Queue", "Stuck"),
        ("Received", "Abandoned"),
        ("Received", "Completed"),
        ("Received", "Redirected"),
        ("Received", "Stuck"),
        ("Received", "Transferred"),
    ]
    .iter()
    .map(|(r, t)| vec![r.to_string(), t.to_string()])
    .collect();
    assert_eq!(descriptors, expected, "technical descriptors");
    // Calendar: every day with facts has its 96 intervals, and every fact's interval is in it.
    let per_day = sql(app, "SELECT day, count(*) FROM DATE_TIME GROUP BY day").await;
    assert!(!per_day.is_empty() && per_day.iter().all(|r| r[1] == "96"), "{per_day:?}");
    let orphans = sql(
        app,
        "SELECT count(*) FROM INTERACTION_RESOURCE_FACT f LEFT JOIN DATE_TIME d ON f.start_date_time_key = d.date_time_key \
         WHERE d.date_time_key IS NULL",
    )
    .await;
    assert_eq!(orphans, vec![vec!["0".to_string()]]);
    // Mediation segments (queue stays).
    let rows = sql(
        app,
        "SELECT m.media_server_ixn_guid, r.resource_cfg_dbid, m.start_ts, m.end_ts, m.mediation_duration, m.abandoned, \
         m.distributed FROM MEDIATION_SEGMENT_FACT m JOIN RESOURCE_ r ON m.resource_key = r.resource_key",
    )
    .await;
    let expected: Vec<Vec<String>> = truth
        .calls
        .values()
        .flat_map(|c| {
            c.queue_visits.iter().map(move |v| {
                vec![
                    c.callid.clone(),
                    v.queue_dbid.to_string(),
                    v.start_ts.to_string(),
                    v.end_ts.to_string(),
                    (v.end_ts - v.start_ts).to_string(),
                    i64::from(v.abandoned).to_string(),
                    i64::from(!v.abandoned).to_string(),
                ]
            })
        })
        .collect();
    assert_same_rows(rows, expected, "mediation segments (callid, queue, start, end, wait, abandoned, distributed)");
    // Login sessions.
    let rows = sql(
        app,
        "SELECT split_part(s.login_session_id, '~', 1), r.resource_cfg_dbid, s.start_ts, s.end_ts, \
         s.total_duration FROM SM_RES_SESSION_FACT s JOIN RESOURCE_ r ON s.resource_key = r.resource_key",
    )
    .await;
    let expected: Vec<Vec<String>> = truth
        .sessions
        .iter()
        .map(|s| {
            vec![
                s.session_id.clone(),
                s.agent_dbid.to_string(),
                s.start_ts.to_string(),
                s.end_ts.to_string(),
                (s.end_ts - s.start_ts).to_string(),
            ]
        })
        .collect();
    assert!(!expected.is_empty(), "agents logged out");
    assert_same_rows(rows, expected, "login sessions");
    // Not-ready reasons.
    let rows =
        sql(app, &format!("SELECT {SESSION_ID}, start_ts, end_ts, reason_code FROM SM_RES_STATE_REASON_FACT")).await;
    let expected: Vec<Vec<String>> = truth
        .states
        .iter()
        .filter(|s| s.state == ccmart::source::contract::agent_state::NOT_READY)
        .filter_map(|s| {
            Some(vec![s.session_id.clone(), s.start_ts.to_string(), s.end_ts.to_string(), s.reason.clone()?])
        })
        .collect();
    assert!(!expected.is_empty(), "agents took breaks");
    assert_same_rows(rows, expected, "not-ready reason periods");
    // Queue aggregates, computed here from the truth's queue stays with each queue's thresholds from the config
    // (the `[transform]` defaults, or the queue's own `[[transform.queue]]` entry).
    let transform = &app.config().transform;
    for (table, width) in [("AG2_QUEUE_SUBHR", 900), ("AG2_QUEUE_HOUR", 3600), ("AG2_QUEUE_DAY", 86_400)] {
        let rows = sql(
            app,
            &format!(
                "SELECT r.resource_cfg_dbid, a.date_time_key, a.offered, a.accepted, a.abandoned, a.abandoned_short, \
                 a.accepted_within_sl, a.accepted_wait_secs, a.abandoned_wait_secs, a.max_wait_secs, \
                 a.service_level_threshold_secs, a.short_abandon_threshold_secs, \
                 CAST(round(a.avg_speed_of_answer_secs * 1000) AS BIGINT), CAST(round(a.service_level_pct * 1000) AS BIGINT), \
                 CAST(round(a.abandon_rate_pct * 1000) AS BIGINT) \
                 FROM {table} a JOIN RESOURCE_ r ON a.resource_key = r.resource_key"
            ),
        )
        .await;
        let mut buckets: BTreeMap<(i64, i64), [i64; 8]> = BTreeMap::new();
        for v in truth.calls.values().flat_map(|c| c.queue_visits.iter()) {
            let (sl, short) = transform.thresholds_for(v.queue_dbid);
            let wait = v.end_ts - v.start_ts;
            let b = buckets.entry((v.queue_dbid, v.start_ts - v.start_ts.rem_euclid(width))).or_default();
            b[0] += 1;
            if v.abandoned {
                b[2] += 1;
                b[3] += i64::from(wait <= short);
                b[6] += wait;
            } else {
                b[1] += 1;
                b[4] += i64::from(wait <= sl);
                b[5] += wait;
            }
            b[7] = b[7].max(wait);
        }
        let expected: Vec<Vec<String>> = buckets
            .into_iter()
            .map(|((q, t), m)| {
                let (sl, short) = transform.thresholds_for(q);
                [q, t]
                    .into_iter()
                    .chain(m)
                    .chain([sl, short])
                    .map(|x| x.to_string())
                    .chain([milli(m[5], m[1], 1.0), milli(m[4], m[0] - m[3], 100.0), milli(m[2], m[0], 100.0)])
                    .collect()
            })
            .collect();
        assert_same_rows(
            rows,
            expected,
            "{table} (queue, bucket, offered, accepted, abandoned, short, within SL, waits, thresholds, ASA, SL %, abandon %)",
        );
    }
    // Agent aggregates, from the truth's legs (bucket of the offer) and state periods (split over buckets).
    for (table, width) in [("AG2_AGENT_SUBHR", 900i64), ("AG2_AGENT_HOUR", 3600), ("AG2_AGENT_DAY", 86_400)] {
        let rows = sql(
            app,
            &format!(
                "SELECT r.resource_cfg_dbid, a.date_time_key, a.offered, a.accepted, a.redirected, a.transferred, \
                 a.talk_secs, a.hold_secs, a.hold_count, a.after_call_work_secs, a.after_call_work_count, a.ready_secs, \
                 a.not_ready_secs, a.busy_secs, a.after_call_work_state_secs, a.engage_secs, a.handle_secs, \
                 CAST(round(a.avg_handle_secs * 1000) AS BIGINT), CAST(round(a.occupancy_pct * 1000) AS BIGINT) \
                 FROM {table} a JOIN RESOURCE_ r ON a.resource_key = r.resource_key"
            ),
        )
        .await;
        let mut buckets: BTreeMap<(i64, i64), [i64; 13]> = BTreeMap::new();
        for l in truth.calls.values().flat_map(|c| c.legs.iter()) {
            let b = buckets.entry((l.agent_dbid, l.start_ts - l.start_ts.rem_euclid(width))).or_default();
            b[0] += 1;
            b[1] += i64::from(l.talk_secs > 0);
            b[2] += i64::from(l.result == ccmart::sim::truth::LegResult::Redirected);
            b[3] += i64::from(l.result == ccmart::sim::truth::LegResult::Transferred);
            b[4] += l.talk_secs;
            b[5] += l.hold_secs;
            b[6] += l.hold_count;
            b[7] += l.acw_secs;
            b[8] += l.acw_count;
        }
        for st in &truth.states {
            let slot = match st.state {
                ccmart::source::contract::agent_state::READY => 9,
                ccmart::source::contract::agent_state::NOT_READY => 10,
                ccmart::source::contract::agent_state::BUSY => 11,
                ccmart::source::contract::agent_state::AFTER_CALL_WORK => 12,
                _ => continue,
            };
            let mut t = st.start_ts - st.start_ts.rem_euclid(width);
            while t < st.end_ts {
                let secs = st.end_ts.min(t + width) - st.start_ts.max(t);
                if secs > 0 {
                    buckets.entry((st.agent_dbid, t)).or_default()[slot] += secs;
                }
                t += width;
            }
        }
        // Engage = talk + hold, handle = engage + after-call work (of the legs); average handle per accepted
        // leg; occupancy = time working (busy + after-call work state) over time available or working.
        let expected: Vec<Vec<String>> = buckets
            .into_iter()
            .map(|((a, t), m)| {
                let (engage, handle, working) = (m[4] + m[5], m[4] + m[5] + m[7], m[11] + m[12]);
                [a, t]
                    .into_iter()
                    .chain(m)
                    .chain([engage, handle])
                    .map(|x| x.to_string())
                    .chain([milli(handle, m[1], 1.0), milli(working, m[9] + working, 100.0)])
                    .collect()
            })
            .collect();
        assert_same_rows(rows, expected, "{table} (agent, bucket, offered, accepted, redirected, transferred, talk, hold, holds, acw, acws, ready, not ready, busy, acw state, engage, handle, avg handle, occupancy)");
    }
    truth.calls.len()
}

/// `scale * num / den` in thousandths, as the tests read the mart's ratio columns (`round(x * 1000)`), or "" (NULL)
/// when `den` is not positive, as the mart leaves it.
fn milli(num: i64, den: i64, scale: f64) -> String {
    if den > 0 {
        ((scale * num as f64 / den as f64) * 1000.0).round().to_string()
    } else {
        String::new()
    }
}

/// Runs one query with DuckDB's Python module on a Parquet file (`{}` = the path).
pub fn duckdb_scalar(file: &std::path::Path, sql: &str) -> String {
    let q = sql.replace("{}", &file.display().to_string());
    let o = std::process::Command::new("python3")
        .args(["-c", "import duckdb,sys; print(duckdb.connect().execute(sys.argv[1]).fetchall()[0][0])", &q])
        .output()
        .expect("python3 with the duckdb module (scripts/test.sh installs it)");
    assert!(o.status.success(), "duckdb: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A file of this repository. Resolved when the test runs (cargo sets `CARGO_MANIFEST_DIR` for the test process), not
/// when it compiles: CI reuses one target directory across clones at different paths, and an unchanged test binary
/// keeps whatever path it was first compiled at.
/// Held by the tests that load both cores for long and whose assertions are about time (a canary answered within
/// the query time limit, a client's login timeout), so the suite's two test threads never run two of them at once.
pub async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

pub fn repo_file(rel: &str) -> std::path::PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::path::Path::new(&root).join(rel)
}

/// What a [`relay_proxy`] does to replication file bodies: flip one byte in the middle of the next `flips`, then cut
/// the next `cuts` in half, and send every file body in two halves `slow_ms` apart (so a copy is slow enough to
/// be interrupted in the middle of a file). While `hold` is set, the second half waits (at most two minutes): a test
/// that must interrupt a copy in the middle of a file sets it, sees the half-written file, acts, then clears it.
#[derive(Debug, Default)]
pub struct LineDamage {
    pub flips: std::sync::atomic::AtomicUsize,
    pub cuts: std::sync::atomic::AtomicUsize,
    pub slow_ms: std::sync::atomic::AtomicU64,
    pub hold: std::sync::atomic::AtomicBool,
    /// Requests the proxy is handling. A request the client gave up on (a pass that stopped at the first damaged
    /// file) may still take a damage after the pass returned; [`LineDamage::settle`] waits for it.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl LineDamage {
    /// Waits (at most 10 s) until the proxy handles no request, so the damage counters no longer change.
    pub async fn settle(&self) {
        for _ in 0..1000 {
            if self.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Counts a request in [`LineDamage::in_flight`] for as long as it is handled, also when it is dropped.
struct InFlight(std::sync::Arc<LineDamage>);

impl InFlight {
    fn new(damage: std::sync::Arc<LineDamage>) -> Self {
        damage.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(damage)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An HTTP proxy on an ephemeral loopback port in front of `upstream`, standing in for the line between two sites
/// (see [`LineDamage`]); everything but replication file bodies is forwarded untouched. Returns its base URL.
pub async fn relay_proxy(upstream: String, damage: std::sync::Arc<LineDamage>) -> String {
    use futures::StreamExt;
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::new();
    let take = |n: &std::sync::atomic::AtomicUsize| {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
    };
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, upstream, damage) = (client.clone(), upstream.clone(), damage.clone());
        async move {
            let _in_flight = InFlight::new(damage.clone());
            let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let mut forward = client.request(req.method().clone(), format!("{upstream}{target}"));
            for (k, v) in req.headers() {
                if k != "host" {
                    forward = forward.header(k, v);
                }
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
            let Ok(resp) = forward.body(body).send().await else {
                return axum::http::Response::builder().status(502).body(axum::body::Body::empty()).unwrap();
            };
            let (status, headers) = (resp.status(), resp.headers().clone());
            let mut bytes = resp.bytes().await.unwrap_or_default().to_vec();
            let file = target.starts_with("/v1/replication/file");
            if file && bytes.len() > 1 {
                if take(&damage.flips) {
                    let i = bytes.len() / 2;
                    bytes[i] ^= 0x5a;
                } else if take(&damage.cuts) {
                    bytes.truncate(bytes.len() / 2);
                }
            }
            let mut out = axum::http::Response::builder().status(status);
            for (k, v) in headers.iter().filter(|(k, _)| *k != "content-length" && *k != "transfer-encoding") {
                out = out.header(k, v);
            }
            let slow = damage.slow_ms.load(Ordering::SeqCst);
            let body = if file && (slow > 0 || damage.hold.load(Ordering::SeqCst)) && bytes.len() > 1 {
                let second = bytes.split_off(bytes.len() / 2);
                let halves =
                    futures::stream::iter([(bytes, 0u64, false), (second, slow, true)]).then(move |(b, wait, last)| {
                        let damage = damage.clone();
                        async move {
                            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                            if last {
                                for _ in 0..12_000 {
                                    if !damage.hold.load(Ordering::SeqCst) {
                                        break;
                                    }
                                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                                }
                            }
                            Ok::<_, std::io::Error>(bytes::Bytes::from(b))
                        }
                    });
                axum::body::Body::from_stream(halves)
            } else {
                axum::body::Body::from(bytes)
            };
            out.body(body).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Every mart file of `root` (relative path → content), `.partial` leftovers included.
pub fn mart_files(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}
