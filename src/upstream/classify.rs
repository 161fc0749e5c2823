//! What a non-2xx answer means for the endpoint that gave it. The same status
//! says different things per endpoint (a 401 is our API key on the Broker-API
//! but the user's password at login), and the vendor's problem body is read
//! only to tell such cases apart, never passed on.

use http::HeaderMap;
use std::time::Duration;
use time::{OffsetDateTime, format_description::well_known::Rfc2822};

use super::{
    error::{Endpoint, UpstreamFault},
    json::{Problem, ProblemMeaning},
};

/// Interprets a non-2xx answer (`status`, `headers`, `body`) for `endpoint`.
/// The problem's typed `type` decides first (the vendor says to branch on
/// it), then the status (the HTTP one, or the body's own `status` where the
/// HTTP one is a generic refusal), then the title or detail as a whole known
/// phrase.
pub(crate) fn classify(endpoint: Endpoint, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamFault {
    let problem = Problem::parse(body);
    if let Some(fault) = problem.as_ref().and_then(Problem::typed_meaning).and_then(|m| meaning(endpoint, m)) {
        return fault;
    }
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
            | Endpoint::ServiceInfo => UpstreamFault::PermissionDenied,
        },
        404 | 405 if problem.is_none() => UpstreamFault::EndpointNotFound,
        409 if creates(endpoint) => UpstreamFault::AccountAlreadyExists,
        // v2 answers 404 for an unknown email or user account.
        404 if finds(endpoint) => UpstreamFault::AccountNotFound,
        400 | 404 | 410 | 422 => {
            // A generic refusal whose body names the specific status (number or string).
            let body_status = problem.as_ref().and_then(|p| p.status);
            if body_status == Some(409) && creates(endpoint) {
                return UpstreamFault::AccountAlreadyExists;
            }
            if body_status == Some(404) && finds(endpoint) {
                return UpstreamFault::AccountNotFound;
            }
            // v1 says "already exists" or "does not exist" in a 400 or 422.
            if let Some(fault) = problem.as_ref().and_then(Problem::phrase_meaning).and_then(|m| meaning(endpoint, m)) {
                return fault;
            }
            match endpoint {
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
                | Endpoint::PlatformDetails => UpstreamFault::RequestRejected,
            }
        }
        _ => UpstreamFault::RequestRejected,
    }
}

/// The endpoints that create an account, where "already exists" means the email is taken.
fn creates(endpoint: Endpoint) -> bool {
    matches!(endpoint, Endpoint::CreateAccount | Endpoint::CreateUserAccount)
}

/// The endpoints that name an existing account or user account, where "not found" means there is none.
fn finds(endpoint: Endpoint) -> bool {
    matches!(endpoint, Endpoint::IssueOneTimeToken | Endpoint::OpenTradingAccount | Endpoint::AccountByEmail)
}

/// The fault a problem's meaning is for `endpoint`; `None` where it says
/// nothing about that endpoint's call (the status decides then).
fn meaning(endpoint: Endpoint, meaning: ProblemMeaning) -> Option<UpstreamFault> {
    match meaning {
        ProblemMeaning::AlreadyExists if creates(endpoint) => Some(UpstreamFault::AccountAlreadyExists),
        ProblemMeaning::NotFound if finds(endpoint) => Some(UpstreamFault::AccountNotFound),
        ProblemMeaning::AlreadyExists | ProblemMeaning::NotFound => None,
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
    fn each_known_type_decides_before_the_status_and_the_words() {
        use crate::upstream::json::KNOWN_TYPES;
        for (kind, meaning) in KNOWN_TYPES {
            let (endpoints, expected): (&[Endpoint], UpstreamFault) = match meaning {
                ProblemMeaning::AlreadyExists => {
                    (&[Endpoint::CreateAccount, Endpoint::CreateUserAccount], UpstreamFault::AccountAlreadyExists)
                }
                ProblemMeaning::NotFound => (
                    &[Endpoint::IssueOneTimeToken, Endpoint::OpenTradingAccount, Endpoint::AccountByEmail],
                    UpstreamFault::AccountNotFound,
                ),
            };
            for &endpoint in endpoints {
                for status in [400, 404, 409, 422] {
                    // The title says something else, and the status is a string: the type decides.
                    let body = format!(r#"{{"status":"{status}","title":"Bad Request","detail":"x","type":"{kind}"}}"#);
                    assert_eq!(classify_body(endpoint, status, &body), expected, "{kind} at {status} on {endpoint}");
                }
            }
            // On an endpoint it says nothing about, the status decides.
            let body = format!(r#"{{"status":400,"title":"Bad Request","type":"{kind}"}}"#);
            assert_eq!(classify_body(Endpoint::Login, 400, &body), UpstreamFault::RequestRejected, "{kind} at login");
        }
        let unknown = r#"{"status":400,"title":"Bad Request","type":"error://broker-api/some/new-type"}"#;
        assert_eq!(classify_body(Endpoint::CreateUserAccount, 400, unknown), UpstreamFault::RequestRejected);
    }

    #[test]
    fn loose_words_are_not_a_taken_email_and_the_bodys_own_status_counts() {
        for detail in ["Offer does not exist", "Partner id already exists in branch", "Login taken", "Duplicate"] {
            let body = format!(r#"{{"status":422,"title":"Unprocessable Entity","detail":"{detail}"}}"#);
            assert_eq!(classify_body(Endpoint::CreateAccount, 422, &body), UpstreamFault::RequestRejected, "{detail}");
        }
        let squashed = r#"{"status":"409","title":"Conflict"}"#;
        assert_eq!(classify_body(Endpoint::CreateUserAccount, 400, squashed), UpstreamFault::AccountAlreadyExists);
        let squashed = r#"{"status":404,"title":"Not Found"}"#;
        assert_eq!(classify_body(Endpoint::AccountByEmail, 422, squashed), UpstreamFault::AccountNotFound);
        assert_eq!(classify_body(Endpoint::Login, 400, squashed), UpstreamFault::RequestRejected);
        let v2_phrase = r#"{"status":"400","title":"User account already exists."}"#;
        assert_eq!(classify_body(Endpoint::CreateUserAccount, 400, v2_phrase), UpstreamFault::AccountAlreadyExists);
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
