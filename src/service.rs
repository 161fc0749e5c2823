//! The four RPCs. At the boundary every call is shed when the service is full,
//! authenticated and authorized when callers are, traced, counted and logged
//! in one line. Each handler then resolves the tenant, validates the request,
//! applies the per-caller and per-email limits, and runs the vendor calls of
//! its seed flow within the RPC's deadline; CreateAccount honours idempotency keys.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use crate::{
    auth::CallerAuth,
    convert,
    deadline::Deadline,
    error::{SsoError, ThrottleScope, upstream_code_and_reason},
    hex,
    idempotency::{self, Claim, Idempotency, Outcome},
    metrics::{self, Metrics},
    proto::{self, sso_service_server::SsoService},
    quota::{self, Buckets, Limits},
    session,
    tenant::{Tenant, Tenants},
    trace_context::{self, TraceContext},
    upstream::{CreatedAccount, UpstreamError, UpstreamFault},
};

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct SsoGateway {
    tenants: Arc<Tenants>,
    upstream_timeout: Duration,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    callers: Option<Arc<CallerAuth>>,
    throttles: Option<(Arc<Buckets>, Limits)>,
    idempotency: Option<Arc<Idempotency>>,
}

/// Default limit of RPCs in flight; each holds about 40 KB (see BENCHMARKS.md).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

impl SsoGateway {
    /// A gateway over the tenants; `upstream_timeout` caps every RPC's upstream time.
    pub fn new(tenants: Tenants, upstream_timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            tenants: Arc::new(tenants),
            upstream_timeout,
            metrics,
            in_flight: Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            callers: None,
            throttles: None,
            idempotency: None,
        }
    }

    /// Honours CreateAccount idempotency keys with this store.
    pub fn with_idempotency(mut self, idempotency: Arc<Idempotency>) -> Self {
        self.idempotency = Some(idempotency);
        self
    }

    /// Limits IssueOneTimeToken and Login per caller and per email.
    pub fn with_throttles(mut self, buckets: Arc<Buckets>, limits: Limits) -> Self {
        self.throttles = Some((buckets, limits));
        self
    }

    /// Refuses a sign-in call over its caller's or its email's limit, before
    /// it costs the vendor anything. Unauthenticated deployments have no
    /// caller identity to limit, so only the email limit applies there.
    async fn throttle(&self, caller: Option<&str>, tenant: &str, email: &str) -> Result<(), SsoError> {
        let Some((buckets, limits)) = &self.throttles else { return Ok(()) };
        if let Some(caller) = caller
            && limits.caller_per_minute > 0
        {
            buckets
                .take(&format!("caller:{caller}"), limits.caller_per_minute)
                .await
                .map_err(|retry_after| SsoError::Throttled { scope: ThrottleScope::Caller, retry_after })?;
        }
        if limits.email_per_minute == 0 {
            return Ok(());
        }
        buckets
            .take(&quota::email_key(tenant, email), limits.email_per_minute)
            .await
            .map(|_| ())
            .map_err(|retry_after| SsoError::Throttled { scope: ThrottleScope::Email, retry_after })
    }

    /// Requires every caller to authenticate and to be allowed by the policy.
    pub fn with_caller_auth(mut self, callers: Arc<CallerAuth>) -> Self {
        self.callers = Some(callers);
        self
    }

    /// Sheds RPCs beyond `limit` in flight with RESOURCE_EXHAUSTED, never queueing them.
    pub fn with_max_in_flight(mut self, limit: usize) -> Self {
        self.in_flight = Arc::new(Semaphore::new(limit));
        self.max_in_flight = limit;
        self
    }
}

fn upstream(tenant: &Tenant) -> impl Fn(UpstreamError) -> SsoError + '_ {
    move |error| SsoError::Upstream { tenant: tenant.settings.name.clone(), error }
}

/// What the boundary knows of an RPC before it runs.
struct Rpc {
    method: &'static str,
    /// The request's `tenant` field as sent.
    tenant_field: String,
    /// The authenticated caller; `anonymous` when callers are not authenticated.
    caller: Result<String, SsoError>,
    peer: Option<std::net::SocketAddr>,
    trace: TraceContext,
    deadline: Deadline,
}

