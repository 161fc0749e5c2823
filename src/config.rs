//! Typed configuration: command-line flags with environment fallbacks, an
//! optional tenants file, secrets read from files. Everything is parsed and
//! checked at start, so a bad setting stops the process with one line that
//! names it instead of failing on the first request.

use clap::{Parser, ValueEnum};
use secrecy::SecretString;
use serde::Deserialize;
use std::{collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf, time::Duration};
use url::Url;

use crate::sandbox::SandboxOptions;

/// Name of the tenant that flags configure, and that an empty `tenant` selects
/// when a tenants file does not name another default.
pub const DEFAULT_TENANT: &str = "default";

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
    /// IssueOneTimeToken and Login calls per minute per authenticated caller; 0 for no limit.
    #[arg(long, env = "MTR_SSO_CALLER_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub caller_limit_per_minute: u32,
    /// IssueOneTimeToken and Login calls per minute per email; 0 for no limit.
    #[arg(long, env = "MTR_SSO_EMAIL_LIMIT_PER_MINUTE", default_value_t = 20)]
    pub email_limit_per_minute: u32,
    /// Consecutive upstream failures that open a tenant API's circuit; 0 switches the breaker off.
    #[arg(long, env = "MTR_SSO_CIRCUIT_BREAKER_FAILURES", default_value_t = 5)]
    pub circuit_breaker_failures: u32,
    /// How long an open circuit fails fast before one probe call is let through.
    #[arg(long, env = "MTR_SSO_CIRCUIT_BREAKER_COOLDOWN", default_value = "10s", value_parser = parse_duration)]
    pub circuit_breaker_cooldown: Duration,
    /// Attempts per upstream call when the connection is refused (1: no retry).
    #[arg(long, env = "MTR_SSO_CONNECT_ATTEMPTS", default_value_t = 3)]
    pub connect_attempts: u32,
    /// Calls in flight at once to one tenant's Broker-API, and separately to its
    /// platform; more wait for a slot within their deadline. Each call holds an
    /// HTTP/1.1 connection, so this bounds connections and memory; 0 for no limit.
    #[arg(long, env = "MTR_SSO_UPSTREAM_CONCURRENCY", default_value_t = 64)]
    pub upstream_concurrency: usize,

    /// How long a CreateAccount idempotency key is remembered.
    #[arg(long, env = "MTR_SSO_IDEMPOTENCY_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub idempotency_window: Duration,
    /// Redis URL (e.g. `redis://redis:6379`) to share limits and idempotency keys across replicas;
    /// in memory when unset.
    #[arg(long, env = "MTR_SSO_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// RPCs in flight at most; more are refused at once with RESOURCE_EXHAUSTED (OVERLOADED).
    #[arg(long, env = "MTR_SSO_MAX_IN_FLIGHT", default_value_t = crate::service::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,

    /// Address of the Prometheus `/metrics` endpoint; no metrics endpoint when unset.
    #[arg(long, env = "MTR_SSO_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// OTLP/gRPC collector to export spans to (e.g. `http://otel-collector:4317`); none when unset.
    #[arg(long, env = "MTR_SSO_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Check the settings (files included), print `configuration OK` and exit, without serving.
    #[arg(long)]
    pub check_config: bool,

    /// Run against the built-in sandbox of the vendor's APIs instead of a real upstream.
    #[arg(long, env = "MTR_SSO_SANDBOX")]
    pub sandbox: bool,
    /// Address of the sandbox's HTTP server (the emulated Broker-API and platform).
    #[arg(long, env = "MTR_SSO_SANDBOX_ADDR", default_value = "127.0.0.1:0")]
    pub sandbox_addr: SocketAddr,
    /// Requests per minute the sandbox allows per API key and per platform, like the vendor.
    #[arg(long, env = "MTR_SSO_SANDBOX_RATE_LIMIT", default_value_t = 500)]
    pub sandbox_rate_limit: u32,
    /// Extra latency the sandbox adds to every answer (e.g. `5ms`).
    #[arg(long, env = "MTR_SSO_SANDBOX_LATENCY", value_parser = parse_duration)]
    pub sandbox_latency: Option<Duration>,

    /// A TOML file describing one or more tenants (see README); excludes the single-tenant flags.
    #[arg(long, env = "MTR_SSO_TENANTS_FILE")]
    pub tenants_file: Option<PathBuf>,
    /// Base URL of the Broker-API.
    #[arg(long, env = "MTR_SSO_BROKER_API_URL")]
    pub broker_api_url: Option<String>,
    /// The Broker-API key. Prefer --api-key-file.
    #[arg(long, env = "MTR_SSO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A file holding the Broker-API key (e.g. a mounted Kubernetes Secret).
    #[arg(long, env = "MTR_SSO_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// How the API key is sent in the Authorization header.
    #[arg(long, env = "MTR_SSO_AUTH_SCHEME", value_enum)]
    pub auth_scheme: Option<AuthScheme>,
    /// Base URL of the broker's platform (Platform-API and the web app users are sent to).
    #[arg(long, env = "MTR_SSO_PLATFORM_URL")]
    pub platform_url: Option<String>,
    /// Default broker id for Login when the request gives none.
    #[arg(long, env = "MTR_SSO_BROKER_ID")]
    pub broker_id: Option<String>,
    /// Parent domain shared by the calling applications and the platform (e.g. `broker.com`).
    #[arg(long, env = "MTR_SSO_COOKIE_DOMAIN")]
    pub cookie_domain: Option<String>,
    /// Path of the Broker-API create-account endpoint.
    #[arg(long, env = "MTR_SSO_CREATE_ACCOUNT_PATH")]
    pub create_account_path: Option<String>,
    /// Path of the Broker-API one-time-token endpoint.
    #[arg(long, env = "MTR_SSO_ONE_TIME_TOKEN_PATH")]
    pub one_time_token_path: Option<String>,
    /// Path of the platform's password login endpoint.
    #[arg(long, env = "MTR_SSO_LOGIN_PATH")]
    pub login_path: Option<String>,
    /// Path of the platform's one-time-token login endpoint.
    #[arg(long, env = "MTR_SSO_LOGIN_WITH_TOKEN_PATH")]
    pub login_with_token_path: Option<String>,
    /// Path of the platform's refresh endpoint.
    #[arg(long, env = "MTR_SSO_REFRESH_PATH")]
    pub refresh_path: Option<String>,
    /// Session lifetime assumed when the platform's cookie does not state one.
    #[arg(long, env = "MTR_SSO_SESSION_LIFETIME", value_parser = parse_duration)]
    pub session_lifetime: Option<Duration>,
    /// Validity of a one-time token when the request gives none.
    #[arg(long, env = "MTR_SSO_ONE_TIME_TOKEN_VALIDITY", value_parser = parse_duration)]
    pub one_time_token_validity: Option<Duration>,
    /// Longest validity a request may ask for a one-time token.
    #[arg(long, env = "MTR_SSO_ONE_TIME_TOKEN_MAX_VALIDITY", value_parser = parse_duration)]
    pub one_time_token_max_validity: Option<Duration>,

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

