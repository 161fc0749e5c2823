//! Fault switches: latency, server errors, connection resets mid-body,
//! malformed bodies and hangs (before or after the request was processed),
//! refusals a preflight must tell apart (400, 404, a bot-protection 403), and
//! a trading account opened on paper only; applied to the vendor endpoints
//! (never to the control endpoints). All off by default.

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use serde::{Deserialize, Serialize};
use std::{sync::Arc, time::Duration};

use super::vendor::{Shared, lock, problem, problem_body};

/// What a faulty answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// No fault.
    #[default]
    None,
    /// 503 with an HTML body, as a proxy in front of the vendor sends it.
    ServerError,
    /// The connection breaks after part of the body was sent.
    Reset,
    /// 200 with a body that is not JSON.
    MalformedBody,
    /// No answer at all, until the client gives up.
    Hang,
    /// The account is created, then the answer is withheld until the client
    /// gives up: a vendor that did the work but whose answer was lost on the
    /// way back. Applied by the account-creating handlers (v1, CRM-API, v2)
    /// and the v2 trading-account open only; other requests under the path
    /// filters (the lookups, the list of trading accounts) are answered as usual.
    HangAfterProcessing,
    /// A create for an email that is taken is refused (nothing is created),
    /// then the refusal is withheld until the client gives up: a vendor
    /// whose duplicate refusal was lost on the way back. Applied by the
    /// account-creating handlers (v1, CRM-API, v2) only, as above; the v2
    /// trading-account open opens nothing and withholds its answer.
    HangAfterRefusing,
    /// 403 with a Problem body: the key lacks the permission.
    Forbidden,
    /// 422 with a Problem body: the vendor refuses the request.
    Unprocessable,
    /// 400 with a Problem body titled [`BAD_REQUEST_TITLE`], as a v2 lookup
    /// answers for an address it dislikes.
    BadRequest,
    /// 404 without a body: the path does not exist on this host (e.g. a
    /// CRM-API without `/service-info`).
    NotFound,
    /// 403 with `cf-mitigated: challenge` and an HTML page: Cloudflare's bot
    /// protection in front of the host, before the API saw the call.
    BotChallenge,
    /// The v2 trading account is opened, but its answer (and every later
    /// read of it) says `missingInTradingSystem: true`. Applied by that
    /// handler only; other requests under the path filters are answered as usual.
    MissingInTradingSystem,
}

/// The title of the [`FaultKind::BadRequest`] answer.
pub const BAD_REQUEST_TITLE: &str = "Email address is not valid";

/// The sandbox's runtime switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Switches {
    /// Latency added before every vendor answer.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// The fault to inject.
    pub fault: FaultKind,
    /// Share of requests that get the fault, 0.0 to 1.0.
    pub fault_ratio: f64,
    /// Only requests whose path starts with this get the fault (empty: all).
    pub fault_path_prefix: String,
    /// Only requests whose path also contains this get the fault (empty: all),
    /// e.g. `/trading-accounts` for that one v2 call.
    pub fault_path_contains: String,
    /// Requests per minute per API key and per platform; 0 switches the limit off.
    pub rate_limit_per_minute: u32,
    /// The window of the rate limit: a minute, as the vendor's, unless a test
    /// shortens it (milliseconds in JSON).
    #[serde(with = "millis")]
    pub rate_limit_window: Duration,
    /// Answer logins in the older platforms' shape (`accounts`, `selectedAccount`).
    pub legacy_login_shape: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            fault: FaultKind::None,
            fault_ratio: 1.0,
            fault_path_prefix: String::new(),
            fault_path_contains: String::new(),
            rate_limit_per_minute: crate::config::SandboxOptions::default().rate_limit_per_minute,
            rate_limit_window: Duration::from_secs(60),
            legacy_login_shape: false,
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Middleware: logs the request, delays, then either injects the fault or
/// passes the request on; logs the answer.
pub(super) async fn apply(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let number = lock(&shared.requests).arrived(request.method().as_str(), request.uri().path());
    let response = delay_or_fault(&shared, request, next).await;
    lock(&shared.requests).answered(number);
    response
}

async fn delay_or_fault(shared: &Shared, request: Request, next: Next) -> Response {
    let switches = lock(&shared.switches).clone();
    if !switches.latency.is_zero() {
        tokio::time::sleep(switches.latency).await;
    }
    let hit = switches.fault != FaultKind::None
        && request.uri().path().starts_with(&switches.fault_path_prefix)
        && request.uri().path().contains(&switches.fault_path_contains)
        && rand::random::<f64>() < switches.fault_ratio;
    if !hit {
        return next.run(request).await;
    }
    shared.count("fault");
    match switches.fault {
        FaultKind::None => next.run(request).await,
        FaultKind::ServerError => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        )
            .into_response(),
        FaultKind::MalformedBody => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"token\": \"unterminated").into_response()
        }
        FaultKind::Reset => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"{\"uuid\": \"")),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "sandbox fault: reset")),
            ];
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        FaultKind::Forbidden => {
            problem(StatusCode::FORBIDDEN, "Missing permission for this operation", request.uri().path())
        }
        FaultKind::Unprocessable => {
            problem(StatusCode::UNPROCESSABLE_ENTITY, "The request cannot be processed", request.uri().path())
        }
        FaultKind::BadRequest => problem_body(StatusCode::BAD_REQUEST, "The request was refused", request.uri().path())
            .titled(BAD_REQUEST_TITLE)
            .into_response(),
        FaultKind::NotFound => StatusCode::NOT_FOUND.into_response(),
        FaultKind::BotChallenge => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html"), (header::HeaderName::from_static("cf-mitigated"), "challenge")],
            "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>",
        )
            .into_response(),
        FaultKind::MissingInTradingSystem => {
            let mut request = request;
            request.extensions_mut().insert(MissingInTradingSystem);
            next.run(request).await
        }
        FaultKind::Hang => hang().await,
        FaultKind::HangAfterProcessing => {
            // Only a create handler knows when its work is done (and a lookup
            // under the same path prefix must still answer): the mark tells
            // the create handlers to withhold their answer; others ignore it.
            let mut request = request;
            request.extensions_mut().insert(WithholdAnswer);
            next.run(request).await
        }
        FaultKind::HangAfterRefusing => {
            let mut request = request;
            request.extensions_mut().insert(WithholdRefusal);
            next.run(request).await
        }
    }
}

/// Marks a request whose create handler is to withhold the answer once the account exists.
#[derive(Debug, Clone, Copy)]
pub(super) struct WithholdAnswer;

/// Marks a request whose trading account is to exist on paper only.
#[derive(Debug, Clone, Copy)]
pub(super) struct MissingInTradingSystem;

/// Marks a request whose create handler is to withhold its refusal of a taken email.
#[derive(Debug, Clone, Copy)]
pub(super) struct WithholdRefusal;

/// No answer until the client gives up: the future is dropped when the
/// client disconnects, and bounded so nothing lingers forever.
pub(super) async fn hang() -> Response {
    tokio::time::sleep(Duration::from_secs(300)).await;
    StatusCode::GATEWAY_TIMEOUT.into_response()
}
