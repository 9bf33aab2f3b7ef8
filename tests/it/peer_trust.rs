//! Replication never trusts whatever answers at `peer_url`: a fake peer (an HTTP server on a loopback port that
//! answers like an appliance, proxying a real one until it is told to lie) sends each bad answer an attacker's test
//! found. Every time the answer is refused with a precise error, the local mart is exactly as it was (files,
//! catalog, query answers), and the appliance goes on serving.

use crate::common::*;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::{Appliance, SimulationDriver};
use ccmart::replicate::fencing::Role;
use ccmart::replicate::sync::{
    check_manifest, check_path, plan_deletions, plan_downloads, Manifest, PeerTrust, SyncError, INCOMING_DIR,
};
use ccmart::sim::Simulator;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the fake peer answers. `None`: what the real appliance at `upstream` answers.
#[derive(Default)]
struct Fake {
    upstream: Mutex<String>,
    fence: Mutex<Option<Value>>,
    /// The manifest's JSON text.
    manifest: Mutex<Option<String>>,
    /// A file path whose download is answered with this many bytes (streamed, no length announced).
    flood: Mutex<Option<(String, u64)>>,
    /// The manifest is answered `500 Internal Server Error` with this many bytes of body (streamed).
    manifest_error_flood: Mutex<Option<u64>>,
    /// Bytes of the floods generated so far.
    flooded: AtomicU64,
    /// File downloads asked for.
    file_requests: AtomicUsize,
}

impl Fake {
    fn lie_fence(&self, v: Value) {
        *self.fence.lock().unwrap() = Some(v);
    }
    fn lie_manifest(&self, v: Value) {
        *self.manifest.lock().unwrap() = Some(v.to_string());
    }
    fn lie_manifest_text(&self, text: String) {
        *self.manifest.lock().unwrap() = Some(text);
    }
    fn tell_the_truth(&self) {
        *self.fence.lock().unwrap() = None;
        *self.manifest.lock().unwrap() = None;
        *self.flood.lock().unwrap() = None;
        *self.manifest_error_flood.lock().unwrap() = None;
    }
}

/// A body of `total` bytes, generated (and counted in `fake.flooded`) as it is read.
fn flood_body(fake: &Arc<Fake>, total: u64) -> axum::body::Body {
    let chunk = bytes::Bytes::from(vec![0u8; 1 << 20]);
    let f = fake.clone();
    let body = futures::stream::unfold(0u64, move |sent| {
        let (chunk, f) = (chunk.clone(), f.clone());
        async move {
            (sent < total).then(|| {
                f.flooded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                (Ok::<_, std::io::Error>(chunk.clone()), sent + chunk.len() as u64)
            })
        }
    });
    axum::body::Body::from_stream(body)
}

/// Serves `fake` on an ephemeral loopback port; returns its base URL.
async fn fake_peer(fake: Arc<Fake>) -> String {
    use axum::body::Body;
    use axum::http::Response;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (fake, client) = (fake.clone(), client.clone());
        async move {
            let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let json = |text: String| {
                Response::builder().header("content-type", "application/json").body(Body::from(text)).unwrap()
            };
            match req.uri().path() {
                "/v1/replication/fence" => {
                    if let Some(v) = fake.fence.lock().unwrap().clone() {
                        return json(v.to_string());
                    }
                }
                "/v1/replication/manifest" => {
                    let error_flood = *fake.manifest_error_flood.lock().unwrap();
                    if let Some(total) = error_flood {
                        return Response::builder().status(500).body(flood_body(&fake, total)).unwrap();
                    }
                    if let Some(v) = fake.manifest.lock().unwrap().clone() {
                        return json(v);
                    }
                }
                "/v1/replication/file" => {
                    fake.file_requests.fetch_add(1, Ordering::SeqCst);
                    let asked: Option<String> = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                        .find(|(k, _)| k == "path")
                        .map(|(_, v)| v.into_owned());
                    let flood = fake.flood.lock().unwrap().clone();
                    if let Some((_, total)) = flood.filter(|(p, _)| Some(p) == asked.as_ref()) {
                        return Response::builder().body(flood_body(&fake, total)).unwrap();
                    }
                }
                _ => {}
            }
            let upstream = fake.upstream.lock().unwrap().clone();
            let Ok(resp) = client.get(format!("{upstream}{target}")).send().await else {
                return Response::builder().status(502).body(Body::empty()).unwrap();
            };
            let status = resp.status();
            Response::builder().status(status).body(Body::from(resp.bytes().await.unwrap_or_default())).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The real active site: site1 with an hour of calls, served on a loopback port, and the driver that feeds it.
struct Active {
    app: Appliance,
    base: String,
    feed: SimulationDriver,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn active(seed: u64) -> Active {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = embedded_config(dir.path(), small_settings(seed));
    cfg.maintenance.interval_secs = 0;
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    let mut feed =
        SimulationDriver::new(&cfg, Simulator::new(small_settings(seed), T0), app.embedded_idbs()).await.unwrap();
    feed.advance(T0, T0 + 3600, 1800).await.unwrap();
    app.drain(1000).await.unwrap();
    let (base, stop) = serve_app(&app).await;
    Active { app, base, feed, _dir: dir, _stop: stop }
}

impl Active {
    /// Half an hour more of calls, published.
    async fn advance(&mut self, from_min: i64) {
        let from = T0 + from_min * 60;
        self.feed.advance(from, from + 1800, 1800).await.unwrap();
        self.app.drain(1000).await.unwrap();
    }

    /// What the real appliance answers at `path`.
    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.base)).await.unwrap().json().await.unwrap()
    }
}

