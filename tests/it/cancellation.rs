//! Callers that go away: a gRPC cancel or an HTTP client that hangs up, at
//! any point of any RPC, leaves the circuit breaker, the concurrency slots
//! and the single-flight table free, so the next call goes through. The
//! wedged-circuit sequence (the one half-open probe cancelled by its caller)
//! recovers within one cooldown once the vendor heals, and calls the open
//! circuit refuses cost none of the vendor's quota.

use crate::common;
use common::{Gateway, reason, with_deadline};
use mtr_sso::{
    proto::{IssueOneTimeTokenRequest, LoginRequest, RefreshRequest, sso_service_client::SsoServiceClient},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, FaultKind, Sandbox, SandboxOptions, Switches},
    upstream::resilience::ResilienceSettings,
};
use proptest::prelude::*;
use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};
use tonic::{Status, transport::Channel};

const COOLDOWN: Duration = Duration::from_millis(600);

/// A breaker that opens after `failures`, one call at a time per API, no retries.
fn resilience(failures: u32) -> ResilienceSettings {
    ResilienceSettings {
        breaker_failures: failures,
        breaker_cooldown: COOLDOWN,
        max_attempts: 1,
        base_backoff: Duration::from_millis(10),
        max_concurrent_calls: 1,
    }
}

async fn gateway(sandbox: &Sandbox, failures: u32, upstream_per_minute: u32) -> Gateway {
    common::spawn_gateway_with(
        vec![sandbox.tenant_settings("default")],
        Duration::from_secs(3),
        upstream_per_minute,
        |s| {
            s.resilience = resilience(failures);
            s.quota_max_wait = Duration::ZERO;
        },
    )
    .await
}

fn set_fault(sandbox: &Sandbox, fault: FaultKind, latency: Duration) {
    sandbox.set_switches(Switches { fault, latency, ..Switches::default() });
}

fn demo_login() -> LoginRequest {
    LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() }
}

async fn login(client: &mut SsoServiceClient<Channel>) -> Result<(), Status> {
    client.login(with_deadline(demo_login(), Duration::from_secs(2))).await.map(drop)
}

/// Opens the platform's circuit with failing logins, then lets its cooldown pass.
async fn open_then_cool_down(sandbox: &Sandbox, client: &mut SsoServiceClient<Channel>, failures: u32) {
    set_fault(sandbox, FaultKind::ServerError, Duration::ZERO);
    for _ in 0..failures {
        let refused = login(client).await.expect_err("the vendor fails");
        assert_eq!(reason(&refused), "UPSTREAM_UNAVAILABLE");
    }
    let open = login(client).await.expect_err("the circuit is open");
    assert_eq!(reason(&open), "UPSTREAM_CIRCUIT_OPEN");
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
}

/// Logins right after the vendor healed: how many of 5 succeed, and how long they took.
async fn five_logins(client: &mut SsoServiceClient<Channel>) -> (usize, Vec<String>, Duration) {
    let healed = Instant::now();
    let mut reasons = Vec::new();
    for _ in 0..5 {
        match login(client).await {
            Ok(()) => reasons.push("OK".to_string()),
            Err(status) => reasons.push(reason(&status)),
        }
    }
    (reasons.iter().filter(|r| *r == "OK").count(), reasons, healed.elapsed())
}

#[tokio::test]
async fn a_probe_cancelled_by_its_grpc_caller_does_not_wedge_the_circuit() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let mut gateway = gateway(&sandbox, 2, 0).await;
    open_then_cool_down(&sandbox, &mut gateway.client, 2).await;

    // The one half-open probe hangs at the vendor; its caller gives up and cancels.
    set_fault(&sandbox, FaultKind::Hang, Duration::ZERO);
    let probe = tokio::time::timeout(Duration::from_millis(300), login(&mut gateway.client)).await;
    assert!(probe.is_err(), "the probe was cancelled by its caller: {probe:?}");
    set_fault(&sandbox, FaultKind::None, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (ok, reasons, took) = five_logins(&mut gateway.client).await;
    assert_eq!(ok, 5, "every Login succeeds once the vendor healed: {reasons:?}");
    assert!(took < COOLDOWN, "within one cooldown: {took:?}");
    eprintln!(
        "figure: probe cancelled by a gRPC caller, vendor healed: {ok} of 5 Login OK in {took:?} (cooldown {COOLDOWN:?})"
    );
}

#[tokio::test]
async fn a_probe_whose_http_caller_hangs_up_does_not_wedge_the_circuit() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let mut gateway = gateway(&sandbox, 2, 0).await;
    open_then_cool_down(&sandbox, &mut gateway.client, 2).await;

    set_fault(&sandbox, FaultKind::Hang, Duration::ZERO);
    // An HTTP/2 client, as PHP's curl negotiates it over TLS: its cancel is a reset of the stream.
    let http = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let body = serde_json::json!({ "email": DEMO_EMAIL, "password": DEMO_PASSWORD });
    let gone = http
        .post(format!("http://{}/v1/sessions:login", gateway.addr))
        .json(&body)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the HTTP caller gave up");
    set_fault(&sandbox, FaultKind::None, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (ok, reasons, took) = five_logins(&mut gateway.client).await;
    assert_eq!(ok, 5, "every Login succeeds once the vendor healed: {reasons:?}");
    assert!(took < COOLDOWN, "within one cooldown: {took:?}");
    eprintln!("figure: probe cancelled by an HTTP caller, vendor healed: {ok} of 5 Login OK in {took:?}");
}

