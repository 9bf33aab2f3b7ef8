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
    use ccmart::source::schema_check::type_fits;
    let c = pg::cluster();
    let url = c.create_database("ddl");
    c.psql(&url, ccmart::source::postgres::IDB_DDL);
    for t in EXTRACTED_TABLES {
        let cols = c.psql(
            &url,
            &format!(
                "SELECT upper(column_name) || '|' || data_type || '|' || coalesce(numeric_scale, 0) || '|' || \
                 is_nullable FROM information_schema.columns WHERE table_name = lower('{}')",
                t.name
            ),
        );
        let cols: std::collections::BTreeMap<&str, (&str, i64, bool)> = cols
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.trim().split('|').collect();
                Some((*f.first()?, (*f.get(1)?, f.get(2)?.parse().ok()?, *f.get(3)? == "NO")))
            })
            .collect();
        for col in t.columns {
            let (ty, scale, not_null) = cols
                .get(col.name)
                .unwrap_or_else(|| panic!("{}.{} missing from data/idb/icon_idb.sql", t.name, col.name));
            assert!(
                type_fits(col.ty, ty, *scale),
                "{}.{} is {ty} in the DDL, the contract reads {:?}",
                t.name,
                col.name,
                col.ty
            );
            assert_eq!(
                *not_null, col.required,
                "{}.{}: NOT NULL in the DDL exactly when the contract requires it",
                t.name, col.name
            );
        }
    }
    // Applying the DDL twice is harmless (deployments re-run it on upgrade).
    c.psql(&url, ccmart::source::postgres::IDB_DDL);
}

