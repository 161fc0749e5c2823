//! Token buckets that keep the fleet inside limits: the vendor's per-key
//! quota (500 requests a minute for all replicas together) and per-caller and
//! per-email limits against token-minting and credential-stuffing bursts.
//! A call over a limit is refused at once with the time until it would fit,
//! never queued. Buckets live in memory for one process, or in Redis (one
//! atomic script, the Redis server's clock) so that every replica shares them.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Key prefix of every bucket in Redis.
const REDIS_PREFIX: &str = "mtr-sso:bucket:";

/// Takes one token from the bucket `KEYS[1]` of `ARGV[1]` tokens refilled
/// evenly over a minute. Returns `{1, 0, tokens left}` when taken,
/// `{0, ms until one is free, 0}` when not. Keys expire once they would be full again.
const TAKE_SCRIPT: &str = r"
local capacity = tonumber(ARGV[1])
local per_ms = capacity / 60000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
local taken, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return {taken, wait, math.floor(tokens)}
";

/// One token bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

enum Store {
    Memory { buckets: Mutex<HashMap<String, Bucket>>, takes: AtomicU64 },
    Redis { connection: redis::aio::ConnectionManager, script: redis::Script },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Memory { .. } => "Store::Memory",
            Store::Redis { .. } => "Store::Redis",
        })
    }
}

/// Where buckets are kept.
#[derive(Debug)]
pub struct Buckets {
    store: Store,
}

impl Buckets {
    /// Buckets for this process alone.
    pub fn in_memory() -> Self {
        Self { store: Store::Memory { buckets: Mutex::new(HashMap::new()), takes: AtomicU64::new(0) } }
    }

    /// Buckets shared through Redis by every replica that uses the same server.
    pub fn redis(connection: redis::aio::ConnectionManager) -> Self {
        Self { store: Store::Redis { connection, script: redis::Script::new(TAKE_SCRIPT) } }
    }

    /// Takes one token from `key`'s bucket of `per_minute`: the whole tokens
    /// left, or on refusal the time until one is free. A limit of 0 means no
    /// limit (and `u32::MAX` left).
    pub async fn take(&self, key: &str, per_minute: u32) -> Result<u32, Duration> {
        if per_minute == 0 {
            return Ok(u32::MAX);
        }
        match &self.store {
            Store::Memory { buckets, takes } => {
                let mut buckets = buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // Now and then, forget buckets that have refilled: keys such
                // as emails would otherwise accumulate for ever.
                if takes.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
                    buckets.retain(|_, b| b.at.elapsed() < Duration::from_secs(60));
                }
                take_in_memory(&mut buckets, key, per_minute)
            }
            Store::Redis { connection, script } => {
                let mut connection = connection.clone();
                let answer: Result<(u8, u64, u32), _> =
                    script.key(format!("{REDIS_PREFIX}{key}")).arg(per_minute).invoke_async(&mut connection).await;
                match answer {
                    Ok((1, _, left)) => Ok(left),
                    Ok((_, wait_ms, _)) => Err(Duration::from_millis(wait_ms.max(1))),
                    Err(error) => {
                        // Failing open: a Redis outage must not take sign-in down with it.
                        tracing::warn!(%error, "quota store unavailable; allowing the call");
                        Ok(per_minute)
                    }
                }
            }
        }
    }
}

/// Takes one token from `key`'s bucket of `per_minute` tokens refilled evenly
/// over a minute; on refusal, the time until one is free.
pub(crate) fn take_in_memory(
    buckets: &mut HashMap<String, Bucket>,
    key: &str,
    per_minute: u32,
) -> Result<u32, Duration> {
    let capacity = f64::from(per_minute);
    let per_second = capacity / 60.0;
    let now = Instant::now();
    let bucket = buckets.entry(key.to_string()).or_insert(Bucket { tokens: capacity, at: now });
    bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second).min(capacity);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(bucket.tokens as u32)
    } else {
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
    }
}

/// The limits that apply, per minute (0 switches one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls to one tenant's Broker-API (one API key), and separately to its platform.
    pub upstream_per_minute: u32,
    /// IssueOneTimeToken and Login calls of one caller.
    pub caller_per_minute: u32,
    /// IssueOneTimeToken and Login calls for one email.
    pub email_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { upstream_per_minute: 450, caller_per_minute: 600, email_per_minute: 20 }
    }
}

/// A stable, non-reversible key for an email: emails never appear in Redis.
pub fn email_key(tenant: &str, email: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{tenant}\u{0}{}", email.to_lowercase())).digest().to_string();
    format!("email:{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_allows_a_minutes_worth_then_says_how_long_to_wait() {
        let buckets = Buckets::in_memory();
        for left in [2, 1, 0] {
            assert_eq!(buckets.take("k", 3).await, Ok(left));
        }
        let wait = buckets.take("k", 3).await.expect_err("empty");
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(buckets.take("other", 3).await.is_ok(), "buckets are per key");
        assert!(buckets.take("k", 0).await.is_ok(), "0 is no limit");
    }

    #[test]
    fn email_keys_are_stable_case_insensitive_and_hide_the_email() {
        let key = email_key("acme", "Ada@Example.com");
        assert_eq!(key, email_key("acme", "ada@example.com"));
        assert_ne!(key, email_key("globex", "ada@example.com"));
        assert!(!key.contains("ada") && key.starts_with("email:"));
    }
}
