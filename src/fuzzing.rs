//! Entry points for the fuzz targets in `fuzz/`: each takes arbitrary bytes,
//! drives one boundary where outside data enters, and must never panic,
//! hang or allocate without bound. Not part of the service's API.

use http::header::{HeaderMap, HeaderValue, SET_COOKIE};
use prost::Message as _;
use std::time::Duration;

use crate::{
    convert, proto,
    tenant::{AuthScheme, Generation, TenantSettings, UpstreamPaths},
    upstream::{Endpoint, cookies, exchange::Answer, json, platform_api},
};

fn tenant() -> TenantSettings {
    TenantSettings {
        name: "fuzz".into(),
        generation: Generation::V1,
        trading_account: None,
        v2_account_details: Default::default(),
        lookup_before_create: false,
        broker_api_url: url::Url::parse("https://broker.example").unwrap_or_else(|_| unreachable!()),
        api_key: "k".into(),
        auth_scheme: AuthScheme::Raw,
        platform_url: url::Url::parse("https://platform.example").unwrap_or_else(|_| unreachable!()),
        broker_id: Some("1".into()),
        cookie_domain: Some("example".into()),
        paths: UpstreamPaths::default(),
        session_lifetime: Duration::from_secs(900),
        one_time_token_validity: Duration::from_secs(60),
        one_time_token_max_validity: Duration::from_secs(3600),
    }
}

/// Request validation: the bytes as each request message, through the edge conversion.
pub fn validate_requests(data: &[u8]) {
    let tenant = tenant();
    if let Ok(request) = proto::CreateAccountRequest::decode(data)
        && let Ok(command) = convert::create_account(request)
    {
        let _ = convert::account_sequence(&command, &tenant);
    }
    if let Ok(request) = proto::IssueOneTimeTokenRequest::decode(data) {
        let _ = convert::issue_one_time_token(request, &tenant);
    }
    if let Ok(request) = proto::LoginRequest::decode(data) {
        let _ = convert::login(request, &tenant);
    }
    if let Ok(request) = proto::RefreshRequest::decode(data) {
        let _ = convert::refresh(request);
    }
}

/// Upstream answers: the bytes as a vendor body, read by every parser that sees one.
pub fn parse_upstream_answers(data: &[u8]) {
    let _ = json::object(data);
    let _ = json::Problem::parse(data);
    let _ = crate::upstream::broker_api::parse_one_time_token(data);
    let answer = Answer { status: 200, headers: HeaderMap::new(), body: bytes::Bytes::copy_from_slice(data) };
    let _ = crate::upstream::broker_api::parse_created_account(&answer);
    for endpoint in [Endpoint::Login, Endpoint::LoginWithToken, Endpoint::Refresh] {
        if let Ok(session) = platform_api::session_from_answer(endpoint, &answer, "/manager/refresh-token", None) {
            let _ = crate::service::replies::browser_session(&tenant(), &session, time::OffsetDateTime::now_utc());
        }
    }
}

/// `Set-Cookie` headers: each line of the bytes is one header value.
pub fn parse_set_cookies(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(SET_COOKIE, value);
        }
    }
    let answer = Answer { status: 200, headers: headers.clone(), body: bytes::Bytes::new() };
    let parsed = cookies::parse_set_cookies(&headers, time::OffsetDateTime::now_utc());
    let _ = cookies::refresh_cookie_for(&parsed, "/manager/refresh-token");
    if let Ok(session) = platform_api::session_from_answer(Endpoint::Refresh, &answer, "/manager/refresh-token", None) {
        let _ = crate::service::replies::browser_session(&tenant(), &session, time::OffsetDateTime::now_utc());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_points_take_odd_input_without_panicking() {
        for data in [
            &b""[..],
            b"\xff\xfe\x00",
            b"{\"token\":",
            b"\"t\"",
            b"co-auth=; Max-Age=-1\nrt=x; Path=\nrt=y; Path=/manager/refresh-token; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            b"\x12\x05a@b.c\x1a\x00",
        ] {
            validate_requests(data);
            parse_upstream_answers(data);
            parse_set_cookies(data);
        }
    }
}
