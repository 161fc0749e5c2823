//! The other RPCs through the gateway: tenant selection, IssueOneTimeToken,
//! Login, Refresh, fault mapping, deadlines, health, reflection and shedding.

use super::*;

#[tokio::test]
async fn each_request_goes_to_the_tenant_it_names() {
    let (acme, globex) = (MockServer::start().await, MockServer::start().await);
    for (server, token) in [(&acme, "acme-token"), (&globex, "globex-token")] {
        Mock::given(path("/v1/one-time-token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": token})))
            .mount(server)
            .await;
    }
    let mut gateway =
        spawn_gateway(vec![tenant("acme", &acme.uri()), tenant("globex", &globex.uri())], Duration::from_secs(5)).await;
    let ask =
        |tenant: &str| IssueOneTimeTokenRequest { tenant: tenant.into(), email: "a@b.co".into(), ..Default::default() };
    let token = |r: proto::IssueOneTimeTokenResponse| r.login_link.expect("link").one_time_token;
    assert_eq!(
        token(gateway.client.issue_one_time_token(ask("globex")).await.expect("ok").into_inner()),
        "globex-token"
    );
    assert_eq!(token(gateway.client.issue_one_time_token(ask("")).await.expect("ok").into_inner()), "acme-token");
    assert_eq!(upstream_calls(&globex, "/v1/one-time-token").await, 1);
    assert_eq!(upstream_calls(&acme, "/v1/one-time-token").await, 1);
}

#[tokio::test]
async fn issue_one_time_token_returns_link_and_expiry_or_a_session() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .and(body_partial_json(json!({"email": "ada@example.com", "validityTime": 120})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"oneTimeToken": "ott-9"})))
        .mount(&server)
        .await;
    Mock::given(path("/manager/login/co/with-token")).respond_with(session_answer()).expect(1).mount(&server).await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let request = IssueOneTimeTokenRequest {
        email: "ada@example.com".into(),
        validity: Some(prost_types::Duration { seconds: 120, nanos: 0 }),
        ..Default::default()
    };
    let link =
        gateway.client.issue_one_time_token(request.clone()).await.expect("ok").into_inner().login_link.expect("link");
    assert_eq!(link.redirect_url, format!("{}/?auth=ott-9", server.uri()));
    assert!((link.expires_at.expect("expiry").seconds - now_secs() - 120).abs() <= 2);
    let response = gateway
        .client
        .issue_one_time_token(IssueOneTimeTokenRequest { start_session: true, ..request })
        .await
        .expect("ok")
        .into_inner();
    assert!(response.login_link.is_none());
    assert_eq!(response.session.expect("session").access_token, "sess-1");
}

#[tokio::test]
async fn login_returns_the_session_and_trading_accounts_with_the_default_broker_id() {
    let server = MockServer::start().await;
    Mock::given(path("/manager/mtr-login"))
        .and(body_partial_json(json!({"brokerId": "7"})))
        .respond_with(session_answer())
        .expect(1)
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let response = gateway
        .client
        .login(LoginRequest { email: "ada@example.com".into(), password: "pw".into(), ..Default::default() })
        .await
        .expect("ok")
        .into_inner();
    assert_eq!(response.session.expect("session").refresh_token, "rt-1");
    assert_eq!(response.trading_accounts[0].trading_account_id, "77");
}

