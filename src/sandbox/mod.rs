//! A built-in sandbox of the vendor: a real HTTP server on 127.0.0.1 that
//! speaks the Broker-API and Platform-API paths and JSON, quirks included
//! (Problem-style errors, path-scoped `rt` cookies, refresh answered by
//! `Set-Cookie` alone, a per-key rate limit over a sliding minute), plus the
//! browser landing `/?auth=` so login links really work. Fault switches
//! (latency, 5xx, resets, malformed bodies, hangs) are off unless asked for.
//!
//! Control endpoints for tests and benchmarks in any language:
//! `GET|PUT /_sandbox/switches`, `GET /_sandbox/stats` and
//! `GET /_sandbox/arrivals` (when each rate-limited request arrived). Rust
//! tests also read every vendor request in order, with when it arrived and
//! was answered ([`Sandbox::requests`]).

mod arrivals;
mod broker;
mod broker_v2;
mod broker_v2_reads;
mod email;
mod faults;
mod platform;
mod rate_limit;
mod request_log;
mod session_token;
pub mod state;

pub use arrivals::{Arrival, KEPT_PER_API};
pub use faults::{BAD_REQUEST_TITLE, FaultKind, Switches};
pub use request_log::{KEPT_REQUESTS, LoggedRequest};

use axum::{Json, Router, extract::State as AxumState, routing::get};
use secrecy::SecretString;
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use url::Url;

pub use crate::config::SandboxOptions;
use crate::tenant::{Generation, TenantSettings, TradingAccountDefaults, TradingAccountType, UpstreamPaths};

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

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<state::State>,
    pub(crate) limiter: Mutex<rate_limit::RateLimiter>,
    pub(crate) arrivals: Mutex<arrivals::Arrivals>,
    pub(crate) switches: Mutex<Switches>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) requests: Mutex<request_log::RequestLog>,
}

/// A lock that survives a panicked holder: the sandbox state stays usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn count(&self, endpoint: &str) {
        *lock(&self.stats).entry(endpoint.to_string()).or_default() += 1;
    }
}

