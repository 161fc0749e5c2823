//! CreateAccount with an idempotency key: retries return the first outcome,
//! and the vendor sees one creation, even when the caller's deadline passed
//! before the vendor answered.

use crate::common;
use common::{new_account, reason, spawn_gateway_with, tenant, with_deadline};
use std::time::Duration;
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

async fn creates(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path() == "/v1/accounts").count()
}

async fn slow_vendor(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"uuid": "acc-once", "oneTimeToken": "ott-once"}))
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

async fn gateway(server: &MockServer) -> common::Gateway {
    spawn_gateway_with(vec![tenant("default", &server.uri())], Duration::from_secs(5), 0, |settings| {
        settings.idempotency_window = Duration::from_secs(3600)
    })
    .await
}

fn keyed(email: &str, key: &str) -> mtr_sso::proto::CreateAccountRequest {
    mtr_sso::proto::CreateAccountRequest { idempotency_key: key.into(), ..new_account(email) }
}

#[tokio::test]
async fn a_retry_after_a_timeout_that_hit_after_the_vendor_created_the_account_returns_that_account() {
    let server = slow_vendor(Duration::from_millis(600)).await;
    let mut gateway = gateway(&server).await;
    let first =
        gateway.client.create_account(with_deadline(keyed("ada@example.com", "k-1"), Duration::from_millis(300))).await;
    let status = first.expect_err("the caller's deadline passes before the vendor answers");
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Aborted), "{status:?}");

    tokio::time::sleep(Duration::from_millis(600)).await; // the vendor has answered by now
    let retry = gateway
        .client
        .create_account(with_deadline(keyed("ada@example.com", "k-1"), Duration::from_secs(2)))
        .await
        .expect("the retry gets the first outcome")
        .into_inner();
    assert_eq!(retry.account.expect("account").uuid, "acc-once");
    assert_eq!(retry.login_link.expect("link").one_time_token, "ott-once");
    assert_eq!(creates(&server).await, 1, "the vendor saw one creation");
}

#[tokio::test]
async fn a_retry_while_the_first_call_still_runs_waits_for_its_outcome() {
    let server = slow_vendor(Duration::from_millis(500)).await;
    let mut gateway = gateway(&server).await;
    let _ =
        gateway.client.create_account(with_deadline(keyed("ada@example.com", "k-2"), Duration::from_millis(150))).await;
    let retry = gateway
        .client
        .create_account(with_deadline(keyed("ada@example.com", "k-2"), Duration::from_secs(3)))
        .await
        .expect("waits for the running call")
        .into_inner();
    assert_eq!(retry.account.expect("account").uuid, "acc-once");
    assert_eq!(creates(&server).await, 1);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let server = slow_vendor(Duration::ZERO).await;
    let mut gateway = gateway(&server).await;
    gateway.client.create_account(keyed("ada@example.com", "k-3")).await.expect("first");
    let status = gateway.client.create_account(keyed("grace@example.com", "k-3")).await.expect_err("other request");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::FailedPrecondition, "IDEMPOTENCY_KEY_REUSED"));
    assert_eq!(creates(&server).await, 1);
}

#[tokio::test]
async fn a_recorded_refusal_is_replayed_and_without_a_key_a_duplicate_email_is_already_exists() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(409).set_body_json(serde_json::json!({"status": 409, "title": "Conflict"})))
        .mount(&server)
        .await;
    let mut gateway = gateway(&server).await;
    for _ in 0..2 {
        let status = gateway.client.create_account(keyed("taken@example.com", "k-4")).await.expect_err("exists");
        assert_eq!((status.code(), reason(&status).as_str()), (Code::AlreadyExists, "ACCOUNT_ALREADY_EXISTS"));
    }
    assert_eq!(creates(&server).await, 1, "the refusal was replayed, not asked again");
    let status = gateway.client.create_account(new_account("taken@example.com")).await.expect_err("exists");
    assert_eq!(reason(&status), "ACCOUNT_ALREADY_EXISTS");
    assert_eq!(creates(&server).await, 2, "without a key, every call goes to the vendor");
}
