//! The auth matrix over real HTTP: every route of the API × no token, a wrong token and each role. Public routes
//! answer everyone; others answer 401 (no detail) without a valid token and 403 with the wrong role; every refusal
//! is counted in the metrics.

use crate::common::*;
use ccmart::config::TokenConfig;
use ccmart::fault::FaultInjector;
use ccmart::pipeline::Appliance;
use ccmart::serve::auth::{hash_token, new_token_secret, Access, Role, ROUTE_ACCESS};
use std::time::Duration;

/// A concrete request path for a route template.
fn concrete(template: &str) -> String {
    template
        .replace("{table}", "INTERACTION_FACT")
        .replace("{name}", "calls_per_interval")
        .replace("{site}/{action}", "site2/restore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_tokens_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_settings(41);
    let mut cfg = embedded_config(dir.path(), settings.clone());
    let roles = [Role::Reader, Role::Operator, Role::Peer];
    let secrets: Vec<String> = roles.iter().map(|_| new_token_secret()).collect();
    for (role, secret) in roles.iter().zip(&secrets) {
        cfg.tokens.push(TokenConfig {
            name: format!("{}-user", role.as_str()),
            role: role.as_str().into(),
            sha256: hash_token(secret),
        });
    }
    cfg.validate().unwrap();
    let mut app = Appliance::open(cfg.clone(), FaultInjector::disarmed()).await.unwrap();
    simulate(&cfg, Some(&app), settings, 1).await;
    app.drain(1000).await.unwrap();
    let (base, _stop) = serve_app(&app).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();

    let mut refusals = 0u32;
    let wrong = new_token_secret();
    for (method, template, access) in ROUTE_ACCESS.iter().filter(|(_, p, _)| *p != "/metrics") {
        let url = format!("{base}{}", concrete(template));
        let callers: Vec<(&str, Option<&str>, Option<Role>)> =
            [("no token", None, None), ("wrong token", Some(wrong.as_str()), None)]
                .into_iter()
                .chain(roles.iter().zip(&secrets).map(|(r, s)| (r.as_str(), Some(s.as_str()), Some(*r))))
                .collect();
        for (who, token, role) in callers {
            let mut req = match *method {
                "POST" => client.post(&url).json(&serde_json::json!({"sql": "SELECT 1"})),
                _ => client.get(&url),
            };
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let www = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            let body = r.text().await.unwrap();
            let what = format!("{method} {template} with {who}: {status} {body}");
            let allowed = *access == Access::Public || role.is_some_and(|r| access.allows(r));
            if allowed {
                assert!(![401, 403, 404, 405].contains(&status), "allowed and routed: {what}");
            } else if role.is_none() {
                assert_eq!(status, 401, "{what}");
                assert_eq!(www.as_deref(), Some("Bearer"), "{what}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["message"], "a valid bearer token is required", "no detail leaked: {what}");
                refusals += 1;
            } else {
                assert_eq!(status, 403, "{what}");
                assert!(body.contains("forbidden"), "{what}");
                refusals += 1;
            }
        }
    }
    // Unknown paths reveal nothing without a token.
    let r = client.get(format!("{base}/v1/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    refusals += 1;
    let r = client.get(format!("{base}/v1/nothing-here")).bearer_auth(&secrets[0]).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // The metrics listener is authenticated too (any role), and it counted every refusal above.
    let (reader, peer) = (&secrets[0], &secrets[2]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let murl = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ccmart::serve::metrics::serve_metrics(listener, app.metrics(), app.tokens(), async move {
        let _ = rx.await;
    }));
    assert_eq!(client.get(&murl).send().await.unwrap().status(), 401);
    refusals += 1;
    assert_eq!(client.get(&murl).bearer_auth(reader).send().await.unwrap().status(), 200);
    let samples = scrape_as(&murl, Some(peer)).await;
    let counted: f64 = samples
        .iter()
        .filter(|s| s.metric == "ccmart_auth_failures_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(counted, f64::from(refusals), "every 401/403 is counted");
    drop(tx);

    // The OpenAPI document is public, valid OpenAPI 3.1 (checked by an independent validator), and describes
    // exactly the routes of the access table with the right security.
    let r = client.get(format!("{base}/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python3 (scripts/test.sh installs openapi-spec-validator)");
    assert!(check.status.success(), "openapi-spec-validator: {}", String::from_utf8_lossy(&check.stderr));
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented.push((method.to_uppercase(), path.clone()));
            let access = ccmart::serve::auth::route_access(&method.to_uppercase().parse().unwrap(), path)
                .unwrap_or_else(|| panic!("{method} {path} is documented but has no access rule"));
            let open = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x.as_object().is_some_and(|o| o.is_empty())));
            assert_eq!(open, access == Access::Public, "{method} {path}: documented security matches the access rule");
        }
    }
    for (method, path, _) in ROUTE_ACCESS.iter().filter(|(_, p, _)| !["/", "/metrics"].contains(p)) {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
}
