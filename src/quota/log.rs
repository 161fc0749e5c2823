//! The sliding log kept in memory, for one process: per key, the instants at
//! which calls took their slots, oldest first. An instant in the future is a
//! slot reserved by a call that is waiting for it. A call's slot stays taken
//! for the hold time (the window plus a margin, see [`super::SLOT_MARGIN`]);
//! a key's log never holds more than its limit of instants.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};
use tokio::time::Instant;

/// What a key's log decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// The call holds a slot from `at` (now, or later for a call that waits
    /// for it); `left` slots are still free.
    Admitted { at: Instant, left: u32 },
    /// No slot frees within the allowed wait; the next one frees after `retry_after`.
    Refused { retry_after: Duration },
}

/// The logs of every key that took a slot within the last hold time.
#[derive(Debug, Default)]
pub(super) struct Logs {
    by_key: HashMap<String, VecDeque<Instant>>,
    /// When idle keys were last forgotten; once per hold time keeps `decide` cheap.
    swept: Option<Instant>,
}

impl Logs {
    /// Gives a call of `key` at `now` a slot among `limit` per `hold`: at once,
    /// or the next free one if it frees within `max_wait`. `now` must not go
    /// backwards between calls (read it under the same lock).
    pub(super) fn decide(
        &mut self,
        key: &str,
        limit: u32,
        hold: Duration,
        max_wait: Duration,
        now: Instant,
    ) -> Decision {
        self.forget_idle_keys(hold, now);
        if !self.by_key.contains_key(key) {
            self.by_key.insert(key.to_string(), VecDeque::new());
        }
        let log = self.by_key.get_mut(key).expect("inserted above");
        decide(log, usize::try_from(limit).unwrap_or(usize::MAX), hold, max_wait, now)
    }

    /// Records a slot taken elsewhere (in Redis) at `at`, keeping the newest
    /// `limit`: what this replica took counts once Redis is out.
    pub(super) fn record(&mut self, key: &str, limit: u32, hold: Duration, at: Instant, now: Instant) {
        self.forget_idle_keys(hold, now);
        let log = self.by_key.entry(key.to_string()).or_default();
        let position = log.partition_point(|&taken| taken <= at);
        log.insert(position, at);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if log.len() > limit {
            log.drain(..log.len() - limit);
        }
    }

    /// How many slots `key`'s log holds, for tests of the memory bound.
    #[cfg(test)]
    pub(super) fn held(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).map(VecDeque::len)
    }

    /// Drops the keys whose every slot has freed, at most once per hold time.
    fn forget_idle_keys(&mut self, hold: Duration, now: Instant) {
        if self.swept.is_some_and(|swept| now.saturating_duration_since(swept) < hold) {
            return;
        }
        self.swept = Some(now);
        self.by_key.retain(|_, log| log.back().is_some_and(|&latest| latest + hold > now));
    }
}

