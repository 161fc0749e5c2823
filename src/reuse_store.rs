//! Refresh results remembered for the reuse window, in memory or in Redis,
//! so that a repeat with the same refresh token (which the platform has
//! rotated away) gets the same new session instead of a refusal.
//!
//! What is stored is useless to whoever reads the store. Both keys come from
//! the refresh token itself ([`crate::sealing`]): the lookup key names the
//! entry (without the token it cannot be computed or reversed), the sealing
//! key encrypts the stored answer, bound to its lookup key. Only a caller
//! holding the refresh token can find or read an entry, and no secret has to
//! be shared between replicas.
//!
//! Both Redis keys of one token (its result and its claim) carry the lookup
//! key as their hash tag, so the claim script touches one slot of a Redis
//! Cluster. Each replica also keeps what it stores in memory: while Redis is
//! out, the window holds within that replica.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::{redis_connection::SharedRedis, sealing};

/// Key prefix of stored results in Redis.
const RESULT_PREFIX: &str = "mtr-sso:refresh-reuse:";
/// Key prefix of the claim a replica holds while it calls the vendor.
const CLAIM_PREFIX: &str = "mtr-sso:refresh-claim:";
/// The HKDF salt: fixed, so that every replica derives the same keys.
const SALT: &[u8] = b"mtr-sso refresh reuse v1";

/// The keys one refresh token yields, for one tenant.
#[derive(Debug)]
pub struct SealingKeys(sealing::Keys);

impl SealingKeys {
    /// Derives the keys of `refresh_token` within `tenant`: the same token of
    /// two tenants never meets in the store.
    pub fn derive(tenant: &str, refresh_token: &[u8]) -> Self {
        Self(sealing::Keys::derive(SALT, refresh_token, tenant.as_bytes()))
    }

    /// The entry's name in the store.
    pub fn lookup(&self) -> &str {
        self.0.lookup()
    }

    /// `plaintext` encrypted under a fresh random nonce, bound to the lookup key.
    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        self.0.seal(plaintext)
    }

    /// The plaintext of a stored value; `None` if it was not sealed with these keys.
    fn open(&self, stored: &[u8]) -> Option<Vec<u8>> {
        self.0.open(stored)
    }
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Call the vendor, then [`ReuseStore::put`] and [`ReuseStore::release`] with this.
    Ours(ClaimTicket),
    /// Another replica is calling the vendor for this token: wait for its result.
    Taken,
    /// A result was stored after all, by a replica that finished between
    /// this one's look and its claim: here it is, opened. Nothing was claimed.
    Stored(Vec<u8>),
}

/// Proof of holding a claim: the random value stored in it, so that only its
/// holder deletes it, never a claim another replica took once this one's expired.
#[derive(Debug, PartialEq, Eq)]
pub struct ClaimTicket {
    /// `None` where no claim was stored (in memory, or Redis unavailable).
    value: Option<String>,
}

/// Takes the claim only where no result is stored yet, in one step: a
/// replica never wins a claim for a call another one has just finished.
/// Answers `{1, result}`, `{2}` (claimed) or `{3}` (taken).
const CLAIM_SCRIPT: &str = r"
local stored = redis.call('GET', KEYS[1])
if stored then return {1, stored} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3}
";

/// Deletes the claim only while it still holds the caller's value.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The Redis key of the stored result and of the claim for `keys`; both
/// hash on the lookup key alone (`{...}`), so they share a cluster slot.
fn result_key(keys: &SealingKeys) -> String {
    format!("{RESULT_PREFIX}{{{}}}", keys.lookup())
}

fn claim_key(keys: &SealingKeys) -> String {
    format!("{CLAIM_PREFIX}{{{}}}", keys.lookup())
}

enum Store {
    Memory,
    Redis(SharedRedis),
}

/// Sealed results for the reuse window.
pub struct ReuseStore {
    store: Store,
    /// This replica's results: the store itself without Redis, its fallback while Redis is out.
    local: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    window: Duration,
}

impl std::fmt::Debug for ReuseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.store {
            Store::Memory => "memory",
            Store::Redis(_) => "redis",
        };
        f.debug_struct("ReuseStore").field("store", &store).field("window", &self.window).finish()
    }
}

impl ReuseStore {
    /// Results kept in this process for `window`.
    pub fn in_memory(window: Duration) -> Self {
        Self { store: Store::Memory, local: Mutex::new(HashMap::new()), window }
    }

    /// Results kept in Redis for `window`, shared by every replica.
    pub fn redis(connection: SharedRedis, window: Duration) -> Self {
        Self { store: Store::Redis(connection), local: Mutex::new(HashMap::new()), window }
    }

    /// Whether other replicas see what this one stores.
    pub fn is_shared(&self) -> bool {
        matches!(self.store, Store::Redis(_))
    }

