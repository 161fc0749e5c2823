//! A create whose answer never came: the vendor may have created the account
//! (timeout, lost connection, 5xx, unreadable answer), and sending it again
//! could create a second one. Instead the email is looked up within the same
//! deadline. But an account found is not yet this request's: the vendor may
//! have refused the create because the email was taken, and that refusal was
//! what got lost. Handing out a link or a session for the account found would
//! sign a stranger into someone else's account. So the account found is the
//! create's answer only with proof that this request created it:
//!
//! 1. The answer is the account: it carries a uuid and names the same email.
//! 2. Its `created` is no earlier than when the create was sent, judged on the
//!    vendor's own clock ([`judge_creation_time`]). Older: the account was
//!    there before, `ACCOUNT_ALREADY_EXISTS`, and nothing else is sent.
//! 3. Where a session was asked for, a Platform-API login with the request's
//!    own password is a second proof, and it opens the session: refused, the
//!    account's password is not this request's, `ACCOUNT_ALREADY_EXISTS`.
//!    Where 2 could not be judged (no `created`, no `Date`), this login is
//!    the only proof; without a session asked for, the outcome stays unknown.
//!
//! Every generation has its lookup (v1 and CRM-API the account, v2 the user
//! account).

use secrecy::SecretString;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

use crate::{
    deadline::Deadline,
    error::{CreationLookup, SsoError},
    upstream::{CreatedAccount, FoundAccount, Lookup, PlatformSession, Tenant, UpstreamError, UpstreamFault},
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
pub(super) const LOOKUP_MINIMUM: Duration = Duration::from_millis(20);

/// How much earlier than the send (on the vendor's clock) `created` may be
/// and still count as this request's: room for a `created` stamped by
/// another of the vendor's hosts than the one that wrote `Date`, or cut to
/// the millisecond. Kept small, as an account created within it before the
/// send would be taken for this request's (see [`judge_creation_time`]).
pub(super) const CLOCK_ALLOWANCE: Duration = Duration::from_millis(250);

/// The create as its proof needs it: who, with which password, since when.
#[derive(Debug)]
pub(super) struct CreateRequest<'a> {
    pub email: &'a str,
    pub password: &'a SecretString,
    pub start_session: bool,
    /// Taken just before the create was handed to the vendor client.
    pub sent_at: Instant,
}

/// The account that a CreateAccount goes on with.
#[derive(Debug)]
pub(super) struct Created {
    pub account: CreatedAccount,
    /// The create's answer was lost and the lookup found the account.
    pub resolved_by_lookup: bool,
    /// The session that the password proof opened: the answer's session,
    /// with no one-time token needed.
    pub session: Option<PlatformSession>,
}

/// What the account's `created` says about who created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreationTime {
    /// At or after the send: this request's create.
    AfterTheSend,
    /// Before the send: the account was there before.
    BeforeTheSend,
    /// Nothing can be judged, for this reason.
    Unknown(CreationLookup),
}

/// The part of `deadline` that the create call may take.
pub(super) fn create_deadline(deadline: Deadline) -> Deadline {
    let left = deadline.remaining();
    let (numerator, denominator) = CREATE_SHARE;
    let share = left * numerator / denominator;
    Deadline::after(share.max(CREATE_MINIMUM.min(left)))
}

/// Judges `created` against the moment the create was sent, on the vendor's
/// clock: `vendor_time` (the lookup answer's `Date`) less `since_sent` (our
/// time from just before the send to the lookup's answer) less
/// [`CLOCK_ALLOWANCE`]. Skew between the two hosts cancels out. `Date` is
/// cut to the second and stamped before the answer left, so this moment is
/// never later than the true send: a genuine create is never judged older.
/// The price: an account created up to about a second (plus the allowance
/// and the answer's travel) before the send would pass; the password proof
/// closes that gap where a session is asked for.
pub(super) fn judge_creation_time(
    created: Option<OffsetDateTime>,
    vendor_time: Option<OffsetDateTime>,
    since_sent: Duration,
) -> CreationTime {
    let Some(created) = created else {
        return CreationTime::Unknown(CreationLookup::NoCreated);
    };
    let Some(vendor_time) = vendor_time else {
        return CreationTime::Unknown(CreationLookup::NoDate);
    };
    // Checked: a date the vendor sends never makes this panic.
    let back = time::Duration::try_from(since_sent.saturating_add(CLOCK_ALLOWANCE)).unwrap_or(time::Duration::MAX);
    let Some(sent_by_vendor_clock) = vendor_time.checked_sub(back) else {
        return CreationTime::Unknown(CreationLookup::NoDate);
    };
    if created >= sent_by_vendor_clock { CreationTime::AfterTheSend } else { CreationTime::BeforeTheSend }
}

