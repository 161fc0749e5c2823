//! Broker-API v2 trading accounts, as the sandbox stores them: what a
//! tenant's `v2_account_details` puts into `accountDetails` (`names`: the
//! names only; `full`: also date of birth, phone and address, v1's
//! `postCode` as `zipCode`), and a trading account the vendor reports
//! `missingInTradingSystem`, which is a `trading_account_error` of its own;
//! and the v2 client's list of a user's trading accounts.
// Drives the built-in sandbox, which a build without the `sandbox` feature leaves out.
#![cfg(feature = "sandbox")]

mod common;

use common::{new_account, spawn_gateway};
use mtr_sso::{
    proto::{self, CreateAccountRequest},
    sandbox::{FaultKind, SANDBOX_V2_API_KEY, Sandbox, SandboxOptions, Switches},
    tenant::{Generation, V2AccountDetails},
};
use serde_json::{Value, json};
use std::time::Duration;

const V2_PASSWORD: &str = "Sandbox-pass1";

/// A sandbox and a gateway over its v2 tenant, sending `details`.
async fn v2_tenant(details: V2AccountDetails) -> (Sandbox, common::Gateway) {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let mut tenant = sandbox.tenant_settings_for("v2", Generation::V2);
    tenant.v2_account_details = details;
    let gateway = spawn_gateway(vec![tenant], Duration::from_secs(5)).await;
    (sandbox, gateway)
}

/// A request with every profile field `full` maps, and some it does not.
fn full_profile(email: &str) -> CreateAccountRequest {
    let base = new_account(email);
    CreateAccountRequest {
        tenant: "v2".into(),
        password: V2_PASSWORD.into(),
        personal_details: Some(proto::PersonalDetails {
            date_of_birth: "1990-12-10".into(),
            citizenship: "PL".into(),
            ..base.personal_details.clone().expect("names")
        }),
        contact_details: Some(proto::ContactDetails {
            phone_number: "+48 123 456 789".into(),
            fax_number: "+48 1".into(),
            ..Default::default()
        }),
        address_details: Some(proto::AddressDetails {
            country: "PL".into(),
            state: "Mazowieckie".into(),
            city: "Warsaw".into(),
            post_code: "00-001".into(),
            address: "1 Main Street".into(),
        }),
        ..base
    }
}

/// The trading accounts the sandbox stored for `user_uuid`, read as the vendor serves them.
async fn stored_trading_accounts(sandbox: &Sandbox, user_uuid: &str) -> Vec<Value> {
    let url =
        sandbox.base_url().join(&format!("broker-api-v2/v1/user-accounts/{user_uuid}/trading-accounts")).expect("url");
    mtr_sso::upstream::install_crypto_provider();
    let answer = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Bearer {SANDBOX_V2_API_KEY}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), 200);
    match answer.json().await.expect("json") {
        Value::Array(accounts) => accounts,
        other => panic!("not a list: {other}"),
    }
}

#[tokio::test]
async fn full_details_reach_the_sandbox_mapped_and_are_stored() {
    let (sandbox, mut gateway) = v2_tenant(V2AccountDetails::Full).await;
    let response = gateway.client.create_account(full_profile("full@example.com")).await.expect("created");
    let response = response.into_inner();
    assert!(response.trading_account_error.is_none(), "{response:?}");
    let uuid = response.account.expect("account").uuid;
    let stored = stored_trading_accounts(&sandbox, &uuid).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["accountDetails"],
        json!({
            "firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1990-12-10",
            "phoneNumber": "+48 123 456 789",
            "addressDetails": {"address": "1 Main Street", "country": "PL", "state": "Mazowieckie",
                               "city": "Warsaw", "zipCode": "00-001"}
        })
    );
    assert_eq!(stored[0]["missingInTradingSystem"], json!(false));
}

