//! Idempotency keys in Redis, shared by every replica. An entry is named by
//! the key's lookup key alone, and holds one of two values:
//!
//! - `claim:<owner>:<fingerprint>` while a call runs: the owner's random
//!   token, and the keyed hash of its request;
//! - `done:<fingerprint>:<sealed outcome as hex>` once it has an outcome.
//!
//! Completing and releasing compare the owner inside a script, so a call
//! whose claim expired and was taken by another never overwrites or deletes
//! what that other call holds. Each script touches one key, so it runs on
//! one slot of a Redis Cluster.

use std::{sync::LazyLock, time::Duration};

use super::{Claim, ScopedKey};
use crate::{
    hex,
    redis_connection::{PROBE_INTERVAL, SharedRedis, is_outage},
};

const REDIS_PREFIX: &str = "mtr-sso:idempotency:";

/// Deletes the claim if it is still the caller's own: its value begins
/// with the caller's `claim:<owner>:` (ARGV[1]).
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local current = redis.call('GET', KEYS[1])
         if current and string.sub(current, 1, #ARGV[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
         return 0",
    )
});

/// Stores the outcome (ARGV[2]) for ARGV[3] ms if the key still holds the
/// caller's claim (ARGV[1]), or nothing at all (the claim expired and no one
/// took it since: a retry should still find the outcome).
static COMPLETE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local current = redis.call('GET', KEYS[1])
         if current == false or current == ARGV[1] then
           redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
           return 1
         end
         return 0",
    )
});

/// Why an entry could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Redis did not answer.
    Redis(String),
    /// The entry is there, but its outcome does not open with the key: it was
    /// changed, or written by something else. Refused, never replayed.
    Refused(String),
}

impl From<ReadError> for String {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Redis(error) => format!("Redis: {error}"),
            ReadError::Refused(error) => error,
        }
    }
}

fn redis_key(key: &ScopedKey) -> String {
    format!("{REDIS_PREFIX}{}", key.keys.lookup())
}

