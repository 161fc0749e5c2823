//! The vendor's door to each API, as one middleware: every request is
//! counted under its endpoint's name, then the API's key is checked (v1 and
//! the CRM-API take it raw or as `Bearer`, v2 only as `Bearer`, the platform
//! needs none), then the per-key rate limit. A refusal is a Problem body
//! naming the path the caller sent.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{Next, from_fn_with_state},
    response::Response,
    routing::MethodRouter,
};
use std::{sync::Arc, time::Instant};

use super::{
    rate_limit,
    vendor::{SANDBOX_API_KEY, SANDBOX_V2_API_KEY, Shared, lock, problem, request_path},
};

/// Which API a route belongs to: decides the key it needs and the rate limit it counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Door {
    /// Broker-API v1 and the CRM-API: the key raw or as `Bearer <key>`.
    BrokerApi,
    /// Broker-API v2: only `Bearer <key>`, its own key.
    BrokerApiV2,
    /// The platform: no key, one limit for the platform as a whole.
    Platform,
}

impl Door {
    /// `route` behind this door, counted as `endpoint` in the stats.
    pub(super) fn guard(
        self,
        shared: &Arc<Shared>,
        endpoint: &'static str,
        route: MethodRouter<Arc<Shared>>,
    ) -> MethodRouter<Arc<Shared>> {
        route.layer(from_fn_with_state(Gate { shared: shared.clone(), door: self, endpoint }, check))
    }

    /// The refusal of a missing or wrong key, in this API's words.
    fn refuse_key(self, headers: &HeaderMap, path: &str) -> Option<Response> {
        let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let bearer = presented.strip_prefix("Bearer ");
        match self {
            Door::BrokerApi if bearer.unwrap_or(presented) != SANDBOX_API_KEY => {
                Some(problem(StatusCode::UNAUTHORIZED, "Missing or invalid API key", path))
            }
            Door::BrokerApiV2 if bearer != Some(SANDBOX_V2_API_KEY) => {
                Some(problem(StatusCode::UNAUTHORIZED, "Full authentication is required (Bearer token)", path))
            }
            _ => None,
        }
    }

    /// The rate limiter's key: one per API key, and one for the platform.
    fn limit_key(self) -> &'static str {
        match self {
            Door::BrokerApi => "key:sandbox-api-key",
            Door::BrokerApiV2 => "key:v2",
            Door::Platform => "platform",
        }
    }
}

#[derive(Debug, Clone)]
struct Gate {
    shared: Arc<Shared>,
    door: Door,
    endpoint: &'static str,
}

async fn check(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    gate.shared.count(gate.endpoint);
    let path = request_path(request.uri(), request.extensions());
    if let Some(refusal) = gate.door.refuse_key(request.headers(), &path) {
        return refusal;
    }
    if let Some(refusal) = rate_limited(&gate.shared, gate.door.limit_key(), &path) {
        return refusal;
    }
    next.run(request).await
}

/// 429 with `Retry-After`, when `key` is over the limit. Every request is
/// recorded in the arrivals of its API (`platform`, or `broker-api` for an API key).
fn rate_limited(shared: &Shared, key: &str, path: &str) -> Option<Response> {
    let (per_minute, window) = {
        let switches = lock(&shared.switches);
        (switches.rate_limit_per_minute, switches.rate_limit_window)
    };
    let api = if key.starts_with("key:") { "broker-api" } else { "platform" };
    let decided = {
        let mut limiter = lock(&shared.limiter);
        limiter.set_window(window);
        // The instant is read under the lock, so the limiter never sees time go backwards.
        let now = Instant::now();
        let decided = limiter.take(key, per_minute, now);
        lock(&shared.arrivals).record(api, now, decided.is_err());
        decided
    };
    let wait = decided.err()?;
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded", path);
    response.headers_mut().insert(header::RETRY_AFTER, rate_limit::retry_after_seconds(wait).into());
    Some(response)
}
