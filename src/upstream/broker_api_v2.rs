//! Broker-API v2 on the tenant's Broker-API client: the user account (exactly
//! `{email, password}`, no token in the answer), the trading account opened
//! for it, and the service information that the preflight reads. The lookup
//! by email serves every generation (each has its own path): the preflight
//! probes with it, and CreateAccount resolves a create of unknown outcome
//! with it. The one-time token is v1's call, shared.

use http::{
    HeaderValue,
    header::{ACCEPT, AUTHORIZATION},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc2822};
use url::Url;

use super::{
    broker_api::{BrokerApi, CreatedAccount, endpoint_url, parse_created_account, serialize},
    error::{Endpoint, UpstreamError, UpstreamFault},
    exchange::{Answer, exchange},
    http_client::Outgoing,
    json,
};
use crate::{
    deadline::Deadline,
    tenant::{TenantSettings, paths},
};

/// The v2 and preflight endpoints of a tenant, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct V2Paths {
    base: Url,
    pub(super) trading_accounts: String,
    account_by_email: String,
    service_info: Url,
}

impl V2Paths {
    pub(super) fn new(tenant: &TenantSettings) -> Result<Self, String> {
        // Checked once with a sample value, so a call can only fail on its own value.
        for (template, hole) in
            [(&tenant.paths.trading_accounts, paths::USER_ACCOUNT_UUID), (&tenant.paths.account_by_email, paths::EMAIL)]
        {
            endpoint_url(&tenant.broker_api_url, &template.replace(hole, "sample"))?;
        }
        Ok(Self {
            base: tenant.broker_api_url.clone(),
            trading_accounts: tenant.paths.trading_accounts.clone(),
            account_by_email: tenant.paths.account_by_email.clone(),
            service_info: endpoint_url(&tenant.broker_api_url, &tenant.paths.service_info)?,
        })
    }

    /// `template` with `hole` replaced by `value`, percent-encoded as one path segment.
    pub(super) fn filled(
        &self,
        endpoint: Endpoint,
        template: &str,
        hole: &str,
        value: &str,
    ) -> Result<Url, UpstreamError> {
        endpoint_url(&self.base, &template.replace(hole, &path_segment(value))).map_err(|_| {
            UpstreamError::new(
                endpoint,
                None,
                UpstreamFault::Protocol { problem: "the request URL could not be built" },
            )
        })
    }
}

