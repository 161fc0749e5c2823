//! One HTTP exchange with the upstream: bounded by the RPC's deadline, with a
//! bounded answer size, turned into either an [`Answer`] or an
//! [`UpstreamError`] that says whether the request could have been processed.
//! Before it is sent, a call takes one of its tenant API's concurrency slots,
//! a token from its quota, and the circuit breaker's permission.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt as _;
use std::time::Duration;
use time::{OffsetDateTime, format_description::well_known::Rfc2822};
use tracing::Instrument as _;

use super::{
    Endpoint, UpstreamError, UpstreamFault,
    http_client::{HttpClient, Outgoing},
    json::Problem,
    resilience::{Breaker, ResilienceSettings, RetryBudget},
};
use crate::{
    deadline::Deadline,
    metrics::{Metrics, UpstreamSeries},
    quota::Buckets,
    trace_context,
};

/// Largest upstream answer read; anything bigger is a protocol error, not a memory spike.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// What every upstream call is counted against: the metrics, the buckets that
/// keep each tenant's API key and platform inside the vendor's quota, and how
/// failures are retried and circuit-broken.
#[derive(Debug)]
pub struct Accounting {
    pub metrics: std::sync::Arc<Metrics>,
    pub buckets: std::sync::Arc<Buckets>,
    /// Calls per minute per API key and per platform; 0 for no limit.
    pub upstream_per_minute: u32,
    pub resilience: ResilienceSettings,
}

impl Accounting {
    /// Metrics only: no quota, no retries, no breaker (for tests and tools).
    pub fn unlimited(metrics: std::sync::Arc<Metrics>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            metrics,
            buckets: std::sync::Arc::new(Buckets::in_memory()),
            upstream_per_minute: 0,
            resilience: ResilienceSettings::off(),
        })
    }
}

/// Where one client's calls are accounted: its tenant and API, the shared
/// accounting, and the circuit and retry budget of that tenant's API.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    pub tenant: String,
    api: &'static str,
    pub accounting: std::sync::Arc<Accounting>,
    /// The quota bucket of this tenant's API.
    bucket: String,
    /// Slots for calls in flight to this tenant's API, if limited.
    slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    breaker: std::sync::Arc<Breaker>,
    /// The circuit state last published as a metric (-1: none yet), so the
    /// gauge is written when the state changes, not on every call.
    circuit_published: std::sync::Arc<std::sync::atomic::AtomicI64>,
    retry_budget: std::sync::Arc<RetryBudget>,
    /// Each endpoint's metric series, resolved on its first call.
    series: [std::sync::OnceLock<UpstreamSeries>; Endpoint::COUNT],
}

impl Observer {
    pub(crate) fn new(tenant: &str, api: &'static str, accounting: std::sync::Arc<Accounting>) -> Self {
        let breaker = std::sync::Arc::new(Breaker::new(accounting.resilience));
        let slots = match accounting.resilience.max_concurrent_calls {
            0 => None,
            slots => Some(std::sync::Arc::new(tokio::sync::Semaphore::new(slots))),
        };
        Self {
            tenant: tenant.to_string(),
            api,
            accounting,
            bucket: format!("upstream:{tenant}:{api}"),
            slots,
            breaker,
            circuit_published: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(-1)),
            retry_budget: Default::default(),
            series: Default::default(),
        }
    }

    fn series(&self, endpoint: Endpoint) -> &UpstreamSeries {
        self.series[endpoint.index()].get_or_init(|| self.accounting.metrics.upstream_series(&self.tenant, endpoint))
    }
}

/// A timeout counts against the circuit only when the call had this long:
/// callers with tight deadlines must not open it for everyone.
const TIMEOUT_COUNTS_AFTER: Duration = Duration::from_secs(1);

