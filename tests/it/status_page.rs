//! The status page in a real headless browser (Debian's Chromium): it loads without console errors, shows the
//! live numbers of the appliance behind it, and its SQL box runs a query and shows the answer.

use crate::common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Loads `url` in headless Chromium and returns (DOM after the scripts ran, Chromium's log).
fn render(url: &str) -> (String, String) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh installs it)"
    );
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let pid = child.id();
    // Bounded: a hung browser is killed.
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(90));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The text of the element with `id` in a dumped DOM (its first text run).
fn text_of(dom: &str, id: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("#{id} in the page"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap();
    rest[start..start + end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_live_numbers_and_runs_sql_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (app, truth) = embedded_mart(dir.path(), 47, 3).await;
    let (base, _stop) = serve_app(&app).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    let r = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"), "{csp}");
    let html = r.text().await.unwrap();
    for external in ["<link", " src=", "href=", "url(", "@import", "https://"] {
        assert!(!html.contains(external), "no external assets: found {external}");
    }

    let status: serde_json::Value = client.get(format!("{base}/v1/status")).send().await.unwrap().json().await.unwrap();
    let sql = "SELECT count(*) AS calls, max(interaction_id) AS k FROM interaction_fact";
    let url =
        format!("{base}/#sql={}", sql.replace(' ', "%20").replace('(', "%28").replace(')', "%29").replace('*', "%2A"));
    let (dom, log) = tokio::task::spawn_blocking(move || render(&url)).await.unwrap();

    // No script errors, no CSP violations.
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("Uncaught")
                || l.contains("Content Security Policy")
                || (l.contains(":CONSOLE") && l.contains("ERROR"))
        })
        .collect();
    assert!(problems.is_empty(), "console errors: {problems:#?}");
    assert!(dom.contains("data-ready=\"1\"") && dom.contains("data-failures=\"0\""), "every panel loaded: {dom}");

    // Live numbers.
    assert_eq!(text_of(&dom, "mart-version"), status["mart_version"].to_string());
    assert_eq!(text_of(&dom, "site"), status["site"].as_str().unwrap());
    for idb in status["idbs"].as_array().unwrap() {
        assert!(dom.contains(&format!("<td>{}</td>", idb["idb"].as_str().unwrap())), "IDB {} listed", idb["idb"]);
    }
    // The chart: calls per 15 minutes over the last day of data, against the ground truth.
    let newest = truth.calls.values().map(|c| c.start_ts).max().unwrap();
    let in_day: Vec<i64> = truth.calls.values().map(|c| c.start_ts).filter(|t| *t > newest - 86_400).collect();
    let buckets: std::collections::BTreeSet<i64> = in_day.iter().map(|t| t - t.rem_euclid(900)).collect();
    assert!(dom.contains(&format!("data-buckets=\"{}\"", buckets.len())), "chart buckets");
    assert!(dom.contains(&format!("data-total=\"{}\"", in_day.len())), "chart total");
    assert_eq!(dom.matches("<rect").count(), buckets.len(), "one bar per 15 minutes with calls");
    // The SQL box ran the query from the URL and shows the answer.
    let table = &dom[dom.find("id=\"result-table\"").expect("the SQL answer is shown")..];
    assert!(table.contains("<th>calls</th>"));
    assert!(table.contains(&format!("<td class=\"num\">{}</td>", truth.call_count())), "count in the table: {table}");
    // A 63-bit key is shown exactly (JSON.parse of a number would have rounded it to a key that joins nothing).
    let v: serde_json::Value = client
        .post(format!("{base}/v1/query"))
        .json(&serde_json::json!({"sql": "SELECT max(interaction_id) FROM interaction_fact"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = v["rows"][0][0].as_i64().expect("the key as a JSON number");
    assert!(key > 1 << 53, "the test needs a key JavaScript cannot hold as a number: {key}");
    assert!(table.contains(&format!("<td class=\"num\">{key}</td>")), "key {key} shown exactly: {table}");
}