#[tokio::test]
async fn names_details_send_only_the_names() {
    let (sandbox, mut gateway) = v2_tenant(V2AccountDetails::Names).await;
    let response = gateway.client.create_account(full_profile("names@example.com")).await.expect("created");
    let uuid = response.into_inner().account.expect("account").uuid;
    let stored = stored_trading_accounts(&sandbox, &uuid).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["accountDetails"], json!({"firstName": "Ada", "lastName": "Lovelace"}));
}

#[tokio::test]
async fn full_details_leave_out_what_the_request_does_not_have() {
    let (sandbox, mut gateway) = v2_tenant(V2AccountDetails::Full).await;
    let request = CreateAccountRequest {
        tenant: "v2".into(),
        password: V2_PASSWORD.into(),
        address_details: Some(proto::AddressDetails { city: "Warsaw".into(), ..Default::default() }),
        ..new_account("partial@example.com")
    };
    let response = gateway.client.create_account(request).await.expect("created").into_inner();
    let stored = stored_trading_accounts(&sandbox, &response.account.expect("account").uuid).await;
    assert_eq!(
        stored[0]["accountDetails"],
        json!({"firstName": "Ada", "lastName": "Lovelace", "addressDetails": {"city": "Warsaw"}}),
        "no nulls, no empty strings"
    );
}

#[tokio::test]
async fn a_trading_account_missing_in_the_trading_system_is_its_own_trading_account_error() {
    let (sandbox, mut gateway) = v2_tenant(V2AccountDetails::Names).await;
    sandbox.set_switches(Switches {
        fault: FaultKind::MissingInTradingSystem,
        fault_path_contains: "/trading-accounts".into(),
        ..Switches::default()
    });
    let request =
        CreateAccountRequest { tenant: "v2".into(), password: V2_PASSWORD.into(), ..new_account("paper@example.com") };
    let response = gateway.client.create_account(request).await.expect("OK: the user account exists").into_inner();
    let error = response.trading_account_error.expect("reported");
    assert_eq!(error.reason, "TRADING_ACCOUNT_NOT_IN_TRADING_SYSTEM");
    assert!(error.message.contains("missingInTradingSystem"), "{}", error.message);
    assert!(response.trading_account.is_none(), "a trading account that cannot trade is not handed back as opened");
    assert!(response.login_link.is_some(), "the user can still sign in");
    assert_eq!(sandbox.trading_account_count(), 1, "no second trading account was opened");
}

#[tokio::test]
async fn the_v2_client_lists_a_users_trading_accounts_with_created_and_group() {
    use mtr_sso::upstream::{BrokerApi, GateContext, HttpClient, UpstreamFault};
    let (sandbox, mut gateway) = v2_tenant(V2AccountDetails::Names).await;
    let request =
        CreateAccountRequest { tenant: "v2".into(), password: V2_PASSWORD.into(), ..new_account("listed@example.com") };
    let sent_at = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
    let response = gateway.client.create_account(request).await.expect("created").into_inner();
    let opened = response.trading_account.expect("opened");
    let settings = sandbox.tenant_settings_for("v2", Generation::V2);
    let http = HttpClient::new(&common::http_settings(Duration::from_secs(5))).expect("client");
    let broker =
        BrokerApi::new(http, &settings, GateContext::unlimited(std::sync::Arc::new(mtr_sso::metrics::Metrics::new())))
            .expect("broker api");
    let deadline = || mtr_sso::deadline::Deadline::after(Duration::from_secs(5));
    let listed = broker.trading_accounts(&response.account.expect("account").uuid, deadline()).await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].uuid.as_deref(), listed[0].login.as_deref()),
        (Some(opened.uuid.as_str()), Some(opened.login.as_str()))
    );
    assert_eq!(listed[0].group.as_deref(), Some(mtr_sso::sandbox::DEMO_GROUP));
    assert!(listed[0].created.is_some_and(|created| created >= sent_at), "{:?}", listed[0].created);
    assert_eq!(listed[0].missing_in_trading_system, Some(false));
    let unknown =
        broker.trading_accounts("00000000-0000-4000-8000-00000000dead", deadline()).await.expect_err("unknown");
    assert_eq!(unknown.fault, UpstreamFault::AccountNotFound);
}
