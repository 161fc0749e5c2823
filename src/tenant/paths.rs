//! The vendor's endpoint paths. Every one is configuration, because they
//! differ between brokers, platform versions and API generations; each
//! generation brings its own defaults.

use super::Generation;

/// Where a path template takes the user account's UUID.
pub const USER_ACCOUNT_UUID: &str = "{uuid}";
/// Where a path template takes the email.
pub const EMAIL: &str = "{email}";

/// The paths a tenant's calls go to, below its base URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPaths {
    /// v1 and CRM-API: the account; v2: the user account.
    pub create_account: String,
    pub one_time_token: String,
    /// v2 only: opens a trading account; holds [`USER_ACCOUNT_UUID`].
    pub trading_accounts: String,
    /// Looks an account up by email; holds [`EMAIL`].
    pub account_by_email: String,
    /// The Broker-API's cheap authenticated read, for the preflight.
    pub service_info: String,
    pub login: String,
    pub login_with_token: String,
    pub refresh: String,
    /// The platform's public details (its partner id), for the preflight.
    pub platform_details: String,
}

impl UpstreamPaths {
    /// The documented paths of `generation`.
    pub fn for_generation(generation: Generation) -> Self {
        let v1 = Self::default();
        match generation {
            Generation::V1 | Generation::Crm => v1,
            Generation::V2 => Self {
                create_account: "/v1/user-accounts".into(),
                account_by_email: format!("/v1/user-accounts/email/{EMAIL}"),
                ..v1
            },
        }
    }
}

impl Default for UpstreamPaths {
    /// The paths of the vendor's v1 documentation.
    fn default() -> Self {
        Self {
            create_account: "/v1/accounts".into(),
            one_time_token: "/v1/one-time-token".into(),
            trading_accounts: format!("/v1/user-accounts/{USER_ACCOUNT_UUID}/trading-accounts"),
            account_by_email: format!("/v1/accounts/by-email/{EMAIL}"),
            service_info: "/service-info".into(),
            login: "/manager/mtr-login".into(),
            login_with_token: "/manager/login/co/with-token".into(),
            refresh: "/manager/refresh-token".into(),
            platform_details: "/manager/platform-details".into(),
        }
    }
}
