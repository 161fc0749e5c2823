//! The limits that keep the fleet inside the vendor's quota and stop bursts:
//! over a limit, a call is refused at once with RESOURCE_EXHAUSTED and
//! RetryInfo, and never reaches the vendor.

mod common;

use common::{reason, spawn_gateway_with, tenant};
use mtr_sso::{
    auth::CallerAuth,
    proto::{IssueOneTimeTokenRequest, LoginRequest},
    quota::Limits,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::Code;
use tonic_types::StatusExt as _;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&server)
        .await;
    Mock::given(path("/manager/mtr-login"))
        .respond_with(ResponseTemplate::new(200).append_header("set-cookie", "co-auth=s; Path=/; Max-Age=900"))
        .mount(&server)
        .await;
    server
}

fn ott(email: &str) -> IssueOneTimeTokenRequest {
    IssueOneTimeTokenRequest { email: email.into(), ..Default::default() }
}

#[tokio::test]
async fn calls_over_the_upstream_quota_are_refused_at_once_and_never_sent() {
    let server = upstream().await;
    let mut gateway =
        spawn_gateway_with(vec![tenant("default", &server.uri())], Duration::from_secs(5), 3, |_| {}).await;
    for n in 0..3 {
        gateway.client.issue_one_time_token(ott(&format!("u{n}@example.com"))).await.expect("within the quota");
    }
    let started = Instant::now();
    let status = gateway.client.issue_one_time_token(ott("u9@example.com")).await.expect_err("over the quota");
    assert!(started.elapsed() < Duration::from_millis(200), "refused at once, not queued");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::ResourceExhausted, "UPSTREAM_QUOTA_EXHAUSTED"));
    let retry = status.get_error_details().retry_info().and_then(|r| r.retry_delay).expect("retry info");
    assert!(retry > Duration::from_secs(10) && retry <= Duration::from_secs(20), "{retry:?}");
    // The platform has its own bucket: a login still goes through.
    let login = LoginRequest { email: "a@b.co".into(), password: "pw".into(), ..Default::default() };
    gateway.client.login(login).await.expect("platform quota is separate");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 4, "3 tokens and 1 login reached the vendor");
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains("mtr_sso_upstream_quota_tokens_left{tenant=\"default\",api=\"broker-api\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("mtr_sso_upstream_quota_tokens_left{tenant=\"default\",api=\"platform\"} 2"), "{metrics}");
    assert!(metrics.contains("status=\"quota_exhausted\"} 1"), "the rejection is counted");
}

#[tokio::test]
async fn one_email_cannot_burst_sign_ins() {
    let server = upstream().await;
    let limits = Limits { upstream_per_minute: 0, caller_per_minute: 0, email_per_minute: 2 };
    let mut gateway =
        spawn_gateway_with(vec![tenant("default", &server.uri())], Duration::from_secs(5), 0, |settings| {
            settings.limits = limits
        })
        .await;
    let login = |email: &str| LoginRequest { email: email.into(), password: "pw".into(), ..Default::default() };
    gateway.client.login(login("victim@example.com")).await.expect("first");
    gateway.client.issue_one_time_token(ott("VICTIM@example.com")).await.expect("second, same email in other case");
    let status = gateway.client.login(login("victim@example.com")).await.expect_err("third");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::ResourceExhausted, "EMAIL_RATE_LIMITED"));
    assert!(status.get_error_details().retry_info().is_some());
    gateway.client.login(login("someone.else@example.com")).await.expect("other emails are not affected");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 3);
}

#[tokio::test]
async fn one_caller_cannot_burst_token_minting() {
    let server = upstream().await;
    let (crm, other) = ("c".repeat(32), "o".repeat(32));
    let callers = CallerAuth::parse(
        "[callers.crm]\nrpcs = [\"*\"]\n[callers.other]\nrpcs = [\"*\"]\n",
        Some(&format!("crm {crm}\nother {other}\n")),
    )
    .expect("policy");
    let limits = Limits { upstream_per_minute: 0, caller_per_minute: 2, email_per_minute: 0 };
    let mut gateway =
        spawn_gateway_with(vec![tenant("default", &server.uri())], Duration::from_secs(5), 0, |settings| {
            settings.callers = Some(Arc::new(callers));
            settings.limits = limits;
        })
        .await;
    let as_caller = |token: &str, n: u32| {
        let mut request = tonic::Request::new(ott(&format!("user{n}@example.com")));
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    };
    gateway.client.issue_one_time_token(as_caller(&crm, 1)).await.expect("first");
    gateway.client.issue_one_time_token(as_caller(&crm, 2)).await.expect("second");
    let status = gateway.client.issue_one_time_token(as_caller(&crm, 3)).await.expect_err("third");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::ResourceExhausted, "CALLER_RATE_LIMITED"));
    gateway.client.issue_one_time_token(as_caller(&other, 4)).await.expect("another caller has its own budget");
}
