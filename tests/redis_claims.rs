//! The claims of the refresh reuse store, through a real redis-server: a
//! claim is deleted only by the replica that holds it (a slow replica whose
//! claim expired cannot delete the claim another one took since), a claim is
//! never won over a result already stored, and a Refresh cancelled by its
//! caller leaves no claim behind while its result still reaches the other
//! replica's caller.
// Drives the built-in sandbox, which a build without the `sandbox` feature leaves out.
#![cfg(feature = "sandbox")]

mod common;
mod redis_server;

use mtr_sso::{
    proto::{LoginRequest, RefreshRequest, sso_service_client::SsoServiceClient},
    reuse_store::{Claim, ReuseStore, SealingKeys},
    sandbox::{DEMO_BROKER_ID, DEMO_EMAIL, DEMO_PASSWORD, SANDBOX_API_KEY, Sandbox, SandboxOptions, Switches},
};
use redis_server::{Mode, RedisServer};
use std::time::Duration;

const CLAIM_PREFIX: &str = "mtr-sso:refresh-claim:";

async fn replica_store(redis: &RedisServer) -> ReuseStore {
    ReuseStore::redis(redis.shared().await, Duration::from_secs(10))
}

fn claims(redis: &RedisServer) -> Vec<String> {
    redis.keys().into_iter().filter(|key| key.starts_with(CLAIM_PREFIX)).collect()
}

#[tokio::test]
async fn a_claim_is_deleted_only_by_its_holder_and_never_won_over_a_stored_result() {
    let redis = RedisServer::start(Mode::Plain);
    let (slow, other, third) = (replica_store(&redis).await, replica_store(&redis).await, replica_store(&redis).await);
    let keys = SealingKeys::derive("default", b"refresh-token-1");

    let Claim::Ours(slow_ticket) = slow.claim(&keys, Duration::from_millis(100)).await else {
        panic!("the first replica claims the call")
    };
    // The slow replica's claim expires while its vendor call is still out.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let Claim::Ours(other_ticket) = other.claim(&keys, Duration::from_secs(5)).await else {
        panic!("the expired claim is free for another replica")
    };
    slow.release(&keys, &slow_ticket).await;
    assert_eq!(claims(&redis).len(), 1, "the slow replica did not delete the claim it no longer holds");
    assert_eq!(third.claim(&keys, Duration::from_secs(5)).await, Claim::Taken, "so a third replica waits");

    other.put(&keys, b"the rotated session").await;
    other.release(&keys, &other_ticket).await;
    assert!(claims(&redis).is_empty(), "the holder deleted its own claim");
    // A replica that looked before the result was stored, and claims after:
    // the claim hands it the result instead of the vendor call.
    assert_eq!(third.claim(&keys, Duration::from_secs(5)).await, Claim::Stored(b"the rotated session".to_vec()));
    assert!(claims(&redis).is_empty(), "nothing was claimed over a stored result");
    eprintln!(
        "figure: expired claim released late by its first holder: 1 of 1 claims survived; claim over a stored result: 0 vendor calls"
    );
}

#[tokio::test]
async fn a_refresh_cancelled_by_its_caller_leaves_no_claim_and_its_result_reaches_the_other_replica() {
    let redis = RedisServer::start(Mode::Plain);
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let dir = std::env::temp_dir().join(format!("mtr-sso-claims-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tenants = dir.join("tenants.toml");
    let base = sandbox.base_url().as_str().trim_end_matches('/');
    std::fs::write(
        &tenants,
        format!(
            "[tenants.default]\nbroker_api_url = \"{base}\"\nplatform_url = \"{base}\"\napi_key = \"{SANDBOX_API_KEY}\"\nbroker_id = \"{DEMO_BROKER_ID}\"\n"
        ),
    )
    .expect("write");
    let (first, second) =
        (common::replica(&tenants, &redis.gateway_args(), &[]), common::replica(&tenants, &redis.gateway_args(), &[]));
    let mut clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    let session = clients[0].login(login).await.expect("login").into_inner().session.expect("session");
    let refresh = || RefreshRequest { refresh_token: session.refresh_token.clone(), ..Default::default() };

    sandbox.set_switches(Switches { latency: Duration::from_millis(400), ..Switches::default() });
    let cancelled = tokio::time::timeout(Duration::from_millis(100), clients[0].refresh(refresh())).await;
    assert!(cancelled.is_err(), "the first caller cancelled");
    assert_eq!(claims(&redis).len(), 1, "the vendor call it started goes on, under its claim");
    let renewed = clients[1].refresh(common::with_deadline(refresh(), Duration::from_secs(3))).await;
    let renewed = renewed.expect("the other replica's caller gets the result").into_inner().session.expect("session");
    assert_ne!(renewed.refresh_token, session.refresh_token, "a rotated session");
    assert_eq!(sandbox.stats().get("refresh").copied(), Some(1), "one vendor call for both");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(claims(&redis).is_empty(), "no claim is left behind: {:?}", claims(&redis));
    eprintln!(
        "figure: Refresh cancelled mid-call on one replica: 1 vendor call, the other replica's caller OK, 0 claims left"
    );
}
