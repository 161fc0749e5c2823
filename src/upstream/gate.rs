//! The admission gate of one tenant's API (its Broker-API or its platform):
//! before a call is sent it must get one of the API's concurrency slots, the
//! circuit breaker's permission and then a slot in the API's share of the
//! vendor's quota (waiting for one briefly, in order, when it frees within
//! `--quota-max-wait`): a call the open circuit refuses costs no quota. Once
//! admitted, its retries draw on the API's retry budget and its outcome is
//! recorded by the breaker. An admitted call dropped before it settles (its
//! caller went away) frees its slot and its breaker permit all the same, and
//! is counted as `cancelled`.

use std::{
    borrow::Cow,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};
use tokio::{
    sync::{Semaphore, SemaphorePermit},
    time::Instant,
};

use super::{
    error::{Endpoint, UpstreamError, UpstreamFault},
    resilience::{Breaker, CircuitState, Permit, ResilienceSettings, RetryBudget},
};
use crate::{
    deadline::Deadline,
    metrics::{Metrics, UpstreamSeries},
    quota::{SlidingWindows, Slot},
};

/// What every tenant API's gate is built from and reports to, shared by all of
/// them: the metrics, the sliding windows that keep each API key and platform
/// inside the vendor's quota across the fleet (in memory or in Redis), that
/// quota per minute and how long a call may wait for a slot, and how failures
/// are retried and circuit-broken.
#[derive(Debug)]
pub struct GateContext {
    metrics: Arc<Metrics>,
    windows: Arc<SlidingWindows>,
    /// Calls per minute per API key and per platform; 0 for no limit.
    upstream_per_minute: u32,
    /// How long a call may wait for a quota slot (within its deadline); zero: never.
    quota_max_wait: Duration,
    resilience: ResilienceSettings,
}

impl GateContext {
    /// A context reporting to `metrics`, taking quota from `windows`
    /// (`upstream_per_minute` calls per minute per tenant API; 0: no limit),
    /// and letting a call wait up to `quota_max_wait` for a slot.
    pub fn new(
        metrics: Arc<Metrics>,
        windows: Arc<SlidingWindows>,
        upstream_per_minute: u32,
        quota_max_wait: Duration,
        resilience: ResilienceSettings,
    ) -> Arc<Self> {
        Arc::new(Self { metrics, windows, upstream_per_minute, quota_max_wait, resilience })
    }

    /// Metrics only: no quota, no retries, no breaker, no concurrency limit
    /// (for tests and tools).
    pub fn unlimited(metrics: Arc<Metrics>) -> Arc<Self> {
        Self::new(metrics, Arc::new(SlidingWindows::in_memory()), 0, Duration::ZERO, ResilienceSettings::off())
    }
}

/// A timeout counts against the circuit only when the call had this long:
/// callers with tight deadlines must not open it for everyone.
const TIMEOUT_COUNTS_AFTER: Duration = Duration::from_secs(1);

/// The gate of one tenant's API.
#[derive(Debug)]
pub(crate) struct UpstreamGate {
    tenant: String,
    api: &'static str,
    context: Arc<GateContext>,
    /// The quota's key for this tenant's API.
    quota_key: String,
    /// Slots for calls in flight to this tenant's API, if limited.
    slots: Option<Semaphore>,
    breaker: Breaker,
    /// The circuit state last published as a metric (-1: none yet), so the
    /// gauge is written when the state changes, not on every call.
    circuit_published: AtomicI64,
    retry_budget: RetryBudget,
    /// Each endpoint's metric series, resolved on its first call.
    series: [OnceLock<UpstreamSeries>; Endpoint::COUNT],
}

