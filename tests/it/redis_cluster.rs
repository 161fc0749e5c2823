//! Shared state on a Redis Cluster (three primaries made here from Debian's
//! redis-server), reached as `redis+cluster://` or, TLS with a password on
//! every node, as `rediss+cluster://`. Two gateway processes share it: a
//! burst of three times the quota reaches the vendor no faster than the
//! quota allows, an idempotent create retried on the other gateway makes
//! one account, and concurrent refreshes of one token make one vendor call
//! (its result and its claim share a hash slot, or the claim script fails).

use crate::{common, redis_server};
use common::{Running, reason};
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use redis_server::{Mode, cluster::RedisCluster};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

fn tenants_file(name: &str, base: &str, extra: &str) -> PathBuf {
    let body = format!("[tenants.default]\nbroker_api_url = \"{base}\"\nplatform_url = \"{base}\"\n{extra}");
    common::tenants_file(&format!("cluster-{name}"), &body)
}

fn two_replicas(tenants: &Path, cluster: &RedisCluster, extra: &[&str]) -> (Running, Running) {
    let args = cluster.gateway_args();
    (common::replica(tenants, &args, extra), common::replica(tenants, &args, extra))
}

/// The most instants in `arrivals` (sorted) within any `window`.
fn most_within(arrivals: &[Instant], window: Duration) -> usize {
    (0..arrivals.len())
        .map(|i| arrivals[i..].iter().take_while(|&&at| at < arrivals[i] + window).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn two_gateways_on_a_cluster_keep_a_burst_of_three_times_the_quota_within_it() {
    two_gateways_on_a_cluster_keep_a_burst_within_the_quota(Mode::Plain).await;
}

#[tokio::test]
async fn two_gateways_on_a_tls_cluster_with_a_password_keep_a_burst_within_the_quota() {
    two_gateways_on_a_cluster_keep_a_burst_within_the_quota(Mode::TlsWithPassword).await;
}

async fn two_gateways_on_a_cluster_keep_a_burst_within_the_quota(mode: Mode) {
    const QUOTA: usize = 10;
    const WINDOW: Duration = Duration::from_secs(2);
    let cluster = RedisCluster::start(mode);
    let upstream = MockServer::start().await;
    // The vendor as it counts: more than the quota within any window is a 429.
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let vendor_429s = Arc::new(Mutex::new(0_usize));
    let (seen, refused_by_vendor) = (arrivals.clone(), vendor_429s.clone());
    Mock::given(path("/v1/one-time-token"))
        .respond_with(move |_: &wiremock::Request| {
            let mut seen = seen.lock().expect("lock");
            let now = Instant::now();
            seen.push(now);
            if seen.iter().filter(|&&at| at + WINDOW > now).count() > QUOTA {
                *refused_by_vendor.lock().expect("lock") += 1;
                return ResponseTemplate::new(429);
            }
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"}))
        })
        .mount(&upstream)
        .await;
    let tenants = tenants_file(&format!("quota-{mode:?}"), &upstream.uri(), "api_key = \"k\"\n");
    let quota = QUOTA.to_string();
    let flags = ["--upstream-quota-per-minute", &quota, "--email-limit-per-minute", "0", "--limit-window", "2s"];
    let (first, second) = two_replicas(&tenants, &cluster, &flags);
    let clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];

    // Three times the quota per window, for three windows, alternating gateways.
    let started = Instant::now();
    let mut calls = Vec::new();
    for n in 0..QUOTA * 3 * 3 {
        let mut client = clients[n % 2].clone();
        calls.push(tokio::spawn(async move {
            let request = IssueOneTimeTokenRequest { email: format!("user{n}@example.com"), ..Default::default() };
            client.issue_one_time_token(common::with_deadline(request, Duration::from_secs(5))).await
        }));
        tokio::time::sleep_until((started + WINDOW * 3 / (QUOTA as u32 * 3 * 3) * (n as u32 + 1)).into()).await;
    }
    let (mut accepted, mut refused) = (0, 0);
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(
                    (status.code(), reason(&status).as_str()),
                    (Code::ResourceExhausted, "UPSTREAM_QUOTA_EXHAUSTED")
                );
                refused += 1;
            }
        }
    }
    let arrivals = arrivals.lock().expect("lock").clone();
    let most = most_within(&arrivals, WINDOW);
    let vendor_429s = *vendor_429s.lock().expect("lock");
    assert_eq!(vendor_429s, 0, "the vendor refused none");
    assert!(most <= QUOTA, "{most} calls reached the vendor within one window of {WINDOW:?}");
    assert_eq!(arrivals.len(), accepted, "every accepted call, and only those, reached the vendor");
    assert!(accepted >= QUOTA * 2, "the quota is used, not starved: {accepted} accepted");
    eprintln!(
        "figure: cluster ({mode:?}), 2 gateways, {} calls in {:?} for a quota of {QUOTA} per {WINDOW:?}: \
         {accepted} accepted, {refused} refused, vendor 429s {vendor_429s}, most in any window {most}",
        accepted + refused,
        started.elapsed()
    );
    let keys = cluster.keys();
    assert!(keys.iter().any(|(_, key)| key.contains("upstream:default:broker-api")), "the quota's log: {keys:?}");
}

