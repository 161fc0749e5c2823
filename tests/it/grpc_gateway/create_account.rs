//! CreateAccount through the gateway: the link, the session, at-most-once
//! creation, refused input and an unknown tenant.

use super::*;

#[tokio::test]
async fn create_account_returns_the_account_and_a_login_link_from_the_vendors_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "uuid": "acc-1", "oneTimeToken": "ott-1", "email": "ada@example.com", "verificationStatus": "NEW",
            "type": "RETAIL", "created": "2024-01-13T09:20:04.651Z", "updated": "2024-01-13T09:20:04.651Z"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let response = gateway.client.create_account(new_account("ada@example.com")).await.expect("created").into_inner();
    let account = response.account.expect("account");
    assert_eq!(account.uuid, "acc-1");
    assert_eq!(account.verification_status(), proto::VerificationStatus::New);
    assert_eq!(account.client_type(), proto::ClientType::Retail);
    assert_eq!(account.created.expect("created").seconds, 1_705_137_604);
    let link = response.login_link.expect("link");
    assert_eq!(link.one_time_token, "ott-1");
    assert_eq!(link.redirect_url, format!("{}/?auth=ott-1", server.uri()));
    assert!(response.session.is_none() && response.sign_in_error.is_none());
}

#[tokio::test]
async fn create_account_mints_a_token_when_the_vendor_sent_none() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"uuid": "acc-2"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/one-time-token"))
        .and(body_partial_json(json!({"email": "ada@example.com", "validityTime": 60})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "minted"})))
        .expect(1)
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let response = gateway.client.create_account(new_account("ada@example.com")).await.expect("ok").into_inner();
    let link = response.login_link.expect("link");
    assert_eq!(link.one_time_token, "minted");
    let expires = link.expires_at.expect("a minted token has an expiry").seconds;
    assert!((expires - now_secs() - 60).abs() <= 2, "expires in about 60 s");
    assert_eq!(response.account.expect("account").email, "ada@example.com", "email falls back to the request's");
}

#[tokio::test]
async fn create_account_with_start_session_redeems_the_token_and_hands_over_cookies() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"uuid": "acc-3", "oneTimeToken": "ott-3"})))
        .mount(&server)
        .await;
    Mock::given(path("/manager/login/co/with-token"))
        .and(body_partial_json(json!({"token": "ott-3"})))
        .respond_with(session_answer())
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = tenant("default", &server.uri());
    settings.cookie_domain = Some("broker.test".into());
    let mut gateway = spawn_gateway(vec![settings], Duration::from_secs(5)).await;
    let mut request = new_account("ada@example.com");
    request.start_session = true;
    let response = gateway.client.create_account(request).await.expect("ok").into_inner();
    assert!(response.login_link.is_none(), "the token was spent on the session");
    let session = response.session.expect("session");
    assert_eq!(session.access_token, "sess-1");
    assert_eq!(session.refresh_token, "rt-1");
    assert!((session.expires_at.expect("expiry").seconds - now_secs() - 900).abs() <= 2);
    let co_auth = session.cookies.iter().find(|c| c.name == "co-auth").expect("co-auth cookie");
    assert_eq!((co_auth.domain.as_str(), co_auth.path.as_str()), ("broker.test", "/"));
    assert!(co_auth.secure && co_auth.http_only);
    assert_eq!(co_auth.same_site(), proto::SameSite::Lax);
    assert_eq!(co_auth.max_age.expect("max-age").seconds, 900);
    for part in ["co-auth=sess-1", "Domain=broker.test", "Path=/", "Max-Age=900", "HttpOnly", "Secure", "SameSite=Lax"]
    {
        assert!(co_auth.set_cookie_header.contains(part), "{part} missing in {}", co_auth.set_cookie_header);
    }
    let rt = session.cookies.iter().find(|c| c.name == "rt").expect("rt cookie");
    assert_eq!(rt.path, "/manager/refresh-token");
}

