//! Broker-API v1 and the CRM-API: the account is created in one call, from
//! the whole form.

use super::{BrokerApi, CreatedAccount, form::NewAccount, parse_created_account};
use crate::{
    deadline::Deadline,
    upstream::{
        error::{Endpoint, UpstreamError},
        exchange::exchange,
        outgoing::json_body,
    },
};

impl BrokerApi {
    /// `POST /v1/accounts`. Sent once, never retried: a retry could create a
    /// second account.
    pub async fn create_account(
        &self,
        account: &NewAccount,
        deadline: Deadline,
    ) -> Result<CreatedAccount, UpstreamError> {
        let bytes = json_body(Endpoint::CreateAccount, &account.wire_body())?;
        let request = self.post(&self.urls.create_account, bytes);
        let answer = exchange(Endpoint::CreateAccount, &self.gate, &self.http, request, deadline).await?;
        Ok(parse_created_account(&answer))
    }
}
