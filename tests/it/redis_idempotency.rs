//! CreateAccount idempotency keys in a real Redis hold nothing usable: a
//! dump of the whole dataset, taken inside the window, contains none of the
//! answers' tokens, cookie values, emails or passwords, nor the keys, while
//! a retry with the same key still gets the same answer through Redis. A
//! claim lives as long as the longest run the settings allow, only its owner
//! gives it up or completes it, and a tampered outcome is refused.

use crate::{common, redis_server};
use mtr_sso::{
    idempotency::{Claim, Idempotency, Outcome, RequestIdentity, scoped_key},
    proto::{CreateAccountRequest, CreateAccountResponse, sso_service_client::SsoServiceClient},
    sandbox::{Sandbox, SandboxOptions},
};
use redis_server::{Mode, RedisServer};
use std::time::Duration;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

/// Every secret an answer hands out: tokens, cookie values, and the link.
fn secrets_of(response: &CreateAccountResponse) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(link) = &response.login_link {
        secrets.extend([link.one_time_token.clone(), link.redirect_url.clone()]);
    }
    if let Some(session) = &response.session {
        secrets.extend([session.access_token.clone(), session.refresh_token.clone()]);
        secrets.extend(session.cookies.iter().map(|c| c.value.clone()));
    }
    secrets
}

#[tokio::test]
async fn a_redis_dump_inside_the_idempotency_window_holds_none_of_the_answers_secrets() {
    let redis = RedisServer::start(Mode::TlsWithPassword);
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let tenants = common::sandbox_tenants_file(&sandbox, "idem-dump");
    let (first, second) =
        (common::replica(&tenants, &redis.gateway_args(), &[]), common::replica(&tenants, &redis.gateway_args(), &[]));
    let clients = [
        SsoServiceClient::new(common::channel(first.grpc_addr()).await),
        SsoServiceClient::new(common::channel(second.grpc_addr()).await),
    ];
    let requests = [
        CreateAccountRequest {
            idempotency_key: "signup-link-5f2c".into(),
            password: "Link-pass-9431!".into(),
            ..common::new_account("link.user@example.com")
        },
        CreateAccountRequest {
            idempotency_key: "signup-session-8e1d".into(),
            password: "Session-pass-2217!".into(),
            start_session: true,
            ..common::new_account("session.user@example.com")
        },
    ];

    let mut secrets = Vec::new();
    for request in &requests {
        let answer = clients[0].clone().create_account(request.clone()).await.expect("created").into_inner();
        let replayed = clients[1].clone().create_account(request.clone()).await.expect("replayed").into_inner();
        assert_eq!(replayed, answer, "a retry on the other replica gets the same answer through Redis");
        let found = secrets_of(&answer);
        assert!(found.len() >= if request.start_session { 3 } else { 2 }, "the answer has secrets: {found:?}");
        secrets.extend(found);
        secrets.extend([request.email.clone(), request.password.clone(), request.idempotency_key.clone()]);
    }
    assert_eq!(sandbox.stats().get("create_account").copied(), Some(2), "one creation per key");

    let keys = redis.keys();
    let stored: Vec<_> = keys.iter().filter(|k| k.starts_with("mtr-sso:idempotency:")).collect();
    assert_eq!(stored.len(), 2, "both outcomes are stored: {keys:?}");
    let dump = redis.dump();
    assert!(dump.windows(20).any(|w| w == b"mtr-sso:idempotency:"), "the dump holds the stored outcomes");
    let mut in_clear = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        let hex = mtr_sso::hex::encode(secret.as_bytes());
        for form in [secret.as_str(), hex.as_str()] {
            if dump.windows(form.len()).any(|w| w == form.as_bytes()) || keys.iter().any(|k| k.contains(form)) {
                in_clear.push(secret.clone());
            }
        }
    }
    assert!(in_clear.is_empty(), "secrets in clear in the dump, as text or hex: {in_clear:?}");
    eprintln!(
        "figure: Redis dump of {} bytes inside the idempotency window: 0 of {} secrets (tokens, cookies, link, email, password, key) in clear or as hex",
        dump.len(),
        secrets.len()
    );
}

