//! Prometheus metrics, named after the usual gRPC server conventions
//! (`grpc_server_handled_total`, `grpc_server_handling_seconds`, labels
//! `grpc_service`, `grpc_method`, `grpc_type`, `grpc_code`), plus the upstream
//! calls per endpoint and HTTP status, and build info. One registry per
//! server instance, served on `--metrics-addr` at `/metrics` ([`endpoint`]);
//! the label sets are in [`labels`].

mod endpoint;
mod labels;
mod reload;

pub use endpoint::{bind, serve};
pub use labels::{Protocol, code_name};

use labels::{
    ApiLabels, AuditEventLabels, AuditLossLabels, BuildLabels, HandledLabels, ReasonLabels, RedisLabels, RpcLabels,
    SavedCallLabels, UpstreamLabels, UpstreamLatencyLabels,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::{
    borrow::Cow,
    sync::{PoisonError, RwLock},
    time::Duration,
};
use tonic::Code;

/// The gRPC service name used as `grpc_service`.
const SERVICE: &str = crate::proto::SERVICE_NAME;

/// Latency buckets from 100 µs to 10 s: the gateway's own overhead sits at
/// the bottom, slow vendor calls at the top.
const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Family<RpcLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling_seconds: Family<RpcLabels, Histogram>,
    errors: Family<ReasonLabels, Counter>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_seconds: Family<UpstreamLatencyLabels, Histogram>,
    upstream_retries: Family<UpstreamLatencyLabels, Counter>,
    circuit_state: Family<ApiLabels, Gauge>,
    quota_left: Family<ApiLabels, Gauge>,
    calls_saved: Family<SavedCallLabels, Counter>,
    quota_waiting: Family<ApiLabels, Gauge>,
    quota_waits: Family<ApiLabels, Counter>,
    quota_wait_seconds: Family<ApiLabels, Histogram>,
    audit_events: Family<AuditEventLabels, Counter>,
    audit_events_lost: Family<AuditLossLabels, Counter>,
    reload: reload::ReloadSeries,
    redis_up: Family<RedisLabels, Gauge>,
    redis_outages: Family<RedisLabels, Counter>,
    /// The series of each method and protocol seen so far (see [`MethodSeries`]).
    methods: RwLock<Vec<((&'static str, Protocol), MethodSeries)>>,
}

/// The series every call of one RPC method touches, resolved on its first
/// call: a family lookup hashes the labels and takes a lock, every time.
#[derive(Debug, Clone)]
struct MethodSeries {
    started: Counter,
    handled_ok: Counter,
    seconds: Histogram,
}

/// The series every call of one tenant to one vendor endpoint touches: its
/// latency and its count of 200 answers, resolved once by the caller.
#[derive(Debug, Clone)]
pub struct UpstreamSeries {
    ok: Counter,
    seconds: Histogram,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Quota waits last from a millisecond up to `--quota-max-wait` (2 s by default).
fn quota_wait_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let started = Family::<RpcLabels, Counter>::default();
        registry.register("grpc_server_started", "RPCs started on the server", started.clone());
        let handled = Family::<HandledLabels, Counter>::default();
        registry.register("grpc_server_handled", "RPCs completed on the server, by gRPC code", handled.clone());
        let handling_seconds =
            Family::<RpcLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "grpc_server_handling_seconds",
            "Time to handle an RPC, until the answer",
            handling_seconds.clone(),
        );
        let errors = Family::<ReasonLabels, Counter>::default();
        registry.register("mtr_sso_rpc_errors", "Failed RPCs by ErrorInfo reason", errors.clone());
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "mtr_sso_upstream_requests",
            "Vendor calls by tenant, endpoint and HTTP status (or timeout, connect_error, connection_lost; quota_exhausted, circuit_open and busy for calls not sent)",
            upstream_requests.clone(),
        );
        let upstream_seconds =
            Family::<UpstreamLatencyLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "mtr_sso_upstream_request_duration_seconds",
            "Time of a vendor call, until its whole answer",
            upstream_seconds.clone(),
        );
        let upstream_retries = Family::<UpstreamLatencyLabels, Counter>::default();
        registry.register(
            "mtr_sso_upstream_retries",
            "Vendor calls sent again after a refused connection",
            upstream_retries.clone(),
        );
        let circuit_state = Family::<ApiLabels, Gauge>::default();
        registry.register(
            "mtr_sso_upstream_circuit_state",
            "Circuit breaker per tenant and API: 0 closed, 1 open, 2 half-open",
            circuit_state.clone(),
        );
        let quota_left = Family::<ApiLabels, Gauge>::default();
        registry.register(
            "mtr_sso_upstream_quota_tokens_left",
            "Quota slots per tenant and API still free in the sliding window, as last seen by this replica",
            quota_left.clone(),
        );
        let calls_saved = Family::<SavedCallLabels, Counter>::default();
        registry.register(
            "mtr_sso_upstream_calls_saved",
            "Vendor calls not made: `coalesced` into a concurrent identical call, `reused` from a refresh result remembered in the reuse window",
            calls_saved.clone(),
        );
        let quota_waiting = Family::<ApiLabels, Gauge>::default();
        registry.register(
            "mtr_sso_upstream_quota_waiting",
            "Calls of this replica waiting now for a quota slot that frees within --quota-max-wait",
            quota_waiting.clone(),
        );
        let quota_waits = Family::<ApiLabels, Counter>::default();
        registry.register("mtr_sso_upstream_quota_waits", "Calls that waited for a quota slot", quota_waits.clone());
        let quota_wait_seconds =
            Family::<ApiLabels, Histogram>::new_with_constructor(quota_wait_histogram as fn() -> Histogram);
        registry.register(
            "mtr_sso_upstream_quota_wait_seconds",
            "Time a call waited for its quota slot",
            quota_wait_seconds.clone(),
        );
        let audit_events = Family::<AuditEventLabels, Counter>::default();
        registry.register("mtr_sso_audit_events", "Audit events written, by type", audit_events.clone());
        let audit_events_lost = Family::<AuditLossLabels, Counter>::default();
        // Present at 0 from the start: a counter that first appears at 1 shows
        // no increase, and the first lost event must already fire the alert.
        for cause in ["queue_full", "write_failed"] {
            let _ = audit_events_lost.get_or_create(&AuditLossLabels { cause });
        }
        registry.register(
            "mtr_sso_audit_events_lost",
            "Audit events not written: `queue_full` (the writer fell behind) or `write_failed` (the file or stdout refused them)",
            audit_events_lost.clone(),
        );
        let reload = reload::ReloadSeries::register(&mut registry);
        // Series appear only once a Redis is configured: no Redis is not an outage.
        let redis_up = Family::<RedisLabels, Gauge>::default();
        registry.register("mtr_sso_redis_up", "1 while Redis answers, 0 while it is out", redis_up.clone());
        let redis_outages = Family::<RedisLabels, Counter>::default();
        registry.register(
            "mtr_sso_redis_outages",
            "Times Redis went out (a command found it unreachable); each ends when it answers again",
            redis_outages.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("mtr_sso_build_info", "Build information; always 1", build_info);
        Self {
            registry,
            started,
            handled,
            handling_seconds,
            errors,
            upstream_requests,
            upstream_seconds,
            upstream_retries,
            circuit_state,
            quota_left,
            calls_saved,
            quota_waiting,
            quota_waits,
            quota_wait_seconds,
            audit_events,
            audit_events_lost,
            reload,
            redis_up,
            redis_outages,
            methods: RwLock::new(Vec::new()),
        }
    }

    /// Runs `use_series` on `method`'s series, resolving them on its first call.
    fn with_method<R>(
        &self,
        method: &'static str,
        protocol: Protocol,
        use_series: impl FnOnce(&MethodSeries) -> R,
    ) -> R {
        let key = (method, protocol);
        let seen = |methods: &[((&'static str, Protocol), MethodSeries)]| methods.iter().position(|(k, _)| *k == key);
        {
            let methods = self.methods.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = seen(&methods) {
                return use_series(&methods[at].1);
            }
        }
        let mut methods = self.methods.write().unwrap_or_else(PoisonError::into_inner);
        let at = match seen(&methods) {
            Some(at) => at,
            None => {
                let series = MethodSeries {
                    started: self.started.get_or_create(&Self::rpc(method, protocol)).clone(),
                    handled_ok: self.handled.get_or_create(&Self::handled(method, protocol, Code::Ok)).clone(),
                    seconds: self.handling_seconds.get_or_create(&Self::rpc(method, protocol)).clone(),
                };
                methods.push((key, series));
                methods.len() - 1
            }
        };
        use_series(&methods[at].1)
    }

    fn rpc(method: &'static str, protocol: Protocol) -> RpcLabels {
        RpcLabels { grpc_type: "unary", grpc_service: SERVICE, grpc_method: method, protocol: protocol.label() }
    }

    fn handled(method: &'static str, protocol: Protocol, code: Code) -> HandledLabels {
        HandledLabels {
            grpc_type: "unary",
            grpc_service: SERVICE,
            grpc_method: method,
            grpc_code: code_name(code),
            protocol: protocol.label(),
        }
    }

    /// An RPC started.
    pub fn rpc_started(&self, method: &'static str, protocol: Protocol) {
        self.with_method(method, protocol, |series| series.started.inc());
    }

    /// An RPC finished with `code` (and `reason` when it failed).
    pub fn rpc_handled(
        &self,
        method: &'static str,
        protocol: Protocol,
        code: Code,
        reason: Option<&'static str>,
        elapsed: Duration,
    ) {
        self.with_method(method, protocol, |series| {
            series.seconds.observe(elapsed.as_secs_f64());
            if code == Code::Ok {
                series.handled_ok.inc();
            } else {
                self.handled.get_or_create(&Self::handled(method, protocol, code)).inc();
            }
        });
        if let Some(reason) = reason {
            self.errors.get_or_create(&ReasonLabels { grpc_method: method, reason }).inc();
        }
    }

    /// The series every call of `tenant` to `endpoint` touches, for
    /// [`Metrics::upstream_call`].
    pub fn upstream_series(&self, tenant: &str, endpoint: &'static str) -> UpstreamSeries {
        let ok = UpstreamLabels { tenant: tenant.to_string(), endpoint, status: "200".into() };
        let latency = UpstreamLatencyLabels { tenant: tenant.to_string(), endpoint };
        UpstreamSeries {
            ok: self.upstream_requests.get_or_create(&ok).clone(),
            seconds: self.upstream_seconds.get_or_create(&latency).clone(),
        }
    }

    /// A vendor call ended: `status` is its HTTP status, or what happened
    /// instead (`timeout`, `quota_exhausted`, ...). `series` are the tenant's
    /// and endpoint's own (see [`Metrics::upstream_series`]).
    pub fn upstream_call(
        &self,
        series: &UpstreamSeries,
        tenant: &str,
        endpoint: &'static str,
        status: Cow<'static, str>,
        elapsed: Duration,
    ) {
        series.seconds.observe(elapsed.as_secs_f64());
        if status == "200" {
            series.ok.inc();
            return;
        }
        self.upstream_requests.get_or_create(&UpstreamLabels { tenant: tenant.to_string(), endpoint, status }).inc();
    }

    /// A vendor call was sent again after a refused connection.
    pub fn upstream_retry(&self, tenant: &str, endpoint: &'static str) {
        self.upstream_retries.get_or_create(&UpstreamLatencyLabels { tenant: tenant.to_string(), endpoint }).inc();
    }

    /// The circuit of a tenant's API changed state: 0 closed, 1 open, 2 half-open.
    pub fn circuit(&self, tenant: &str, api: &'static str, state: i64) {
        self.circuit_state.get_or_create(&ApiLabels { tenant: tenant.to_string(), api }).set(state);
    }

    /// Calls left in a tenant API's quota bucket after the latest call.
    pub fn quota_left(&self, tenant: &str, api: &'static str, left: u32) {
        self.quota_left.get_or_create(&ApiLabels { tenant: tenant.to_string(), api }).set(i64::from(left));
    }

    /// A call to `tenant`'s `endpoint` was answered without a vendor call of
    /// its own: `how` is `coalesced` (it shared a concurrent call) or `reused`
    /// (a result remembered in the refresh reuse window).
    pub fn vendor_call_saved(&self, tenant: &str, endpoint: &'static str, how: &'static str) {
        self.calls_saved.get_or_create(&SavedCallLabels { tenant: tenant.to_string(), endpoint, how }).inc();
    }

    /// A call began to wait for its quota slot.
    pub fn quota_wait_began(&self, tenant: &str, api: &'static str) {
        let labels = ApiLabels { tenant: tenant.to_string(), api };
        self.quota_waits.get_or_create(&labels).inc();
        self.quota_waiting.get_or_create(&labels).inc();
    }

    /// A call stopped waiting for its quota slot after `waited` (its slot
    /// freed, or the caller gave up).
    pub fn quota_wait_ended(&self, tenant: &str, api: &'static str, waited: Duration) {
        let labels = ApiLabels { tenant: tenant.to_string(), api };
        self.quota_waiting.get_or_create(&labels).dec();
        self.quota_wait_seconds.get_or_create(&labels).observe(waited.as_secs_f64());
    }

    /// An audit event of `event_type` was written.
    pub fn audit_event_written(&self, event_type: &'static str) {
        self.audit_events.get_or_create(&AuditEventLabels { r#type: event_type }).inc();
    }

    /// An audit event was lost: `cause` is `queue_full` or `write_failed`.
    /// The gauge and the outage counter of the Redis in use (`single` or `cluster`).
    pub fn redis_series(&self, topology: &'static str) -> (Gauge, Counter) {
        let labels = RedisLabels { topology };
        (self.redis_up.get_or_create(&labels).clone(), self.redis_outages.get_or_create(&labels).clone())
    }

    pub fn audit_event_lost(&self, cause: &'static str) {
        self.audit_events_lost.get_or_create(&AuditLossLabels { cause }).inc();
    }

    /// The metrics in the OpenMetrics text format Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
