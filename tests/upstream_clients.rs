//! The two upstream clients against a mock HTTP server: what goes on the wire
//! (method, path, headers, exact JSON) and how every documented quirk of the
//! answers is read.

mod common;

use common::{API_KEY, USER_AGENT, http_settings, tenant};
use mtr_sso::{
    deadline::Deadline,
    tenant::AuthScheme,
    upstream::{
        BrokerApi, GateContext, HttpClient, NewAccount, PlatformApi, Tenant, UpstreamFault, broker_api_form as form,
    },
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::time::{Duration, Instant};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

fn clients(server: &MockServer, adjust: impl FnOnce(&mut mtr_sso::tenant::TenantSettings)) -> (BrokerApi, PlatformApi) {
    let mut settings = tenant("default", &server.uri());
    adjust(&mut settings);
    let http = HttpClient::new(&http_settings(Duration::from_secs(5))).expect("client");
    let gates = GateContext::unlimited(std::sync::Arc::new(mtr_sso::metrics::Metrics::new()));
    let Tenant { broker, platform, .. } = Tenant::new(settings, &http, &gates).expect("the tenant's clients");
    (broker, platform)
}

fn soon() -> Deadline {
    Deadline::after(Duration::from_secs(5))
}

fn full_account() -> NewAccount {
    NewAccount {
        email: "ada@example.com".into(),
        password: SecretString::from("pw-1"),
        offer_uuid: Some("8d3e5f4a-1b2c-4d5e-8f90-123456789abc".into()),
        client_type: Some("PROFESSIONAL"),
        create_as_deposited_account: Some(false),
        personal_details: form::PersonalDetails {
            firstname: "Ada".into(),
            lastname: "Lovelace".into(),
            date_of_birth: Some("1815-12-10".into()),
            passport: Some(form::Passport { number: Some("P1".into()), country: None }),
            ..Default::default()
        },
        contact_details: Some(form::ContactDetails {
            phone_number: Some("+44 20 0000".into()),
            to_contact: Some(form::ToContact {
                to_contact_date: Some("2026-01-02T03:04:05Z".into()),
                already_contacted: false,
            }),
            ..Default::default()
        }),
        account_configuration: Some(form::AccountConfiguration {
            partner_id: Some(42),
            crm_user_scope: Some(form::CrmUserScope { branch_scope: vec!["b1".into()], manager_pools: vec![] }),
            ..Default::default()
        }),
        address_details: None,
        banking_details: Some(form::BankingDetails { bank_name: Some("Bank".into()), ..Default::default() }),
        lead_details: Some(form::LeadDetails { source: Some("web".into()), ..Default::default() }),
    }
}

#[tokio::test]
async fn create_account_posts_the_exact_camel_case_body_without_empty_fields() {
    let server = MockServer::start().await;
    let expected = json!({
        "email": "ada@example.com",
        "password": "pw-1",
        "offerUuid": "8d3e5f4a-1b2c-4d5e-8f90-123456789abc",
        "clientType": "PROFESSIONAL",
        "createAsDepositedAccount": false,
        "personalDetails": {"firstname": "Ada", "lastname": "Lovelace", "dateOfBirth": "1815-12-10", "passport": {"number": "P1"}},
        "contactDetails": {"phoneNumber": "+44 20 0000", "toContact": {"toContactDate": "2026-01-02T03:04:05Z", "alreadyContacted": false}},
        "accountConfiguration": {"partnerId": 42, "crmUserScope": {"branchScope": ["b1"]}},
        "bankingDetails": {"bankName": "Bank"},
        "leadDetails": {"source": "web"}
    });
    Mock::given(method("POST"))
        .and(path("/v1/accounts"))
        .and(header("authorization", API_KEY))
        .and(header("content-type", "application/json"))
        .and(header("user-agent", USER_AGENT))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "uuid": "acc-1", "oneTimeToken": "ott-1", "email": "ada@example.com", "verificationStatus": "NEW",
            "type": "PROFESSIONAL", "created": "2024-01-13T09:20:04.651Z", "unknownField": {"ignored": true}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (broker, _) = clients(&server, |_| {});
    let created = broker.create_account(&full_account(), soon()).await.expect("created");
    assert_eq!(created.uuid.as_deref(), Some("acc-1"));
    assert_eq!(created.client_type.as_deref(), Some("PROFESSIONAL"));
    assert_eq!(created.one_time_token.expect("token").expose_secret(), "ott-1");
    assert!(created.created.is_some());
}

#[tokio::test]
async fn bearer_scheme_and_configured_paths_are_used() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/crm/one-time-token"))
        .and(header("authorization", format!("Bearer {API_KEY}").as_str()))
        .and(body_json(json!({"email": "ada@example.com", "validityTime": 30})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "t-1"})))
        .expect(1)
        .mount(&server)
        .await;
    let (broker, _) = clients(&server, |t| {
        t.auth_scheme = AuthScheme::Bearer;
        t.paths.one_time_token = "/v2/crm/one-time-token".into();
    });
    let issued = broker.issue_one_time_token("ada@example.com", Duration::from_secs(30), soon()).await.expect("issued");
    assert_eq!(issued.token.expose_secret(), "t-1");
    assert!(!format!("{broker:?}").contains(API_KEY), "the key never shows in debug output");
}

