//! Redis stopped (frozen with SIGSTOP: connections stay open, nothing
//! answers) for 10 s under a burst on two gateway processes. No call waits
//! for its deadline; the vendor's quota holds through each replica's own
//! share (`--replicas 2`); idempotent creates are refused with their reason
//! instead of risking a second account, and one whose outcome could not be
//! recorded mid-run is recorded once Redis is back; service returns within a
//! second of Redis coming back, with one log line and the gauge each way.
//! The same with Redis stopped (SIGTERM: connections refused) and started
//! again from its append-only file.

use crate::{common, redis_server};
use common::reason;
use mtr_sso::proto::{CreateAccountRequest, sso_service_client::SsoServiceClient};
use redis_server::{Mode, RedisServer, free_port};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tonic::{Code, transport::Channel};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, path},
};

const QUOTA: usize = 20;
const OUTAGE: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_secs(5);

async fn vendor() -> (MockServer, Arc<Mutex<Vec<Instant>>>) {
    let upstream = MockServer::start().await;
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let seen = tokens.clone();
    Mock::given(path("/v1/one-time-token"))
        .respond_with(move |_: &wiremock::Request| {
            seen.lock().expect("lock").push(Instant::now());
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"}))
        })
        .mount(&upstream)
        .await;
    for (name, delay) in [("early", 0), ("midrun", 1500), ("during", 0)] {
        Mock::given(path("/v1/accounts"))
            .and(body_string_contains(format!("{name}@example.com")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"uuid": format!("acc-{name}"), "oneTimeToken": "ott"}))
                    .set_delay(Duration::from_millis(delay)),
            )
            .mount(&upstream)
            .await;
    }
    (upstream, tokens)
}

/// An idempotent create of `name@example.com` on the signup tenant (its own quota).
fn create(name: &str) -> tonic::Request<CreateAccountRequest> {
    let request = CreateAccountRequest {
        tenant: "signup".into(),
        idempotency_key: format!("key-{name}"),
        ..common::new_account(&format!("{name}@example.com"))
    };
    common::with_deadline(request, DEADLINE)
}

async fn metric(addr: &str, name: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines().find(|line| line.starts_with(name)).unwrap_or_default().to_string()
}

/// Two gateways on `redis` (the first with a metrics endpoint) and the vendor they call.
struct Fleet {
    upstream: MockServer,
    tokens: Arc<Mutex<Vec<Instant>>>,
    metrics_addr: String,
    clients: [SsoServiceClient<Channel>; 2],
    first: common::Running,
    second: common::Running,
}

async fn fleet(redis: &RedisServer, name: &str) -> Fleet {
    let (upstream, tokens) = vendor().await;
    let uri = upstream.uri();
    let body = format!(
        "[tenants.default]\nbroker_api_url = \"{uri}\"\nplatform_url = \"{uri}\"\napi_key = \"k\"\n\n\
         [tenants.signup]\nbroker_api_url = \"{uri}\"\nplatform_url = \"{uri}\"\napi_key = \"k2\"\n"
    );
    let tenants = common::tenants_file(&format!("outage-{name}"), &body);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let quota = QUOTA.to_string();
    let flags = ["--upstream-quota-per-minute", &quota, "--email-limit-per-minute", "0", "--replicas", "2"];
    let first_flags: Vec<&str> = flags.iter().copied().chain(["--metrics-addr", &metrics_addr]).collect();
    let first = common::replica(&tenants, &redis.gateway_args(), &first_flags);
    let second = common::replica(&tenants, &redis.gateway_args(), &flags);
    let clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];
    Fleet { upstream, tokens, metrics_addr, clients, first, second }
}