/// An appliance under attack, served on a loopback port.
struct Victim {
    app: Appliance,
    base: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A standby at site2 whose peer (site1) is `peer_url`, after one pass that copied the real active's mart.
async fn standby(seed: u64, peer_url: &str, active: &Active) -> Victim {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = embedded_config(dir.path(), small_settings(seed));
    cfg.maintenance.interval_secs = 0;
    cfg.replication.initial_role = Role::Standby;
    set_peer(&mut cfg, "site2", peer_url, "site1");
    let mut app = Appliance::open(cfg, FaultInjector::disarmed()).await.unwrap();
    app.cycle().await.unwrap();
    assert_eq!(last_error(&app), None);
    assert_eq!(version(&app), version(&active.app), "the standby copied the active's mart");
    let (base, stop) = serve_app(&app).await;
    Victim { app, base, _dir: dir, _stop: stop }
}

fn version(app: &Appliance) -> Option<u64> {
    app.store().latest_snapshot().unwrap().map(|s| s.version)
}

fn last_error(app: &Appliance) -> Option<String> {
    app.status().get().replication.and_then(|r| r.last_error)
}

/// Everything an attack could change: every mart file with its content, the catalog, and query answers.
#[derive(Debug, PartialEq)]
struct Local {
    files: BTreeMap<String, Vec<u8>>,
    versions: Vec<ccmart::staging::MartSnapshot>,
    answer: Vec<Vec<String>>,
}

async fn local(app: &Appliance) -> Local {
    Local {
        files: mart_files(app.mart().root()),
        versions: app.store().snapshots().unwrap(),
        answer: sql(app, "SELECT count(*), sum(end_ts - start_ts), min(media_server_ixn_guid) FROM interaction_fact")
            .await,
    }
}

/// Asserts that nothing changed locally and that the appliance still answers queries over HTTP, as before.
async fn assert_unchanged(victim: &Victim, before: &Local, what: &str) {
    let now = local(&victim.app).await;
    assert_eq!(now.files.len(), before.files.len(), "{what}: the same number of mart files");
    assert!(now.files == before.files, "{what}: every mart file unchanged");
    assert_eq!(now.versions, before.versions, "{what}: the same catalog");
    assert_eq!(now.answer, before.answer, "{what}: the same query answer");
    let body =
        json!({"sql": "SELECT count(*), sum(end_ts - start_ts), min(media_server_ixn_guid) FROM interaction_fact"});
    let r = reqwest::Client::new().post(format!("{}/v1/query", victim.base)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{what}: still serving");
    let v: Value = r.json().await.unwrap();
    let served: Vec<String> =
        v["rows"][0].as_array().unwrap().iter().map(|c| c.as_str().map_or(c.to_string(), str::to_string)).collect();
    assert_eq!(served, before.answer[0], "{what}: the same answer over HTTP");
}

/// Runs one cycle and returns the replication error it left (there must be one).
async fn refused(victim: &mut Victim, what: &str) -> String {
    victim.app.cycle().await.unwrap_or_else(|e| panic!("{what}: the cycle itself fails: {e}"));
    last_error(&victim.app).unwrap_or_else(|| panic!("{what}: the bad manifest is refused"))
}

/// A standby, then a fenced active: the peer answers as another site. Neither the fence answer nor the manifest is
/// believed; the active stays active at its epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_another_site_are_refused() {
    let mut a = active(60).await;
    let fake = Arc::new(Fake::default());
    *fake.upstream.lock().unwrap() = a.base.clone();
    let url = fake_peer(fake.clone()).await;
    let mut s = standby(60, &url, &a).await;
    a.advance(60).await;
    let before = local(&s.app).await;

    // The manifest of the new version says it comes from another site.
    let mut m = a.get("/v1/replication/manifest").await;
    m["fence"]["site"] = json!("site9");
    fake.lie_manifest(m);
    let e = refused(&mut s, "manifest of site9").await;
    assert!(e.contains("site 'site9'") && e.contains("replication.peer_site is 'site1'"), "{e}");
    assert_unchanged(&s, &before, "manifest of site9").await;

    // The fence answer says another site is active at a much higher epoch: the standby does not adopt it.
    let mut f = a.get("/v1/replication/fence").await;
    f["site"] = json!("site9");
    f["fence"]["epoch"] = json!(40);
    fake.lie_fence(f.clone());
    s.app.cycle().await.unwrap();
    let peer = s.app.status().get().peer.unwrap();
    let e = peer.last_error.unwrap();
    assert!(e.contains("'site9'") && e.contains("replication.peer_site is 'site1'"), "{e}");
    assert_eq!((s.app.fence().get().role, s.app.fence().get().epoch), (Role::Standby, 1));
    assert_unchanged(&s, &before, "fence answer of site9").await;

    // The same fence answer at an active with its own mart: it stays active at epoch 1 and keeps its mart.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = embedded_config(dir.path(), small_settings(61));
    cfg.maintenance.interval_secs = 0;
    set_peer(&mut cfg, "site1", &url, "site2");
    fake.tell_the_truth();
    fake.lie_fence(json!({"site": "site2", "fence": {"role": "standby", "epoch": 1, "since": 0, "reason": ""}}));
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    let _feed = simulate(&cfg, Some(&app), small_settings(61), 1).await;
    app.drain(1000).await.unwrap();
    let (base, stop) = serve_app(&app).await;
    let mut v = Victim { app, base, _dir: dir, _stop: stop };
    let before = local(&v.app).await;
    fake.lie_fence(f);
    v.app.cycle().await.unwrap();
    assert_eq!((v.app.fence().get().role, v.app.fence().get().epoch), (Role::Active, 1), "not fenced by site9");
    let e = v.app.status().get().peer.unwrap().last_error.unwrap();
    assert!(e.contains("'site9'"), "{e}");
    assert_unchanged(&v, &before, "active hears site9").await;
    let http = reqwest::Client::new();
    let r = http.post(format!("{}/v1/admin/maintenance", v.base)).send().await.unwrap();
    assert_eq!(r.status(), 202, "still active: it accepts admin writes");
    drop(v);
}

/// The finding: a fake peer at a higher epoch demoted an active, and its maintenance mirror then deleted the active's
/// own mart. A higher epoch of the expected site still fences the active (the fencing design), but no manifest
/// that does not verify changes its mart: not one naming versions whose Delta versions do not exist, not a one-file
/// manifest, not one with no version at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_active_keeps_its_mart_until_a_complete_newer_version_is_in_place() {
    let fake = Arc::new(Fake::default());
    fake.lie_fence(json!({"site": "site2", "fence": {"role": "standby", "epoch": 1, "since": 0, "reason": ""}}));
    let url = fake_peer(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = embedded_config(dir.path(), small_settings(62));
    cfg.maintenance.interval_secs = 0;
    set_peer(&mut cfg, "site1", &url, "site2");
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    let _truth = simulate(&cfg, Some(&app), small_settings(62), 1).await;
    app.drain(1000).await.unwrap();
    let (base, stop) = serve_app(&app).await;
    let mut v = Victim { app, base, _dir: dir, _stop: stop };
    let before = local(&v.app).await;
    assert!(before.files.len() > 50, "a real mart: {} files", before.files.len());
    let ours = v.app.store().latest_snapshot().unwrap().unwrap();
    let files = ccmart::replicate::sync::list_files(v.app.mart().root(), &Default::default()).unwrap();
    let fence = json!({"site": "site2", "fence": {"role": "active", "epoch": 7, "since": 0, "reason": "promoted"}});

    // Site2 is active at epoch 7: this site is fenced, as designed.
    fake.lie_fence(fence.clone());
    let mut bogus = ours.clone();
    bogus.version += 1;
    bogus.tables.insert("interaction_fact".into(), 12_345);
    fake.lie_manifest(json!({"fence": fence, "versions": [bogus], "files": [files[0]]}));
    let e = refused(&mut v, "a version of Delta versions that do not exist").await;
    let f = v.app.fence().get();
    assert_eq!((f.role, f.epoch), (Role::Standby, 7), "fenced by the higher epoch of its peer site");
    assert!(e.contains(&format!("mart version {} of the peer cannot be served", bogus.version)), "{e}");
    assert!(e.contains("interaction_fact at Delta version 12345") && e.contains("not in the manifest"), "{e}");
    assert_unchanged(&v, &before, "fenced, then a manifest of missing Delta versions").await;

    // One file and the versions this site serves: nothing is forgotten or deleted.
    fake.lie_manifest(json!({"fence": fence, "versions": before.versions, "files": [files[0]]}));
    let e = refused(&mut v, "a one-file manifest").await;
    assert!(e.contains("not in the manifest"), "{e}");
    assert_unchanged(&v, &before, "a one-file manifest").await;

    // No version at all: the peer is behind this site, which keeps its mart (and says nothing is wrong).
    fake.lie_manifest(json!({"fence": fence, "versions": [], "files": [files[0]]}));
    v.app.cycle().await.unwrap();
    assert_eq!(last_error(&v.app), None);
    assert_unchanged(&v, &before, "a manifest with no version").await;
    // An older version only: likewise.
    assert!(ours.version > 1, "several versions were published");
    let mut old = before.versions[0].clone();
    old.version = 1;
    fake.lie_manifest(json!({"fence": fence, "versions": [old], "files": files}));
    v.app.cycle().await.unwrap();
    assert_unchanged(&v, &before, "a manifest of an older version").await;
}

/// The finding: a manifest naming a version whose Delta versions do not exist was published, and the standby never
/// recovered. It is refused (with the real new version it came with: a pass applies all or nothing), and once the
/// peer answers truthfully again the standby catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_of_missing_delta_versions_is_never_published_and_the_standby_recovers() {
    let mut a = active(63).await;
    let fake = Arc::new(Fake::default());
    *fake.upstream.lock().unwrap() = a.base.clone();
    let url = fake_peer(fake.clone()).await;
    let mut s = standby(63, &url, &a).await;
    a.advance(60).await;
    let before = local(&s.app).await;
    let mut m = a.get("/v1/replication/manifest").await;
    let mut bogus = m["versions"].as_array().unwrap().last().unwrap().clone();
    let next = bogus["version"].as_u64().unwrap() + 1;
    bogus["version"] = json!(next);
    bogus["tables"]["interaction_resource_fact"] = json!(999_999);
    m["versions"].as_array_mut().unwrap().push(bogus);
    fake.lie_manifest(m);
    let e = refused(&mut s, "missing Delta versions").await;
    assert!(e.contains(&format!("mart version {next} of the peer cannot be served")), "{e}");
    assert!(e.contains("interaction_resource_fact at Delta version 999999"), "{e}");
    assert!(e.contains("the mart served here is unchanged"), "{e}");
    assert_unchanged(&s, &before, "missing Delta versions").await;
    assert!(
        !mart_files(s.app.mart().root()).keys().any(|p| p.starts_with(INCOMING_DIR)),
        "the downloads of a refused answer are discarded"
    );