impl UpstreamGate {
    /// The gate of `tenant`'s `api` ("broker-api" or "platform").
    pub(crate) fn new(tenant: &str, api: &'static str, context: Arc<GateContext>) -> Self {
        let resilience = context.resilience;
        Self {
            tenant: tenant.to_string(),
            api,
            quota_key: format!("upstream:{tenant}:{api}"),
            slots: (resilience.max_concurrent_calls > 0).then(|| Semaphore::new(resilience.max_concurrent_calls)),
            breaker: Breaker::new(resilience),
            circuit_published: AtomicI64::new(-1),
            retry_budget: RetryBudget::default(),
            series: Default::default(),
            context,
        }
    }

    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Lets a call to `endpoint` through, or says why it was not sent: no
    /// slot freed up before `deadline`, the circuit is open, or no quota slot
    /// frees within the wait allowed. Dropped on the way, it holds nothing.
    pub(crate) async fn admit(&self, endpoint: Endpoint, deadline: Deadline) -> Result<Admitted<'_>, UpstreamError> {
        let refused = |fault| UpstreamError::new(endpoint, None, fault);
        // A slot first: beyond the limit a call waits here, holding no connection.
        let slot = match &self.slots {
            Some(slots) => match tokio::time::timeout_at(deadline.instant(), slots.acquire()).await {
                Ok(slot) => slot.ok(),
                Err(_) => return Err(refused(UpstreamFault::Busy)),
            },
            None => None,
        };
        // The breaker before the quota: a call it refuses must not spend the
        // fleet's quota. Its permit is held through the quota wait, and a
        // refusal or a cancel there gives it back (a probe's place included).
        let permit = match self.breaker.admit(deadline.instant()) {
            Ok(permit) => permit,
            Err(retry_after) => return Err(refused(UpstreamFault::CircuitOpen { retry_after })),
        };
        // The vendor's limit is per API key (and per platform) for the whole fleet.
        let per_minute = self.context.upstream_per_minute;
        if per_minute > 0 {
            let max_wait = self.context.quota_max_wait.min(deadline.remaining());
            match self.context.windows.reserve(&self.quota_key, per_minute, max_wait).await {
                Ok(quota_slot) => {
                    self.context.metrics.quota_left(&self.tenant, self.api, quota_slot.left());
                    self.wait_for(quota_slot).await;
                }
                Err(retry_after) => {
                    self.context.metrics.quota_left(&self.tenant, self.api, 0);
                    return Err(refused(UpstreamFault::QuotaExhausted { retry_after }));
                }
            }
        }
        self.retry_budget.deposit();
        Ok(Admitted { gate: self, endpoint, permit: Some(permit), admitted_at: Instant::now(), _slot: slot })
    }

    /// Publishes the circuit's state as a metric when it changed.
    fn publish(&self, state: CircuitState) {
        if self.circuit_published.swap(state as i64, Ordering::Relaxed) != state as i64 {
            self.context.metrics.circuit(&self.tenant, self.api, state as i64);
        }
    }

    /// Waits until a reserved quota slot frees, counted in the metrics even
    /// when the caller gives up on the way.
    async fn wait_for(&self, quota_slot: Slot) {
        if quota_slot.wait().is_zero() {
            return;
        }
        let _waiting = QuotaWait::begin(self);
        quota_slot.until_free().await;
    }

    /// Counts one finished call, whatever its outcome.
    pub(crate) fn count_call(
        &self,
        endpoint: Endpoint,
        status: Option<u16>,
        fault: Option<&UpstreamFault>,
        latency: Duration,
    ) {
        let series = self.series[endpoint.index()]
            .get_or_init(|| self.context.metrics.upstream_series(&self.tenant, endpoint.name()));
        self.context.metrics.upstream_call(series, &self.tenant, endpoint.name(), status_label(status, fault), latency);
    }
}

/// A call waiting for its quota slot, as the metrics count it.
struct QuotaWait<'gate> {
    gate: &'gate UpstreamGate,
    began: Instant,
}

impl<'gate> QuotaWait<'gate> {
    fn begin(gate: &'gate UpstreamGate) -> Self {
        gate.context.metrics.quota_wait_began(&gate.tenant, gate.api);
        Self { gate, began: Instant::now() }
    }
}

impl Drop for QuotaWait<'_> {
    fn drop(&mut self) {
        self.gate.context.metrics.quota_wait_ended(&self.gate.tenant, self.gate.api, self.began.elapsed());
    }
}

/// The metric's `status` label: the HTTP status, or what happened instead.
fn status_label(status: Option<u16>, fault: Option<&UpstreamFault>) -> Cow<'static, str> {
    match (status, fault) {
        (Some(200), _) => "200".into(),
        (Some(status), _) => status.to_string().into(),
        (None, Some(UpstreamFault::ConnectFailed)) => "connect_error".into(),
        (None, Some(UpstreamFault::Timeout)) => "timeout".into(),
        (None, Some(UpstreamFault::NoTimeLeft)) => "no_time_left".into(),
        (None, Some(UpstreamFault::QuotaExhausted { .. })) => "quota_exhausted".into(),
        (None, Some(UpstreamFault::Busy)) => "busy".into(),
        (None, Some(UpstreamFault::CircuitOpen { .. })) => "circuit_open".into(),
        (None, _) => "connection_lost".into(),
    }
}

/// A call the gate let through; it holds the call's slot and breaker permit
/// until it is settled, or dropped.
#[derive(Debug)]
pub(crate) struct Admitted<'gate> {
    gate: &'gate UpstreamGate,
    endpoint: Endpoint,
    /// `None` once settled.
    permit: Option<Permit<'gate>>,
    admitted_at: Instant,
    _slot: Option<SemaphorePermit<'gate>>,
}

