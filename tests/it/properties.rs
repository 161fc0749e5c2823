//! Property tests: random requests, sent through the gateway to a mock vendor
//! that accepts everything. A request reaches the vendor only if it is valid
//! by a simpler, independent oracle, and a request refused as INVALID_ARGUMENT
//! never reaches it. No other outcome is allowed. Conversely, requests built
//! to be valid are all accepted, and each reaches the vendor as exactly one
//! call that carries the values it was given.

use crate::common;
use common::{settings, spawn_app, tenant};
use mtr_sso::proto::{
    CreateAccountRequest, IssueOneTimeTokenRequest, LoginRequest, PersonalDetails, RefreshRequest,
    sso_service_client::SsoServiceClient,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::{sync::OnceLock, time::Duration};
use tonic::{Code, Response, Status, transport::Channel};
use wiremock::{Mock, MockServer, Request, ResponseTemplate, matchers::path};

struct World {
    runtime: tokio::runtime::Runtime,
    server: MockServer,
    gateway: common::Gateway,
}

/// One runtime, vendor and gateway per property (they may run in parallel,
/// and each counts the requests its own vendor received).
fn world(property: usize) -> &'static World {
    static WORLDS: [OnceLock<World>; 5] = [const { OnceLock::new() }; 5];
    WORLDS[property].get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (server, gateway) = runtime.block_on(async {
            let server = MockServer::start().await;
            let ok = |body: serde_json::Value| {
                ResponseTemplate::new(200)
                    .set_body_json(body)
                    .append_header("set-cookie", "co-auth=s; Path=/; Max-Age=900")
            };
            Mock::given(path("/v1/accounts"))
                .respond_with(ok(serde_json::json!({"uuid": "u", "oneTimeToken": "t"})))
                .mount(&server)
                .await;
            Mock::given(path("/v1/one-time-token"))
                .respond_with(ok(serde_json::json!({"token": "t"})))
                .mount(&server)
                .await;
            Mock::given(path("/manager/mtr-login"))
                .respond_with(ok(serde_json::json!({"token": "s"})))
                .mount(&server)
                .await;
            Mock::given(path("/manager/refresh-token")).respond_with(ok(serde_json::json!({}))).mount(&server).await;
            // No refresh reuse window: proptest repeats a case while it
            // shrinks, and a repeated Refresh answered from the window would
            // be OK without reaching the vendor.
            let mut settings = settings(vec![tenant("default", &server.uri())], Duration::from_secs(5));
            settings.refresh_reuse_window = Duration::ZERO;
            let gateway = spawn_app(settings).await;
            (server, gateway)
        });
        World { runtime, server, gateway }
    })
}

/// Sends one request; returns what the vendor received meanwhile and the answer.
fn send_and_watch<T, F, Fut>(property: usize, call: F) -> (Vec<Request>, Result<T, Status>)
where
    F: FnOnce(SsoServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let world = world(property);
    world.runtime.block_on(async {
        let before = world.server.received_requests().await.unwrap_or_default().len();
        let result = call(world.gateway.client.clone()).await.map(Response::into_inner);
        let mut received = world.server.received_requests().await.unwrap_or_default();
        (received.split_off(before), result)
    })
}

/// Sends one request; returns whether it reached the vendor and its code.
fn send<T, F, Fut>(property: usize, call: F) -> (bool, Code)
where
    F: FnOnce(SsoServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let (received, result) = send_and_watch(property, call);
    (!received.is_empty(), result.err().map_or(Code::Ok, |status| status.code()))
}

/// The one vendor call an accepted RPC made: its path and JSON body.
fn only_call(received: &[Request]) -> Result<(String, Value), TestCaseError> {
    prop_assert_eq!(received.len(), 1, "vendor calls: {:?}", received.iter().map(|r| r.url.path()).collect::<Vec<_>>());
    let body = serde_json::from_slice(&received[0].body).map_err(|e| TestCaseError::fail(format!("body: {e}")))?;
    Ok((received[0].url.path().to_string(), body))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just(" ".to_string()), "[a-zA-Z]{1,12}", ".{0,16}", "\\PC{0,300}"]
}

fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,4}",
        "[a-z]{1,10}@[a-z]{1,10}",
        "[a-z ]{1,10}@[a-z]{1,10}\\.[a-z]{2,4}",
        ".{0,20}",
        Just(String::new()),
    ]
}

/// The oracle's idea of an email: simpler than the gateway's, but necessary.
fn oracle_email(email: &str) -> bool {
    let parts: Vec<&str> = email.split('@').collect();
    parts.len() == 2 && !parts[0].is_empty() && parts[1].contains('.') && !email.chars().any(char::is_whitespace)
}