/// How the Broker-API key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `Authorization: <key>`, as the vendor documents.
    #[default]
    Raw,
    /// `Authorization: Bearer <key>`.
    Bearer,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Upstream paths; every one is configuration because they differ between
/// brokers, platform versions and API generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPaths {
    pub create_account: String,
    pub one_time_token: String,
    pub login: String,
    pub login_with_token: String,
    pub refresh: String,
}

impl Default for UpstreamPaths {
    fn default() -> Self {
        Self {
            create_account: "/v1/accounts".into(),
            one_time_token: "/v1/one-time-token".into(),
            login: "/manager/mtr-login".into(),
            login_with_token: "/manager/login/co/with-token".into(),
            refresh: "/manager/refresh-token".into(),
        }
    }
}

/// One upstream profile: a broker's Broker-API key and its platform.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub name: String,
    pub broker_api_url: Url,
    pub api_key: SecretString,
    pub auth_scheme: AuthScheme,
    pub platform_url: Url,
    pub broker_id: Option<String>,
    pub cookie_domain: Option<String>,
    pub paths: UpstreamPaths,
    pub session_lifetime: Duration,
    pub one_time_token_validity: Duration,
    pub one_time_token_max_validity: Duration,
}

/// Settings of the shared upstream HTTP client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub user_agent: String,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
}

