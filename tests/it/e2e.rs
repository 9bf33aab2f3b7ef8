//! The whole pipeline over embedded IDBs: simulator → two HA pairs → extraction → merge → transform → mart.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_pipeline_matches_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(7);
    let cfg = embedded_config(dir.path(), settings.clone());
    let mut app =
        ccmart::pipeline::Appliance::open(cfg.clone(), ccmart::fault::FaultInjector::disarmed()).await.unwrap();
    let truth = simulate(&cfg, Some(&app), settings, 6).await;
    assert!(truth.call_count() > 500, "enough calls to mean something: {}", truth.call_count());
    app.drain(1000).await.unwrap();
    let n = assert_mart_matches_truth(&app, &truth).await;
    eprintln!("{n} calls match");
}
