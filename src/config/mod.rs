//! Typed configuration: command-line flags with environment fallbacks
//! ([`cli`]), an optional tenants file ([`tenants_file`]), the files that
//! say who may call ([`callers`]), and the audit trail's settings
//! ([`audit`]). Everything is parsed and checked at start,
//! so a bad setting stops the process with one line that names it instead of
//! failing on the first request. This module imports nothing above it: the
//! layers above read the [`Settings`] it produces.

mod audit;
mod callers;
mod cli;
mod sandbox_args;
pub mod shared_state;
mod tenants_file;

pub use audit::{AuditOnFailure, AuditSettings};
pub use callers::{CallerFiles, TlsFiles};
pub use cli::Cli;

use clap::ValueEnum;
use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};
use url::Url;

use crate::{auth::CallerAuth, quota::Limits, redis_connection::RedisSettings, tenant::TenantSettings};

/// Default limit of RPCs in flight; each holds about 40 KB (see BENCHMARKS.md).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the shared upstream HTTP client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub user_agent: String,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub proxies: Proxies,
}

/// Which proxies the upstream HTTP client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxies {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (or their
    /// lowercase forms), read once when the client is built, as curl reads them.
    FromEnvironment,
    /// Always connect directly: the in-process sandbox, whatever proxy the
    /// environment names.
    None,
}

/// What the process does with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve until SIGTERM/SIGINT.
    Serve,
    /// `--check-config`: check the settings (Redis included), then exit.
    CheckConfig,
    /// `--check-upstream`: check the settings and every tenant's upstream
    /// with cheap reads, then exit.
    CheckUpstream,
}

/// Bounds on the connections the main listener holds, so that callers that
/// connect and then send nothing cannot exhaust the process's descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections held at once; beyond it, new ones wait in the kernel's
    /// backlog until one closes.
    pub max_connections: usize,
    /// Time from accepting a connection to its first request, TLS handshake included.
    pub first_request_timeout: Duration,
    /// Time a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            first_request_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// How to start the built-in sandbox of the vendor.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Where its HTTP server listens; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Requests per minute per API key and per platform, 500 as the vendor's
    /// by default; 0 switches the limit off.
    pub rate_limit_per_minute: u32,
    /// Latency added to every answer.
    pub latency: Duration,
    /// The window of the rate limit: a minute, as the vendor's; shorter only
    /// for tests and benchmarks.
    pub rate_limit_window: Duration,
    /// How long a platform session lives: 15 minutes, as the vendor documents.
    pub session_lifetime: Duration,
    /// How long an unused refresh token lives: a day, as the vendor's `rt`
    /// cookie has lasted wherever it was seen (the vendor does not say).
    pub refresh_token_lifetime: Duration,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate_limit_per_minute: 500,
            latency: Duration::ZERO,
            rate_limit_window: Duration::from_secs(60),
            session_lifetime: Duration::from_secs(15 * 60),
            refresh_token_lifetime: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// How upstream failures are handled; shared by every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResilienceSettings {
    /// Consecutive failures that open a circuit; 0 switches the breaker off.
    pub breaker_failures: u32,
    /// How long an open circuit fails fast before letting a probe through.
    pub breaker_cooldown: Duration,
    /// Attempts per call when the connection is refused (1: no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; it doubles for each further one.
    pub base_backoff: Duration,
    /// Calls in flight at once to one tenant's API; more wait for a slot
    /// within their deadline. 0: no limit.
    pub max_concurrent_calls: usize,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        Self {
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
            max_attempts: 3,
            base_backoff: Duration::from_millis(50),
            max_concurrent_calls: 64,
        }
    }
}

impl ResilienceSettings {
    /// No breaker, no retries, no concurrency limit: every call behaves on its own (tests).
    pub fn off() -> Self {
        Self { breaker_failures: 0, max_attempts: 1, max_concurrent_calls: 0, ..Self::default() }
    }
}

/// Where the upstream comes from.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Real upstreams, one profile per tenant.
    Tenants { tenants: Vec<TenantSettings>, default_tenant: String },
    /// The built-in sandbox, started in-process.
    Sandbox(SandboxOptions),
}

/// The whole, checked configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tls: Option<TlsFiles>,
    pub callers: Option<Arc<CallerAuth>>,
    /// Where `tls` and `callers` were read from, to read them again when the files change.
    pub caller_files: CallerFiles,
    pub health_listen: Option<SocketAddr>,
    pub mode: Mode,
    pub listen: SocketAddr,
    pub worker_threads: usize,
    pub max_in_flight: usize,
    pub connections: ConnectionLimits,
    pub limits: Limits,
    /// How long a vendor call over the quota may wait for a slot; zero: never.
    pub quota_max_wait: Duration,
    /// The window of every limit: a minute, shorter only in tests and benchmarks.
    pub limit_window: Duration,
    pub idempotency_window: Duration,
    pub resilience: ResilienceSettings,
    /// Shares limits, idempotency keys and refresh results across replicas; in memory when `None`.
    pub redis: Option<RedisSettings>,
    /// What start-up can tell of the replicas around it (the pod name).
    pub deployment: shared_state::Deployment,
    /// How long a Refresh result is handed to repeats with the same refresh token; zero: never.
    pub refresh_reuse_window: Duration,
    pub metrics_addr: Option<SocketAddr>,
    pub otlp_endpoint: Option<Url>,
    pub audit: AuditSettings,
    pub upstream: Upstream,
    pub http: HttpSettings,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
}

/// A setting that cannot be used, with the name an operator would type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting: setting.into(), problem: problem.into() }
}

#[cfg(test)]
mod tests;
