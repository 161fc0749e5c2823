//! What a non-2xx answer means for the endpoint that gave it. The same status
//! says different things per endpoint (a 401 is our API key on the Broker-API
//! but the user's password at login), and the vendor's problem body is read
//! only to tell such cases apart, never passed on.

use http::HeaderMap;
use std::time::Duration;
use time::{OffsetDateTime, format_description::well_known::Rfc2822};

use super::{
    error::{Endpoint, UpstreamFault},
    json::Problem,
};

/// Interprets a non-2xx answer (`status`, `headers`, `body`) for `endpoint`.
pub(crate) fn classify(endpoint: Endpoint, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamFault {
    let problem = Problem::parse(body);
    match status {
        429 => UpstreamFault::RateLimited { retry_after: retry_after(headers) },
        500..=599 => UpstreamFault::ServerError,
        300..=399 => UpstreamFault::Protocol { problem: "unexpected redirect (a login page or bot protection?)" },
        401 | 403 => match endpoint {
            Endpoint::Login => UpstreamFault::CredentialsRejected,
            Endpoint::LoginWithToken => UpstreamFault::OneTimeTokenRejected,
            Endpoint::Refresh => UpstreamFault::RefreshTokenRejected,
            // Bot protection in front of the platform, not a key.
            Endpoint::PlatformDetails => UpstreamFault::PermissionDenied,
            _ if status == 401 => UpstreamFault::ApiKeyRejected,
            Endpoint::CreateAccount
            | Endpoint::IssueOneTimeToken
            | Endpoint::CreateUserAccount
            | Endpoint::OpenTradingAccount
            | Endpoint::AccountByEmail
            | Endpoint::TradingAccountsOfUser
            | Endpoint::ServiceInfo => UpstreamFault::PermissionDenied,
        },
        404 | 405 if problem.is_none() => UpstreamFault::EndpointNotFound,
        409 if matches!(endpoint, Endpoint::CreateAccount | Endpoint::CreateUserAccount) => {
            UpstreamFault::AccountAlreadyExists
        }
        400 | 404 | 410 | 422 => match endpoint {
            Endpoint::CreateAccount | Endpoint::CreateUserAccount
                if problem.as_ref().is_some_and(Problem::says_already_exists) =>
            {
                UpstreamFault::AccountAlreadyExists
            }
            // v2 answers 404 for an unknown email or user account, v1 a 422 that says so.
            Endpoint::IssueOneTimeToken
            | Endpoint::OpenTradingAccount
            | Endpoint::AccountByEmail
            | Endpoint::TradingAccountsOfUser
                if status == 404 || problem.as_ref().is_some_and(Problem::says_not_found) =>
            {
                UpstreamFault::AccountNotFound
            }
            Endpoint::LoginWithToken => UpstreamFault::OneTimeTokenRejected,
            Endpoint::Refresh => UpstreamFault::RefreshTokenRejected,
            Endpoint::Login if status == 404 => UpstreamFault::CredentialsRejected,
            Endpoint::CreateAccount
            | Endpoint::IssueOneTimeToken
            | Endpoint::Login
            | Endpoint::CreateUserAccount
            | Endpoint::OpenTradingAccount
            | Endpoint::AccountByEmail
            | Endpoint::ServiceInfo
            | Endpoint::TradingAccountsOfUser
            | Endpoint::PlatformDetails => UpstreamFault::RequestRejected,
        },
        _ => UpstreamFault::RequestRejected,
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let wait = at - OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_body(endpoint: Endpoint, status: u16, body: &str) -> UpstreamFault {
        classify(endpoint, status, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn broker_api_401_is_our_key_and_403_our_permission() {
        assert_eq!(classify_body(Endpoint::CreateAccount, 401, ""), UpstreamFault::ApiKeyRejected);
        assert_eq!(classify_body(Endpoint::IssueOneTimeToken, 403, ""), UpstreamFault::PermissionDenied);
        assert_eq!(classify_body(Endpoint::Login, 401, ""), UpstreamFault::CredentialsRejected);
    }

    #[test]
    fn duplicate_email_is_recognised_as_409_or_as_a_422_that_says_so() {
        assert_eq!(classify_body(Endpoint::CreateAccount, 409, ""), UpstreamFault::AccountAlreadyExists);
        let body = r#"{"status":422,"title":"Unprocessable","detail":"Account with this email already exists"}"#;
        assert_eq!(classify_body(Endpoint::CreateAccount, 422, body), UpstreamFault::AccountAlreadyExists);
        let other = r#"{"status":422,"title":"Unprocessable","detail":"Offer is not active"}"#;
        assert_eq!(classify_body(Endpoint::CreateAccount, 422, other), UpstreamFault::RequestRejected);
    }

    #[test]
    fn v2s_typed_409_and_an_unknown_email_answered_404_or_422_are_recognised() {
        let typed = r#"{"status":409,"title":"User account already exists.","type":"error://broker-api/user-account/already-exists"}"#;
        assert_eq!(classify_body(Endpoint::CreateUserAccount, 409, typed), UpstreamFault::AccountAlreadyExists);
        let typed_400 =
            r#"{"status":400,"title":"Bad Request","type":"error://broker-api/user-account/already-exists"}"#;
        assert_eq!(classify_body(Endpoint::CreateUserAccount, 400, typed_400), UpstreamFault::AccountAlreadyExists);
        let v2_unknown = r#"{"status":404,"title":"Not Found","type":"error://broker-api/user-account/not-found"}"#;
        assert_eq!(classify_body(Endpoint::IssueOneTimeToken, 404, v2_unknown), UpstreamFault::AccountNotFound);
        let v1_unknown =
            r#"{"status":422,"title":"Unprocessable Entity","detail":"User with this email does not exist"}"#;
        assert_eq!(classify_body(Endpoint::IssueOneTimeToken, 422, v1_unknown), UpstreamFault::AccountNotFound);
        assert_eq!(classify_body(Endpoint::OpenTradingAccount, 404, v2_unknown), UpstreamFault::AccountNotFound);
        assert_eq!(classify_body(Endpoint::ServiceInfo, 401, ""), UpstreamFault::ApiKeyRejected);
        assert_eq!(classify_body(Endpoint::AccountByEmail, 403, ""), UpstreamFault::PermissionDenied);
    }

    #[test]
    fn a_404_without_a_problem_body_means_a_wrong_path() {
        assert_eq!(classify_body(Endpoint::Login, 404, "<html>Not Found</html>"), UpstreamFault::EndpointNotFound);
        let problem = r#"{"status":404,"title":"Not Found","detail":"account not found"}"#;
        assert_eq!(classify_body(Endpoint::IssueOneTimeToken, 404, problem), UpstreamFault::AccountNotFound);
    }

    #[test]
    fn a_redirect_is_a_protocol_error_and_a_429_carries_its_wait() {
        assert!(matches!(classify_body(Endpoint::Login, 302, ""), UpstreamFault::Protocol { .. }));
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "3".parse().expect("ascii"));
        assert_eq!(
            classify(Endpoint::Refresh, 429, &headers, b""),
            UpstreamFault::RateLimited { retry_after: Some(Duration::from_secs(3)) }
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().expect("ascii"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(http::header::RETRY_AFTER, "Sun, 06 Nov 1994 08:49:37 GMT".parse().expect("ascii"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date means retry now");
    }
}
