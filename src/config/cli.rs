//! The command line. Every flag also reads the environment variable shown by
//! `--help`; the single tenant's flags are the tenant's own declaration
//! ([`TenantOptions`]), flattened in.

use clap::Parser;
use secrecy::SecretString;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{
    ConfigError, ConnectionLimits, DEFAULT_MAX_IN_FLIGHT, HttpSettings, LogFormat, Mode, Proxies, ResilienceSettings,
    Settings, Upstream, audit::AuditOptions, callers::CallerFiles, invalid, sandbox_args::SandboxArgs, shared_state,
    tenants_file,
};
use crate::{
    quota::Limits,
    redis_connection::RedisSettings,
    setting_values::{parse_base_url, parse_duration, positive, read_secret_file},
    tenant::{DEFAULT_TENANT, TenantOptions},
};

/// The command line. Every flag also reads the environment variable shown by `--help`.
#[derive(Debug, Parser)]
#[command(name = "mtr-sso", version, about = "gRPC single sign-on gateway into the Match-Trader platform")]
pub struct Cli {
    /// gRPC listen address [default: 0.0.0.0:50051, or 127.0.0.1:50051 with --sandbox];
    /// port 0 lets the OS pick one (the startup log prints it).
    #[arg(long, env = "MTR_SSO_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Runtime worker threads. One serves about 30,000 RPCs a second, far above
    /// what the vendor's quota lets through; more only pay off with the CPUs
    /// to match, since workers sharing CPUs wake each other (see BENCHMARKS.md).
    #[arg(long, env = "MTR_SSO_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,