    fake.tell_the_truth();
    s.app.cycle().await.unwrap();
    assert_eq!(last_error(&s.app), None);
    assert_eq!(version(&s.app), version(&a.app), "recovered");
    assert_eq!(
        sql(&s.app, "SELECT count(*) FROM interaction_fact").await,
        sql(&a.app, "SELECT count(*) FROM interaction_fact").await
    );
}

/// The finding: a one-file manifest deleted every other local file. A manifest of the standby's own versions with
/// one file, or with every file but one that the served versions read, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_missing_files_deletes_nothing() {
    let a = active(64).await;
    let fake = Arc::new(Fake::default());
    *fake.upstream.lock().unwrap() = a.base.clone();
    let url = fake_peer(fake.clone()).await;
    let mut s = standby(64, &url, &a).await;
    let before = local(&s.app).await;
    let m = a.get("/v1/replication/manifest").await;
    let mut one = m.clone();
    one["files"] = json!([m["files"][0].clone()]);
    fake.lie_manifest(one);
    let e = refused(&mut s, "a one-file manifest").await;
    assert!(e.contains("cannot be served") && e.contains("not in the manifest"), "{e}");
    assert_unchanged(&s, &before, "a one-file manifest").await;
    // Every file but one data file of the newest version.
    let newest = a.app.store().latest_snapshot().unwrap().unwrap();
    let mut read_by_newest = HashSet::new();
    for (table, dv) in &newest.tables {
        for (path, _) in ccmart::replicate::verify::delta_files(a.app.mart().root(), table, *dv).await.unwrap() {
            read_by_newest.insert(format!("{table}/{path}"));
        }
    }
    let without = |path: &str| {
        let mut x = m.clone();
        x["files"].as_array_mut().unwrap().retain(|f| f["path"] != path);
        x
    };
    let gone = read_by_newest.iter().find(|p| p.ends_with(".parquet")).unwrap().clone();
    fake.lie_manifest(without(&gone));
    let e = refused(&mut s, "a manifest without one data file").await;
    assert!(e.contains(&gone) && e.contains("not in the manifest"), "{e}");
    assert_unchanged(&s, &before, "a manifest without one data file").await;
    // A data file that only an older version served here reads: the active may have vacuumed it, but this site
    // still serves that version, so the file stays.
    let only_older = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .find(|p| p.ends_with(".parquet") && !read_by_newest.contains(p))
        .expect("a data file the newest version no longer reads");
    fake.lie_manifest(without(&only_older));
    s.app.cycle().await.unwrap();
    assert_eq!(last_error(&s.app), None, "a consistent manifest");
    assert_unchanged(&s, &before, "a manifest without a file an older served version reads").await;
    // A manifest that only prunes versions (the newest alone) but lists no file of it.
    let mut pruned = m.clone();
    let newest = pruned["versions"].as_array().unwrap().last().unwrap().clone();
    pruned["versions"] = json!([newest]);
    pruned["files"] = json!([]);
    fake.lie_manifest(pruned);
    let e = refused(&mut s, "a manifest pruning every version but the newest, without files").await;
    assert!(e.contains("not in the manifest"), "{e}");
    assert_unchanged(&s, &before, "pruning without files").await;
}

