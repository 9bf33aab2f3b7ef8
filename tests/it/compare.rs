//! Active-active comparison: two appliances over the same IDBs hold identical marts (`ccmart compare` says so and
//! exits 0); a tampered row in one site's IDBs is reported with its table, day and key (non-zero exit).

use crate::common::*;

fn compare(local: &str, peer: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["compare", "--url", local, "--peer", peer])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_finds_no_difference_between_sites_and_reports_a_tampered_row_by_key() {
    let (d1, d2, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, truth) = embedded_mart(d1.path(), 12, 3).await;
    let (b, _) = embedded_mart(d2.path(), 12, 3).await;
    // Site C reads IDBs in which one call's end time was changed (in both IDBs of its pair).
    let settings = small_settings(12);
    let cfg = embedded_config(d3.path(), settings.clone());
    let mut c = ccmart::pipeline::Appliance::open(cfg.clone(), ccmart::fault::FaultInjector::disarmed()).await.unwrap();
    simulate(&cfg, Some(&c), settings, 3).await;
    let call = truth.calls.values().find(|c| c.site == 0).unwrap();
    for (name, idb) in c.embedded_idbs().to_vec() {
        if name.starts_with("site1") {
            let id = idb.find_ids("G_CALL", "CALLID", &call.callid)[0];
            assert!(idb.corrupt("G_CALL", id, "TERMINATED_TS", Some(&(call.end_ts + 1).to_string())));
        }
    }
    c.drain(1000).await.unwrap();

    let ((ua, _sa), (ub, _sb), (uc, _sc)) = (serve_app(&a).await, serve_app(&b).await, serve_app(&c).await);
    let o = compare(&ua, &ub);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("identical:"), "{out}");

    let o = compare(&ua, &uc);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "a difference fails the command: {out}");
    let key = ccmart::transform::interaction_key(&call.callid);
    let day = ccmart::transform::day_of(call.start_ts);
    assert!(out.contains(&format!("DIFFERENT interaction_fact {day}")), "{out}");
    assert!(out.contains(&format!("different: {key}")), "the tampered call's key is named: {out}");
    assert_eq!(out.matches("DIFFERENT").count(), 1, "nothing else differs: {out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("the marts differ in 1 of"));
}
