//! Lookup before create, a tenant's `lookup_before_create` setting: the
//! email is looked up first, and a taken one is `ACCOUNT_ALREADY_EXISTS`
//! with nothing created, no link and no session. It exists for older v2
//! builds, which answered a create for a taken email with 200 and a new
//! uuid (the vendor's own advice is to look up first); current builds
//! answer 409 themselves. It costs one read, counted against the quota like
//! any call, and one round trip before every create.

use std::time::Duration;

use super::Tenant;
use crate::{
    deadline::Deadline,
    error::SsoError,
    upstream::{Endpoint, Lookup, UpstreamError, UpstreamFault},
};

/// Share of the time left that the lookup may take, so that the create
/// that follows keeps most of the deadline.
const LOOKUP_SHARE: u32 = 3;

/// The lookup is never cut below this (or below all the time left).
const LOOKUP_FLOOR: Duration = Duration::from_millis(300);

/// `Ok` when the vendor knows no account with `email`, so the create may be
/// sent. A taken email is `ACCOUNT_ALREADY_EXISTS`. A lookup that cannot
/// tell (it failed, or answered with something other than the account) is
/// its own error, nothing is created, and the caller may retry: a create
/// sent without the check is what this setting was turned on to avoid.
pub(super) async fn refuse_a_taken_email(tenant: &Tenant, email: &str, deadline: Deadline) -> Result<(), SsoError> {
    let left = deadline.remaining();
    let share = Deadline::after((left / LOOKUP_SHARE).max(LOOKUP_FLOOR.min(left)));
    let upstream = |error: UpstreamError| SsoError::Upstream { tenant: tenant.settings.name.clone(), error };
    match tenant.broker.find_account(email, share).await {
        Ok(Lookup::NotFound) => Ok(()),
        // A v2 lookup may answer 400 for an address it dislikes: that says
        // nothing about an account, and the create checks the address itself.
        // Only a 400: any other refusal (410, 422, 408, …) cannot tell, and
        // sending the create then is what this setting is there to avoid.
        Err(error) if error.fault == UpstreamFault::RequestRejected && error.status == Some(400) => Ok(()),
        Ok(Lookup::Found(found)) => {
            let account_uuid = found.account.uuid.as_deref().unwrap_or("");
            tracing::info!(%account_uuid, "lookup before create: the email is taken, nothing is created");
            Err(upstream(UpstreamError::new(Endpoint::AccountByEmail, Some(200), UpstreamFault::AccountAlreadyExists)))
        }
        Ok(Lookup::NotTheAccount) => {
            let problem = "the lookup before create answered with something other than the account";
            Err(upstream(UpstreamError::new(Endpoint::AccountByEmail, Some(200), UpstreamFault::Protocol { problem })))
        }
        Err(error) => {
            tracing::warn!(%error, "lookup before create failed: nothing is created");
            Err(upstream(error))
        }
    }
}
