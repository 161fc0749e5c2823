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

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::sealing;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Call the vendor, then [`ReuseStore::put`] and [`ReuseStore::release`].
    Ours,
    /// Another replica is calling the vendor for this token: wait for its result.
    Taken,
}

enum Store {
    Memory(Mutex<HashMap<String, (Vec<u8>, Instant)>>),
    Redis(redis::aio::ConnectionManager),
}

/// Sealed results for the reuse window.
pub struct ReuseStore {
    store: Store,
    window: Duration,
}

impl std::fmt::Debug for ReuseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        };
        f.debug_struct("ReuseStore").field("store", &store).field("window", &self.window).finish()
    }
}

impl ReuseStore {
    /// Results kept in this process for `window`.
    pub fn in_memory(window: Duration) -> Self {
        Self { store: Store::Memory(Mutex::new(HashMap::new())), window }
    }

    /// Results kept in Redis for `window`, shared by every replica.
    pub fn redis(connection: redis::aio::ConnectionManager, window: Duration) -> Self {
        Self { store: Store::Redis(connection), window }
    }

    /// Whether other replicas see what this one stores.
    pub fn is_shared(&self) -> bool {
        matches!(self.store, Store::Redis(_))
    }

    /// The remembered result for `keys`, opened.
    pub async fn get(&self, keys: &SealingKeys) -> Option<Vec<u8>> {
        let stored = match &self.store {
            Store::Memory(entries) => {
                let entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
                let (stored, expires) = entries.get(keys.lookup())?;
                (*expires > Instant::now()).then(|| stored.clone())?
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let answer: Result<Option<Vec<u8>>, _> = redis::cmd("GET")
                    .arg(format!("{RESULT_PREFIX}{}", keys.lookup()))
                    .query_async(&mut connection)
                    .await;
                match answer {
                    Ok(stored) => stored?,
                    Err(error) => {
                        tracing::warn!(%error, "refresh reuse store unavailable; calling the vendor");
                        return None;
                    }
                }
            }
        };
        let opened = keys.open(&stored);
        if opened.is_none() {
            tracing::warn!("a stored refresh result did not open with its keys; ignoring it");
        }
        opened
    }

    /// Remembers `plaintext` for the window, sealed.
    pub async fn put(&self, keys: &SealingKeys, plaintext: &[u8]) {
        let Some(sealed) = keys.seal(plaintext) else { return };
        match &self.store {
            Store::Memory(entries) => {
                let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                entries.retain(|_, (_, expires)| *expires > now);
                entries.insert(keys.lookup().to_string(), (sealed, now + self.window));
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let stored: Result<(), _> = redis::cmd("SET")
                    .arg(format!("{RESULT_PREFIX}{}", keys.lookup()))
                    .arg(sealed)
                    .arg("PX")
                    .arg(self.window.as_millis().max(1) as u64)
                    .query_async(&mut connection)
                    .await;
                if let Err(error) = stored {
                    tracing::warn!(%error, "could not remember a refresh result");
                }
            }
        }
    }

    /// Claims the vendor call for `keys` for at most `hold`, so that one
    /// replica calls while the others wait for its result. In one process
    /// the single flight above already does this, so memory always says
    /// [`Claim::Ours`]; so does an unavailable Redis, which must not stop sign-in.
    pub async fn claim(&self, keys: &SealingKeys, hold: Duration) -> Claim {
        let Store::Redis(connection) = &self.store else { return Claim::Ours };
        let mut connection = connection.clone();
        let claimed: Result<Option<String>, _> = redis::cmd("SET")
            .arg(format!("{CLAIM_PREFIX}{}", keys.lookup()))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis().max(1) as u64)
            .query_async(&mut connection)
            .await;
        match claimed {
            Ok(Some(_)) => Claim::Ours,
            Ok(None) => Claim::Taken,
            Err(error) => {
                tracing::warn!(%error, "refresh reuse store unavailable; calling the vendor");
                Claim::Ours
            }
        }
    }

    /// Gives the claim up once the result is stored, or the call failed.
    pub async fn release(&self, keys: &SealingKeys) {
        let Store::Redis(connection) = &self.store else { return };
        let mut connection = connection.clone();
        let _: Result<(), _> =
            redis::cmd("DEL").arg(format!("{CLAIM_PREFIX}{}", keys.lookup())).query_async(&mut connection).await;
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
        assert_eq!(store.claim(&keys, Duration::from_secs(1)).await, Claim::Ours);
        store.put(&keys, b"session").await;
        assert_eq!(store.get(&keys).await.as_deref(), Some(&b"session"[..]));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(store.get(&keys).await, None);
    }
}