/// The finding: a file announced as 10 bytes was written to 300 MB before the check. The download stops at the
/// announced size; a manifest announcing more than the disk holds downloads nothing; an error answer's body is
/// read only as far as its message needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_stop_at_the_announced_size_and_fit_the_disk() {
    let a = active(65).await;
    let fake = Arc::new(Fake::default());
    *fake.upstream.lock().unwrap() = a.base.clone();
    let url = fake_peer(fake.clone()).await;
    let mut s = standby(65, &url, &a).await;
    let before = local(&s.app).await;
    let m = a.get("/v1/replication/manifest").await;
    let flood = "interaction_fact/day=2026-01-01/flood.parquet";
    let mut big = m.clone();
    big["files"].as_array_mut().unwrap().push(json!({"path": flood, "size": 10, "blake3": "ab".repeat(32)}));
    fake.lie_manifest(big);
    *fake.flood.lock().unwrap() = Some((flood.to_string(), 300 << 20));
    let e = refused(&mut s, "a 10-byte file sent as 300 MB").await;
    assert!(e.contains(flood) && e.contains("more than the 10 bytes announced"), "{e}");
    let sent = fake.flooded.load(Ordering::SeqCst);
    assert!(sent < 100 << 20, "the download stopped early: {sent} bytes generated of 300 MB");
    assert!(
        mart_files(s.app.mart().root()).iter().all(|(p, b)| !p.contains("flood") || b.len() <= 10),
        "never more than announced on disk"
    );
    assert_unchanged(&s, &before, "a 10-byte file sent as 300 MB").await;

    // 128 TiB announced: refused before any download.
    let mut huge = m.clone();
    huge["files"].as_array_mut().unwrap().push(json!({"path": flood, "size": 1u64 << 47, "blake3": "ab".repeat(32)}));
    fake.lie_manifest(huge);
    let asked = fake.file_requests.load(Ordering::SeqCst);
    let e = refused(&mut s, "128 TiB announced").await;
    assert!(e.contains("the copy needs 140737488355328 bytes") && e.contains("nothing downloaded"), "{e}");
    assert_eq!(fake.file_requests.load(Ordering::SeqCst), asked, "no download started");
    assert_unchanged(&s, &before, "128 TiB announced").await;

    // An error answer with a 1 GiB body: its start is read for the message, not the rest.
    fake.flooded.store(0, Ordering::SeqCst);
    *fake.manifest_error_flood.lock().unwrap() = Some(1 << 30);
    let e = refused(&mut s, "an error with a 1 GiB body").await;
    assert!(e.contains("500"), "{e}");
    let sent = fake.flooded.load(Ordering::SeqCst);
    assert!(sent < 100 << 20, "the error's body was not read whole: {sent} bytes generated of 1 GiB");
    assert_unchanged(&s, &before, "an error with a 1 GiB body").await;
}

