//! What every part of the sandbox shares: the vendor's constants (keys,
//! prefixes, the demo user), the state behind the server, and the vendor's
//! Problem-style error answers. The handler files import from here, never
//! from the router in `mod.rs`.

use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, OriginalUri, Request},
    http::{Extensions, StatusCode, Uri, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::{collections::BTreeMap, convert::Infallible, sync::Mutex};
use time::OffsetDateTime;

pub(crate) use super::locking::lock;
use super::{arrivals, rate_limit, request_log, state, switches::Switches};

/// The sandbox's Broker-API key (raw, or as `Bearer <key>`).
pub const SANDBOX_API_KEY: &str = "sandbox-api-key";
/// The sandbox's Broker-API v2 key, accepted only as `Bearer <key>`.
pub const SANDBOX_V2_API_KEY: &str = "sandbox-v2-api-key";
/// Where the sandbox serves Broker-API v2 (a host of its own at the vendor).
pub const BROKER_API_V2_PREFIX: &str = "/broker-api-v2";
/// Where the sandbox serves the CRM-API (v1's shape at a host of its own).
pub const CRM_API_PREFIX: &str = "/crm-api";
/// The name of the Broker-API v2 tenant that `--sandbox` serves beside `default`.
pub const V2_TENANT: &str = "v2";
/// The trading group the sandbox's v2 tenant opens accounts in by default.
pub const DEMO_GROUP: &str = "sandbox-retail";
/// The seeded demo user, as in the vendor's own demo.
pub const DEMO_EMAIL: &str = "test@match-trade.com";
/// The demo user's password.
pub const DEMO_PASSWORD: &str = "abcd1234";
/// IssueOneTimeToken and Login calls a minute for the demo user under
/// `--sandbox`, in place of `--email-limit-per-minute` (20 by default): a
/// newcomer runs the README and every example as that user in one minute.
pub const DEMO_EMAIL_LIMIT_PER_MINUTE: u32 = 600;
/// The sandbox platform's broker id (partner id).
pub const DEMO_BROKER_ID: &str = "1";

/// Requests received, by endpoint name.
pub type Stats = BTreeMap<String, u64>;

/// Everything the sandbox's handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<state::State>,
    pub(crate) limiter: Mutex<rate_limit::RateLimiter>,
    pub(crate) arrivals: Mutex<arrivals::Arrivals>,
    pub(crate) switches: Mutex<Switches>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) requests: Mutex<request_log::RequestLog>,
}

impl Shared {
    pub(crate) fn count(&self, endpoint: &str) {
        *lock(&self.stats).entry(endpoint.to_string()).or_default() += 1;
    }
}

/// A Problem-style error answer, as the vendor sends them.
pub(crate) fn problem(status: StatusCode, detail: &str, path: &str) -> Response {
    problem_body(status, detail, path).into_response()
}

/// The body and status of a Problem-style answer, to add fields to.
pub(crate) fn problem_body(status: StatusCode, detail: &str, path: &str) -> ProblemAnswer {
    ProblemAnswer(
        status,
        serde_json::json!({
            "status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "detail": detail,
            "path": path,
            "timestamp": OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        }),
    )
}

/// A Problem-style answer under construction.
pub(crate) struct ProblemAnswer(StatusCode, Value);

impl ProblemAnswer {
    /// With v2's typed error, e.g. `error://broker-api/user-account/already-exists`, and its title.
    pub(crate) fn typed(mut self, kind: &str, title: &str) -> Self {
        self.1["type"] = serde_json::json!(kind);
        self.titled(title)
    }

    /// With a title of its own instead of the status's reason phrase.
    pub(crate) fn titled(mut self, title: &str) -> Self {
        self.1["title"] = serde_json::json!(title);
        self
    }
}

impl IntoResponse for ProblemAnswer {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// The path a Problem body names: the one the caller sent, with the prefix a
/// nested API (CRM-API, Broker-API v2) is served under, as the vendor's
/// host would see it.
pub(crate) fn request_path(uri: &Uri, extensions: &Extensions) -> String {
    extensions.get::<OriginalUri>().map_or_else(|| uri.path(), |original| original.path()).to_string()
}

/// The request's path for Problem bodies (see [`request_path`]).
#[derive(Debug, Clone)]
pub(crate) struct ProblemPath(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for ProblemPath {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(request_path(&parts.uri, &parts.extensions)))
    }
}

/// A request body that must be a JSON object; anything else is refused with
/// the vendor's 400 before the handler runs.
#[derive(Debug)]
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let path = request_path(&parts.uri, &parts.extensions);
        let refusal = || problem(StatusCode::BAD_REQUEST, "Body must be a JSON object", &path);
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(|_| refusal())?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => Ok(Self(object)),
            _ => Err(refusal()),
        }
    }
}
