//! The per-caller and per-email limits of the sign-in calls (IssueOneTimeToken
//! and Login), against token-minting and credential-stuffing bursts. A call
//! over a limit is refused before it costs the vendor anything.

use super::SsoGateway;
use crate::{
    error::{SsoError, ThrottleScope},
    quota,
};

impl SsoGateway {
    /// Takes one call from the caller's and the email's limits. Unauthenticated
    /// deployments have no caller identity to limit, so only the email limit
    /// applies there.
    pub(super) async fn throttle(&self, caller: Option<&str>, tenant: &str, email: &str) -> Result<(), SsoError> {
        if let Some(caller) = caller
            && self.limits.caller_per_minute > 0
        {
            self.buckets
                .take(&format!("caller:{caller}"), self.limits.caller_per_minute)
                .await
                .map_err(|retry_after| SsoError::Throttled { scope: ThrottleScope::Caller, retry_after })?;
        }
        if self.limits.email_per_minute == 0 {
            return Ok(());
        }
        self.buckets
            .take(&quota::email_key(tenant, email), self.limits.email_per_minute)
            .await
            .map(|_| ())
            .map_err(|retry_after| SsoError::Throttled { scope: ThrottleScope::Email, retry_after })
    }
}
