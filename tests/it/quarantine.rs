//! Malformed IDB rows are quarantined with table, key, column and reason; everything else arrives, and where the
//! other IDB of the HA pair holds a good copy, the mart is still complete.

use crate::common::*;
use crate::pg_e2e::four_idbs;
use crate::support::pg;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::Appliance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rows_are_quarantined_and_the_rest_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(21);
    let cfg = embedded_config(dir.path(), settings.clone());
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    let mut truth = simulate(&cfg, Some(&app), settings, 2).await;
    let idbs = app.embedded_idbs().to_vec();
    let idb = |name: &str| idbs.iter().find(|(n, _)| n == name).map(|(_, e)| e.clone()).unwrap();
    let (a, b) = (idb("site1-voice-a"), idb("site1-voice-b"));
    let site1_calls: Vec<String> = truth.calls.values().filter(|c| c.site == 0).map(|c| c.callid.clone()).collect();
    let (x, y) = (&site1_calls[3], &site1_calls[10]);
    // X: unknown CALLTYPE code in IDB a only → the pair's other copy is used; X is complete in the mart.
    let x_a = a.find_ids("G_CALL", "CALLID", x)[0];
    assert!(a.corrupt("G_CALL", x_a, "CALLTYPE", Some("99")));
    // Y: CALLID nulled in both IDBs → Y cannot be reported; only Y is missing.
    let y_a = a.find_ids("G_CALL", "CALLID", y)[0];
    let y_b = b.find_ids("G_CALL", "CALLID", y)[0];
    assert!(a.corrupt("G_CALL", y_a, "CALLID", None));
    assert!(b.corrupt("G_CALL", y_b, "CALLID", None));
    // An agent's user name nulled in one IDB → configuration from another IDB.
    assert!(a.corrupt("GC_AGENT", ccmart::sim::agent_dbid(0, 1), "USERNAME", None));
    // A history row with text in an integer column.
    let h = a.find_ids("G_PARTY_HISTORY", "CALLID", x)[0];
    assert!(a.corrupt("G_PARTY_HISTORY", h, "ADDED_TS", Some("yesterday")));

    app.drain(1000).await.unwrap();
    let q = app.store().quarantined(100).unwrap();
    let find = |idb: &str, table: &str, column: &str| {
        q.iter()
            .find(|r| r.idb == idb && r.table == table && r.column == column)
            .unwrap_or_else(|| panic!("{idb} {table}.{column} quarantined: {q:#?}"))
    };
    let r = find("site1-voice-a", "G_CALL", "CALLTYPE");
    assert_eq!(r.key, x_a.to_string());
    assert!(r.reason.contains("unknown code 99"), "{}", r.reason);
    assert!(find("site1-voice-a", "G_CALL", "CALLID").reason.contains("NULL"));
    assert_eq!(find("site1-voice-b", "G_CALL", "CALLID").key, y_b.to_string());
    assert!(find("site1-voice-a", "GC_AGENT", "USERNAME").reason.contains("NULL"));
    assert!(find("site1-voice-a", "G_PARTY_HISTORY", "ADDED_TS").reason.contains("'yesterday' is not an integer"));
    assert_eq!(q.len(), 5, "exactly the corrupted rows: {q:#?}");
    assert_eq!(app.status().get().quarantined_rows, 5);

    truth.calls.remove(y.as_str());
    assert_mart_matches_truth(&app, &truth).await;
    let name = sql(
        &app,
        &format!("SELECT resource_name FROM RESOURCE_ WHERE resource_cfg_dbid = {}", ccmart::sim::agent_dbid(0, 1)),
    )
    .await;
    assert_eq!(name, vec![vec![format!("agent{}", ccmart::sim::agent_dbid(0, 1))]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_column_type_in_a_postgres_idb_is_quarantined() {
    let urls = four_idbs("quar");
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(22);
    let cfg = postgres_config(dir.path(), [&urls[0], &urls[1], &urls[2], &urls[3]], settings.clone());
    let truth = simulate(&cfg, None, settings, 2).await;
    // A deployment whose AGENTID column is text, with a value that is not a number, in one IDB of a pair.
    let c = pg::cluster();
    c.psql(&urls[0], "ALTER TABLE G_PARTY ALTER COLUMN AGENTID TYPE varchar(20)");
    let id = c.psql(&urls[0], "SELECT min(ID) FROM G_PARTY WHERE AGENTID IS NOT NULL");
    c.psql(&urls[0], &format!("UPDATE G_PARTY SET AGENTID = 'abc', GSYS_USEQ = GSYS_USEQ WHERE ID = {}", id.trim()));
    let app = open_and_drain(&cfg).await;
    let q = app.store().quarantined(10).unwrap();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!((q[0].table.as_str(), q[0].column.as_str(), q[0].key.as_str()), ("G_PARTY", "AGENTID", id.trim()));
    assert!(q[0].reason.contains("'abc' is not an integer"));
    // The other IDB of the pair has the good copy: nothing is missing.
    assert_mart_matches_truth(&app, &truth).await;
}
