//! The one declaration of a tenant's settings. The same struct is a group of
//! command-line flags (with environment fallbacks) and a `[tenants.<name>]`
//! table of the tenants file, so adding a setting is one field here plus its
//! check in `resolve`. A field's clap id is its key in the file (dotted for
//! nested tables), which lets errors name a setting either way.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::{path::PathBuf, time::Duration};

use super::{AccessRight, AuthScheme, Generation, TradingAccountType, V2AccountDetails};
use crate::setting_values::{optional_duration, parse_duration};

/// A tenant's settings as given, before defaults and checks.
#[derive(Debug, Clone, Default, PartialEq, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOptions {
    /// Generation of the broker's Broker-API: v1, v2 or crm (the CRM-API). It picks the
    /// default paths and auth scheme [default: v1].
    #[arg(long, env = "MTR_SSO_BROKER_API_GENERATION", value_enum)]
    pub broker_api_generation: Option<Generation>,
    /// Base URL of the Broker-API.
    #[arg(long, env = "MTR_SSO_BROKER_API_URL")]
    pub broker_api_url: Option<String>,
    /// The Broker-API key. Prefer --api-key-file.
    #[arg(long, env = "MTR_SSO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A file holding the Broker-API key (e.g. a mounted Kubernetes Secret).
    #[arg(long, env = "MTR_SSO_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// How the API key is sent in the Authorization header [default: raw; bearer on v2].
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
    #[command(flatten)]
    #[serde(default)]
    pub paths: PathOptions,
    #[command(flatten)]
    #[serde(default)]
    pub trading_account: TradingAccountOptions,
    /// v2: what a trading account's `accountDetails` carries: `names` (first and last name) or
    /// `full` (also date of birth, phone and address, when the request has them) [default: names].
    #[arg(long, env = "MTR_SSO_V2_ACCOUNT_DETAILS", value_enum)]
    pub v2_account_details: Option<V2AccountDetails>,
    /// Look the email up before every CreateAccount, and answer ACCOUNT_ALREADY_EXISTS for a taken
    /// one without a create: for older v2 builds that create a second user for a taken email.
    /// Costs one lookup and one round trip per create [default: false].
    #[arg(long, env = "MTR_SSO_LOOKUP_BEFORE_CREATE", num_args = 0..=1, default_missing_value = "true")]
    pub lookup_before_create: Option<bool>,
    /// Session lifetime assumed when the platform's cookie does not state one.
    #[arg(long, env = "MTR_SSO_SESSION_LIFETIME", value_parser = parse_duration)]
    #[serde(default, with = "optional_duration")]
    pub session_lifetime: Option<Duration>,
    /// Validity of a one-time token when the request gives none.
    #[arg(long, env = "MTR_SSO_ONE_TIME_TOKEN_VALIDITY", value_parser = parse_duration)]
    #[serde(default, with = "optional_duration")]
    pub one_time_token_validity: Option<Duration>,
    /// Longest validity a request may ask for a one-time token.
    #[arg(long, env = "MTR_SSO_ONE_TIME_TOKEN_MAX_VALIDITY", value_parser = parse_duration)]
    #[serde(default, with = "optional_duration")]
    pub one_time_token_max_validity: Option<Duration>,
}

/// The endpoint paths, a `[tenants.<name>.paths]` table in the file.
#[derive(Debug, Clone, Default, PartialEq, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathOptions {
    /// Path of the Broker-API create-account endpoint.
    #[arg(id = "paths.create_account", long = "create-account-path", env = "MTR_SSO_CREATE_ACCOUNT_PATH")]
    pub create_account: Option<String>,
    /// Path of the Broker-API one-time-token endpoint.
    #[arg(id = "paths.one_time_token", long = "one-time-token-path", env = "MTR_SSO_ONE_TIME_TOKEN_PATH")]
    pub one_time_token: Option<String>,
    /// Path of the v2 endpoint that opens a trading account; `{uuid}` stands for the user account.
    #[arg(id = "paths.trading_accounts", long = "trading-accounts-path", env = "MTR_SSO_TRADING_ACCOUNTS_PATH")]
    pub trading_accounts: Option<String>,
    /// Path of the Broker-API lookup by email; `{email}` stands for the email.
    #[arg(id = "paths.account_by_email", long = "account-by-email-path", env = "MTR_SSO_ACCOUNT_BY_EMAIL_PATH")]
    pub account_by_email: Option<String>,
    /// Path of the Broker-API service information (read by --check-upstream).
    #[arg(id = "paths.service_info", long = "service-info-path", env = "MTR_SSO_SERVICE_INFO_PATH")]
    pub service_info: Option<String>,
    /// Path of the platform's details (read by --check-upstream).
    #[arg(id = "paths.platform_details", long = "platform-details-path", env = "MTR_SSO_PLATFORM_DETAILS_PATH")]
    pub platform_details: Option<String>,
    /// Path of the platform's password login endpoint.
    #[arg(id = "paths.login", long = "login-path", env = "MTR_SSO_LOGIN_PATH")]
    pub login: Option<String>,
    /// Path of the platform's one-time-token login endpoint.
    #[arg(id = "paths.login_with_token", long = "login-with-token-path", env = "MTR_SSO_LOGIN_WITH_TOKEN_PATH")]
    pub login_with_token: Option<String>,
    /// Path of the platform's refresh endpoint.
    #[arg(id = "paths.refresh", long = "refresh-path", env = "MTR_SSO_REFRESH_PATH")]
    pub refresh: Option<String>,
}