fn oracle_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= 256 && !name.chars().any(char::is_control)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn create_account_reaches_the_vendor_only_when_valid(
        email in email(),
        password in prop_oneof![Just(String::new()), ".{1,20}"],
        firstname in text(),
        lastname in text(),
        with_details in any::<bool>(),
        client_type in -2i32..6,
        offer in prop_oneof![Just(String::new()), Just("8d3e5f4a-1b2c-4d5e-8f90-123456789abc".to_string()), "[0-9a-f-]{1,20}"],
        date_of_birth in prop_oneof![Just(String::new()), Just("1990-01-31".to_string()), "[0-9]{4}-[0-9]{2}-[0-9]{2}", ".{1,12}"],
    ) {
        let request = CreateAccountRequest {
            email: email.clone(),
            password: password.clone(),
            client_type,
            offer_uuid: offer.clone(),
            personal_details: with_details.then(|| PersonalDetails {
                firstname: firstname.clone(),
                lastname: lastname.clone(),
                date_of_birth: date_of_birth.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (reached, code) = send(0, |mut client| async move { client.create_account(request).await });
        prop_assert!(matches!(code, Code::Ok | Code::InvalidArgument), "{code:?}");
        prop_assert_eq!(reached, code == Code::Ok, "reached the vendor: {}, code: {:?}", reached, code);
        if reached {
            prop_assert!(oracle_email(&email), "invalid email reached the vendor: {email:?}");
            prop_assert!(!password.is_empty());
            prop_assert!(with_details && oracle_name(&firstname) && oracle_name(&lastname));
            prop_assert!((0..=3).contains(&client_type));
            prop_assert!(offer.is_empty() || uuid::Uuid::parse_str(&offer).is_ok());
            prop_assert!(date_of_birth.is_empty() || date_of_birth.len() == 10);
        }
    }

    #[test]
    fn sign_in_requests_reach_the_vendor_only_when_valid(
        email in email(),
        password in prop_oneof![Just(String::new()), ".{1,20}"],
        validity in prop_oneof![Just(None), (-5i64..7300).prop_map(Some)],
        nanos in prop_oneof![Just(0i32), 1i32..1_000_000_000],
        refresh_token in prop_oneof![Just(String::new()), "[a-f0-9]{8,40}", ".{1,20}"],
    ) {
        let login = LoginRequest { email: email.clone(), password: password.clone(), ..Default::default() };
        let (reached, code) = send(1, |mut client| async move { client.login(login).await });
        prop_assert_eq!(reached, code == Code::Ok);
        if reached {
            prop_assert!(oracle_email(&email) && !password.is_empty());
        }

        let ott = IssueOneTimeTokenRequest {
            email: email.clone(),
            validity: validity.map(|seconds| prost_types::Duration { seconds, nanos }),
            ..Default::default()
        };
        let (reached, code) = send(1, |mut client| async move { client.issue_one_time_token(ott).await });
        prop_assert_eq!(reached, code == Code::Ok);
        if reached {
            prop_assert!(oracle_email(&email));
            prop_assert!(validity.is_none_or(|s| (1..=3600).contains(&s) && nanos == 0), "{validity:?} {nanos}");
        }

        let refresh = RefreshRequest { refresh_token: refresh_token.clone(), ..Default::default() };
        let (reached, code) = send(1, |mut client| async move { client.refresh(refresh).await });
        prop_assert!(matches!(code, Code::Ok | Code::InvalidArgument), "{code:?}");
        prop_assert_eq!(reached, code == Code::Ok);
        if reached {
            prop_assert!(!refresh_token.is_empty());
            prop_assert!(refresh_token.bytes().all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b)));
        }
    }
}

/// Emails the gateway must accept: a dot-atom local part, then dotted labels
/// of ASCII letters, digits and inner hyphens (the OpenAPI document's rule).
fn valid_email() -> impl Strategy<Value = String> {
    let label = prop_oneof!["[a-z0-9]{1,10}", "[a-z0-9][a-z0-9-]{0,8}[a-z0-9]", "xn--[a-z0-9]{1,8}"];
    ("[A-Za-z0-9_%+'-]{1,15}(\\.[A-Za-z0-9_%+'-]{1,14})?", proptest::collection::vec(label, 1..3), "[a-z]{2,6}")
        .prop_map(|(local, labels, top)| format!("{local}@{}.{top}", labels.join(".")))
}

