//! The Broker-API client of one tenant, authenticated by the broker's API
//! key: every URL it calls, resolved once ([`BrokerUrls`]), and the calls all
//! generations share (the one-time token, the lookup by email, the service
//! information). Each generation's own calls live beside it: [`v1`] creates
//! the account of v1 and the CRM-API from its form ([`form`]); [`v2`] creates
//! the user account and opens and lists its trading accounts.

pub mod form;
pub(crate) mod v1;
pub(crate) mod v2;

use http::{
    HeaderValue,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE},
};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use time::{OffsetDateTime, format_description::well_known::Rfc2822};
use url::Url;

use super::{
    authorization::Authorization,
    error::{Endpoint, UpstreamError, UpstreamFault},
    exchange::{Answer, exchange},
    gate::{GateContext, UpstreamGate},
    http_client::HttpClient,
    json,
    outgoing::{Outgoing, endpoint_url, filled_url, json_body},
};
use crate::{
    deadline::Deadline,
    tenant::{TenantSettings, paths},
};

/// Every URL of a tenant's Broker-API, resolved and checked once; the two
/// templates take one value per call.
#[derive(Debug, Clone)]
pub(crate) struct BrokerUrls {
    base: Url,
    /// v1 and CRM-API: the account; v2: the user account.
    pub(super) create_account: Url,
    one_time_token: Url,
    service_info: Url,
    /// v2: a user account's trading accounts (the user account's uuid fills it).
    trading_accounts: String,
    /// Every generation's lookup by email (the email fills it).
    account_by_email: String,
}

impl BrokerUrls {
    fn new(tenant: &TenantSettings) -> Result<Self, String> {
        let base = &tenant.broker_api_url;
        // The templates are checked once with a sample value, so a call can only fail on its own value.
        for (template, hole) in
            [(&tenant.paths.trading_accounts, paths::USER_ACCOUNT_UUID), (&tenant.paths.account_by_email, paths::EMAIL)]
        {
            endpoint_url(base, &template.replace(hole, "sample"))?;
        }
        Ok(Self {
            base: base.clone(),
            create_account: endpoint_url(base, &tenant.paths.create_account)?,
            one_time_token: endpoint_url(base, &tenant.paths.one_time_token)?,
            service_info: endpoint_url(base, &tenant.paths.service_info)?,
            trading_accounts: tenant.paths.trading_accounts.clone(),
            account_by_email: tenant.paths.account_by_email.clone(),
        })
    }

    /// The trading accounts of the user account `user_account_uuid`.
    pub(super) fn trading_accounts(&self, endpoint: Endpoint, user_account_uuid: &str) -> Result<Url, UpstreamError> {
        filled_url(endpoint, &self.base, &self.trading_accounts, paths::USER_ACCOUNT_UUID, user_account_uuid)
    }

    fn account_by_email(&self, email: &str) -> Result<Url, UpstreamError> {
        filled_url(Endpoint::AccountByEmail, &self.base, &self.account_by_email, paths::EMAIL, email)
    }
}

/// Client of one broker's Broker-API.
#[derive(Debug, Clone)]
pub struct BrokerApi {
    pub(super) http: HttpClient,
    pub(super) urls: BrokerUrls,
    /// The `Authorization` value, built from the key at each call.
    authorization: Authorization,
    pub(super) gate: Arc<UpstreamGate>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OneTimeTokenBody<'a> {
    email: &'a str,
    validity_time: u64,
}

/// The account as the vendor answered; every field optional.
#[derive(Debug, Default)]
pub struct CreatedAccount {
    pub uuid: Option<String>,
    pub email: Option<String>,
    pub verification_status: Option<String>,
    pub client_type: Option<String>,
    /// Broker-API v2 names the broker the user belongs to.
    pub broker_id: Option<String>,
    pub created: Option<OffsetDateTime>,
    pub updated: Option<OffsetDateTime>,
    pub one_time_token: Option<SecretString>,
}

/// A minted one-time token.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: SecretString,
    /// Counted from just before the request was sent, so it never overstates.
    pub expires_at: OffsetDateTime,
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

impl BrokerApi {
    /// A client for the tenant's Broker-API on the shared HTTP client.
    pub fn new(http: HttpClient, tenant: &TenantSettings, gates: Arc<GateContext>) -> Result<Self, String> {
        Ok(Self {
            http,
            gate: Arc::new(UpstreamGate::new(&tenant.name, "broker-api", gates)),
            urls: BrokerUrls::new(tenant)?,
            authorization: Authorization::new(&tenant.api_key, tenant.auth_scheme)?,
        })
    }