/// The trading account a v2 tenant opens for every new user, a
/// `[tenants.<name>.trading_account]` table in the file. Group, leverage and
/// type go together; the access right is optional.
#[derive(Debug, Clone, Default, PartialEq, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TradingAccountOptions {
    /// v2: group of the trading account opened for each new user.
    #[arg(id = "trading_account.group", long = "trading-account-group", env = "MTR_SSO_TRADING_ACCOUNT_GROUP")]
    pub group: Option<String>,
    /// v2: leverage of that trading account, in percent (e.g. 10000 for 1:100).
    #[arg(
        id = "trading_account.leverage_ratio_percent",
        long = "trading-account-leverage-ratio-percent",
        env = "MTR_SSO_TRADING_ACCOUNT_LEVERAGE_RATIO_PERCENT"
    )]
    pub leverage_ratio_percent: Option<u32>,
    /// v2: kind of that trading account.
    #[arg(
        id = "trading_account.account_type",
        long = "trading-account-type",
        env = "MTR_SSO_TRADING_ACCOUNT_TYPE",
        value_enum
    )]
    pub account_type: Option<TradingAccountType>,
    /// v2: access right of that trading account [default: the vendor's].
    #[arg(
        id = "trading_account.access_right",
        long = "trading-account-access-right",
        env = "MTR_SSO_TRADING_ACCOUNT_ACCESS_RIGHT",
        value_enum
    )]
    pub access_right: Option<AccessRight>,
}

/// The tenant flags as clap declares them (without the help flag, which
/// clap adds only when a whole command is built).
fn flags() -> clap::Command {
    TenantOptions::augment_args(clap::Command::new("tenant"))
}

impl TenantOptions {
    /// The flag that sets `key` (a key of the tenants file, e.g. `paths.login`).
    pub fn flag_for(key: &str) -> String {
        flags()
            .get_arguments()
            .find(|arg| arg.get_id().as_str() == key)
            .and_then(|arg| arg.get_long())
            .map_or_else(|| key.to_string(), |long| format!("--{long}"))
    }

    /// The keys of the settings given, in declaration order (dotted for
    /// nested tables). Read through serde, so no list of fields is kept by hand.
    pub fn given_keys(&self) -> Vec<String> {
        fn collect(prefix: &str, value: &serde_json::Value, keys: &mut Vec<String>) {
            let serde_json::Value::Object(map) = value else { return };
            for (name, value) in map {
                let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                match value {
                    serde_json::Value::Null => {}
                    serde_json::Value::Object(_) => collect(&key, value, keys),
                    _ => keys.push(key),
                }
            }
        }
        let mut keys = Vec::new();
        // Serializing plain strings, paths and durations cannot fail.
        if let Ok(value) = serde_json::to_value(self) {
            collect("", &value, &mut keys);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_names_its_flag() {
        assert_eq!(TenantOptions::flag_for("broker_api_url"), "--broker-api-url");
        assert_eq!(TenantOptions::flag_for("paths.login"), "--login-path");
        assert_eq!(TenantOptions::flag_for("one_time_token_validity"), "--one-time-token-validity");
        assert_eq!(TenantOptions::flag_for("trading_account.group"), "--trading-account-group");
        assert_eq!(TenantOptions::flag_for("broker_api_generation"), "--broker-api-generation");
        assert_eq!(TenantOptions::flag_for("v2_account_details"), "--v2-account-details");
        assert_eq!(TenantOptions::flag_for("lookup_before_create"), "--lookup-before-create");
    }

    #[test]
    fn given_keys_lists_what_is_set_with_nested_keys_dotted() {
        let options = TenantOptions {
            api_key: Some("k".into()),
            paths: PathOptions { refresh: Some("/r".into()), ..Default::default() },
            session_lifetime: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let keys = options.given_keys();
        assert_eq!(keys.len(), 3, "{keys:?}");
        for key in ["api_key", "paths.refresh", "session_lifetime"] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        assert!(TenantOptions::default().given_keys().is_empty());
    }

    #[test]
    fn every_flag_is_a_key_of_the_file() {
        // A flag whose id is not a file key would be named wrongly in errors.
        let full: TenantOptions = toml::from_str(
            "broker_api_generation = \"v2\"\nbroker_api_url = \"u\"\napi_key = \"k\"\napi_key_file = \"f\"\nauth_scheme = \"raw\"\n\
             platform_url = \"p\"\nbroker_id = \"1\"\ncookie_domain = \"c\"\nsession_lifetime = \"1m\"\n\
             one_time_token_validity = \"1m\"\none_time_token_max_validity = \"1m\"\n\
             v2_account_details = \"full\"\nlookup_before_create = true\n\
             [paths]\ncreate_account = \"/a\"\none_time_token = \"/b\"\nlogin = \"/c\"\n\
             login_with_token = \"/d\"\nrefresh = \"/e\"\ntrading_accounts = \"/f\"\n\
             account_by_email = \"/g\"\nservice_info = \"/h\"\nplatform_details = \"/i\"\n\
             [trading_account]\ngroup = \"g\"\nleverage_ratio_percent = 100\naccount_type = \"demo\"\n\
             access_right = \"close_only\"\n",
        )
        .expect("every key parses");
        let keys = full.given_keys();
        let command = flags();
        let ids: Vec<&str> = command.get_arguments().map(|arg| arg.get_id().as_str()).collect();
        for id in &ids {
            assert!(keys.iter().any(|k| k == id), "flag id {id} is no file key");
        }
        assert_eq!(keys.len(), ids.len(), "{keys:?} vs {ids:?}");
    }
}