/// Where the upstream comes from.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Real upstreams, one profile per tenant.
    Tenants { tenants: Vec<TenantSettings>, default_tenant: String },
    /// The built-in sandbox, started in-process.
    Sandbox(SandboxOptions),
}

/// TLS material, read at start.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// With it, callers must present a certificate it signed (unless tokens are also accepted).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles").field("key_pem", &"<redacted>").field("mtls", &self.client_ca_pem.is_some()).finish()
    }
}

/// The whole, checked configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tls: Option<TlsFiles>,
    pub callers: Option<std::sync::Arc<crate::auth::CallerAuth>>,
    pub health_listen: Option<SocketAddr>,
    /// Only check the settings, then exit.
    pub check_only: bool,
    pub listen: SocketAddr,
    pub worker_threads: usize,
    pub max_in_flight: usize,
    pub limits: crate::quota::Limits,
    pub idempotency_window: Duration,
    pub resilience: crate::upstream::resilience::ResilienceSettings,
    pub redis_url: Option<String>,
    pub metrics_addr: Option<SocketAddr>,
    pub otlp_endpoint: Option<Url>,
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

fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting: setting.into(), problem: problem.into() }
}

/// Parses `30s`, `15m`, `250ms`, ... into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 30s or 15m: {e}"))
}

/// The tenant fields as they come from flags or the tenants file, before defaults and checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    broker_api_url: Option<String>,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    auth_scheme: Option<AuthScheme>,
    platform_url: Option<String>,
    broker_id: Option<String>,
    cookie_domain: Option<String>,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default, with = "humantime_serde_opt")]
    session_lifetime: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    one_time_token_validity: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    one_time_token_max_validity: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    create_account: Option<String>,
    one_time_token: Option<String>,
    login: Option<String>,
    login_with_token: Option<String>,
    refresh: Option<String>,
}

/// The tenants file: `[tenants.<name>]` tables and an optional `default_tenant`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    default_tenant: Option<String>,
    tenants: BTreeMap<String, RawTenant>,
}

/// Durations in the tenants file are written like the flags: `"15m"`.
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

