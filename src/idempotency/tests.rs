//! The idempotency store in memory: claims, owners, sealed outcomes.

use super::*;

const LONGEST_RUN: Duration = Duration::from_secs(5);

fn request(text: &str) -> RequestIdentity {
    RequestIdentity::new(text.as_bytes().to_vec())
}

/// One call's hold on `key`: every call derives its own, with its own owner.
fn call(key: &str) -> ScopedKey {
    scoped_key("acme", "billing", key)
}

fn stored_entry<T>(store: &Idempotency, key: &ScopedKey, read: impl FnOnce(&Entry) -> T) -> T {
    let Store::Memory(entries) = &store.store else { unreachable!() };
    read(entries.lock().expect("lock").get(key.keys.lookup()).expect("an entry"))
}

#[tokio::test]
async fn a_key_runs_once_and_then_replays_or_refuses_a_different_request() {
    let store = Idempotency::in_memory(Duration::from_secs(60), LONGEST_RUN);
    let first = call("k");
    assert!(matches!(store.claim(&first, &request("f1")).await, Ok(Claim::Run)));
    assert!(matches!(store.claim(&call("k"), &request("f1")).await, Ok(Claim::InProgress)));
    assert!(matches!(store.claim(&call("k"), &request("f2")).await, Ok(Claim::Mismatch)));
    let outcome = Outcome::Created(crate::hex::encode(b"response"));
    store.complete(&first, &request("f1"), outcome.clone()).await;
    assert!(matches!(store.claim(&call("k"), &request("f1")).await, Ok(Claim::Done(o)) if o == outcome));
    assert!(matches!(store.claim(&call("k"), &request("f2")).await, Ok(Claim::Mismatch)));
    let again = call("other");
    assert!(matches!(store.claim(&again, &request("f1")).await, Ok(Claim::Run)));
    store.release(&again).await;
    assert!(matches!(store.claim(&call("other"), &request("f1")).await, Ok(Claim::Run)), "released keys run again");
}

#[tokio::test]
async fn keys_are_scoped_to_tenant_and_caller_and_name_neither_nor_the_key() {
    let lookup = |tenant: &str, caller: &str| scoped_key(tenant, caller, "signup-42").keys.lookup().to_string();
    assert_eq!(lookup("acme", "billing"), lookup("acme", "billing"), "every call and replica agrees");
    assert_ne!(lookup("acme", "billing"), lookup("globex", "billing"));
    assert_ne!(lookup("acme", "billing"), lookup("acme", "crm"));
    assert_ne!(lookup("ab", "c"), lookup("a", "bc"), "no two tenant and caller pairs meet");
    for clear in ["signup-42", "acme", "billing"] {
        assert!(!lookup("acme", "billing").contains(&crate::hex::encode(clear.as_bytes())));
    }
}

#[tokio::test]
async fn a_claim_lives_as_long_as_the_longest_run_the_settings_allow() {
    // A run longer than the old fixed minute: its claim must not expire first.
    let longest_run = Duration::from_secs(90);
    let store = Idempotency::in_memory(Duration::from_secs(2 * 3600), longest_run);
    let key = call("k");
    let claimed_at = Instant::now();
    assert!(matches!(store.claim(&key, &request("f")).await, Ok(Claim::Run)));
    let expires = stored_entry(&store, &key, Entry::expires);
    assert!(expires >= claimed_at + longest_run, "the claim outlives the longest run");
    assert!(expires <= Instant::now() + longest_run + CLAIM_MARGIN, "and a dead run blocks its key no longer");
}

#[tokio::test]
async fn only_the_owner_of_a_claim_releases_or_completes_it() {
    let store = Idempotency::in_memory(Duration::from_secs(60), LONGEST_RUN);
    let owner = call("k");
    assert!(matches!(store.claim(&owner, &request("f")).await, Ok(Claim::Run)));
    let stranger = call("k");
    store.release(&stranger).await;
    assert!(matches!(store.claim(&call("k"), &request("f")).await, Ok(Claim::InProgress)), "still claimed");
    store.complete(&stranger, &request("f"), Outcome::Created("01".into())).await;
    assert!(matches!(store.claim(&call("k"), &request("f")).await, Ok(Claim::InProgress)), "not completed");
    store.complete(&owner, &request("f"), Outcome::Created("02".into())).await;
    assert!(matches!(store.claim(&call("k"), &request("f")).await, Ok(Claim::Done(Outcome::Created(o))) if o == "02"));
}

#[tokio::test]
async fn a_stored_outcome_is_sealed_and_a_tampered_one_is_refused() {
    let store = Idempotency::in_memory(Duration::from_secs(60), LONGEST_RUN);
    let key = call("k");
    assert!(matches!(store.claim(&key, &request("f")).await, Ok(Claim::Run)));
    let secret = crate::hex::encode(b"ott-secret-token");
    store.complete(&key, &request("f"), Outcome::Created(secret.clone())).await;
    let (fingerprint, sealed) = stored_entry(&store, &key, |entry| match entry {
        Entry::Done { fingerprint, sealed, .. } => (fingerprint.clone(), sealed.clone()),
        Entry::Running { .. } => panic!("completed"),
    });
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()), "sealed, not in clear");
    assert_ne!(fingerprint, crate::hex::encode(b"f"), "the request is kept only as a keyed hash");
    assert!(
        matches!(store.claim(&call("k"), &request("f")).await, Ok(Claim::Done(Outcome::Created(o))) if o == secret)
    );

    let Store::Memory(entries) = &store.store else { unreachable!() };
    if let Some(Entry::Done { sealed, .. }) = entries.lock().expect("lock").get_mut(key.keys.lookup()) {
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
    }
    assert!(store.claim(&call("k"), &request("f")).await.is_err(), "a tampered outcome is refused, not replayed");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
    assert_eq!(store.wait(&call("k"), &request("f"), deadline).await, Ok(None), "and a waiter does not get it");
}

#[tokio::test]
async fn a_waiter_gets_the_outcome_when_the_running_call_completes() {
    let store = std::sync::Arc::new(Idempotency::in_memory(Duration::from_secs(60), LONGEST_RUN));
    let owner = call("k");
    assert!(matches!(store.claim(&owner, &request("f")).await, Ok(Claim::Run)));
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store.wait(&call("k"), &request("f"), tokio::time::Instant::now() + Duration::from_secs(5)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.complete(&owner, &request("f"), Outcome::Created("00".into())).await;
    assert_eq!(waiter.await.expect("task"), Ok(Some(Outcome::Created("00".into()))));
}
