//! Staying up when the vendor does not: a retry only where the request cannot
//! have been processed (the connection was refused), with jittered backoff
//! inside the caller's deadline and a budget so retries never multiply an
//! outage; and a circuit breaker per tenant and API that fails fast after
//! consecutive failures and lets one probe through after a cooldown.
//!
//! Every call the breaker admits holds a [`Permit`] until its outcome is
//! recorded. A permit dropped unrecorded (its caller went away, its task
//! panicked, it was never sent) counts as "unknown": it frees the probe and
//! changes nothing else, so a cancelled probe cannot leave the circuit
//! half-open for ever. A probe that neither answers nor is dropped by its
//! deadline is replaced by the next call all the same.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
// Tokio's clock, so that tests with a paused clock see the cooldown pass.
use tokio::time::Instant;

pub use crate::config::ResilienceSettings;

impl ResilienceSettings {
    /// The wait before retry number `retry` (1-based): half fixed, half
    /// random ("equal jitter"), so retries spread out but never come at once.
    pub fn backoff(&self, retry: u32) -> Duration {
        let full = self.base_backoff.saturating_mul(1 << retry.saturating_sub(1).min(10));
        let half = full / 2;
        half + Duration::from_secs_f64(half.as_secs_f64() * rand::random::<f64>())
    }
}

/// The state of a circuit, as the metric reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// After the cooldown: at most one probe at a time.
    HalfOpen {
        probe: Option<Probe>,
    },
}

/// The call admitted to find out whether the upstream is back.
#[derive(Debug, Clone, Copy)]
struct Probe {
    id: u64,
    /// The probe's own deadline: past it, it cannot answer any more, and
    /// the next call is let through in its place.
    until: Instant,
}

/// How long the other calls are told to wait while a probe is out.
const PROBE_RETRY_AFTER: Duration = Duration::from_millis(100);

/// A circuit breaker for one tenant's API.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    settings: ResilienceSettings,
    /// Names each probe, so that only the probe itself can free its place.
    probes: AtomicU64,
}

impl Breaker {
    pub fn new(settings: ResilienceSettings) -> Self {
        Self { state: Mutex::new(State::Closed { failures: 0 }), settings, probes: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call that must end by `deadline` may go out; when not, how
    /// long the circuit stays open. The permit records the call's outcome,
    /// and frees its place if dropped unrecorded.
    pub fn admit(&self, deadline: Instant) -> Result<Permit<'_>, Duration> {
        let allowed = |probe| Ok(Permit { breaker: self, probe, recorded: false });
        if self.settings.breaker_failures == 0 {
            return allowed(None);
        }
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => allowed(None),
            State::Open { until } if now < until => Err(until - now),
            // One probe at a time; the others fail fast until it answers.
            State::HalfOpen { probe: Some(probe) } if now < probe.until => Err(PROBE_RETRY_AFTER),
            State::Open { .. } | State::HalfOpen { .. } => {
                if let State::HalfOpen { probe: Some(_) } = *state {
                    tracing::warn!("the circuit's probe did not answer by its deadline; sending another");
                }
                let probe = Probe { id: self.probes.fetch_add(1, Ordering::Relaxed), until: deadline };
                *state = State::HalfOpen { probe: Some(probe) };
                allowed(Some(probe.id))
            }
        }
    }

    /// Records how a call that was admitted ended.
    fn record(&self, healthy: bool) -> CircuitState {
        if self.settings.breaker_failures == 0 {
            return CircuitState::Closed;
        }
        let mut state = self.lock();
        let next = match (&*state, healthy) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.settings.breaker_failures => {
                State::Closed { failures: failures + 1 }
            }
            (_, false) => {
                tracing::warn!(
                    cooldown_ms = self.settings.breaker_cooldown.as_millis() as u64,
                    "upstream circuit opened"
                );
                State::Open { until: Instant::now() + self.settings.breaker_cooldown }
            }
        };
        *state = next;
        Self::circuit_state(&state)
    }

    /// A call that ended without an outcome: it says nothing about the
    /// upstream, so only the probe's place is given back.
    fn abandon(&self, probe: Option<u64>) {
        let mut state = self.lock();
        if let (State::HalfOpen { probe: Some(current) }, Some(id)) = (&*state, probe)
            && current.id == id
        {
            *state = State::HalfOpen { probe: None };
        }
    }

    /// The circuit's state now.
    pub fn state(&self) -> CircuitState {
        Self::circuit_state(&self.lock())
    }

    /// Whether a probe is out now.
    pub fn probing(&self) -> bool {
        matches!(*self.lock(), State::HalfOpen { probe: Some(_) })
    }

    fn circuit_state(state: &State) -> CircuitState {
        match state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// One admitted call's place in the breaker, until its outcome is recorded.
#[derive(Debug)]
#[must_use = "a permit dropped unrecorded counts as an unknown outcome"]
pub struct Permit<'breaker> {
    breaker: &'breaker Breaker,
    /// Set when this call is the half-open probe.
    probe: Option<u64>,
    recorded: bool,
}

