//! Forgetting on the vendor's schedule: keys in the order they fall due, so
//! that each insert can remove a bounded number of expired entries and a
//! sandbox left running under load holds only what is still alive; and the
//! lifetimes they are forgotten after.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

use crate::config::SandboxOptions;

/// How long a one-time token is remembered after its validity ends, so that a
/// late redeem learns it expired (or was used) rather than that it is unknown.
pub const TOKEN_MEMORY: Duration = Duration::from_secs(60);

/// How long what the platform hands out lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// A session (`co-auth`).
    pub session: Duration,
    /// An unused refresh token (`rt`).
    pub refresh_token: Duration,
    /// A one-time token, remembered past its validity (see [`TOKEN_MEMORY`]).
    pub token_memory: Duration,
}

impl Lifetimes {
    /// The lifetimes the sandbox was started with (the vendor's by default).
    pub fn from_options(options: &SandboxOptions) -> Self {
        Self {
            session: options.session_lifetime,
            refresh_token: options.refresh_token_lifetime,
            token_memory: TOKEN_MEMORY,
        }
    }
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self::from_options(&SandboxOptions::default())
    }
}

/// Entries forgotten per insert and per kind, at most. Above one, a backlog
/// (after a pause in traffic) drains faster than inserts add to it, while no
/// single request pays for more than a few removals.
pub(super) const SWEEP_BATCH: usize = 8;

/// Keys by the instant they may be forgotten, soonest first.
#[derive(Debug, Default)]
pub(super) struct ExpiryQueue {
    due: BinaryHeap<Reverse<(Instant, String)>>,
}

impl ExpiryQueue {
    /// Remembers that `key` may be forgotten at `at`.
    pub(super) fn push(&mut self, at: Instant, key: String) {
        self.due.push(Reverse((at, key)));
    }

    /// Up to [`SWEEP_BATCH`] keys whose time has come by `now`, soonest first.
    pub(super) fn pop_due(&mut self, now: Instant) -> Vec<String> {
        let mut keys = Vec::new();
        while keys.len() < SWEEP_BATCH {
            match self.due.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            if let Some(Reverse((_, key))) = self.due.pop() {
                keys.push(key);
            }
        }
        keys
    }

    /// Keys still waiting.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_when_due_soonest_first_and_a_batch_at_a_time() {
        let mut queue = ExpiryQueue::default();
        let start = Instant::now();
        queue.push(start + Duration::from_secs(2), "later".into());
        queue.push(start + Duration::from_secs(1), "sooner".into());
        assert!(queue.pop_due(start).is_empty(), "nothing is due yet");
        assert_eq!(queue.pop_due(start + Duration::from_secs(1)), ["sooner"]);
        for i in 0..SWEEP_BATCH + 3 {
            queue.push(start, format!("k{i}"));
        }
        assert_eq!(queue.pop_due(start + Duration::from_secs(5)).len(), SWEEP_BATCH, "bounded work per call");
        assert_eq!(queue.pop_due(start + Duration::from_secs(5)).len(), 4, "the rest, `later` included");
        assert_eq!(queue.len(), 0);
    }
}
