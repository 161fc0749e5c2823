//! What two gateway processes share through a real Redis: the upstream quota
//! (together they never send the vendor more than it allows, and calls that
//! wait for a slot are served in order across both), and CreateAccount
//! idempotency keys (a retry that reaches the other replica gets the first
//! outcome, and the vendor sees one creation). An outcome damaged or
//! tampered with in Redis is refused, never replayed as garbage. Each runs
//! against a plain Redis and against one as managed services run it: TLS
//! only, with a password.

use crate::{common, redis_server};
use common::{Running, reason};
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use redis_server::{Mode, RedisServer as Redis};
use std::{
    path::Path,
    time::{Duration, Instant},
};
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

fn tenants_file(tag: &str, upstream: &MockServer) -> std::path::PathBuf {
    let body = format!(
        "[tenants.default]\nbroker_api_url = \"{0}\"\nplatform_url = \"{0}\"\napi_key = \"k\"\n",
        upstream.uri()
    );
    common::tenants_file(tag, &body)
}

/// `hex` with its last digit changed: the sealed value differs in one byte.
fn flip_last_digit(hex: &str) -> String {
    let (rest, last) = hex.split_at(hex.len() - 1);
    format!("{rest}{}", if last == "0" { "1" } else { "0" })
}

/// Two gateway processes on the same tenants file and Redis.
fn two_replicas(tenants: &Path, redis: &Redis, extra: &[&str]) -> (Running, Running) {
    (common::replica(tenants, &redis.gateway_args(), extra), common::replica(tenants, &redis.gateway_args(), extra))
}

#[tokio::test]
async fn two_gateways_sharing_redis_never_send_the_vendor_more_than_the_quota() {
    two_gateways_sharing_redis_never_send_the_vendor_more_than_the_quota_on(Mode::Plain).await;
}

#[tokio::test]
async fn two_gateways_sharing_redis_never_send_the_vendor_more_than_the_quota_over_tls_with_a_password() {
    two_gateways_sharing_redis_never_send_the_vendor_more_than_the_quota_on(Mode::TlsWithPassword).await;
}

async fn two_gateways_sharing_redis_never_send_the_vendor_more_than_the_quota_on(mode: Mode) {
    const QUOTA: usize = 20;
    let redis = Redis::start(mode);
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&upstream)
        .await;
    let tenants = tenants_file(&format!("quota-{mode:?}"), &upstream);
    let quota = QUOTA.to_string();
    let (first, second) =
        two_replicas(&tenants, &redis, &["--upstream-quota-per-minute", &quota, "--email-limit-per-minute", "0"]);
    let mut clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];

    let (mut accepted, mut refused) = (0, 0);
    for n in 0..60 {
        let request = IssueOneTimeTokenRequest { email: format!("user{n}@example.com"), ..Default::default() };
        match clients[n % 2].issue_one_time_token(request).await {
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
    let sent = upstream.received_requests().await.expect("recorded").len();
    assert_eq!(sent, accepted, "every accepted call, and only those, reached the vendor");
    // No slot frees before 61 s, so a run of a few seconds gets exactly the quota.
    assert_eq!(sent, QUOTA, "the vendor saw {sent} calls for a quota of {QUOTA}");
    assert_eq!(accepted + refused, 60);
    eprintln!(
        "figure: 2 gateways, 60 calls, quota {QUOTA}/min: {accepted} accepted, {refused} refused, vendor saw {sent}"
    );

    let keys = redis.keys();
    let log = keys.iter().find(|k| k.contains("upstream:default:broker-api")).expect("the quota's log");
    assert!(keys.iter().all(|k| !k.contains('@')), "no email in Redis: {keys:?}");
    assert_eq!(redis.cli(&["ZCARD", log]), QUOTA.to_string(), "the log holds one entry per slot, no more");
    let ttl_ms: u64 = redis.cli(&["PTTL", log]).parse().expect("a TTL");
    assert!(ttl_ms > 55_000 && ttl_ms <= 62_000, "the log expires once its last slot frees: {ttl_ms} ms");
}

#[tokio::test]
async fn calls_on_two_gateways_wait_for_slots_that_free_within_the_max_wait_and_the_rest_are_refused() {
    let redis = Redis::start(Mode::Plain);
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&upstream)
        .await;
    let tenants = tenants_file("wait", &upstream);
    // A 1 s window (a slot is held for 2 s) shows in seconds what takes minutes.
    let flags = [
        "--upstream-quota-per-minute",
        "2",
        "--email-limit-per-minute",
        "0",
        "--limit-window",
        "1s",
        "--quota-max-wait",
        "1s",
    ];
    let (first, second) = two_replicas(&tenants, &redis, &flags);
    let clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];
    let ott = |n: usize| IssueOneTimeTokenRequest { email: format!("user{n}@example.com"), ..Default::default() };
    let start = Instant::now();
    for (n, client) in clients.iter().enumerate() {
        client.clone().issue_one_time_token(ott(n)).await.expect("within the quota");
    }
    tokio::time::sleep_until((start + Duration::from_millis(1200)).into()).await;
    let waiting: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(n, client)| {
            let mut client = client.clone();
            tokio::spawn(async move { client.issue_one_time_token(ott(n + 2)).await.map(|_| start.elapsed()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (n, client) in clients.iter().enumerate() {
        let sent = Instant::now();
        let status = client.clone().issue_one_time_token(ott(n + 4)).await.expect_err("no slot within 1 s");
        assert!(sent.elapsed() < Duration::from_millis(300), "refused at once, not queued");
        assert_eq!(reason(&status), "UPSTREAM_QUOTA_EXHAUSTED");
    }
    for call in waiting {
        let done_after = call.await.expect("joined").expect("the waiting call got its slot");
        assert!(done_after >= Duration::from_secs(2), "sent only once the first slots freed: {done_after:?}");
    }
    assert_eq!(upstream.received_requests().await.expect("recorded").len(), 4);
}

#[tokio::test]
async fn a_create_retried_on_another_replica_after_a_timeout_gets_the_first_account() {
    a_create_retried_on_another_replica_after_a_timeout_gets_the_first_account_on(Mode::Plain).await;
}

#[tokio::test]
async fn a_create_retried_on_another_replica_after_a_timeout_gets_the_first_account_over_tls_with_a_password() {
    a_create_retried_on_another_replica_after_a_timeout_gets_the_first_account_on(Mode::TlsWithPassword).await;
}

async fn a_create_retried_on_another_replica_after_a_timeout_gets_the_first_account_on(mode: Mode) {
    let redis = Redis::start(mode);
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"uuid": "acc-shared", "oneTimeToken": "ott"}))
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&upstream)
        .await;
    let tenants = tenants_file(&format!("idem-{mode:?}"), &upstream);
    let (first, second) = two_replicas(&tenants, &redis, &[]);
    let mut on_first = SsoServiceClient::new(common::channel(first.grpc_addr()).await);
    let mut on_second = SsoServiceClient::new(common::channel(second.grpc_addr()).await);
    let request = || mtr_sso::proto::CreateAccountRequest {
        idempotency_key: "signup-42".into(),
        ..common::new_account("ada@example.com")
    };

    let timed_out = on_first.create_account(common::with_deadline(request(), Duration::from_millis(300))).await;
    assert!(timed_out.is_err(), "the first caller gives up before the vendor answers");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let retry = on_second
        .create_account(common::with_deadline(request(), Duration::from_secs(3)))
        .await
        .expect("the other replica replays the outcome")
        .into_inner();
    assert_eq!(retry.account.expect("account").uuid, "acc-shared");
    let creates = upstream.received_requests().await.expect("recorded").len();
    assert_eq!(creates, 1, "the vendor saw one creation");
    assert!(
        redis.keys().iter().any(|k| k.starts_with("mtr-sso:idempotency:") && !k.contains("signup-42")),
        "keys are hashed"
    );
}

