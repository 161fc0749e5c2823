//! The vendor's endpoint paths. Every one is configuration, because they
//! differ between brokers, platform versions and API generations.

/// The paths a tenant's calls go to, below its base URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPaths {
    pub create_account: String,
    pub one_time_token: String,
    pub login: String,
    pub login_with_token: String,
    pub refresh: String,
}

impl Default for UpstreamPaths {
    /// The paths of the vendor's documentation.
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
