//! The sliding log kept in Redis, shared by every replica: per key a sorted
//! set whose scores are the instants (µs, by the Redis server's clock) at
//! which calls took their slots, one member per call. One Lua script drops the
//! slots that have freed, counts the rest and takes or reserves a slot,
//! atomically, so replicas with drifting clocks cannot break the limit.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::log::Decision;
use tokio::time::Instant;

/// Key prefix of every log in Redis.
const REDIS_PREFIX: &str = "mtr-sso:window:";

/// `KEYS[1]`: the log. `ARGV`: the limit, the hold time and the longest wait
/// (µs), and the call's unique member. Returns `{1, µs until the slot, slots
/// left}` when taken (a wait above 0 reserves a future slot), `{0, µs until
/// the next slot frees, 0}` when refused. Scores go to Redis through `%d`,
/// so microseconds since 1970 stay exact whatever number format applies.
const DECIDE_SCRIPT: &str = r"
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local hold = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - hold))
local count = redis.call('ZCARD', key)
local at = now
if count >= limit then
  local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  local latest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  at = math.max(now, tonumber(oldest[2]) + hold, tonumber(latest[2]))
end
if at - now > max_wait then
  return {0, at - now, 0}
end
redis.call('ZADD', key, string.format('%d', at), ARGV[4])
redis.call('ZREMRANGEBYRANK', key, 0, -(limit + 1))
redis.call('PEXPIRE', key, math.floor((at - now + hold) / 1000) + 1)
return {1, at - now, math.max(0, limit - redis.call('ZCARD', key))}
";

/// The script and what makes each call's member unique across the fleet.
#[derive(Debug)]
pub(super) struct RedisLog {
    script: redis::Script,
    /// Random per process, so replicas never share a member.
    process: String,
    calls: AtomicU64,
}

impl RedisLog {
    pub(super) fn new() -> Self {
        Self {
            script: redis::Script::new(DECIDE_SCRIPT),
            process: uuid::Uuid::new_v4().simple().to_string(),
            calls: AtomicU64::new(0),
        }
    }

    /// Decides a call of `key` (see [`super::log::Logs::decide`]) on the
    /// Redis server's clock; `Err` when Redis did not answer.
    pub(super) async fn decide(
        &self,
        connection: &crate::redis_connection::SharedRedis,
        key: &str,
        limit: u32,
        hold: Duration,
        max_wait: Duration,
    ) -> Result<Decision, redis::RedisError> {
        let member = format!("{}:{}", self.process, self.calls.fetch_add(1, Ordering::Relaxed));
        let mut connection = connection.clone();
        let (taken, wait_us, left): (u8, u64, u32) = self
            .script
            .key(format!("{REDIS_PREFIX}{key}"))
            .arg(limit)
            .arg(micros(hold))
            .arg(micros(max_wait))
            .arg(member)
            .invoke_async(&mut connection)
            .await?;
        let wait = Duration::from_micros(wait_us);
        Ok(if taken == 1 {
            // The slot's instant by this process's clock: the answer came after
            // the server read its clock, so the wait ends at or after the slot.
            Decision::Admitted { at: Instant::now() + wait, left }
        } else {
            Decision::Refused { retry_after: wait.max(Duration::from_micros(1)) }
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