/// The create's outcome as CreateAccount goes on with it: the account
/// created, or found by the lookup and proven to be this request's when the
/// create's answer was lost; a definite refusal as it is; an account proven
/// to be someone else's as ACCOUNT_ALREADY_EXISTS; otherwise the outcome
/// stays unknown, with what the lookup came to.
pub(super) async fn created_or_looked_up(
    tenant: &Tenant,
    request: &CreateRequest<'_>,
    attempt: Result<CreatedAccount, UpstreamError>,
    deadline: Deadline,
) -> Result<Created, SsoError> {
    let error = match attempt {
        Ok(account) => return Ok(Created { account, resolved_by_lookup: false, session: None }),
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
    let found = match tenant.broker.find_account(request.email, deadline).await {
        Ok(Lookup::Found(found)) => found,
        Ok(Lookup::NotFound) => return Err(unknown(CreationLookup::NotFound, error)),
        Ok(Lookup::NotTheAccount) => return Err(unknown(CreationLookup::NotTheAccount, error)),
        Err(lookup_error) => {
            tracing::warn!(error = %lookup_error, "the lookup after an account creation of unknown outcome failed");
            return Err(unknown(CreationLookup::Failed, error));
        }
    };
    let FoundAccount { account, vendor_time } = found;
    let by_time = judge_creation_time(account.created, vendor_time, request.sent_at.elapsed());
    let account_uuid = account.uuid.clone().unwrap_or_default();
    if by_time == CreationTime::BeforeTheSend {
        return Err(existed_before(
            tenant,
            error,
            &account_uuid,
            "it was created before this request's create was sent",
        ));
    }
    let session = if request.start_session {
        match password_proof(tenant, request, deadline).await {
            Ok(session) => Some(session),
            Err(login) if login.fault == UpstreamFault::CredentialsRejected => {
                return Err(existed_before(tenant, error, &account_uuid, "its password is not this request's"));
            }
            Err(login) => {
                tracing::warn!(error = %login, %account_uuid, "the password login after a lost create failed");
                None
            }
        }
    } else {
        None
    };
    if let (CreationTime::Unknown(lookup), None) = (by_time, &session) {
        return Err(unknown(lookup, error));
    }
    let proof = match (by_time, session.is_some()) {
        (CreationTime::Unknown(_), _) => "password",
        (_, true) => "creation time and password",
        (_, false) => "creation time",
    };
    tracing::info!(%error, %account_uuid, proof, resolved_by_lookup = true, "account creation outcome resolved by lookup");
    Ok(Created { account, resolved_by_lookup: true, session })
}

/// A Platform-API login with the request's own password: only the holder of
/// the account's password gets through.
async fn password_proof(
    tenant: &Tenant,
    request: &CreateRequest<'_>,
    deadline: Deadline,
) -> Result<PlatformSession, UpstreamError> {
    let Some(broker_id) = tenant.settings.broker_id.as_deref() else {
        let problem = "no broker id to log in with";
        return Err(UpstreamError::new(crate::upstream::Endpoint::Login, None, UpstreamFault::Protocol { problem }));
    };
    tenant.platform.login(request.email, request.password, broker_id, deadline).await
}

/// The account found is not this request's: the create was refused as a
/// duplicate, and the refusal was what got lost.
fn existed_before(tenant: &Tenant, lost: UpstreamError, account_uuid: &str, why: &str) -> SsoError {
    tracing::warn!(error = %lost, %account_uuid, why, "a create of unknown outcome found an account it did not create");
    let error = UpstreamError { fault: UpstreamFault::AccountAlreadyExists, ..lost };
    SsoError::Upstream { tenant: tenant.settings.name.clone(), error }
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

    #[test]
    fn creation_time_is_judged_on_the_vendors_clock_with_a_small_allowance() {
        // The vendor's clock is a day off ours: only its own readings are compared.
        let vendor_now = OffsetDateTime::now_utc() - time::Duration::days(1);
        let since_sent = Duration::from_millis(1200);
        let sent = vendor_now - since_sent;
        let judge = |created: OffsetDateTime| judge_creation_time(Some(created), Some(vendor_now), since_sent);
        assert_eq!(judge(sent + Duration::from_millis(5)), CreationTime::AfterTheSend);
        assert_eq!(judge(sent - CLOCK_ALLOWANCE + Duration::from_millis(1)), CreationTime::AfterTheSend);
        assert_eq!(judge(sent - CLOCK_ALLOWANCE - Duration::from_millis(1)), CreationTime::BeforeTheSend);
        assert_eq!(judge(sent - Duration::from_secs(2)), CreationTime::BeforeTheSend);
        assert_eq!(
            judge_creation_time(None, Some(vendor_now), since_sent),
            CreationTime::Unknown(CreationLookup::NoCreated)
        );
        assert_eq!(judge_creation_time(Some(sent), None, since_sent), CreationTime::Unknown(CreationLookup::NoDate));
        let dawn = OffsetDateTime::UNIX_EPOCH.replace_year(-9999).expect("the earliest year");
        let judged = judge_creation_time(Some(sent), Some(dawn), Duration::MAX);
        assert_eq!(
            judged,
            CreationTime::Unknown(CreationLookup::NoDate),
            "an absurd date proves nothing, and panics nowhere"
        );
    }
}
