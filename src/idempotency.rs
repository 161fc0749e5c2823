//! Idempotent account creation. The first CreateAccount with a key claims it
//! and runs; a retry with the same key within the window waits for that run
//! or replays its outcome, so the vendor sees one creation. Outcomes that mean
//! "nothing was created" (the call was never sent, or was refused for a reason
//! that may pass) release the key instead, so a retry runs again. Claims live
//! in memory, or in Redis so that a retry reaching another replica finds them.
//!
//! What is stored is useless to whoever reads the store: the entry's name, the
//! sealing key and the fingerprint key all come from the idempotency key
//! together with the tenant and the caller ([`crate::sealing`]). The outcome
//! (login tokens, session tokens, cookies, the email) is sealed, the request
//! is kept only as a keyed hash, and a replay opens the outcome or is refused.
//!
//! A claim lives as long as the longest run the settings allow, so that a
//! retry never runs beside a run still going; it names its owner with a
//! random token, and only that owner completes or gives it up.
//!
//! While Redis is out nothing is claimed or waited for: the call is refused
//! at once (`IDEMPOTENCY_STORE_UNAVAILABLE`), as a replica alone cannot tell
//! whether another one is creating the same account. An outcome that could
//! not be recorded because Redis went out mid-run is recorded again once it
//! is back, while the claim still holds the key.

mod redis_store;

use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};
use tokio::sync::watch;

use crate::{redis_connection::SharedRedis, sealing};

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

/// A caller's idempotency key within its tenant and caller, as one call
/// holds it: the keys it yields, and the random token that names this call
/// as the owner of a claim it makes.
#[derive(Debug)]
pub struct ScopedKey {
    keys: sealing::Keys,
    owner: String,
}

/// The HKDF salt: fixed, so that every replica derives the same keys.
const SALT: &[u8] = b"mtr-sso idempotency v1";

/// The key of `caller` within `tenant`. The tenant's length goes first, so
/// that no two (tenant, caller) pairs give the same context.
pub fn scoped_key(tenant: &str, caller: &str, key: &str) -> ScopedKey {
    let mut context = (tenant.len() as u64).to_be_bytes().to_vec();
    context.extend_from_slice(tenant.as_bytes());
    context.extend_from_slice(caller.as_bytes());
    ScopedKey { keys: sealing::Keys::derive(SALT, key.as_bytes(), &context), owner: owner_token() }
}

/// A fresh owner token. Without system randomness (never seen on Linux) the
/// clock and a counter still tell this process's calls apart.
fn owner_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    sealing::random_token().unwrap_or_else(|| {
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        format!("{:x}{:x}{count:x}", std::process::id(), nanos.as_nanos())
    })
}

/// What identifies a request for its key, before it is keyed: never stored,
/// only its keyed hash is ([`sealing::Keys::fingerprint`]).
pub struct RequestIdentity(Vec<u8>);

impl RequestIdentity {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for RequestIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestIdentity([redacted])")
    }
}

impl ScopedKey {
    fn fingerprint(&self, request: &RequestIdentity) -> String {
        self.keys.fingerprint(&request.0)
    }

    fn seal(&self, outcome: &Outcome) -> Option<Vec<u8>> {
        self.keys.seal(&serde_json::to_vec(outcome).ok()?)
    }

    /// The stored outcome, opened; an error if it was changed or not sealed with this key.
    fn open(&self, sealed: &[u8]) -> Result<Outcome, String> {
        self.keys
            .open(sealed)
            .and_then(|plaintext| serde_json::from_slice(&plaintext).ok())
            .ok_or_else(|| "a stored outcome did not open with its key".to_string())
    }
}

enum Entry {
    Running { fingerprint: String, owner: String, done: watch::Sender<Option<Outcome>>, expires: Instant },
    Done { fingerprint: String, sealed: Vec<u8>, expires: Instant },
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
    Redis(SharedRedis),
}

/// Idempotency keys and their outcomes.
pub struct Idempotency {
    store: Store,
    window: Duration,
    claim_ttl: Duration,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        };
        f.debug_struct("Idempotency")
            .field("store", &store)
            .field("window", &self.window)
            .field("claim_ttl", &self.claim_ttl)
            .finish()
    }
}

/// How long a claim outlives the longest run: time to record the outcome
/// once the run's deadline has passed (one Redis write), with room to spare.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// How long a claim lives when no run can last longer than `longest_run`.
/// A claim that expired while its run still went on would let a retry
/// create the account a second time; one that lives much longer only keeps
/// a key blocked after a replica died mid-run.
pub fn claim_ttl(longest_run: Duration) -> Duration {
    longest_run + CLAIM_MARGIN
}

impl Idempotency {
    /// Keys kept in this process for `window`; no run lasts longer than `longest_run`.
    pub fn in_memory(window: Duration, longest_run: Duration) -> Self {
        Self { store: Store::Memory(Mutex::new(HashMap::new())), window, claim_ttl: claim_ttl(longest_run) }
    }

    /// Keys kept in Redis for `window`, shared by every replica; no run lasts
    /// longer than `longest_run`.
    pub fn redis(connection: SharedRedis, window: Duration, longest_run: Duration) -> Self {
        Self { store: Store::Redis(connection), window, claim_ttl: claim_ttl(longest_run) }
    }

