//! `Set-Cookie` headers from the platform: parsed into attributes we can hand
//! on, and the rules for finding the session (`co-auth`) and the refresh
//! token (`rt`) among possibly several, path-scoped cookies.

use http::header::{HeaderMap, SET_COOKIE};
use secrecy::SecretString;
use std::time::Duration;
use time::OffsetDateTime;

/// The platform's session cookie.
pub const SESSION_COOKIE: &str = "co-auth";
/// The platform's refresh-token cookie.
pub const REFRESH_COOKIE: &str = "rt";

/// Longest cookie lifetime honoured, as browsers do (RFC 6265bis: 400 days).
/// A larger Max-Age from the platform is capped, never allowed to overflow.
pub const MAX_COOKIE_AGE: Duration = Duration::from_secs(400 * 24 * 60 * 60);

/// The SameSite attribute of a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSitePolicy {
    Strict,
    Lax,
    None,
}

/// A cookie the platform set.
#[derive(Debug, Clone)]
pub struct UpstreamCookie {
    pub name: String,
    pub value: SecretString,
    pub path: Option<String>,
    pub max_age: Option<Duration>,
    pub expires: Option<OffsetDateTime>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<SameSitePolicy>,
}

impl UpstreamCookie {
    /// When the cookie stops being valid, if it says.
    pub fn expiry(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match (self.max_age, self.expires) {
            (Some(max_age), _) => now.checked_add(time::Duration::try_from(max_age.min(MAX_COOKIE_AGE)).ok()?),
            (None, Some(at)) => Some(at),
            (None, None) => None,
        }
    }
}

/// Every usable cookie in the answer's `Set-Cookie` headers. Deletions (empty
/// value, `Max-Age=0` or an expiry in the past) and unparsable headers are skipped.
pub(crate) fn parse_set_cookies(headers: &HeaderMap, now: OffsetDateTime) -> Vec<UpstreamCookie> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|text| cookie::Cookie::parse(text.to_string()).ok())
        .filter_map(|parsed| {
            let max_age = match parsed.max_age() {
                Some(age) if age.is_positive() => Some(Duration::try_from(age).ok()?.min(MAX_COOKIE_AGE)),
                Some(_) => return None,
                None => None,
            };
            let expires = parsed.expires_datetime();
            if parsed.value().is_empty() || (max_age.is_none() && expires.is_some_and(|at| at <= now)) {
                return None;
            }
            let same_site = parsed.same_site().map(|s| match s {
                cookie::SameSite::Strict => SameSitePolicy::Strict,
                cookie::SameSite::Lax => SameSitePolicy::Lax,
                cookie::SameSite::None => SameSitePolicy::None,
            });
            Some(UpstreamCookie {
                name: parsed.name().to_string(),
                value: SecretString::from(parsed.value().to_string()),
                path: parsed.path().map(str::to_string),
                max_age,
                expires,
                secure: parsed.secure().unwrap_or(false),
                http_only: parsed.http_only().unwrap_or(false),
                same_site,
            })
        })
        .collect()
}

/// The last cookie of that name: a later header overrides an earlier one.
pub(crate) fn last_named<'a>(cookies: &'a [UpstreamCookie], name: &str) -> Option<&'a UpstreamCookie> {
    cookies.iter().rev().find(|c| c.name == name)
}

/// The `rt` cookie a browser would send to `refresh_path`: the one with the
/// longest matching Path; failing that, any `rt` (some platforms set it at `/`
/// or at a path other than the configured one).
pub(crate) fn refresh_cookie_for<'a>(cookies: &'a [UpstreamCookie], refresh_path: &str) -> Option<&'a UpstreamCookie> {
    let refresh_cookies = || cookies.iter().filter(|c| c.name == REFRESH_COOKIE);
    refresh_cookies()
        .filter(|c| path_matches(c.path.as_deref().unwrap_or("/"), refresh_path))
        .max_by_key(|c| c.path.as_deref().unwrap_or("/").len())
        .or_else(|| refresh_cookies().next_back())
}

/// RFC 6265 §5.1.4 path-match.
fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn headers(set_cookies: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for c in set_cookies {
            map.append(SET_COOKIE, c.parse().expect("header"));
        }
        map
    }

    #[test]
    fn the_rt_cookie_whose_path_matches_the_refresh_path_is_chosen() {
        let cookies = parse_set_cookies(
            &headers(&[
                "rt=backend; Path=/mtr-backend; HttpOnly",
                "rt=manager; Path=/manager/refresh-token; HttpOnly; Secure",
                "co-auth=session; Path=/; Max-Age=900",
            ]),
            OffsetDateTime::now_utc(),
        );
        let chosen = refresh_cookie_for(&cookies, "/manager/refresh-token").expect("found");
        assert_eq!(chosen.value.expose_secret(), "manager");
        let chosen = refresh_cookie_for(&cookies, "/mtr-backend/refresh-token").expect("found");
        assert_eq!(chosen.value.expose_secret(), "backend");
    }

    #[test]
    fn a_path_prefix_only_matches_at_a_slash_boundary() {
        assert!(path_matches("/manager", "/manager/refresh-token"));
        assert!(path_matches("/", "/manager/refresh-token"));
        assert!(!path_matches("/man", "/manager/refresh-token"));
        assert!(!path_matches("/mtr-backend", "/manager/refresh-token"));
    }

    #[test]
    fn an_absurd_max_age_is_capped_instead_of_overflowing() {
        // Found by the set_cookie fuzz target: this used to panic.
        let now = OffsetDateTime::now_utc();
        let cookies = parse_set_cookies(&headers(&["co-auth=v; Max-Age=9223372036854775807"]), now);
        assert_eq!(cookies[0].max_age, Some(MAX_COOKIE_AGE));
        assert!(cookies[0].expiry(now).is_some_and(|at| at > now));
        let fuzzed = b"co-auth=f==\t;;max-age=\n\t;\x01\x00\x00*=\nrt=====-=tn=;path=";
        crate::fuzzing::parse_set_cookies(fuzzed);
    }

    #[test]
    fn deletion_cookies_are_skipped() {
        let cookies = parse_set_cookies(
            &headers(&[
                "rt=; Path=/",
                "co-auth=old; Max-Age=0",
                "co-auth=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "co-auth=live; Max-Age=900; SameSite=Lax",
            ]),
            OffsetDateTime::now_utc(),
        );
        assert_eq!(cookies.len(), 1);
        let live = last_named(&cookies, SESSION_COOKIE).expect("live cookie");
        assert_eq!(live.value.expose_secret(), "live");
        assert_eq!(live.max_age, Some(Duration::from_secs(900)));
        assert_eq!(live.same_site, Some(SameSitePolicy::Lax));
    }
}
