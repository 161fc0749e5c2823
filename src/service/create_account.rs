//! CreateAccount: validate, honour the idempotency key, create the account at
//! the vendor, then hand back a login link or a live session. Once the vendor
//! has created the account every later failure is reported inside an OK
//! answer, so the caller never creates the same user twice; a create whose
//! answer was lost is resolved by a lookup ([`super::creation_lookup`]).

use secrecy::SecretString;
use std::time::Instant;
use time::OffsetDateTime;
use tracing::Instrument as _;

use super::{
    SsoGateway, Tenant,
    creation_lookup::{CreateRequest, Created, create_deadline, created_or_looked_up},
    envelope::Call,
    idempotent::{recordable, replay, request_fingerprint},
    lookup_before_create, replies,
    throttle::EmailLimit,
};
use crate::{
    convert::{self, AccountSequence, CreateAccountCommand},
    deadline::Deadline,
    error::SsoError,
    idempotency::{self, Claim},
    proto,
    trace_context::{self, TraceContext},
    upstream::{UpstreamError, UpstreamFault},
};

impl SsoGateway {
    pub(super) async fn create_account_flow(
        &self,
        call: Call,
        request: proto::CreateAccountRequest,
    ) -> Result<proto::CreateAccountResponse, SsoError> {
        let Call { tenant, deadline, caller } = call;
        let fingerprint = request_fingerprint(&request);
        let command = convert::create_account(request)?;
        // The generation's own rules are checked before anything is claimed or sent.
        let sequence = convert::account_sequence(&command, &tenant.settings)?;
        // Before the claim, so that a form cannot hammer one address with fresh keys either.
        self.throttle_email(&tenant.settings.name, &command.account.email, EmailLimit::Create).await?;
        let Some(key) = command.idempotency_key.clone() else {
            return self.create_account_at_vendor(&tenant, command, sequence, deadline).await;
        };
        let idempotency = self.idempotency.clone();
        let key = idempotency::scoped_key(&tenant.settings.name, caller.as_deref().unwrap_or("anonymous"), &key);
        let claim = idempotency.claim(&key, &fingerprint).await.map_err(|error| {
            tracing::warn!(%error, "idempotency store failed");
            SsoError::IdempotencyUnavailable
        })?;
        match claim {
            Claim::Done(outcome) => replay(outcome),
            Claim::Mismatch => Err(SsoError::IdempotencyKeyReused),
            Claim::InProgress => match idempotency.wait(&key, &fingerprint, deadline.instant()).await {
                Ok(Some(outcome)) => replay(outcome),
                Ok(None) => Err(SsoError::CreationInProgress),
                Err(error) => {
                    tracing::warn!(%error, "idempotency store failed");
                    Err(SsoError::IdempotencyUnavailable)
                }
            },
            Claim::Run => {
                // Detached, and bounded by the configured cap rather than the
                // caller's deadline: a vendor answer that comes after the
                // caller gave up is still recorded for its retry.
                let gateway = self.clone();
                let run_deadline = Deadline::after(self.upstream_timeout);
                let trace = trace_context::current().unwrap_or_else(TraceContext::new_root);
                let run = async move {
                    let result = gateway.create_account_at_vendor(&tenant, command, sequence, run_deadline).await;
                    match recordable(&result) {
                        Some(outcome) => idempotency.complete(&key, &fingerprint, outcome).await,
                        None => idempotency.release(&key).await,
                    }
                    result
                };
                let task = tokio::spawn(trace_context::scope(trace, run).instrument(tracing::Span::current()));
                match tokio::time::timeout_at(deadline.instant(), task).await {
                    Ok(Ok(result)) => result,
                    // The run goes on (or ended abnormally); its retry finds out which.
                    Ok(Err(_)) | Err(_) => Err(SsoError::CreationInProgress),
                }
            }
        }
    }

    /// The vendor calls of CreateAccount: create, then a login link or a
    /// session. Broker-API v2 creates in several calls of its own.
    async fn create_account_at_vendor(
        &self,
        tenant: &Tenant,
        command: CreateAccountCommand,
        sequence: AccountSequence,
        deadline: Deadline,
    ) -> Result<proto::CreateAccountResponse, SsoError> {
        if tenant.settings.lookup_before_create {
            lookup_before_create::refuse_a_taken_email(tenant, &command.account.email, deadline).await?;
        }
        if let AccountSequence::BrokerApiV2(v2) = sequence {
            return self.create_account_v2(tenant, command, v2, deadline).await;
        }
        let email = command.account.email.clone();
        let sent_at = Instant::now();
        let attempt = tenant.broker.create_account(&command.account, create_deadline(deadline)).await;
        let request = CreateRequest {
            email: &email,
            password: &command.account.password,
            start_session: command.start_session,
            sent_at,
        };
        let Created { account: created, resolved_by_lookup, session } =
            created_or_looked_up(tenant, &request, attempt, deadline).await?;
        // From here on the account exists: every failure is reported inside an OK answer.
        let account = replies::account(&created, &email);
        let mut response =
            proto::CreateAccountResponse { account: Some(account), resolved_by_lookup, ..Default::default() };
        if let Some(granted) = session {
            // The password proof of a lost create opened the session already.
            response.session = Some(replies::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc()));
            return Ok(response);
        }
        let token = match created.one_time_token {
            Some(token) => Ok((token, None)),
            // The vendor may omit the token (and a lookup never has one): mint
            // one so the caller still gets a link.
            None => tenant
                .broker
                .issue_one_time_token(&email, tenant.settings.one_time_token_validity, deadline)
                .await
                .map(|issued| (issued.token, Some(issued.expires_at))),
        };
        let account_uuid = created.uuid.as_deref().unwrap_or("");
        self.sign_in_created(tenant, token, command.start_session, account_uuid, &mut response, deadline).await;
        Ok(response)
    }

    /// Hands the new user's token back as a link, or redeems it into a
    /// session; a failure is reported in `response`, never as an error.
    pub(super) async fn sign_in_created(
        &self,
        tenant: &Tenant,
        token: Result<(SecretString, Option<OffsetDateTime>), UpstreamError>,
        start_session: bool,
        account_uuid: &str,
        response: &mut proto::CreateAccountResponse,
        deadline: Deadline,
    ) {
        let (token, expires_at) = match token {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(%error, %account_uuid, "account created, but no login token");
                response.sign_in_error = Some(replies::sign_in_error(&error));
                return;
            }
        };
        if !start_session {
            response.login_link = Some(replies::login_link(&tenant.settings, &token, expires_at));
            return;
        }
        match tenant.platform.login_with_token(&token, deadline).await {
            Ok(granted) => {
                response.session =
                    Some(replies::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc()));
            }
            Err(error) => {
                tracing::warn!(%error, %account_uuid, "account created, but its session could not be started");
                // A token the platform never saw is still good: hand it on as a link.
                if !error.may_have_been_processed() && error.fault != UpstreamFault::OneTimeTokenRejected {
                    response.login_link = Some(replies::login_link(&tenant.settings, &token, expires_at));
                }
                response.sign_in_error = Some(replies::sign_in_error(&error));
            }
        }
    }
}
