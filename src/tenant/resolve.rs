//! Checks a tenant's options and fills in the defaults. A problem names the
//! setting by its key in the tenants file; `config` turns that into a flag or
//! a file location, whichever the operator wrote.

use secrecy::SecretString;
use std::{fmt, path::Path, time::Duration};
use url::Url;

use super::{
    Generation, PathOptions, TenantOptions, TenantSettings, TradingAccountDefaults, TradingAccountOptions,
    UpstreamPaths,
    paths::{EMAIL, USER_ACCOUNT_UUID},
};
use crate::{
    reloadable::SecretFile,
    setting_values::{parse_base_url, positive, read_secret_file, whole_seconds},
};

/// A tenant setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTenantSetting {
    /// The setting's key in the tenants file, e.g. `paths.login`.
    pub key: &'static str,
    pub problem: String,
}

impl fmt::Display for InvalidTenantSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> InvalidTenantSetting {
    InvalidTenantSetting { key, problem: problem.into() }
}

impl TenantOptions {
    /// The checked settings of the tenant `name`.
    pub fn resolve(self, name: &str) -> Result<TenantSettings, InvalidTenantSetting> {
        let generation = self.broker_api_generation.unwrap_or_default();
        let trading_account = resolve_trading_account(generation, &self.trading_account)?;
        if generation != Generation::V2 && self.paths.trading_accounts.is_some() {
            return Err(not_for(generation, "paths.trading_accounts"));
        }
        if generation != Generation::V2 && self.v2_account_details.is_some() {
            return Err(not_for(generation, "v2_account_details"));
        }
        let url = |key: &'static str, value: Option<String>| -> Result<Url, InvalidTenantSetting> {
            let text = value.ok_or_else(|| invalid(key, "is required"))?;
            parse_base_url(&text).map_err(|problem| invalid(key, problem))
        };
        let broker_api_url = url("broker_api_url", self.broker_api_url)?;
        let platform_url = url("platform_url", self.platform_url)?;
        let api_key = match (self.api_key, self.api_key_file) {
            (Some(_), Some(_)) => return Err(invalid("api_key", "give either the key or a key file, not both")),
            (Some(key), None) => {
                check_api_key(&key).map_err(|problem| invalid("api_key", problem))?;
                SecretFile::from(SecretString::from(key))
            }
            (None, Some(path)) => {
                let key = read_api_key_file(&path).map_err(|problem| invalid("api_key_file", problem))?;
                SecretFile::from_file(key, path)
            }
            (None, None) => return Err(invalid("api_key_file", "is required (or the API key itself)")),
        };
        let cookie_domain = match self.cookie_domain {
            Some(domain) => Some(check_cookie_domain(&domain, &platform_url)?),
            None => None,
        };
        let session_lifetime = positive(self.session_lifetime.unwrap_or(Duration::from_secs(15 * 60)))
            .map_err(|problem| invalid("session_lifetime", problem))?;
        let one_time_token_max_validity =
            whole_seconds(self.one_time_token_max_validity.unwrap_or(Duration::from_secs(60 * 60)))
                .map_err(|problem| invalid("one_time_token_max_validity", problem))?;
        let one_time_token_validity = whole_seconds(self.one_time_token_validity.unwrap_or(Duration::from_secs(60)))
            .map_err(|problem| invalid("one_time_token_validity", problem))?;
        if one_time_token_validity > one_time_token_max_validity {
            return Err(invalid("one_time_token_validity", "exceeds the one-time-token maximum validity"));
        }
        Ok(TenantSettings {
            name: name.to_string(),
            generation,
            trading_account,
            v2_account_details: self.v2_account_details.unwrap_or_default(),
            lookup_before_create: self.lookup_before_create.unwrap_or(false),
            broker_api_url,
            api_key,
            auth_scheme: self.auth_scheme.unwrap_or(generation.default_auth_scheme()),
            platform_url,
            broker_id: self.broker_id.filter(|id| !id.is_empty()),
            cookie_domain,
            paths: resolve_paths(self.paths, generation)?,
            session_lifetime,
            one_time_token_validity,
            one_time_token_max_validity,
        })
    }
}

/// The API key in `path`, checked as at start; read again when the file changes.
pub fn read_api_key_file(path: &Path) -> Result<SecretString, String> {
    let key = read_secret_file(path)?;
    check_api_key(&key)?;
    Ok(SecretString::from(key))
}

fn check_api_key(key: &str) -> Result<(), String> {
    if key.trim().is_empty() || http::HeaderValue::from_str(key).is_err() {
        return Err("is empty or not a valid header value".into());
    }
    Ok(())
}

/// A setting that only Broker-API v2 tenants take.
fn not_for(generation: Generation, key: &'static str) -> InvalidTenantSetting {
    invalid(key, format!("applies only to broker_api_generation v2, and this tenant's is {}", generation.name()))
}

