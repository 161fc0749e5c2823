//! The refresh reuse window across replicas: two gateway processes sharing a
//! Redis (TLS with a password, as managed services run it) make one vendor
//! call for fifty concurrent refreshes of one token, and what they store
//! holds no token in clear: a dump of the whole dataset, taken inside the
//! window, contains none of the session's tokens or cookie values.

use crate::{common, redis_server};
use mtr_sso::{
    proto::{LoginRequest, sso_service_client::SsoServiceClient},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, Sandbox, SandboxOptions},
};
use redis_server::{Mode, RedisServer};
use std::time::Instant;

#[tokio::test]
async fn two_gateways_sharing_redis_make_one_vendor_call_and_store_no_token_in_clear() {
    let redis = RedisServer::start(Mode::TlsWithPassword);
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let tenants = common::sandbox_tenants_file(&sandbox, "reuse");
    let (first, second) =
        (common::replica(&tenants, &redis.gateway_args(), &[]), common::replica(&tenants, &redis.gateway_args(), &[]));
    let clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    let session = clients[0].clone().login(login).await.expect("login").into_inner().session.expect("session");

    let started = Instant::now();
    let renewed = common::refresh_concurrently(&clients, &session.refresh_token, 50).await;
    let elapsed = started.elapsed();
    assert_eq!(sandbox.stats().get("refresh").copied(), Some(1), "the vendor saw one refresh from both replicas");
    assert!(renewed.iter().all(|s| s.access_token == renewed[0].access_token), "one session for all fifty");
    eprintln!(
        "figure: 2 gateway processes, TLS Redis, 50 concurrent Refresh of one token: 50 OK, 1 vendor call, {elapsed:?}"
    );

    let dump = redis.dump();
    let keys = redis.keys();
    assert!(keys.iter().any(|k| k.starts_with("mtr-sso:refresh-reuse:")), "the result is stored: {keys:?}");
    assert!(dump.windows(22).any(|w| w == b"mtr-sso:refresh-reuse:"), "the dump holds the stored result");
    let mut secrets = vec![session.access_token.clone(), session.refresh_token.clone()];
    secrets.extend([renewed[0].access_token.clone(), renewed[0].refresh_token.clone()]);
    secrets.extend(session.cookies.iter().chain(&renewed[0].cookies).map(|c| c.value.clone()));
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(!dump.windows(secret.len()).any(|w| w == secret.as_bytes()), "a token in clear in the dump");
        assert!(keys.iter().all(|k| !k.contains(secret.as_str())), "a token in a key");
    }
    eprintln!(
        "figure: Redis dump of {} bytes inside the window: 0 of {} tokens and cookie values in clear",
        dump.len(),
        secrets.len()
    );
}

/// A Refresh made while Redis is out is kept by its replica alone; once
/// Redis is back (and does not have it), a repeat on that replica within the
/// window still gets the same session, not the vendor's refusal of the
/// rotated token.
#[tokio::test]
async fn a_refresh_made_while_redis_was_out_is_handed_again_once_redis_is_back() {
    use mtr_sso::proto::RefreshRequest;
    let mut redis = RedisServer::start(Mode::Plain);
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let tenants = common::sandbox_tenants_file(&sandbox, "reuse-outage");
    let gateway = common::replica(&tenants, &redis.gateway_args(), &[]);
    let mut client = SsoServiceClient::new(common::channel(gateway.grpc_addr()).await);
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    let session = client.login(login).await.expect("login").into_inner().session.expect("session");
    let refresh = || RefreshRequest { refresh_token: session.refresh_token.clone(), ..Default::default() };

    redis.stop();
    let during = client.refresh(refresh()).await.expect("refreshed while Redis is out").into_inner();
    redis.restart();
    // The replica's probe finds Redis back within a fraction of a second.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let repeat = client.refresh(refresh()).await.expect("the repeat within the window").into_inner();
    assert_eq!(
        repeat.session.expect("session").access_token,
        during.session.expect("session").access_token,
        "the same session as the refresh made during the outage"
    );
    assert_eq!(sandbox.stats().get("refresh").copied(), Some(1), "one refresh reached the vendor");
}