/// The finding: sizes or epochs near 2^64 panicked (a standby crash loop; promotion impossible). Every such number
/// is refused with the field named; the standby goes on serving and can still be promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_near_2_pow_64_are_refused_with_the_field_named() {
    let a = active(66).await;
    let fake = Arc::new(Fake::default());
    *fake.upstream.lock().unwrap() = a.base.clone();
    let url = fake_peer(fake.clone()).await;
    let mut s = standby(66, &url, &a).await;
    let before = local(&s.app).await;
    let m = a.get("/v1/replication/manifest").await;
    let last = m["versions"].as_array().unwrap().len() - 1;
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut x = m.clone();
        f(&mut x);
        x
    };
    let cases: Vec<(&str, Value, String)> = vec![
        ("a size of 2^64 - 1", edit(&|x| x["files"][0]["size"] = json!(u64::MAX)), "`files[0].size`".into()),
        (
            "sizes that add up past 2^64",
            edit(&|x| {
                let files = x["files"].as_array_mut().unwrap();
                for f in files.iter_mut() {
                    f["size"] = json!(1u64 << 48);
                }
                let template = files[0].clone();
                for i in 0..70_000 {
                    let mut f = template.clone();
                    f["path"] = json!(format!("pad/{i}"));
                    files.push(f);
                }
            }),
            "the sizes add up past 2^64 bytes".into(),
        ),
        (
            "an epoch of 2^64 - 1",
            edit(&|x| x["fence"]["fence"]["epoch"] = json!(u64::MAX)),
            "`fence.fence.epoch`".into(),
        ),
        (
            "a version of 2^64 - 1",
            edit(&|x| x["versions"][last]["version"] = json!(u64::MAX)),
            format!("`versions[{last}].version`"),
        ),
        (
            "a Delta version of 2^64 - 1",
            edit(&|x| x["versions"][last]["tables"]["interaction_fact"] = json!(u64::MAX)),
            format!("`versions[{last}].tables.interaction_fact`"),
        ),
        (
            "a publication time of -2^63",
            edit(&|x| x["versions"][last]["published_at"] = json!(i64::MIN)),
            format!("`versions[{last}].published_at`"),
        ),
    ];
    for (what, manifest, expected) in cases {
        fake.lie_manifest(manifest);
        let e = refused(&mut s, what).await;
        assert!(e.contains(&expected), "{what}: {e}");
        assert_unchanged(&s, &before, what).await;
    }
    // Past 2^64: not even a number this side reads.
    let text = edit(&|x| x["files"][0]["size"] = json!(12_345_678_901u64)).to_string();
    fake.lie_manifest_text(text.replacen("12345678901", "18446744073709551616", 1));
    let e = refused(&mut s, "a size of 2^64").await;
    assert!(e.contains("bad manifest"), "{e}");
    assert_unchanged(&s, &before, "a size of 2^64").await;
    // A fence answer at epoch 2^64 - 1 is not adopted, so promotion stays possible.
    fake.tell_the_truth();
    let mut f = a.get("/v1/replication/fence").await;
    f["fence"]["epoch"] = json!(u64::MAX);
    fake.lie_fence(f);
    s.app.cycle().await.unwrap();
    let e = s.app.status().get().peer.unwrap().last_error.unwrap();
    assert!(e.contains("fence.epoch 18446744073709551615") && e.contains("out of range"), "{e}");
    assert_eq!(s.app.fence().get().epoch, 1);
    assert_unchanged(&s, &before, "a fence epoch of 2^64 - 1").await;
    let r = reqwest::Client::new().post(format!("{}/v1/admin/promote", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200, "promotion works");
    assert_eq!((s.app.fence().get().role, s.app.fence().get().epoch), (Role::Active, 2));
}

