//! IssueOneTimeToken: a one-time login token for an existing user, handed
//! back as a login link, or redeemed at once into a live session.

use time::OffsetDateTime;

use super::{SsoGateway, envelope::Call, replies, upstream_failure};
use crate::{convert, error::SsoError, proto};

impl SsoGateway {
    pub(super) async fn issue_one_time_token_flow(
        &self,
        call: Call,
        request: proto::IssueOneTimeTokenRequest,
    ) -> Result<proto::IssueOneTimeTokenResponse, SsoError> {
        let Call { tenant, deadline, caller } = call;
        let command = convert::issue_one_time_token(request, &tenant.settings)?;
        self.throttle(caller.as_deref(), &tenant.settings.name, &command.email).await?;
        let issued = tenant
            .broker
            .issue_one_time_token(&command.email, command.validity, deadline)
            .await
            .map_err(upstream_failure(&tenant))?;
        if !command.start_session {
            let link = replies::login_link(&tenant.settings, &issued.token, Some(issued.expires_at));
            return Ok(proto::IssueOneTimeTokenResponse { login_link: Some(link), session: None });
        }
        let granted =
            tenant.platform.login_with_token(&issued.token, deadline).await.map_err(upstream_failure(&tenant))?;
        let session = replies::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc());
        Ok(proto::IssueOneTimeTokenResponse { login_link: None, session: Some(session) })
    }
}
