//! Staying up when the vendor does not: a retry only where the request cannot
//! have been processed (the connection was refused), with jittered backoff
//! inside the caller's deadline and a budget so retries never multiply an
//! outage; and a circuit breaker per tenant and API that fails fast after
//! consecutive failures and lets one probe through after a cooldown.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

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
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A circuit breaker for one tenant's API.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    settings: ResilienceSettings,
}

impl Breaker {
    pub fn new(settings: ResilienceSettings) -> Self {
        Self { state: Mutex::new(State::Closed { failures: 0 }), settings }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go out; when not, how long the circuit stays open.
    pub fn admit(&self) -> Result<(), Duration> {
        if self.settings.breaker_failures == 0 {
            return Ok(());
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                *state = State::HalfOpen { probing: true };
                Ok(())
            }
            // One probe at a time; the others fail fast until it answers.
            State::HalfOpen { probing: true } => Err(Duration::from_millis(100)),
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(())
            }
        }
    }

    /// Records how a call that was admitted ended.
    pub fn record(&self, healthy: bool) -> CircuitState {
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
        match *state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
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

    #[test]
    fn the_circuit_opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let breaker = Breaker::new(settings(2, 30));
        assert_eq!(breaker.record(false), CircuitState::Closed);
        assert_eq!(breaker.record(false), CircuitState::Open);
        assert!(breaker.admit().is_err(), "fails fast while open");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.admit().is_ok(), "one probe after the cooldown");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        assert_eq!(breaker.record(true), CircuitState::Closed);
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again_and_a_success_resets_the_count() {
        let breaker = Breaker::new(settings(2, 20));
        breaker.record(false);
        breaker.record(true);
        assert_eq!(breaker.record(false), CircuitState::Closed, "the count restarted");
        breaker.record(false);
        std::thread::sleep(Duration::from_millis(30));
        assert!(breaker.admit().is_ok());
        assert_eq!(breaker.record(false), CircuitState::Open);
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
