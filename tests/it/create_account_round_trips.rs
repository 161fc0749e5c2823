//! How many vendor round trips a CreateAccount takes, judged from the
//! sandbox's request log with 100 ms of vendor latency: on v2 the trading
//! account and the one-time token run side by side once the user account
//! exists (two round trips, three with a session), and a tenant's
//! `lookup_before_create` adds exactly one, answers a taken email with
//! ACCOUNT_ALREADY_EXISTS and sends no create. The figures test prints the
//! `figure:` lines of BENCHMARKS.md (see there for the command) and holds
//! side by side a round trip ahead of the sequential order.

use crate::common;
use common::{new_account, reason, spawn_gateway};
use mtr_sso::{
    proto::CreateAccountRequest,
    sandbox::{DEMO_GROUP, LoggedRequest, Sandbox, SandboxOptions, Switches},
    tenant::{Generation, TenantSettings},
};
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(100);
const V2_PASSWORD: &str = "Sandbox-pass1";

/// A sandbox with [`LATENCY`] before every vendor answer, and a gateway over
/// its `v1` and `v2` tenants, each adjusted by `configure`.
async fn slow_vendor(configure: impl Fn(&mut TenantSettings)) -> (Sandbox, common::Gateway) {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    sandbox.set_switches(Switches { latency: LATENCY, ..Switches::default() });
    let mut tenants = vec![sandbox.tenant_settings("v1"), sandbox.tenant_settings_for("v2", Generation::V2)];
    tenants.iter_mut().for_each(&configure);
    let gateway = spawn_gateway(tenants, Duration::from_secs(5)).await;
    (sandbox, gateway)
}

fn request(tenant: &str, email: &str, start_session: bool) -> CreateAccountRequest {
    let base = new_account(email);
    let password = if tenant == "v2" { V2_PASSWORD.into() } else { base.password.clone() };
    CreateAccountRequest { tenant: tenant.into(), password, start_session, ..base }
}

/// The longest chain of requests in which each arrived after the previous
/// one was answered: the round trips a caller waited for.
fn round_trips(log: &[LoggedRequest]) -> usize {
    let mut depth = vec![0usize; log.len()];
    for (i, request) in log.iter().enumerate() {
        let before = log[..i]
            .iter()
            .zip(&depth)
            .filter(|(earlier, _)| earlier.answered_us.is_some_and(|answered| answered <= request.arrived_us))
            .map(|(_, depth)| *depth)
            .max()
            .unwrap_or(0);
        depth[i] = before + 1;
    }
    depth.into_iter().max().unwrap_or(0)
}

/// From the first arrival to the last answer, as the vendor saw it.
fn vendor_span(log: &[LoggedRequest]) -> Duration {
    let first = log.iter().map(|r| r.arrived_us).min().unwrap_or(0);
    let last = log.iter().filter_map(|r| r.answered_us).max().unwrap_or(first);
    Duration::from_micros(last - first)
}

fn find<'a>(log: &'a [LoggedRequest], method: &str, path_end: &str) -> &'a LoggedRequest {
    log.iter()
        .find(|r| r.method == method && r.path.ends_with(path_end))
        .unwrap_or_else(|| panic!("no {method} …{path_end} in {log:#?}"))
}

#[tokio::test]
async fn a_v2_create_takes_two_round_trips_with_the_trading_account_and_token_side_by_side() {
    let (sandbox, mut gateway) = slow_vendor(|_| {}).await;
    let started = Instant::now();
    let response = gateway.client.create_account(request("v2", "two@example.com", false)).await.expect("OK");
    let elapsed = started.elapsed();
    let response = response.into_inner();
    assert!(response.trading_account.is_some() && response.login_link.is_some(), "{response:?}");
    let log = sandbox.requests();
    assert_eq!(log.len(), 3, "{log:#?}");
    let create = find(&log, "POST", "/v1/user-accounts");
    let trading = find(&log, "POST", "/trading-accounts");
    let token = find(&log, "POST", "/v1/one-time-token");
    let create_answered = create.answered_us.expect("answered");
    assert!(trading.arrived_us >= create_answered && token.arrived_us >= create_answered, "both need the user");
    assert!(trading.overlaps(token), "side by side: {trading:?} {token:?}");
    assert_eq!(round_trips(&log), 2);
    // One after another, three answers cannot come in under three latencies.
    assert!(vendor_span(&log) < 3 * LATENCY, "{:?}", vendor_span(&log));
    assert!(elapsed >= 2 * LATENCY, "{elapsed:?}");
}