impl Admitted<'_> {
    pub(crate) fn resilience(&self) -> ResilienceSettings {
        self.gate.context.resilience
    }

    /// Whether the API's retry budget grants one more attempt (counted as a retry).
    pub(crate) fn take_retry(&self) -> bool {
        let granted = self.gate.retry_budget.withdraw();
        if granted {
            self.gate.context.metrics.upstream_retry(&self.gate.tenant, self.endpoint.name());
        }
        granted
    }

    /// Records the call's outcome with the circuit breaker. `last_budget` is
    /// the time the last attempt had, which decides whether a timeout is the
    /// upstream's fault. A call that was never sent says nothing about the
    /// upstream: its permit is given back unrecorded.
    pub(crate) fn settle<T>(mut self, outcome: &Result<T, UpstreamError>, last_budget: Duration) {
        let Some(permit) = self.permit.take() else { return };
        let healthy = match outcome {
            Ok(_) => true,
            Err(error) => match error.fault {
                UpstreamFault::NoTimeLeft => return,
                UpstreamFault::ConnectFailed
                | UpstreamFault::ConnectionLost
                | UpstreamFault::ServerError
                | UpstreamFault::Protocol { .. } => false,
                UpstreamFault::Timeout => last_budget < TIMEOUT_COUNTS_AFTER,
                _ => true,
            },
        };
        self.gate.publish(permit.record(healthy));
    }
}

impl Drop for Admitted<'_> {
    /// Unsettled: the caller went away mid-call. The permit's own drop frees
    /// the breaker's probe place; here the call is counted, so that calls cut
    /// off by their callers show in the metrics.
    fn drop(&mut self) {
        if self.permit.is_some() {
            let gate = self.gate;
            let series = gate.series[self.endpoint.index()]
                .get_or_init(|| gate.context.metrics.upstream_series(&gate.tenant, self.endpoint.name()));
            gate.context.metrics.upstream_call(
                series,
                &gate.tenant,
                self.endpoint.name(),
                "cancelled".into(),
                self.admitted_at.elapsed(),
            );
            tracing::debug!(tenant = %gate.tenant, endpoint = self.endpoint.name(), "upstream call dropped by its caller");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate whose circuit opens after one failure and cools down in 10 ms,
    /// with a quota of one call a minute that a call may wait `quota_wait` for.
    fn gate(quota_wait: Duration) -> UpstreamGate {
        let resilience = ResilienceSettings {
            breaker_failures: 1,
            breaker_cooldown: Duration::from_millis(10),
            max_concurrent_calls: 1,
            ..ResilienceSettings::default()
        };
        let windows = Arc::new(SlidingWindows::in_memory());
        let context = GateContext::new(Arc::new(Metrics::new()), windows, 1, quota_wait, resilience);
        UpstreamGate::new("acme", "platform", context)
    }

    async fn open_then_cool_down(gate: &UpstreamGate) {
        let deadline = Deadline::after(Duration::from_secs(5));
        let failed: Result<(), UpstreamError> =
            Err(UpstreamError::new(Endpoint::Login, None, UpstreamFault::ServerError));
        gate.admit(Endpoint::Login, deadline).await.expect("the quota's one call").settle(&failed, Duration::ZERO);
        assert_eq!(gate.breaker.state(), CircuitState::Open);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_probe_refused_by_the_quota_gives_its_place_and_its_slot_back() {
        let gate = gate(Duration::ZERO);
        open_then_cool_down(&gate).await;
        let refused = gate.admit(Endpoint::Login, Deadline::after(Duration::from_secs(5))).await.expect_err("no quota");
        assert!(matches!(refused.fault, UpstreamFault::QuotaExhausted { .. }), "{refused}");
        assert!(!gate.breaker.probing(), "the probe's place is free again");
        assert_eq!(gate.slots.as_ref().map(Semaphore::available_permits), Some(1), "the slot is free again");
    }

    #[tokio::test]
    async fn a_probe_cancelled_while_it_waits_for_quota_gives_its_place_and_its_slot_back() {
        let gate = gate(Duration::from_secs(120));
        open_then_cool_down(&gate).await;
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            gate.admit(Endpoint::Login, Deadline::after(Duration::from_secs(120))),
        )
        .await;
        assert!(waiting.is_err(), "the probe was still waiting for its quota slot when its caller left");
        assert!(!gate.breaker.probing(), "the probe's place is free again");
        assert_eq!(gate.slots.as_ref().map(Semaphore::available_permits), Some(1), "the slot is free again");
    }

    #[tokio::test]
    async fn an_admitted_call_dropped_before_it_settles_frees_the_probe_and_the_slot() {
        let gate = gate(Duration::ZERO);
        open_then_cool_down(&gate).await;
        // The quota is spent; a call admitted later (a fresh minute) stands in here.
        let gate = UpstreamGate { context: GateContext::unlimited(Arc::new(Metrics::new())), ..gate };
        let probe = gate.admit(Endpoint::Login, Deadline::after(Duration::from_secs(5))).await.expect("the probe");
        assert!(gate.breaker.probing());
        assert_eq!(gate.slots.as_ref().map(Semaphore::available_permits), Some(0));
        drop(probe);
        assert!(!gate.breaker.probing(), "the probe's place is free again");
        assert_eq!(gate.slots.as_ref().map(Semaphore::available_permits), Some(1), "the slot is free again");
        assert!(
            gate.admit(Endpoint::Login, Deadline::after(Duration::from_secs(5))).await.is_ok(),
            "the next call probes"
        );
    }
}
