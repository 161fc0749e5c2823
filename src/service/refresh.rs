//! Refresh: a renewed session for a refresh token, which the platform rotates.
//! With a reuse window, calls that present the same token share one vendor
//! call and its result ([`super::refresh_reuse`]).

use super::{SsoGateway, envelope::Call, replies, upstream_failure};
use crate::{convert, error::SsoError, proto};

impl SsoGateway {
    pub(super) async fn refresh_flow(
        &self,
        call: Call,
        request: proto::RefreshRequest,
    ) -> Result<proto::RefreshResponse, SsoError> {
        let Call { tenant, deadline, .. } = call;
        let command = convert::refresh(request)?;
        if let Some(reuse) = &self.refresh_reuse {
            return self.shared_refresh(reuse, &tenant, command.refresh_token, deadline).await;
        }
        let granted =
            tenant.platform.refresh(&command.refresh_token, deadline).await.map_err(upstream_failure(&tenant))?;
        Ok(replies::refreshed(&tenant.settings, &granted))
    }
}
