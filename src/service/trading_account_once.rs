//! A v2 trading account opened at most once. The open is sent once and never
//! repeated: when its answer is lost (timeout, a connection lost after the
//! send, a 5xx, an unreadable answer) the vendor may have opened it, and a
//! second open would give the user two. Instead the user's trading accounts
//! are listed (a read, within the same share of the deadline), and the one
//! that proves to be this request's is the answer:
//!
//! - it is in the group this request asked for, and
//! - its `created` is no earlier than when the open was sent, judged on the
//!   vendor's clock exactly as a lost user-account create is
//!   ([`judge_creation_time`]).
//!
//! Exactly one such account settles it. None (the open may still be running
//! at the vendor), several, or one whose age cannot be judged leave the
//! outcome unknown: reported as `trading_account_error` with reason
//! [`OUTCOME_UNKNOWN_REASON`], and nothing more is sent.

use std::time::{Duration, Instant};
use time::OffsetDateTime;

use super::{
    Tenant,
    creation_lookup::{CreationTime, LOOKUP_MINIMUM, judge_creation_time},
};
use crate::{
    deadline::Deadline,
    error::CreationLookup,
    proto,
    upstream::{Endpoint, ListedTradingAccount, NewTradingAccount, OpenedTradingAccount, UpstreamError, UpstreamFault},
};

/// The `trading_account_error` reason of an open whose outcome stays unknown.
pub const OUTCOME_UNKNOWN_REASON: &str = "TRADING_ACCOUNT_OUTCOME_UNKNOWN";

/// The part of its share that the open may take; the rest is the list's.
const OPEN_SHARE: (u32, u32) = (2, 3);

/// How opening the trading account ended.
#[derive(Debug)]
pub(super) enum TradingAccountOutcome {
    /// Opened: answered by the vendor, or found by the list and proven this request's.
    Opened { account: OpenedTradingAccount, resolved_by_lookup: bool },
    /// Not opened, or opened but unusable: the vendor said so.
    Failed(UpstreamError),
    /// The answer was lost and the list did not settle it.
    Unknown { lost: UpstreamError, why: &'static str },
}

impl TradingAccountOutcome {
    /// The `trading_account_error` of an outcome that is not an opened account.
    pub(super) fn error(&self) -> Option<proto::TradingAccountError> {
        match self {
            TradingAccountOutcome::Opened { .. } => None,
            TradingAccountOutcome::Failed(error) => Some(super::replies::trading_account_error(error)),
            TradingAccountOutcome::Unknown { lost, why } => Some(proto::TradingAccountError {
                reason: OUTCOME_UNKNOWN_REASON.into(),
                message: format!(
                    "the trading account may have been opened ({lost}), and listing the user's trading accounts \
                     did not settle it: {why}; none was opened again"
                ),
            }),
        }
    }
}

/// What the list says about this request's open.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Listed<'a> {
    /// Exactly one account in the group, created after the send.
    Found(&'a ListedTradingAccount),
    /// No account in the group was created after the send.
    NoneAfterTheSend,
    /// More than one was: which one is this request's cannot be told.
    Several,
    /// An account in the group whose age cannot be judged, for this reason.
    CannotJudge(CreationLookup),
}

/// Opens `account` for `user_account_uuid` once, within `deadline`; a lost
/// answer is settled by the list (see the module's header).
pub(super) async fn open_trading_account_once(
    tenant: &Tenant,
    user_account_uuid: &str,
    account: &NewTradingAccount,
    deadline: Deadline,
) -> TradingAccountOutcome {
    let sent_at = Instant::now();
    // The open may take two thirds of the share, and leaves a third for the
    // list: no floor as for the user-account create, since this share is a
    // part of the deadline already and an open cut short is settled by the list.
    let open_deadline = Deadline::after(deadline.remaining() * OPEN_SHARE.0 / OPEN_SHARE.1);
    let attempt = tenant.broker.open_trading_account(user_account_uuid, account, open_deadline).await;
    let lost = match attempt {
        Ok(account) => return TradingAccountOutcome::Opened { account, resolved_by_lookup: false },
        Err(error) if !error.may_have_been_processed() => return TradingAccountOutcome::Failed(error),
        Err(error) => error,
    };
    if deadline.remaining() < LOOKUP_MINIMUM {
        return TradingAccountOutcome::Unknown { lost, why: "no time was left to list them" };
    }
    let list = match tenant.broker.trading_account_list(user_account_uuid, deadline).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%error, %user_account_uuid, "listing trading accounts after a lost open failed");
            return TradingAccountOutcome::Unknown { lost, why: "the list failed" };
        }
    };
    let settled = this_requests(&list.accounts, &account.group, list.vendor_time, sent_at.elapsed());
    let found = match settled {
        Listed::Found(found) => found,
        Listed::NoneAfterTheSend => {
            return TradingAccountOutcome::Unknown { lost, why: "no account in the group was created after the send" };
        }
        Listed::Several => {
            return TradingAccountOutcome::Unknown { lost, why: "several accounts in the group were created after it" };
        }
        Listed::CannotJudge(CreationLookup::NoDate) => {
            return TradingAccountOutcome::Unknown { lost, why: "the list had no Date to judge creation times by" };
        }
        Listed::CannotJudge(_) => {
            return TradingAccountOutcome::Unknown { lost, why: "an account in the group has no creation time" };
        }
    };
    tracing::info!(%lost, %user_account_uuid, uuid = ?found.uuid, "a lost trading-account open was settled by the list");
    if found.missing_in_trading_system == Some(true) {
        let fault = UpstreamFault::TradingAccountNotInTradingSystem;
        return TradingAccountOutcome::Failed(UpstreamError::new(Endpoint::TradingAccountsOfUser, None, fault));
    }
    let account =
        OpenedTradingAccount { uuid: found.uuid.clone(), login: found.login.clone(), group: found.group.clone() };
    TradingAccountOutcome::Opened { account, resolved_by_lookup: true }
}