/// One key's decision (see [`Logs::decide`]); `limit` is at least 1.
fn decide(log: &mut VecDeque<Instant>, limit: usize, hold: Duration, max_wait: Duration, now: Instant) -> Decision {
    while log.front().is_some_and(|&taken| taken + hold <= now) {
        log.pop_front();
    }
    // Only the newest `limit` slots decide when the next one frees: older
    // ones (left by a limit since lowered) are dropped, which bounds memory.
    if log.len() > limit {
        log.drain(..log.len() - limit);
    }
    let at = match (log.len() < limit, log.front(), log.back()) {
        (false, Some(&oldest), Some(&latest)) => {
            // Full: the oldest slot frees first. Never before the latest
            // reservation, so waiting calls are served in their order.
            (oldest + hold).max(latest).max(now)
        }
        _ => now,
    };
    let wait = at - now;
    if wait > max_wait {
        return Decision::Refused { retry_after: wait };
    }
    let position = log.partition_point(|&taken| taken <= at);
    log.insert(position, at);
    if log.len() > limit {
        log.pop_front();
    }
    let left = u32::try_from(limit - log.len()).unwrap_or(u32::MAX);
    Decision::Admitted { at, left }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(61);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn at_once(logs: &mut Logs, key: &str, limit: u32, now: Instant) -> Decision {
        logs.decide(key, limit, HOLD, Duration::ZERO, now)
    }

    #[test]
    fn the_limit_passes_and_the_next_call_learns_exactly_when_the_oldest_slot_frees() {
        let mut logs = Logs::default();
        let start = Instant::now();
        for (i, left) in [2, 1, 0].into_iter().enumerate() {
            let now = start + secs(i as u64 * 10);
            assert_eq!(at_once(&mut logs, "k", 3, now), Decision::Admitted { at: now, left });
        }
        assert_eq!(at_once(&mut logs, "k", 3, start + secs(45)), Decision::Refused { retry_after: secs(16) });
        assert_eq!(
            at_once(&mut logs, "k", 3, start + Duration::from_millis(60_999)),
            Decision::Refused { retry_after: Duration::from_millis(1) }
        );
        assert!(matches!(at_once(&mut logs, "k", 3, start + secs(61)), Decision::Admitted { left: 0, .. }));
        // The next slot is that of the call at 10 s.
        assert_eq!(at_once(&mut logs, "k", 3, start + secs(62)), Decision::Refused { retry_after: secs(9) });
    }

    #[test]
    fn refused_calls_take_no_slot() {
        let mut logs = Logs::default();
        let start = Instant::now();
        assert!(matches!(at_once(&mut logs, "k", 1, start), Decision::Admitted { .. }));
        for s in 1..61 {
            assert_eq!(at_once(&mut logs, "k", 1, start + secs(s)), Decision::Refused { retry_after: secs(61 - s) });
        }
        assert!(matches!(at_once(&mut logs, "k", 1, start + secs(61)), Decision::Admitted { .. }));
    }

    #[test]
    fn waiting_calls_reserve_the_next_slots_in_their_order_and_the_rest_are_refused() {
        let mut logs = Logs::default();
        let start = Instant::now();
        let max_wait = secs(2);
        for i in 0..3 {
            assert!(matches!(logs.decide("k", 3, HOLD, max_wait, start + secs(i)), Decision::Admitted { .. }));
        }
        // At 60 s the slots of the calls at 0, 1 and 2 s free at 61, 62 and 63 s.
        let now = start + secs(60);
        assert_eq!(logs.decide("k", 3, HOLD, max_wait, now), Decision::Admitted { at: start + secs(61), left: 0 });
        assert_eq!(logs.decide("k", 3, HOLD, max_wait, now), Decision::Admitted { at: start + secs(62), left: 0 });
        // The third would wait 3 s: refused, told when the slot it would get frees.
        assert_eq!(logs.decide("k", 3, HOLD, max_wait, now), Decision::Refused { retry_after: secs(3) });
        // A later call does not overtake the two that wait.
        assert_eq!(
            logs.decide("k", 3, HOLD, max_wait, now + secs(1)),
            Decision::Admitted { at: start + secs(63), left: 0 }
        );
        assert_eq!(logs.held("k"), Some(3), "a log holds at most the limit");
    }

    #[test]
    fn no_window_of_the_hold_time_ever_holds_more_than_the_limit() {
        let mut logs = Logs::default();
        let start = Instant::now();
        let mut taken = Vec::new();
        // One call every 700 ms for five minutes against 7 per hold, waiting up to 2 s.
        for step in 0..430_u64 {
            let now = start + Duration::from_millis(step * 700);
            if let Decision::Admitted { at, .. } = logs.decide("k", 7, HOLD, secs(2), now) {
                assert!(at >= now && at - now <= secs(2));
                taken.push(at);
            }
        }
        assert!(taken.windows(2).all(|pair| pair[0] <= pair[1]), "slots are taken in order");
        for (i, &from) in taken.iter().enumerate() {
            let within = taken[i..].iter().take_while(|&&at| at < from + HOLD).count();
            assert!(within <= 7, "{within} calls within the hold time from {:?}", from - start);
        }
        // 301 s of calls: 7 at once, then 7 at 61 s, 122 s, 183 s and 244 s.
        assert_eq!(taken.len(), 7 * 5);
    }

    #[test]
    fn keys_are_independent_and_idle_keys_are_forgotten() {
        let mut logs = Logs::default();
        let start = Instant::now();
        assert!(matches!(at_once(&mut logs, "a", 1, start), Decision::Admitted { .. }));
        assert!(matches!(at_once(&mut logs, "a", 1, start), Decision::Refused { .. }));
        assert!(matches!(at_once(&mut logs, "b", 1, start), Decision::Admitted { .. }), "another key");
        assert!(matches!(at_once(&mut logs, "c", 1, start + secs(70)), Decision::Admitted { .. }));
        assert!(matches!(at_once(&mut logs, "c", 1, start + secs(140)), Decision::Admitted { .. }));
        assert_eq!((logs.held("a"), logs.held("b"), logs.held("c")), (None, None, Some(1)));
    }

    #[test]
    fn a_lowered_limit_applies_at_once_and_keeps_only_the_limit_in_memory() {
        let mut logs = Logs::default();
        let start = Instant::now();
        for i in 0..10 {
            assert!(matches!(at_once(&mut logs, "k", 10, start + secs(i)), Decision::Admitted { .. }));
        }
        // With a limit of 3 the newest three (7, 8 and 9 s) decide: a slot frees at 68 s.
        assert_eq!(at_once(&mut logs, "k", 3, start + secs(10)), Decision::Refused { retry_after: secs(58) });
        assert_eq!(logs.held("k"), Some(3));
    }

    #[test]
    fn slots_taken_elsewhere_count_against_the_share_in_order_and_only_the_newest_are_kept() {
        let mut logs = Logs::default();
        let start = Instant::now();
        for s in [3, 1, 2] {
            logs.record("k", 2, HOLD, start + secs(s), start + secs(3));
        }
        assert_eq!(logs.held("k"), Some(2), "the newest two of three");
        // The slots of 2 s and 3 s free at 63 s and 64 s.
        assert_eq!(at_once(&mut logs, "k", 2, start + secs(10)), Decision::Refused { retry_after: secs(53) });
        assert!(matches!(at_once(&mut logs, "k", 2, start + secs(63)), Decision::Admitted { left: 0, .. }));
    }
}