impl Permit<'_> {
    /// Records how the call ended; gives the circuit's state after it.
    pub fn record(mut self, healthy: bool) -> CircuitState {
        self.recorded = true;
        self.breaker.record(healthy)
    }

    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.abandon(self.probe);
        }
    }
}

/// Retries as a share of requests: each request earns a fifth of a retry, up
/// to a reserve of ten, so an outage cannot turn every call into several.
#[derive(Debug)]
pub struct RetryBudget {
    reserve: Mutex<f64>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self { reserve: Mutex::new(10.0) }
    }
}

impl RetryBudget {
    pub fn deposit(&self) {
        let mut reserve = self.reserve.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *reserve = (*reserve + 0.2).min(10.0);
    }

    pub fn withdraw(&self) -> bool {
        let mut reserve = self.reserve.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *reserve >= 1.0 {
            *reserve -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(failures: u32, cooldown_ms: u64) -> ResilienceSettings {
        ResilienceSettings {
            breaker_failures: failures,
            breaker_cooldown: Duration::from_millis(cooldown_ms),
            ..Default::default()
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn the_circuit_opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let breaker = Breaker::new(settings(2, 30));
        assert_eq!(breaker.admit(far()).expect("closed").record(false), CircuitState::Closed);
        assert_eq!(breaker.admit(far()).expect("closed").record(false), CircuitState::Open);
        assert!(breaker.admit(far()).is_err(), "fails fast while open");
        std::thread::sleep(Duration::from_millis(40));
        let probe = breaker.admit(far()).expect("one probe after the cooldown");
        assert!(probe.is_probe());
        assert!(breaker.admit(far()).is_err(), "only one probe at a time");
        assert_eq!(probe.record(true), CircuitState::Closed);
        assert!(breaker.admit(far()).is_ok());
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again_and_a_success_resets_the_count() {
        let breaker = Breaker::new(settings(2, 20));
        let call = |healthy| breaker.admit(far()).expect("admitted").record(healthy);
        call(false);
        call(true);
        assert_eq!(call(false), CircuitState::Closed, "the count restarted");
        call(false);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(call(false), CircuitState::Open);
    }

    #[test]
    fn a_probe_dropped_unrecorded_frees_its_place_and_changes_nothing_else() {
        let breaker = Breaker::new(settings(1, 10));
        breaker.admit(far()).expect("closed").record(false);
        std::thread::sleep(Duration::from_millis(20));
        let probe = breaker.admit(far()).expect("the probe");
        assert!(breaker.probing());
        drop(probe);
        assert!(!breaker.probing(), "the dropped probe freed its place");
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "an unknown outcome neither opens nor closes");
        let next = breaker.admit(far()).expect("the next call probes at once");
        assert!(next.is_probe());
        assert_eq!(next.record(true), CircuitState::Closed);
        // A call admitted while closed and dropped leaves the count alone.
        drop(breaker.admit(far()).expect("closed"));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn a_probe_past_its_deadline_is_replaced_and_only_the_probe_frees_the_place() {
        let breaker = Breaker::new(settings(1, 10));
        breaker.admit(far()).expect("closed").record(false);
        std::thread::sleep(Duration::from_millis(20));
        let stuck = breaker.admit(Instant::now() + Duration::from_millis(10)).expect("the probe");
        assert!(breaker.admit(far()).is_err(), "its deadline has not passed");
        std::thread::sleep(Duration::from_millis(20));
        let replacement = breaker.admit(far()).expect("a probe past its deadline is replaced");
        drop(stuck);
        assert!(breaker.probing(), "the replaced probe does not free the replacement's place");
        assert!(breaker.admit(far()).is_err());
        drop(replacement);
        assert!(!breaker.probing());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_the_budget_runs_dry() {
        let s = ResilienceSettings { base_backoff: Duration::from_millis(100), ..Default::default() };
        for _ in 0..20 {
            let first = s.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = s.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
        }
        let budget = RetryBudget::default();
        let granted = (0..20).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 10);
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(budget.withdraw(), "five requests earn one retry");
        assert!(!budget.withdraw());
    }
}
