//! The four RPCs. Every call passes through one envelope ([`envelope`]):
//! shedding, the caller, the deadline, the tenant (resolved once), the trace,
//! metrics, the log line and the audit event. Each flow then lives in a file of its own and
//! reads like the vendor's documentation: validate, call the vendor, reply.

mod create_account;
mod create_account_v2;
mod creation_lookup;
mod envelope;
mod idempotent;
mod login;
mod lookup_before_create;
mod one_time_token;
mod refresh;
mod refresh_reuse;
pub mod replies;
mod throttle;
mod trading_account_once;

use std::{sync::Arc, time::Duration};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::{
    audit::Audit,
    auth::CallerAuth,
    error::SsoError,
    idempotency::Idempotency,
    metrics::Metrics,
    proto::{self, sso_service_server::SsoService},
    quota::{Limits, SlidingWindows},
    reuse_store::ReuseStore,
    upstream::{Tenant, Tenants, UpstreamError},
};

/// The gRPC service. Cloning shares everything.
#[derive(Debug, Clone)]
pub struct SsoGateway {
    tenants: Arc<Tenants>,
    upstream_timeout: Duration,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    callers: Option<Arc<CallerAuth>>,
    windows: Arc<SlidingWindows>,
    limits: Limits,
    idempotency: Arc<Idempotency>,
    refresh_reuse: Option<Arc<refresh_reuse::RefreshReuse>>,
    link_flights: Arc<one_time_token::LinkFlights>,
    /// One email whose per-email limit differs from `limits` (lower-cased).
    email_limit_exception: Option<(String, u32)>,
    audit: Audit,
}

/// What a gateway is made of.
#[derive(Debug)]
pub struct GatewayParts {
    pub tenants: Tenants,
    /// Caps every RPC's upstream time; a shorter caller deadline wins.
    pub upstream_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// RPCs beyond this many in flight are shed with RESOURCE_EXHAUSTED, never queued.
    pub max_in_flight: usize,
    /// With it, every caller must authenticate and be allowed by the policy.
    pub callers: Option<Arc<CallerAuth>>,
    /// Where the per-caller and per-email limits are counted.
    pub windows: Arc<SlidingWindows>,
    pub limits: Limits,
    /// Where CreateAccount idempotency keys are remembered.
    pub idempotency: Arc<Idempotency>,
    /// Where Refresh results are kept for the reuse window; `None` switches
    /// sharing and reuse of refresh calls off.
    pub refresh_reuse: Option<ReuseStore>,
    /// Where every RPC's audit event goes.
    pub audit: Audit,
}

impl SsoGateway {
    pub fn new(parts: GatewayParts) -> Self {
        Self {
            tenants: Arc::new(parts.tenants),
            upstream_timeout: parts.upstream_timeout,
            metrics: parts.metrics,
            in_flight: Arc::new(Semaphore::new(parts.max_in_flight)),
            max_in_flight: parts.max_in_flight,
            callers: parts.callers,
            windows: parts.windows,
            limits: parts.limits,
            idempotency: parts.idempotency,
            refresh_reuse: parts.refresh_reuse.map(|store| Arc::new(refresh_reuse::RefreshReuse::new(store))),
            link_flights: Arc::default(),
            email_limit_exception: None,
            audit: parts.audit,
        }
    }

    /// Gives `email` (in any case) its own per-email limit, in place of
    /// `limits.email_per_minute`; for the sandbox's demo user. A limit that
    /// is switched off stays off.
    pub fn with_email_limit_for(mut self, email: &str, per_minute: u32) -> Self {
        self.email_limit_exception = Some((email.to_lowercase(), per_minute));
        self
    }
}

/// An upstream failure of `tenant`'s call, as the RPC reports it.
fn upstream_failure(tenant: &Tenant) -> impl Fn(UpstreamError) -> SsoError + '_ {
    move |error| SsoError::Upstream { tenant: tenant.settings.name.clone(), error }
}

#[tonic::async_trait]
impl SsoService for SsoGateway {
    async fn create_account(
        &self,
        request: Request<proto::CreateAccountRequest>,
    ) -> Result<Response<proto::CreateAccountResponse>, Status> {
        self.envelope("CreateAccount", request, |call, request| Box::pin(self.create_account_flow(call, request))).await
    }

    async fn issue_one_time_token(
        &self,
        request: Request<proto::IssueOneTimeTokenRequest>,
    ) -> Result<Response<proto::IssueOneTimeTokenResponse>, Status> {
        self.envelope("IssueOneTimeToken", request, |call, request| {
            Box::pin(self.issue_one_time_token_flow(call, request))
        })
        .await
    }

    async fn login(&self, request: Request<proto::LoginRequest>) -> Result<Response<proto::LoginResponse>, Status> {
        self.envelope("Login", request, |call, request| Box::pin(self.login_flow(call, request))).await
    }

    async fn refresh(
        &self,
        request: Request<proto::RefreshRequest>,
    ) -> Result<Response<proto::RefreshResponse>, Status> {
        self.envelope("Refresh", request, |call, request| Box::pin(self.refresh_flow(call, request))).await
    }
}