    /// Server certificate chain (PEM) for TLS; needs --tls-key.
    #[arg(long, env = "MTR_SSO_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM) for TLS.
    #[arg(long, env = "MTR_SSO_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) of the callers' client certificates: enables mTLS, callers named by their certificate's SAN.
    #[arg(long, env = "MTR_SSO_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Secret file of per-caller bearer tokens, one `<caller> <token>` per line.
    #[arg(long, env = "MTR_SSO_CALLER_TOKENS_FILE")]
    pub caller_tokens_file: Option<PathBuf>,
    /// TOML policy: which caller may call which RPC, for which tenants (see README).
    #[arg(long, env = "MTR_SSO_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Plaintext address serving only grpc.health.v1, for probes that cannot present certificates.
    #[arg(long, env = "MTR_SSO_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// Calls per minute per tenant to its Broker-API key, and separately to its platform,
    /// for the whole fleet (the vendor allows 500); 0 switches the guard off.
    #[arg(long, env = "MTR_SSO_UPSTREAM_QUOTA_PER_MINUTE", default_value_t = 450)]
    pub upstream_quota_per_minute: u32,
    /// How long a vendor call over the quota may wait, in order of arrival, for
    /// a slot that frees within this time and its deadline; longer waits are
    /// refused at once. 0 refuses at once.
    #[arg(long, env = "MTR_SSO_QUOTA_MAX_WAIT", default_value = "2s", value_parser = parse_duration)]
    pub quota_max_wait: Duration,
    /// The window of every limit. Tests and the quota benchmark shorten it to
    /// show in seconds what takes minutes; the limits are per minute otherwise.
    #[arg(long, env = "MTR_SSO_LIMIT_WINDOW", default_value = "60s", value_parser = parse_duration, hide = true)]
    pub limit_window: Duration,
    /// IssueOneTimeToken and Login calls per minute per authenticated caller; 0 for no limit.
    #[arg(long, env = "MTR_SSO_CALLER_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub caller_limit_per_minute: u32,
    /// IssueOneTimeToken and Login calls per minute per email; 0 for no limit.
    #[arg(long, env = "MTR_SSO_EMAIL_LIMIT_PER_MINUTE", default_value_t = 20)]
    pub email_limit_per_minute: u32,
    /// Consecutive upstream failures that open a tenant API's circuit; 0 switches the breaker off.
    #[arg(long, env = "MTR_SSO_CIRCUIT_BREAKER_FAILURES", default_value_t = ResilienceSettings::default().breaker_failures)]
    pub circuit_breaker_failures: u32,
    /// How long an open circuit fails fast before one probe call is let through.
    #[arg(
        long,
        env = "MTR_SSO_CIRCUIT_BREAKER_COOLDOWN",
        default_value = humantime::format_duration(ResilienceSettings::default().breaker_cooldown).to_string(),
        value_parser = parse_duration
    )]
    pub circuit_breaker_cooldown: Duration,
    /// Attempts per upstream call when the connection is refused (1: no retry).
    #[arg(long, env = "MTR_SSO_CONNECT_ATTEMPTS", default_value_t = ResilienceSettings::default().max_attempts)]
    pub connect_attempts: u32,
    /// Calls in flight at once to one tenant's Broker-API, and separately to its
    /// platform; more wait for a slot within their deadline. Each call holds an
    /// HTTP/1.1 connection, so this bounds connections and memory; 0 for no limit.
    #[arg(long, env = "MTR_SSO_UPSTREAM_CONCURRENCY", default_value_t = ResilienceSettings::default().max_concurrent_calls)]
    pub upstream_concurrency: usize,

    /// How long a CreateAccount idempotency key is remembered.
    #[arg(long, env = "MTR_SSO_IDEMPOTENCY_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub idempotency_window: Duration,
    /// Redis URL (e.g. `redis://redis:6379`) to share limits and idempotency keys across replicas;
    /// `redis+cluster://` or `rediss+cluster://` for a Redis Cluster (any one node); in memory when unset.
    #[arg(long, env = "MTR_SSO_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// CA certificate (PEM) of the Redis server's certificate, for `rediss://`; the system trust store when unset.
    #[arg(long, env = "MTR_SSO_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Secret file holding the Redis password (e.g. a Kubernetes Secret mount); never logged.
    #[arg(long, env = "MTR_SSO_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// Redis ACL user the password belongs to; the default user when unset.
    #[arg(long, env = "MTR_SSO_REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// How long one Redis command may take; past it, Redis counts as out until it answers again
    /// (see RELIABILITY.md for what each guarantee does meanwhile).
    #[arg(long, env = "MTR_SSO_REDIS_COMMAND_TIMEOUT", default_value = "250ms", value_parser = parse_duration)]
    pub redis_command_timeout: Duration,
    /// How many replicas share Redis (the autoscaler's maximum): while Redis is out, each
    /// replica's own guards allow each per-minute limit divided by this.
    #[arg(long, env = "MTR_SSO_REPLICAS", default_value_t = crate::redis_connection::DEFAULT_REPLICAS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
    /// Refuse to start without --redis-url: every replica must share the quota, the idempotency
    /// keys and the refresh results.
    #[arg(long, env = "MTR_SSO_REQUIRE_SHARED_STATE")]
    pub require_shared_state: bool,
    /// This pod's name, from Kubernetes' downward API (`metadata.name`); a pod of a Deployment or
    /// StatefulSet without --redis-url is warned about at start.
    #[arg(long, env = "MTR_SSO_POD_NAME")]
    pub pod_name: Option<String>,
    /// How long a Refresh result is handed again to a repeat with the same
    /// refresh token (the platform rotates it, so a repeat would be refused);
    /// across replicas with --redis-url. 0 switches sharing and reuse off.
    #[arg(long, env = "MTR_SSO_REFRESH_REUSE_WINDOW", default_value = "10s", value_parser = parse_duration)]
    pub refresh_reuse_window: Duration,

    /// RPCs in flight at most; more are refused at once with RESOURCE_EXHAUSTED (OVERLOADED).
    #[arg(long, env = "MTR_SSO_MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Connections held at once on the main listener; beyond it, new ones wait
    /// in the kernel's backlog until one closes. Keep it below the open-file
    /// limit (ulimit -n).
    #[arg(long, env = "MTR_SSO_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// How long a connection may stay open before its first request (TLS
    /// handshake included); then it is closed.
    #[arg(long, env = "MTR_SSO_FIRST_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub first_request_timeout: Duration,
    /// How long a TLS handshake may take; then the connection is closed.
    #[arg(long, env = "MTR_SSO_TLS_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,

    /// Address of the Prometheus `/metrics` endpoint; no metrics endpoint when unset.
    #[arg(long, env = "MTR_SSO_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// OTLP/gRPC collector to export spans to (e.g. `http://otel-collector:4317`); none when unset.
    #[arg(long, env = "MTR_SSO_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// The audit trail's settings.
    #[command(flatten)]
    pub audit: AuditOptions,

    /// Check the settings (files included), print `configuration OK` and exit, without serving.
    #[arg(long)]
    pub check_config: bool,

    /// Check every tenant's upstream with cheap reads only (keys, hosts, broker ids, cookie
    /// domain), print a table and exit: 0 when all pass, 1 when any fails. Never creates an
    /// account or mints a token.
    #[arg(long)]
    pub check_upstream: bool,

    /// Run against the built-in sandbox of the vendor's APIs instead of a real upstream.
    #[arg(long, env = "MTR_SSO_SANDBOX")]
    pub sandbox: bool,
    /// The sandbox's own settings.
    #[command(flatten)]
    pub sandbox_settings: SandboxArgs,

    /// A TOML file describing one or more tenants (see README); excludes the single-tenant flags.
    #[arg(long, env = "MTR_SSO_TENANTS_FILE")]
    pub tenants_file: Option<PathBuf>,
    /// The single tenant's settings (or none, with --tenants-file or --sandbox).
    #[command(flatten)]
    pub tenant: TenantOptions,

    /// User-Agent sent upstream (platform hosts reject unknown client fingerprints).
    #[arg(long, env = "MTR_SSO_USER_AGENT", default_value = concat!("mtr-sso/", env!("CARGO_PKG_VERSION")))]
    pub user_agent: String,
    /// Time allowed to open an upstream connection.
    #[arg(long, env = "MTR_SSO_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Longest time an RPC may wait for the upstream; a shorter caller deadline wins.
    #[arg(long, env = "MTR_SSO_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight RPCs may take to finish.
    #[arg(long, env = "MTR_SSO_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "MTR_SSO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (e.g. `info,mtr_sso=debug`).
    #[arg(long, env = "MTR_SSO_LOG", default_value = "info")]
    pub log: String,
}

