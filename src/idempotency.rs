//! Idempotent account creation. The first CreateAccount with a key claims it
//! and runs; a retry with the same key within the window waits for that run
//! or replays its outcome, so the vendor sees one creation. Outcomes that mean
//! "nothing was created" (the call was never sent, or was refused for a reason
//! that may pass) release the key instead, so a retry runs again. Claims live
//! in memory, or in Redis so that a retry reaching another replica finds them.

use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// A stored outcome: the encoded response, or the status that was returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The encoded `CreateAccountResponse`, as hex.
    Created(String),
    /// A final error: gRPC code, message and encoded details, as hex.
    Failed { code: i32, message: String, details: String },
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The key is ours: run, then [`Idempotency::complete`] or [`Idempotency::release`].
    Run,
    /// Another call with this key is running; wait for its outcome.
    InProgress,
    /// A call with this key finished: its outcome.
    Done(Outcome),
    /// The key was used for a different request.
    Mismatch,
}

enum Entry {
    Running { fingerprint: String, done: watch::Sender<Option<Outcome>>, expires: Instant },
    Done { fingerprint: String, outcome: Outcome, expires: Instant },
}

impl Entry {
    fn expires(&self) -> Instant {
        match self {
            Entry::Running { expires, .. } | Entry::Done { expires, .. } => *expires,
        }
    }
}

enum Store {
    Memory(Mutex<HashMap<String, Entry>>),
    Redis(redis::aio::ConnectionManager),
}

/// Idempotency keys and their outcomes.
pub struct Idempotency {
    store: Store,
    window: Duration,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        };
        f.debug_struct("Idempotency").field("store", &store).field("window", &self.window).finish()
    }
}

const REDIS_PREFIX: &str = "mtr-sso:idempotency:";
/// How long a claim may stay "running" without an outcome. A run is bounded
/// by the upstream timeout, so a claim older than this belongs to a replica
/// that died mid-run; its key must not stay blocked for the whole window.
const RUNNING_TTL: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// The storage key for a caller's key: hashed, so no caller data is stored.
pub fn scoped_key(tenant: &str, caller: &str, key: &str) -> String {
    sha1_smol::Sha1::from(format!("{tenant}\u{0}{caller}\u{0}{key}")).digest().to_string()
}

impl Idempotency {
    /// Keys kept in this process for `window`.
    pub fn in_memory(window: Duration) -> Self {
        Self { store: Store::Memory(Mutex::new(HashMap::new())), window }
    }

    /// Keys kept in Redis for `window`, shared by every replica.
    pub fn redis(connection: redis::aio::ConnectionManager, window: Duration) -> Self {
        Self { store: Store::Redis(connection), window }
    }

