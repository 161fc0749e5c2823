//! The Platform-API client: password login, one-time-token login and session
//! refresh. Sessions travel as cookies; `Set-Cookie` is the truth and a token
//! in the body is accepted when present.

use bytes::Bytes;
use http::{
    HeaderValue,
    header::{ACCEPT, CONTENT_TYPE, COOKIE},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use time::OffsetDateTime;
use url::Url;

use super::{
    cookies::{self, REFRESH_COOKIE, SESSION_COOKIE, UpstreamCookie},
    error::{Endpoint, UpstreamError, UpstreamFault},
    exchange::{Answer, exchange},
    gate::{GateContext, UpstreamGate},
    http_client::HttpClient,
    json,
    outgoing::{Outgoing, endpoint_url, json_body},
};
use crate::{deadline::Deadline, tenant::TenantSettings};

/// A platform session as the platform granted it.
#[derive(Debug)]
pub struct PlatformSession {
    pub access_token: SecretString,
    /// The `co-auth` cookie with its attributes, when the platform set one.
    pub access_cookie: Option<UpstreamCookie>,
    /// The `rt` value to send to the refresh endpoint.
    pub refresh_token: Option<SecretString>,
    /// Every `rt` cookie the platform set (they differ by Path).
    pub refresh_cookies: Vec<UpstreamCookie>,
    pub trading_accounts: Vec<TradingAccountInfo>,
    pub selected_trading_account: Option<TradingAccountInfo>,
}

/// A trading account listed at login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradingAccountInfo {
    pub trading_account_id: Option<String>,
    pub uuid: Option<String>,
    pub offer_uuid: Option<String>,
    pub offer_name: Option<String>,
    pub offer_demo: Option<bool>,
    pub system_uuid: Option<String>,
    pub branch_uuid: Option<String>,
    pub created: Option<OffsetDateTime>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginBody<'a> {
    email: &'a str,
    password: &'a str,
    broker_id: &'a str,
}

#[derive(Serialize)]
struct TokenLoginBody<'a> {
    token: &'a str,
}

/// Client of one broker's platform.
#[derive(Debug, Clone)]
pub struct PlatformApi {
    http: HttpClient,
    login_url: Url,
    login_with_token_url: Url,
    refresh_url: Url,
    platform_details_url: Url,
    gate: Arc<UpstreamGate>,
}

/// What the platform says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformDetails {
    /// The broker id that Login sends as `brokerId`.
    pub partner_id: Option<String>,
}

impl PlatformApi {
    /// A client for the tenant's platform on the shared HTTP client.
    pub fn new(http: HttpClient, tenant: &TenantSettings, gates: Arc<GateContext>) -> Result<Self, String> {
        Ok(Self {
            http,
            gate: Arc::new(UpstreamGate::new(&tenant.name, "platform", gates)),
            login_url: endpoint_url(&tenant.platform_url, &tenant.paths.login)?,
            login_with_token_url: endpoint_url(&tenant.platform_url, &tenant.paths.login_with_token)?,
            refresh_url: endpoint_url(&tenant.platform_url, &tenant.paths.refresh)?,
            platform_details_url: endpoint_url(&tenant.platform_url, &tenant.paths.platform_details)?,
        })
    }

    fn post_json(&self, url: &Url, body: &impl Serialize, endpoint: Endpoint) -> Result<Outgoing, UpstreamError> {
        Ok(Outgoing::post(url, json_body(endpoint, body)?)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json")))
    }

    /// `POST /manager/mtr-login` with email, password and broker id.
    pub async fn login(
        &self,
        email: &str,
        password: &SecretString,
        broker_id: &str,
        deadline: Deadline,
    ) -> Result<PlatformSession, UpstreamError> {
        let body = LoginBody { email, password: password.expose_secret(), broker_id };
        let request = self.post_json(&self.login_url, &body, Endpoint::Login)?;
        let answer = exchange(Endpoint::Login, &self.gate, &self.http, request, deadline).await?;
        session_from_answer(Endpoint::Login, &answer, self.refresh_url.path(), None)
    }

    /// `POST /manager/login/co/with-token`. The token is single-use, so this is
    /// sent exactly once whatever happens.
    pub async fn login_with_token(
        &self,
        token: &SecretString,
        deadline: Deadline,
    ) -> Result<PlatformSession, UpstreamError> {
        let body = TokenLoginBody { token: token.expose_secret() };
        let request = self.post_json(&self.login_with_token_url, &body, Endpoint::LoginWithToken)?;
        let answer = exchange(Endpoint::LoginWithToken, &self.gate, &self.http, request, deadline).await?;
        session_from_answer(Endpoint::LoginWithToken, &answer, self.refresh_url.path(), None)
    }

    /// `POST /manager/refresh-token` with the refresh token as the `rt` cookie.
    /// The answer may be an empty body with the new session only in `Set-Cookie`.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        deadline: Deadline,
    ) -> Result<PlatformSession, UpstreamError> {
        let mut cookie = HeaderValue::from_str(&format!("{REFRESH_COOKIE}={}", refresh_token.expose_secret()))
            .map_err(|_| {
                UpstreamError::new(
                    Endpoint::Refresh,
                    None,
                    UpstreamFault::Protocol { problem: "the refresh token is not a cookie value" },
                )
            })?;
        cookie.set_sensitive(true);
        let request = Outgoing::post(&self.refresh_url, Bytes::new())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(COOKIE, cookie);
        let answer = exchange(Endpoint::Refresh, &self.gate, &self.http, request, deadline).await?;
        session_from_answer(Endpoint::Refresh, &answer, self.refresh_url.path(), Some(refresh_token))
    }
}

