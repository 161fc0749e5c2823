//! CreateAccount on Broker-API v2, as the vendor documents it: create the
//! user account with `{email, password}`, open its trading account, then mint
//! a one-time token for a login link or a session. Once the user account
//! exists nothing is sent to create it again: every later failure is reported
//! inside an OK answer (`trading_account_error`, `sign_in_error`). A create
//! whose answer was lost is resolved by a lookup of the user account.

use std::time::Instant;
use time::OffsetDateTime;

use super::{
    SsoGateway, Tenant,
    creation_lookup::{CreateRequest, Created, create_deadline, created_or_looked_up},
    replies,
};
use crate::{
    convert::{CreateAccountCommand, V2Sequence},
    deadline::Deadline,
    error::SsoError,
    proto,
};

/// Share of the time left that opening the trading account may take, so
/// that a hanging call still leaves time to hand back a login link.
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
        if let Some(trading_account) = &sequence.trading_account {
            let share = Deadline::after(deadline.remaining() / TRADING_ACCOUNT_SHARE);
            let opened = if account_uuid.is_empty() {
                Err(no_uuid_error())
            } else {
                tenant.broker.open_trading_account(&account_uuid, trading_account, share).await
            };
            match opened {
                Ok(opened) => {
                    response.trading_account = Some(replies::opened_trading_account(&opened, &trading_account.group));
                }
                Err(error) => {
                    tracing::warn!(%error, %account_uuid, "user account created, but its trading account was not opened");
                    response.trading_account_error = Some(replies::trading_account_error(&error));
                }
            }
        }
        if let Some(granted) = session {
            // The password proof of a lost create opened the session already.
            response.session = Some(replies::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc()));
            return Ok(response);
        }
        let token = tenant
            .broker
            .issue_one_time_token(email, tenant.settings.one_time_token_validity, deadline)
            .await
            .map(|issued| (issued.token, Some(issued.expires_at)));
        self.sign_in_created(tenant, token, command.start_session, &account_uuid, &mut response, deadline).await;
        Ok(response)
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