#[tokio::test]
async fn one_time_token_answers_are_accepted_in_every_known_shape_and_refused_otherwise() {
    for (body, expected) in [
        (json!({"token": "a"}), Some("a")),
        (json!({"oneTimeToken": "b"}), Some("b")),
        (json!("c"), Some("c")),
        (json!({"something": "else"}), None),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/one-time-token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&body))
            .mount(&server)
            .await;
        let (broker, _) = clients(&server, |_| {});
        let result = broker.issue_one_time_token("a@b.co", Duration::from_secs(30), soon()).await;
        match expected {
            Some(token) => assert_eq!(result.expect("token").token.expose_secret(), token),
            None => assert!(matches!(result.expect_err("refused").fault, UpstreamFault::Protocol { .. })),
        }
    }
}

#[tokio::test]
async fn login_reads_both_account_shapes_and_picks_the_refresh_paths_rt_cookie() {
    for (accounts_key, selected_key) in [("tradingAccounts", "selectedTradingAccount"), ("accounts", "selectedAccount")]
    {
        let server = MockServer::start().await;
        let account = json!({"tradingAccountId": 1001, "uuid": "ta-1", "offer": {"uuid": "o-1", "name": "Std", "demo": true, "system": {"uuid": "s-1"}}});
        Mock::given(method("POST"))
            .and(path("/manager/mtr-login"))
            .and(body_json(json!({"email": "ada@example.com", "password": "pw", "brokerId": "7"})))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"email": "ada@example.com", "token": "body-token", accounts_key: [account.clone()], selected_key: account}))
                    .append_header("set-cookie", "co-auth=cookie-token; Path=/; Max-Age=900; HttpOnly; Secure; SameSite=Lax")
                    .append_header("set-cookie", "rt=backend-rt; Path=/mtr-backend; HttpOnly")
                    .append_header("set-cookie", "rt=manager-rt; Path=/manager/refresh-token; HttpOnly"),
            )
            .expect(1)
            .mount(&server)
            .await;
        let (_, platform) = clients(&server, |_| {});
        let session = platform.login("ada@example.com", &SecretString::from("pw"), "7", soon()).await.expect("login");
        assert_eq!(session.access_token.expose_secret(), "cookie-token", "Set-Cookie wins over the body");
        assert_eq!(session.refresh_token.expect("rt").expose_secret(), "manager-rt");
        assert_eq!(session.refresh_cookies.len(), 2);
        assert_eq!(session.trading_accounts.len(), 1, "{accounts_key}");
        assert_eq!(session.trading_accounts[0].trading_account_id.as_deref(), Some("1001"));
        assert_eq!(session.selected_trading_account.expect("selected").system_uuid.as_deref(), Some("s-1"));
    }
}

