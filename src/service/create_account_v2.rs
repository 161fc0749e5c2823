//! CreateAccount on Broker-API v2, as the vendor documents it: create the
//! user account with `{email, password}`, open its trading account, then mint
//! a one-time token for a login link or a session. Once the user account
//! exists the trading account and the token are asked for at the same time
//! (the token needs only the email), and the session follows the token: two
//! vendor round trips after the create, not three. Nothing is sent to create
//! the user account again: every later failure is reported inside an OK
//! answer (`trading_account_error`, `sign_in_error`). A create whose answer
//! was lost is resolved by a lookup of the user account, a trading-account
//! open whose answer was lost by a list of the user's trading accounts
//! ([`super::trading_account_once`]).

use std::time::Instant;
use time::OffsetDateTime;

use super::{
    SsoGateway, Tenant,
    creation_lookup::{CreateRequest, Created, create_deadline, created_or_looked_up},
    replies,
    trading_account_once::{TradingAccountOutcome, open_trading_account_once},
};
use crate::{
    convert::{CreateAccountCommand, V2Sequence},
    deadline::Deadline,
    error::SsoError,
    proto,
};

/// Share of the time left that opening the trading account (and settling a
/// lost answer) may take: it runs beside the token and the session, which
/// keep the whole deadline, so a hanging open cannot hold the answer back
/// past half of what is left.
const TRADING_ACCOUNT_SHARE: u32 = 2;

impl SsoGateway {
    pub(super) async fn create_account_v2(
        &self,
        tenant: &Tenant,
        command: CreateAccountCommand,
        sequence: V2Sequence,
        deadline: Deadline,
    ) -> Result<proto::CreateAccountResponse, SsoError> {
        let email = command.account.email.as_str();
        if !sequence.ignored_fields.is_empty() {
            tracing::info!(
                ignored = ?sequence.ignored_fields,
                "Broker-API v2 takes no such profile fields: they are not sent (see docs/migrating-to-broker-api-v2.md)"
            );
        }
        let sent_at = Instant::now();
        let attempt =
            tenant.broker.create_user_account(email, &command.account.password, create_deadline(deadline)).await;
        // A user account found by the lookup, and proven this request's, goes on
        // exactly as a created one: its trading account is opened by the calls
        // below, never by the create, and never for an account not proven.
        let request =
            CreateRequest { email, password: &command.account.password, start_session: command.start_session, sent_at };
        let Created { account: created, resolved_by_lookup, session } =
            created_or_looked_up(tenant, &request, attempt, deadline).await?;
        // From here on the user account exists: every failure is reported inside an OK answer.
        let account_uuid = created.uuid.clone().unwrap_or_default();
        let mut response = proto::CreateAccountResponse {
            account: Some(replies::account(&created, email)),
            resolved_by_lookup,
            ..Default::default()
        };
        let trading_account = async {
            let trading_account = sequence.trading_account.as_ref()?;
            // Its own share, fixed before the token's call starts beside it.
            let share = Deadline::after(deadline.remaining() / TRADING_ACCOUNT_SHARE);
            let outcome = if account_uuid.is_empty() {
                TradingAccountOutcome::Failed(no_uuid_error())
            } else {
                open_trading_account_once(tenant, &account_uuid, trading_account, share).await
            };
            Some((outcome, trading_account.group.as_str()))
        };
        // The token needs only the email, so it runs beside the trading
        // account, and the session follows the token without waiting for
        // the trading account: two vendor round trips after the user
        // account, not three. Both are plain futures, so a cancelled call
        // drops both and leaves no task behind; neither is ever sent twice.
        let sign_in = async {
            let mut signed_in = proto::CreateAccountResponse::default();
            if let Some(granted) = &session {
                // The password proof of a lost create opened the session already.
                signed_in.session =
                    Some(replies::browser_session(&tenant.settings, granted, OffsetDateTime::now_utc()));
                return signed_in;
            }
            let token = tenant
                .broker
                .issue_one_time_token(email, tenant.settings.one_time_token_validity, deadline)
                .await
                .map(|issued| (issued.token, Some(issued.expires_at)));
            self.sign_in_created(tenant, token, command.start_session, &account_uuid, &mut signed_in, deadline).await;
            signed_in
        };
        let (trading_account, signed_in) = tokio::join!(trading_account, sign_in);
        if let Some((outcome, group)) = trading_account {
            report_trading_account(outcome, group, &account_uuid, &mut response);
        }
        response.login_link = signed_in.login_link;
        response.session = signed_in.session;
        response.sign_in_error = signed_in.sign_in_error;
        Ok(response)
    }
}

/// Puts the trading account, or why there is none, into the answer.
fn report_trading_account(
    outcome: TradingAccountOutcome,
    group: &str,
    account_uuid: &str,
    response: &mut proto::CreateAccountResponse,
) {
    if let Some(error) = outcome.error() {
        tracing::warn!(reason = %error.reason, message = %error.message, %account_uuid,
            "user account created, but its trading account was not opened");
        response.trading_account_error = Some(error);
    }
    if let TradingAccountOutcome::Opened { account, resolved_by_lookup } = outcome {
        tracing::debug!(%account_uuid, resolved_by_lookup, "trading account opened");
        response.trading_account = Some(replies::opened_trading_account(&account, group));
    }
}

/// A 2xx without the user account's UUID leaves nothing to open a trading account for.
fn no_uuid_error() -> crate::upstream::UpstreamError {
    use crate::upstream::{Endpoint, UpstreamError, UpstreamFault};
    UpstreamError {
        endpoint: Endpoint::CreateUserAccount,
        status: None,
        fault: UpstreamFault::Protocol { problem: "the user account's answer has no uuid" },
    }
}
