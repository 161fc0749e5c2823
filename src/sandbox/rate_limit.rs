//! The vendor's per-key rate limit (500 requests a minute by default) as a
//! token bucket per key: a burst of a minute's worth, refilled evenly.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Token buckets by key.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// Takes one request's token for `key`; on refusal, how long until one is free.
    pub fn take(&mut self, key: &str, per_minute: u32) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(()); // 0 switches the limit off (benchmarks)
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let bucket = self.buckets.entry(key.to_string()).or_insert(Bucket { tokens: capacity, refilled: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * per_second).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_requests_passes_then_the_next_is_refused() {
        let mut limiter = RateLimiter::default();
        for _ in 0..5 {
            assert!(limiter.take("k", 5).is_ok());
        }
        let wait = limiter.take("k", 5).expect_err("over the limit");
        assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(12), "{wait:?}");
        assert!(limiter.take("other", 5).is_ok(), "keys are independent");
        assert!(limiter.take("k", 0).is_ok(), "0 means unlimited");
    }
}