#[tokio::test]
async fn refresh_sends_rt_as_a_cookie_and_reads_an_empty_bodied_set_cookie_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/manager/refresh-token"))
        .and(header("cookie", "rt=old-rt"))
        .respond_with(
            ResponseTemplate::new(200)
                .append_header("set-cookie", "co-auth=new-session; Path=/; Max-Age=900; HttpOnly")
                .append_header("set-cookie", "rt=new-rt; Path=/manager/refresh-token; HttpOnly"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (_, platform) = clients(&server, |_| {});
    let session = platform.refresh(&SecretString::from("old-rt"), soon()).await.expect("refreshed");
    assert_eq!(session.access_token.expose_secret(), "new-session");
    assert_eq!(session.refresh_token.expect("rotated").expose_secret(), "new-rt");
}

#[tokio::test]
async fn refresh_accepts_a_body_token_when_no_cookie_comes_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/manager/refresh-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "body-session"})))
        .mount(&server)
        .await;
    let (_, platform) = clients(&server, |_| {});
    let session = platform.refresh(&SecretString::from("rt-1"), soon()).await.expect("refreshed");
    assert_eq!(session.access_token.expose_secret(), "body-session");
    assert_eq!(session.refresh_token.expect("kept").expose_secret(), "rt-1", "not rotated: the sent token stays");
}

#[tokio::test]
async fn an_answer_without_any_session_token_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let (_, platform) = clients(&server, |_| {});
    let error = platform.refresh(&SecretString::from("rt-1"), soon()).await.expect_err("no token");
    assert!(matches!(error.fault, UpstreamFault::Protocol { .. }));
}

#[tokio::test]
async fn error_statuses_and_bodies_are_classified_per_endpoint() {
    let server = MockServer::start().await;
    let problem = |status: u16, detail: &str| {
        ResponseTemplate::new(status).set_body_json(json!({"status": status, "title": "t", "detail": detail, "path": "/x", "timestamp": "2024-01-01T00:00:00Z"}))
    };
    Mock::given(path("/v1/accounts")).respond_with(problem(409, "exists")).mount(&server).await;
    Mock::given(path("/v1/one-time-token")).respond_with(problem(403, "IP not whitelisted")).mount(&server).await;
    Mock::given(path("/manager/mtr-login"))
        .respond_with(ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"))
        .mount(&server)
        .await;
    Mock::given(path("/manager/login/co/with-token")).respond_with(problem(401, "token used")).mount(&server).await;
    Mock::given(path("/manager/refresh-token"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "12").set_body_string("slow down"))
        .mount(&server)
        .await;
    let (broker, platform) = clients(&server, |_| {});
    let create = broker.create_account(&full_account(), soon()).await.expect_err("409");
    assert_eq!((create.fault, create.status), (UpstreamFault::AccountAlreadyExists, Some(409)));
    let token = broker.issue_one_time_token("a@b.co", Duration::from_secs(5), soon()).await.expect_err("403");
    assert_eq!(token.fault, UpstreamFault::PermissionDenied);
    let login = platform.login("a@b.co", &SecretString::from("p"), "7", soon()).await.expect_err("502");
    assert_eq!(login.fault, UpstreamFault::ServerError);
    let redeem = platform.login_with_token(&SecretString::from("t"), soon()).await.expect_err("401");
    assert_eq!(redeem.fault, UpstreamFault::OneTimeTokenRejected);
    let refresh = platform.refresh(&SecretString::from("r"), soon()).await.expect_err("429");
    assert_eq!(refresh.fault, UpstreamFault::RateLimited { retry_after: Some(Duration::from_secs(12)) });
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/login-page"))
        .expect(1)
        .mount(&server)
        .await;
    let (_, platform) = clients(&server, |_| {});
    let error = platform.login("a@b.co", &SecretString::from("p"), "7", soon()).await.expect_err("redirect");
    assert!(matches!(error.fault, UpstreamFault::Protocol { .. }));
}

#[tokio::test]
async fn an_oversized_answer_is_refused_instead_of_buffered() {
    let server = MockServer::start().await;
    let huge = format!("{{\"token\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_string(huge)).mount(&server).await;
    let (broker, _) = clients(&server, |_| {});
    let error = broker.issue_one_time_token("a@b.co", Duration::from_secs(5), soon()).await.expect_err("too big");
    assert!(matches!(error.fault, UpstreamFault::Protocol { .. }));
}

#[tokio::test]
async fn a_slow_upstream_is_cut_off_at_the_deadline_and_called_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let (broker, _) = clients(&server, |_| {});
    let started = Instant::now();
    let error =
        broker.create_account(&full_account(), Deadline::after(Duration::from_millis(200))).await.expect_err("timeout");
    let elapsed = started.elapsed();
    assert_eq!(error.fault, UpstreamFault::Timeout);
    assert!(error.may_have_been_processed(), "a create that timed out may exist");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

#[tokio::test]
async fn a_refused_connection_is_known_not_to_have_reached_the_vendor() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let settings = tenant("default", &closed);
    let http = HttpClient::new(&http_settings(Duration::from_secs(5))).expect("client");
    let broker =
        BrokerApi::new(http, &settings, GateContext::unlimited(std::sync::Arc::new(mtr_sso::metrics::Metrics::new())))
            .expect("broker api");
    let error = broker.create_account(&full_account(), soon()).await.expect_err("refused");
    assert_eq!(error.fault, UpstreamFault::ConnectFailed);
    assert!(!error.may_have_been_processed());
}

/// A raw HTTP/1.1 server that answers every connection's first request with
/// `answer`, then closes the connection.
async fn raw_server(answer: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(answer).await;
            let _ = socket.shutdown().await;
        }
    });
    base
}

