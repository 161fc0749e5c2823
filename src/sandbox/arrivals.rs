//! What the vendor saw: for each rate-limited API (`broker-api`, `platform`),
//! when every request arrived and whether the rate limit refused it. Tests
//! and the quota benchmark judge a client's limiter from here, the vendor's
//! side, rather than from what the client believes it sent. The latest
//! [`KEPT_PER_API`] requests of each API are kept.

use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Instant,
};

/// Requests kept per API: the oldest are forgotten beyond it.
pub const KEPT_PER_API: usize = 100_000;

/// One request as the rate limit saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Arrival {
    /// Microseconds since the sandbox started.
    pub at_us: u64,
    /// Whether it was refused with 429.
    pub refused: bool,
}

/// The arrivals of every API since the sandbox started.
#[derive(Debug)]
pub(crate) struct Arrivals {
    started: Instant,
    by_api: HashMap<&'static str, VecDeque<Arrival>>,
}

impl Arrivals {
    pub(crate) fn new() -> Self {
        Self { started: Instant::now(), by_api: HashMap::new() }
    }

    /// Records one request to `api` at `now`.
    pub(crate) fn record(&mut self, api: &'static str, now: Instant, refused: bool) {
        let at_us = u64::try_from(now.saturating_duration_since(self.started).as_micros()).unwrap_or(u64::MAX);
        let log = self.by_api.entry(api).or_default();
        if log.len() == KEPT_PER_API {
            log.pop_front();
        }
        log.push_back(Arrival { at_us, refused });
    }

    /// Every API's arrivals, oldest first.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, Vec<Arrival>> {
        self.by_api.iter().map(|(api, log)| (api.to_string(), log.iter().copied().collect())).collect()
    }
}