/// A running sandbox; stops when dropped.
#[derive(Debug)]
pub struct Sandbox {
    base_url: Url,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// Starts the sandbox with the demo user seeded.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(options.addr).await?;
        let addr = listener.local_addr()?;
        let mut state = state::State::default();
        state.add_account(state::Account {
            uuid: uuid::Uuid::new_v4().to_string(),
            email: DEMO_EMAIL.into(),
            password: DEMO_PASSWORD.into(),
            client_type: "RETAIL".into(),
            created: OffsetDateTime::now_utc(),
            sections: Default::default(),
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            limiter: Mutex::new(rate_limit::RateLimiter::default()),
            arrivals: Mutex::new(arrivals::Arrivals::new()),
            switches: Mutex::new(Switches {
                latency: options.latency,
                rate_limit_per_minute: options.rate_limit_per_minute,
                rate_limit_window: options.rate_limit_window,
                ..Switches::default()
            }),
            stats: Mutex::new(Stats::new()),
            requests: Mutex::new(request_log::RequestLog::new()),
        });
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::error!(%error, "sandbox server failed");
            }
        });
        let base_url = Url::parse(&format!("http://{addr}")).map_err(std::io::Error::other)?;
        tracing::info!(%base_url, "sandbox listening");
        Ok(Self { base_url, shared, stop: Some(stop), task })
    }

    /// The sandbox's base URL (it serves both APIs and the platform pages).
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// A Broker-API v1 tenant profile wired to this sandbox.
    pub fn tenant_settings(&self, name: &str) -> TenantSettings {
        self.tenant_settings_for(name, Generation::V1)
    }

    /// A tenant profile of `generation` wired to this sandbox, with that
    /// generation's defaults; a v2 tenant opens a demo trading account.
    pub fn tenant_settings_for(&self, name: &str, generation: Generation) -> TenantSettings {
        let (prefix, key) = match generation {
            Generation::V1 => ("", SANDBOX_API_KEY),
            Generation::V2 => (BROKER_API_V2_PREFIX, SANDBOX_V2_API_KEY),
            Generation::Crm => (CRM_API_PREFIX, SANDBOX_API_KEY),
        };
        let mut broker_api_url = self.base_url.clone();
        broker_api_url.set_path(prefix);
        TenantSettings {
            name: name.to_string(),
            generation,
            trading_account: (generation == Generation::V2).then(|| TradingAccountDefaults {
                group: DEMO_GROUP.into(),
                leverage_ratio_percent: 10_000,
                account_type: TradingAccountType::Demo,
                access_right: None,
            }),
            v2_account_details: Default::default(),
            lookup_before_create: false,
            broker_api_url,
            api_key: SecretString::from(key).into(),
            auth_scheme: generation.default_auth_scheme(),
            platform_url: self.base_url.clone(),
            broker_id: Some(DEMO_BROKER_ID.into()),
            cookie_domain: None,
            paths: UpstreamPaths::for_generation(generation),
            session_lifetime: state::SESSION_LIFETIME,
            one_time_token_validity: Duration::from_secs(60),
            one_time_token_max_validity: Duration::from_secs(3600),
        }
    }

    /// The tenants `--sandbox` serves: `default` on Broker-API v1 and `v2`
    /// on Broker-API v2, side by side as during a migration.
    pub fn served_tenants(&self) -> Vec<TenantSettings> {
        vec![self.tenant_settings(crate::tenant::DEFAULT_TENANT), self.tenant_settings_for(V2_TENANT, Generation::V2)]
    }

    /// Replaces the fault and limit switches.
    pub fn set_switches(&self, switches: Switches) {
        *lock(&self.shared.switches) = switches;
    }

    /// The current switches.
    pub fn switches(&self) -> Switches {
        lock(&self.shared.switches).clone()
    }

    /// Requests received so far, by endpoint.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// When each rate-limited request arrived, per API (`broker-api`,
    /// `platform`), and whether it was refused.
    pub fn arrivals(&self) -> BTreeMap<String, Vec<Arrival>> {
        lock(&self.shared.arrivals).snapshot()
    }

    /// Adds an account for `email` as if it had signed up at `created` (on
    /// the sandbox's clock); `false` if the email is taken.
    pub fn seed_account(&self, email: &str, password: &str, created: OffsetDateTime) -> bool {
        let account = state::Account {
            uuid: uuid::Uuid::new_v4().to_string(),
            email: email.into(),
            password: password.into(),
            client_type: "RETAIL".into(),
            created,
            sections: Default::default(),
        };
        lock(&self.shared.state).add_account(account).is_some()
    }

    /// Number of accounts (the demo user included).
    pub fn account_count(&self) -> usize {
        lock(&self.shared.state).account_count()
    }

    /// Number of trading accounts opened through Broker-API v2.
    pub fn trading_account_count(&self) -> usize {
        lock(&self.shared.state).trading_account_count()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let vendor = Router::new()
        .merge(broker::routes())
        .nest(CRM_API_PREFIX, broker::crm_routes())
        .nest(BROKER_API_V2_PREFIX, broker_v2::routes())
        .merge(platform::routes())
        .layer(axum::middleware::from_fn_with_state(shared.clone(), faults::apply));
    Router::new()
        .merge(vendor)
        .route("/_sandbox/switches", get(get_switches).put(put_switches))
        .route("/_sandbox/stats", get(get_stats))
        .route("/_sandbox/arrivals", get(get_arrivals))
        .with_state(shared)
}

async fn get_switches(AxumState(shared): AxumState<Arc<Shared>>) -> Json<Switches> {
    Json(lock(&shared.switches).clone())
}

async fn put_switches(AxumState(shared): AxumState<Arc<Shared>>, Json(switches): Json<Switches>) -> Json<Switches> {
    *lock(&shared.switches) = switches.clone();
    Json(switches)
}

#[derive(Serialize)]
struct StatsBody {
    requests: Stats,
    accounts: usize,
}

async fn get_stats(AxumState(shared): AxumState<Arc<Shared>>) -> Json<StatsBody> {
    let requests = lock(&shared.stats).clone();
    let accounts = lock(&shared.state).account_count();
    Json(StatsBody { requests, accounts })
}

async fn get_arrivals(AxumState(shared): AxumState<Arc<Shared>>) -> Json<BTreeMap<String, Vec<Arrival>>> {
    Json(lock(&shared.arrivals).snapshot())
}

/// A Problem-style error answer, as the vendor sends them.
pub(crate) fn problem(status: axum::http::StatusCode, detail: &str, path: &str) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    problem_body(status, detail, path).into_response()
}

/// The body and status of a Problem-style answer, to add fields to.
pub(crate) fn problem_body(status: axum::http::StatusCode, detail: &str, path: &str) -> ProblemAnswer {
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
pub(crate) struct ProblemAnswer(axum::http::StatusCode, serde_json::Value);

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

impl axum::response::IntoResponse for ProblemAnswer {
    fn into_response(self) -> axum::response::Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// 429 with `Retry-After`, when `key` is over the limit. Every request is
/// recorded in the arrivals of its API (`platform`, or `broker-api` for an API key).
pub(crate) fn rate_limited(shared: &Shared, key: &str, path: &str) -> Option<axum::response::Response> {
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
    let mut response = problem(axum::http::StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded", path);
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, rate_limit::retry_after_seconds(wait).into());
    Some(response)
}