#[tokio::test]
async fn a_create_retried_on_the_other_gateway_of_a_cluster_makes_one_account() {
    let cluster = RedisCluster::start(Mode::Plain);
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"uuid": "acc-cluster", "oneTimeToken": "ott"}))
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&upstream)
        .await;
    let tenants = tenants_file("idem", &upstream.uri(), "api_key = \"k\"\n");
    let (first, second) = two_replicas(&tenants, &cluster, &[]);
    let mut on_first = SsoServiceClient::new(common::channel(first.grpc_addr()).await);
    let mut on_second = SsoServiceClient::new(common::channel(second.grpc_addr()).await);
    let mut uuids = Vec::new();
    for key in ["signup-1", "signup-2", "signup-3"] {
        let request = || mtr_sso::proto::CreateAccountRequest {
            idempotency_key: key.into(),
            ..common::new_account(&format!("{key}@example.com"))
        };
        let timed_out = on_first.create_account(common::with_deadline(request(), Duration::from_millis(300))).await;
        assert!(timed_out.is_err(), "the first caller gives up before the vendor answers");
        tokio::time::sleep(Duration::from_millis(900)).await;
        let retry = on_second
            .create_account(common::with_deadline(request(), Duration::from_secs(3)))
            .await
            .expect("the other gateway replays the outcome")
            .into_inner();
        uuids.push(retry.account.expect("account").uuid);
    }
    assert_eq!(uuids, ["acc-cluster"; 3]);
    let creates = upstream.received_requests().await.expect("recorded").len();
    assert_eq!(creates, 3, "the vendor saw one creation per key");
    let nodes: std::collections::BTreeSet<u16> = cluster
        .keys()
        .into_iter()
        .filter(|(_, key)| key.starts_with("mtr-sso:idempotency:"))
        .map(|(port, _)| port)
        .collect();
    eprintln!(
        "figure: cluster, 3 idempotent creates each retried on the other gateway: 3 creations, keys on {} nodes",
        nodes.len()
    );
}

#[cfg(feature = "sandbox")]
#[tokio::test]
async fn two_gateways_on_a_tls_cluster_make_one_vendor_call_for_concurrent_refreshes_of_one_token() {
    use mtr_sso::{
        proto::LoginRequest,
        sandbox::{DEMO_BROKER_ID, DEMO_EMAIL, DEMO_PASSWORD, SANDBOX_API_KEY, Sandbox, SandboxOptions},
    };
    let cluster = RedisCluster::start(Mode::TlsWithPassword);
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let base = sandbox.base_url().as_str().trim_end_matches('/').to_string();
    let tenants =
        tenants_file("reuse", &base, &format!("api_key = \"{SANDBOX_API_KEY}\"\nbroker_id = \"{DEMO_BROKER_ID}\"\n"));
    let (first, second) = two_replicas(&tenants, &cluster, &[]);
    let clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    let session = clients[0].clone().login(login).await.expect("login").into_inner().session.expect("session");
    let renewed = common::refresh_concurrently(&clients, &session.refresh_token, 20).await;
    assert_eq!(sandbox.stats().get("refresh").copied(), Some(1), "the vendor saw one refresh from both gateways");
    assert!(renewed.iter().all(|s| s.access_token == renewed[0].access_token), "one session for all twenty");
    let keys = cluster.keys();
    assert!(
        keys.iter().any(|(_, key)| key.starts_with("mtr-sso:refresh-reuse:{")),
        "the result, hash-tagged: {keys:?}"
    );
    eprintln!(
        "figure: TLS cluster with a password, 2 gateways, 20 concurrent Refresh of one token: 20 OK, 1 vendor call"
    );
}

