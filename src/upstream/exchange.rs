//! One call to the upstream: admitted by its tenant API's gate, sent (again
//! only where the request cannot have left), bounded by the RPC's deadline and
//! by a maximum answer size, and turned into either an [`Answer`] or an
//! [`UpstreamError`] that says whether the request could have been processed.
//! A call found with no time left is not sent, and says so. Dropped at any
//! `.await`, the call leaves its gate free (see [`super::gate`]).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use super::{
    classify::classify,
    error::{Endpoint, UpstreamError, UpstreamFault},
    gate::{Admitted, UpstreamGate},
    http_client::HttpClient,
    outgoing::Outgoing,
};
use crate::{deadline::Deadline, trace_context};

/// Largest upstream answer read; anything bigger is a protocol error, not a memory spike.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A complete upstream answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `request` through `gate` and reads the whole answer before
/// `deadline`. A non-2xx status is classified for `endpoint` into an
/// [`UpstreamError`].
pub(crate) async fn exchange(
    endpoint: Endpoint,
    gate: &UpstreamGate,
    client: &HttpClient,
    request: Outgoing,
    deadline: Deadline,
) -> Result<Answer, UpstreamError> {
    exchange_as(Sending::ClassifiedWithRetries, endpoint, gate, client, request, deadline).await
}

/// Like [`exchange`], but sent once and with an answer of any status handed
/// back as it came: the preflight reads a refusal's status, headers and body
/// itself, where the classification would keep only what a flow needs.
pub(crate) async fn exchange_any_status(
    endpoint: Endpoint,
    gate: &UpstreamGate,
    client: &HttpClient,
    request: Outgoing,
    deadline: Deadline,
) -> Result<Answer, UpstreamError> {
    exchange_as(Sending::OnceAnyStatus, endpoint, gate, client, request, deadline).await
}

/// How an exchange sends its request once admitted.
#[derive(Debug, Clone, Copy)]
enum Sending {
    ClassifiedWithRetries,
    OnceAnyStatus,
}

/// One exchange inside its span, admitted by the gate, settled and reported
/// the same way whichever way it is sent.
async fn exchange_as(
    sending: Sending,
    endpoint: Endpoint,
    gate: &UpstreamGate,
    client: &HttpClient,
    request: Outgoing,
    deadline: Deadline,
) -> Result<Answer, UpstreamError> {
    let span = call_span(endpoint, gate);
    let request = with_trace_context(request, &span);
    let started = Instant::now();
    let result = async {
        if deadline.remaining().is_zero() {
            // Not even admitted: no quota spent, no probe taken, nothing sent.
            return Err(UpstreamError::new(endpoint, None, UpstreamFault::NoTimeLeft));
        }
        let admitted = gate.admit(endpoint, deadline).await?;
        let (result, last_budget) = match sending {
            Sending::ClassifiedWithRetries => send_with_retries(endpoint, &admitted, client, &request, deadline).await,
            Sending::OnceAnyStatus => {
                let budget = deadline.remaining();
                (send_unclassified(endpoint, client, &request, deadline).await, budget)
            }
        };
        admitted.settle(&result, last_budget);
        result
    }
    .instrument(span.clone())
    .await;
    report(endpoint, gate, &span, started.elapsed(), &result);
    result
}

fn call_span(endpoint: Endpoint, gate: &UpstreamGate) -> tracing::Span {
    tracing::info_span!(
        "upstream",
        tenant = %gate.tenant(),
        endpoint = endpoint.name(),
        http.status = tracing::field::Empty,
        latency_us = tracing::field::Empty
    )
}

/// The vendor call continues the caller's trace.
fn with_trace_context(request: Outgoing, span: &tracing::Span) -> Outgoing {
    match trace_context::outgoing_traceparent(span).and_then(|t| HeaderValue::try_from(t).ok()) {
        Some(traceparent) => request.header(HeaderName::from_static("traceparent"), traceparent),
        None => request,
    }
}