fn positive_setting(setting: &str, value: Duration) -> Result<Duration, ConfigError> {
    positive(value).map_err(|problem| invalid(setting, problem))
}

fn at_least_one<T: PartialEq + From<u8>>(setting: &str, value: T) -> Result<T, ConfigError> {
    if value == T::from(0) {
        return Err(invalid(setting, "must be at least 1"));
    }
    Ok(value)
}

impl Cli {
    /// Checks the command line and resolves it into [`Settings`].
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let http = HttpSettings {
            user_agent: self.user_agent.clone(),
            connect_timeout: positive_setting("--connect-timeout", self.connect_timeout)?,
            upstream_timeout: positive_setting("--upstream-timeout", self.upstream_timeout)?,
            // The in-process sandbox is reached directly, whatever proxy the environment names.
            proxies: if self.sandbox { Proxies::None } else { Proxies::FromEnvironment },
        };
        if http::HeaderValue::from_str(&http.user_agent).is_err() || http.user_agent.is_empty() {
            return Err(invalid("--user-agent", "must be a non-empty, printable header value"));
        }
        let redis = self.resolve_redis()?;
        shared_state::check(self.require_shared_state, redis.is_some())?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(invalid("--log", e.to_string()));
        }
        let otlp_endpoint = match &self.otlp_endpoint {
            Some(text) => Some(parse_base_url(text).map_err(|problem| invalid("--otlp-endpoint", problem))?),
            None => None,
        };
        let upstream = self.resolve_upstream()?;
        let audit = self.audit.resolve(self.pod_name.as_deref())?;
        let limit_window = positive_setting("--limit-window", self.limit_window)?;
        if self.quota_max_wait > limit_window {
            let window = humantime::format_duration(limit_window);
            return Err(invalid("--quota-max-wait", format!("must not be longer than the quota's window ({window})")));
        }
        // A sandbox hands out sessions for a fake user: keep it on loopback unless asked otherwise.
        let default_host = if self.sandbox { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
        let caller_files = CallerFiles {
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            caller_tokens_file: self.caller_tokens_file.clone(),
            policy_file: self.policy_file.clone(),
        };
        let (tls, callers) = caller_files.resolve()?;
        Ok(Settings {
            tls,
            callers,
            caller_files,
            health_listen: self.health_listen,
            mode: match (self.check_upstream, self.check_config) {
                (true, _) => Mode::CheckUpstream,
                (false, true) => Mode::CheckConfig,
                (false, false) => Mode::Serve,
            },
            listen: self.listen.unwrap_or(SocketAddr::from((default_host, 50051))),
            worker_threads: at_least_one("--worker-threads", self.worker_threads)?,
            max_in_flight: at_least_one("--max-in-flight", self.max_in_flight)?,
            connections: ConnectionLimits {
                max_connections: at_least_one("--max-connections", self.max_connections)?,
                first_request_timeout: positive_setting("--first-request-timeout", self.first_request_timeout)?,
                tls_handshake_timeout: positive_setting("--tls-handshake-timeout", self.tls_handshake_timeout)?,
            },
            limits: Limits {
                upstream_per_minute: self.upstream_quota_per_minute,
                caller_per_minute: self.caller_limit_per_minute,
                email_per_minute: self.email_limit_per_minute,
            },
            limit_window,
            quota_max_wait: self.quota_max_wait,
            idempotency_window: positive_setting("--idempotency-window", self.idempotency_window)?,
            resilience: ResilienceSettings {
                breaker_failures: self.circuit_breaker_failures,
                breaker_cooldown: positive_setting("--circuit-breaker-cooldown", self.circuit_breaker_cooldown)?,
                max_attempts: at_least_one("--connect-attempts", self.connect_attempts)?,
                max_concurrent_calls: self.upstream_concurrency,
                ..Default::default()
            },
            redis,
            deployment: shared_state::Deployment::from_pod_name(self.pod_name.as_deref()),
            refresh_reuse_window: self.refresh_reuse_window,
            metrics_addr: self.metrics_addr,
            otlp_endpoint,
            audit,
            upstream,
            http,
            shutdown_grace: self.shutdown_grace,
            log_format: self.log_format,
            log_filter: self.log,
        })
    }

    fn resolve_redis(&self) -> Result<Option<RedisSettings>, ConfigError> {
        let Some(url) = self.redis_url.clone() else {
            let first_given = [
                (self.redis_ca_file.is_some(), "--redis-ca-file"),
                (self.redis_password_file.is_some(), "--redis-password-file"),
                (self.redis_username.is_some(), "--redis-username"),
            ]
            .into_iter()
            .find_map(|(given, flag)| given.then_some(flag));
            return match first_given {
                Some(flag) => Err(invalid(flag, "needs --redis-url")),
                None => Ok(None),
            };
        };
        let ca_pem = match &self.redis_ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| invalid("--redis-ca-file", format!("cannot read {}: {e}", path.display())))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(invalid("--redis-ca-file", format!("{} holds no PEM certificate", path.display())));
                }
                Some(pem)
            }
            None => None,
        };
        let password = match &self.redis_password_file {
            Some(path) => {
                let password = read_secret_file(path).map_err(|problem| invalid("--redis-password-file", problem))?;
                if password.is_empty() {
                    return Err(invalid("--redis-password-file", format!("{} is empty", path.display())));
                }
                Some(SecretString::from(password))
            }
            None => None,
        };
        let command_timeout = positive_setting("--redis-command-timeout", self.redis_command_timeout)?;
        // A Redis command that may take an RPC's whole time bounds nothing.
        if command_timeout >= self.upstream_timeout {
            return Err(invalid("--redis-command-timeout", "must be shorter than --upstream-timeout"));
        }
        RedisSettings::new(url, ca_pem, self.redis_username.clone(), password)
            .map(|settings| settings.with_command_timeout(command_timeout).with_replicas(self.replicas))
            .map(Some)
            .map_err(|refused| invalid(refused.setting, refused.problem))
    }

    fn resolve_upstream(&self) -> Result<Upstream, ConfigError> {
        let given = self.tenant.given_keys();
        let first_flag = || given.first().map(|key| TenantOptions::flag_for(key));
        if self.sandbox {
            if !cfg!(feature = "sandbox") {
                return Err(invalid(
                    "--sandbox",
                    "this build has no sandbox (it was built without the `sandbox` feature)",
                ));
            }
            // The sandbox wires its own upstream; mixing in real settings would be ambiguous.
            if let Some(flag) = first_flag().or_else(|| self.tenants_file.as_ref().map(|_| "--tenants-file".into())) {
                return Err(invalid(flag, "cannot be combined with --sandbox"));
            }
            return Ok(Upstream::Sandbox(self.sandbox_settings.options()));
        }
        if let Some(path) = &self.tenants_file {
            if let Some(flag) = first_flag() {
                return Err(invalid(flag, "cannot be combined with --tenants-file (put it in the file)"));
            }
            return tenants_file::load(path);
        }
        if given.is_empty() {
            return Err(invalid(
                "--broker-api-url",
                "no upstream configured: set --broker-api-url, --api-key-file and --platform-url (or --tenants-file), or run with --sandbox",
            ));
        }
        let tenant = self
            .tenant
            .clone()
            .resolve(DEFAULT_TENANT)
            .map_err(|bad| invalid(TenantOptions::flag_for(bad.key), bad.problem))?;
        Ok(Upstream::Tenants { tenants: vec![tenant], default_tenant: DEFAULT_TENANT.into() })
    }
}