fn broker_at(base: &str) -> BrokerApi {
    let http = HttpClient::new(&http_settings(Duration::from_secs(5))).expect("client");
    let gates = GateContext::unlimited(std::sync::Arc::new(mtr_sso::metrics::Metrics::new()));
    BrokerApi::new(http, &tenant("default", base), gates).expect("broker api")
}

#[tokio::test]
async fn an_answer_in_several_chunks_is_read_whole() {
    let base = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
          4\r\n{\"to\r\n8\r\nken\":\"in\r\n9\r\n-pieces\"}\r\n0\r\n\r\n",
    )
    .await;
    let issued = broker_at(&base).issue_one_time_token("a@b.co", Duration::from_secs(5), soon()).await.expect("token");
    assert_eq!(issued.token.expose_secret(), "in-pieces");
}

#[tokio::test]
async fn an_answer_cut_short_is_a_lost_connection_that_may_have_been_processed() {
    let base = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"uuid\":\"").await;
    let error = broker_at(&base).create_account(&full_account(), soon()).await.expect_err("cut short");
    assert_eq!((error.fault.clone(), error.status), (UpstreamFault::ConnectionLost, Some(200)));
    assert!(error.may_have_been_processed(), "the vendor answered 200: the account may exist");
}

#[tokio::test]
async fn a_declared_length_over_the_bound_is_refused_before_reading() {
    // The promised body never comes: reading it would end in a lost connection.
    let base = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n{").await;
    let error = broker_at(&base).issue_one_time_token("a@b.co", Duration::from_secs(5), soon()).await.expect_err("big");
    assert_eq!(error.fault, UpstreamFault::Protocol { problem: "the answer is larger than 1 MiB" });
}

#[tokio::test]
async fn an_oversized_chunked_answer_is_cut_off_at_the_bound() {
    // No declared length: the bound is found while reading.
    static ANSWER: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..40 {
            answer.extend_from_slice(format!("8000\r\n{}\r\n", "x".repeat(0x8000)).as_bytes());
        }
        answer.extend_from_slice(b"0\r\n\r\n");
        answer
    });
    let base = raw_server(ANSWER.as_slice()).await;
    let error = broker_at(&base).issue_one_time_token("a@b.co", Duration::from_secs(5), soon()).await.expect_err("big");
    assert_eq!(error.fault, UpstreamFault::Protocol { problem: "the answer is larger than 1 MiB" });
}