/// Every byte outside the characters a path segment may hold as they are, percent-encoded.
fn path_segment(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@+!$&'()*,;=:".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

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

/// What a lookup by email found.
#[derive(Debug)]
pub enum Lookup {
    /// The account: the answer carries a uuid and names the email looked up.
    Found(FoundAccount),
    /// No account has the email.
    NotFound,
    /// A 2xx that is not the account looked up: no uuid, or another email.
    NotTheAccount,
}

/// An account found by a lookup.
#[derive(Debug)]
pub struct FoundAccount {
    /// The account as answered; its `uuid` is always there.
    pub account: CreatedAccount,
    /// The vendor's clock when it answered (the `Date` header, to the second).
    pub vendor_time: Option<OffsetDateTime>,
}

/// A lookup's 2xx answer, taken as the account only with a uuid and the same email.
fn looked_up(email: &str, answer: &Answer) -> Lookup {
    let account = parse_created_account(answer);
    let same_email = account.email.as_deref().is_some_and(|found| found.trim().eq_ignore_ascii_case(email.trim()));
    if account.uuid.is_none() || !same_email {
        return Lookup::NotTheAccount;
    }
    Lookup::Found(FoundAccount { account, vendor_time: http_date(&answer.headers) })
}

/// The `Date` header, as HTTP dates are written (RFC 2822's shape, `GMT`).
fn http_date(headers: &http::HeaderMap) -> Option<OffsetDateTime> {
    let value = headers.get(http::header::DATE)?.to_str().ok()?;
    OffsetDateTime::parse(value.trim(), &Rfc2822).ok()
}

impl BrokerApi {
    pub(super) fn get(&self, url: &Url) -> Outgoing {
        Outgoing::get(url)
            .header(AUTHORIZATION, self.authorization.current())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
    }

    /// v2 `POST /v1/user-accounts` with exactly `{email, password}`. Sent
    /// once, never retried: older builds create a second user on a repeat.
    pub async fn create_user_account(
        &self,
        email: &str,
        password: &SecretString,
        deadline: Deadline,
    ) -> Result<CreatedAccount, UpstreamError> {
        let body = UserAccountBody { email, password: password.expose_secret() };
        let bytes = serialize(Endpoint::CreateUserAccount, &body)?;
        let request = self.post(&self.create_account_url, bytes);
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
        let url = self.v2.filled(endpoint, &self.v2.trading_accounts, paths::USER_ACCOUNT_UUID, user_account_uuid)?;
        let body = TradingAccountBody {
            group: &account.group,
            leverage_ratio_percent: account.leverage_ratio_percent,
            account_type: account.account_type,
            access_right: account.access_right,
            account_details: &account.account_details,
        };
        let request = self.post(&url, serialize(endpoint, &body)?);
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

    /// Whether an account has `email` (see [`BrokerApi::find_account`]).
    pub async fn account_exists(&self, email: &str, deadline: Deadline) -> Result<bool, UpstreamError> {
        self.find_account(email, deadline).await.map(|found| !matches!(found, Lookup::NotFound))
    }

    /// The account with `email`, read like a create's answer (v1 and CRM-API:
    /// the account; v2: the user account `{uuid, created, brokerId, email}`),
    /// with the vendor's clock from the answer's `Date` header. An answer is
    /// the account only when it carries a uuid and names `email` (in any
    /// case). [`Lookup::NotFound`] when the lookup answers 404 (v2) or a
    /// problem saying so (v1). A GET, so sending it can never create anything.
    pub async fn find_account(&self, email: &str, deadline: Deadline) -> Result<Lookup, UpstreamError> {
        let endpoint = Endpoint::AccountByEmail;
        let url = self.v2.filled(endpoint, &self.v2.account_by_email, paths::EMAIL, email)?;
        match exchange(endpoint, &self.gate, &self.http, self.get(&url), deadline).await {
            Ok(answer) => Ok(looked_up(email, &answer)),
            Err(error) if error.fault == UpstreamFault::AccountNotFound => Ok(Lookup::NotFound),
            Err(error) => Err(error),
        }
    }

    /// `GET /service-info`: a cheap call that the key must be accepted for.
    pub async fn service_info(&self, deadline: Deadline) -> Result<(), UpstreamError> {
        let request = self.get(&self.v2.service_info);
        exchange(Endpoint::ServiceInfo, &self.gate, &self.http, request, deadline).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str, date: Option<&str>) -> Answer {
        let mut headers = http::HeaderMap::new();
        if let Some(date) = date {
            headers.insert(http::header::DATE, date.parse().expect("ascii"));
        }
        Answer { status: 200, headers, body: bytes::Bytes::copy_from_slice(body.as_bytes()) }
    }

    #[test]
    fn a_lookup_answer_is_the_account_only_with_a_uuid_and_the_same_email() {
        let date = Some("Fri, 04 Dec 2026 09:00:00 GMT");
        let found = looked_up("Ada@Example.com", &answer(r#"{"uuid":"u-1","email":"ada@example.COM"}"#, date));
        let Lookup::Found(found) = found else { panic!("the same email in another case is the account") };
        assert_eq!(found.vendor_time.map(|t| t.unix_timestamp()), Some(1_796_374_800));
        let no_date = looked_up("ada@example.com", &answer(r#"{"uuid":"u-1","email":"ada@example.com"}"#, None));
        assert!(matches!(no_date, Lookup::Found(FoundAccount { vendor_time: None, .. })));
        for body in
            [r#"{"email":"ada@example.com"}"#, r#"{"uuid":"u-1","email":"eve@example.com"}"#, r#"{"uuid":"u-1"}"#, "[]"]
        {
            assert!(matches!(looked_up("ada@example.com", &answer(body, date)), Lookup::NotTheAccount), "{body}");
        }
    }

    #[test]
    fn path_values_are_encoded_as_one_segment() {
        assert_eq!(path_segment("a.b+c@x.com"), "a.b+c@x.com");
        assert_eq!(path_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
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
