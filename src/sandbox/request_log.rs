//! What the vendor was asked, in order: every vendor request's method, path,
//! and when it arrived and was answered (before the latency switch's delay
//! and after the answer was built). Tests judge from here which calls a
//! client made one after another and which side by side. The latest
//! [`KEPT_REQUESTS`] are kept.

use serde::Serialize;
use std::{collections::VecDeque, time::Instant};

use super::{Sandbox, locking::lock};

/// Requests kept: the oldest are forgotten beyond it.
pub const KEPT_REQUESTS: usize = 10_000;

/// One vendor request as the sandbox saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// Microseconds since the sandbox started.
    pub arrived_us: u64,
    /// Microseconds since the sandbox started; `None` while unanswered (or
    /// never answered: a hang whose client gave up).
    pub answered_us: Option<u64>,
}

impl LoggedRequest {
    /// Whether this request and `other` were in flight at the same time.
    pub fn overlaps(&self, other: &LoggedRequest) -> bool {
        let end = |request: &LoggedRequest| request.answered_us.unwrap_or(u64::MAX);
        self.arrived_us < end(other) && other.arrived_us < end(self)
    }
}

#[derive(Debug)]
pub(crate) struct RequestLog {
    started: Instant,
    /// The sequence number of the first entry kept.
    first: u64,
    entries: VecDeque<LoggedRequest>,
}

impl RequestLog {
    pub(crate) fn new() -> Self {
        Self { started: Instant::now(), first: 0, entries: VecDeque::new() }
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records an arrival; the number to mark its answer with.
    pub(crate) fn arrived(&mut self, method: &str, path: &str) -> u64 {
        if self.entries.len() == KEPT_REQUESTS {
            self.entries.pop_front();
            self.first += 1;
        }
        let arrived_us = self.micros();
        self.entries.push_back(LoggedRequest {
            method: method.to_string(),
            path: path.to_string(),
            arrived_us,
            answered_us: None,
        });
        self.first + self.entries.len() as u64 - 1
    }

    /// Marks request `number` answered now (if it is still kept).
    pub(crate) fn answered(&mut self, number: u64) {
        let now = self.micros();
        let index = number.checked_sub(self.first).and_then(|index| usize::try_from(index).ok());
        if let Some(entry) = index.and_then(|index| self.entries.get_mut(index)) {
            entry.answered_us = Some(now);
        }
    }
}

impl Sandbox {
    /// The vendor requests received so far, in order of arrival.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.requests).entries.iter().cloned().collect()
    }

    /// Adds a v2 trading account in `group` for the user account of
    /// `email`, as if opened at `created` (on the sandbox's clock); `false`
    /// if no user account has the email.
    pub fn seed_trading_account(&self, email: &str, group: &str, created: time::OffsetDateTime) -> bool {
        let mut state = lock(&self.shared.state);
        let Some(user_uuid) = state.account(email).map(|account| account.uuid.clone()) else {
            return false;
        };
        let request = serde_json::json!({"group": group, "leverageRatioPercent": 100, "accountType": "DEMO",
            "accountDetails": {"firstName": "Seeded", "lastName": "Account"}});
        let opened = state.open_trading_account(&user_uuid, request, false);
        let created = created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        state.set_trading_account_created(&user_uuid, opened["uuid"].as_str().unwrap_or_default(), &created);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_marked_answered_by_its_own_number_even_after_the_oldest_are_forgotten() {
        let mut log = RequestLog::new();
        let first = log.arrived("POST", "/a");
        let second = log.arrived("GET", "/b");
        log.answered(second);
        assert_eq!(log.entries[0].answered_us, None);
        assert!(log.entries[1].answered_us.is_some());
        for _ in 0..KEPT_REQUESTS {
            log.arrived("GET", "/c");
        }
        log.answered(first);
        assert_eq!(log.entries.len(), KEPT_REQUESTS);
        assert!(log.entries.iter().all(|entry| entry.path == "/c"), "the first two are forgotten, none is marked");
    }

    #[test]
    fn requests_overlap_only_while_both_are_in_flight() {
        let at =
            |arrived_us, answered_us| LoggedRequest { method: "GET".into(), path: "/".into(), arrived_us, answered_us };
        assert!(at(0, Some(100)).overlaps(&at(50, Some(150))));
        assert!(!at(0, Some(100)).overlaps(&at(100, Some(200))));
        assert!(at(0, None).overlaps(&at(500, Some(600))), "an unanswered request is still in flight");
    }
}