impl SsoGateway {
    fn begin<T>(&self, method: &'static str, request: &Request<T>, tenant: &str) -> Rpc {
        Rpc {
            method,
            tenant_field: tenant.to_string(),
            caller: match &self.callers {
                Some(callers) => callers.authenticate(request),
                None => Ok("anonymous".into()),
            },
            peer: request.remote_addr(),
            trace: TraceContext::from_metadata(request.metadata()),
            deadline: Deadline::for_request(request.metadata(), self.upstream_timeout),
        }
    }

    /// The caller's name when callers are authenticated (limits and idempotency
    /// keys are scoped by it); `None` in an open deployment.
    fn authenticated_caller(&self, rpc: &Rpc) -> Option<String> {
        self.callers.as_ref().and(rpc.caller.as_ref().ok().cloned())
    }

    /// Authentication first, then the tenant, then the policy.
    fn admit(&self, rpc: &Rpc) -> Result<(), SsoError> {
        let Some(callers) = &self.callers else { return Ok(()) };
        let caller = match &rpc.caller {
            Ok(caller) => caller,
            Err(_) => return Err(SsoError::CallerUnauthenticated),
        };
        let tenant = self.tenants.get(&rpc.tenant_field)?;
        callers.authorize(caller, rpc.method, &tenant.settings.name)
    }

    /// Runs one RPC inside its span and trace, counts it, and logs one line
    /// with method, tenant, caller, code, reason, latency and trace id.
    ///
    /// The call comes boxed: it holds the whole upstream exchange, and moving
    /// it by value through this wrapper, the trace scope and the span would
    /// copy it at every layer and make every in-flight RPC several times its size.
    async fn observe<T>(
        &self,
        rpc: Rpc,
        call: Pin<Box<dyn Future<Output = Result<T, SsoError>> + Send + '_>>,
    ) -> Result<Response<T>, Status> {
        let caller = rpc.caller.as_deref().unwrap_or("unauthenticated");
        let tenant = if rpc.tenant_field.is_empty() { "(default)" } else { rpc.tenant_field.as_str() };
        let peer = rpc.peer.map_or_else(|| "unknown".to_string(), socket_address_text);
        // Fields are passed as `&str`, so the log line copies them instead of
        // running each through the formatting machinery.
        let span = tracing::info_span!(
            "rpc",
            rpc.method = rpc.method,
            tenant,
            caller,
            peer = peer.as_str(),
            trace_id = tracing::field::Empty,
        );
        let trace = rpc.trace.attach(&span);
        let trace_id = trace.trace_id();
        span.record("trace_id", trace_id.as_str());
        self.metrics.rpc_started(rpc.method);
        let started = std::time::Instant::now();
        // A full service answers at once: an unbounded queue would only turn
        // overload into timeouts for everyone.
        let result = match self.in_flight.clone().try_acquire_owned() {
            Err(_) => Err(SsoError::Overloaded { limit: self.max_in_flight }),
            Ok(_permit) => match self.admit(&rpc) {
                Ok(()) => trace_context::scope(trace, call).instrument(span).await,
                Err(refused) => Err(refused),
            },
        };
        let elapsed = started.elapsed();
        let latency_us = elapsed.as_micros() as u64;
        let (code, reason, outcome) = match result {
            Ok(response) => (Code::Ok, None, Ok(Response::new(response))),
            Err(error) => {
                let (code, reason) = error.code_and_reason();
                (code, Some(reason), Err(Status::from(error)))
            }
        };
        self.metrics.rpc_handled(rpc.method, code, reason, elapsed);
        // One self-contained line per RPC, whatever the log pipeline does with spans.
        tracing::info!(
            rpc.method = rpc.method,
            tenant,
            caller,
            peer = peer.as_str(),
            code = metrics::code_name(code),
            reason = reason.unwrap_or(""),
            latency_us,
            trace_id = trace_id.as_str(),
            "rpc finished"
        );
        outcome
    }
}

/// `ip:port` for the log line. IPv4 is written digit by digit: through
/// `Display` it took over a thousand instructions, once per RPC.
fn socket_address_text(address: std::net::SocketAddr) -> String {
    let std::net::SocketAddr::V4(v4) = address else {
        return address.to_string();
    };
    fn push_decimal(text: &mut String, value: u16) {
        let mut digits = [0u8; 5];
        let mut count = 0;
        let mut rest = value;
        loop {
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        text.extend(digits[..count].iter().rev().map(|&digit| char::from(digit)));
    }
    let mut text = String::with_capacity(21);
    for (index, octet) in v4.ip().octets().into_iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        push_decimal(&mut text, octet.into());
    }
    text.push(':');
    push_decimal(&mut text, v4.port());
    text
}