    /// Claims `key` for a request with `fingerprint`.
    pub async fn claim(&self, key: &str, fingerprint: &str) -> Result<Claim, String> {
        match &self.store {
            Store::Memory(entries) => {
                let mut entries = entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                entries.retain(|_, entry| entry.expires() > now);
                match entries.get(key) {
                    Some(Entry::Running { fingerprint: f, .. } | Entry::Done { fingerprint: f, .. })
                        if f != fingerprint =>
                    {
                        Ok(Claim::Mismatch)
                    }
                    Some(Entry::Running { .. }) => Ok(Claim::InProgress),
                    Some(Entry::Done { outcome, .. }) => Ok(Claim::Done(outcome.clone())),
                    None => {
                        let (done, _) = watch::channel(None);
                        entries.insert(
                            key.to_string(),
                            Entry::Running {
                                fingerprint: fingerprint.into(),
                                done,
                                expires: now + RUNNING_TTL.min(self.window),
                            },
                        );
                        Ok(Claim::Run)
                    }
                }
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let redis_key = format!("{REDIS_PREFIX}{key}");
                let running = serde_json::json!({ "fingerprint": fingerprint }).to_string();
                let claimed: Option<String> = redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(&running)
                    .arg("NX")
                    .arg("PX")
                    .arg(RUNNING_TTL.min(self.window).as_millis() as u64)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| format!("Redis: {e}"))?;
                if claimed.is_some() {
                    return Ok(Claim::Run);
                }
                read_redis(&mut connection, &redis_key, fingerprint).await
            }
        }
    }

    /// Waits until the running call with `key` has an outcome, or `deadline`.
    pub async fn wait(&self, key: &str, fingerprint: &str, deadline: tokio::time::Instant) -> Option<Outcome> {
        if let Store::Memory(entries) = &self.store {
            let receiver = {
                let entries = entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match entries.get(key) {
                    Some(Entry::Done { outcome, .. }) => return Some(outcome.clone()),
                    Some(Entry::Running { done, .. }) => done.subscribe(),
                    None => return None,
                }
            };
            let mut receiver = receiver;
            let outcome = tokio::time::timeout_at(deadline, receiver.wait_for(Option::is_some)).await.ok()?.ok()?;
            return outcome.clone();
        }
        let Store::Redis(connection) = &self.store else { return None };
        let mut connection = connection.clone();
        let redis_key = format!("{REDIS_PREFIX}{key}");
        loop {
            if let Ok(Claim::Done(outcome)) = read_redis(&mut connection, &redis_key, fingerprint).await {
                return Some(outcome);
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Records the outcome of the call that claimed `key`.
    pub async fn complete(&self, key: &str, fingerprint: &str, outcome: Outcome) {
        match &self.store {
            Store::Memory(entries) => {
                let mut entries = entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(Entry::Running { done, .. }) = entries.get(key) {
                    let _ = done.send(Some(outcome.clone()));
                }
                entries.insert(
                    key.to_string(),
                    Entry::Done { fingerprint: fingerprint.into(), outcome, expires: Instant::now() + self.window },
                );
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let value = serde_json::json!({ "fingerprint": fingerprint, "outcome": outcome }).to_string();
                let stored: Result<(), _> = redis::cmd("SET")
                    .arg(format!("{REDIS_PREFIX}{key}"))
                    .arg(value)
                    .arg("PX")
                    .arg(self.window.as_millis() as u64)
                    .query_async(&mut connection)
                    .await;
                if let Err(error) = stored {
                    tracing::warn!(%error, "could not record an idempotent outcome");
                }
            }
        }
    }

    /// Gives `key` up: nothing was created, so a retry may run again.
    pub async fn release(&self, key: &str) {
        match &self.store {
            Store::Memory(entries) => {
                let removed = entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
                if let Some(Entry::Running { done, .. }) = removed {
                    // Waiters see the sender dropped and run the request themselves on retry.
                    drop(done);
                }
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let _: Result<(), _> =
                    redis::cmd("DEL").arg(format!("{REDIS_PREFIX}{key}")).query_async(&mut connection).await;
            }
        }
    }
}

/// What a claim stored in Redis says: gone (its run was released or expired)
/// or still running, finished, or made for another request.
async fn read_redis(
    connection: &mut redis::aio::ConnectionManager,
    redis_key: &str,
    fingerprint: &str,
) -> Result<Claim, String> {
    let existing: Option<String> =
        redis::cmd("GET").arg(redis_key).query_async(connection).await.map_err(|e| format!("Redis: {e}"))?;
    let Some(existing) = existing else { return Ok(Claim::InProgress) };
    let value: serde_json::Value = serde_json::from_str(&existing).unwrap_or_default();
    if value["fingerprint"].as_str() != Some(fingerprint) {
        return Ok(Claim::Mismatch);
    }
    Ok(serde_json::from_value::<Outcome>(value["outcome"].clone()).map(Claim::Done).unwrap_or(Claim::InProgress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_runs_once_and_then_replays_or_refuses_a_different_request() {
        let store = Idempotency::in_memory(Duration::from_secs(60));
        assert!(matches!(store.claim("k", "f1").await, Ok(Claim::Run)));
        assert!(matches!(store.claim("k", "f1").await, Ok(Claim::InProgress)));
        assert!(matches!(store.claim("k", "f2").await, Ok(Claim::Mismatch)));
        let outcome = Outcome::Created(crate::hex::encode(b"response"));
        store.complete("k", "f1", outcome.clone()).await;
        assert!(matches!(store.claim("k", "f1").await, Ok(Claim::Done(o)) if o == outcome));
        store.release("k").await;
        assert!(matches!(store.claim("k", "f1").await, Ok(Claim::Run)), "released keys run again");
    }

    #[tokio::test]
    async fn a_claim_whose_run_never_finished_expires_long_before_the_window() {
        let store = Idempotency::in_memory(Duration::from_secs(2 * 3600));
        assert!(matches!(store.claim("k", "f").await, Ok(Claim::Run)));
        let Store::Memory(entries) = &store.store else { unreachable!() };
        let expires = entries.lock().expect("lock").get("k").map(Entry::expires).expect("claimed");
        assert!(expires <= Instant::now() + RUNNING_TTL, "a dead run blocks its key for at most a minute");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_outcome_when_the_running_call_completes() {
        let store = std::sync::Arc::new(Idempotency::in_memory(Duration::from_secs(60)));
        assert!(matches!(store.claim("k", "f").await, Ok(Claim::Run)));
        let waiter = {
            let store = store.clone();
            tokio::spawn(
                async move { store.wait("k", "f", tokio::time::Instant::now() + Duration::from_secs(5)).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.complete("k", "f", Outcome::Created("00".into())).await;
        assert_eq!(waiter.await.expect("task"), Some(Outcome::Created("00".into())));
    }
}
