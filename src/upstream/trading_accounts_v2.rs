//! Broker-API v2's list of a user's trading accounts, `GET
//! /v1/user-accounts/{uuid}/trading-accounts`: a read, so sending it can
//! never open anything. Each account is read field by field with the fields
//! that tell which one a create opened (`created`, `group`) and whether it
//! can trade (`missingInTradingSystem`).

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{
    broker_api::BrokerApi,
    broker_api_v2::http_date,
    error::{Endpoint, UpstreamError, UpstreamFault},
    exchange::exchange,
    json,
};
use crate::{deadline::Deadline, tenant::paths};

/// One trading account as the list answered it; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedTradingAccount {
    pub uuid: Option<String>,
    pub login: Option<String>,
    pub group: Option<String>,
    /// When the vendor opened it, on the vendor's clock.
    pub created: Option<OffsetDateTime>,
    /// `Some(true)`: on paper only, not in the trading engine.
    pub missing_in_trading_system: Option<bool>,
}

/// A user's trading accounts, with the vendor's clock when it listed them
/// (the `Date` header), against which their `created` can be judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradingAccountList {
    pub accounts: Vec<ListedTradingAccount>,
    pub vendor_time: Option<OffsetDateTime>,
}

impl BrokerApi {
    /// The trading accounts of the user account `user_account_uuid`, in the
    /// order the vendor lists them. An unknown user is `AccountNotFound`.
    pub async fn trading_accounts(
        &self,
        user_account_uuid: &str,
        deadline: Deadline,
    ) -> Result<Vec<ListedTradingAccount>, UpstreamError> {
        self.trading_account_list(user_account_uuid, deadline).await.map(|list| list.accounts)
    }

    /// [`BrokerApi::trading_accounts`] with the vendor's clock of the answer.
    pub async fn trading_account_list(
        &self,
        user_account_uuid: &str,
        deadline: Deadline,
    ) -> Result<TradingAccountList, UpstreamError> {
        let endpoint = Endpoint::TradingAccountsOfUser;
        let url = self.v2.filled(endpoint, &self.v2.trading_accounts, paths::USER_ACCOUNT_UUID, user_account_uuid)?;
        let answer = exchange(endpoint, &self.gate, &self.http, self.get(&url), deadline).await?;
        let accounts = parse_trading_accounts(&answer.body).ok_or_else(|| {
            let problem = "the trading accounts answer is neither a list nor a page of them";
            UpstreamError::new(endpoint, Some(answer.status), UpstreamFault::Protocol { problem })
        })?;
        Ok(TradingAccountList { accounts, vendor_time: http_date(&answer.headers) })
    }
}

/// The accounts of a list (`[…]`) or a page (`{"content": […]}`); an item
/// that is not an object is skipped, not fatal. `None` for any other body.
pub(crate) fn parse_trading_accounts(body: &[u8]) -> Option<Vec<ListedTradingAccount>> {
    let items = match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(items) => items,
        Value::Object(mut page) => match page.remove("content")? {
            Value::Array(items) => items,
            _ => return None,
        },
        _ => return None,
    };
    Some(items.iter().filter_map(Value::as_object).map(listed).collect())
}

fn listed(map: &Map<String, Value>) -> ListedTradingAccount {
    ListedTradingAccount {
        uuid: json::string(map, "uuid"),
        login: json::string(map, "login"),
        group: json::string(map, "group"),
        created: json::timestamp(map, "created"),
        missing_in_trading_system: json::boolean(map, "missingInTradingSystem"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_or_a_page_is_read_field_by_field() {
        let list = br#"[{"uuid": "t1", "login": 700001, "group": "retail", "created": "2026-12-04T09:20:04.651Z",
                         "missingInTradingSystem": false}, 7, {"uuid": "t2", "missingInTradingSystem": true}]"#;
        let accounts = parse_trading_accounts(list).expect("a list");
        assert_eq!(accounts.len(), 2, "the item that is no object is skipped");
        assert_eq!(accounts[0].login.as_deref(), Some("700001"));
        assert_eq!(accounts[0].group.as_deref(), Some("retail"));
        assert_eq!(accounts[0].created.map(|at| at.unix_timestamp()), Some(1_796_376_004));
        assert_eq!(accounts[1].missing_in_trading_system, Some(true));
        assert_eq!(accounts[1].created, None);
        let page = br#"{"content": [{"uuid": "t1"}], "totalElements": 1}"#;
        assert_eq!(parse_trading_accounts(page).map(|a| a.len()), Some(1));
    }

    #[test]
    fn anything_else_is_not_a_list() {
        for body in [&b"{\"uuid\": \"t1\"}"[..], b"<html></html>", b"\"t1\"", b"{\"content\": 1}"] {
            assert_eq!(parse_trading_accounts(body), None, "{}", String::from_utf8_lossy(body));
        }
    }
}
