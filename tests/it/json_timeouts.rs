//! `Grpc-Timeout` on the JSON side: a timeout that passes while the vendor
//! is slow gets the service's own answer (its reason), with the RPC's log
//! line and metric, never a generic answer raced ahead of the service; a
//! malformed header is refused with 400 as grpc-gateway refuses it, naming
//! the header and its form, before anything is called.

use crate::common;
use common::{CapturedLogs, spawn_sandbox_gateway};
use mtr_sso::{
    json_log::JsonLines,
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, SandboxOptions, Switches},
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn post_with_timeout(
    addr: std::net::SocketAddr,
    path: &str,
    body: &Value,
    timeout: &str,
) -> (u16, Value, Duration) {
    mtr_sso::upstream::install_crypto_provider();
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("Grpc-Timeout", timeout)
        .json(body)
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json", "{path} {timeout}: a JSON answer");
    (status, response.json().await.expect("a JSON body"), started.elapsed())
}

async fn login_with_timeout(addr: std::net::SocketAddr, timeout: &str) -> (u16, Value, Duration) {
    post_with_timeout(addr, "/v1/sessions:login", &json!({ "email": DEMO_EMAIL, "password": DEMO_PASSWORD }), timeout)
        .await
}

#[tokio::test]
async fn a_grpc_timeout_that_passes_gets_the_services_own_answer_with_its_log_line_and_metric() {
    let captured = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().event_format(JsonLines).with_writer(captured.clone()).finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only test here that sets it");
    let (sandbox, gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let (_, session, _) = login_with_timeout(gateway.addr, "5S").await;
    let refresh_token = session["session"]["refreshToken"].as_str().expect("a refresh token").to_string();
    sandbox.set_switches(Switches { latency: Duration::from_secs(3), ..Switches::default() });

    let calls = [
        ("Login", "/v1/sessions:login", json!({ "email": DEMO_EMAIL, "password": DEMO_PASSWORD })),
        ("IssueOneTimeToken", "/v1/oneTimeTokens:issue", json!({ "email": DEMO_EMAIL })),
        ("Refresh", "/v1/sessions:refresh", json!({ "refreshToken": refresh_token })),
        (
            "CreateAccount",
            "/v1/accounts",
            json!({ "email": "slow@example.com", "password": "Secret-123", "personalDetails": { "firstname": "Ada", "lastname": "Lovelace" } }),
        ),
    ];
    let mut answered = Vec::new();
    for timeout in ["250m", "1S"] {
        for (rpc, path, body) in &calls {
            let (status, body, took) = post_with_timeout(gateway.addr, path, body, timeout).await;
            let reason = common::json_reason(&body).to_string();
            // DEADLINE_EXCEEDED is the JSON side's last resort, raced ahead of the service.
            assert!(
                status >= 400 && !reason.is_empty() && reason != "DEADLINE_EXCEEDED",
                "{rpc} {timeout}: {status} {body}"
            );
            let limit = mtr_sso::deadline::parse_grpc_timeout(timeout).expect("valid");
            assert!(took < limit + Duration::from_secs(1), "{rpc} {timeout}: answered in {took:?}");
            eprintln!("figure: {rpc} over JSON, Grpc-Timeout {timeout}, vendor 3 s: {status} {reason} in {took:?}");
            answered.push((*rpc, reason));
        }
    }

    let metrics = gateway.metrics_text().await;
    let counted: u64 = metrics
        .lines()
        .filter(|line| {
            line.starts_with("grpc_server_handled_total{")
                && line.contains("protocol=\"http\"")
                && !line.contains("grpc_code=\"OK\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, answered.len() as u64, "every timed-out call is counted:\n{metrics}");
    let logs = captured.text();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "rpc finished" && line["protocol"] == "http" && line["reason"] != "")
        .collect();
    assert_eq!(lines.len(), answered.len(), "one log line per call:\n{logs}");
    for (rpc, reason) in &answered {
        assert!(
            lines.iter().any(|line| line["rpc.method"] == *rpc && line["reason"] == reason.as_str()),
            "{rpc} {reason} is logged:\n{logs}"
        );
    }
    let latencies: Vec<u64> = lines.iter().filter_map(|line| line["latency_us"].as_u64()).map(|us| us / 1000).collect();
    eprintln!(
        "figure: {} of {} timed-out JSON calls answered by the service, logged and counted; service latencies (ms) {latencies:?}",
        lines.len(),
        answered.len()
    );
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_refused_with_400_naming_the_header_and_its_form() {
    let (sandbox, gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    for malformed in ["5s", "abc", "1000", "1.5S", "123456789m", "-1S"] {
        let (status, body, _) = login_with_timeout(gateway.addr, malformed).await;
        assert_eq!((status, common::json_reason(&body)), (400, "INVALID_GRPC_TIMEOUT"), "{malformed}: {body}");
        assert_eq!(body["code"], 3, "INVALID_ARGUMENT");
        let message = body["message"].as_str().expect("a message");
        assert!(
            message.contains("Grpc-Timeout") && message.contains("`5S`") && message.contains("`500m`"),
            "{message}"
        );
    }
    assert!(sandbox.stats().is_empty(), "nothing reached the vendor: {:?}", sandbox.stats());
    for well_formed in ["5S", "99999999H"] {
        let (status, _, _) = login_with_timeout(gateway.addr, well_formed).await;
        assert_eq!(status, 200, "{well_formed}: a well-formed one is taken, however long");
    }
}