/// Deletions only on a manifest at an epoch at least ours: a peer left behind at a lower epoch is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_at_a_lower_epoch_is_refused() {
    let mut a = active(67).await;
    let fake = Arc::new(Fake::default());
    *fake.upstream.lock().unwrap() = a.base.clone();
    let url = fake_peer(fake.clone()).await;
    let mut s = standby(67, &url, &a).await;
    // The real site1 is promoted twice meanwhile (epoch 3), and the standby follows it.
    let http = reqwest::Client::new();
    let mut f = a.get("/v1/replication/fence").await;
    f["fence"]["epoch"] = json!(3);
    fake.lie_fence(f);
    s.app.cycle().await.unwrap();
    assert_eq!(s.app.fence().get().epoch, 3);
    a.advance(60).await;
    let before = local(&s.app).await;
    // Its old epoch-1 manifest (with a newer version and without the older files) is refused.
    let mut m = a.get("/v1/replication/manifest").await;
    assert_eq!(m["fence"]["fence"]["epoch"], 1);
    m["files"] = json!([m["files"][0].clone()]);
    fake.lie_manifest(m);
    let e = refused(&mut s, "an epoch-1 manifest at epoch 3").await;
    assert!(e.contains("is at epoch 1, older than this appliance's epoch 3"), "{e}");
    assert_unchanged(&s, &before, "an epoch-1 manifest at epoch 3").await;
    drop(http);
}

