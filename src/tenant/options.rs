//! The one declaration of a tenant's settings. The same struct is a group of
//! command-line flags (with environment fallbacks) and a `[tenants.<name>]`
//! table of the tenants file, so adding a setting is one field here plus its
//! check in `resolve`. A field's clap id is its key in the file (dotted for
//! nested tables), which lets errors name a setting either way.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::{path::PathBuf, time::Duration};

use super::AuthScheme;
use crate::setting_values::{optional_duration, parse_duration};

/// A tenant's settings as given, before defaults and checks.
#[derive(Debug, Clone, Default, PartialEq, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOptions {
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
    #[command(flatten)]
    #[serde(default)]
    pub paths: PathOptions,
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
            "broker_api_url = \"u\"\napi_key = \"k\"\napi_key_file = \"f\"\nauth_scheme = \"raw\"\n\
             platform_url = \"p\"\nbroker_id = \"1\"\ncookie_domain = \"c\"\nsession_lifetime = \"1m\"\n\
             one_time_token_validity = \"1m\"\none_time_token_max_validity = \"1m\"\n\
             [paths]\ncreate_account = \"/a\"\none_time_token = \"/b\"\nlogin = \"/c\"\n\
             login_with_token = \"/d\"\nrefresh = \"/e\"\n",
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
