//! Checks a tenant's options and fills in the defaults. A problem names the
//! setting by its key in the tenants file; `config` turns that into a flag or
//! a file location, whichever the operator wrote.

use secrecy::SecretString;
use std::{fmt, time::Duration};
use url::Url;

use super::{TenantOptions, TenantSettings, UpstreamPaths};
use crate::setting_values::{parse_base_url, positive, read_secret_file, whole_seconds};

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
        let url = |key: &'static str, value: Option<String>| -> Result<Url, InvalidTenantSetting> {
            let text = value.ok_or_else(|| invalid(key, "is required"))?;
            parse_base_url(&text).map_err(|problem| invalid(key, problem))
        };
        let broker_api_url = url("broker_api_url", self.broker_api_url)?;
        let platform_url = url("platform_url", self.platform_url)?;
        let api_key = match (self.api_key, self.api_key_file) {
            (Some(_), Some(_)) => return Err(invalid("api_key", "give either the key or a key file, not both")),
            (Some(key), None) => key,
            (None, Some(path)) => read_secret_file(&path).map_err(|problem| invalid("api_key_file", problem))?,
            (None, None) => return Err(invalid("api_key_file", "is required (or the API key itself)")),
        };
        if api_key.trim().is_empty() || http::HeaderValue::from_str(&api_key).is_err() {
            return Err(invalid("api_key", "is empty or not a valid header value"));
        }
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
            broker_api_url,
            api_key: SecretString::from(api_key),
            auth_scheme: self.auth_scheme.unwrap_or_default(),
            platform_url,
            broker_id: self.broker_id.filter(|id| !id.is_empty()),
            cookie_domain,
            paths: resolve_paths(self.paths)?,
            session_lifetime,
            one_time_token_validity,
            one_time_token_max_validity,
        })
    }
}

fn resolve_paths(given: super::PathOptions) -> Result<UpstreamPaths, InvalidTenantSetting> {
    let defaults = UpstreamPaths::default();
    let path = |key: &'static str, value: Option<String>, default: String| {
        let value = value.unwrap_or(default);
        if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
            return Err(invalid(key, format!("`{value}` must be an absolute path such as /v1/accounts")));
        }
        Ok(value)
    };
    Ok(UpstreamPaths {
        create_account: path("paths.create_account", given.create_account, defaults.create_account)?,
        one_time_token: path("paths.one_time_token", given.one_time_token, defaults.one_time_token)?,
        login: path("paths.login", given.login, defaults.login)?,
        login_with_token: path("paths.login_with_token", given.login_with_token, defaults.login_with_token)?,
        refresh: path("paths.refresh", given.refresh, defaults.refresh)?,
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
