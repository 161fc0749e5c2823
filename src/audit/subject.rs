//! Who an event is about, without saying it in clear: the email as an
//! HMAC-SHA256 under a key of the operator's, so the same email gives the same
//! hash in every event and on every replica (the join a compliance question
//! needs), while the audit stream alone reveals no email. Without a key file a
//! random key is drawn per process: emails stay hidden, but hashes join only
//! within one process's life. Refusing to start instead would make the audit
//! trail an obstacle to every deployment that has not yet made a key; the
//! event names the key (`email_key_id`) so a reader sees which hashes join.

use ring::{hmac, rand::SystemRandom};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

use crate::hex;

/// The longest email shown in clear: RFC 5321's limit on a path. Anything
/// longer was refused as invalid anyway, and is cut so a hostile caller cannot
/// fill the audit stream.
const LONGEST_EMAIL: usize = 254;

/// Turns emails into their keyed hashes.
#[derive(Debug)]
pub struct EmailHasher {
    key: hmac::Key,
    /// A name of the key that does not reveal it: its HMAC over a fixed text.
    key_id: String,
    in_clear: bool,
}

/// The subject of an event: the vendor's account uuid where known, the email's
/// hash, and the email in clear only when the operator opted in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Subject {
    pub account_uuid: Option<String>,
    pub email_hmac: Option<String>,
    pub email_key_id: Option<String>,
    pub email: Option<String>,
}

impl EmailHasher {
    /// A hasher with the operator's key, or with a random one for this process.
    pub fn new(key: Option<&SecretString>, in_clear: bool) -> Self {
        let key = match key {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes()),
            None => {
                tracing::warn!(
                    "no --audit-email-key-file: audit events hash emails with a random key of this process, so \
                     the same email's events join only until it restarts"
                );
                // Only fails when the OS has no randomness, where nothing else here could work either.
                hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).expect("the OS provides randomness")
            }
        };
        let key_id = hex::encode(&hmac::sign(&key, b"mtr-sso audit email key id").as_ref()[..8]);
        Self { key, key_id, in_clear }
    }

    /// The subject for `email` (none for an RPC that names no email). The
    /// email is trimmed and lower-cased first, as the vendor compares them.
    pub fn subject(&self, email: Option<&str>) -> Subject {
        let Some(email) = email.map(str::trim).filter(|e| !e.is_empty()) else {
            return Subject::default();
        };
        let normal = email.to_lowercase();
        let tag = hmac::sign(&self.key, normal.as_bytes());
        Subject {
            account_uuid: None,
            email_hmac: Some(hex::encode(tag.as_ref())),
            email_key_id: Some(self.key_id.clone()),
            email: self.in_clear.then(|| email.chars().take(LONGEST_EMAIL).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_email_in_any_case_gives_the_same_hash_and_another_key_another_hash() {
        let key = SecretString::from("k".repeat(32));
        let hasher = EmailHasher::new(Some(&key), false);
        let one = hasher.subject(Some("Ann@Example.com"));
        let two = hasher.subject(Some(" ann@example.com "));
        assert_eq!(one.email_hmac, two.email_hmac);
        assert_eq!(one.email, None);
        assert_eq!(one.email_hmac.as_deref().map(str::len), Some(64));
        let other = EmailHasher::new(Some(&SecretString::from("o".repeat(32))), false);
        assert_ne!(other.subject(Some("ann@example.com")).email_hmac, one.email_hmac);
        assert_ne!(other.key_id, hasher.key_id);
        assert_eq!(EmailHasher::new(None, false).subject(None).email_hmac, None);
    }

    #[test]
    fn emails_are_in_clear_only_when_asked_and_cut_to_a_bound() {
        let hasher = EmailHasher::new(None, true);
        assert_eq!(hasher.subject(Some("ann@example.com")).email.as_deref(), Some("ann@example.com"));
        let long = "a".repeat(10_000);
        assert_eq!(hasher.subject(Some(&long)).email.map(|e| e.len()), Some(LONGEST_EMAIL));
    }
}