/// Attempts until one is not a refused connection, the settings' attempts or
/// the retry budget run out, or the deadline leaves no room for the backoff.
/// Only a refused connection is retried: that request never left. Also gives
/// the time the last attempt had.
async fn send_with_retries(
    endpoint: Endpoint,
    admitted: &Admitted<'_>,
    client: &HttpClient,
    request: &Outgoing,
    deadline: Deadline,
) -> (Result<Answer, UpstreamError>, Duration) {
    let resilience = admitted.resilience();
    let mut attempt = 1;
    loop {
        let budget = deadline.remaining();
        let outcome = send_once(endpoint, client, request, deadline).await;
        let refused = matches!(&outcome, Err(e) if e.fault == UpstreamFault::ConnectFailed);
        if !refused || attempt >= resilience.max_attempts {
            return (outcome, budget);
        }
        let wait = resilience.backoff(attempt);
        if deadline.remaining() <= wait + Duration::from_millis(10) || !admitted.take_retry() {
            return (outcome, budget);
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
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
    let answer = send_unclassified(endpoint, client, request, deadline).await?;
    if (200..300).contains(&answer.status) {
        return Ok(answer);
    }
    let fault = classify(endpoint, answer.status, &answer.headers, &answer.body);
    Err(UpstreamError::new(endpoint, Some(answer.status), fault))
}

/// One attempt: send, and read the whole answer, whatever its status, before the deadline.
async fn send_unclassified(
    endpoint: Endpoint,
    client: &HttpClient,
    request: &Outgoing,
    deadline: Deadline,
) -> Result<Answer, UpstreamError> {
    if deadline.remaining().is_zero() {
        // Nothing was sent, so even a create is known not to have happened.
        return Err(UpstreamError::new(endpoint, None, UpstreamFault::NoTimeLeft));
    }
    let call = async {
        let response = client.send(request).await.map_err(|e| transport_error(endpoint, &e))?;
        read_answer(endpoint, response).await
    };
    match tokio::time::timeout_at(deadline.instant(), call).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::new(endpoint, None, UpstreamFault::Timeout)),
    }
}

/// The status, headers and whole body, at most [`MAX_ANSWER_BYTES`]: a
/// declared length over the bound is refused before reading, an undeclared
/// one is cut off where it crosses it.
async fn read_answer(endpoint: Endpoint, mut response: reqwest::Response) -> Result<Answer, UpstreamError> {
    let status = response.status().as_u16();
    let too_large = || {
        UpstreamError::new(
            endpoint,
            Some(status),
            UpstreamFault::Protocol { problem: "the answer is larger than 1 MiB" },
        )
    };
    let declared = response.content_length();
    if declared.is_some_and(|length| length > MAX_ANSWER_BYTES as u64) {
        return Err(too_large());
    }
    let headers = std::mem::take(response.headers_mut());
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_ANSWER_BYTES => return Err(too_large()),
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) => return Err(UpstreamError::new(endpoint, Some(status), UpstreamFault::ConnectionLost)),
        }
    }
    Ok(Answer { status, headers, body: body.freeze() })
}

fn transport_error(endpoint: Endpoint, error: &reqwest::Error) -> UpstreamError {
    // Only "never connected" (which includes a connect timeout, a refused
    // proxy and a failed TLS handshake) proves the request was not processed;
    // the exchange's own deadline is timed outside.
    let fault = if error.is_connect() { UpstreamFault::ConnectFailed } else { UpstreamFault::ConnectionLost };
    UpstreamError::new(endpoint, None, fault)
}

/// The call's metrics, span fields and debug log.
fn report(
    endpoint: Endpoint,
    gate: &UpstreamGate,
    span: &tracing::Span,
    latency: Duration,
    result: &Result<Answer, UpstreamError>,
) {
    span.record("latency_us", latency.as_micros() as u64);
    let (status, fault) = match result {
        Ok(answer) => (Some(answer.status), None),
        Err(error) => (error.status, Some(&error.fault)),
    };
    gate.count_call(endpoint, status, fault, latency);
    if let Some(status) = status {
        span.record("http.status", status);
    }
    match result {
        Ok(answer) => {
            tracing::debug!(tenant = %gate.tenant(), endpoint = endpoint.name(), status = answer.status, ?latency, "upstream answered");
        }
        Err(error) => {
            tracing::debug!(tenant = %gate.tenant(), endpoint = endpoint.name(), %error, ?latency, "upstream call failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::HttpSettings, metrics::Metrics, upstream::gate::GateContext};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_call_found_with_no_time_left_is_not_sent_and_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let url =
            url::Url::parse(&format!("http://{}/v1/accounts", listener.local_addr().expect("addr"))).expect("url");
        let settings = HttpSettings {
            user_agent: "mtr-sso-tests/1".into(),
            connect_timeout: Duration::from_secs(1),
            upstream_timeout: Duration::from_secs(1),
            proxies: crate::config::Proxies::None,
        };
        let client = HttpClient::new(&settings).expect("client");
        let gate = UpstreamGate::new("acme", "broker-api", GateContext::unlimited(Arc::new(Metrics::new())));
        let request = Outgoing::post(&url, "{}");
        let error = exchange(Endpoint::CreateAccount, &gate, &client, request, Deadline::after(Duration::ZERO))
            .await
            .expect_err("no time to send");
        assert_eq!(error.fault, UpstreamFault::NoTimeLeft);
        assert!(!error.may_have_been_processed(), "a create that was not sent cannot have happened");
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "nothing reached the vendor"
        );
    }
}