#[tokio::test]
async fn a_claim_outlives_the_longest_run_the_settings_allow() {
    let redis = RedisServer::start(Mode::Plain);
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/accounts"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"uuid": "acc-slow", "oneTimeToken": "ott-slow"}))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&upstream)
        .await;
    let tenants = common::tenants_file(
        "idem-ttl",
        &format!(
            "[tenants.default]\nbroker_api_url = \"{0}\"\nplatform_url = \"{0}\"\napi_key = \"k\"\n",
            upstream.uri()
        ),
    );
    // A run may last 75 s: longer than the fixed minute a claim used to live.
    let gateway = common::replica(&tenants, &redis.gateway_args(), &["--upstream-timeout", "75s"]);
    let mut client = SsoServiceClient::new(common::channel(gateway.grpc_addr()).await);
    let request =
        CreateAccountRequest { idempotency_key: "signup-ttl".into(), ..common::new_account("slow@example.com") };
    let call = tokio::spawn(async move { client.create_account(request).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let claim = redis.keys().into_iter().find(|k| k.starts_with("mtr-sso:idempotency:")).expect("claimed");
    let ttl_ms: u64 = redis.cli(&["PTTL", &claim]).parse().expect("a TTL");
    assert!(ttl_ms > 75_000, "the claim outlives a 75 s run: {ttl_ms} ms left");
    let value = redis.cli(&["GET", &claim]);
    assert!(value.starts_with("claim:"), "still running: {value}");
    eprintln!("figure: --upstream-timeout 75s: the claim lives {ttl_ms} ms (was 60000)");
    call.await.expect("task").expect("created");
}

async fn store_on(redis: &RedisServer) -> Idempotency {
    Idempotency::redis(redis.shared().await, Duration::from_secs(3600), Duration::from_secs(30))
}

#[tokio::test]
async fn only_the_owner_of_a_claim_in_redis_gives_it_up_or_completes_it() {
    let redis = RedisServer::start(Mode::Plain);
    let store = store_on(&redis).await;
    let request = || RequestIdentity::new(b"the request".to_vec());
    let owner = scoped_key("acme", "billing", "k-1");
    assert!(matches!(store.claim(&owner, &request()).await, Ok(Claim::Run)));
    let stranger = scoped_key("acme", "billing", "k-1");
    assert!(matches!(store.claim(&stranger, &request()).await, Ok(Claim::InProgress)));
    store.release(&stranger).await;
    store.complete(&stranger, &request(), Outcome::Created("01".into())).await;
    let [key] = redis.keys().try_into().expect("one key");
    assert!(redis.cli(&["GET", &key]).starts_with("claim:"), "a stranger neither deleted nor completed the claim");
    assert!(matches!(store.claim(&scoped_key("acme", "billing", "k-1"), &request()).await, Ok(Claim::InProgress)));

    store.complete(&owner, &request(), Outcome::Created("02".into())).await;
    let replayed = store.claim(&scoped_key("acme", "billing", "k-1"), &request()).await;
    assert!(matches!(replayed, Ok(Claim::Done(Outcome::Created(ref o))) if o == "02"), "{replayed:?}");
    store.release(&owner).await;
    assert!(redis.cli(&["GET", &key]).starts_with("done:"), "an outcome is not a claim to give up");
}

#[tokio::test]
async fn a_tampered_outcome_in_redis_is_refused() {
    let redis = RedisServer::start(Mode::Plain);
    let store = store_on(&redis).await;
    let request = || RequestIdentity::new(b"the request".to_vec());
    let owner = scoped_key("acme", "billing", "k-2");
    assert!(matches!(store.claim(&owner, &request()).await, Ok(Claim::Run)));
    store.complete(&owner, &request(), Outcome::Created(mtr_sso::hex::encode(b"ott-secret"))).await;
    let [key] = redis.keys().try_into().expect("one key");
    let stored = redis.cli(&["GET", &key]);
    let (head, sealed) = stored.rsplit_once(':').expect("done:<fingerprint>:<sealed>");
    // Another key's sealed outcome, moved under this key, is refused too: it is bound to its key.
    let other = scoped_key("acme", "billing", "k-3");
    assert!(matches!(store.claim(&other, &request()).await, Ok(Claim::Run)));
    store.complete(&other, &request(), Outcome::Created("00".into())).await;
    let other_key = redis.keys().into_iter().find(|k| *k != key).expect("the other key");
    let other_sealed = redis.cli(&["GET", &other_key]).rsplit_once(':').expect("sealed").1.to_string();
    let flipped = format!("{}{}", &sealed[..sealed.len() - 1], if sealed.ends_with('0') { '1' } else { '0' });
    for damaged in [flipped, other_sealed] {
        assert_eq!(redis.cli(&["SET", &key, &format!("{head}:{damaged}"), "KEEPTTL"]), "OK");
        let claim = store.claim(&scoped_key("acme", "billing", "k-2"), &request()).await;
        assert!(claim.is_err(), "refused, not replayed: {claim:?}");
    }
}

/// A proxy in front of Redis that, once, passes a claim (`SET … NX`) on and
/// then cuts the connection before its answer comes back: a lost answer.
async fn proxy_losing_one_claim_answer(redis_port: u16) -> u16 {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let lose_next = std::sync::Arc::new(AtomicBool::new(true));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", redis_port)).await.expect("redis");
            let lose_next = lose_next.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let answers = tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                    let _ = server_write.write_all(&buf[..n]).await;
                    if buf[..n].windows(2).any(|w| w == b"NX") && lose_next.swap(false, Ordering::SeqCst) {
                        // Redis takes the claim; its answer never reaches the caller.
                        answers.abort();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_given_up_so_a_retry_runs() {
    let redis = RedisServer::start(Mode::Plain);
    let port = proxy_losing_one_claim_answer(redis.port).await;
    let connection = redis_server::shared_at(&format!("redis://127.0.0.1:{port}")).await;
    let store = Idempotency::redis(connection, Duration::from_secs(3600), Duration::from_secs(30));
    let request = || RequestIdentity::new(b"the request".to_vec());

    let lost = store.claim(&scoped_key("acme", "billing", "k-lost"), &request()).await;
    assert!(lost.is_err(), "the claim's answer was lost: {lost:?}");
    // The lost answer (a dropped connection) marks Redis out: the claim is
    // given up as soon as Redis answers again, well within a second.
    let given_up = std::time::Instant::now() + Duration::from_secs(1);
    let mut left: Vec<_> = Vec::new();
    while std::time::Instant::now() < given_up {
        left = redis.keys().into_iter().filter(|k| k.starts_with("mtr-sso:idempotency:")).collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(left.is_empty(), "the claim Redis took was given up: {left:?}");
    let retry = store.claim(&scoped_key("acme", "billing", "k-lost"), &request()).await;
    assert!(
        matches!(retry, Ok(Claim::Run)),
        "a retry runs at once rather than waiting for a run that never started: {retry:?}"
    );
}