    /// The remembered result for `keys`, opened.
    pub async fn get(&self, keys: &SealingKeys) -> Option<Vec<u8>> {
        let stored = match &self.store {
            Store::Memory => self.get_local(keys)?,
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let answer: Result<Option<Vec<u8>>, _> =
                    redis::cmd("GET").arg(result_key(keys)).query_async(&mut connection).await;
                match answer {
                    Ok(Some(stored)) => stored,
                    // Not in Redis: a result this replica stored while Redis was
                    // out (its SET failed) is still within the window here.
                    Ok(None) => self.get_local(keys)?,
                    // Redis is out (the connection says so once): this replica's own results.
                    Err(_) => self.get_local(keys)?,
                }
            }
        };
        let opened = keys.open(&stored);
        if opened.is_none() {
            tracing::warn!("a stored refresh result did not open with its keys; ignoring it");
        }
        opened
    }

    fn get_local(&self, keys: &SealingKeys) -> Option<Vec<u8>> {
        let entries = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let (stored, expires) = entries.get(keys.lookup())?;
        (*expires > Instant::now()).then(|| stored.clone())
    }

    /// Remembers `plaintext` for the window, sealed: in this replica, and in
    /// Redis for every replica.
    pub async fn put(&self, keys: &SealingKeys, plaintext: &[u8]) {
        let Some(sealed) = keys.seal(plaintext) else { return };
        {
            let mut entries = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            entries.retain(|_, (_, expires)| *expires > now);
            entries.insert(keys.lookup().to_string(), (sealed.clone(), now + self.window));
        }
        if let Store::Redis(connection) = &self.store {
            let mut connection = connection.clone();
            let stored: Result<(), _> = redis::cmd("SET")
                .arg(result_key(keys))
                .arg(sealed)
                .arg("PX")
                .arg(self.window.as_millis().max(1) as u64)
                .query_async(&mut connection)
                .await;
            if let Err(error) = stored {
                tracing::debug!(%error, "could not share a refresh result; it holds within this replica");
            }
        }
    }

    /// Claims the vendor call for `keys` for at most `hold`, so that one
    /// replica calls while the others wait for its result; a result stored
    /// meanwhile is looked for once more as the claim is taken. In one
    /// process the single flight above already does this, so memory always
    /// says [`Claim::Ours`]; so does an unavailable Redis, which must not stop sign-in.
    pub async fn claim(&self, keys: &SealingKeys, hold: Duration) -> Claim {
        let unclaimed = Claim::Ours(ClaimTicket { value: None });
        let Store::Redis(connection) = &self.store else { return unclaimed };
        let Some(value) = sealing::random_token() else { return unclaimed };
        let mut connection = connection.clone();
        let answer: Result<redis::Value, _> = redis::Script::new(CLAIM_SCRIPT)
            .key(result_key(keys))
            .key(claim_key(keys))
            .arg(&value)
            .arg(hold.as_millis().max(1) as u64)
            .invoke_async(&mut connection)
            .await;
        let answer = match answer {
            Ok(redis::Value::Array(answer)) => answer,
            Ok(other) => {
                tracing::warn!(answer = ?other, "refresh reuse store answered a claim strangely; calling the vendor");
                return unclaimed;
            }
            // Redis is out: this replica calls, its single flight still joins its own callers.
            Err(_) => return unclaimed,
        };
        match answer.as_slice() {
            [redis::Value::Int(1), redis::Value::BulkString(stored)] => match keys.open(stored) {
                Some(opened) => Claim::Stored(opened),
                None => {
                    tracing::warn!("a stored refresh result did not open with its keys; calling the vendor");
                    unclaimed
                }
            },
            [redis::Value::Int(2)] => Claim::Ours(ClaimTicket { value: Some(value) }),
            _ => Claim::Taken,
        }
    }

    /// Gives the claim up once the result is stored, or the call failed; a
    /// claim that expired and was taken by another replica is left to it.
    pub async fn release(&self, keys: &SealingKeys, ticket: &ClaimTicket) {
        let (Store::Redis(connection), Some(value)) = (&self.store, &ticket.value) else { return };
        let mut connection = connection.clone();
        let released: Result<i64, _> =
            redis::Script::new(RELEASE_SCRIPT).key(claim_key(keys)).arg(value).invoke_async(&mut connection).await;
        if let Err(error) = released {
            tracing::warn!(%error, "could not release a refresh claim; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_token_and_the_tenant_and_reveal_neither() {
        let keys = SealingKeys::derive("acme", b"rt-secret-1");
        assert_eq!(keys.lookup(), SealingKeys::derive("acme", b"rt-secret-1").lookup(), "replicas agree");
        assert_ne!(keys.lookup(), SealingKeys::derive("acme", b"rt-secret-2").lookup());
        assert_ne!(keys.lookup(), SealingKeys::derive("globex", b"rt-secret-1").lookup());
        assert!(!keys.lookup().contains(&crate::hex::encode(b"rt-secret-1")));
        assert_eq!(keys.lookup().len(), 64);
    }

    #[test]
    fn a_sealed_value_opens_only_with_the_keys_of_its_token_and_hides_its_content() {
        let keys = SealingKeys::derive("acme", b"rt-secret");
        let sealed = keys.seal(b"new-access-token").expect("sealed");
        assert!(!sealed.windows(16).any(|w| w == b"new-access-token"));
        assert_eq!(keys.open(&sealed).as_deref(), Some(&b"new-access-token"[..]));
        assert_eq!(SealingKeys::derive("acme", b"another").open(&sealed), None);
        let mut tampered = sealed.clone();
        tampered[sealing::NONCE_LEN + 1] ^= 1;
        assert_eq!(keys.open(&tampered), None);
        assert_ne!(keys.seal(b"new-access-token"), Some(sealed), "every seal has a fresh nonce");
    }

    #[tokio::test]
    async fn a_result_is_remembered_for_the_window_and_then_forgotten() {
        let store = ReuseStore::in_memory(Duration::from_millis(50));
        let keys = SealingKeys::derive("acme", b"rt");
        assert_eq!(store.get(&keys).await, None);
        assert!(matches!(store.claim(&keys, Duration::from_secs(1)).await, Claim::Ours(_)));
        store.put(&keys, b"session").await;
        assert_eq!(store.get(&keys).await.as_deref(), Some(&b"session"[..]));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(store.get(&keys).await, None);
    }
}
