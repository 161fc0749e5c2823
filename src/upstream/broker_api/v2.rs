//! Broker-API v2: the user account (exactly `{email, password}`, no token
//! in the answer), the trading account opened for it, and the list of a
//! user's trading accounts, `GET /v1/user-accounts/{uuid}/trading-accounts`
//! (a read, so sending it can never open anything). Each listed account is
//! read field by field with the fields that tell which one a create opened
//! (`created`, `group`) and whether it can trade (`missingInTradingSystem`).

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{BrokerApi, CreatedAccount, parse_created_account};
use crate::{
    deadline::Deadline,
    upstream::{
        error::{Endpoint, UpstreamError, UpstreamFault},
        exchange::exchange,
        json,
        outgoing::json_body,
    },
};

/// A trading account to open: the body of `POST /v1/user-accounts/{uuid}/trading-accounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTradingAccount {
    pub group: String,
    pub leverage_ratio_percent: u32,
    /// `DEMO` or `REAL`.
    pub account_type: &'static str,
    pub access_right: Option<&'static str>,
    pub account_details: AccountDetails,
}

/// `accountDetails`: the names, required; with a tenant's `full` setting
/// also the date of birth, phone and address. An absent value is left out,
/// never sent as null or an empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetails {
    pub first_name: String,
    pub last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Boxed: five optional fields that most requests leave out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_details: Option<Box<V2AddressDetails>>,
}

/// `accountDetails.addressDetails`: v1's address with `zipCode` for v1's `postCode`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct V2AddressDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip_code: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TradingAccountBody<'a> {
    group: &'a str,
    leverage_ratio_percent: u32,
    account_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_right: Option<&'static str>,
    account_details: &'a AccountDetails,
}

#[derive(Serialize)]
struct UserAccountBody<'a> {
    email: &'a str,
    password: &'a str,
}

/// A trading account as the vendor answered; every field optional.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenedTradingAccount {
    pub uuid: Option<String>,
    pub login: Option<String>,
    pub group: Option<String>,
}

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
    /// v2 `POST /v1/user-accounts` with exactly `{email, password}`. Sent
    /// once, never retried: older builds create a second user on a repeat.
    pub async fn create_user_account(
        &self,
        email: &str,
        password: &SecretString,
        deadline: Deadline,
    ) -> Result<CreatedAccount, UpstreamError> {
        let body = UserAccountBody { email, password: password.expose_secret() };
        let bytes = json_body(Endpoint::CreateUserAccount, &body)?;
        let request = self.post(&self.urls.create_account, bytes);
        let answer = exchange(Endpoint::CreateUserAccount, &self.gate, &self.http, request, deadline).await?;
        Ok(parse_created_account(&answer))
    }

    /// v2 `POST /v1/user-accounts/{uuid}/trading-accounts`. Sent once: a
    /// repeat could open a second trading account. An answer that says
    /// `missingInTradingSystem: true` is an error: the account cannot trade.
    pub async fn open_trading_account(
        &self,
        user_account_uuid: &str,
        account: &NewTradingAccount,
        deadline: Deadline,
    ) -> Result<OpenedTradingAccount, UpstreamError> {
        let endpoint = Endpoint::OpenTradingAccount;
        let url = self.urls.trading_accounts(endpoint, user_account_uuid)?;
        let body = TradingAccountBody {
            group: &account.group,
            leverage_ratio_percent: account.leverage_ratio_percent,
            account_type: account.account_type,
            access_right: account.access_right,
            account_details: &account.account_details,
        };
        let request = self.post(&url, json_body(endpoint, &body)?);
        let answer = exchange(endpoint, &self.gate, &self.http, request, deadline).await?;
        // The trading account exists once the vendor said 2xx: an odd body is not an error.
        let map = json::object(&answer.body).unwrap_or_default();
        if json::boolean(&map, "missingInTradingSystem") == Some(true) {
            let fault = UpstreamFault::TradingAccountNotInTradingSystem;
            return Err(UpstreamError::new(endpoint, Some(answer.status), fault));
        }
        Ok(OpenedTradingAccount {
            uuid: json::string(&map, "uuid"),
            login: json::string(&map, "login"),
            group: json::string(&map, "group"),
        })
    }

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
        let url = self.urls.trading_accounts(endpoint, user_account_uuid)?;
        let answer = exchange(endpoint, &self.gate, &self.http, self.get(&url), deadline).await?;
        let accounts = parse_trading_accounts(&answer.body).ok_or_else(|| {
            let problem = "the trading accounts answer is neither a list nor a page of them";
            UpstreamError::new(endpoint, Some(answer.status), UpstreamFault::Protocol { problem })
        })?;
        Ok(TradingAccountList { accounts, vendor_time: super::http_date(&answer.headers) })
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

    #[test]
    fn the_trading_account_body_has_the_required_fields_and_omits_an_unset_access_right() {
        let details = AccountDetails { first_name: "Ada".into(), last_name: "Lovelace".into(), ..Default::default() };
        let body = TradingAccountBody {
            group: "retail",
            leverage_ratio_percent: 10000,
            account_type: "DEMO",
            access_right: None,
            account_details: &details,
        };
        let json = serde_json::to_value(&body).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"group": "retail", "leverageRatioPercent": 10000, "accountType": "DEMO",
                               "accountDetails": {"firstName": "Ada", "lastName": "Lovelace"}})
        );
    }
}
