//! The limits that keep the fleet inside the vendor's quota and stop bursts:
//! over a limit, a call is refused at once with RESOURCE_EXHAUSTED and a
//! RetryInfo that says exactly when the next slot frees, and never reaches the
//! vendor; a vendor call whose quota slot frees within `--quota-max-wait`
//! waits for it instead.

use crate::common;
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

fn retry_delay(status: &tonic::Status) -> Duration {
    status.get_error_details().retry_info().and_then(|r| r.retry_delay).expect("retry info")
}

#[tokio::test]
async fn calls_over_the_upstream_quota_are_refused_at_once_with_the_exact_retry_time_and_never_sent() {
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
    // The first call's slot frees 61 s (the window and its margin) after it was taken, moments ago.
    let retry = retry_delay(&status);
    assert!(retry > Duration::from_secs(60) && retry <= Duration::from_secs(61), "{retry:?}");
    // The platform has its own quota: a login still goes through.
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
    assert!(!metrics.contains("mtr_sso_upstream_quota_waits_total{"), "nobody waited: {metrics}");
}

#[tokio::test]
async fn a_call_whose_quota_slot_frees_within_the_max_wait_waits_for_it_and_later_ones_are_refused_at_once() {
    let server = upstream().await;
    // A 1 s window (a slot is held for 2 s) shows in seconds what takes minutes.
    let mut gateway =
        spawn_gateway_with(vec![tenant("default", &server.uri())], Duration::from_secs(5), 2, |settings| {
            settings.limit_window = Duration::from_secs(1);
            settings.quota_max_wait = Duration::from_secs(1);
        })
        .await;
    let start = Instant::now();
    for n in 0..2 {
        gateway.client.issue_one_time_token(ott(&format!("u{n}@example.com"))).await.expect("within the quota");
    }
    tokio::time::sleep_until((start + Duration::from_millis(1200)).into()).await;
    let waiting: Vec<_> = (2..4)
        .map(|n| {
            let mut client = gateway.client.clone();
            tokio::spawn(async move {
                client.issue_one_time_token(ott(&format!("u{n}@example.com"))).await.map(|_| start.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = Instant::now();
    let status = gateway.client.issue_one_time_token(ott("u9@example.com")).await.expect_err("no slot within 1 s");
    assert!(sent.elapsed() < Duration::from_millis(300), "refused at once, not queued");
    assert_eq!(reason(&status), "UPSTREAM_QUOTA_EXHAUSTED");
    // The next free slot is the one reserved by the first waiting call, held 2 s from about 2 s.
    let retry = retry_delay(&status);
    assert!(retry > Duration::from_secs(2) && retry <= Duration::from_secs(3), "{retry:?}");
    for call in waiting {
        let done_after = call.await.expect("joined").expect("the waiting call got its slot");
        assert!(done_after >= Duration::from_secs(2), "sent only once the first slots freed: {done_after:?}");
    }
    assert_eq!(server.received_requests().await.expect("recorded").len(), 4);
    let metrics = gateway.metrics_text().await;
    for expected in [
        "mtr_sso_upstream_quota_waits_total{tenant=\"default\",api=\"broker-api\"} 2",
        "mtr_sso_upstream_quota_waiting{tenant=\"default\",api=\"broker-api\"} 0",
        "mtr_sso_upstream_quota_wait_seconds_count{tenant=\"default\",api=\"broker-api\"} 2",
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
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
    let retry = retry_delay(&status);
    assert!(
        retry > Duration::from_secs(60) && retry <= Duration::from_secs(61),
        "the first call's slot frees: {retry:?}"
    );
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