fn account_message(created: &CreatedAccount, requested_email: &str) -> proto::Account {
    let verification_status = match created.verification_status.as_deref() {
        Some("NEW") => proto::VerificationStatus::New,
        Some("REJECTED") => proto::VerificationStatus::Rejected,
        Some("VERIFIED") => proto::VerificationStatus::Verified,
        Some("BLOCKED") => proto::VerificationStatus::Blocked,
        Some("PENDING_VERIFICATION") => proto::VerificationStatus::PendingVerification,
        Some("UNVERIFIED") => proto::VerificationStatus::Unverified,
        _ => proto::VerificationStatus::Unspecified,
    };
    let client_type = match created.client_type.as_deref() {
        Some("RETAIL") => proto::ClientType::Retail,
        Some("PROFESSIONAL") => proto::ClientType::Professional,
        Some("EXPERIENCED") => proto::ClientType::Experienced,
        _ => proto::ClientType::Unspecified,
    };
    proto::Account {
        uuid: created.uuid.clone().unwrap_or_default(),
        email: created.email.clone().unwrap_or_else(|| requested_email.to_string()),
        verification_status: verification_status as i32,
        client_type: client_type as i32,
        created: created.created.map(session::timestamp),
        updated: created.updated.map(session::timestamp),
    }
}

/// What identifies a CreateAccount request for its idempotency key: the
/// request without its key and tenant, the password only as a hash.
fn request_fingerprint(request: &proto::CreateAccountRequest) -> String {
    use prost::Message as _;
    let mut essence = request.clone();
    essence.password = sha1_smol::Sha1::from(&request.password).digest().to_string();
    essence.idempotency_key.clear();
    essence.tenant.clear();
    sha1_smol::Sha1::from(essence.encode_to_vec()).digest().to_string()
}

/// The outcomes a retry must see again: an account, or a definite refusal by
/// the vendor. Anything else means nothing was created, so a retry runs anew
/// (and if the vendor did create the account, it then says it already exists).
fn recordable(result: &Result<proto::CreateAccountResponse, SsoError>) -> Option<Outcome> {
    use prost::Message as _;
    match result {
        Ok(response) => Some(Outcome::Created(hex::encode(&response.encode_to_vec()))),
        Err(SsoError::Upstream { tenant, error })
            if matches!(error.fault, UpstreamFault::AccountAlreadyExists | UpstreamFault::RequestRejected) =>
        {
            let status = Status::from(SsoError::Upstream { tenant: tenant.clone(), error: error.clone() });
            Some(Outcome::Failed {
                code: status.code() as i32,
                message: status.message().to_string(),
                details: hex::encode(status.details()),
            })
        }
        Err(_) => None,
    }
}

fn replay(outcome: Outcome) -> Result<proto::CreateAccountResponse, SsoError> {
    use prost::Message as _;
    match outcome {
        Outcome::Created(hex) => hex::decode(&hex)
            .ok()
            .and_then(|bytes| proto::CreateAccountResponse::decode(bytes.as_slice()).ok())
            .ok_or(SsoError::IdempotencyUnavailable),
        Outcome::Failed { code, message, details } => {
            let details = hex::decode(&details).map_err(|_| SsoError::IdempotencyUnavailable)?;
            Err(SsoError::Replayed(Box::new(Status::with_details(Code::from(code), message, details.into()))))
        }
    }
}

fn sign_in_error(error: &UpstreamError) -> proto::SignInError {
    proto::SignInError { reason: upstream_code_and_reason(&error.fault).1.to_string(), message: error.to_string() }
}