#[tokio::test]
async fn a_cluster_node_frozen_under_load_hangs_no_call_and_service_returns_once_the_cluster_is_ok() {
    const QUOTA: usize = 20;
    let cluster = RedisCluster::start(Mode::Plain);
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&upstream)
        .await;
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"uuid": "acc", "oneTimeToken": "o"})))
        .mount(&upstream)
        .await;
    // Creates go to a tenant of their own, with its own quota.
    let uri = upstream.uri();
    let signup = format!(
        "api_key = \"k\"\n\n[tenants.signup]\nbroker_api_url = \"{uri}\"\nplatform_url = \"{uri}\"\napi_key = \"k2\"\n"
    );
    let tenants = tenants_file("failover", &uri, &signup);
    let quota = QUOTA.to_string();
    let flags = ["--upstream-quota-per-minute", &quota, "--email-limit-per-minute", "0", "--replicas", "2"];
    let metrics_addr = format!("127.0.0.1:{}", redis_server::free_port());
    let first_flags: Vec<&str> = flags.iter().copied().chain(["--metrics-addr", &metrics_addr]).collect();
    let first = common::replica(&tenants, &cluster.gateway_args(), &first_flags);
    let second = common::replica(&tenants, &cluster.gateway_args(), &flags);
    let clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];
    for n in 0..4 {
        assert_eq!(common::timed_token(clients[n % 2].clone(), n).await.0, "");
    }
    // The cluster marks the frozen primary failed after its node timeout (2 s)
    // and, with no replica to promote, stops serving: CLUSTERDOWN.
    cluster.nodes[1].freeze();
    let frozen = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut n = 4;
    while frozen.elapsed() < Duration::from_secs(5) {
        let (reason, took) = common::timed_token(clients[n % 2].clone(), n).await;
        assert!(reason.is_empty() || reason == "UPSTREAM_QUOTA_EXHAUSTED", "{reason}");
        slowest = slowest.max(took);
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let create = |key: &str| {
        let request = mtr_sso::proto::CreateAccountRequest {
            tenant: "signup".into(),
            idempotency_key: key.into(),
            ..common::new_account("ada@example.com")
        };
        common::with_deadline(request, Duration::from_secs(5))
    };
    let sent = Instant::now();
    let status =
        clients[0].clone().create_account(create("during")).await.expect_err("refused while the cluster is down");
    assert_eq!(reason(&status), "IDEMPOTENCY_STORE_UNAVAILABLE");
    assert!(sent.elapsed() < Duration::from_secs(1));
    cluster.nodes[1].thaw();
    let thawed = Instant::now();
    let deadline = thawed + Duration::from_secs(20);
    while !cluster.nodes.iter().all(|node| node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
        assert!(Instant::now() < deadline, "the cluster did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok_again = Instant::now();
    let recovered = loop {
        if clients[1].clone().create_account(create("during")).await.is_ok() {
            break ok_again.elapsed();
        }
        assert!(ok_again.elapsed() < Duration::from_secs(3), "service did not return");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let received = upstream.received_requests().await.expect("recorded");
    let tokens = received.iter().filter(|request| request.url.path() == "/v1/one-time-token").count();
    let creations = received.iter().filter(|request| request.url.path() == "/v1/accounts").count();
    assert_eq!(creations, 1, "the create refused during the outage ran once, after it");
    assert!(tokens <= QUOTA, "{tokens} calls reached the vendor for a quota of {QUOTA}");
    assert!(slowest < Duration::from_secs(1), "the slowest call took {slowest:?}");
    assert!(recovered < Duration::from_secs(1), "service returned {recovered:?} after the cluster was ok");
    // One outage, one return: the probe waits for the whole cluster, not the first node that answers.
    first.wait_for("Redis is out");
    first.wait_for("Redis is back");
    second.wait_for("Redis is back");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics =
        reqwest::get(format!("http://{metrics_addr}/metrics")).await.expect("scrape").text().await.expect("text");
    assert!(metrics.contains("mtr_sso_redis_outages_total{topology=\"cluster\"} 1\n"), "{metrics}");
    assert!(metrics.contains("mtr_sso_redis_up{topology=\"cluster\"} 1\n"), "{metrics}");
    eprintln!(
        "figure: cluster primary frozen 5 s under {} calls on 2 gateways: slowest call {slowest:?}, vendor saw {tokens} \
         (quota {QUOTA}); idempotent create refused, then 1 creation; service back {recovered:?} after cluster_state:ok \
         ({:?} after the node was thawed)",
        n - 4,
        ok_again - thawed
    );
}
