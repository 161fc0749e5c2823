//! The vendor's per-key rate limit (500 requests a minute by default), counted
//! as a Java backend's filter typically counts it: a sliding 60-second log of
//! each key's requests. This is the sandbox's own code, written apart from
//! the gateway's quota guard and sharing nothing with it, so that a guard
//! that only behaves under its own model is caught here rather than in
//! production. The window is a minute unless a test shortens it.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

/// The span a limit of "per minute" looks back over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The recent requests of every key that made one in the last window.
#[derive(Debug)]
pub struct RateLimiter {
    /// The span the limit looks back over: [`WINDOW`] unless a test shortens it.
    window: Duration,
    /// Per key, the instants of its counted requests, oldest first.
    recent: HashMap<String, VecDeque<Instant>>,
    /// When idle keys were last forgotten; sweeping once a window keeps `take` cheap.
    last_sweep: Option<Instant>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self { window: WINDOW, recent: HashMap::new(), last_sweep: None }
    }
}

impl RateLimiter {
    /// Looks back over `window` from now on.
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Counts one request of `key` made at `now`, unless the last 60 seconds
    /// already hold `per_minute` of them; then refuses with the wait until the
    /// oldest of those leaves the window. `per_minute == 0` means no limit.
    ///
    /// `now` must not go backwards between calls (take it under the same lock).
    pub fn take(&mut self, key: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        self.forget_idle_keys(now);
        let limit = usize::try_from(per_minute).unwrap_or(usize::MAX);
        let window = self.window;
        if let Some(log) = self.recent.get_mut(key) {
            return admit(log, limit, window, now);
        }
        let mut log = VecDeque::new();
        let admitted = admit(&mut log, limit, window, now);
        self.recent.insert(key.to_string(), log);
        admitted
    }

    /// Drops keys with no request in the last window, at most once a window.
    fn forget_idle_keys(&mut self, now: Instant) {
        let window = self.window;
        if self.last_sweep.is_some_and(|swept| now.saturating_duration_since(swept) < window) {
            return;
        }
        self.last_sweep = Some(now);
        self.recent.retain(|_, log| log.back().is_some_and(|&at| now.saturating_duration_since(at) < window));
    }
}

/// Counts a request at `now` into one key's log, or refuses it (see [`RateLimiter::take`]).
fn admit(log: &mut VecDeque<Instant>, limit: usize, window: Duration, now: Instant) -> Result<(), Duration> {
    while log.front().is_some_and(|&at| now.saturating_duration_since(at) >= window) {
        log.pop_front();
    }
    if log.len() >= limit {
        // A lowered limit can leave more than `limit` entries: only the newest
        // `limit` decide when a slot frees, so the rest are dropped and memory
        // stays bounded by the limit.
        log.drain(..log.len() - limit);
        let oldest = log.front().copied().unwrap_or(now);
        return Err((oldest + window).saturating_duration_since(now));
    }
    log.push_back(now);
    Ok(())
}