/// Runs `ccmart check-idb` on `cfg` (written into `dir`): exit code, stdout, stderr.
fn check_idb(dir: &std::path::Path, cfg: &ccmart::config::Config) -> (Option<i32>, String, String) {
    let file = dir.join("ccmart.toml");
    std::fs::write(&file, cfg.to_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["check-idb", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// One PostgreSQL IDB (a pair of one) on a fresh database with the contract DDL, and a config reading it.
fn single_idb(dir: &std::path::Path, prefix: &str, settle_secs: u64) -> (String, ccmart::config::Config) {
    let c = pg::cluster();
    let url = c.create_database(prefix);
    c.psql(&url, ccmart::source::postgres::IDB_DDL);
    let mut cfg = embedded_config(dir, small_settings(1));
    cfg.idbs = vec![ccmart::config::IdbConfig {
        name: "late".into(),
        pair: "late".into(),
        site: "site1".into(),
        url: url.clone(),
        data_source: "voice".into(),
    }];
    cfg.extract.settle_secs = settle_secs;
    (url, cfg)
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the test IDB");
    tokio::spawn(conn);
    client
}

/// A finished call as ICON would insert it, with an explicit insert counter.
fn insert_call(id: i64, seq: i64) -> String {
    let t = T0 + id * 60;
    format!(
        "INSERT INTO G_CALL (ID, CALLID, STATE, CALLTYPE, MEDIATYPE, SWITCHID, CREATED_TS, TERMINATED_TS, GSYS_SEQ) \
         VALUES ({id}, 'LATE-{id}', 2, 2, 1, 1, {t}, {}, {seq})",
        t + 30
    )
}

/// Runs rounds in which two writers commit out of counter order across cycle boundaries: A takes a counter, B
/// takes a larger one and commits, a cycle runs, then A commits and another cycle runs — for inserts (`GSYS_SEQ`)
/// and for updates (`GSYS_USEQ`, changing `SWITCHID`). Returns the rows staged over all cycles.
async fn out_of_order_rounds(app: &mut ccmart::pipeline::Appliance, url: &str, rounds: i64) -> usize {
    let (a, b) = (pg_client(url).await, pg_client(url).await);
    let mut staged = 0;
    let mut counter = 0;
    for r in 0..rounds {
        let (ida, idb) = (2 * r + 1, 2 * r + 2);
        a.batch_execute(&format!("BEGIN; {}", insert_call(ida, counter + 1))).await.unwrap();
        b.batch_execute(&format!("BEGIN; {}; COMMIT", insert_call(idb, counter + 2))).await.unwrap();
        staged += app.cycle().await.expect("cycle").rows_staged;
        a.batch_execute("COMMIT").await.unwrap();
        staged += app.cycle().await.expect("cycle").rows_staged;
        // Updates of both rows, again committed out of counter order.
        let update =
            |id: i64, useq: i64| format!("UPDATE G_CALL SET SWITCHID = {useq}, GSYS_USEQ = {useq} WHERE ID = {id}");
        a.batch_execute(&format!("BEGIN; {}", update(ida, counter + 3))).await.unwrap();
        b.batch_execute(&format!("BEGIN; {}; COMMIT", update(idb, counter + 4))).await.unwrap();
        staged += app.cycle().await.expect("cycle").rows_staged;
        a.batch_execute("COMMIT").await.unwrap();
        staged += app.cycle().await.expect("cycle").rows_staged;
        counter += 4;
    }
    staged
}

/// The IDB's calls and switch ids (ground truth) and the mart's, as sorted rows.
async fn calls_in_idb_and_mart(app: &ccmart::pipeline::Appliance, url: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let idb = pg::cluster().psql(url, "SELECT CALLID, SWITCHID FROM G_CALL ORDER BY 1");
    let idb: Vec<Vec<String>> = idb.lines().map(|l| l.split('|').map(str::to_string).collect()).collect();
    let mut mart = sql(app, "SELECT media_server_ixn_guid, CAST(switch_id AS VARCHAR) FROM INTERACTION_FACT").await;
    mart.sort();
    (idb, mart)
}

/// Regression (issue 16): a high-water mark set to the largest counter seen skipped a row that a concurrent
/// writer committed a moment later with a smaller counter — lost for good. With the settling mark, every row
/// committed out of counter order across cycle boundaries reaches the mart exactly once (invariant 1), re-reads
/// stage nothing twice, and once the settle time has passed the mark does move up to the last counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_out_of_counter_order_are_neither_lost_nor_doubled() {
    let rounds = 4;
    // Control: trusting counter order (settle 0) loses the late rows of this very interleaving.
    let dir = tempfile::tempdir().unwrap();
    let (url, cfg) = single_idb(dir.path(), "late0", 0);
    let mut app = ccmart::pipeline::Appliance::open(cfg, ccmart::fault::FaultInjector::disarmed()).await.unwrap();
    out_of_order_rounds(&mut app, &url, rounds).await;
    let (idb, mart) = calls_in_idb_and_mart(&app, &url).await;
    assert_eq!(idb.len(), 2 * rounds as usize);
    assert!(mart.len() < idb.len(), "the control must lose rows, or the test shows nothing: {mart:?}");

    // The default mechanism, with a settle time longer than the test.
    let dir = tempfile::tempdir().unwrap();
    let (url, cfg) = single_idb(dir.path(), "late", 3600);
    let mut app = ccmart::pipeline::Appliance::open(cfg, ccmart::fault::FaultInjector::disarmed()).await.unwrap();
    let staged = out_of_order_rounds(&mut app, &url, rounds).await;
    let (idb, mart) = calls_in_idb_and_mart(&app, &url).await;
    assert_eq!(mart, idb, "every call once, with its latest update");
    assert_eq!(staged, 4 * rounds as usize, "each insert and each update staged exactly once, re-reads not counted");
    let mark = app.store().high_water_mark("late", "G_CALL").unwrap();
    assert_eq!((mark.seq, mark.useq), (0, 0), "nothing has been visible for an hour: the marks wait");

    // A short settle time: once it has passed, the marks reach the last counters and re-reading stops.
    let dir = tempfile::tempdir().unwrap();
    let (url, cfg) = single_idb(dir.path(), "late1", 1);
    let mut app = ccmart::pipeline::Appliance::open(cfg, ccmart::fault::FaultInjector::disarmed()).await.unwrap();
    let mut staged = out_of_order_rounds(&mut app, &url, rounds).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    staged += app.cycle().await.unwrap().rows_staged;
    let (idb, mart) = calls_in_idb_and_mart(&app, &url).await;
    assert_eq!(mart, idb);
    assert_eq!(staged, 4 * rounds as usize);
    let mark = app.store().high_water_mark("late", "G_CALL").unwrap();
    assert_eq!((mark.seq, mark.useq), (4 * rounds - 2, 4 * rounds), "the marks settled on the last counters");
}

/// Issue 16 (B): an IDB of another contract version. The start-up check and `ccmart check-idb` name exactly the
/// three differences of tests/data/idb_previous_contract.sql; the table with a missing required column is not
/// extracted, the optional ones are read as NULL, and every other table reaches the mart as the truth says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_check_names_what_differs_and_the_other_tables_still_extract() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut cfg) = single_idb(dir.path(), "prevcontract", ccmart::extract::DEFAULT_SETTLE_SECS);
    let settings = ccmart::sim::SimSettings { sites: 1, ..small_settings(5) };
    if let Some(s) = cfg.simulator.as_mut() {
        s.settings = settings.clone();
    }
    let truth = simulate(&cfg, None, settings, 3).await;
    assert!(truth.call_count() > 50, "enough calls: {}", truth.call_count());
    let c = pg::cluster();
    c.psql(&url, &std::fs::read_to_string(repo_file("tests/data/idb_previous_contract.sql")).unwrap());

    let app = open_and_drain(&cfg).await;
    let status = app.status().get();
    let idb = &status.idbs[0];
    let problems: Vec<(String, String, String, bool)> = idb
        .schema_problems
        .iter()
        .flat_map(|t| {
            t.problems.iter().map(move |p| (t.table.clone(), p.column.clone(), p.problem.clone(), p.optional))
        })
        .collect();
    let expected = [
        ("GC_GROUP", "TYPE", "missing", true),
        ("G_CALL", "SWITCHID", "type", true),
        ("G_PARTY_HISTORY", "PHID", "missing", false),
    ]
    .map(|(t, c, p, o)| (t.to_string(), c.to_string(), p.to_string(), o));
    assert_eq!(problems, expected, "exactly the fixture's differences");
    assert!(idb.schema_problems.iter().all(|t| !t.missing_table));
    assert_eq!(idb.unreadable_tables.keys().collect::<Vec<_>>(), ["G_PARTY_HISTORY"]);
    assert!(idb.reachable, "one unreadable table does not make the IDB fail");

    // The other tables were extracted: every call and login session of the truth is in the mart.
    let calls = sql(&app, "SELECT count(*), count(switch_id) FROM INTERACTION_FACT").await;
    assert_eq!(calls[0], vec![truth.call_count().to_string(), "0".to_string()], "all calls, switch_id NULL");
    let sessions = sql(&app, "SELECT count(*) FROM SM_RES_SESSION_FACT").await;
    assert_eq!(sessions[0][0], truth.sessions.len().to_string());
    let legs = sql(&app, "SELECT count(*), sum(talk_duration) FROM INTERACTION_RESOURCE_FACT").await;
    let resource_parties = c.psql(&url, "SELECT count(*) FROM G_PARTY WHERE TYPE = 1");
    assert_eq!(legs[0][0], resource_parties, "every agent and queue party extracted");
    assert_eq!(legs[0][1], "0", "no party history: no durations");
    let groups = sql(&app, "SELECT DISTINCT group_type FROM RESOURCE_GROUP").await;
    assert_eq!(groups, vec![vec!["Other".to_string()]], "group type read as NULL");

    // The metric names the table, and `ccmart check-idb` prints the same and exits with 2.
    let samples = scrape_metrics(&app).await;
    let problems_of = |t: &str| metric(&samples, "ccmart_idb_schema_problems", &[("idb", "late"), ("table", t)]);
    assert_eq!(problems_of("G_PARTY_HISTORY"), Some(1.0));
    assert_eq!(problems_of("G_CALL"), Some(1.0));
    assert_eq!(problems_of("G_PARTY"), Some(0.0));
    let (code, text, stderr) = check_idb(dir.path(), &cfg);
    assert_eq!(code, Some(2), "{text}\n{stderr}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), EXTRACTED_TABLES.len() + 1, "{text}");
    assert!(lines.contains(&"late\tG_DICTIONARY\tOK"), "the shipped dictionary matches ccmart's reading");
    assert!(lines.contains(&"late\tG_PARTY_HISTORY\tNOT EXTRACTED: PHID is missing (required: table not extracted)"));
    assert!(lines.contains(&"late\tGC_GROUP\textracted, TYPE is missing (optional: read as NULL)"));
    assert!(lines
        .contains(&"late\tG_CALL\textracted, SWITCHID has type character varying, the contract reads integer (optional: read as NULL)"));
    assert_eq!(lines.iter().filter(|l| l.ends_with("\tOK")).count(), EXTRACTED_TABLES.len() - 2, "{text}");
}

/// Issue 16: the IDB's own dictionary (`G_DICTIONARY`) says what its party-state codes mean. An IDB that numbers
/// them otherwise (renumbered here, with names ccmart's differ from) is translated while extracting, so the mart
/// matches the truth; a code the dictionary names but ccmart reads no meaning into quarantines its row, naming the
/// entry; status and `ccmart check-idb` show the translation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_state_codes_follow_the_idb_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut cfg) = single_idb(dir.path(), "dictionary", 0);
    let settings = ccmart::sim::SimSettings { sites: 1, ..small_settings(6) };
    if let Some(s) = cfg.simulator.as_mut() {
        s.settings = settings.clone();
    }
    let truth = simulate(&cfg, None, settings, 3).await;
    let c = pg::cluster();
    c.psql(
        &url,
        "UPDATE G_PARTY SET STATE = STATE + 10; UPDATE G_PARTY_HISTORY SET STATE = STATE + 10; \
         DELETE FROM G_DICTIONARY WHERE DICT_TYPE = 8; \
         INSERT INTO G_DICTIONARY (DICT_TYPE, DICT_CODE, NAME) VALUES (8, 0, 'Unknown'), (8, 11, 'Dialing'), \
         (8, 12, 'Queued'), (8, 13, 'Ringing'), (8, 14, 'Talking'), (8, 15, 'OnHold'), (8, 16, 'Disconnected'); \
         INSERT INTO G_PARTY_HISTORY (PHID, PARTYID, PSEQ, STATE, CCEVENT, CALLID, ADDED_TS, GSYS_SEQ) \
         VALUES (999999999, 'no-such-party', 1, 0, 0, 'NO-SUCH-CALL', 1, 999999999);",
    );
    let app = open_and_drain(&cfg).await;
    assert_mart_matches_truth(&app, &truth).await;
    let q = app.store().quarantined(10).unwrap();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!((q[0].table.as_str(), q[0].column.as_str()), ("G_PARTY_HISTORY", "STATE"));
    assert!(q[0].reason.contains("party-state code 0 ('Unknown' in G_DICTIONARY)"), "{}", q[0].reason);
    let status = app.status().get();
    let codes = status.idbs[0].code_dictionary.clone().expect("checked");
    let expected: std::collections::BTreeMap<i64, i64> = [(11, 1), (12, 2), (13, 3), (14, 4), (15, 5), (16, 6)].into();
    assert_eq!(codes.party_state_translation, expected);

    let (code, text, stderr) = check_idb(dir.path(), &cfg);
    assert_eq!(code, Some(0), "{text}\n{stderr}");
    let line = text.lines().find(|l| l.starts_with("late\tG_DICTIONARY\t")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("translated to ccmart's") && line.contains("code 0 ('Unknown')"), "{line}");
}

/// Issue 16: `G_PARTY_HISTORY.CALLID` is not among the vendor's columns we could see. An IDB without it is still
/// extracted — each history row's call is read through its party (`G_PARTY.PARTYID`) — and the mart matches the
/// truth; `ccmart check-idb` says so and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_history_without_callid_is_read_through_its_party() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut cfg) = single_idb(dir.path(), "nocallid", 0);
    let settings = ccmart::sim::SimSettings { sites: 1, ..small_settings(7) };
    if let Some(s) = cfg.simulator.as_mut() {
        s.settings = settings.clone();
    }
    let truth = simulate(&cfg, None, settings, 3).await;
    let c = pg::cluster();
    c.psql(&url, "ALTER TABLE G_PARTY_HISTORY DROP COLUMN CALLID");
    let app = open_and_drain(&cfg).await;
    assert_mart_matches_truth(&app, &truth).await;
    assert!(app.store().quarantined(10).unwrap().is_empty());
    let status = app.status().get();
    assert!(status.idbs[0].unreadable_tables.is_empty(), "{:?}", status.idbs[0].unreadable_tables);

    let (code, text, stderr) = check_idb(dir.path(), &cfg);
    assert_eq!(code, Some(0), "{text}\n{stderr}");
    assert!(
        text.contains(
            "late\tG_PARTY_HISTORY\textracted, CALLID is missing (derived: read as (SELECT p.CALLID FROM G_PARTY p"
        ),
        "{text}"
    );
}