#[tokio::test]
async fn a_created_account_is_returned_even_when_its_session_cannot_be_started() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"uuid": "acc-4", "oneTimeToken": "ott-4"})))
        .mount(&server)
        .await;
    Mock::given(path("/manager/login/co/with-token")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let mut request = new_account("ada@example.com");
    request.start_session = true;
    let response = gateway.client.create_account(request).await.expect("still OK").into_inner();
    assert_eq!(response.account.expect("account").uuid, "acc-4");
    assert!(response.session.is_none());
    assert_eq!(response.sign_in_error.expect("explained").reason, "UPSTREAM_UNAVAILABLE");
}

#[tokio::test]
async fn create_account_is_sent_once_when_the_vendor_fails_and_the_outcome_is_reported_unknown() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts")).respond_with(ResponseTemplate::new(500)).expect(1).mount(&server).await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let status = gateway.client.create_account(new_account("ada@example.com")).await.expect_err("fails");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "ACCOUNT_CREATION_OUTCOME_UNKNOWN");
    assert_eq!(error_metadata(&status, "upstreamStatus").as_deref(), Some("500"));
    assert_eq!(error_metadata(&status, "upstreamReason").as_deref(), Some("UPSTREAM_UNAVAILABLE"));
    assert_eq!(upstream_calls(&server, "/v1/accounts").await, 1);
}

#[tokio::test]
async fn create_account_that_times_out_upstream_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let request = with_deadline(new_account("ada@example.com"), Duration::from_millis(400));
    let status = gateway.client.create_account(request).await.expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(reason(&status), "ACCOUNT_CREATION_OUTCOME_UNKNOWN");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream_calls(&server, "/v1/accounts").await, 1);
}

#[tokio::test]
async fn a_duplicate_email_is_already_exists() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(422).set_body_json(
            json!({"status": 422, "title": "Unprocessable Entity", "detail": "User with this email already exists"}),
        ))
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let status = gateway.client.create_account(new_account("ada@example.com")).await.expect_err("dup");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason(&status), "ACCOUNT_ALREADY_EXISTS");
    assert!(!status.message().contains("User with this email"), "upstream text is not echoed");
}

#[tokio::test]
async fn invalid_input_is_refused_with_field_violations_before_any_upstream_call() {
    let server = MockServer::start().await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let mut request = new_account("not-an-email");
    request.personal_details = Some(proto::PersonalDetails { firstname: "Ada".into(), ..Default::default() });
    let status = gateway.client.create_account(request).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "INVALID_REQUEST");
    assert_eq!(violated_fields(&status), ["email", "personal_details.lastname"]);

    let too_long = IssueOneTimeTokenRequest {
        email: "ada@example.com".into(),
        validity: Some(prost_types::Duration { seconds: 7200, nanos: 0 }),
        ..Default::default()
    };
    let status = gateway.client.issue_one_time_token(too_long).await.expect_err("out of range");
    assert_eq!(violated_fields(&status), ["validity"]);
    let status = gateway
        .client
        .refresh(RefreshRequest { refresh_token: "a;b".into(), ..Default::default() })
        .await
        .expect_err("bad");
    assert_eq!(violated_fields(&status), ["refresh_token"]);
    let status =
        gateway.client.login(LoginRequest { email: "a@b.co".into(), ..Default::default() }).await.expect_err("bad");
    assert_eq!(violated_fields(&status), ["password"]);
    assert!(server.received_requests().await.unwrap_or_default().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn an_unknown_tenant_is_invalid_argument() {
    let server = MockServer::start().await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let mut request = new_account("ada@example.com");
    request.tenant = "nope".into();
    let status = gateway.client.create_account(request).await.expect_err("unknown");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "UNKNOWN_TENANT");
    assert_eq!(violated_fields(&status), ["tenant"]);
    // Without a policy every caller may use every tenant, so the refusal lists them.
    let mut request = new_account("ada@example.com");
    request.tenant = "Default".into();
    let status = gateway.client.create_account(request).await.expect_err("names are case-sensitive");
    assert!(status.message().contains("case-sensitive") && status.message().contains("`default`"), "{status:?}");
}
