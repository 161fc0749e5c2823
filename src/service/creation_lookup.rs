//! A create whose answer never came: the vendor may have created the account
//! (timeout, lost connection, 5xx, unreadable answer), and sending it again
//! could create a second one. Instead the email is looked up within the same
//! deadline; an account found is the create's answer, anything else leaves
//! the outcome unknown, with what the lookup came to. Every generation has
//! its lookup (v1 and CRM-API the account, v2 the user account).

use std::time::Duration;

use super::Tenant;
use crate::{
    deadline::Deadline,
    error::{CreationLookup, SsoError},
    upstream::{CreatedAccount, UpstreamError},
};

/// The create call may use at most 2/3 of the time left, so that a vendor
/// that hangs after creating still leaves a third for the lookup: a lookup is
/// one indexed read, where a create writes the account (and on some builds
/// its trading account) and is the slower call by far.
const CREATE_SHARE: (u32, u32) = (2, 3);

/// The create is never cut below this (or below all the time left, when
/// less is left): cutting a create short turns an account the vendor would
/// have answered for into an unknown outcome, which costs the caller more
/// than a lookup that has no time left.
const CREATE_MINIMUM: Duration = Duration::from_millis(500);

/// A lookup with less time than this left is not sent: it could not answer.
const LOOKUP_MINIMUM: Duration = Duration::from_millis(20);

/// The account that a CreateAccount goes on with.
#[derive(Debug)]
pub(super) struct Created {
    pub account: CreatedAccount,
    /// The create's answer was lost and the lookup found the account.
    pub resolved_by_lookup: bool,
}

/// The part of `deadline` that the create call may take.
pub(super) fn create_deadline(deadline: Deadline) -> Deadline {
    let left = deadline.remaining();
    let (numerator, denominator) = CREATE_SHARE;
    let share = left * numerator / denominator;
    Deadline::after(share.max(CREATE_MINIMUM.min(left)))
}

/// The create's outcome as CreateAccount goes on with it: the account
/// created, or found by the lookup when the create's answer was lost; a
/// definite refusal as it is; otherwise the outcome stays unknown.
pub(super) async fn created_or_looked_up(
    tenant: &Tenant,
    email: &str,
    attempt: Result<CreatedAccount, UpstreamError>,
    deadline: Deadline,
) -> Result<Created, SsoError> {
    let error = match attempt {
        Ok(account) => return Ok(Created { account, resolved_by_lookup: false }),
        Err(error) if !error.may_have_been_processed() => {
            return Err(SsoError::Upstream { tenant: tenant.settings.name.clone(), error });
        }
        Err(error) => error,
    };
    let unknown = |lookup: CreationLookup, error: UpstreamError| {
        tracing::warn!(%error, lookup = lookup.name(), "account creation outcome unknown, and the lookup did not resolve it");
        SsoError::AccountCreationOutcomeUnknown { tenant: tenant.settings.name.clone(), error, lookup }
    };
    if deadline.remaining() < LOOKUP_MINIMUM {
        return Err(unknown(CreationLookup::NoTime, error));
    }
    match tenant.broker.find_account(email, deadline).await {
        Ok(Some(account)) => {
            let account_uuid = account.uuid.as_deref().unwrap_or("");
            tracing::info!(%error, %account_uuid, resolved_by_lookup = true, "account creation outcome resolved by lookup");
            Ok(Created { account, resolved_by_lookup: true })
        }
        Ok(None) => Err(unknown(CreationLookup::NotFound, error)),
        Err(lookup_error) => {
            tracing::warn!(error = %lookup_error, "the lookup after an account creation of unknown outcome failed");
            Err(unknown(CreationLookup::Failed, error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget_of(left: Duration) -> Duration {
        let deadline = Deadline::after(left);
        create_deadline(deadline).remaining()
    }

    #[test]
    fn the_create_gets_two_thirds_but_never_less_than_its_minimum_nor_more_than_is_left() {
        let close = |actual: Duration, expected: Duration| actual.abs_diff(expected) < Duration::from_millis(20);
        assert!(close(budget_of(Duration::from_secs(3)), Duration::from_secs(2)));
        assert!(close(budget_of(Duration::from_millis(600)), CREATE_MINIMUM));
        assert!(close(budget_of(Duration::from_millis(300)), Duration::from_millis(300)));
    }
}
