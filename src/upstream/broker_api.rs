//! The Broker-API client: account creation and one-time tokens, authenticated
//! by the broker's API key.

use http::{
    HeaderValue,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;
use url::Url;

use super::{
    authorization::Authorization,
    error::{Endpoint, UpstreamError, UpstreamFault},
    exchange::{Answer, exchange},
    gate::{GateContext, UpstreamGate},
    http_client::{HttpClient, Outgoing},
    json,
};
use crate::{deadline::Deadline, tenant::TenantSettings};

/// A validated account to create: the body of `POST /v1/accounts`.
/// Every optional field is `None` rather than empty, so the body never carries
/// an empty string or a null (the vendor refuses both).
#[derive(Debug)]
pub struct NewAccount {
    pub email: String,
    pub password: SecretString,
    pub offer_uuid: Option<String>,
    pub client_type: Option<&'static str>,
    pub create_as_deposited_account: Option<bool>,
    pub personal_details: PersonalDetails,
    pub contact_details: Option<ContactDetails>,
    pub account_configuration: Option<AccountConfiguration>,
    pub address_details: Option<AddressDetails>,
    pub banking_details: Option<BankingDetails>,
    pub lead_details: Option<LeadDetails>,
}

/// `personalDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDetails {
    pub firstname: String,
    pub lastname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citizenship: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marital_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passport: Option<Passport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_identification_number: Option<String>,
}

/// `personalDetails.passport`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Passport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// `contactDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fax_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_contact: Option<ToContact>,
}

/// `contactDetails.toContact`: `alreadyContacted` is required whenever it is sent.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToContact {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_contact_date: Option<String>,
    pub already_contacted: bool,
}

/// `accountConfiguration`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_manager_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ib_parent_trading_account_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_user_scope: Option<CrmUserScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_type_contact: Option<bool>,
}

/// `accountConfiguration.crmUserScope`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmUserScope {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branch_scope: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manager_pools: Vec<String>,
}

/// `addressDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `bankingDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BankingDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_swift_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
}

/// `leadDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub become_active_client_time: Option<String>,
}

/// The wire body; borrows the account so the password is exposed only here.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateAccountBody<'a> {
    email: &'a str,
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    offer_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_as_deposited_account: Option<bool>,
    personal_details: &'a PersonalDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_details: Option<&'a ContactDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_configuration: Option<&'a AccountConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address_details: Option<&'a AddressDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    banking_details: Option<&'a BankingDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lead_details: Option<&'a LeadDetails>,
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

/// Client of one broker's Broker-API.
#[derive(Debug, Clone)]
pub struct BrokerApi {
    pub(super) http: HttpClient,
    /// v1 and CRM-API: the account; v2: the user account.
    pub(super) create_account_url: Url,
    one_time_token_url: Url,
    pub(super) v2: super::broker_api_v2::V2Paths,
    /// The `Authorization` value, built from the key at each call.
    pub(super) authorization: Authorization,
    pub(super) gate: Arc<UpstreamGate>,
}

impl BrokerApi {
    /// A client for the tenant's Broker-API on the shared HTTP client.
    pub fn new(http: HttpClient, tenant: &TenantSettings, gates: Arc<GateContext>) -> Result<Self, String> {
        Ok(Self {
            http,
            gate: Arc::new(UpstreamGate::new(&tenant.name, "broker-api", gates)),
            create_account_url: endpoint_url(&tenant.broker_api_url, &tenant.paths.create_account)?,
            one_time_token_url: endpoint_url(&tenant.broker_api_url, &tenant.paths.one_time_token)?,
            v2: super::broker_api_v2::V2Paths::new(tenant)?,
            authorization: Authorization::new(&tenant.api_key, tenant.auth_scheme)?,
        })
    }

    pub(super) fn post(&self, url: &Url, body: Vec<u8>) -> Outgoing {
        Outgoing::post(url, body)
            .header(AUTHORIZATION, self.authorization.current())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
    }

    /// `POST /v1/accounts`. Sent once, never retried: a retry could create a
    /// second account.
    pub async fn create_account(
        &self,
        account: &NewAccount,
        deadline: Deadline,
    ) -> Result<CreatedAccount, UpstreamError> {
        let body = CreateAccountBody {
            email: &account.email,
            password: account.password.expose_secret(),
            offer_uuid: account.offer_uuid.as_deref(),
            client_type: account.client_type,
            create_as_deposited_account: account.create_as_deposited_account,
            personal_details: &account.personal_details,
            contact_details: account.contact_details.as_ref(),
            account_configuration: account.account_configuration.as_ref(),
            address_details: account.address_details.as_ref(),
            banking_details: account.banking_details.as_ref(),
            lead_details: account.lead_details.as_ref(),
        };
        let bytes = serialize(Endpoint::CreateAccount, &body)?;
        let request = self.post(&self.create_account_url, bytes);
        let answer = exchange(Endpoint::CreateAccount, &self.gate, &self.http, request, deadline).await?;
        Ok(parse_created_account(&answer))
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
        let bytes = serialize(Endpoint::IssueOneTimeToken, &body)?;
        let expires_at = OffsetDateTime::now_utc() + validity;
        let request = self.post(&self.one_time_token_url, bytes);
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
}

pub(super) fn serialize(endpoint: Endpoint, body: &impl Serialize) -> Result<Vec<u8>, UpstreamError> {
    serde_json::to_vec(body).map_err(|_| {
        UpstreamError::new(endpoint, None, UpstreamFault::Protocol { problem: "the request could not be encoded" })
    })
}

/// Base URL plus configured path, keeping any path prefix the base URL has;
/// checked once that requests can be sent to it.
pub(crate) fn endpoint_url(base: &Url, path: &str) -> Result<Url, String> {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    match url.as_str().parse::<http::Uri>() {
        Ok(_) => Ok(url),
        Err(e) => Err(format!("the upstream URL {url} cannot be requested: {e}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_keep_a_base_path_prefix() {
        let base = Url::parse("https://host.example/broker-api/").expect("url");
        let url = endpoint_url(&base, "/v1/accounts").expect("requestable");
        assert_eq!(url.as_str(), "https://host.example/broker-api/v1/accounts");
        let bare = Url::parse("https://host.example").expect("url");
        let url = endpoint_url(&bare, "/v1/accounts").expect("requestable");
        assert_eq!(url.as_str(), "https://host.example/v1/accounts");
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
}
