//! CreateAccount when the vendor's answer to the create is lost: the sandbox
//! creates the account and withholds the answer, and the gateway, which never
//! creates twice, resolves the outcome by looking the email up within the
//! caller's deadline, on Broker-API v1 and v2, through the generated client.

use crate::common;
use common::{CapturedLogs, error_metadata, new_account, reason, spawn_gateway, with_deadline};
use mtr_sso::{
    json_log::JsonLines,
    proto::CreateAccountRequest,
    sandbox::{FaultKind, Sandbox, SandboxOptions, Switches},
    tenant::{Generation, TenantSettings},
};
use std::time::{Duration, Instant};
use tonic::Code;

/// The caller's deadline: the create gets two thirds, the lookup the rest.
const DEADLINE: Duration = Duration::from_millis(1500);

/// A sandbox whose creates (v1 and v2) withhold their answer once the
/// account exists, and a gateway over its `default` (v1) and `v2` tenants,
/// adjusted by `adjust`.
async fn creates_answer_lost(adjust: impl FnOnce(&mut [TenantSettings])) -> (Sandbox, common::Gateway) {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let mut tenants = vec![sandbox.tenant_settings("default"), sandbox.tenant_settings_for("v2", Generation::V2)];
    adjust(&mut tenants);
    let gateway = spawn_gateway(tenants, Duration::from_secs(5)).await;
    // Every request is marked, but only the creates act on it: lookups and the rest still answer.
    sandbox.set_switches(Switches { fault: FaultKind::HangAfterProcessing, ..Switches::default() });
    (sandbox, gateway)
}

fn count(sandbox: &Sandbox, endpoint: &str) -> u64 {
    sandbox.stats().get(endpoint).copied().unwrap_or(0)
}

fn on_v2(email: &str) -> CreateAccountRequest {
    CreateAccountRequest { tenant: "v2".into(), password: "Sandbox-pass1".into(), ..new_account(email) }
}

#[tokio::test]
async fn a_v1_create_whose_answer_is_lost_is_resolved_by_the_lookup_within_the_deadline_and_logged_so() {
    let captured = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().event_format(JsonLines).with_writer(captured.clone()).finish();
    // Global, as a thread's own subscriber can miss events whose callsites another
    // test's thread saw first; the tenant's name tells this test's line apart.
    tracing::subscriber::set_global_default(subscriber).expect("the only test here that sets it");
    let (sandbox, mut gateway) = creates_answer_lost(|tenants| tenants[0].name = "logged".into()).await;
    let started = Instant::now();
    let request = CreateAccountRequest { tenant: "logged".into(), ..new_account("lost.answer@example.com") };
    let response = gateway
        .client
        .create_account(with_deadline(request, DEADLINE))
        .await
        .expect("resolved by the lookup")
        .into_inner();
    let took = started.elapsed();
    assert!(took < DEADLINE, "answered within the caller's deadline, in {took:?}");
    assert!(response.resolved_by_lookup, "marked as resolved by lookup");
    let account = response.account.expect("the account");
    assert_eq!(account.email, "lost.answer@example.com");
    assert!(!account.uuid.is_empty(), "the vendor's account, with its uuid");
    assert!(response.login_link.is_some(), "signed in as after any create: {:?}", response.sign_in_error);
    assert_eq!(count(&sandbox, "create_account"), 1, "the vendor saw exactly one creation");
    assert_eq!(count(&sandbox, "account_by_email"), 1, "one lookup");
    assert_eq!(sandbox.account_count(), 2, "the demo user and the new one");
    eprintln!(
        "figure: v1, answer withheld after creating: OK through the lookup in {took:?} of {DEADLINE:?}; 1 creation, 1 lookup"
    );

    let logs = captured.text();
    let line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "rpc finished" && line["tenant"] == "logged")
        .expect("the RPC's log line");
    assert_eq!(line["resolved_by_lookup"], true, "{line}");
    assert_eq!(line["code"], "OK");
}

#[tokio::test]
async fn a_v2_create_whose_answer_is_lost_is_resolved_by_the_lookup_and_the_sequence_goes_on() {
    let (sandbox, mut gateway) = creates_answer_lost(|_| {}).await;
    let started = Instant::now();
    let response = gateway
        .client
        .create_account(with_deadline(on_v2("lost.v2@example.com"), DEADLINE))
        .await
        .expect("resolved by the lookup")
        .into_inner();
    let took = started.elapsed();
    assert!(took < DEADLINE, "answered within the caller's deadline, in {took:?}");
    assert!(response.resolved_by_lookup);
    assert_eq!(response.account.as_ref().expect("the user account").email, "lost.v2@example.com");
    assert!(response.trading_account.is_some(), "the trading account is opened as usual: {response:?}");
    assert!(response.login_link.is_some(), "and the user signed in: {:?}", response.sign_in_error);
    assert_eq!(count(&sandbox, "create_user_account"), 1, "the vendor saw exactly one creation");
    assert_eq!(count(&sandbox, "user_account_by_email"), 1, "one lookup");
    assert_eq!(count(&sandbox, "open_trading_account"), 1);
    eprintln!(
        "figure: v2, answer withheld after creating: OK through the lookup in {took:?} of {DEADLINE:?}; 1 creation, 1 lookup, 1 trading account"
    );
}

