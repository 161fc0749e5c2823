//! The proto replies, built in one place from what the vendor answered: the
//! account, a Session with its expiry and the browser cookies re-scoped to the
//! shared parent domain, login links of the form `{platform}/?auth={token}`,
//! trading accounts, and the sign-in error of an account created without a
//! way in.

use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

use crate::{
    error::upstream_code_and_reason,
    proto,
    tenant::TenantSettings,
    upstream::{
        CreatedAccount, OpenedTradingAccount, PlatformSession, SameSitePolicy, TradingAccountInfo, UpstreamCookie,
        UpstreamError,
    },
};

/// The account the vendor created; the requested email stands in when the
/// answer leaves it out.
pub fn account(created: &CreatedAccount, requested_email: &str) -> proto::Account {
    let verification_status = match created.verification_status.as_deref() {
        Some("NEW") => proto::VerificationStatus::New,
        Some("REJECTED") => proto::VerificationStatus::Rejected,
        Some("VERIFIED") => proto::VerificationStatus::Verified,
        Some("BLOCKED") => proto::VerificationStatus::Blocked,
        Some("PENDING_VERIFICATION") => proto::VerificationStatus::PendingVerification,
        Some("UNVERIFIED") => proto::VerificationStatus::Unverified,
        _ => proto::VerificationStatus::Unspecified,
    };
    let client_type = match created.client_type.as_deref() {
        Some("RETAIL") => proto::ClientType::Retail,
        Some("PROFESSIONAL") => proto::ClientType::Professional,
        Some("EXPERIENCED") => proto::ClientType::Experienced,
        _ => proto::ClientType::Unspecified,
    };
    proto::Account {
        uuid: created.uuid.clone().unwrap_or_default(),
        email: created.email.clone().unwrap_or_else(|| requested_email.to_string()),
        verification_status: verification_status as i32,
        client_type: client_type as i32,
        created: created.created.map(timestamp),
        updated: created.updated.map(timestamp),
        broker_id: created.broker_id.clone().unwrap_or_default(),
    }
}

/// The trading account opened with a new user; the requested group stands in
/// when the answer leaves it out.
pub fn opened_trading_account(opened: &OpenedTradingAccount, requested_group: &str) -> proto::OpenedTradingAccount {
    proto::OpenedTradingAccount {
        login: opened.login.clone().unwrap_or_default(),
        uuid: opened.uuid.clone().unwrap_or_default(),
        group: opened.group.clone().unwrap_or_else(|| requested_group.to_string()),
    }
}

/// Why the trading account of a created user could not be opened.
pub fn trading_account_error(error: &UpstreamError) -> proto::TradingAccountError {
    proto::TradingAccountError {
        reason: upstream_code_and_reason(&error.fault).1.to_string(),
        message: error.to_string(),
    }
}

/// Why an account was created but could not be signed in.
pub fn sign_in_error(error: &UpstreamError) -> proto::SignInError {
    proto::SignInError { reason: upstream_code_and_reason(&error.fault).1.to_string(), message: error.to_string() }
}

/// A protobuf timestamp.
pub fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.unix_timestamp(), nanos: at.nanosecond() as i32 }
}

/// The browser URL that redeems a one-time token: `{platform}/?auth={token}`.
pub fn redirect_url(platform_url: &Url, token: &SecretString) -> String {
    let base = platform_url.as_str().trim_end_matches('/');
    let token = token.expose_secret();
    let mut url = String::with_capacity(base.len() + "/?auth=".len() + token.len());
    url.push_str(base);
    url.push_str("/?auth=");
    url.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
    url
}

/// A login link for a token.
pub fn login_link(
    tenant: &TenantSettings,
    token: &SecretString,
    expires_at: Option<OffsetDateTime>,
) -> proto::LoginLink {
    proto::LoginLink {
        one_time_token: token.expose_secret().to_string(),
        redirect_url: redirect_url(&tenant.platform_url, token),
        expires_at: expires_at.map(timestamp),
    }
}

/// Refresh's reply: the renewed session, as of now.
pub fn refreshed(tenant: &TenantSettings, granted: &PlatformSession) -> proto::RefreshResponse {
    proto::RefreshResponse { session: Some(browser_session(tenant, granted, OffsetDateTime::now_utc())) }
}