/// The finding: plain `http://` peers were accepted silently. `check-config` refuses a plain-HTTP `peer_url` to
/// another host (naming the key) unless `allow_insecure_http` is set, and so does a running appliance, before it
/// sends anything; loopback stays allowed (tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_another_host_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = embedded_config(dir.path(), small_settings(68));
    set_peer(&mut cfg, "site1", "http://site2.invalid:8080", "site2");
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("replication.peer_url") && e.contains("allow_insecure_http"), "{e}");
    let file = dir.path().join("ccmart.toml");
    std::fs::write(&file, cfg.to_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replication.peer_url"), "{out:?}");
    // peer_site is required with peer_url.
    let mut unpinned = cfg.clone();
    unpinned.replication.peer_url = Some("https://site2.invalid:8443".into());
    unpinned.replication.peer_site = None;
    assert!(unpinned.validate().unwrap_err().to_string().contains("replication.peer_site"));
    for (url, allow) in
        [("https://site2.invalid:8443", false), ("http://127.0.0.1:9", false), ("http://site2.invalid:8080", true)]
    {
        let mut ok = cfg.clone();
        ok.replication.peer_url = Some(url.into());
        ok.replication.allow_insecure_http = allow;
        ok.validate().unwrap_or_else(|e| panic!("{url} (allow_insecure_http = {allow}): {e}"));
    }
    // A running appliance with such a config (built in code, never checked) does not contact the peer.
    let mut app = Appliance::open(cfg, FaultInjector::disarmed()).await.unwrap();
    let before_version = version(&app);
    app.cycle().await.unwrap();
    let peer = app.status().get().peer.unwrap();
    let e = peer.last_error.unwrap();
    assert!(e.contains("replication.peer_url") && e.contains("the peer is not contacted"), "{e}");
    assert!(!peer.reachable);
    assert_eq!((app.fence().get().role, version(&app)), (Role::Active, before_version));
}

