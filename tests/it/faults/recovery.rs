//! Recovery and limits: refused connections retried, the circuit opened and
//! probed, calls beyond the concurrency limit.

use super::*;

#[tokio::test]
async fn a_refused_connection_is_retried_until_the_upstream_comes_up() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = reserved.local_addr().expect("addr");
    drop(reserved);
    let resilience = ResilienceSettings {
        max_attempts: 5,
        base_backoff: Duration::from_millis(60),
        ..ResilienceSettings::default()
    };
    let mut gateway = gateway_for(&format!("http://{addr}"), resilience).await;
    // The upstream comes up 20 ms in, before the first retry (at least 30 ms in).
    let upstream = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let listener = std::net::TcpListener::bind(addr).expect("rebind the reserved port");
        let server = wiremock::MockServer::builder().listener(listener).start().await;
        wiremock::Mock::given(wiremock::matchers::path("/v1/one-time-token"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
            .mount(&server)
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(server);
    });
    let request = IssueOneTimeTokenRequest { email: "a@b.co".into(), ..Default::default() };
    gateway
        .client
        .issue_one_time_token(common::with_deadline(request, Duration::from_secs(2)))
        .await
        .expect("retried into success");
    assert!(
        gateway
            .metrics_text()
            .await
            .contains("mtr_sso_upstream_retries_total{tenant=\"default\",endpoint=\"issue_one_time_token\"} 1")
    );
    upstream.abort();
}

#[tokio::test]
async fn a_failing_upstream_opens_the_circuit_and_calls_then_fail_fast_until_a_probe_succeeds() {
    let server = FaultServer::start(Fault::Html(503)).await;
    let resilience = ResilienceSettings {
        breaker_failures: 3,
        breaker_cooldown: Duration::from_millis(300),
        ..ResilienceSettings::default()
    };
    let mut gateway = gateway_for(&server.url(), resilience).await;
    for _ in 0..3 {
        assert_eq!(call(&mut gateway, "Login").await.1, "UPSTREAM_UNAVAILABLE");
    }
    let started = Instant::now();
    let (code, fast_reason) = call(&mut gateway, "Login").await;
    assert_eq!((code, fast_reason.as_str()), (Code::Unavailable, "UPSTREAM_CIRCUIT_OPEN"));
    assert!(started.elapsed() < Duration::from_millis(50), "fails fast");
    assert_eq!(server.hits("/manager/mtr-login"), 3, "the open circuit sent nothing");
    assert!(
        gateway.metrics_text().await.contains("mtr_sso_upstream_circuit_state{tenant=\"default\",api=\"platform\"} 1")
    );
    assert_eq!(
        call(&mut gateway, "IssueOneTimeToken").await.1,
        "UPSTREAM_UNAVAILABLE",
        "the Broker-API has its own circuit"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(call(&mut gateway, "Login").await.1, "UPSTREAM_UNAVAILABLE", "one probe goes out after the cooldown");
    assert_eq!(server.hits("/manager/mtr-login"), 4);
    assert_eq!(call(&mut gateway, "Login").await.1, "UPSTREAM_CIRCUIT_OPEN", "the failed probe opened it again");
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_wait_for_a_slot_and_are_never_sent_if_none_frees_up() {
    let server = FaultServer::start(Fault::Hang).await;
    let resilience = ResilienceSettings { max_concurrent_calls: 2, ..ResilienceSettings::off() };
    let mut gateway = gateway_for(&server.url(), resilience).await;
    // Two calls with a long deadline take both slots; the vendor never answers them.
    let mut calls = JoinSet::new();
    for n in 0..2 {
        let mut client = gateway.client.clone();
        calls.spawn(async move {
            // Distinct emails: identical concurrent requests would share one vendor call.
            let request = IssueOneTimeTokenRequest { email: format!("user{n}@b.co"), ..Default::default() };
            let status = client
                .issue_one_time_token(common::with_deadline(request, Duration::from_millis(1500)))
                .await
                .expect_err("the vendor never answers");
            (status.code(), reason(&status))
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = call(&mut gateway, "IssueOneTimeToken").await;
    assert_eq!(busy, (Code::DeadlineExceeded, "UPSTREAM_BUSY".to_string()), "it waited for a slot, then gave up");
    assert_eq!(server.hits("/v1/one-time-token"), 2, "the waiting call was never sent");
    while let Some(outcome) = calls.join_next().await {
        assert_eq!(outcome.expect("call"), (Code::DeadlineExceeded, "UPSTREAM_TIMEOUT".to_string()));
    }
    // The slots came back when their calls ended.
    assert_eq!(call(&mut gateway, "IssueOneTimeToken").await.1, "UPSTREAM_TIMEOUT");
    assert_eq!(server.hits("/v1/one-time-token"), 3);
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains("status=\"busy\"} 1"), "the refusal is counted:\n{metrics}");
}
