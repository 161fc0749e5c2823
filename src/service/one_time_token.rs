//! IssueOneTimeToken: a one-time login token for an existing user, handed
//! back as a login link, or redeemed at once into a live session.
//!
//! A new token voids the previous one, so a double click on "open the
//! platform" would leave the first link dead. Concurrent identical requests
//! for a link (tenant, email in any case, validity) therefore share one
//! vendor call and get the same link. Nothing is remembered once the call
//! ends, and only within one process: replicas do not share in-flight calls.

use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;

use super::{SsoGateway, envelope::Call, replies, upstream_failure};
use crate::{
    audit::{self, Obtained},
    convert,
    deadline::Deadline,
    error::SsoError,
    proto,
    single_flight::{Role, SingleFlight},
    upstream::{Endpoint, IssuedToken, Tenant, UpstreamError, UpstreamFault},
};

/// What identifies a request for a link: tenant, lower-cased email, validity.
type LinkRequest = (String, String, Duration);

/// The link requests in flight, shared by identical concurrent calls.
pub(super) type LinkFlights = SingleFlight<LinkRequest, Result<Arc<IssuedToken>, UpstreamError>>;

impl SsoGateway {
    pub(super) async fn issue_one_time_token_flow(
        &self,
        call: Call,
        request: proto::IssueOneTimeTokenRequest,
    ) -> Result<proto::IssueOneTimeTokenResponse, SsoError> {
        let Call { tenant, deadline, caller } = call;
        let command = convert::issue_one_time_token(request, &tenant.settings)?;
        self.throttle(caller.as_deref(), &tenant.settings.name, &command.email).await?;
        if !command.start_session {
            let issued = self.shared_link_token(&tenant, command.email, command.validity, deadline).await?;
            let link = replies::login_link(&tenant.settings, &issued.token, Some(issued.expires_at));
            return Ok(proto::IssueOneTimeTokenResponse { login_link: Some(link), session: None });
        }
        let issued = tenant
            .broker
            .issue_one_time_token(&command.email, command.validity, deadline)
            .await
            .map_err(upstream_failure(&tenant))?;
        let granted =
            tenant.platform.login_with_token(&issued.token, deadline).await.map_err(upstream_failure(&tenant))?;
        let session = replies::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc());
        Ok(proto::IssueOneTimeTokenResponse { login_link: None, session: Some(session) })
    }

    /// A token for a link: the one being issued for an identical request, or a new one.
    async fn shared_link_token(
        &self,
        tenant: &Arc<Tenant>,
        email: String,
        validity: Duration,
        deadline: Deadline,
    ) -> Result<Arc<IssuedToken>, SsoError> {
        let key = (tenant.settings.name.clone(), email.to_lowercase(), validity);
        let work = {
            let tenant = tenant.clone();
            move || async move { tenant.broker.issue_one_time_token(&email, validity, deadline).await.map(Arc::new) }
        };
        let Some((issued, role)) = self.link_flights.run(key, deadline.instant(), work).await else {
            let gave_up = UpstreamError::new(Endpoint::IssueOneTimeToken, None, UpstreamFault::Timeout);
            return Err(upstream_failure(tenant)(gave_up));
        };
        if role == Role::Joined {
            audit::note(Obtained::SharedCall);
            self.metrics.vendor_call_saved(&tenant.settings.name, Endpoint::IssueOneTimeToken.name(), "coalesced");
        }
        issued.map_err(upstream_failure(tenant))
    }
}