    /// A POST of `body` (JSON) to `url`, with the key.
    pub(super) fn post(&self, url: &Url, body: Vec<u8>) -> Outgoing {
        Outgoing::post(url, body)
            .header(AUTHORIZATION, self.authorization.current())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
    }

    /// A GET of `url`, with the key.
    pub(super) fn get(&self, url: &Url) -> Outgoing {
        Outgoing::get(url)
            .header(AUTHORIZATION, self.authorization.current())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
    }

    /// `POST /v1/one-time-token`: a token valid for `validity`; it voids the
    /// user's previous token.
    pub async fn issue_one_time_token(
        &self,
        email: &str,
        validity: Duration,
        deadline: Deadline,
    ) -> Result<IssuedToken, UpstreamError> {
        let body = OneTimeTokenBody { email, validity_time: validity.as_secs() };
        let bytes = json_body(Endpoint::IssueOneTimeToken, &body)?;
        let expires_at = OffsetDateTime::now_utc() + validity;
        let request = self.post(&self.urls.one_time_token, bytes);
        let answer = exchange(Endpoint::IssueOneTimeToken, &self.gate, &self.http, request, deadline).await?;
        let token = parse_one_time_token(&answer.body).ok_or_else(|| {
            UpstreamError::new(
                Endpoint::IssueOneTimeToken,
                Some(answer.status),
                UpstreamFault::Protocol {
                    problem: "no token in the answer (expected {token}, {oneTimeToken} or a JSON string)",
                },
            )
        })?;
        Ok(IssuedToken { token, expires_at })
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
        let url = self.urls.account_by_email(email)?;
        match exchange(endpoint, &self.gate, &self.http, self.get(&url), deadline).await {
            Ok(answer) => Ok(looked_up(email, &answer)),
            Err(error) if error.fault == UpstreamFault::AccountNotFound => Ok(Lookup::NotFound),
            Err(error) => Err(error),
        }
    }

    /// `GET /service-info`: a cheap call that the key must be accepted for.
    pub async fn service_info(&self, deadline: Deadline) -> Result<(), UpstreamError> {
        let request = self.get(&self.urls.service_info);
        exchange(Endpoint::ServiceInfo, &self.gate, &self.http, request, deadline).await.map(drop)
    }
}

/// A created account: whatever fields are there. The account exists once the
/// vendor said 200, so an odd body must not turn that into an error.
pub(crate) fn parse_created_account(answer: &Answer) -> CreatedAccount {
    let Some(map) = json::object(&answer.body) else {
        return CreatedAccount::default();
    };
    CreatedAccount {
        uuid: json::string(&map, "uuid"),
        email: json::string(&map, "email"),
        verification_status: json::string(&map, "verificationStatus"),
        client_type: json::string(&map, "type").or_else(|| json::string(&map, "clientType")),
        broker_id: json::string(&map, "brokerId"),
        created: json::timestamp(&map, "created"),
        updated: json::timestamp(&map, "updated"),
        one_time_token: json::string(&map, "oneTimeToken").map(SecretString::from),
    }
}

/// The undocumented token answer: `{"token": …}`, `{"oneTimeToken": …}` or a bare JSON string.
pub(crate) fn parse_one_time_token(body: &[u8]) -> Option<SecretString> {
    let token = match serde_json::from_slice::<Value>(body).ok()? {
        Value::String(token) => Some(token),
        Value::Object(map) => json::string(&map, "token").or_else(|| json::string(&map, "oneTimeToken")),
        _ => None,
    }?;
    (!token.is_empty()).then(|| SecretString::from(token))
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
pub(super) fn http_date(headers: &http::HeaderMap) -> Option<OffsetDateTime> {
    let value = headers.get(http::header::DATE)?.to_str().ok()?;
    OffsetDateTime::parse(value.trim(), &Rfc2822).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn answer(body: &str, date: Option<&str>) -> Answer {
        let mut headers = http::HeaderMap::new();
        if let Some(date) = date {
            headers.insert(http::header::DATE, date.parse().expect("ascii"));
        }
        Answer { status: 200, headers, body: bytes::Bytes::copy_from_slice(body.as_bytes()) }
    }

    #[test]
    fn one_time_token_answers_in_all_three_shapes_are_read() {
        for body in [r#"{"token":"t1"}"#, r#"{"oneTimeToken":"t1"}"#, r#""t1""#] {
            let token = parse_one_time_token(body.as_bytes()).expect(body);
            assert_eq!(token.expose_secret(), "t1");
        }
        for body in ["", "{}", r#"{"token":""}"#, "[\"t1\"]", "t1", "42"] {
            assert!(parse_one_time_token(body.as_bytes()).is_none(), "{body}");
        }
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
}
