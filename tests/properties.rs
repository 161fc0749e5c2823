//! Property tests: random requests, sent through the gateway to a mock vendor
//! that accepts everything. A request reaches the vendor only if it is valid
//! by a simpler, independent oracle, and a request refused as INVALID_ARGUMENT
//! never reaches it. No other outcome is allowed.

mod common;

use common::{spawn_gateway, tenant};
use mtr_sso::proto::{
    CreateAccountRequest, IssueOneTimeTokenRequest, LoginRequest, PersonalDetails, RefreshRequest,
    sso_service_client::SsoServiceClient,
};
use proptest::prelude::*;
use std::{sync::OnceLock, time::Duration};
use tonic::{Code, transport::Channel};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

struct World {
    runtime: tokio::runtime::Runtime,
    server: MockServer,
    gateway: common::Gateway,
}

/// One runtime, vendor and gateway per property (they may run in parallel,
/// and each counts the requests its own vendor received).
fn world(property: usize) -> &'static World {
    static WORLDS: [OnceLock<World>; 2] = [OnceLock::new(), OnceLock::new()];
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
            let gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
            (server, gateway)
        });
        World { runtime, server, gateway }
    })
}

/// Sends one request; returns whether it reached the vendor and its code.
fn send<F, Fut>(property: usize, call: F) -> (bool, Code)
where
    F: FnOnce(SsoServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let world = world(property);
    world.runtime.block_on(async {
        let before = world.server.received_requests().await.unwrap_or_default().len();
        let code = match call(world.gateway.client.clone()).await {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        };
        let after = world.server.received_requests().await.unwrap_or_default().len();
        (after > before, code)
    })
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
    !name.trim().is_empty() && name.len() <= 256 && !name.chars().any(char::is_control)
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
        let (reached, code) = send(0, |mut client| async move { client.create_account(request).await.map(|_| ()) });
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
        let (reached, code) = send(1, |mut client| async move { client.login(login).await.map(|_| ()) });
        prop_assert_eq!(reached, code == Code::Ok);
        if reached {
            prop_assert!(oracle_email(&email) && !password.is_empty());
        }

        let ott = IssueOneTimeTokenRequest {
            email: email.clone(),
            validity: validity.map(|seconds| prost_types::Duration { seconds, nanos }),
            ..Default::default()
        };
        let (reached, code) = send(1, |mut client| async move { client.issue_one_time_token(ott).await.map(|_| ()) });
        prop_assert_eq!(reached, code == Code::Ok);
        if reached {
            prop_assert!(oracle_email(&email));
            prop_assert!(validity.is_none_or(|s| (1..=3600).contains(&s) && nanos == 0), "{validity:?} {nanos}");
        }

        let refresh = RefreshRequest { refresh_token: refresh_token.clone(), ..Default::default() };
        let (reached, code) = send(1, |mut client| async move { client.refresh(refresh).await.map(|_| ()) });
        prop_assert!(matches!(code, Code::Ok | Code::InvalidArgument), "{code:?}");
        prop_assert_eq!(reached, code == Code::Ok);
        if reached {
            prop_assert!(!refresh_token.is_empty());
            prop_assert!(refresh_token.bytes().all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b)));
        }
    }
}
