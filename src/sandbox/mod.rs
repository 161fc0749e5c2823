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
mod control;
mod email;
mod expiry;
mod faults;
mod gate;
mod locking;
mod platform;
mod rate_limit;
mod request_log;
mod session_token;
pub mod state;
mod switches;
mod vendor;

pub use arrivals::{Arrival, KEPT_PER_API};
pub use request_log::{KEPT_REQUESTS, LoggedRequest};
pub use switches::{BAD_REQUEST_TITLE, FaultKind, Switches};
pub use vendor::{
    BROKER_API_V2_PREFIX, CRM_API_PREFIX, DEMO_BROKER_ID, DEMO_EMAIL, DEMO_EMAIL_LIMIT_PER_MINUTE, DEMO_GROUP,
    DEMO_PASSWORD, SANDBOX_API_KEY, SANDBOX_V2_API_KEY, Stats, V2_TENANT,
};

use axum::Router;
use secrecy::SecretString;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use time::OffsetDateTime;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use url::Url;

pub use crate::config::SandboxOptions;
use crate::tenant::{Generation, TenantSettings, TradingAccountDefaults, TradingAccountType, UpstreamPaths};
use vendor::{Shared, lock};

/// A running sandbox; stops when dropped.
#[derive(Debug)]
pub struct Sandbox {
    base_url: Url,
    shared: Arc<Shared>,
    session_lifetime: Duration,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// Starts the sandbox with the demo user seeded.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(options.addr).await?;
        let addr = listener.local_addr()?;
        let mut state = state::State::new(state::Lifetimes::from_options(&options));
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
        Ok(Self { base_url, shared, session_lifetime: options.session_lifetime, stop: Some(stop), task })
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
            session_lifetime: self.session_lifetime,
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

/// The vendor's APIs (each behind its door, see `gate`), the faults over
/// them all, and the control endpoints beside them.
fn router(shared: Arc<Shared>) -> Router {
    let vendor = Router::new()
        .merge(broker::routes(&shared))
        .nest(CRM_API_PREFIX, broker::crm_routes(&shared))
        .nest(BROKER_API_V2_PREFIX, broker_v2::routes(&shared))
        .merge(platform::routes(&shared))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), faults::apply));
    Router::new().merge(vendor).merge(control::routes()).with_state(shared)
}