/// Issue 16 (C): `ccmart run --exit-when-idle` exited 0 and printed figures while a pair was still waiting for
/// an IDB. Now it names what is held back and exits with 3; once the pair no longer waits (the site is
/// ignored), the same data directory runs to completion with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_run_exits_with_3_while_a_pair_waits_for_an_idb() {
    use ccmart::sim::collector::{FaultKind, FaultSpec};
    let c = pg::cluster();
    let urls = [c.create_database("held_a"), c.create_database("held_b")];
    let dir = tempfile::tempdir().unwrap();
    let settings = ccmart::sim::SimSettings { sites: 1, ..small_settings(8) };
    let mut cfg = embedded_config(dir.path(), settings.clone());
    cfg.idbs = ["held-a", "held-b"]
        .iter()
        .zip(&urls)
        .zip(["site1", "site2"])
        .map(|((name, url), site)| ccmart::config::IdbConfig {
            name: name.to_string(),
            pair: "held".into(),
            site: site.into(),
            url: url.clone(),
            data_source: "voice".into(),
        })
        .collect();
    // The collector of held-b cannot write from the second hour on: held-b stays behind, the pair waits.
    let fault =
        FaultSpec { kind: FaultKind::IdbUnreachable, target: "held-b".into(), start_secs: 3600, duration_secs: 0 };
    cfg.simulator.as_mut().unwrap().faults = vec![fault];
    simulate(&cfg, None, settings, 3).await;
    let file = dir.path().join("ccmart.toml");
    std::fs::write(&file, cfg.to_toml()).unwrap();
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
            .args(["run", "--exit-when-idle", "--config"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = run(&file);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("pair 'held' waits for IDB 'held-b'"), "{stderr}");
    let figures: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(figures["held_groups"].as_u64().unwrap() > 0, "{figures}");
    assert_eq!(figures["waiting_for"].as_array().unwrap().len(), 1, "{figures}");

    cfg.merge.ignore_sources = vec!["site2".into()];
    std::fs::write(&file, cfg.to_toml()).unwrap();
    let out = run(&file);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
