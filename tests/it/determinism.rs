//! DESIGN.md invariant 2: the mart is a pure function of the IDB contents. Two independent appliances over the
//! same IDBs — with different chunk sizes and batch sizes, so their cycles cut the work differently — produce
//! identical tables, surrogate keys included.

use crate::common::*;
use crate::pg_e2e::four_idbs;
use crate::support::pg;
use ccmart::query::digest::{digests, PartitionDigest};
use ccmart::transform::schema::MART_TABLES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_independent_runs_produce_identical_tables_and_keys() {
    let urls = four_idbs("det");
    let settings = small_settings(33);
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let u = [urls[0].as_str(), urls[1].as_str(), urls[2].as_str(), urls[3].as_str()];
    let cfg1 = postgres_config(d1.path(), u, settings.clone());
    let mut cfg2 = postgres_config(d2.path(), u, settings.clone());
    cfg2.extract.chunk_rows = 137;
    cfg2.extract.max_chunks_per_cycle = 2;
    cfg2.extract.transform_batch = 7;
    let truth = simulate(&cfg1, None, settings, 3).await;
    let mut a = open_and_drain(&cfg1).await;
    let b = open_and_drain(&cfg2).await;
    assert_mart_matches_truth(&a, &truth).await;
    for t in MART_TABLES {
        let q = format!("SELECT * FROM {} ORDER BY 1", t.name);
        let (ra, rb) = (sql(&a, &q).await, sql(&b, &q).await);
        assert!(!ra.is_empty(), "{} has rows", t.name);
        assert_eq!(ra, rb, "{} identical in both appliances", t.name);
    }
    // The digests the two sites would compare are equal, partition by partition.
    let da = all_digests(&a).await;
    assert_eq!(da, all_digests(&b).await);
    assert!(da.len() >= 5);

    // One changed event time in the IDBs (both copies of the pair) changes exactly one partition's digest.
    let c = pg::cluster();
    let callid = c
        .psql(&urls[0], "SELECT min(CALLID) FROM G_PARTY WHERE TYPE = 1 AND AGENTID > 0 AND CCEVENT = 1")
        .trim()
        .to_string();
    for url in &urls[..2] {
        c.psql(
            url,
            &format!(
                "UPDATE G_PARTY_HISTORY SET ADDED_TS = ADDED_TS + 1, GSYS_USEQ = 900000000 WHERE STATE = 6 AND PARTYID = \
                 (SELECT min(PARTYID) FROM G_PARTY WHERE TYPE = 1 AND AGENTID > 0 AND CCEVENT = 1 AND CALLID = '{callid}')"
            ),
        );
    }
    a.drain(100).await.unwrap();
    let changed = all_digests(&a).await;
    let differing: Vec<(&PartitionDigest, &PartitionDigest)> =
        da.iter().zip(&changed).filter(|(x, y)| x != y).collect();
    // The talk time of one agent leg moved by a second: its resource fact and the agent aggregates of that day
    // change; nothing else does (no interaction, queue, state or calendar row).
    let mut tables: Vec<&str> = differing.iter().map(|(x, _)| x.table.as_str()).collect();
    tables.sort();
    assert_eq!(
        tables,
        ["ag2_agent_day", "ag2_agent_hour", "ag2_agent_subhr", "interaction_resource_fact"],
        "exactly the affected partitions changed: {differing:#?}"
    );
    assert!(differing.iter().all(|(x, y)| x.day == differing[0].0.day && x.rows == y.rows));
}

async fn all_digests(app: &ccmart::pipeline::Appliance) -> Vec<PartitionDigest> {
    let snap = app.store().latest_snapshot().unwrap().unwrap();
    digests(&app.engine(), &snap, &[], None).await.unwrap()
}