#[tokio::test]
async fn a_v2_create_with_a_session_takes_three_and_the_session_follows_the_token() {
    let (sandbox, mut gateway) = slow_vendor(|_| {}).await;
    let response = gateway.client.create_account(request("v2", "three@example.com", true)).await.expect("OK");
    let response = response.into_inner();
    assert!(response.trading_account.is_some() && response.session.is_some(), "{response:?}");
    let log = sandbox.requests();
    assert_eq!(log.len(), 4, "{log:#?}");
    let token = find(&log, "POST", "/v1/one-time-token");
    let session = log.iter().find(|r| r.path.contains("login")).expect("the token login");
    assert!(session.arrived_us >= token.answered_us.expect("answered"), "the session needs the token");
    assert_eq!(round_trips(&log), 3);
    assert!(vendor_span(&log) < 4 * LATENCY, "{:?}", vendor_span(&log));
}

#[tokio::test]
async fn lookup_before_create_answers_a_taken_email_without_a_create() {
    let (sandbox, mut gateway) = slow_vendor(|tenant| tenant.lookup_before_create = true).await;
    for (tenant, email) in [("v2", "taken-v2@example.com"), ("v1", "taken-v1@example.com")] {
        assert!(sandbox.seed_account(email, V2_PASSWORD, time::OffsetDateTime::now_utc()));
        let refused =
            gateway.client.create_account(request(tenant, email, true)).await.expect_err("the email is taken");
        assert_eq!(reason(&refused), "ACCOUNT_ALREADY_EXISTS", "{tenant}: {refused:?}");
    }
    let log = sandbox.requests();
    assert_eq!(log.len(), 2, "one lookup each, no create, no link, no session: {log:#?}");
    assert!(log.iter().all(|r| r.method == "GET"), "{log:#?}");
    assert_eq!(sandbox.trading_account_count(), 0);
}

#[tokio::test]
async fn lookup_before_create_costs_a_fresh_email_one_more_round_trip() {
    let (sandbox, mut gateway) = slow_vendor(|tenant| tenant.lookup_before_create = true).await;
    let response = gateway.client.create_account(request("v2", "fresh@example.com", false)).await.expect("OK");
    let response = response.into_inner();
    assert!(response.trading_account.is_some() && response.login_link.is_some(), "{response:?}");
    let log = sandbox.requests();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert_eq!((log[0].method.as_str(), log[0].path.contains("/email/")), ("GET", true), "{log:#?}");
    assert_eq!(round_trips(&log), 3, "the lookup, then the two of a v2 create");
    let stats = sandbox.stats();
    assert_eq!(stats.get("user_account_by_email"), Some(&1));
    assert_eq!(stats.get("create_user_account"), Some(&1));
}

#[tokio::test]
async fn lookup_before_create_sends_no_create_when_the_lookup_fails_or_is_refused_and_goes_on_after_a_400() {
    use mtr_sso::sandbox::FaultKind;
    let (sandbox, mut gateway) = slow_vendor(|tenant| tenant.lookup_before_create = true).await;
    let on_lookup = |fault| Switches { fault, fault_path_contains: "/email/".into(), ..Switches::default() };
    sandbox.set_switches(on_lookup(FaultKind::ServerError));
    let failed = gateway.client.create_account(request("v2", "unsure@example.com", false)).await.expect_err("no check");
    assert_eq!(reason(&failed), "UPSTREAM_UNAVAILABLE", "{failed:?}");
    assert_eq!(sandbox.stats().get("create_user_account"), None, "a create without the check is never sent");
    // Any other refusal of the lookup cannot tell either: no create is sent.
    sandbox.set_switches(on_lookup(FaultKind::Unprocessable));
    let refused = gateway.client.create_account(request("v2", "refused@example.com", false)).await.expect_err("422");
    assert_ne!(refused.code(), tonic::Code::Ok);
    assert_eq!(sandbox.stats().get("create_user_account"), None, "a 422 on the lookup sends no create");
    // A lookup that dislikes the address says nothing about an account: the create checks it itself.
    sandbox.set_switches(on_lookup(FaultKind::BadRequest));
    let created = gateway.client.create_account(request("v2", "disliked@example.com", false)).await.expect("OK");
    assert!(created.into_inner().login_link.is_some());
    assert_eq!(sandbox.stats().get("create_user_account"), Some(&1));
}

