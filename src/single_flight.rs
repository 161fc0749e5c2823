//! Single flight: concurrent callers asking for the same thing share one run
//! of the work, and each waits for its outcome within its own deadline. The
//! work runs on a task of its own, so it finishes even when every caller has
//! gone (a refresh the vendor rotated must still reach the reuse store). Once
//! the run ends, its key is free again: nothing is remembered here. The key
//! is freed however the run ends: with an outcome, a panic, or its task
//! cancelled (the runtime shutting down); its callers then get `None`. The
//! run's task carries the span and trace of the caller that started it, so
//! the work it does is traced as part of that caller's request.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{sync::watch, time::Instant};
use tracing::Instrument as _;

use crate::trace_context;

/// How long past its deadline the caller that started a run waits for its outcome.
const LEADER_GRACE: Duration = Duration::from_millis(250);

/// How a caller got its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This caller started the run.
    Led,
    /// Another caller's run was in flight; this one shared it.
    Joined,
}

/// One run in flight: its number, and where its outcome will appear.
struct Run<V> {
    id: u64,
    outcome: watch::Receiver<Option<V>>,
}

type Running<K, V> = Arc<Mutex<HashMap<K, Run<V>>>>;

/// The runs in flight, by key.
pub struct SingleFlight<K, V> {
    running: Running<K, V>,
    /// Numbers the runs, so that a run frees only its own key, never a later run's.
    runs: AtomicU64,
}

/// Frees a run's key when its task ends, whichever way: dropped after the
/// outcome is sent, or during a panic's unwinding, or when the task is cancelled.
struct FreeOnDrop<K: Hash + Eq, V> {
    running: Running<K, V>,
    key: Option<K>,
    id: u64,
}

impl<K: Hash + Eq, V> FreeOnDrop<K, V> {
    fn free(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.get(&key).is_some_and(|run| run.id == self.id) {
            running.remove(&key);
        }
    }
}

impl<K: Hash + Eq, V> Drop for FreeOnDrop<K, V> {
    fn drop(&mut self) {
        self.free();
    }
}