/// A wait as a `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn exactly_the_limit_passes_within_a_window_and_the_next_is_refused_until_the_oldest_leaves() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..5 {
            assert_eq!(limiter.take("k", 5, start + secs(i * 10)), Ok(()), "request {i}");
        }
        // The oldest (at 0 s) leaves the window at 60 s.
        assert_eq!(limiter.take("k", 5, start + secs(45)), Err(secs(15)));
        assert_eq!(limiter.take("k", 5, start + Duration::from_millis(59_999)), Err(Duration::from_millis(1)));
        assert_eq!(limiter.take("k", 5, start + secs(60)), Ok(()), "the oldest has left");
    }

    #[test]
    fn refused_requests_are_not_counted() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.take("k", 1, start), Ok(()));
        for s in 1..60 {
            assert_eq!(limiter.take("k", 1, start + secs(s)), Err(secs(60 - s)));
        }
        assert_eq!(limiter.take("k", 1, start + secs(60)), Ok(()));
    }

    #[test]
    fn a_burst_frees_nothing_until_a_minute_has_passed_then_slots_free_one_by_one() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.take("k", 3, start + secs(i)), Ok(()));
        }
        // Unlike a bucket refilled evenly, a window gives nothing back early.
        assert_eq!(limiter.take("k", 3, start + secs(20)), Err(secs(40)));
        assert_eq!(limiter.take("k", 3, start + secs(60)), Ok(()), "the request at 0 s left");
        assert_eq!(limiter.take("k", 3, start + Duration::from_millis(60_500)), Err(Duration::from_millis(500)));
        assert_eq!(limiter.take("k", 3, start + secs(61)), Ok(()), "the request at 1 s left");
        assert_eq!(limiter.take("k", 3, start + secs(61)), Err(secs(1)), "the request at 2 s is still counted");
        assert_eq!(limiter.take("k", 3, start + secs(62)), Ok(()));
        // Now 60 s, 61 s and 62 s are counted: the next slot is at 120 s.
        assert_eq!(limiter.take("k", 3, start + secs(100)), Err(secs(20)));
    }

    #[test]
    fn any_sixty_second_window_holds_at_most_the_limit() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        let mut admitted = Vec::new();
        // One attempt every 700 ms for five minutes against a limit of 7.
        for step in 0..430_u64 {
            let at = start + Duration::from_millis(step * 700);
            if limiter.take("k", 7, at).is_ok() {
                admitted.push(at);
            }
        }
        for (i, &from) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|&&at| at < from + WINDOW).count();
            assert!(in_window <= 7, "{in_window} requests within a minute from {:?}", from - start);
        }
        // Each window admits exactly the limit: seven at once, then seven a minute.
        assert_eq!(admitted.len(), 7 * 5);
    }

    #[test]
    fn keys_are_independent() {
        let mut limiter = RateLimiter::default();
        let now = Instant::now();
        assert_eq!(limiter.take("a", 2, now), Ok(()));
        assert_eq!(limiter.take("a", 2, now), Ok(()));
        assert_eq!(limiter.take("a", 2, now), Err(WINDOW));
        assert_eq!(limiter.take("b", 2, now), Ok(()), "another key has its own window");
        assert_eq!(limiter.take("b", 2, now), Ok(()));
        assert_eq!(limiter.take("b", 2, now), Err(WINDOW));
    }

    #[test]
    fn zero_means_unlimited_and_counts_nothing() {
        let mut limiter = RateLimiter::default();
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.take("k", 0, now), Ok(()));
        }
        assert!(limiter.recent.is_empty());
        assert_eq!(limiter.take("k", 1, now), Ok(()), "nothing was counted while unlimited");
    }

    #[test]
    fn a_lowered_limit_applies_at_once_and_keeps_only_the_limit_in_memory() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..10 {
            assert_eq!(limiter.take("k", 10, start + secs(i)), Ok(()));
        }
        // With a limit of 3, the newest three (7 s, 8 s, 9 s) decide: a slot frees at 67 s.
        assert_eq!(limiter.take("k", 3, start + secs(10)), Err(secs(57)));
        assert_eq!(limiter.recent["k"].len(), 3);
        assert_eq!(limiter.take("k", 3, start + secs(67)), Ok(()));
    }

    #[test]
    fn keys_idle_for_a_minute_are_forgotten() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.take("idle", 5, start), Ok(()));
        assert_eq!(limiter.take("busy", 5, start + secs(30)), Ok(()));
        assert_eq!(limiter.take("busy", 5, start + secs(61)), Ok(()));
        assert!(!limiter.recent.contains_key("idle"), "no request in the last minute");
        assert!(limiter.recent.contains_key("busy"));
        assert_eq!(limiter.take("other", 5, start + secs(125)), Ok(()));
        assert_eq!(limiter.recent.keys().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn a_shortened_window_frees_slots_that_much_sooner() {
        let mut limiter = RateLimiter::default();
        limiter.set_window(secs(6));
        let start = Instant::now();
        assert_eq!(limiter.take("k", 1, start), Ok(()));
        assert_eq!(limiter.take("k", 1, start + secs(2)), Err(secs(4)));
        assert_eq!(limiter.take("k", 1, start + secs(6)), Ok(()));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_seconds(secs(15)), 15);
        assert_eq!(retry_after_seconds(Duration::from_millis(14_001)), 15);
        assert_eq!(retry_after_seconds(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(59_999)), 60);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1, "never tells a client to retry at once");
    }
}