/// A complete upstream answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `request` and reads the whole answer before `deadline`. A non-2xx
/// status is classified for `endpoint` into an [`UpstreamError`].
pub(crate) async fn exchange(
    endpoint: Endpoint,
    observer: &Observer,
    client: &HttpClient,
    request: Outgoing,
    deadline: Deadline,
) -> Result<Answer, UpstreamError> {
    let span = tracing::info_span!(
        "upstream",
        tenant = %observer.tenant,
        endpoint = endpoint.name(),
        http.status = tracing::field::Empty,
        latency_us = tracing::field::Empty
    );
    // The vendor call continues the caller's trace.
    let request = match trace_context::outgoing_traceparent(&span).and_then(|t| HeaderValue::try_from(t).ok()) {
        Some(traceparent) => request.header(HeaderName::from_static("traceparent"), traceparent),
        None => request,
    };
    let started = std::time::Instant::now();
    let mut admitted = false;
    let mut last_budget = Duration::ZERO;
    let result = async {
        // A slot first: beyond the limit a call waits here, holding no connection.
        let _slot = match &observer.slots {
            Some(slots) => match tokio::time::timeout_at(deadline.instant(), slots.acquire()).await {
                Ok(Ok(slot)) => Some(slot),
                // The semaphore is never closed.
                Ok(Err(_)) => None,
                Err(_) => return Err(UpstreamError::new(endpoint, None, UpstreamFault::Busy)),
            },
            None => None,
        };
        // The vendor's limit is per API key (and per platform) for the whole fleet.
        let per_minute = observer.accounting.upstream_per_minute;
        if per_minute > 0 {
            match observer.accounting.buckets.take(&observer.bucket, per_minute).await {
                Ok(left) => observer.accounting.metrics.quota_left(&observer.tenant, observer.api, left),
                Err(retry_after) => {
                    observer.accounting.metrics.quota_left(&observer.tenant, observer.api, 0);
                    return Err(UpstreamError::new(endpoint, None, UpstreamFault::QuotaExhausted { retry_after }));
                }
            }
        }
        if let Err(retry_after) = observer.breaker.admit() {
            return Err(UpstreamError::new(endpoint, None, UpstreamFault::CircuitOpen { retry_after }));
        }
        admitted = true;
        observer.retry_budget.deposit();
        let resilience = observer.accounting.resilience;
        let mut attempt = 1;
        loop {
            last_budget = deadline.remaining();
            let outcome = send_once(endpoint, client, &request, deadline).await;
            let refused = matches!(&outcome, Err(e) if e.fault == UpstreamFault::ConnectFailed);
            if !refused || attempt >= resilience.max_attempts {
                return outcome;
            }
            // Only a refused connection is retried: that request never left.
            let wait = resilience.backoff(attempt);
            if deadline.remaining() <= wait + Duration::from_millis(10) || !observer.retry_budget.withdraw() {
                return outcome;
            }
            observer.accounting.metrics.upstream_retry(&observer.tenant, endpoint);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
    .instrument(span.clone())
    .await;
    if admitted {
        let healthy = match &result {
            Ok(_) => true,
            Err(error) => match error.fault {
                UpstreamFault::ConnectFailed
                | UpstreamFault::ConnectionLost
                | UpstreamFault::ServerError
                | UpstreamFault::Protocol { .. } => false,
                UpstreamFault::Timeout => last_budget < TIMEOUT_COUNTS_AFTER,
                _ => true,
            },
        };
        let state = observer.breaker.record(healthy);
        if observer.circuit_published.swap(state as i64, std::sync::atomic::Ordering::Relaxed) != state as i64 {
            observer.accounting.metrics.circuit(&observer.tenant, observer.api, state);
        }
    }

    let latency = started.elapsed();
    span.record("latency_us", latency.as_micros() as u64);
    let (status, fault) = match &result {
        Ok(answer) => (Some(answer.status), None),
        Err(error) => (error.status, Some(&error.fault)),
    };
    let series = observer.series(endpoint);
    observer.accounting.metrics.upstream_call(series, &observer.tenant, endpoint, status, fault, latency);
    match result {
        Ok(answer) => {
            span.record("http.status", answer.status);
            tracing::debug!(tenant = %observer.tenant, endpoint = endpoint.name(), status = answer.status, ?latency, "upstream answered");
            Ok(answer)
        }
        Err(error) => {
            if let Some(status) = error.status {
                span.record("http.status", status);
            }
            tracing::debug!(tenant = %observer.tenant, endpoint = endpoint.name(), %error, ?latency, "upstream call failed");
            Err(error)
        }
    }
}

/// One attempt: send, and read the whole answer before the deadline. A
/// non-2xx status is classified for `endpoint`.
async fn send_once(
    endpoint: Endpoint,
    client: &HttpClient,
    request: &Outgoing,
    deadline: Deadline,
) -> Result<Answer, UpstreamError> {
    let budget = deadline.remaining();
    if budget.is_zero() {
        // Nothing was sent, so even a create is known not to have happened.
        return Err(UpstreamError::new(endpoint, None, UpstreamFault::Timeout));
    }
    let call = async {
        let response = client.send(request).await.map_err(|e| transport_error(endpoint, &e))?;
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        let body = read_bounded(endpoint, status, body).await?;
        Ok(Answer { status, headers: parts.headers, body })
    };
    let answer = match tokio::time::timeout_at(deadline.instant(), call).await {
        Ok(result) => result?,
        Err(_) => return Err(UpstreamError::new(endpoint, None, UpstreamFault::Timeout)),
    };
    if (200..300).contains(&answer.status) {
        return Ok(answer);
    }
    let fault = classify(endpoint, &answer);
    Err(UpstreamError::new(endpoint, Some(answer.status), fault))
}

async fn read_bounded(endpoint: Endpoint, status: u16, body: hyper::body::Incoming) -> Result<Bytes, UpstreamError> {
    // A declared length over the bound is refused before reading; an
    // undeclared one is cut off where it crosses it.
    match http_body_util::Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(endpoint, status)),
        Err(_) => Err(UpstreamError::new(endpoint, Some(status), UpstreamFault::ConnectionLost)),
    }
}