impl SsoGateway {
    async fn create_account(
        &self,
        request: proto::CreateAccountRequest,
        deadline: Deadline,
        caller: Option<String>,
    ) -> Result<proto::CreateAccountResponse, SsoError> {
        let tenant = self.tenants.get(&request.tenant)?;
        let fingerprint = request_fingerprint(&request);
        let command = convert::create_account(request)?;
        let (Some(key), Some(idempotency)) = (command.idempotency_key.clone(), self.idempotency.clone()) else {
            return self.create_account_flow(&tenant, command, deadline).await;
        };
        let key = idempotency::scoped_key(&tenant.settings.name, caller.as_deref().unwrap_or("anonymous"), &key);
        let claim = idempotency.claim(&key, &fingerprint).await.map_err(|error| {
            tracing::warn!(%error, "idempotency store failed");
            SsoError::IdempotencyUnavailable
        })?;
        match claim {
            Claim::Done(outcome) => replay(outcome),
            Claim::Mismatch => Err(SsoError::IdempotencyKeyReused),
            Claim::InProgress => match idempotency.wait(&key, &fingerprint, deadline.instant()).await {
                Some(outcome) => replay(outcome),
                None => Err(SsoError::CreationInProgress),
            },
            Claim::Run => {
                // Detached, and bounded by the configured cap rather than the
                // caller's deadline: a vendor answer that comes after the
                // caller gave up is still recorded for its retry.
                let gateway = self.clone();
                let run_deadline = Deadline::after(self.upstream_timeout);
                let trace = trace_context::current().unwrap_or_else(TraceContext::new_root);
                let run = async move {
                    let result = gateway.create_account_flow(&tenant, command, run_deadline).await;
                    match recordable(&result) {
                        Some(outcome) => idempotency.complete(&key, &fingerprint, outcome).await,
                        None => idempotency.release(&key).await,
                    }
                    result
                };
                let task = tokio::spawn(trace_context::scope(trace, run).instrument(tracing::Span::current()));
                match tokio::time::timeout_at(deadline.instant(), task).await {
                    Ok(Ok(result)) => result,
                    // The run goes on (or ended abnormally); its retry finds out which.
                    Ok(Err(_)) | Err(_) => Err(SsoError::CreationInProgress),
                }
            }
        }
    }

    /// The vendor calls of CreateAccount: create, then a login link or a session.
    async fn create_account_flow(
        &self,
        tenant: &Tenant,
        command: convert::CreateAccountCommand,
        deadline: Deadline,
    ) -> Result<proto::CreateAccountResponse, SsoError> {
        let email = command.account.email.clone();
        let created = tenant.broker.create_account(&command.account, deadline).await.map_err(|error| {
            if error.may_have_been_processed() {
                SsoError::AccountCreationOutcomeUnknown { tenant: tenant.settings.name.clone(), error }
            } else {
                SsoError::Upstream { tenant: tenant.settings.name.clone(), error }
            }
        })?;
        // From here on the account exists: every failure is reported inside an OK answer.
        let account = account_message(&created, &email);
        let mut response = proto::CreateAccountResponse { account: Some(account), ..Default::default() };
        let token = match created.one_time_token {
            Some(token) => Ok((token, None)),
            // The vendor may omit the token: mint one so the caller still gets a link.
            None => tenant
                .broker
                .issue_one_time_token(&email, tenant.settings.one_time_token_validity, deadline)
                .await
                .map(|issued| (issued.token, Some(issued.expires_at))),
        };
        let (token, expires_at) = match token {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(%error, account_uuid = %created.uuid.as_deref().unwrap_or(""), "account created, but no login token");
                response.sign_in_error = Some(sign_in_error(&error));
                return Ok(response);
            }
        };
        if !command.start_session {
            response.login_link = Some(session::login_link(&tenant.settings, &token, expires_at));
            return Ok(response);
        }
        match tenant.platform.login_with_token(&token, deadline).await {
            Ok(granted) => {
                response.session =
                    Some(session::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc()));
            }
            Err(error) => {
                tracing::warn!(%error, account_uuid = %created.uuid.as_deref().unwrap_or(""), "account created, but its session could not be started");
                // A token the platform never saw is still good: hand it on as a link.
                if !error.may_have_been_processed() && error.fault != UpstreamFault::OneTimeTokenRejected {
                    response.login_link = Some(session::login_link(&tenant.settings, &token, expires_at));
                }
                response.sign_in_error = Some(sign_in_error(&error));
            }
        }
        Ok(response)
    }

    async fn issue_one_time_token(
        &self,
        request: proto::IssueOneTimeTokenRequest,
        deadline: Deadline,
        caller: Option<String>,
    ) -> Result<proto::IssueOneTimeTokenResponse, SsoError> {
        let tenant = self.tenants.get(&request.tenant)?;
        let command = convert::issue_one_time_token(request, &tenant.settings)?;
        self.throttle(caller.as_deref(), &tenant.settings.name, &command.email).await?;
        let issued = tenant
            .broker
            .issue_one_time_token(&command.email, command.validity, deadline)
            .await
            .map_err(upstream(&tenant))?;
        if !command.start_session {
            let link = session::login_link(&tenant.settings, &issued.token, Some(issued.expires_at));
            return Ok(proto::IssueOneTimeTokenResponse { login_link: Some(link), session: None });
        }
        let granted = tenant.platform.login_with_token(&issued.token, deadline).await.map_err(upstream(&tenant))?;
        let session = session::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc());
        Ok(proto::IssueOneTimeTokenResponse { login_link: None, session: Some(session) })
    }

    async fn login(
        &self,
        request: proto::LoginRequest,
        deadline: Deadline,
        caller: Option<String>,
    ) -> Result<proto::LoginResponse, SsoError> {
        let tenant = self.tenants.get(&request.tenant)?;
        let command = convert::login(request, &tenant.settings)?;
        self.throttle(caller.as_deref(), &tenant.settings.name, &command.email).await?;
        let granted = tenant
            .platform
            .login(&command.email, &command.password, &command.broker_id, deadline)
            .await
            .map_err(upstream(&tenant))?;
        Ok(proto::LoginResponse {
            session: Some(session::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc())),
            trading_accounts: granted.trading_accounts.iter().map(session::trading_account).collect(),
            selected_trading_account: granted.selected_trading_account.as_ref().map(session::trading_account),
        })
    }

    async fn refresh(
        &self,
        request: proto::RefreshRequest,
        deadline: Deadline,
    ) -> Result<proto::RefreshResponse, SsoError> {
        let tenant = self.tenants.get(&request.tenant)?;
        let command = convert::refresh(request)?;
        let granted = tenant.platform.refresh(&command.refresh_token, deadline).await.map_err(upstream(&tenant))?;
        Ok(proto::RefreshResponse {
            session: Some(session::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc())),
        })
    }
}

