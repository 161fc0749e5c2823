//! The vendor's per-key rate limit (500 requests a minute by default) as a
//! token bucket per key: a burst of a minute's worth, refilled evenly.

use std::{collections::HashMap, time::Duration};

use crate::quota::{Bucket, take_in_memory};

/// Token buckets by key (the same buckets the gateway's own quota uses).
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
        take_in_memory(&mut self.buckets, key, per_minute).map(|_| ())
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