mod properties {
    use super::*;
    use ccmart::replicate::fencing::{Fence, PeerFence};
    use ccmart::replicate::sync::ManifestFile;
    use ccmart::staging::MartSnapshot;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{1,6}(/[a-z0-9=._-]{1,8}){0,3}",
            "(\\.\\.|\\.|[a-z]{1,2}|_ccmart_incoming|)(/(\\.\\.|\\.|[a-z]{1,2}(\\.partial|\\.ccmart-replaced)?|)){0,3}",
            Just("/etc/passwd".to_string()),
            Just("../../etc/passwd".to_string()),
            Just("a/../../b".to_string()),
            Just("a//b".to_string()),
            Just("a\0b".to_string()),
            Just("interaction_fact/_last_checkpoint".to_string()),
            any::<String>(),
        ]
    }

    fn big() -> impl Strategy<Value = u64> {
        prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(1u64 << 48), Just(1u64 << 53), 0..100u64, any::<u64>()]
    }

    fn snapshot() -> impl Strategy<Value = MartSnapshot> {
        (
            big(),
            proptest::collection::btree_map("[a-z_]{1,20}", big(), 0..4),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), 0..2_000_000_000i64],
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(version, tables, published_at, newest_end_ts)| MartSnapshot {
                version,
                tables,
                published_at,
                newest_end_ts,
            })
    }

    fn manifest() -> impl Strategy<Value = Manifest> {
        let file = (path(), big(), prop_oneof!["[0-9a-f]{64}", ".{0,70}"])
            .prop_map(|(path, size, blake3)| ManifestFile { path, size, blake3 });
        (
            prop_oneof![4 => Just("site2".to_string()), 1 => "[a-z0-9]{0,6}"],
            big(),
            proptest::collection::vec(snapshot(), 0..5),
            any::<bool>(),
            proptest::collection::vec(file, 0..12),
        )
            .prop_map(|(site, epoch, mut versions, sorted, files)| {
                if sorted {
                    versions.sort_by_key(|v| v.version);
                    versions.dedup_by_key(|v| v.version);
                }
                let fence = Fence { role: Role::Active, epoch, since: 0, reason: String::new(), split_brain: false };
                Manifest { fence: PeerFence { site, fence }, versions, files }
            })
    }

    fn inside(root: &Path, p: &Path) -> bool {
        p.strip_prefix(root).is_ok_and(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary manifests (paths, sizes up to 2^64 - 1, epochs, versions) never panic, never plan a write
        /// outside the mart directory, and never plan the deletion of a file a served version reads; a manifest of
        /// another site or an older epoch plans no deletion at all.
        #[test]
        fn arbitrary_manifests_never_panic_delete_served_files_or_write_outside(
            m in manifest(),
            ours in prop_oneof![Just(0u64), Just(1u64), big()],
            local in proptest::collection::vec(path(), 0..16),
            served in proptest::collection::vec(any::<bool>(), 16),
        ) {
            let trust = PeerTrust { site: "site2".into(), epoch: ours };
            let root = Path::new("/srv/ccmart/mart");
            let checked = check_manifest(&m, &trust);
            if checked.is_ok() {
                let total = m.files.iter().try_fold(0u64, |t, f| t.checked_add(f.size));
                prop_assert!(total.is_some(), "an accepted manifest's sizes add up");
                prop_assert!(m.fence.fence.epoch < u64::MAX && m.versions.iter().all(|v| v.version < u64::MAX));
                let downloads = plan_downloads(&m, root, |_, _| Ok(false)).expect("an accepted manifest plans");
                for d in &downloads {
                    prop_assert!(inside(root, &d.target), "write outside the mart: {:?}", d.target);
                    prop_assert!(inside(&root.join(INCOMING_DIR), &d.incoming), "download outside: {:?}", d.incoming);
                    prop_assert!(!d.target.starts_with(root.join(INCOMING_DIR)));
                }
            }
            let protected: HashSet<String> =
                local.iter().zip(&served).filter(|(_, s)| **s).map(|(p, _)| p.clone()).collect();
            match plan_deletions(&m, &trust, &local, &protected) {
                Ok(deletions) => {
                    prop_assert!(checked.is_ok(), "deletions only on an accepted manifest");
                    prop_assert!(m.fence.site == "site2" && m.fence.fence.epoch >= ours);
                    for d in &deletions {
                        prop_assert!(!protected.contains(d), "deletes {d:?}, which a served version reads");
                        prop_assert!(local.contains(d), "deletes {d:?}, which is not here");
                        prop_assert!(check_path(d).is_ok());
                        prop_assert!(inside(root, &root.join(d)), "deletes outside the mart: {d:?}");
                        prop_assert!(!m.files.iter().any(|f| &f.path == d), "deletes {d:?}, which the manifest lists");
                    }
                }
                Err(e) => {
                    prop_assert!(checked.is_err(), "plan_deletions refuses only what check_manifest refuses: {e}");
                    if m.fence.site != "site2" {
                        prop_assert!(matches!(e, SyncError::WrongSite { .. }), "{e}");
                    }
                }
            }
        }
    }
}