#[tokio::test]
async fn a_lost_create_whose_lookup_fails_stays_unknown_with_the_lookup_in_the_metadata() {
    // A lookup path the vendor does not serve: it answers 404 without a problem body.
    let (sandbox, mut gateway) =
        creates_answer_lost(|tenants| tenants[0].paths.account_by_email = "/v1/moved/{email}".into()).await;
    let started = Instant::now();
    let status = gateway
        .client
        .create_account(with_deadline(new_account("lookup.fails@example.com"), DEADLINE))
        .await
        .expect_err("the outcome stays unknown");
    let took = started.elapsed();
    assert!(took < DEADLINE, "answered within the caller's deadline, in {took:?}");
    assert_eq!(status.code(), Code::DeadlineExceeded, "the create's own failure: {status:?}");
    assert_eq!(reason(&status), "ACCOUNT_CREATION_OUTCOME_UNKNOWN");
    assert_eq!(error_metadata(&status, "lookup").as_deref(), Some("failed"));
    assert_eq!(error_metadata(&status, "endpoint").as_deref(), Some("create_account"));
    assert_eq!(count(&sandbox, "create_account"), 1, "never created again");
    assert_eq!(sandbox.account_count(), 2, "the account the vendor did create is there, once");
    eprintln!("figure: lookup failing: ACCOUNT_CREATION_OUTCOME_UNKNOWN with lookup=failed in {took:?}; 1 creation");
}

#[tokio::test]
async fn a_lost_create_that_used_the_whole_deadline_leaves_no_time_for_the_lookup() {
    let (sandbox, mut gateway) = creates_answer_lost(|_| {}).await;
    // Below the create's minimum, the create has all of it.
    let request = with_deadline(on_v2("no.time@example.com"), Duration::from_millis(400));
    let status = gateway.client.create_account(request).await.expect_err("no time to look up");
    assert_eq!(reason(&status), "ACCOUNT_CREATION_OUTCOME_UNKNOWN");
    assert_eq!(error_metadata(&status, "lookup").as_deref(), Some("no_time"));
    assert_eq!(count(&sandbox, "create_user_account"), 1);
    assert_eq!(count(&sandbox, "user_account_by_email"), 0, "no lookup was sent");
}

#[tokio::test]
async fn a_resolved_outcome_is_remembered_for_its_idempotency_key() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    // The run behind a key is bounded by the configured cap, not the caller's deadline.
    let mut gateway = spawn_gateway(vec![sandbox.tenant_settings("default")], DEADLINE).await;
    sandbox.set_switches(Switches { fault: FaultKind::HangAfterProcessing, ..Switches::default() });
    let request = CreateAccountRequest { idempotency_key: "signup-77".into(), ..new_account("keyed@example.com") };
    let first = gateway.client.create_account(request.clone()).await.expect("resolved").into_inner();
    assert!(first.resolved_by_lookup);
    let again = gateway.client.create_account(request).await.expect("replayed").into_inner();
    assert_eq!(again, first, "the same answer, account and link");
    assert_eq!(count(&sandbox, "create_account"), 1);
    assert_eq!(count(&sandbox, "account_by_email"), 1, "the replay asked the vendor nothing");
}

#[tokio::test]
async fn a_create_answered_with_a_5xx_and_not_found_by_the_lookup_stays_unknown_with_not_found() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};
    let vendor = MockServer::start().await;
    Mock::given(path("/v1/accounts")).respond_with(ResponseTemplate::new(502)).expect(1).mount(&vendor).await;
    Mock::given(path("/v1/accounts/by-email/gone@example.com"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(serde_json::json!({"status": 404, "title": "Not Found", "detail": "Account not found"})),
        )
        .expect(1)
        .mount(&vendor)
        .await;
    let mut gateway = spawn_gateway(vec![common::tenant("default", &vendor.uri())], Duration::from_secs(5)).await;
    let status = gateway.client.create_account(new_account("gone@example.com")).await.expect_err("still unknown");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "ACCOUNT_CREATION_OUTCOME_UNKNOWN");
    assert_eq!(error_metadata(&status, "lookup").as_deref(), Some("not_found"));
    assert_eq!(error_metadata(&status, "upstreamStatus").as_deref(), Some("502"), "the create's status");
}
