//! The HTTP API on a real socket: every format round-trips, non-queries are refused with 400, bad bodies get a
//! precise 400, the server keeps answering, and exports are readable by an independent Parquet reader (DuckDB).

use crate::common::*;
use datafusion::arrow::array::Int64Array;
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

async fn post(base: &str, body: serde_json::Value) -> (u16, bytes::Bytes) {
    let r = client().post(format!("{base}/v1/query")).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap())
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("error body is JSON: {}", String::from_utf8_lossy(body)));
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error has a message: {v}");
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_formats_errors_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 3, 3).await;
    let calls = truth.call_count() as i64;
    let total_secs: i64 = truth.calls.values().map(|c| c.end_ts - c.start_ts).sum();
    let (base, _stop) = serve_app(&app).await;

    // JSON.
    let (status, body) =
        post(&base, serde_json::json!({"sql": "SELECT count(*) AS n, sum(duration) AS secs FROM interaction_fact"}))
            .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["rows"][0][0].as_i64(), Some(calls));
    assert_eq!(v["rows"][0][1].as_i64(), Some(total_secs));
    assert_eq!(v["columns"][0]["name"], "n");
    assert_eq!(v["row_count"], 1);
    assert!(v["mart_version"].as_u64().is_some_and(|m| m >= 1));
    assert!(v["elapsed_ms"].is_u64());

    // Upper-case vendor names work.
    let (status, body) =
        post(&base, serde_json::json!({"sql": "SELECT COUNT(*) FROM INTERACTION_FACT WHERE DURATION >= 0"})).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // CSV.
    let q = "SELECT media_server_ixn_guid, duration FROM interaction_fact ORDER BY media_server_ixn_guid";
    let (status, body) = post(&base, serde_json::json!({"sql": q, "format": "csv"})).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("media_server_ixn_guid,duration"));
    let parsed: Vec<(String, i64)> = lines
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap();
            (a.to_string(), b.parse().unwrap())
        })
        .collect();
    let mut expected: Vec<(String, i64)> =
        truth.calls.values().map(|c| (c.callid.clone(), c.end_ts - c.start_ts)).collect();
    expected.sort();
    assert_eq!(parsed, expected);

    // Arrow IPC stream.
    let (status, body) = post(&base, serde_json::json!({"sql": q, "format": "arrow"})).await;
    assert_eq!(status, 200);
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n as i64, calls);
    let secs: i64 = batches
        .iter()
        .map(|b| b.column(1).as_any().downcast_ref::<Int64Array>().unwrap().iter().flatten().sum::<i64>())
        .sum();
    assert_eq!(secs, total_secs);

    // Parquet.
    let (status, body) = post(&base, serde_json::json!({"sql": q, "format": "parquet"})).await;
    assert_eq!(status, 200);
    let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .unwrap()
        .build()
        .unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n as i64, calls);

    // Refused statements: DDL, DML, COPY, SET, multi-statement.
    for (sql, what) in [
        ("CREATE TABLE x AS SELECT 1", "DDL"),
        ("DROP TABLE interaction_fact", "DDL"),
        ("CREATE VIEW v AS SELECT 1", "DDL"),
        ("INSERT INTO interaction_fact (interaction_id) VALUES (1)", "DML"),
        ("DELETE FROM interaction_fact", "DML"),
        ("COPY interaction_fact TO '/tmp/ccmart-stolen.csv'", "COPY"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("SELECT 1; DROP TABLE interaction_fact", "multi-statement"),
    ] {
        let (status, body) = post(&base, serde_json::json!({"sql": sql})).await;
        assert_eq!(status, 400, "{what} must be refused: {sql} → {}", String::from_utf8_lossy(&body));
        let code = error_code(&body);
        assert!(code == "read_only" || code == "syntax_error" || code == "invalid_query", "{sql}: code {code}");
    }
    assert!(!std::path::Path::new("/tmp/ccmart-stolen.csv").exists());

    // Syntax error says where.
    let (status, body) = post(&base, serde_json::json!({"sql": "SELEC count(*) FROM interaction_fact"})).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "syntax_error");
    assert!(String::from_utf8_lossy(&body).contains("Line: 1"), "position in {}", String::from_utf8_lossy(&body));
    // Unknown table.
    let (status, body) = post(&base, serde_json::json!({"sql": "SELECT * FROM no_such_table"})).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_query");

    // Bad bodies.
    for body in ["{not json", "[]", "{\"sql\": 5}", "{\"sql\": \"SELECT 1\", \"bogus\": 1}", ""] {
        let r = client()
            .post(format!("{base}/v1/query"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "body {body:?}");
        assert_eq!(error_code(&r.bytes().await.unwrap()), "bad_request");
    }
    let (status, body) = post(&base, serde_json::json!({"sql": "SELECT 1", "format": "xml"})).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "bad_format");

    // Still up, and the data is unchanged.
    let r = client().get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, body) = post(&base, serde_json::json!({"sql": "SELECT count(*) FROM interaction_fact"})).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["rows"][0][0].as_i64(), Some(calls));

    // Per-request settings: the request's time zone, 64-bit integers as strings; neither outlives the request.
    let sql =
        "SELECT to_char(to_timestamp(0), 'YYYY-MM-DD HH24:MI') AS t, max(interaction_id) AS k FROM interaction_fact";
    let (s, body) = post(&base, serde_json::json!({"sql": sql, "time_zone": "Europe/Berlin", "int64": "string"})).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let berlin: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (_, body) = post(&base, serde_json::json!({"sql": sql})).await;
    let plain: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(berlin["rows"][0][0], "1970-01-01 01:00", "PostgreSQL's answer in Berlin");
    assert_eq!(plain["rows"][0][0], "1970-01-01 00:00", "the next request is in UTC again");
    let key = plain["rows"][0][1].as_i64().expect("a JSON number by default");
    assert!(key > 1 << 53, "a key JavaScript would round: {key}");
    assert_eq!(berlin["rows"][0][1], serde_json::Value::String(key.to_string()), "the same key, as exact digits");
    let (s, body) = post(&base, serde_json::json!({"sql": sql, "time_zone": "Mars/Olympus"})).await;
    assert_eq!(s, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["sqlstate"], "22023", "{v}");
    let (s, body) = post(&base, serde_json::json!({"sql": sql, "int64": "bigint"})).await;
    assert_eq!((s, error_code(&body).as_str()), (400, "bad_request"));

    // Tables and status.
    let v: serde_json::Value = client().get(format!("{base}/v1/tables")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = v["tables"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    for t in ["interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "resource_", "date_time"] {
        assert!(names.contains(&t), "{t} listed");
    }
    let v: serde_json::Value = client().get(format!("{base}/v1/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["idbs"].as_array().map(|a| a.len()), Some(4));
    assert!(v["mart_version"].as_u64().is_some());

    // Export over HTTP, read back by DuckDB (an independent Parquet reader).
    let r = client().get(format!("{base}/v1/export/INTERACTION_FACT")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("ixn.parquet");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(
        duckdb_scalar(&file, "SELECT count(*) || ',' || sum(duration) FROM read_parquet('{}')"),
        format!("{calls},{total_secs}")
    );

    // A day range, and a bad one.
    let day = ccmart::transform::day_of(T0);
    let expected_day = truth.calls.values().filter(|c| ccmart::transform::day_of(c.start_ts) == day).count();
    let r = client().get(format!("{base}/v1/export/interaction_fact?from={day}&to={day}")).send().await.unwrap();
    let bytes = r.bytes().await.unwrap();
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(duckdb_scalar(&file, "SELECT count(*) FROM read_parquet('{}')"), expected_day.to_string());
    let r = client().get(format!("{base}/v1/export/interaction_fact?from=yesterday")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = client().get(format!("{base}/v1/export/nope")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Saved reports over HTTP: listed with their parameters, run with parameters bound as values.
    let v: serde_json::Value = client().get(format!("{base}/v1/reports")).send().await.unwrap().json().await.unwrap();
    let list = v["reports"].as_array().unwrap();
    let cpi = list.iter().find(|r| r["name"] == "calls_per_interval").expect("calls_per_interval listed");
    assert!(cpi["params"].as_array().unwrap().iter().any(|p| p["name"] == "from" && p["kind"] == "date"));
    let r = client()
        .get(format!("{base}/v1/reports/calls_per_interval?from={day}&to={day}&format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "interactions").unwrap();
    let total: usize = text.lines().skip(1).map(|l| l.split(',').nth(col).unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(total, expected_day);
    for (url, status, code) in [
        ("/v1/reports/calls_per_interval?from=tomorrow", 400, "bad_parameter"),
        ("/v1/reports/calls_per_interval?bogus=1", 400, "bad_parameter"),
        ("/v1/reports/no_such_report", 404, "unknown_report"),
    ] {
        let r = client().get(format!("{base}{url}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{url}");
        assert_eq!(error_code(&r.bytes().await.unwrap()), code, "{url}");
    }

    // Digests per table and day.
    let v: serde_json::Value = client().get(format!("{base}/v1/digest")).send().await.unwrap().json().await.unwrap();
    let all = v["digests"].as_array().unwrap();
    assert!(all.iter().any(|d| d["table"] == "resource_" && d["day"] == ""));
    let r = client().get(format!("{base}/v1/digest?table=INTERACTION_FACT&day={day}")).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["digests"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(v["digests"][0]["rows"].as_u64(), Some(expected_day as u64));
    assert_eq!(v["digests"][0]["digest"].as_str().map(str::len), Some(64));
    let r = client().get(format!("{base}/v1/digest?day=2026-13-01")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(error_code(&r.bytes().await.unwrap()), "bad_parameter");

    // The CLI export writes a file DuckDB reads.
    let cli_out = out.path().join("cli");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ccmart"))
        .args(["export", "--table", "INTERACTION_RESOURCE_FACT", "--out"])
        .arg(&cli_out)
        .args(["--url", &base])
        .output()
        .unwrap();
    assert!(o.status.success(), "ccmart export: {}", String::from_utf8_lossy(&o.stderr));
    let progress = String::from_utf8_lossy(&o.stderr);
    assert!(progress.contains("export INTERACTION_RESOURCE_FACT: "), "a plain summary line off a terminal: {progress}");
    let files: Vec<_> = std::fs::read_dir(&cli_out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one finished file, no partial left: {files:?}");
    let f = files[0].clone();
    let legs: usize = truth.calls.values().map(|c| c.legs.len() + c.queue_visits.len()).sum();
    assert_eq!(duckdb_scalar(&f, "SELECT count(*) FROM read_parquet('{}')"), legs.to_string());
}