/// The one account of `listed` in `group` created at or after the send
/// (`since_sent` before the list's answer, on the vendor's clock
/// `vendor_time`). Accounts of other groups are not looked at.
pub(super) fn this_requests<'a>(
    listed: &'a [ListedTradingAccount],
    group: &str,
    vendor_time: Option<OffsetDateTime>,
    since_sent: Duration,
) -> Listed<'a> {
    let mut after = Vec::new();
    for account in listed.iter().filter(|account| account.group.as_deref() == Some(group)) {
        match judge_creation_time(account.created, vendor_time, since_sent) {
            CreationTime::AfterTheSend => after.push(account),
            CreationTime::BeforeTheSend => {}
            CreationTime::Unknown(why) => return Listed::CannotJudge(why),
        }
    }
    match after.as_slice() {
        [] => Listed::NoneAfterTheSend,
        [one] => Listed::Found(one),
        _ => Listed::Several,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(uuid: &str, group: &str, created: Option<OffsetDateTime>) -> ListedTradingAccount {
        ListedTradingAccount { uuid: Some(uuid.into()), group: Some(group.into()), created, ..Default::default() }
    }

    #[test]
    fn only_the_one_account_of_the_group_created_after_the_send_is_taken() {
        // The vendor's clock is an hour off ours: only its own readings are compared.
        let vendor_now = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let since_sent = Duration::from_millis(800);
        let sent = vendor_now - since_sent;
        let new = account("new", "retail", Some(sent + Duration::from_millis(10)));
        let older = account("older", "retail", Some(sent - Duration::from_secs(5)));
        let other_group = account("other", "pro", Some(sent + Duration::from_millis(20)));
        let judge =
            |listed: &[ListedTradingAccount]| this_requests(listed, "retail", Some(vendor_now), since_sent).map_uuid();
        assert_eq!(judge(&[older.clone(), new.clone(), other_group.clone()]), Some("new".into()));
        assert_eq!(
            this_requests(&[older.clone(), other_group.clone()], "retail", Some(vendor_now), since_sent),
            Listed::NoneAfterTheSend
        );
        let twin = account("twin", "retail", Some(sent + Duration::from_millis(30)));
        assert_eq!(this_requests(&[new.clone(), twin], "retail", Some(vendor_now), since_sent), Listed::Several);
        assert_eq!(
            this_requests(std::slice::from_ref(&new), "retail", None, since_sent),
            Listed::CannotJudge(CreationLookup::NoDate)
        );
        let undated = account("undated", "retail", None);
        assert_eq!(
            this_requests(&[new, undated], "retail", Some(vendor_now), since_sent),
            Listed::CannotJudge(CreationLookup::NoCreated)
        );
        let ungrouped = ListedTradingAccount { group: None, ..account("x", "", Some(sent)) };
        assert_eq!(this_requests(&[ungrouped], "retail", Some(vendor_now), since_sent), Listed::NoneAfterTheSend);
    }

    impl Listed<'_> {
        fn map_uuid(&self) -> Option<String> {
            match self {
                Listed::Found(found) => found.uuid.clone(),
                _ => None,
            }
        }
    }

    #[test]
    fn an_unknown_outcome_has_its_own_reason_and_says_nothing_was_opened_again() {
        let lost = UpstreamError::new(Endpoint::OpenTradingAccount, None, UpstreamFault::Timeout);
        let error = TradingAccountOutcome::Unknown { lost, why: "the list failed" }.error().expect("an error");
        assert_eq!(error.reason, OUTCOME_UNKNOWN_REASON);
        assert!(error.message.contains("none was opened again"), "{}", error.message);
        let opened =
            TradingAccountOutcome::Opened { account: OpenedTradingAccount::default(), resolved_by_lookup: true };
        assert!(opened.error().is_none());
    }

    #[test]
    fn the_reason_is_listed_where_callers_read_reasons() {
        let documents = [
            ("README", include_str!("../../README.md")),
            ("docs/callers.md", include_str!("../../docs/callers.md")),
            ("the proto", include_str!("../../proto/matchtrader/sso/v1/sso_service.proto")),
        ];
        for (name, text) in documents {
            assert!(text.contains(&format!("`{OUTCOME_UNKNOWN_REASON}`")), "{name} lists {OUTCOME_UNKNOWN_REASON}");
        }
    }
}