/// Names the gateway must accept: not blank, no control character, short.
fn valid_name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z][A-Za-z' -]{0,20}", "\\PC{1,40}"].prop_filter("not blank", |name| !name.trim().is_empty())
}

/// Any non-empty password, control characters and all: it is a secret, not text.
fn valid_password() -> impl Strategy<Value = String> {
    "(?s).{1,64}"
}

/// A past date as YYYY-MM-DD, or empty (omitted).
fn valid_date_of_birth() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (1900..=2020u32, 1..=12u32, 1..=28u32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
    ]
}

const CLIENT_TYPES: [Option<&str>; 4] = [None, Some("RETAIL"), Some("PROFESSIONAL"), Some("EXPERIENCED")];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_valid_create_account_is_accepted_and_sent_once_with_its_values(
        email in valid_email(),
        password in valid_password(),
        firstname in valid_name(),
        lastname in valid_name(),
        date_of_birth in valid_date_of_birth(),
        client_type in 0i32..=3,
        offer in prop_oneof![Just(None), any::<u128>().prop_map(|n| Some(uuid::Uuid::from_u128(n).to_string()))],
    ) {
        let request = CreateAccountRequest {
            email: email.clone(),
            password: password.clone(),
            client_type,
            offer_uuid: offer.clone().unwrap_or_default(),
            personal_details: Some(PersonalDetails {
                firstname: firstname.clone(),
                lastname: lastname.clone(),
                date_of_birth: date_of_birth.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (received, result) = send_and_watch(2, |mut client| async move { client.create_account(request).await });
        let response = result.map_err(|status| TestCaseError::fail(format!("refused: {status:?}")))?;
        prop_assert_eq!(response.account.map(|a| a.email), Some(email.clone()));
        let (path, body) = only_call(&received)?;
        prop_assert_eq!(path, "/v1/accounts");
        prop_assert_eq!(&body["email"], &json!(email));
        prop_assert_eq!(&body["password"], &json!(password));
        prop_assert_eq!(&body["personalDetails"]["firstname"], &json!(firstname));
        prop_assert_eq!(&body["personalDetails"]["lastname"], &json!(lastname));
        let date_sent = (!date_of_birth.is_empty()).then_some(date_of_birth);
        prop_assert_eq!(&body["personalDetails"]["dateOfBirth"], &json!(date_sent));
        prop_assert_eq!(&body["clientType"], &json!(CLIENT_TYPES[client_type as usize]));
        prop_assert_eq!(&body["offerUuid"], &json!(offer));
    }

    #[test]
    fn a_valid_one_time_token_request_is_accepted_and_sent_once_with_its_values(
        email in valid_email(),
        validity in prop_oneof![Just(None), (1i64..=3600).prop_map(Some)],
    ) {
        let request = IssueOneTimeTokenRequest {
            email: email.clone(),
            validity: validity.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            ..Default::default()
        };
        let (received, result) =
            send_and_watch(3, |mut client| async move { client.issue_one_time_token(request).await });
        let response = result.map_err(|status| TestCaseError::fail(format!("refused: {status:?}")))?;
        prop_assert_eq!(response.login_link.map(|link| link.one_time_token), Some("t".to_string()));
        let (path, body) = only_call(&received)?;
        prop_assert_eq!(path, "/v1/one-time-token");
        prop_assert_eq!(&body["email"], &json!(email));
        // Without a validity the tenant's default (60 s in the test tenant) applies.
        prop_assert_eq!(&body["validityTime"], &json!(validity.unwrap_or(60)));
    }

    #[test]
    fn a_valid_login_is_accepted_and_sent_once_with_its_values(
        email in valid_email(),
        password in valid_password(),
        broker_id in prop_oneof![Just(String::new()), "[0-9]{1,6}", valid_name()],
    ) {
        let request = LoginRequest { email: email.clone(), password: password.clone(), broker_id: broker_id.clone(), ..Default::default() };
        let (received, result) = send_and_watch(4, |mut client| async move { client.login(request).await });
        let response = result.map_err(|status| TestCaseError::fail(format!("refused: {status:?}")))?;
        prop_assert!(response.session.is_some());
        let (path, body) = only_call(&received)?;
        prop_assert_eq!(path, "/manager/mtr-login");
        prop_assert_eq!(&body["email"], &json!(email));
        prop_assert_eq!(&body["password"], &json!(password));
        // An empty broker id falls back to the tenant's (7 in the test tenant).
        let broker_sent = if broker_id.is_empty() { "7".to_string() } else { broker_id };
        prop_assert_eq!(&body["brokerId"], &json!(broker_sent));
    }
}
