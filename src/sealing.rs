//! Keys derived from a secret only the caller holds, for stores whose
//! content must be useless to whoever reads the store (the refresh reuse
//! window, remembered CreateAccount outcomes).
//!
//! From the secret (a refresh token, an idempotency key) and its context
//! (tenant, caller), HKDF-SHA256 (RFC 5869) yields three keys under distinct
//! labels: the lookup key names the entry (without the secret it can be
//! neither computed nor reversed), the sealing key encrypts the stored value
//! with ChaCha20-Poly1305 bound to its lookup key, and the fingerprint key
//! makes a keyed hash (HMAC-SHA256) of what must be compared but not kept.
//! No secret has to be shared between replicas: each derives the same keys.
//! All of it comes from `ring`, which the TLS stack already builds on.

use ring::{
    aead::{self, Aad, LessSafeKey, Nonce, UnboundKey},
    hkdf, hmac,
    rand::{SecureRandom as _, SystemRandom},
};

/// Bytes of the random nonce stored in front of every sealed value.
pub const NONCE_LEN: usize = 12;

/// The keys one secret yields within one context.
pub struct Keys {
    /// Hex of the lookup key: the entry's name in a store.
    lookup: String,
    sealing: LessSafeKey,
    fingerprint: hmac::Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// Derives the keys of `secret` for the store named by `salt` (fixed per
    /// store, so that stores never share keys and every replica agrees), within
    /// `context`: the same secret in two contexts never meets in a store.
    pub fn derive(salt: &[u8], secret: &[u8], context: &[u8]) -> Self {
        let pseudo_random_key = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
        let expand = |label: &[u8]| {
            let mut out = [0u8; 32];
            let info = [label, b"\0", context];
            // 32 bytes from SHA-256 are always within HKDF's limit of 255 blocks.
            let expanded = pseudo_random_key.expand(&info, hkdf::HKDF_SHA256).and_then(|okm| okm.fill(&mut out));
            debug_assert!(expanded.is_ok());
            out
        };
        let sealing = UnboundKey::new(&aead::CHACHA20_POLY1305, &expand(b"seal"))
            .unwrap_or_else(|_| unreachable!("a ChaCha20-Poly1305 key is 32 bytes"));
        Self {
            lookup: crate::hex::encode(&expand(b"lookup")),
            sealing: LessSafeKey::new(sealing),
            fingerprint: hmac::Key::new(hmac::HMAC_SHA256, &expand(b"fingerprint")),
        }
    }

    /// The entry's name in a store: 64 hex digits.
    pub fn lookup(&self) -> &str {
        &self.lookup
    }

    /// `plaintext` encrypted under a fresh random nonce, bound to the lookup
    /// key; `None` only if the system has no randomness to give.
    pub fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut sealed = plaintext.to_vec();
        self.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.lookup.as_bytes()),
                &mut sealed,
            )
            .ok()?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Some(stored)
    }

    /// The plaintext of a stored value; `None` if it was not sealed with
    /// these keys or was changed since.
    pub fn open(&self, stored: &[u8]) -> Option<Vec<u8>> {
        let (nonce, sealed) = stored.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plaintext = self.sealing.open_in_place(nonce, Aad::from(self.lookup.as_bytes()), &mut sealed).ok()?;
        Some(plaintext.to_vec())
    }

    /// A keyed hash of `data`, as hex: equal for equal data under the same
    /// keys, and without the secret no guess at `data` can be checked against it.
    pub fn fingerprint(&self, data: &[u8]) -> String {
        crate::hex::encode(hmac::sign(&self.fingerprint, data).as_ref())
    }
}

/// A random token as hex, naming who holds a claim; `None` only if the
/// system has no randomness to give.
pub fn random_token() -> Option<String> {
    let mut token = [0u8; 16];
    SystemRandom::new().fill(&mut token).ok()?;
    Some(crate::hex::encode(&token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_store_the_secret_and_the_context_and_reveal_none() {
        let keys = Keys::derive(b"store", b"secret-1", b"acme");
        assert_eq!(keys.lookup(), Keys::derive(b"store", b"secret-1", b"acme").lookup(), "replicas agree");
        for other in [
            Keys::derive(b"other store", b"secret-1", b"acme"),
            Keys::derive(b"store", b"secret-2", b"acme"),
            Keys::derive(b"store", b"secret-1", b"globex"),
        ] {
            assert_ne!(keys.lookup(), other.lookup());
            assert_ne!(keys.fingerprint(b"request"), other.fingerprint(b"request"));
        }
        assert!(!keys.lookup().contains(&crate::hex::encode(b"secret-1")));
        assert_eq!(keys.lookup().len(), 64);
        assert_ne!(keys.fingerprint(b"request"), keys.lookup(), "distinct keys for distinct jobs");
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_keys_hides_its_content_and_refuses_any_change() {
        let keys = Keys::derive(b"store", b"secret", b"acme");
        let sealed = keys.seal(b"new-access-token").expect("sealed");
        assert!(!sealed.windows(16).any(|w| w == b"new-access-token"));
        assert_eq!(keys.open(&sealed).as_deref(), Some(&b"new-access-token"[..]));
        assert_eq!(Keys::derive(b"store", b"another", b"acme").open(&sealed), None);
        for at in [0, NONCE_LEN + 1, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 1;
            assert_eq!(keys.open(&tampered), None, "a change at byte {at} is refused");
        }
        assert_eq!(keys.open(&sealed[..sealed.len() - 1]), None, "a cut value is refused");
        assert_eq!(keys.open(&sealed[..NONCE_LEN - 1]), None);
        assert_ne!(keys.seal(b"new-access-token"), Some(sealed), "every seal has a fresh nonce");
    }

    #[test]
    fn a_fingerprint_is_stable_and_tells_requests_apart() {
        let keys = Keys::derive(b"store", b"secret", b"acme");
        assert_eq!(keys.fingerprint(b"password=a"), keys.fingerprint(b"password=a"));
        assert_ne!(keys.fingerprint(b"password=a"), keys.fingerprint(b"password=b"));
        assert_eq!(keys.fingerprint(b"x").len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