impl<K, V> std::fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let in_flight = self.running.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("SingleFlight").field("in_flight", &in_flight).finish()
    }
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self { running: Arc::default(), runs: AtomicU64::new(0) }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The outcome of the run for `key`: joins the one in flight, or starts
    /// `work` on a task of its own, in the current span and trace; `work`
    /// must end by `deadline`. `None` when
    /// the deadline passes first, or the run ended without an outcome (its
    /// task panicked).
    pub async fn run<F>(&self, key: K, deadline: Instant, work: impl FnOnce() -> F) -> Option<(V, Role)>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (mut outcome, role) = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match running.get(&key) {
                Some(in_flight) => (in_flight.outcome.clone(), Role::Joined),
                None => {
                    let (send, receive) = watch::channel(None);
                    let id = self.runs.fetch_add(1, Ordering::Relaxed);
                    running.insert(key.clone(), Run { id, outcome: receive.clone() });
                    let mut key_guard = FreeOnDrop { running: self.running.clone(), key: Some(key), id };
                    // Boxed here: the work is a whole upstream exchange, and moving it
                    // by value into the task copied it several times per call (memcpy
                    // was half of an IssueOneTimeToken's instructions).
                    let work = Box::pin(work());
                    let trace = trace_context::current();
                    let run = async move {
                        let value = match trace {
                            Some(trace) => trace_context::scope(trace, work).await,
                            None => work.await,
                        };
                        // The key is freed before the outcome is sent: a caller
                        // arriving after the run ended starts a new one. Should
                        // the work panic or the task be cancelled instead, the
                        // guard frees it and the dropped sender wakes the callers.
                        key_guard.free();
                        let _ = send.send(Some(value));
                    };
                    tokio::spawn(run.instrument(tracing::Span::current()));
                    (receive, Role::Led)
                }
            }
        };
        // The leader's work is bounded by the leader's own deadline: waiting a
        // moment past it lets the work's precise outcome (a vendor timeout, no
        // free slot) arrive instead of a generic one raced at the same instant.
        let wait_until = match role {
            Role::Led => deadline + LEADER_GRACE,
            Role::Joined => deadline,
        };
        let ready = tokio::time::timeout_at(wait_until, outcome.wait_for(Option::is_some)).await.ok()?.ok()?;
        ready.clone().map(|value| (value, role))
    }

    /// Runs in flight now.
    pub fn in_flight(&self) -> usize {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_a_later_caller_starts_a_new_one() {
        let flights = Arc::new(SingleFlight::<&'static str, usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (flights, runs) = (flights.clone(), runs.clone());
                tokio::spawn(async move {
                    flights
                        .run("k", deadline, || async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            runs.fetch_add(1, Ordering::SeqCst) + 1
                        })
                        .await
                })
            })
            .collect();
        let mut roles = Vec::new();
        for caller in callers {
            let (value, role) = caller.await.expect("task").expect("an outcome");
            assert_eq!(value, 1, "every caller sees the one run's outcome");
            roles.push(role);
        }
        assert_eq!(roles.iter().filter(|r| **r == Role::Led).count(), 1);
        assert_eq!(flights.in_flight(), 0, "nothing is remembered once the run ended");
        let again = flights.run("k", deadline, || async { 99 }).await;
        assert_eq!(again, Some((99, Role::Led)));
    }

    #[tokio::test]
    async fn the_run_is_traced_as_part_of_the_request_of_the_caller_that_started_it() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let flights = SingleFlight::<u8, (Option<trace_context::TraceContext>, Option<tracing::Id>)>::default();
        let trace = trace_context::TraceContext::new_root();
        let span = tracing::info_span!("rpc");
        let span_id = span.id();
        assert!(span_id.is_some(), "the subscriber records spans");
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = trace_context::scope(
            trace,
            flights.run(1, deadline, || async { (trace_context::current(), tracing::Span::current().id()) }),
        )
        .instrument(span)
        .await;
        assert_eq!(seen, Some(((Some(trace), span_id), Role::Led)));
    }

    #[tokio::test]
    async fn a_caller_whose_deadline_passes_leaves_and_the_run_outlives_the_caller_that_started_it() {
        let flights = Arc::new(SingleFlight::<u8, &'static str>::default());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                let slow = || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    "done"
                };
                flights.run(1, Instant::now() + Duration::from_secs(5), slow).await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        let impatient = flights.run(1, Instant::now() + Duration::from_millis(10), || async { "other" }).await;
        assert_eq!(impatient, None, "a joined caller leaves at its deadline");
        let patient = flights.run(1, Instant::now() + Duration::from_secs(5), || async { "second run" }).await;
        assert_eq!(patient, Some(("done", Role::Joined)), "the run outlived the caller that started it");
    }

    #[tokio::test]
    async fn a_run_that_panics_frees_its_key_and_its_callers_get_no_outcome_at_once() {
        let flights = Arc::new(SingleFlight::<u8, &'static str>::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        let joiner = {
            let flights = flights.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                flights.run(7, deadline, || async { "never run" }).await
            })
        };
        let started = std::time::Instant::now();
        let panicked = flights
            .run(7, deadline, || async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                panic!("the work failed")
            })
            .await;
        assert_eq!(panicked, None, "the caller that started the run gets no outcome");
        assert_eq!(joiner.await.expect("task"), None, "nor does the caller that joined it");
        assert!(started.elapsed() < Duration::from_secs(1), "neither waited for its deadline");
        assert_eq!(flights.in_flight(), 0, "the key is free");
        let again = flights.run(7, deadline, || async { "a new run" }).await;
        assert_eq!(again, Some(("a new run", Role::Led)));
    }

    #[tokio::test]
    async fn a_cancelled_run_frees_its_key_and_never_a_later_runs() {
        let flights = SingleFlight::<u8, u8>::default();
        let running = flights.running.clone();
        let (send, receive) = watch::channel(None);
        running.lock().expect("lock").insert(1, Run { id: 41, outcome: receive });
        // A guard of an older run with the same key leaves the newer run alone.
        drop(FreeOnDrop { running: running.clone(), key: Some(1), id: 40 });
        assert_eq!(flights.in_flight(), 1);
        drop(FreeOnDrop { running, key: Some(1), id: 41 });
        assert_eq!(flights.in_flight(), 0);
        drop(send);
    }
}