/// The default trading account: all of group, leverage and type, or none;
/// only on v2, the one generation that opens trading accounts itself.
fn resolve_trading_account(
    generation: Generation,
    given: &TradingAccountOptions,
) -> Result<Option<TradingAccountDefaults>, InvalidTenantSetting> {
    let TradingAccountOptions { group, leverage_ratio_percent, account_type, access_right } = given;
    let named: [(&'static str, bool); 4] = [
        ("trading_account.group", group.is_some()),
        ("trading_account.leverage_ratio_percent", leverage_ratio_percent.is_some()),
        ("trading_account.account_type", account_type.is_some()),
        ("trading_account.access_right", access_right.is_some()),
    ];
    let Some((first, _)) = named.iter().find(|(_, set)| *set) else { return Ok(None) };
    if generation != Generation::V2 {
        return Err(not_for(generation, first));
    }
    let group = group.clone().unwrap_or_default();
    if group.trim().is_empty() || group.chars().any(char::is_control) {
        return Err(invalid("trading_account.group", "is required with the other trading_account settings"));
    }
    let leverage_ratio_percent = match leverage_ratio_percent {
        Some(0) => return Err(invalid("trading_account.leverage_ratio_percent", "must be at least 1")),
        Some(value) => *value,
        None => {
            return Err(invalid(
                "trading_account.leverage_ratio_percent",
                "is required with the other trading_account settings",
            ));
        }
    };
    let account_type = account_type.ok_or_else(|| {
        invalid("trading_account.account_type", "is required with the other trading_account settings (demo or real)")
    })?;
    Ok(Some(TradingAccountDefaults { group, leverage_ratio_percent, account_type, access_right: *access_right }))
}

fn resolve_paths(given: PathOptions, generation: Generation) -> Result<UpstreamPaths, InvalidTenantSetting> {
    let defaults = UpstreamPaths::for_generation(generation);
    let path = |key: &'static str, value: Option<String>, default: String| {
        let value = value.unwrap_or(default);
        if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
            return Err(invalid(key, format!("`{value}` must be an absolute path such as /v1/accounts")));
        }
        Ok(value)
    };
    let template = |key: &'static str, value: Option<String>, default: String, hole: &str| {
        let value = path(key, value, default)?;
        if value.matches(hole).count() != 1 {
            return Err(invalid(key, format!("`{value}` must hold `{hole}` once")));
        }
        Ok(value)
    };
    Ok(UpstreamPaths {
        create_account: path("paths.create_account", given.create_account, defaults.create_account)?,
        one_time_token: path("paths.one_time_token", given.one_time_token, defaults.one_time_token)?,
        trading_accounts: template(
            "paths.trading_accounts",
            given.trading_accounts,
            defaults.trading_accounts,
            USER_ACCOUNT_UUID,
        )?,
        account_by_email: template("paths.account_by_email", given.account_by_email, defaults.account_by_email, EMAIL)?,
        service_info: path("paths.service_info", given.service_info, defaults.service_info)?,
        login: path("paths.login", given.login, defaults.login)?,
        login_with_token: path("paths.login_with_token", given.login_with_token, defaults.login_with_token)?,
        refresh: path("paths.refresh", given.refresh, defaults.refresh)?,
        platform_details: path("paths.platform_details", given.platform_details, defaults.platform_details)?,
    })
}

/// The cookie domain must be the platform's host or a parent of it, else the
/// browser would never send the session cookie to the platform.
fn check_cookie_domain(domain: &str, platform_url: &Url) -> Result<String, InvalidTenantSetting> {
    let domain = domain.trim_start_matches('.').to_ascii_lowercase();
    let host = platform_url.host_str().unwrap_or_default().to_ascii_lowercase();
    let shared = host == domain || host.ends_with(&format!(".{domain}"));
    if domain.is_empty() || !domain.contains('.') && domain != "localhost" || !shared {
        return Err(invalid(
            "cookie_domain",
            format!("`{domain}` is not the platform host `{host}` or a parent domain of it"),
        ));
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::V2AccountDetails;

    fn options(generation: Generation, details: Option<V2AccountDetails>) -> TenantOptions {
        TenantOptions {
            broker_api_generation: Some(generation),
            broker_api_url: Some("https://broker.example.com".into()),
            api_key: Some("k".into()),
            platform_url: Some("https://platform.example.com".into()),
            v2_account_details: details,
            ..Default::default()
        }
    }

    #[test]
    fn account_details_default_to_names_and_are_refused_off_v2() {
        let resolved = options(Generation::V2, None).resolve("t").expect("resolves");
        assert_eq!(resolved.v2_account_details, V2AccountDetails::Names);
        let full = options(Generation::V2, Some(V2AccountDetails::Full)).resolve("t").expect("resolves");
        assert_eq!(full.v2_account_details, V2AccountDetails::Full);
        for generation in [Generation::V1, Generation::Crm] {
            let refused = options(generation, Some(V2AccountDetails::Names)).resolve("t").expect_err("v2 only");
            assert_eq!(refused.key, "v2_account_details");
        }
    }

    #[test]
    fn lookup_before_create_is_off_unless_given_and_taken_by_every_generation() {
        for generation in [Generation::V1, Generation::V2, Generation::Crm] {
            assert!(!options(generation, None).resolve("t").expect("resolves").lookup_before_create);
            let on = TenantOptions { lookup_before_create: Some(true), ..options(generation, None) };
            assert!(on.resolve("t").expect("resolves").lookup_before_create, "{generation:?}");
        }
    }

    #[test]
    fn lookup_before_create_is_a_flag_with_an_optional_value() {
        use clap::{Args as _, FromArgMatches as _};
        let parse = |args: &[&str]| {
            let command = TenantOptions::augment_args(clap::Command::new("t").no_binary_name(true));
            let matches = command.try_get_matches_from(args).expect("parses");
            TenantOptions::from_arg_matches(&matches).expect("options").lookup_before_create
        };
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["--lookup-before-create"]), Some(true));
        assert_eq!(parse(&["--lookup-before-create=false"]), Some(false));
    }
}