impl PlatformApi {
    /// `GET /manager/platform-details`: the platform's partner id, a public read.
    pub async fn platform_details(&self, deadline: Deadline) -> Result<PlatformDetails, UpstreamError> {
        let request =
            Outgoing::get(&self.platform_details_url).header(ACCEPT, HeaderValue::from_static("application/json"));
        let answer = exchange(Endpoint::PlatformDetails, &self.gate, &self.http, request, deadline).await?;
        let map = json::object(&answer.body).unwrap_or_default();
        Ok(PlatformDetails { partner_id: json::string(&map, "partnerId").or_else(|| json::string(&map, "brokerId")) })
    }
}

/// The session in a platform answer: `Set-Cookie` first, a body token when
/// present, the `rt` cookie a browser would send to `refresh_path`.
pub(crate) fn session_from_answer(
    endpoint: Endpoint,
    answer: &Answer,
    refresh_path: &str,
    sent_refresh_token: Option<&SecretString>,
) -> Result<PlatformSession, UpstreamError> {
    let now = OffsetDateTime::now_utc();
    let set_cookies = cookies::parse_set_cookies(&answer.headers, now);
    let body = json::object(&answer.body).unwrap_or_default();
    let access_cookie = cookies::last_named(&set_cookies, SESSION_COOKIE).cloned();
    let access_token = match (&access_cookie, json::string(&body, "token")) {
        (Some(cookie), _) => cookie.value.clone(),
        (None, Some(token)) => SecretString::from(token),
        (None, None) => {
            return Err(UpstreamError::new(
                endpoint,
                Some(answer.status),
                UpstreamFault::Protocol { problem: "no session token (neither a co-auth cookie nor a token field)" },
            ));
        }
    };
    let refresh_token = cookies::refresh_cookie_for(&set_cookies, refresh_path)
        .map(|c| c.value.clone())
        // A platform that does not rotate leaves the sent token valid.
        .or_else(|| sent_refresh_token.cloned());
    let refresh_cookies = set_cookies.iter().filter(|c| c.name == REFRESH_COOKIE).cloned().collect();
    let trading_accounts = body
        .get("tradingAccounts")
        .or_else(|| body.get("accounts"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_object).map(trading_account).collect())
        .unwrap_or_default();
    let selected_trading_account = json::child(&body, "selectedTradingAccount")
        .or_else(|| json::child(&body, "selectedAccount"))
        .map(trading_account);
    Ok(PlatformSession {
        access_token,
        access_cookie,
        refresh_token,
        refresh_cookies,
        trading_accounts,
        selected_trading_account,
    })
}

fn trading_account(map: &Map<String, Value>) -> TradingAccountInfo {
    let offer = json::child(map, "offer");
    TradingAccountInfo {
        trading_account_id: json::string(map, "tradingAccountId").or_else(|| json::string(map, "login")),
        uuid: json::string(map, "uuid"),
        offer_uuid: offer.and_then(|o| json::string(o, "uuid")),
        offer_name: offer.and_then(|o| json::string(o, "name")),
        offer_demo: offer.and_then(|o| json::boolean(o, "demo")),
        system_uuid: offer.and_then(|o| json::child(o, "system")).and_then(|s| json::string(s, "uuid")),
        branch_uuid: json::string(map, "branchUuid"),
        created: json::timestamp(map, "created"),
    }
}
