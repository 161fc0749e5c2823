//! Converts gRPC requests into validated commands at the edge. Every rule is
//! checked before any upstream call, all violations are reported together,
//! and no description ever quotes a value (it may be a secret). The sign-in
//! requests are converted here; the account form in [`account`].

mod account;
mod account_v2;
mod checker;
pub mod limits;

pub use account::{CreateAccountCommand, create_account};
pub use account_v2::{AccountSequence, TradingAccountRequest, V2Sequence, account_sequence};

use secrecy::SecretString;
use std::time::Duration;

use crate::{error::SsoError, proto, tenant::TenantSettings};
use checker::Checker;

/// A validated IssueOneTimeToken.
#[derive(Debug)]
pub struct IssueOneTimeTokenCommand {
    pub email: String,
    pub validity: Duration,
    pub start_session: bool,
}

/// A validated Login.
#[derive(Debug)]
pub struct LoginCommand {
    pub email: String,
    pub password: SecretString,
    pub broker_id: String,
}

/// A validated Refresh.
#[derive(Debug)]
pub struct RefreshCommand {
    pub refresh_token: SecretString,
}

/// A pragmatic check of an address as mail systems take it: a dot-atom
/// (RFC 5322) on the left, at most 64 characters; a host name of at least two
/// DNS labels on the right (letters, digits, inner hyphens, 63 at most each).
/// The vendor has the final word; this only stops obvious mistakes before they
/// cost an upstream call. ASCII only, so that the OpenAPI document can state
/// the same rule as a pattern every tool reads alike (JSON Schema patterns
/// have no portable Unicode classes) and as `format: email`; quoted local
/// parts and address literals, which that format allows, are refused here
/// and by the pattern. An internationalised domain is sent in its `xn--` form.
pub fn is_plausible_email(email: &str) -> bool {
    if !email.is_ascii() || email.len() > limits::MAX_EMAIL_CHARS {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else { return false };
    let is_atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let is_label = |label: &str| {
        !label.is_empty()
            && label.len() <= limits::MAX_DNS_LABEL_CHARS
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    local.len() <= limits::MAX_EMAIL_LOCAL_CHARS
        && local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
        && domain.contains('.')
        && domain.split('.').all(is_label)
}

/// RFC 6265 cookie-octets: what may be sent inside `Cookie: rt=…` without
/// breaking (or injecting into) the header.
fn is_cookie_value(value: &str) -> bool {
    value.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

/// Validates IssueOneTimeToken against the tenant's validity bounds.
pub fn issue_one_time_token(
    request: proto::IssueOneTimeTokenRequest,
    tenant: &TenantSettings,
) -> Result<IssueOneTimeTokenCommand, SsoError> {
    let proto::IssueOneTimeTokenRequest { tenant: _, email, validity, start_session } = request;
    let mut c = Checker::default();
    let email = c.email("email", email);
    let max = tenant.one_time_token_max_validity;
    let validity = match validity {
        None => tenant.one_time_token_validity,
        Some(prost_types::Duration { seconds, nanos }) => {
            if nanos != 0 {
                c.violation("validity", "must be a whole number of seconds");
            }
            if seconds < 1 || seconds as u64 > max.as_secs() {
                c.violation("validity", format!("must be between 1s and {}s", max.as_secs()));
            }
            Duration::from_secs(seconds.max(0) as u64)
        }
    };
    c.finish(IssueOneTimeTokenCommand { email, validity, start_session })
}

/// Validates Login; an empty broker id falls back to the tenant's.
pub fn login(request: proto::LoginRequest, tenant: &TenantSettings) -> Result<LoginCommand, SsoError> {
    let proto::LoginRequest { tenant: _, email, password, broker_id } = request;
    let mut c = Checker::default();
    let email = c.email("email", email);
    let password = c.secret("password", password);
    let broker_id = match (broker_id.is_empty(), &tenant.broker_id) {
        (false, _) => c.required_text("broker_id", broker_id),
        (true, Some(default)) => default.clone(),
        (true, None) => {
            c.violation("broker_id", "is required: this tenant has no default broker id");
            String::new()
        }
    };
    c.finish(LoginCommand { email, password, broker_id })
}

/// Whether `value` has the shape of a JWT: three base64url segments joined
/// by dots, the first a JSON header (`{"` encodes as `eyJ`). The platform's
/// session token (`co-auth`) is a JWT; its refresh token (`rt`) is not.
fn looks_like_jwt(value: &str) -> bool {
    let segments: Vec<&str> = value.split('.').collect();
    segments.len() == 3
        && value.starts_with("eyJ")
        && segments
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Validates Refresh. An access token sent as the refresh token (both come
/// in the Login answer) is refused here: the platform would refuse it too,
/// at the cost of a vendor call, and its answer would send the caller into a
/// loop of logins.
pub fn refresh(request: proto::RefreshRequest) -> Result<RefreshCommand, SsoError> {
    let proto::RefreshRequest { tenant: _, refresh_token } = request;
    let mut c = Checker::default();
    if looks_like_jwt(&refresh_token) {
        c.violation(
            "refresh_token",
            "is the session's access token, not its refresh token: send `session.refresh_token` from the \
             Login answer (`refreshToken` in JSON)",
        );
    } else if !refresh_token.is_empty() && !is_cookie_value(&refresh_token) {
        c.violation("refresh_token", "contains characters a cookie value cannot hold");
    }
    let refresh_token = c.secret("refresh_token", refresh_token);
    c.finish(RefreshCommand { refresh_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_pass_and_obvious_mistakes_do_not() {
        for ok in ["a@b.co", "first.last+tag@sub.example.com", "test@match-trade.com"] {
            assert!(is_plausible_email(ok), "{ok}");
        }
        for bad in ["", "plain", "@x.com", "a@", "a@b", "a b@c.com", "a@-x.com", "a@x..com", "a@@x.com", "a..b@x.com"] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }

    #[test]
    fn emails_with_surrounding_spaces_are_refused_saying_why() {
        let mut checker = Checker::default();
        checker.email("email", " a@b.co\n".into());
        checker.email("other", "a@b.co".into());
        let Err(SsoError::InvalidArgument { violations, .. }) = checker.finish(()) else { panic!("invalid") };
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].description.contains("spaces"), "{:?}", violations[0]);
    }

    #[test]
    fn an_access_token_sent_as_the_refresh_token_is_refused_with_the_field_to_send() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln-_x";
        let Err(SsoError::InvalidArgument { violations, .. }) =
            refresh(proto::RefreshRequest { refresh_token: jwt.into(), ..Default::default() })
        else {
            panic!("must be refused")
        };
        assert_eq!(violations[0].field, "refresh_token");
        assert!(violations[0].description.contains("session.refresh_token"), "{:?}", violations[0]);
        assert!(!violations[0].description.contains(jwt));
        for opaque in ["0a1b2c3d4e5f", "rt-1", "eyJ-but.only-two", "abc.def.ghi", "eyJa..c"] {
            let request = proto::RefreshRequest { refresh_token: opaque.into(), ..Default::default() };
            assert!(refresh(request).is_ok(), "{opaque}");
        }
    }

    #[test]
    fn cookie_values_reject_separators_that_could_inject_into_the_header() {
        assert!(is_cookie_value("abc.DEF-123_~"));
        for bad in ["a;b", "a b", "a,b", "a\"b", "a\\b", "a\r\nX: y"] {
            assert!(!is_cookie_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn create_account_reports_every_violation_at_once_without_values() {
        let request = proto::CreateAccountRequest {
            email: "not-an-email".into(),
            password: String::new(),
            offer_uuid: "nope".into(),
            personal_details: Some(proto::PersonalDetails {
                firstname: " ".into(),
                date_of_birth: "1990-13-40".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Err(SsoError::InvalidArgument { violations, .. }) = create_account(request) else {
            panic!("must be invalid")
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "email",
                "password",
                "offer_uuid",
                "personal_details.firstname",
                "personal_details.lastname",
                "personal_details.date_of_birth"
            ]
        );
        assert!(violations.iter().all(|v| !v.description.contains("not-an-email")));
    }

    #[test]
    fn empty_sections_are_left_out_of_the_account() {
        let request = proto::CreateAccountRequest {
            email: "a@b.co".into(),
            password: "pw".into(),
            personal_details: Some(proto::PersonalDetails {
                firstname: "A".into(),
                lastname: "B".into(),
                ..Default::default()
            }),
            address_details: Some(proto::AddressDetails::default()),
            account_configuration: Some(proto::AccountConfiguration {
                crm_user_scope: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let command = create_account(request).expect("valid");
        assert!(command.account.address_details.is_none());
        assert!(command.account.account_configuration.is_none());
    }
}