/// p50 of `runs` samples of `call`.
async fn p50<F: std::future::Future<Output = ()>>(runs: usize, mut call: impl FnMut(usize) -> F) -> Duration {
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let started = Instant::now();
        call(run).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

/// The figures of BENCHMARKS.md ("CreateAccount round trips"): the p50 of
/// CreateAccount through the gateway beside the same vendor calls made one
/// after another by the gateway's own clients, in one run, 100 ms latency.
#[tokio::test]
async fn figures_create_account_p50_side_by_side_with_the_sequential_order() {
    use mtr_sso::{
        deadline::Deadline,
        upstream::{AccountDetails, BrokerApi, GateContext, HttpClient, NewTradingAccount, PlatformApi},
    };
    use secrecy::SecretString;
    const RUNS: usize = 9;
    let (sandbox, gateway) = slow_vendor(|_| {}).await;
    let settings = sandbox.tenant_settings_for("v2", Generation::V2);
    let http = HttpClient::new(&common::http_settings(Duration::from_secs(5))).expect("client");
    let gates = || GateContext::unlimited(std::sync::Arc::new(mtr_sso::metrics::Metrics::new()));
    let broker = BrokerApi::new(http.clone(), &settings, gates()).expect("broker api");
    let platform = PlatformApi::new(http, &settings, gates()).expect("platform api");
    let deadline = || Deadline::after(Duration::from_secs(5));
    let password = SecretString::from(V2_PASSWORD);
    let trading_account = NewTradingAccount {
        group: DEMO_GROUP.into(),
        leverage_ratio_percent: 10_000,
        account_type: "DEMO",
        access_right: None,
        account_details: AccountDetails {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            ..Default::default()
        },
    };
    let sequential = |prefix: &'static str, session: bool| {
        let (broker, platform, password, trading_account) = (&broker, &platform, &password, &trading_account);
        move |run: usize| async move {
            let email = format!("{prefix}-{run}@example.com");
            let user = broker.create_user_account(&email, password, deadline()).await.expect("user");
            let uuid = user.uuid.expect("uuid");
            broker.open_trading_account(&uuid, trading_account, deadline()).await.expect("trading account");
            let issued = broker.issue_one_time_token(&email, Duration::from_secs(60), deadline()).await.expect("token");
            if session {
                platform.login_with_token(&issued.token, deadline()).await.expect("session");
            }
        }
    };
    let through_gateway = |tenant: &'static str, session: bool| {
        let client = gateway.client.clone();
        move |run: usize| {
            let mut client = client.clone();
            async move {
                let email = format!("{tenant}-{session}-{run}@example.com");
                let answer = client.create_account(request(tenant, &email, session)).await.expect("OK").into_inner();
                assert!(answer.sign_in_error.is_none() && answer.trading_account_error.is_none(), "{answer:?}");
            }
        }
    };
    let figures = [
        ("v1", p50(RUNS, through_gateway("v1", false)).await, None),
        ("v1 with a session", p50(RUNS, through_gateway("v1", true)).await, None),
        ("v2", p50(RUNS, through_gateway("v2", false)).await, Some(p50(RUNS, sequential("seq", false)).await)),
        (
            "v2 with a session",
            p50(RUNS, through_gateway("v2", true)).await,
            Some(p50(RUNS, sequential("seqs", true)).await),
        ),
    ];
    for (name, gateway_p50, sequential_p50) in figures {
        let sequential = sequential_p50
            .map_or_else(|| "same order (nothing to run side by side)".into(), |p| format!("{} ms", p.as_millis()));
        println!(
            "figure: CreateAccount {name}, 100 ms vendor latency: p50 {} ms; sequential order: {sequential}",
            gateway_p50.as_millis()
        );
        // Side by side saves one whole round trip of 100 ms; half of it is
        // margin for a busy machine.
        if let Some(sequential_p50) = sequential_p50 {
            assert!(
                gateway_p50 + Duration::from_millis(50) < sequential_p50,
                "{name}: {gateway_p50:?} vs {sequential_p50:?}"
            );
        }
    }
}