impl Cli {
    /// Checks the command line and resolves it into [`Settings`].
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let http = HttpSettings {
            user_agent: self.user_agent.clone(),
            connect_timeout: positive("--connect-timeout", self.connect_timeout)?,
            upstream_timeout: positive("--upstream-timeout", self.upstream_timeout)?,
        };
        if http::HeaderValue::from_str(&http.user_agent).is_err() || http.user_agent.is_empty() {
            return Err(invalid("--user-agent", "must be a non-empty, printable header value"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(invalid("--log", e.to_string()));
        }
        let otlp_endpoint = match &self.otlp_endpoint {
            Some(text) => Some(parse_base_url("--otlp-endpoint", text)?),
            None => None,
        };
        let upstream = self.resolve_upstream()?;
        // A sandbox hands out sessions for a fake user: keep it on loopback unless asked otherwise.
        let default_host = if self.sandbox { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
        let (tls, callers) = self.resolve_callers()?;
        Ok(Settings {
            tls,
            callers,
            health_listen: self.health_listen,
            check_only: self.check_config,
            listen: self.listen.unwrap_or(SocketAddr::from((default_host, 50051))),
            worker_threads: match self.worker_threads {
                0 => return Err(invalid("--worker-threads", "must be at least 1")),
                workers => workers,
            },
            max_in_flight: match self.max_in_flight {
                0 => return Err(invalid("--max-in-flight", "must be at least 1")),
                limit => limit,
            },
            limits: crate::quota::Limits {
                upstream_per_minute: self.upstream_quota_per_minute,
                caller_per_minute: self.caller_limit_per_minute,
                email_per_minute: self.email_limit_per_minute,
            },
            idempotency_window: positive("--idempotency-window", self.idempotency_window)?,
            resilience: crate::upstream::resilience::ResilienceSettings {
                breaker_failures: self.circuit_breaker_failures,
                breaker_cooldown: positive("--circuit-breaker-cooldown", self.circuit_breaker_cooldown)?,
                max_attempts: match self.connect_attempts {
                    0 => return Err(invalid("--connect-attempts", "must be at least 1")),
                    attempts => attempts,
                },
                max_concurrent_calls: self.upstream_concurrency,
                ..Default::default()
            },
            redis_url: match &self.redis_url {
                Some(url) if !url.starts_with("redis://") && !url.starts_with("rediss://") => {
                    return Err(invalid("--redis-url", "must start with redis:// or rediss://"));
                }
                other => other.clone(),
            },
            metrics_addr: self.metrics_addr,
            otlp_endpoint,
            upstream,
            http,
            shutdown_grace: self.shutdown_grace,
            log_format: self.log_format,
            log_filter: self.log,
        })
    }

    /// TLS files and the caller policy, checked together: every way to
    /// authenticate needs a policy, and a policy needs a way to authenticate.
    fn resolve_callers(
        &self,
    ) -> Result<(Option<TlsFiles>, Option<std::sync::Arc<crate::auth::CallerAuth>>), ConfigError> {
        let read = |setting: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert_pem: read("--tls-cert", cert)?,
                key_pem: read("--tls-key", key)?,
                client_ca_pem: self.tls_client_ca.as_ref().map(|ca| read("--tls-client-ca", ca)).transpose()?,
            }),
            (Some(_), None) => return Err(invalid("--tls-key", "is required with --tls-cert")),
            (None, Some(_)) => return Err(invalid("--tls-cert", "is required with --tls-key")),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(invalid("--tls-client-ca", "needs --tls-cert and --tls-key"));
            }
            (None, None) => None,
        };
        if let Some(files) = &tls {
            crate::server::check_tls(files).map_err(|e| invalid("--tls-cert/--tls-key/--tls-client-ca", e))?;
        }
        let mechanisms = self.tls_client_ca.is_some() || self.caller_tokens_file.is_some();
        let callers = match (&self.policy_file, mechanisms) {
            (Some(policy), true) => {
                let policy_text = String::from_utf8(read("--policy-file", policy)?)
                    .map_err(|_| invalid("--policy-file", "is not UTF-8"))?;
                let tokens = match &self.caller_tokens_file {
                    Some(path) => Some(
                        String::from_utf8(read("--caller-tokens-file", path)?)
                            .map_err(|_| invalid("--caller-tokens-file", "is not UTF-8"))?,
                    ),
                    None => None,
                };
                let setting = if tokens.is_some() { "--policy-file or --caller-tokens-file" } else { "--policy-file" };
                let auth =
                    crate::auth::CallerAuth::parse(&policy_text, tokens.as_deref()).map_err(|e| invalid(setting, e))?;
                Some(std::sync::Arc::new(auth))
            }
            (Some(_), false) => {
                return Err(invalid(
                    "--policy-file",
                    "needs a way to authenticate callers: --tls-client-ca or --caller-tokens-file",
                ));
            }
            (None, true) => {
                let flag = if self.tls_client_ca.is_some() { "--tls-client-ca" } else { "--caller-tokens-file" };
                return Err(invalid(flag, "needs --policy-file to say what each caller may do"));
            }
            (None, false) => None,
        };
        Ok((tls, callers))
    }

    fn single_tenant_flags_given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        let checks: [(&'static str, bool); 16] = [
            ("--broker-api-url", self.broker_api_url.is_some()),
            ("--api-key", self.api_key.is_some()),
            ("--api-key-file", self.api_key_file.is_some()),
            ("--auth-scheme", self.auth_scheme.is_some()),
            ("--platform-url", self.platform_url.is_some()),
            ("--broker-id", self.broker_id.is_some()),
            ("--cookie-domain", self.cookie_domain.is_some()),
            ("--create-account-path", self.create_account_path.is_some()),
            ("--one-time-token-path", self.one_time_token_path.is_some()),
            ("--login-path", self.login_path.is_some()),
            ("--login-with-token-path", self.login_with_token_path.is_some()),
            ("--refresh-path", self.refresh_path.is_some()),
            ("--session-lifetime", self.session_lifetime.is_some()),
            ("--one-time-token-validity", self.one_time_token_validity.is_some()),
            ("--one-time-token-max-validity", self.one_time_token_max_validity.is_some()),
            ("--tenants-file", self.tenants_file.is_some()),
        ];
        for (flag, set) in checks {
            if set {
                given.push(flag);
            }
        }
        given
    }

    fn resolve_upstream(&self) -> Result<Upstream, ConfigError> {
        let given = self.single_tenant_flags_given();
        if self.sandbox {
            // The sandbox wires its own upstream; mixing in real settings would be ambiguous.
            if let Some(flag) = given.first() {
                return Err(invalid(*flag, "cannot be combined with --sandbox"));
            }
            return Ok(Upstream::Sandbox(SandboxOptions {
                addr: self.sandbox_addr,
                rate_limit_per_minute: self.sandbox_rate_limit,
                latency: self.sandbox_latency.unwrap_or_default(),
            }));
        }
        if let Some(path) = &self.tenants_file {
            if let Some(flag) = given.iter().find(|f| **f != "--tenants-file") {
                return Err(invalid(*flag, "cannot be combined with --tenants-file (put it in the file)"));
            }
            return load_tenants_file(path);
        }
        if given.is_empty() {
            return Err(invalid(
                "--broker-api-url",
                "no upstream configured: set --broker-api-url, --api-key-file and --platform-url (or --tenants-file), or run with --sandbox",
            ));
        }
        let raw = RawTenant {
            broker_api_url: self.broker_api_url.clone(),
            api_key: self.api_key.clone(),
            api_key_file: self.api_key_file.clone(),
            auth_scheme: self.auth_scheme,
            platform_url: self.platform_url.clone(),
            broker_id: self.broker_id.clone(),
            cookie_domain: self.cookie_domain.clone(),
            paths: RawPaths {
                create_account: self.create_account_path.clone(),
                one_time_token: self.one_time_token_path.clone(),
                login: self.login_path.clone(),
                login_with_token: self.login_with_token_path.clone(),
                refresh: self.refresh_path.clone(),
            },
            session_lifetime: self.session_lifetime,
            one_time_token_validity: self.one_time_token_validity,
            one_time_token_max_validity: self.one_time_token_max_validity,
        };
        let tenant = resolve_tenant(DEFAULT_TENANT, raw, &FlagNames)?;
        Ok(Upstream::Tenants { tenants: vec![tenant], default_tenant: DEFAULT_TENANT.into() })
    }
}