fn too_large(endpoint: Endpoint, status: u16) -> UpstreamError {
    UpstreamError::new(endpoint, Some(status), UpstreamFault::Protocol { problem: "the answer is larger than 1 MiB" })
}

fn transport_error(endpoint: Endpoint, error: &hyper_util::client::legacy::Error) -> UpstreamError {
    // Only "never connected" (which includes a connect timeout) proves the
    // request was not processed; the exchange's own deadline is timed outside.
    let fault = if error.is_connect() { UpstreamFault::ConnectFailed } else { UpstreamFault::ConnectionLost };
    UpstreamError::new(endpoint, None, fault)
}

/// Interprets a non-2xx answer for the endpoint that gave it.
fn classify(endpoint: Endpoint, answer: &Answer) -> UpstreamFault {
    let problem = Problem::parse(&answer.body);
    match answer.status {
        429 => UpstreamFault::RateLimited { retry_after: retry_after(&answer.headers) },
        500..=599 => UpstreamFault::ServerError,
        300..=399 => UpstreamFault::Protocol { problem: "unexpected redirect (a login page or bot protection?)" },
        401 | 403 => match endpoint {
            Endpoint::CreateAccount | Endpoint::IssueOneTimeToken if answer.status == 401 => {
                UpstreamFault::ApiKeyRejected
            }
            Endpoint::CreateAccount | Endpoint::IssueOneTimeToken => UpstreamFault::PermissionDenied,
            Endpoint::Login => UpstreamFault::CredentialsRejected,
            Endpoint::LoginWithToken => UpstreamFault::OneTimeTokenRejected,
            Endpoint::Refresh => UpstreamFault::RefreshTokenRejected,
        },
        404 | 405 if problem.is_none() => UpstreamFault::EndpointNotFound,
        409 if endpoint == Endpoint::CreateAccount => UpstreamFault::AccountAlreadyExists,
        400 | 404 | 410 | 422 => match endpoint {
            Endpoint::CreateAccount if problem.as_ref().is_some_and(Problem::says_already_exists) => {
                UpstreamFault::AccountAlreadyExists
            }
            Endpoint::IssueOneTimeToken
                if answer.status == 404 || problem.as_ref().is_some_and(Problem::says_not_found) =>
            {
                UpstreamFault::AccountNotFound
            }
            Endpoint::LoginWithToken => UpstreamFault::OneTimeTokenRejected,
            Endpoint::Refresh => UpstreamFault::RefreshTokenRejected,
            Endpoint::Login if answer.status == 404 => UpstreamFault::CredentialsRejected,
            Endpoint::CreateAccount | Endpoint::IssueOneTimeToken | Endpoint::Login => UpstreamFault::RequestRejected,
        },
        _ => UpstreamFault::RequestRejected,
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let wait = at - OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, headers: HeaderMap::new(), body: Bytes::from(body.to_string()) }
    }

    #[test]
    fn broker_api_401_is_our_key_and_403_our_permission() {
        assert_eq!(classify(Endpoint::CreateAccount, &answer(401, "")), UpstreamFault::ApiKeyRejected);
        assert_eq!(classify(Endpoint::IssueOneTimeToken, &answer(403, "")), UpstreamFault::PermissionDenied);
        assert_eq!(classify(Endpoint::Login, &answer(401, "")), UpstreamFault::CredentialsRejected);
    }

    #[test]
    fn duplicate_email_is_recognised_as_409_or_as_a_422_that_says_so() {
        assert_eq!(classify(Endpoint::CreateAccount, &answer(409, "")), UpstreamFault::AccountAlreadyExists);
        let body = r#"{"status":422,"title":"Unprocessable","detail":"Account with this email already exists"}"#;
        assert_eq!(classify(Endpoint::CreateAccount, &answer(422, body)), UpstreamFault::AccountAlreadyExists);
        let other = r#"{"status":422,"title":"Unprocessable","detail":"Offer is not active"}"#;
        assert_eq!(classify(Endpoint::CreateAccount, &answer(422, other)), UpstreamFault::RequestRejected);
    }

    #[test]
    fn a_404_without_a_problem_body_means_a_wrong_path() {
        assert_eq!(classify(Endpoint::Login, &answer(404, "<html>Not Found</html>")), UpstreamFault::EndpointNotFound);
        let problem = r#"{"status":404,"title":"Not Found","detail":"account not found"}"#;
        assert_eq!(classify(Endpoint::IssueOneTimeToken, &answer(404, problem)), UpstreamFault::AccountNotFound);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().expect("ascii"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(http::header::RETRY_AFTER, "Sun, 06 Nov 1994 08:49:37 GMT".parse().expect("ascii"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date means retry now");
    }
}
