//! A tenant: one broker's Broker-API key and its platform. Its settings are
//! declared once ([`TenantOptions`], read from flags and from the tenants file
//! alike), checked into [`TenantSettings`], and used by every layer above.

mod options;
mod paths;
mod resolve;

pub use options::{PathOptions, TenantOptions};
pub use paths::UpstreamPaths;
pub use resolve::InvalidTenantSetting;

use clap::ValueEnum;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use url::Url;

/// Name of the tenant that flags configure, and that an empty `tenant` selects
/// when a tenants file does not name another default.
pub const DEFAULT_TENANT: &str = "default";

/// How the Broker-API key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `Authorization: <key>`, as the vendor documents.
    #[default]
    Raw,
    /// `Authorization: Bearer <key>`.
    Bearer,
}

/// One upstream profile, checked: a broker's Broker-API key and its platform.
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