#[tokio::test]
async fn calls_the_open_circuit_refuses_spend_none_of_the_vendor_quota() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    // Three vendor calls a minute for the platform: one failure opens the circuit.
    let mut gateway = gateway(&sandbox, 1, 3).await;
    set_fault(&sandbox, FaultKind::ServerError, Duration::ZERO);
    assert_eq!(reason(&login(&mut gateway.client).await.expect_err("fails")), "UPSTREAM_UNAVAILABLE");
    let mut refused = Vec::new();
    for _ in 0..10 {
        refused.push(reason(&login(&mut gateway.client).await.expect_err("the circuit is open")));
    }
    assert!(refused.iter().all(|r| r == "UPSTREAM_CIRCUIT_OPEN"), "{refused:?}");
    set_fault(&sandbox, FaultKind::None, Duration::ZERO);
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    let after: Vec<_> = [login(&mut gateway.client).await, login(&mut gateway.client).await]
        .into_iter()
        .map(|answer| answer.map_or_else(|status| reason(&status), |()| "OK".to_string()))
        .collect();
    assert_eq!(after, ["OK", "OK"], "the two quota slots left were not spent by refused calls");
    assert_eq!(sandbox.stats().get("login").copied(), Some(2), "the vendor saw only the calls sent");
    eprintln!("figure: quota 3/min, circuit open: 10 refused calls spent 0 quota; 2 of 2 Login OK after the cooldown");
}

/// The RPCs, each with what a call of it needs.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    CreateAccount,
    IssueOneTimeToken,
    Login,
    Refresh,
}

static EMAILS: AtomicU32 = AtomicU32::new(0);

/// One call of `rpc`; `refresh_token` for Refresh. CreateAccount always
/// creates a new account, so that its outcome depends on nothing before it.
async fn call(client: &mut SsoServiceClient<Channel>, rpc: Rpc, refresh_token: &str) -> Result<(), Status> {
    let deadline = Duration::from_secs(2);
    match rpc {
        Rpc::CreateAccount => {
            let email = format!("cancel-{}@example.com", EMAILS.fetch_add(1, Ordering::Relaxed));
            client.create_account(with_deadline(common::new_account(&email), deadline)).await.map(drop)
        }
        Rpc::IssueOneTimeToken => {
            let request = IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() };
            client.issue_one_time_token(with_deadline(request, deadline)).await.map(drop)
        }
        Rpc::Login => login(client).await,
        Rpc::Refresh => {
            let request = RefreshRequest { refresh_token: refresh_token.into(), ..Default::default() };
            client.refresh(with_deadline(request, deadline)).await.map(drop)
        }
    }
}

/// One case: the gateway in a state (circuit closed, or half-open so that
/// the cancelled call is its probe), the vendor answering after `latency`,
/// the caller cancelling `cancel_after` into the call. Afterwards the same
/// call, once the vendor is fast again, must succeed: a leaked slot would
/// answer UPSTREAM_BUSY, a wedged breaker UPSTREAM_CIRCUIT_OPEN, a stuck
/// single-flight key UPSTREAM_TIMEOUT.
async fn cancel_then_call_again(rpc: Rpc, probing: bool, cancel_after: Duration) -> Result<(), String> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let mut gateway = gateway(&sandbox, 1, 0).await;
    let client = &mut gateway.client;
    let session = client.login(demo_login()).await.expect("login").into_inner().session.expect("a session");
    if probing {
        set_fault(&sandbox, FaultKind::ServerError, Duration::ZERO);
        // Another token, so the reuse window holds nothing for the one under test.
        let failed = call(client, rpc, "another-refresh-token").await;
        assert!(failed.is_err(), "{rpc:?} fails against a failing vendor");
        tokio::time::sleep(COOLDOWN + Duration::from_millis(20)).await;
    }
    let latency = Duration::from_millis(60);
    set_fault(&sandbox, FaultKind::None, latency);
    let cancelled = tokio::time::timeout(cancel_after, call(client, rpc, &session.refresh_token)).await;
    set_fault(&sandbox, FaultKind::None, Duration::ZERO);
    // Work that outlives its caller (a shared call) ends within the latency.
    tokio::time::sleep(latency * 2).await;
    match call(client, rpc, &session.refresh_token).await {
        Ok(()) => Ok(()),
        Err(status) => Err(format!(
            "{rpc:?} after a cancel at {cancel_after:?} (probing: {probing}, first call {}): {} {}",
            if cancelled.is_ok() { "finished" } else { "cancelled" },
            reason(&status),
            status.message()
        )),
    }
}

fn rpcs() -> impl Strategy<Value = Rpc> {
    prop_oneof![Just(Rpc::CreateAccount), Just(Rpc::IssueOneTimeToken), Just(Rpc::Login), Just(Rpc::Refresh)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_call_cancelled_at_a_random_point_leaves_breaker_slots_and_shared_calls_free(
        rpc in rpcs(),
        probing in any::<bool>(),
        cancel_after_ms in 0u64..90,
    ) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let outcome = runtime.block_on(cancel_then_call_again(rpc, probing, Duration::from_millis(cancel_after_ms)));
        if let Err(failure) = outcome {
            prop_assert!(false, "{}", failure);
        }
    }
}
