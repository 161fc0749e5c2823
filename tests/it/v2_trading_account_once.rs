//! A v2 trading account is opened at most once. When the sandbox opens it
//! and then withholds the answer, CreateAccount lists the user's trading
//! accounts and answers with the one proven this request's (same group,
//! created after the send, on the vendor's clock); an older one in the same
//! group is never taken, and nothing is opened a second time. A call
//! cancelled while the answer is withheld leaves nothing running behind it.

use crate::common;
use common::{new_account, spawn_gateway};
use mtr_sso::{
    proto::CreateAccountRequest,
    sandbox::{DEMO_GROUP, FaultKind, Sandbox, SandboxOptions, Switches},
    tenant::Generation,
};
use std::time::{Duration, Instant};

const V2_PASSWORD: &str = "Sandbox-pass1";

async fn v2_tenant() -> (Sandbox, common::Gateway) {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let tenant = sandbox.tenant_settings_for("v2", Generation::V2);
    let gateway = spawn_gateway(vec![tenant], Duration::from_secs(3)).await;
    (sandbox, gateway)
}

fn v2_request(email: &str) -> CreateAccountRequest {
    CreateAccountRequest { tenant: "v2".into(), password: V2_PASSWORD.into(), ..new_account(email) }
}

/// The trading-account open, and only it, gets `fault`.
fn withhold_trading_account(sandbox: &Sandbox, fault: FaultKind) {
    sandbox.set_switches(Switches { fault, fault_path_contains: "/trading-accounts".into(), ..Switches::default() });
}

fn count(sandbox: &Sandbox, endpoint: &str) -> u64 {
    sandbox.stats().get(endpoint).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_withheld_trading_account_answer_is_settled_by_the_list_with_one_creation() {
    let (sandbox, mut gateway) = v2_tenant().await;
    withhold_trading_account(&sandbox, FaultKind::HangAfterProcessing);
    let response = gateway.client.create_account(v2_request("withheld@example.com")).await.expect("OK").into_inner();
    assert!(response.trading_account_error.is_none(), "{:?}", response.trading_account_error);
    let opened = response.trading_account.expect("the trading account the list proved");
    assert_eq!(opened.group, DEMO_GROUP);
    assert!(!opened.login.is_empty() && !opened.uuid.is_empty(), "{opened:?}");
    assert!(response.login_link.is_some(), "the token ran beside it");
    assert_eq!(count(&sandbox, "open_trading_account"), 1, "the sandbox saw exactly one trading-account creation");
    assert_eq!(count(&sandbox, "trading_accounts_of_user"), 1, "settled by one list");
    assert_eq!(sandbox.trading_account_count(), 1);
}

#[tokio::test]
async fn an_older_trading_account_in_the_same_group_is_not_taken() {
    let (sandbox, mut gateway) = v2_tenant().await;
    // The open opens nothing and its answer never comes; meanwhile the user
    // account gets a trading account in the same group, dated 10 s back.
    withhold_trading_account(&sandbox, FaultKind::HangAfterRefusing);
    let email = "older@example.com";
    let call = tokio::spawn(async move { gateway.client.create_account(v2_request(email)).await });
    let started = Instant::now();
    let backdated = time::OffsetDateTime::now_utc() - Duration::from_secs(10);
    while !sandbox.seed_trading_account(email, DEMO_GROUP, backdated) {
        assert!(started.elapsed() < Duration::from_secs(2), "the user account was never created");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let response = call.await.expect("joined").expect("OK: the user account exists").into_inner();
    assert!(response.trading_account.is_none(), "the older account is not this request's: {response:?}");
    let error = response.trading_account_error.expect("reported");
    assert_eq!(error.reason, "TRADING_ACCOUNT_OUTCOME_UNKNOWN");
    assert!(error.message.contains("none was opened again"), "{}", error.message);
    assert_eq!(count(&sandbox, "open_trading_account"), 1, "never a second open");
    assert_eq!(count(&sandbox, "trading_accounts_of_user"), 1);
    assert_eq!(sandbox.trading_account_count(), 1, "only the seeded one exists");
    assert!(response.login_link.is_some(), "the user can still sign in");
}

#[tokio::test]
async fn a_trading_account_of_another_group_created_after_the_send_is_not_taken() {
    let (sandbox, mut gateway) = v2_tenant().await;
    withhold_trading_account(&sandbox, FaultKind::HangAfterRefusing);
    let email = "othergroup@example.com";
    let call = tokio::spawn(async move { gateway.client.create_account(v2_request(email)).await });
    let started = Instant::now();
    // Dated a minute ahead: only its group tells it apart.
    let later = time::OffsetDateTime::now_utc() + Duration::from_secs(60);
    while !sandbox.seed_trading_account(email, "another-group", later) {
        assert!(started.elapsed() < Duration::from_secs(2), "the user account was never created");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let response = call.await.expect("joined").expect("OK").into_inner();
    assert!(response.trading_account.is_none(), "{response:?}");
    assert_eq!(response.trading_account_error.expect("reported").reason, "TRADING_ACCOUNT_OUTCOME_UNKNOWN");
    assert_eq!(count(&sandbox, "open_trading_account"), 1);
}

#[tokio::test]
async fn a_call_cancelled_while_the_answer_is_withheld_leaves_nothing_behind() {
    let (sandbox, gateway) = v2_tenant().await;
    withhold_trading_account(&sandbox, FaultKind::HangAfterProcessing);
    let mut client = gateway.client.clone();
    let call = tokio::spawn(async move { client.create_account(v2_request("cancelled@example.com")).await });
    let started = Instant::now();
    while count(&sandbox, "open_trading_account") == 0 {
        assert!(started.elapsed() < Duration::from_secs(2), "the open never arrived");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The caller goes away while the open's answer is withheld.
    call.abort();
    let _ = call.await;
    // Longer than the open's share of the deadline: a settlement left
    // running would have listed the trading accounts by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(&sandbox, "open_trading_account"), 1, "never opened again");
    assert_eq!(count(&sandbox, "trading_accounts_of_user"), 0, "nothing went on after the caller left");
    assert_eq!(sandbox.trading_account_count(), 1);
    // And the gateway is free for the next call.
    sandbox.set_switches(Switches::default());
    let mut client = gateway.client.clone();
    let next = client.create_account(v2_request("after@example.com")).await.expect("OK").into_inner();
    assert!(next.trading_account.is_some(), "{next:?}");
}