#[tokio::test]
async fn wrong_credentials_are_unauthenticated_but_a_rejected_api_key_is_internal() {
    let server = MockServer::start().await;
    Mock::given(path("/manager/mtr-login")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    Mock::given(path("/v1/one-time-token")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let status = gateway
        .client
        .login(LoginRequest { email: "a@b.co".into(), password: "bad".into(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::Unauthenticated, "UPSTREAM_REJECTED_CREDENTIALS"));
    let status = gateway
        .client
        .issue_one_time_token(IssueOneTimeTokenRequest { email: "a@b.co".into(), ..Default::default() })
        .await
        .expect_err("our key");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::Internal, "UPSTREAM_REJECTED_API_KEY"));
    assert!(!status.message().contains(common::API_KEY));
}

#[tokio::test]
async fn every_upstream_fault_maps_to_its_code_and_reason() {
    let cases: [(ResponseTemplate, Code, &str); 7] = [
        (ResponseTemplate::new(403), Code::Internal, "UPSTREAM_PERMISSION_DENIED"),
        (
            ResponseTemplate::new(404).set_body_json(json!({"status": 404, "detail": "Account not found"})),
            Code::NotFound,
            "ACCOUNT_NOT_FOUND",
        ),
        (ResponseTemplate::new(404).set_body_string("no route"), Code::Internal, "UPSTREAM_ENDPOINT_NOT_FOUND"),
        (
            ResponseTemplate::new(400).set_body_json(json!({"status": 400, "title": "Bad Request"})),
            Code::InvalidArgument,
            "UPSTREAM_REJECTED_REQUEST",
        ),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "30"),
            Code::ResourceExhausted,
            "UPSTREAM_RATE_LIMITED",
        ),
        (ResponseTemplate::new(503).set_body_string("<html>down</html>"), Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
        (ResponseTemplate::new(200).set_body_string("not json"), Code::Internal, "UPSTREAM_PROTOCOL_ERROR"),
    ];
    for (answer, code, expected_reason) in cases {
        let server = MockServer::start().await;
        Mock::given(path("/v1/one-time-token")).respond_with(answer).mount(&server).await;
        let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
        let status = gateway
            .client
            .issue_one_time_token(IssueOneTimeTokenRequest { email: "a@b.co".into(), ..Default::default() })
            .await
            .expect_err("fails");
        assert_eq!((status.code(), reason(&status).as_str()), (code, expected_reason));
        assert_eq!(error_metadata(&status, "endpoint").as_deref(), Some("issue_one_time_token"));
        if code == Code::ResourceExhausted {
            let retry = status.get_error_details().retry_info().cloned().expect("retry info");
            assert_eq!(retry.retry_delay, Some(Duration::from_secs(30)));
        }
    }
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_upstream_call() {
    let server = MockServer::start().await;
    Mock::given(path("/manager/mtr-login"))
        .respond_with(session_answer().set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(30)).await;
    let started = Instant::now();
    let request = with_deadline(
        LoginRequest { email: "a@b.co".into(), password: "pw".into(), ..Default::default() },
        Duration::from_millis(300),
    );
    let status = gateway.client.login(request).await.expect_err("deadline");
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
}

#[tokio::test]
async fn without_a_caller_deadline_the_configured_cap_applies() {
    let server = MockServer::start().await;
    Mock::given(path("/manager/mtr-login"))
        .respond_with(session_answer().set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = gateway
        .client
        .login(LoginRequest { email: "a@b.co".into(), password: "pw".into(), ..Default::default() })
        .await
        .expect_err("capped");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::DeadlineExceeded, "UPSTREAM_TIMEOUT"));
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[tokio::test]
async fn refresh_rotates_the_token_and_a_refused_one_is_unauthenticated() {
    let server = MockServer::start().await;
    Mock::given(path("/manager/refresh-token"))
        .and(header("cookie", "rt=good"))
        .respond_with(
            ResponseTemplate::new(200)
                .append_header("set-cookie", "co-auth=sess-2; Path=/; Max-Age=900")
                .append_header("set-cookie", "rt=rotated; Path=/manager/refresh-token"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/manager/refresh-token"))
        .and(header("cookie", "rt=spent"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let session = gateway
        .client
        .refresh(RefreshRequest { refresh_token: "good".into(), ..Default::default() })
        .await
        .expect("ok")
        .into_inner()
        .session
        .expect("session");
    assert_eq!((session.access_token.as_str(), session.refresh_token.as_str()), ("sess-2", "rotated"));
    let status = gateway
        .client
        .refresh(RefreshRequest { refresh_token: "spent".into(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::Unauthenticated, "REFRESH_TOKEN_INVALID"));
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let server = MockServer::start().await;
    let gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(common::channel(gateway.addr).await);
    for service in ["", "matchtrader.sso.v1.SsoService"] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(answer.status(), tonic_health::pb::health_check_response::ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_service_for_grpcurl() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let server = MockServer::start().await;
    let gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let mut client = ServerReflectionClient::new(common::channel(gateway.addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client.server_reflection_info(tokio_stream::once(request)).await.expect("stream").into_inner();
    let answer = answers.message().await.expect("message").expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["matchtrader.sso.v1.SsoService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
    }
}

#[tokio::test]
async fn rpcs_beyond_the_in_flight_limit_are_shed_at_once_and_health_still_answers() {
    let server = MockServer::start().await;
    Mock::given(path("/manager/mtr-login"))
        .respond_with(session_answer().set_delay(Duration::from_millis(800)))
        .mount(&server)
        .await;
    let gateway =
        common::spawn_gateway_limited(vec![tenant("default", &server.uri())], Duration::from_secs(5), 2).await;
    let login = || LoginRequest { email: "a@b.co".into(), password: "pw".into(), ..Default::default() };
    let mut calls = Vec::new();
    for _ in 0..5 {
        let mut client = gateway.client.clone();
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            (client.login(login()).await, started.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(common::channel(gateway.addr).await);
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health");
    assert_eq!(answer.into_inner().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    let (mut ok, mut shed) = (0, 0);
    for call in calls {
        let (result, elapsed) = call.await.expect("task");
        match result {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!((status.code(), reason(&status).as_str()), (Code::ResourceExhausted, "OVERLOADED"));
                assert!(status.get_error_details().retry_info().is_some());
                assert!(elapsed < Duration::from_millis(300), "shed at once, not queued: {elapsed:?}");
                shed += 1;
            }
        }
    }
    assert_eq!((ok, shed), (2, 3));
    assert_eq!(upstream_calls(&server, "/manager/mtr-login").await, 2, "shed RPCs never reach the vendor");
}