fn claim_value(key: &ScopedKey, fingerprint: &str) -> String {
    format!("claim:{}:{fingerprint}", key.owner)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Claims the key for `ttl`, or says what holds it.
pub(super) async fn claim(
    mut connection: SharedRedis,
    key: &ScopedKey,
    fingerprint: &str,
    ttl: Duration,
) -> Result<Claim, ReadError> {
    let claimed: Result<Option<String>, _> = redis::cmd("SET")
        .arg(redis_key(key))
        .arg(claim_value(key, fingerprint))
        .arg("NX")
        .arg("PX")
        .arg(millis(ttl))
        .query_async(&mut connection)
        .await;
    let claimed = match claimed {
        Ok(claimed) => claimed,
        Err(error) => {
            // The answer may have been lost after Redis took the claim: give it
            // up (only if it is ours), or a retry would wait for a run that
            // never started; once Redis is back if it is out now.
            release_while(connection, key, tokio::time::Instant::now() + ttl).await;
            return Err(ReadError::Redis(error.to_string()));
        }
    };
    if claimed.is_some() {
        return Ok(Claim::Run);
    }
    read(&mut connection, key, fingerprint).await
}

/// What the entry says: gone (its run was released or expired) or still
/// running, finished, or made for another request. An outcome that does
/// not open with the key, or a value in no known shape, is an error.
pub(super) async fn read(connection: &mut SharedRedis, key: &ScopedKey, fingerprint: &str) -> Result<Claim, ReadError> {
    let stored: Option<String> = redis::cmd("GET")
        .arg(redis_key(key))
        .query_async(connection)
        .await
        .map_err(|e| ReadError::Redis(e.to_string()))?;
    let Some(stored) = stored else { return Ok(Claim::InProgress) };
    let (stored_fingerprint, sealed) = if let Some(rest) = stored.strip_prefix("claim:") {
        (rest.split_once(':').map(|(_, fingerprint)| fingerprint), None)
    } else if let Some(rest) = stored.strip_prefix("done:") {
        rest.split_once(':').map_or((None, None), |(fingerprint, sealed)| (Some(fingerprint), Some(sealed)))
    } else {
        (None, None)
    };
    let Some(stored_fingerprint) = stored_fingerprint else {
        return Err(ReadError::Refused("a stored outcome is in no known shape".into()));
    };
    if stored_fingerprint != fingerprint {
        return Ok(Claim::Mismatch);
    }
    let Some(sealed) = sealed else { return Ok(Claim::InProgress) };
    let sealed = hex::decode(sealed).map_err(|_| ReadError::Refused("a stored outcome is not hex".into()))?;
    key.open(&sealed).map(Claim::Done).map_err(ReadError::Refused)
}

/// An outcome to record, and how long it and the claim live.
pub(super) struct Record {
    pub(super) fingerprint: String,
    pub(super) sealed: Vec<u8>,
    pub(super) window: Duration,
    pub(super) claim_ttl: Duration,
}

/// Records the sealed outcome for its window, if the claim is still this
/// call's. When Redis is out, tries again in the background until the claim
/// would have expired: a retry then replays the outcome instead of finding
/// the key free once the claim expires, and creating again.
pub(super) async fn complete(connection: SharedRedis, key: &ScopedKey, record: Record) {
    let redis_key = redis_key(key);
    let claim = claim_value(key, &record.fingerprint);
    let done = format!("done:{}:{}", record.fingerprint, hex::encode(&record.sealed));
    let give_up = tokio::time::Instant::now() + record.claim_ttl;
    let store = move |mut connection: SharedRedis| {
        let (redis_key, claim, done) = (redis_key.clone(), claim.clone(), done.clone());
        async move {
            COMPLETE
                .key(redis_key)
                .arg(claim)
                .arg(done)
                .arg(millis(record.window))
                .invoke_async::<u8>(&mut connection)
                .await
        }
    };
    match store(connection.clone()).await {
        Ok(1) => {}
        Ok(_) => tracing::warn!("an idempotency claim changed hands during its run; its outcome is not recorded"),
        Err(error) if is_outage(&error) => {
            tracing::warn!(%error, "could not record an idempotent outcome; trying again while its claim lasts");
            once_back(connection, give_up, store, "record an idempotent outcome");
        }
        Err(error) => tracing::warn!(%error, "could not record an idempotent outcome"),
    }
}

/// Runs `step` again every [`PROBE_INTERVAL`], in the background, until
/// Redis answers it or `give_up` (when the claim it concerns has expired).
fn once_back<F, Fut>(connection: SharedRedis, give_up: tokio::time::Instant, step: F, what: &'static str)
where
    F: Fn(SharedRedis) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = redis::RedisResult<u8>> + Send,
{
    tokio::spawn(async move {
        while tokio::time::Instant::now() + PROBE_INTERVAL < give_up {
            tokio::time::sleep(PROBE_INTERVAL).await;
            match step(connection.clone()).await {
                Err(error) if is_outage(&error) => continue,
                Ok(1) => tracing::info!("could {what} once Redis was back"),
                Ok(_) => tracing::warn!("could not {what}: its claim changed hands"),
                Err(error) => tracing::warn!(%error, "could not {what}"),
            }
            return;
        }
        tracing::warn!("could not {what}: Redis stayed out while its claim lasted");
    });
}

/// Deletes the claim if it is still this call's; if Redis is out, once it
/// is back, while the claim can still be there.
async fn release_while(connection: SharedRedis, key: &ScopedKey, give_up: tokio::time::Instant) {
    let redis_key = redis_key(key);
    let owned_prefix = format!("claim:{}:", key.owner);
    let step = move |mut connection: SharedRedis| {
        let (redis_key, owned_prefix) = (redis_key.clone(), owned_prefix.clone());
        async move { RELEASE.key(redis_key).arg(owned_prefix).invoke_async::<u8>(&mut connection).await }
    };
    match step(connection.clone()).await {
        Err(error) if is_outage(&error) => once_back(connection, give_up, step, "release an idempotency key"),
        Err(error) => tracing::warn!(%error, "could not release an idempotency key"),
        Ok(_) => {}
    }
}

/// Deletes the claim if it is still this call's (once Redis is back, if it is out).
pub(super) async fn release(connection: SharedRedis, key: &ScopedKey, claim_ttl: Duration) {
    release_while(connection, key, tokio::time::Instant::now() + claim_ttl).await;
}
