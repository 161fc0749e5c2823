//! Login: email and password at the platform, answered with the session, the
//! cookies for the browser and the user's trading accounts.

use time::OffsetDateTime;

use super::{SsoGateway, envelope::Call, replies, upstream_failure};
use crate::{convert, error::SsoError, proto};

impl SsoGateway {
    pub(super) async fn login_flow(
        &self,
        call: Call,
        request: proto::LoginRequest,
    ) -> Result<proto::LoginResponse, SsoError> {
        let Call { tenant, deadline, caller } = call;
        let command = convert::login(request, &tenant.settings)?;
        self.throttle(caller.as_deref(), &tenant.settings.name, &command.email).await?;
        let granted = tenant
            .platform
            .login(&command.email, &command.password, &command.broker_id, deadline)
            .await
            .map_err(upstream_failure(&tenant))?;
        Ok(proto::LoginResponse {
            session: Some(replies::browser_session(&tenant.settings, &granted, OffsetDateTime::now_utc())),
            trading_accounts: granted.trading_accounts.iter().map(replies::trading_account).collect(),
            selected_trading_account: granted.selected_trading_account.as_ref().map(replies::trading_account),
        })
    }
}