#[tonic::async_trait]
impl SsoService for SsoGateway {
    async fn create_account(
        &self,
        request: Request<proto::CreateAccountRequest>,
    ) -> Result<Response<proto::CreateAccountResponse>, Status> {
        let rpc = self.begin("CreateAccount", &request, &request.get_ref().tenant);
        let deadline = rpc.deadline;
        let caller = self.authenticated_caller(&rpc);
        self.observe(rpc, Box::pin(SsoGateway::create_account(self, request.into_inner(), deadline, caller))).await
    }

    async fn issue_one_time_token(
        &self,
        request: Request<proto::IssueOneTimeTokenRequest>,
    ) -> Result<Response<proto::IssueOneTimeTokenResponse>, Status> {
        let rpc = self.begin("IssueOneTimeToken", &request, &request.get_ref().tenant);
        let deadline = rpc.deadline;
        let caller = self.authenticated_caller(&rpc);
        self.observe(rpc, Box::pin(SsoGateway::issue_one_time_token(self, request.into_inner(), deadline, caller)))
            .await
    }

    async fn login(&self, request: Request<proto::LoginRequest>) -> Result<Response<proto::LoginResponse>, Status> {
        let rpc = self.begin("Login", &request, &request.get_ref().tenant);
        let deadline = rpc.deadline;
        let caller = self.authenticated_caller(&rpc);
        self.observe(rpc, Box::pin(SsoGateway::login(self, request.into_inner(), deadline, caller))).await
    }

    async fn refresh(
        &self,
        request: Request<proto::RefreshRequest>,
    ) -> Result<Response<proto::RefreshResponse>, Status> {
        let rpc = self.begin("Refresh", &request, &request.get_ref().tenant);
        let deadline = rpc.deadline;
        self.observe(rpc, Box::pin(SsoGateway::refresh(self, request.into_inner(), deadline))).await
    }
}

#[cfg(test)]
mod tests {
    use super::socket_address_text;

    #[test]
    fn socket_addresses_read_as_display_writes_them() {
        for text in ["127.0.0.1:0", "10.200.3.45:65535", "0.0.0.0:8080", "255.255.255.255:1", "[::1]:50051"] {
            let address: std::net::SocketAddr = text.parse().expect("an address");
            assert_eq!(socket_address_text(address), address.to_string());
        }
    }
}
