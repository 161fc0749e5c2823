//! The built-in sandbox's own settings on the command line (its address,
//! rate limit, latency and how long it keeps sessions), flattened into
//! [`super::Cli`]; they take effect only with `--sandbox`.

use clap::Args;
use std::{net::SocketAddr, time::Duration};

use super::SandboxOptions;
use crate::setting_values::parse_duration;

/// The `--sandbox-*` flags; the field names keep the prefix, since clap
/// names each flag after its field.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address of the sandbox's HTTP server (the emulated Broker-API and platform).
    #[arg(long, env = "MTR_SSO_SANDBOX_ADDR", default_value = "127.0.0.1:0")]
    pub sandbox_addr: SocketAddr,
    /// Requests per minute the sandbox allows per API key and per platform, like the vendor.
    #[arg(long, env = "MTR_SSO_SANDBOX_RATE_LIMIT", default_value_t = SandboxOptions::default().rate_limit_per_minute)]
    pub sandbox_rate_limit: u32,
    /// Extra latency the sandbox adds to every answer (e.g. `5ms`).
    #[arg(long, env = "MTR_SSO_SANDBOX_LATENCY", value_parser = parse_duration)]
    pub sandbox_latency: Option<Duration>,
    /// How long a sandbox platform session lives [default: 15m, as the vendor documents]; the
    /// sandbox forgets sessions once they expire.
    #[arg(long, env = "MTR_SSO_SANDBOX_SESSION_LIFETIME", value_parser = parse_duration)]
    pub sandbox_session_lifetime: Option<Duration>,
    /// How long an unused sandbox refresh token lives [default: 24h]; the sandbox forgets
    /// refresh tokens once they expire.
    #[arg(long, env = "MTR_SSO_SANDBOX_REFRESH_TOKEN_LIFETIME", value_parser = parse_duration)]
    pub sandbox_refresh_token_lifetime: Option<Duration>,
}

impl SandboxArgs {
    /// The sandbox's options: these flags over the vendor-like defaults.
    pub fn options(&self) -> SandboxOptions {
        let defaults = SandboxOptions::default();
        SandboxOptions {
            addr: self.sandbox_addr,
            rate_limit_per_minute: self.sandbox_rate_limit,
            latency: self.sandbox_latency.unwrap_or_default(),
            session_lifetime: self.sandbox_session_lifetime.unwrap_or(defaults.session_lifetime),
            refresh_token_lifetime: self.sandbox_refresh_token_lifetime.unwrap_or(defaults.refresh_token_lifetime),
            ..defaults
        }
    }
}