    /// Claims `key` for `request`.
    pub async fn claim(&self, key: &ScopedKey, request: &RequestIdentity) -> Result<Claim, String> {
        let fingerprint = key.fingerprint(request);
        let entries = match &self.store {
            Store::Redis(connection) => {
                return redis_store::claim(connection.clone(), key, &fingerprint, self.claim_ttl)
                    .await
                    .map_err(String::from);
            }
            Store::Memory(entries) => entries,
        };
        let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        entries.retain(|_, entry| entry.expires() > now);
        match entries.get(key.keys.lookup()) {
            Some(Entry::Running { fingerprint: f, .. } | Entry::Done { fingerprint: f, .. }) if *f != fingerprint => {
                Ok(Claim::Mismatch)
            }
            Some(Entry::Running { .. }) => Ok(Claim::InProgress),
            Some(Entry::Done { sealed, .. }) => key.open(sealed).map(Claim::Done),
            None => {
                let (done, _) = watch::channel(None);
                let owner = key.owner.clone();
                let expires = now + self.claim_ttl;
                entries.insert(key.keys.lookup().to_string(), Entry::Running { fingerprint, owner, done, expires });
                Ok(Claim::Run)
            }
        }
    }

    /// Waits until the running call with `key` has an outcome, or `deadline`.
    /// `None` also when the stored outcome does not open: a retry is then
    /// refused. `Err` at once when the store is out: waiting for it would
    /// only hold the caller until its deadline.
    pub async fn wait(
        &self,
        key: &ScopedKey,
        request: &RequestIdentity,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Outcome>, String> {
        let entries = match &self.store {
            Store::Redis(connection) => return self.wait_in_redis(connection.clone(), key, request, deadline).await,
            Store::Memory(entries) => entries,
        };
        let mut receiver = {
            let entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
            match entries.get(key.keys.lookup()) {
                Some(Entry::Done { sealed, .. }) => return Ok(opened_or_warn(key.open(sealed))),
                Some(Entry::Running { done, .. }) => done.subscribe(),
                None => return Ok(None),
            }
        };
        let Ok(Ok(outcome)) = tokio::time::timeout_at(deadline, receiver.wait_for(Option::is_some)).await else {
            return Ok(None);
        };
        Ok(outcome.clone())
    }

    async fn wait_in_redis(
        &self,
        mut connection: SharedRedis,
        key: &ScopedKey,
        request: &RequestIdentity,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Outcome>, String> {
        let fingerprint = key.fingerprint(request);
        loop {
            match redis_store::read(&mut connection, key, &fingerprint).await {
                Ok(Claim::Done(outcome)) => return Ok(Some(outcome)),
                Err(redis_store::ReadError::Refused(error)) => return Ok(opened_or_warn(Err(error))),
                Err(error @ redis_store::ReadError::Redis(_)) => return Err(error.into()),
                // Still running: look again.
                Ok(_) => {}
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Records the outcome of the call that claimed `key`, sealed. A claim
    /// that is no longer this call's (it expired and another call took the
    /// key) keeps what it holds.
    pub async fn complete(&self, key: &ScopedKey, request: &RequestIdentity, outcome: Outcome) {
        let fingerprint = key.fingerprint(request);
        let Some(sealed) = key.seal(&outcome) else {
            tracing::warn!("no randomness to seal an idempotent outcome; releasing its key");
            return self.release(key).await;
        };
        let entries = match &self.store {
            Store::Redis(connection) => {
                let record =
                    redis_store::Record { fingerprint, sealed, window: self.window, claim_ttl: self.claim_ttl };
                return redis_store::complete(connection.clone(), key, record).await;
            }
            Store::Memory(entries) => entries,
        };
        let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
        let lookup = key.keys.lookup();
        match entries.get(lookup) {
            Some(Entry::Running { owner, done, .. }) if *owner == key.owner => {
                let _ = done.send(Some(outcome));
            }
            None => {}
            Some(_) => {
                tracing::warn!("an idempotency claim changed hands during its run; its outcome is not recorded");
                return;
            }
        }
        entries.insert(lookup.to_string(), Entry::Done { fingerprint, sealed, expires: Instant::now() + self.window });
    }

    /// Gives `key` up if this call still owns its claim: nothing was created,
    /// so a retry may run again.
    pub async fn release(&self, key: &ScopedKey) {
        let entries = match &self.store {
            Store::Redis(connection) => return redis_store::release(connection.clone(), key, self.claim_ttl).await,
            Store::Memory(entries) => entries,
        };
        let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(entries.get(key.keys.lookup()), Some(Entry::Running { owner, .. }) if *owner == key.owner) {
            // Waiters see the sender dropped and run the request themselves on retry.
            entries.remove(key.keys.lookup());
        }
    }
}

fn opened_or_warn(opened: Result<Outcome, String>) -> Option<Outcome> {
    opened.map_err(|error| tracing::warn!(%error, "a stored idempotent outcome was refused")).ok()
}

#[cfg(test)]
mod tests;