/// How a tenant field is named in an error: as a flag, or as a key of the file.
trait SettingNames {
    fn name(&self, field: &str) -> String;
}

struct FlagNames;

impl SettingNames for FlagNames {
    fn name(&self, field: &str) -> String {
        let flag = match field {
            "paths.create_account" => "create-account-path".to_string(),
            "paths.one_time_token" => "one-time-token-path".to_string(),
            "paths.login" => "login-path".to_string(),
            "paths.login_with_token" => "login-with-token-path".to_string(),
            "paths.refresh" => "refresh-path".to_string(),
            other => other.replace('_', "-"),
        };
        format!("--{flag}")
    }
}

struct FileKeys<'a> {
    file: &'a std::path::Path,
    tenant: &'a str,
}

impl SettingNames for FileKeys<'_> {
    fn name(&self, field: &str) -> String {
        format!("tenants.{}.{field} in {}", self.tenant, self.file.display())
    }
}

fn load_tenants_file(path: &std::path::Path) -> Result<Upstream, ConfigError> {
    let setting = format!("--tenants-file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| invalid(&setting, format!("cannot read it: {e}")))?;
    let file: TenantsFile = toml::from_str(&text).map_err(|e| invalid(&setting, e.message().to_string()))?;
    if file.tenants.is_empty() {
        return Err(invalid(&setting, "defines no [tenants.<name>] table"));
    }
    let mut tenants = Vec::with_capacity(file.tenants.len());
    for (name, raw) in file.tenants {
        if name.is_empty() {
            return Err(invalid(&setting, "a tenant name is empty"));
        }
        tenants.push(resolve_tenant(&name, raw, &FileKeys { file: path, tenant: &name })?);
    }
    let default_tenant = match file.default_tenant {
        Some(name) if tenants.iter().any(|t| t.name == name) => name,
        Some(name) => {
            return Err(invalid(format!("default_tenant in {}", path.display()), format!("names no tenant: `{name}`")));
        }
        None if tenants.len() == 1 => tenants[0].name.clone(),
        None if tenants.iter().any(|t| t.name == DEFAULT_TENANT) => DEFAULT_TENANT.into(),
        None => {
            return Err(invalid(
                format!("default_tenant in {}", path.display()),
                "required when there are several tenants and none is named `default`",
            ));
        }
    };
    Ok(Upstream::Tenants { tenants, default_tenant })
}

fn resolve_tenant(name: &str, raw: RawTenant, names: &dyn SettingNames) -> Result<TenantSettings, ConfigError> {
    let required = |field: &str, value: Option<String>| value.ok_or_else(|| invalid(names.name(field), "is required"));
    let broker_api_url =
        parse_base_url(&names.name("broker_api_url"), &required("broker_api_url", raw.broker_api_url)?)?;
    let platform_url = parse_base_url(&names.name("platform_url"), &required("platform_url", raw.platform_url)?)?;
    let api_key = match (raw.api_key, raw.api_key_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(names.name("api_key"), "give either the key or a key file, not both"));
        }
        (Some(key), None) => key,
        (None, Some(path)) => {
            read_secret_file(&path).map_err(|problem| invalid(names.name("api_key_file"), problem))?
        }
        (None, None) => return Err(invalid(names.name("api_key_file"), "is required (or the API key itself)")),
    };
    if api_key.trim().is_empty() || http::HeaderValue::from_str(&api_key).is_err() {
        return Err(invalid(names.name("api_key"), "is empty or not a valid header value"));
    }
    let defaults = UpstreamPaths::default();
    let path = |field: &str, value: Option<String>, default: String| -> Result<String, ConfigError> {
        let value = value.unwrap_or(default);
        if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
            return Err(invalid(names.name(field), format!("`{value}` must be an absolute path such as /v1/accounts")));
        }
        Ok(value)
    };
    let paths = UpstreamPaths {
        create_account: path("paths.create_account", raw.paths.create_account, defaults.create_account)?,
        one_time_token: path("paths.one_time_token", raw.paths.one_time_token, defaults.one_time_token)?,
        login: path("paths.login", raw.paths.login, defaults.login)?,
        login_with_token: path("paths.login_with_token", raw.paths.login_with_token, defaults.login_with_token)?,
        refresh: path("paths.refresh", raw.paths.refresh, defaults.refresh)?,
    };
    let cookie_domain = match raw.cookie_domain {
        Some(domain) => Some(check_cookie_domain(&names.name("cookie_domain"), &domain, &platform_url)?),
        None => None,
    };
    let broker_id = raw.broker_id.filter(|id| !id.is_empty());
    let session_lifetime =
        positive(&names.name("session_lifetime"), raw.session_lifetime.unwrap_or(Duration::from_secs(15 * 60)))?;
    let one_time_token_max_validity = whole_seconds(
        &names.name("one_time_token_max_validity"),
        raw.one_time_token_max_validity.unwrap_or(Duration::from_secs(60 * 60)),
    )?;
    let one_time_token_validity = whole_seconds(
        &names.name("one_time_token_validity"),
        raw.one_time_token_validity.unwrap_or(Duration::from_secs(60)),
    )?;
    if one_time_token_validity > one_time_token_max_validity {
        return Err(invalid(names.name("one_time_token_validity"), "exceeds the one-time-token maximum validity"));
    }
    Ok(TenantSettings {
        name: name.to_string(),
        broker_api_url,
        api_key: SecretString::from(api_key),
        auth_scheme: raw.auth_scheme.unwrap_or_default(),
        platform_url,
        broker_id,
        cookie_domain,
        paths,
        session_lifetime,
        one_time_token_validity,
        one_time_token_max_validity,
    })
}