#[tokio::test]
async fn a_stored_outcome_damaged_in_redis_is_refused_and_not_replayed_or_run_again() {
    a_stored_outcome_damaged_in_redis_is_refused_and_not_replayed_or_run_again_on(Mode::Plain).await;
}

#[tokio::test]
async fn a_stored_outcome_damaged_in_redis_is_refused_and_not_replayed_or_run_again_over_tls_with_a_password() {
    a_stored_outcome_damaged_in_redis_is_refused_and_not_replayed_or_run_again_on(Mode::TlsWithPassword).await;
}

async fn a_stored_outcome_damaged_in_redis_is_refused_and_not_replayed_or_run_again_on(mode: Mode) {
    let redis = Redis::start(mode);
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"uuid": "acc-stored", "oneTimeToken": "ott"})),
        )
        .mount(&upstream)
        .await;
    let tenants = tenants_file(&format!("damage-{mode:?}"), &upstream);
    let gateway = common::replica(&tenants, &redis.gateway_args(), &[]);
    let mut client = SsoServiceClient::new(common::channel(gateway.grpc_addr()).await);
    let request = || mtr_sso::proto::CreateAccountRequest {
        idempotency_key: "signup-7".into(),
        ..common::new_account("ada@example.com")
    };
    let first = client.create_account(request()).await.expect("created").into_inner();
    assert_eq!(first.account.expect("account").uuid, "acc-stored");

    let stored_key = redis.keys().into_iter().find(|k| k.starts_with("mtr-sso:idempotency:")).expect("outcome stored");
    let stored = redis.cli(&["GET", &stored_key]);
    let (head, hex) = stored.rsplit_once(':').expect("done:<fingerprint>:<sealed outcome as hex>");
    assert!(head.starts_with("done:"), "{stored}");
    let replayed = client.create_account(request()).await.expect("an intact outcome replays").into_inner();
    assert_eq!(replayed.account.expect("account").uuid, "acc-stored");

    // Skipping the non-hex pair would leave the original bytes: it must be refused all the same.
    let middle = hex.len() / 4 * 2;
    let non_hex_pair = format!("{}zz{}", &hex[..middle], &hex[middle..]);
    let cut_in_half = hex[..hex.len() - 1].to_string();
    let one_byte_less = hex[..hex.len() - 2].to_string();
    let flipped = flip_last_digit(hex);
    for damaged in [non_hex_pair, cut_in_half, one_byte_less, flipped] {
        assert_eq!(redis.cli(&["SET", &stored_key, &format!("{head}:{damaged}"), "KEEPTTL"]), "OK");
        let status = client.create_account(request()).await.expect_err("a damaged outcome is refused");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unavailable, "IDEMPOTENCY_STORE_UNAVAILABLE"),
            "stored {damaged:?}"
        );
    }
    let creates = upstream.received_requests().await.expect("recorded").len();
    assert_eq!(creates, 1, "the vendor saw one creation: a damaged outcome does not run the request again");
}
