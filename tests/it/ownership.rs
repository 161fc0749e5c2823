//! A lost create is resolved only with proof that this request created the
//! account: a CreateAccount for a taken email whose refusal never arrives
//! must not sign the caller into the existing account (v1 and v2), while a
//! create whose success answer was lost still resolves to OK. Driven against
//! the sandbox, which withholds the refusal or the answer on request.

use crate::common;
use common::{error_metadata, new_account, reason, spawn_gateway, with_deadline};
use mtr_sso::{
    proto::CreateAccountRequest,
    sandbox::{FaultKind, Sandbox, SandboxOptions, Stats, Switches},
    tenant::Generation,
};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tonic::Code;

/// The service's cap on a call (`--upstream-timeout`): the create gets two
/// thirds, the lookup and the proof the rest. The caller's deadline is
/// longer, so every answer is the service's own, however loaded the machine.
const DEADLINE: Duration = Duration::from_millis(1500);
const CALLER_DEADLINE: Duration = Duration::from_secs(10);
/// Passes v2's password rule too.
const PASSWORD: &str = "Sandbox-pass1";
/// The calls that would sign a user in: none may reach the vendor for an account that was there before.
const SIGN_IN_CALLS: [&str; 3] = ["issue_one_time_token", "login", "login_with_token"];

async fn sandbox_and_gateway() -> (Sandbox, common::Gateway) {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let tenants = vec![
        sandbox.tenant_settings("default"),
        sandbox.tenant_settings_for("v2", Generation::V2),
        sandbox.tenant_settings_for("crm", Generation::Crm),
    ];
    let gateway = spawn_gateway(tenants, DEADLINE).await;
    (sandbox, gateway)
}

fn withhold(sandbox: &Sandbox, fault: FaultKind) {
    sandbox.set_switches(Switches { fault, ..Switches::default() });
}

fn create(tenant: &str, email: &str, start_session: bool) -> tonic::Request<CreateAccountRequest> {
    let request =
        CreateAccountRequest { tenant: tenant.into(), password: PASSWORD.into(), start_session, ..new_account(email) };
    with_deadline(request, CALLER_DEADLINE)
}

fn count(stats: &Stats, endpoint: &str) -> u64 {
    stats.get(endpoint).copied().unwrap_or(0)
}

/// The requests of each endpoint that arrived between two snapshots.
fn arrived(before: &Stats, after: &Stats, endpoint: &str) -> u64 {
    count(after, endpoint) - count(before, endpoint)
}

/// A create for `email` (taken) whose refusal the sandbox withholds: ALREADY_EXISTS,
/// one create and one lookup sent, and nothing that signs in or opens a trading account.
async fn assert_no_takeover(sandbox: &Sandbox, gateway: &mut common::Gateway, tenant: &str, email: &str) {
    withhold(sandbox, FaultKind::HangAfterRefusing);
    for start_session in [false, true] {
        let before = sandbox.stats();
        let started = Instant::now();
        let status = gateway
            .client
            .create_account(create(tenant, &email.to_uppercase(), start_session))
            .await
            .expect_err("no login link, no session for an account that was there before");
        let took = started.elapsed();
        let after = sandbox.stats();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::AlreadyExists, "ACCOUNT_ALREADY_EXISTS"));
        let (create_endpoint, lookup_endpoint) = match tenant {
            "v2" => ("create_user_account", "user_account_by_email"),
            _ => ("create_account", "account_by_email"),
        };
        assert_eq!(arrived(&before, &after, create_endpoint), 1, "the create was sent once");
        assert_eq!(arrived(&before, &after, lookup_endpoint), 1, "and looked up once");
        for endpoint in SIGN_IN_CALLS.iter().chain(&["open_trading_account"]) {
            assert_eq!(arrived(&before, &after, endpoint), 0, "the vendor saw no {endpoint} request");
        }
        eprintln!(
            "figure: {tenant}, taken email, refusal withheld, start_session={start_session}: ACCOUNT_ALREADY_EXISTS in {took:?}; \
             sign-in and trading-account requests: 0"
        );
    }
}

#[tokio::test]
async fn a_v1_create_for_a_taken_email_whose_refusal_is_lost_signs_nobody_in() {
    let (sandbox, mut gateway) = sandbox_and_gateway().await;
    let signed_up = OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(sandbox.seed_account("victim@example.com", "Victims-own-pass1", signed_up));
    assert_no_takeover(&sandbox, &mut gateway, "default", "victim@example.com").await;
    assert_eq!(sandbox.account_count(), 2, "the demo user and the victim, nothing created");
}

#[tokio::test]
async fn a_crm_api_create_for_a_taken_email_whose_refusal_is_lost_signs_nobody_in() {
    let (sandbox, mut gateway) = sandbox_and_gateway().await;
    let signed_up = OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(sandbox.seed_account("victim.crm@example.com", "Victims-own-pass1", signed_up));
    assert_no_takeover(&sandbox, &mut gateway, "crm", "victim.crm@example.com").await;
}