fn parse_base_url(setting: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| invalid(setting, format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(setting, format!("`{text}` must be an http(s) URL with a host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(setting, format!("`{text}` must not have a query or fragment")));
    }
    Ok(url)
}

/// The cookie domain must be the platform's host or a parent of it, else the
/// browser would never send the session cookie to the platform.
fn check_cookie_domain(setting: &str, domain: &str, platform_url: &Url) -> Result<String, ConfigError> {
    let domain = domain.trim_start_matches('.').to_ascii_lowercase();
    let host = platform_url.host_str().unwrap_or_default().to_ascii_lowercase();
    let shared = host == domain || host.ends_with(&format!(".{domain}"));
    if domain.is_empty() || !domain.contains('.') && domain != "localhost" || !shared {
        return Err(invalid(setting, format!("`{domain}` is not the platform host `{host}` or a parent domain of it")));
    }
    Ok(domain)
}

fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // Secret mounts and editors add a trailing newline that is not part of the key.
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn positive(setting: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(invalid(setting, "must be greater than zero"));
    }
    Ok(value)
}

fn whole_seconds(setting: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.subsec_nanos() != 0 || value.is_zero() {
        return Err(invalid(setting, "must be a whole, positive number of seconds"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["mtr-sso"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("arguments parse")
    }

    /// A fresh directory for a test's files.
    fn scratch_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mtr-sso-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        dir
    }

    const MINIMAL: &[&str] = &[
        "--broker-api-url",
        "https://broker.example.com",
        "--api-key",
        "k-1",
        "--platform-url",
        "https://trade.broker.example.com",
    ];

    #[test]
    fn flags_make_one_default_tenant_with_the_vendor_defaults() {
        let settings = cli(MINIMAL).into_settings().expect("valid");
        let Upstream::Tenants { tenants, default_tenant } = settings.upstream else { panic!("expected tenants") };
        assert_eq!(default_tenant, "default");
        let tenant = &tenants[0];
        assert_eq!(tenant.paths, UpstreamPaths::default());
        assert_eq!(tenant.auth_scheme, AuthScheme::Raw);
        assert_eq!(tenant.session_lifetime, Duration::from_secs(900));
        assert_eq!(tenant.api_key.expose_secret(), "k-1");
    }

    #[test]
    fn the_sandbox_listens_on_loopback_by_default_and_production_on_all_interfaces() {
        assert_eq!(cli(&["--sandbox"]).into_settings().expect("valid").listen.to_string(), "127.0.0.1:50051");
        assert_eq!(cli(MINIMAL).into_settings().expect("valid").listen.to_string(), "0.0.0.0:50051");
    }

    #[test]
    fn no_upstream_and_no_sandbox_is_refused_with_a_hint() {
        let err = cli(&[]).into_settings().expect_err("must refuse");
        assert!(err.to_string().contains("--sandbox"), "{err}");
    }

    #[test]
    fn sandbox_combined_with_a_real_upstream_is_refused() {
        let err = cli(&["--sandbox", "--platform-url", "https://x.example"]).into_settings().expect_err("refused");
        assert_eq!(err.setting, "--platform-url");
    }

    #[test]
    fn a_relative_path_setting_names_the_flag() {
        let mut args = MINIMAL.to_vec();
        args.extend(["--login-path", "manager/co-login"]);
        let err = cli(&args).into_settings().expect_err("refused");
        assert_eq!(err.setting, "--login-path");
    }

    #[test]
    fn a_cookie_domain_the_platform_does_not_share_is_refused() {
        let mut args = MINIMAL.to_vec();
        args.extend(["--cookie-domain", "other.com"]);
        let err = cli(&args).into_settings().expect_err("refused");
        assert_eq!(err.setting, "--cookie-domain");
        let mut args = MINIMAL.to_vec();
        args.extend(["--cookie-domain", ".broker.example.com"]);
        let settings = cli(&args).into_settings().expect("a parent domain is accepted");
        let Upstream::Tenants { tenants, .. } = settings.upstream else { panic!() };
        assert_eq!(tenants[0].cookie_domain.as_deref(), Some("broker.example.com"));
    }

    #[test]
    fn api_key_file_is_read_without_its_trailing_newline() {
        let dir = scratch_dir();
        let key = dir.join("key");
        std::fs::write(&key, "file-key\n").expect("write");
        let args = [
            "--broker-api-url",
            "https://b.example.com",
            "--api-key-file",
            key.to_str().expect("utf8"),
            "--platform-url",
            "https://p.example.com",
        ];
        let settings = cli(&args).into_settings().expect("valid");
        let Upstream::Tenants { tenants, .. } = settings.upstream else { panic!() };
        assert_eq!(tenants[0].api_key.expose_secret(), "file-key");
    }

    #[test]
    fn tenants_file_with_several_tenants_needs_a_default() {
        let dir = scratch_dir();
        let file = dir.join("tenants.toml");
        let tenant = |name: &str| {
            format!(
                "[tenants.{name}]\nbroker_api_url = \"https://b.{name}.com\"\napi_key = \"k\"\nplatform_url = \"https://p.{name}.com\"\n"
            )
        };
        std::fs::write(&file, format!("{}{}", tenant("acme"), tenant("globex"))).expect("write");
        let path = file.to_str().expect("utf8");
        let err = cli(&["--tenants-file", path]).into_settings().expect_err("needs default");
        assert!(err.setting.starts_with("default_tenant"), "{err}");

        std::fs::write(&file, format!("default_tenant = \"globex\"\n{}{}", tenant("acme"), tenant("globex")))
            .expect("write");
        let settings = cli(&["--tenants-file", path]).into_settings().expect("valid");
        let Upstream::Tenants { tenants, default_tenant } = settings.upstream else { panic!() };
        assert_eq!((tenants.len(), default_tenant.as_str()), (2, "globex"));

        std::fs::write(
            &file,
            "[tenants.acme]\nbroker_api_url = \"nope\"\napi_key = \"k\"\nplatform_url = \"https://p.com\"\n",
        )
        .expect("write");
        let err = cli(&["--tenants-file", path]).into_settings().expect_err("bad url");
        assert!(err.setting.starts_with("tenants.acme.broker_api_url"), "{err}");
    }

    #[test]
    fn caller_authentication_needs_a_policy_and_a_policy_needs_a_way_to_authenticate() {
        let dir = scratch_dir();
        let policy = dir.join("policy.toml");
        std::fs::write(&policy, "[callers.crm]\nrpcs = [\"Login\"]\n").expect("write");
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, format!("crm {}\n", "x".repeat(32))).expect("write");
        let (policy, tokens) = (policy.to_str().expect("utf8"), tokens.to_str().expect("utf8"));
        let with = |extra: &[&str]| {
            let mut args = vec!["--sandbox"];
            args.extend_from_slice(extra);
            cli(&args).into_settings()
        };
        assert_eq!(with(&["--policy-file", policy]).expect_err("no mechanism").setting, "--policy-file");
        assert_eq!(with(&["--caller-tokens-file", tokens]).expect_err("no policy").setting, "--caller-tokens-file");
        assert_eq!(with(&["--tls-cert", tokens]).expect_err("no key").setting, "--tls-key");
        assert_eq!(with(&["--tls-client-ca", tokens]).expect_err("no server cert").setting, "--tls-client-ca");
        let settings = with(&["--policy-file", policy, "--caller-tokens-file", tokens]).expect("valid");
        assert!(settings.callers.is_some_and(|c| c.accepts_tokens()));
        let bad_pem = with(&["--tls-cert", tokens, "--tls-key", tokens]).expect_err("not PEM");
        assert!(bad_pem.setting.starts_with("--tls-cert"), "{bad_pem}");
    }

    #[test]
    fn a_default_validity_above_the_maximum_is_refused() {
        let mut args = MINIMAL.to_vec();
        args.extend(["--one-time-token-validity", "2h"]);
        let err = cli(&args).into_settings().expect_err("refused");
        assert_eq!(err.setting, "--one-time-token-validity");
    }
}
