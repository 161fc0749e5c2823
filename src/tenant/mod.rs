//! A tenant: one broker's Broker-API key and its platform. Its settings are
//! declared once ([`TenantOptions`], read from flags and from the tenants file
//! alike), checked into [`TenantSettings`], and used by every layer above.

mod options;
pub mod paths;
mod resolve;

pub use options::{PathOptions, TenantOptions, TradingAccountOptions};
pub use paths::UpstreamPaths;
pub use resolve::{InvalidTenantSetting, read_api_key_file};

use crate::reloadable::SecretFile;
use clap::ValueEnum;
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

/// Which generation of the vendor's Broker-API a tenant speaks. Each has its
/// own default paths and auth scheme; the Platform-API is the same for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generation {
    /// Broker-API v1 (retired by the vendor at the end of 2026).
    #[default]
    V1,
    /// Broker-API v2: a user account and a trading account in separate calls, Bearer auth.
    V2,
    /// The CRM-API of brokers on the vendor's CRM: v1's wire shape at its own host.
    Crm,
}

impl Generation {
    /// The name used in settings, logs and docs.
    pub fn name(self) -> &'static str {
        match self {
            Generation::V1 => "v1",
            Generation::V2 => "v2",
            Generation::Crm => "crm",
        }
    }

    /// The auth scheme the generation expects unless configured otherwise.
    pub fn default_auth_scheme(self) -> AuthScheme {
        match self {
            Generation::V1 | Generation::Crm => AuthScheme::Raw,
            Generation::V2 => AuthScheme::Bearer,
        }
    }
}

/// Kind of a trading account opened on Broker-API v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingAccountType {
    /// A demo (paper trading) account.
    #[serde(alias = "DEMO")]
    Demo,
    /// A real-money account.
    #[serde(alias = "REAL")]
    Real,
}

impl TradingAccountType {
    /// The vendor's spelling.
    pub fn wire_name(self) -> &'static str {
        match self {
            TradingAccountType::Demo => "DEMO",
            TradingAccountType::Real => "REAL",
        }
    }
}

/// What the owner of a v2 trading account may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum AccessRight {
    /// Trade and log in.
    #[serde(alias = "FULL")]
    Full,
    /// Only close positions.
    #[serde(alias = "CLOSE_ONLY")]
    CloseOnly,
    /// Log in, but not trade.
    #[serde(alias = "TRADING_DISABLED")]
    TradingDisabled,
    /// Neither trade nor log in.
    #[serde(alias = "TRADING_AND_LOGIN_DISABLED")]
    TradingAndLoginDisabled,
    /// Locked to closing positions.
    #[serde(alias = "LOCKED_CLOSE_ONLY")]
    LockedCloseOnly,
}

impl AccessRight {
    /// The vendor's spelling.
    pub fn wire_name(self) -> &'static str {
        match self {
            AccessRight::Full => "FULL",
            AccessRight::CloseOnly => "CLOSE_ONLY",
            AccessRight::TradingDisabled => "TRADING_DISABLED",
            AccessRight::TradingAndLoginDisabled => "TRADING_AND_LOGIN_DISABLED",
            AccessRight::LockedCloseOnly => "LOCKED_CLOSE_ONLY",
        }
    }
}

/// What a v2 tenant puts in a trading account's `accountDetails`. The names
/// are what every known v2 client sends; the rest has a single source, so a
/// tenant opts in once its host is seen to take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum V2AccountDetails {
    /// `firstName` and `lastName` only.
    #[default]
    Names,
    /// The names, and `dateOfBirth`, `phoneNumber` and `addressDetails` when the request has them.
    Full,
}

impl V2AccountDetails {
    /// The name used in settings and docs.
    pub fn name(self) -> &'static str {
        match self {
            V2AccountDetails::Names => "names",
            V2AccountDetails::Full => "full",
        }
    }
}

/// The trading account a v2 tenant opens for each new user unless the
/// request says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradingAccountDefaults {
    pub group: String,
    pub leverage_ratio_percent: u32,
    pub account_type: TradingAccountType,
    pub access_right: Option<AccessRight>,
}

/// One upstream profile, checked: a broker's Broker-API key and its platform.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub name: String,
    pub generation: Generation,
    /// v2 only: the trading account opened for each new user; none when unset.
    pub trading_account: Option<TradingAccountDefaults>,
    /// v2 only: how much of the profile goes into `accountDetails` (`names` elsewhere).
    pub v2_account_details: V2AccountDetails,
    /// Look the email up before every create; a taken one is refused without a create.
    pub lookup_before_create: bool,
    pub broker_api_url: Url,
    /// Read at each vendor call: from a file, it follows the file's changes.
    pub api_key: SecretFile,
    pub auth_scheme: AuthScheme,
    pub platform_url: Url,
    pub broker_id: Option<String>,
    pub cookie_domain: Option<String>,
    pub paths: UpstreamPaths,
    pub session_lifetime: Duration,
    pub one_time_token_validity: Duration,
    pub one_time_token_max_validity: Duration,
}