/// The Session to return for a platform session.
pub fn browser_session(tenant: &TenantSettings, granted: &PlatformSession, now: OffsetDateTime) -> proto::Session {
    let access_expiry =
        granted.access_cookie.as_ref().and_then(|c| c.expiry(now)).unwrap_or(now + tenant.session_lifetime);
    let access_cookie = match &granted.access_cookie {
        Some(cookie) => browser_cookie(tenant, cookie, now),
        // The token came only in the body: give it the attributes the platform itself uses.
        None => browser_cookie(
            tenant,
            &UpstreamCookie {
                name: "co-auth".into(),
                value: granted.access_token.clone(),
                path: Some("/".into()),
                max_age: Some(tenant.session_lifetime),
                expires: None,
                secure: tenant.platform_url.scheme() == "https",
                http_only: true,
                same_site: Some(SameSitePolicy::Lax),
            },
            now,
        ),
    };
    let mut cookies = vec![access_cookie];
    cookies.extend(granted.refresh_cookies.iter().map(|c| browser_cookie(tenant, c, now)));
    proto::Session {
        access_token: granted.access_token.expose_secret().to_string(),
        refresh_token: granted.refresh_token.as_ref().map(|t| t.expose_secret().to_string()).unwrap_or_default(),
        expires_at: Some(timestamp(access_expiry)),
        redirect_url: tenant.platform_url.to_string(),
        cookies,
    }
}

/// The cookie as the platform set it, but with the Domain the calling
/// application and the platform share, so the browser sends it to the platform.
fn browser_cookie(tenant: &TenantSettings, upstream: &UpstreamCookie, now: OffsetDateTime) -> proto::BrowserCookie {
    // Expires is turned into Max-Age so the lifetime does not depend on clock skew.
    let max_age: Option<Duration> = upstream.max_age.or_else(|| {
        let until = upstream.expires? - now;
        Duration::try_from(until).ok()
    });
    let domain = tenant.cookie_domain.clone().unwrap_or_default();
    let path = upstream.path.clone().unwrap_or_else(|| "/".into());
    let mut builder = cookie::Cookie::build((upstream.name.clone(), upstream.value.expose_secret().to_string()))
        .path(path.clone())
        .secure(upstream.secure)
        .http_only(upstream.http_only);
    if !domain.is_empty() {
        builder = builder.domain(domain.clone());
    }
    if let Some(age) = max_age.and_then(|a| time::Duration::try_from(a).ok()) {
        builder = builder.max_age(age);
    }
    if let Some(same_site) = upstream.same_site {
        builder = builder.same_site(match same_site {
            SameSitePolicy::Strict => cookie::SameSite::Strict,
            SameSitePolicy::Lax => cookie::SameSite::Lax,
            SameSitePolicy::None => cookie::SameSite::None,
        });
    }
    let same_site = match upstream.same_site {
        None => proto::SameSite::Unspecified,
        Some(SameSitePolicy::Strict) => proto::SameSite::Strict,
        Some(SameSitePolicy::Lax) => proto::SameSite::Lax,
        Some(SameSitePolicy::None) => proto::SameSite::None,
    };
    proto::BrowserCookie {
        name: upstream.name.clone(),
        value: upstream.value.expose_secret().to_string(),
        domain,
        path,
        max_age: max_age.map(|a| prost_types::Duration { seconds: a.as_secs() as i64, nanos: 0 }),
        secure: upstream.secure,
        http_only: upstream.http_only,
        same_site: same_site as i32,
        set_cookie_header: builder.build().to_string(),
    }
}

/// A trading account as the proto carries it.
pub fn trading_account(info: &TradingAccountInfo) -> proto::TradingAccount {
    let has_offer = info.offer_uuid.is_some() || info.offer_name.is_some() || info.system_uuid.is_some();
    proto::TradingAccount {
        trading_account_id: info.trading_account_id.clone().unwrap_or_default(),
        uuid: info.uuid.clone().unwrap_or_default(),
        offer: has_offer.then(|| proto::Offer {
            uuid: info.offer_uuid.clone().unwrap_or_default(),
            name: info.offer_name.clone().unwrap_or_default(),
            demo: info.offer_demo.unwrap_or(false),
            system_uuid: info.system_uuid.clone().unwrap_or_default(),
        }),
        branch_uuid: info.branch_uuid.clone().unwrap_or_default(),
        created: info.created.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_url_encodes_the_token_and_avoids_a_double_slash() {
        let platform = Url::parse("https://trade.broker.com/").expect("url");
        let token = SecretString::from("a+b/c=".to_string());
        assert_eq!(redirect_url(&platform, &token), "https://trade.broker.com/?auth=a%2Bb%2Fc%3D");
        let with_path = Url::parse("https://broker.com/trade").expect("url");
        assert_eq!(redirect_url(&with_path, &SecretString::from("t".to_string())), "https://broker.com/trade/?auth=t");
    }
}
