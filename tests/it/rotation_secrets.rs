//! Caller tokens, the policy and a tenant's vendor API key rotate without a
//! restart: a token added works and one removed is refused UNAUTHENTICATED
//! within a second; the next vendor call after the key file changes carries
//! the new key, a broken key file keeps the old key; and SIGHUP reads every
//! file again in the real binary, which keeps serving.

use crate::{common, rotation};
use common::{reason, tenant};
use mtr_sso::{proto::IssueOneTimeTokenRequest, reloadable::SecretFile};
use rotation::{SecretDir, captured_logs, metric, wait_for_metric};
use secrecy::SecretString;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

const CRM_TOKEN: &str = "crm-token-0123456789abcdef0123456789";
const OPS_TOKEN: &str = "ops-token-0123456789abcdef0123456789";
const POLICY: &str = "[callers.crm]\nrpcs = [\"*\"]\n\n[callers.ops]\nrpcs = [\"*\"]\n";

async fn vendor() -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&upstream)
        .await;
    upstream
}

fn ott(token: Option<&str>) -> tonic::Request<IssueOneTimeTokenRequest> {
    let mut request = tonic::Request::new(IssueOneTimeTokenRequest { email: "a@b.co".into(), ..Default::default() });
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_added_works_and_one_removed_is_unauthenticated_within_a_second() {
    let upstream = vendor().await;
    let secret =
        SecretDir::plain(&[("policy.toml", POLICY.as_bytes()), ("tokens", format!("crm {CRM_TOKEN}\n").as_bytes())]);
    let mut settings = common::settings(vec![tenant("acme", &upstream.uri())], Duration::from_secs(5));
    settings.caller_files.policy_file = Some(secret.path("policy.toml"));
    settings.caller_files.caller_tokens_file = Some(secret.path("tokens"));
    settings.callers = settings.caller_files.read_callers().expect("callers").map(Arc::new);
    let mut gateway = common::spawn_app(settings).await;

    gateway.client.issue_one_time_token(ott(Some(CRM_TOKEN))).await.expect("crm is known");
    let refused = gateway.client.issue_one_time_token(ott(Some(OPS_TOKEN))).await.expect_err("ops is not yet");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // crm's token leaves, ops's arrives, in one write.
    let changed = Instant::now();
    std::fs::write(secret.path("tokens"), format!("ops {OPS_TOKEN}\n")).expect("write");
    let removed = loop {
        match gateway.client.issue_one_time_token(ott(Some(CRM_TOKEN))).await {
            Ok(_) => {}
            Err(status) => break status,
        }
        assert!(changed.elapsed() < Duration::from_secs(3), "the removed token is still accepted after 3 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = changed.elapsed();
    println!("figure: removed token refused {} ms after the write", took.as_millis());
    assert_eq!((removed.code(), reason(&removed).as_str()), (Code::Unauthenticated, "CALLER_UNAUTHENTICATED"));
    assert!(took < Duration::from_secs(1), "within a second: {took:?}");
    gateway.client.issue_one_time_token(ott(Some(OPS_TOKEN))).await.expect("the added token works");
    let again = gateway.client.issue_one_time_token(ott(Some(CRM_TOKEN))).await.expect_err("and stays removed");
    assert_eq!(again.code(), Code::Unauthenticated);
    assert_eq!(metric(&gateway, "mtr_sso_reloads_total{source=\"callers\"}").await, Some(1.0));

    // A policy that does not parse keeps the tokens and grants in force.
    std::fs::write(secret.path("policy.toml"), "[callers.ops]\nrpcs = [\"Logout\"]\n").expect("write");
    wait_for_metric(&gateway, "mtr_sso_reload_failures_total{source=\"callers\"}", 1.0).await;
    gateway.client.issue_one_time_token(ott(Some(OPS_TOKEN))).await.expect("the previous policy stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_vendor_call_after_the_key_file_changes_carries_the_new_key() {
    let logs = captured_logs();
    let upstream = vendor().await;
    let mut secret = SecretDir::new(&[("api-key", b"key-one\n")]);
    let mut acme = tenant("acme", &upstream.uri());
    acme.api_key = SecretFile::from_file(SecretString::from("key-one"), secret.path("api-key"));
    let mut gateway = common::spawn_app(common::settings(vec![acme], Duration::from_secs(5))).await;

    let keys_seen = || async {
        let requests = upstream.received_requests().await.expect("recorded");
        requests
            .iter()
            .map(|r| r.headers.get("authorization").expect("a key").to_str().expect("ascii").to_string())
            .collect::<Vec<_>>()
    };
    gateway.client.issue_one_time_token(ott(None)).await.expect("a vendor call");
    assert_eq!(keys_seen().await, ["key-one"]);

    let changed = Instant::now();
    secret.publish(&[("api-key", b"key-two\n")]);
    loop {
        gateway.client.issue_one_time_token(ott(None)).await.expect("no call fails across the rotation");
        if keys_seen().await.last().map(String::as_str) == Some("key-two") {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(2), "the new key is used within 2 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = changed.elapsed();
    gateway.client.issue_one_time_token(ott(None)).await.expect("a vendor call");
    let keys = keys_seen().await;
    let first_new = keys.iter().position(|k| k == "key-two").expect("the new key");
    assert!(keys[first_new..].iter().all(|k| k == "key-two"), "never the old key again: {keys:?}");
    println!("figure: new vendor key used {} ms after the ..data swap, with no restart", took.as_millis());

    // An empty key file is refused: the vendor keeps getting the last good key.
    secret.publish(&[("api-key", b"\n")]);
    wait_for_metric(&gateway, "mtr_sso_reload_failures_total{source=\"api_key.acme\"}", 1.0).await;
    gateway.client.issue_one_time_token(ott(None)).await.expect("a vendor call");
    assert_eq!(keys_seen().await.last().map(String::as_str), Some("key-two"));
    let text = logs.text();
    let errors: Vec<_> = text.lines().filter(|l| l.contains("ERROR") && l.contains("api-key")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains("tenants.acme.api_key_file"), "{}", errors[0]);
    assert!(!text.contains("key-two") && !text.contains("key-one"), "keys never logged");
}

// Drives the built-in sandbox, which a build without the `sandbox` feature leaves out.
#[cfg(feature = "sandbox")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_files_again_and_the_binary_keeps_serving() {
    let secret =
        SecretDir::plain(&[("policy.toml", POLICY.as_bytes()), ("tokens", format!("crm {CRM_TOKEN}\n").as_bytes())]);
    let (policy, tokens) = (secret.path("policy.toml"), secret.path("tokens"));
    let running = common::Running::start(&[
        "--sandbox",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--policy-file",
        policy.to_str().expect("utf8"),
        "--caller-tokens-file",
        tokens.to_str().expect("utf8"),
    ]);
    let addr = running.grpc_addr();
    let mut client = mtr_sso::proto::sso_service_client::SsoServiceClient::new(common::channel(addr).await);
    let login = |token: &str| {
        let mut request = tonic::Request::new(mtr_sso::proto::LoginRequest {
            email: mtr_sso::sandbox::DEMO_EMAIL.into(),
            password: mtr_sso::sandbox::DEMO_PASSWORD.into(),
            ..Default::default()
        });
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    };
    client.login(login(CRM_TOKEN)).await.expect("crm signs in");

    // Nothing changed: SIGHUP still reads every file again, and the process lives on.
    let hangup = || {
        let status =
            std::process::Command::new("kill").args(["-HUP", &running.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    };
    hangup();
    running.wait_for("SIGHUP");
    let (applied, _) = running.wait_for("read again and applied");
    assert!(applied.contains("callers"), "{applied}");
    client.login(login(CRM_TOKEN)).await.expect("still serving after SIGHUP");

    std::fs::write(&tokens, format!("ops {OPS_TOKEN}\n")).expect("write");
    hangup();
    running.wait_for("read again and applied");
    client.login(login(OPS_TOKEN)).await.expect("the new token works");
    let refused = client.login(login(CRM_TOKEN)).await.expect_err("the old one is gone");
    assert_eq!(refused.code(), Code::Unauthenticated);
}
