//! The per-caller and per-email limits of the sign-in calls (IssueOneTimeToken
//! and Login), against token-minting and credential-stuffing bursts, and the
//! per-email limit of CreateAccount, so that a signup form cannot be used to
//! hammer one address. A call over a limit is refused at once, before it
//! costs the vendor anything: these limits stop bursts, so a call over them
//! never waits. They count with the same sliding log as the vendor's quota
//! ([`crate::quota`]): no more than the limit in any minute, and `RetryInfo`
//! says exactly when the next call fits.

use super::SsoGateway;
use crate::{
    error::{SsoError, ThrottleScope},
    quota,
};

/// Which per-email limit a call counts against. Each has the same size
/// (`--email-limit-per-minute`) but its own log, so that creates hammered
/// for an address never lock its owner out of signing in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EmailLimit {
    SignIn,
    Create,
}

impl SsoGateway {
    /// Takes one call from the caller's and the email's limits. Unauthenticated
    /// deployments have no caller identity to limit, so only the email limit
    /// applies there.
    pub(super) async fn throttle(&self, caller: Option<&str>, tenant: &str, email: &str) -> Result<(), SsoError> {
        if let Some(caller) = caller
            && self.limits.caller_per_minute > 0
        {
            self.windows
                .take(&format!("caller:{caller}"), self.limits.caller_per_minute)
                .await
                .map_err(|retry_after| SsoError::Throttled { scope: ThrottleScope::Caller, retry_after })?;
        }
        self.throttle_email(tenant, email, EmailLimit::SignIn).await
    }

    /// Takes one call from the email's `limit`; shared by replicas like the
    /// others (the key is a digest: no email reaches Redis).
    pub(super) async fn throttle_email(&self, tenant: &str, email: &str, limit: EmailLimit) -> Result<(), SsoError> {
        if self.limits.email_per_minute == 0 {
            return Ok(());
        }
        let key = match limit {
            EmailLimit::SignIn => quota::email_key(tenant, email),
            EmailLimit::Create => format!("create-{}", quota::email_key(tenant, email)),
        };
        self.windows
            .take(&key, self.limits.email_per_minute)
            .await
            .map(|_| ())
            .map_err(|retry_after| SsoError::Throttled { scope: ThrottleScope::Email, retry_after })
    }
}