#[tokio::test]
async fn redis_frozen_for_ten_seconds_under_a_burst_keeps_the_quota_and_creates_once_and_hangs_no_call() {
    let redis = RedisServer::start(Mode::Plain);
    let Fleet { upstream, tokens, metrics_addr, clients, first, second: _second } = fleet(&redis, "freeze").await;
    assert_eq!(metric(&metrics_addr, "mtr_sso_redis_up").await, "mtr_sso_redis_up{topology=\"single\"} 1");

    // Before the outage: a create, a create still at the vendor when Redis
    // stops, and a few calls through the shared quota.
    clients[0].clone().create_account(create("early")).await.expect("created");
    let midrun = tokio::spawn({
        let mut client = clients[0].clone();
        async move { client.create_account(create("midrun")).await }
    });
    for n in 0..6 {
        assert_eq!(common::timed_token(clients[n % 2].clone(), n).await.0, "", "within the quota");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.freeze();
    let frozen = Instant::now();
    // Three times the quota over the outage, alternating gateways.
    let mut calls = Vec::new();
    for n in 6..6 + QUOTA * 3 {
        calls.push(tokio::spawn(common::timed_token(clients[n % 2].clone(), n)));
        tokio::time::sleep_until((frozen + OUTAGE / (QUOTA as u32 * 3) * (n as u32 - 5)).into()).await;
        if n == 10 {
            for (client, name) in [(&clients[1], "early"), (&clients[1], "during")] {
                let sent = Instant::now();
                let status = client.clone().create_account(create(name)).await.expect_err("refused while Redis is out");
                assert_eq!(
                    (status.code(), reason(&status).as_str()),
                    (Code::Unavailable, "IDEMPOTENCY_STORE_UNAVAILABLE")
                );
                assert!(sent.elapsed() < Duration::from_secs(1), "refused at once: {:?}", sent.elapsed());
            }
            assert_eq!(metric(&metrics_addr, "mtr_sso_redis_up").await, "mtr_sso_redis_up{topology=\"single\"} 0");
        }
    }
    let midrun = midrun.await.expect("task").expect("the create mid-outage still answers its caller").into_inner();
    assert_eq!(midrun.account.expect("account").uuid, "acc-midrun");
    tokio::time::sleep_until((frozen + OUTAGE).into()).await;
    redis.thaw();
    let thawed = Instant::now();

    // Service returns: the create refused during the outage now runs.
    let recovered = loop {
        match clients[1].clone().create_account(create("during")).await {
            Ok(created) => {
                assert_eq!(created.into_inner().account.expect("account").uuid, "acc-during");
                break thawed.elapsed();
            }
            Err(status) => assert_eq!(reason(&status), "IDEMPOTENCY_STORE_UNAVAILABLE"),
        }
        assert!(thawed.elapsed() < Duration::from_secs(3), "service did not return");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(recovered < Duration::from_secs(1), "service returned {recovered:?} after Redis");
    // Retries on the other gateway replay: the early one, and the one whose outcome was recorded late.
    for name in ["early", "midrun"] {
        let replayed = clients[1].clone().create_account(create(name)).await.expect("replayed").into_inner();
        assert_eq!(replayed.account.expect("account").uuid, format!("acc-{name}"));
    }
    let creations = upstream
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|request| request.url.path() == "/v1/accounts")
        .count();
    assert_eq!(creations, 3, "one creation per key: early, midrun, during");

    let mut slowest = Duration::ZERO;
    let (mut accepted, mut refused) = (0, 0);
    for call in calls {
        let (reason, took) = call.await.expect("task");
        slowest = slowest.max(took);
        match reason.as_str() {
            "" => accepted += 1,
            "UPSTREAM_QUOTA_EXHAUSTED" => refused += 1,
            other => panic!("unexpected reason {other}"),
        }
    }
    // After the outage, within the same window, the quota still holds.
    for n in 100..110 {
        let (reason, _) = common::timed_token(clients[n % 2].clone(), n).await;
        assert_eq!(reason, "UPSTREAM_QUOTA_EXHAUSTED", "the window's quota was spent");
    }
    let sent = tokens.lock().expect("lock").len();
    // The documented bound: the quota plus, per replica, its share minus what it had sent before.
    assert!(sent <= QUOTA, "{sent} one-time-token calls reached the vendor for a quota of {QUOTA}");
    assert!(slowest < Duration::from_secs(1), "the slowest call during the outage took {slowest:?}");
    first.wait_for("Redis is out");
    first.wait_for("Redis is back");
    assert_eq!(metric(&metrics_addr, "mtr_sso_redis_up").await, "mtr_sso_redis_up{topology=\"single\"} 1");
    assert_eq!(
        metric(&metrics_addr, "mtr_sso_redis_outages_total").await,
        "mtr_sso_redis_outages_total{topology=\"single\"} 1"
    );
    eprintln!(
        "figure: Redis frozen {OUTAGE:?} under {} calls on 2 gateways (quota {QUOTA}/min, --replicas 2): vendor saw {sent} \
         (beyond the quota: {}), {accepted} accepted and {refused} refused during the outage, slowest call {slowest:?}; \
         3 keys, 3 creations; service back {recovered:?} after Redis",
        QUOTA * 3,
        sent.saturating_sub(QUOTA)
    );
}

#[tokio::test]
async fn redis_stopped_and_started_again_refuses_fast_and_service_returns_within_a_second() {
    // Persisted like a managed Redis that fails over without losing what it holds.
    let extra = ["--appendonly".to_string(), "yes".to_string(), "--appendfsync".to_string(), "always".to_string()];
    let mut redis = RedisServer::start_with(Mode::Plain, None, &extra);
    let Fleet { upstream, tokens, metrics_addr, clients, first: _first, second: _second } = fleet(&redis, "stop").await;
    clients[0].clone().create_account(create("early")).await.expect("created");
    for n in 0..6 {
        assert_eq!(common::timed_token(clients[n % 2].clone(), n).await.0, "", "within the quota");
    }
    redis.stop();
    let stopped = Instant::now();
    let (mut slowest, mut accepted) = (Duration::ZERO, 0);
    for n in 6..6 + QUOTA * 2 {
        let (reason, took) = common::timed_token(clients[n % 2].clone(), n).await;
        slowest = slowest.max(took);
        accepted += usize::from(reason.is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = clients[1].clone().create_account(create("early")).await.expect_err("refused while Redis is out");
    assert_eq!(reason(&status), "IDEMPOTENCY_STORE_UNAVAILABLE");
    assert_eq!(metric(&metrics_addr, "mtr_sso_redis_up").await, "mtr_sso_redis_up{topology=\"single\"} 0");
    let outage = stopped.elapsed();
    redis.restart();
    let restarted = Instant::now();
    let recovered = loop {
        if clients[1].clone().create_account(create("during")).await.is_ok() {
            break restarted.elapsed();
        }
        assert!(restarted.elapsed() < Duration::from_secs(3), "service did not return");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let replayed = clients[1].clone().create_account(create("early")).await.expect("replayed").into_inner();
    assert_eq!(replayed.account.expect("account").uuid, "acc-early");
    let creations = upstream.received_requests().await.expect("recorded");
    let creations = creations.iter().filter(|request| request.url.path() == "/v1/accounts").count();
    assert_eq!(creations, 2, "one creation per key: early, during");
    let sent = tokens.lock().expect("lock").len();
    assert!(sent <= QUOTA, "{sent} one-time-token calls reached the vendor for a quota of {QUOTA}");
    assert!(slowest < Duration::from_secs(1), "the slowest call while Redis was stopped took {slowest:?}");
    assert!(recovered < Duration::from_secs(1), "service returned {recovered:?} after Redis");
    eprintln!(
        "figure: Redis stopped {outage:?} under {} calls on 2 gateways (quota {QUOTA}/min, --replicas 2): vendor saw {sent}, \
         {accepted} accepted during the outage, slowest call {slowest:?}; 2 keys, 2 creations; service back {recovered:?} \
         after Redis answered again",
        QUOTA * 2
    );
}
