//! Simulator → real PostgreSQL IDBs (two HA pairs, four databases) → extraction → mart == ground truth.

use crate::common::*;
use crate::support::pg;
use ccmart::source::contract::EXTRACTED_TABLES;

/// Four fresh IDB databases.
pub fn four_idbs(prefix: &str) -> [String; 4] {
    let c = pg::cluster();
    std::array::from_fn(|i| c.create_database(&format!("{prefix}_{i}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pipeline_matches_ground_truth() {
    let urls = four_idbs("e2e");
    let dir = tempfile::tempdir().unwrap();
    let settings =
        ccmart::sim::SimSettings { seed: 11, agents_per_site: 10, calls_per_hour: 130.0, ..Default::default() };
    let mut cfg = postgres_config(dir.path(), [&urls[0], &urls[1], &urls[2], &urls[3]], settings.clone());
    cfg.extract.chunk_rows = 2_000;
    let truth = simulate(&cfg, None, settings, 14).await;
    assert!(truth.call_count() >= 3_000, "a few thousand calls: {}", truth.call_count());
    let app = open_and_drain(&cfg).await;
    let n = assert_mart_matches_truth(&app, &truth).await;
    // Both IDBs of each pair hold every row; the merge took each call from exactly one of them.
    let per_idb = sql(&app, "SELECT source_idb, count(*) FROM INTERACTION_FACT GROUP BY 1 ORDER BY 1").await;
    let total: i64 = per_idb.iter().map(|r| r[1].parse::<i64>().unwrap()).sum();
    assert_eq!(total as usize, n);
    let c = pg::cluster();
    let in_idb: usize = c.psql(&urls[0], "SELECT count(*) FROM G_CALL").trim().parse().unwrap();
    let in_idb2: usize = c.psql(&urls[2], "SELECT count(*) FROM G_CALL").trim().parse().unwrap();
    assert_eq!(in_idb + in_idb2, n, "IDBs hold exactly the simulated calls");
}

/// Every column the contract reads exists in the DDL shipped in data/idb (applied to a real PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_columns_exist_in_shipped_ddl() {
    let c = pg::cluster();
    let url = c.create_database("ddl");
    c.psql(&url, ccmart::source::postgres::IDB_DDL);
    for t in EXTRACTED_TABLES {
        let cols = c.psql(
            &url,
            &format!(
                "SELECT upper(column_name) FROM information_schema.columns WHERE table_name = lower('{}')",
                t.name
            ),
        );
        let cols: Vec<&str> = cols.lines().map(str::trim).collect();
        for col in t.columns {
            assert!(cols.contains(&col.name), "{}.{} missing from data/idb/icon_idb.sql", t.name, col.name);
        }
    }
    // Applying the DDL twice is harmless (deployments re-run it on upgrade).
    c.psql(&url, ccmart::source::postgres::IDB_DDL);
}