#[tokio::test]
async fn a_v2_create_for_a_taken_email_whose_refusal_is_lost_signs_nobody_in() {
    let (sandbox, mut gateway) = sandbox_and_gateway().await;
    let signed_up = OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(sandbox.seed_account("victim.v2@example.com", "Victims-own-pass1", signed_up));
    assert_no_takeover(&sandbox, &mut gateway, "v2", "victim.v2@example.com").await;
    assert_eq!(sandbox.trading_account_count(), 0, "no trading account was opened");
}

#[tokio::test]
async fn an_account_created_two_seconds_earlier_is_not_taken_for_this_requests_own() {
    let (sandbox, mut gateway) = sandbox_and_gateway().await;
    let first = gateway.client.create_account(create("default", "early@example.com", false)).await;
    assert!(first.expect("the first sign-up").into_inner().login_link.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_no_takeover(&sandbox, &mut gateway, "default", "early@example.com").await;
}

#[tokio::test]
async fn a_genuine_lost_create_with_a_session_is_proven_by_the_password_login_and_answered_ok() {
    let (sandbox, mut gateway) = sandbox_and_gateway().await;
    withhold(&sandbox, FaultKind::HangAfterProcessing);
    for (tenant, email) in
        [("default", "genuine@example.com"), ("v2", "genuine.v2@example.com"), ("crm", "genuine.crm@example.com")]
    {
        let before = sandbox.stats();
        let started = Instant::now();
        let response = gateway
            .client
            .create_account(create(tenant, email, true))
            .await
            .expect("this request created the account")
            .into_inner();
        let took = started.elapsed();
        let after = sandbox.stats();
        assert!(response.resolved_by_lookup);
        assert!(response.session.is_some(), "signed in: {:?}", response.sign_in_error);
        assert_eq!(arrived(&before, &after, "login"), 1, "by a login with the request's own password");
        assert_eq!(arrived(&before, &after, "issue_one_time_token"), 0, "no token was needed");
        assert_eq!(arrived(&before, &after, "login_with_token"), 0);
        if tenant == "v2" {
            assert!(response.trading_account.is_some(), "{response:?}");
        }
        eprintln!("figure: {tenant}, answer withheld after creating, with a session: OK in {took:?}, 1 password login");
    }
}

#[tokio::test]
async fn a_genuine_lost_create_without_a_session_is_proven_by_its_creation_time_and_answered_ok() {
    let (sandbox, mut gateway) = sandbox_and_gateway().await;
    withhold(&sandbox, FaultKind::HangAfterProcessing);
    for (tenant, email) in [("default", "genuine.link@example.com"), ("v2", "genuine.link.v2@example.com")] {
        let response = gateway
            .client
            .create_account(create(tenant, email, false))
            .await
            .expect("this request created the account")
            .into_inner();
        assert!(response.resolved_by_lookup);
        assert!(response.login_link.is_some(), "{:?}", response.sign_in_error);
    }
}

#[tokio::test]
async fn the_sandbox_dates_every_answer_and_its_lookups_say_when_the_account_was_created() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    mtr_sso::upstream::install_crypto_provider();
    let client = reqwest::Client::new();
    let v1 = sandbox.base_url().join("/v1/accounts/by-email/test@match-trade.com").expect("url");
    let v2 = sandbox.base_url().join("/broker-api-v2/v1/user-accounts/email/test@match-trade.com").expect("url");
    let unknown = sandbox.base_url().join("/v1/accounts/by-email/nobody@example.com").expect("url");
    for (url, key) in [(v1, "sandbox-api-key"), (v2, "Bearer sandbox-v2-api-key"), (unknown, "sandbox-api-key")] {
        let answer = client.get(url.clone()).header("authorization", key).send().await.expect("answered");
        let date = answer.headers().get("date").and_then(|d| d.to_str().ok()).map(str::to_string);
        let date = date.unwrap_or_else(|| panic!("{url} answered without a Date header"));
        let parsed = OffsetDateTime::parse(&date, &time::format_description::well_known::Rfc2822).expect("HTTP date");
        assert!((OffsetDateTime::now_utc() - parsed).abs() < time::Duration::seconds(2), "{date}");
        if answer.status().is_success() {
            let body: serde_json::Value = answer.json().await.expect("json");
            let created = body["created"].as_str().expect("created");
            OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
            assert!(created.ends_with('Z'), "UTC: {created}");
        }
    }
}

#[tokio::test]
async fn a_lost_create_with_no_time_left_for_a_proof_stays_unknown() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    // The service's own cap (400 ms, below the create's minimum, so the create takes all of
    // it) runs out well before the caller's deadline: the answer is the service's, not a
    // client-side timeout, however loaded the machine.
    let mut gateway = spawn_gateway(vec![sandbox.tenant_settings("default")], Duration::from_millis(400)).await;
    let signed_up = OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(sandbox.seed_account("short@example.com", PASSWORD, signed_up));
    withhold(&sandbox, FaultKind::HangAfterRefusing);
    let request = with_deadline(
        CreateAccountRequest { password: PASSWORD.into(), ..new_account("short@example.com") },
        Duration::from_secs(5),
    );
    let status = gateway.client.create_account(request).await.expect_err("no time to prove anything");
    assert_eq!(reason(&status), "ACCOUNT_CREATION_OUTCOME_UNKNOWN");
    assert_eq!(error_metadata(&status, "lookup").as_deref(), Some("no_time"));
}
