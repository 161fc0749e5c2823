//! An HTTP request turned into the gRPC request the service expects. The
//! headers become its metadata as grpc-gateway passes them: `Authorization`
//! for the caller's token, `Grpc-Timeout` for the deadline, `traceparent` for
//! the trace. The connection's details (peer address, verified client
//! certificates) travel in the request extensions exactly as on the gRPC side.
//! Each refusal here names its reason; none is a 500.

use axum::{
    body::Body,
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tonic::{Code, metadata::MetadataMap};

use super::{status::Refusal, well_known};
use crate::{deadline::parse_grpc_timeout, metrics::Protocol};

/// Largest request accepted, in JSON here and in protobuf on the gRPC side
/// (`server` sets it there): the biggest legitimate one, a full account
/// form, is a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Refuses a body that is not declared as JSON.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let declared = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = declared.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    let shown = if media_type.is_empty() { "none" } else { media_type };
    Err(Refusal {
        http: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: Code::InvalidArgument,
        reason: "UNSUPPORTED_MEDIA_TYPE",
        message: format!("the body must be JSON, sent with `Content-Type: application/json` (got {shown})"),
    })
}

/// The whole body, refused once it passes [`MAX_BODY_BYTES`].
pub async fn read_body(body: Body) -> Result<axum::body::Bytes, Refusal> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| Refusal {
        http: StatusCode::PAYLOAD_TOO_LARGE,
        code: Code::OutOfRange,
        reason: "REQUEST_TOO_LARGE",
        message: format!("the body is larger than {MAX_BODY_BYTES} bytes, or could not be read"),
    })
}

/// The body as `T` in protobuf's JSON mapping; `message` names the proto
/// message in the refusal, which also names the field (by its JSON path, e.g.
/// `validity` or `personalDetails.dateOfBirth`) when the fault is inside one.
pub fn parse<T: DeserializeOwned>(body: &[u8], message: &str) -> Result<T, Refusal> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| (error.path().to_string(), error.into_inner()))
        .and_then(|value| deserializer.end().map(|()| value).map_err(|error| (String::new(), error)));
    parsed.map_err(|(path, error)| {
        let cause = without_string_values(&error.to_string());
        let field = if path == "." || path.is_empty() { String::new() } else { format!("field `{path}`: ") };
        Refusal {
            http: StatusCode::BAD_REQUEST,
            code: Code::InvalidArgument,
            reason: "INVALID_JSON",
            message: format!("the body is not a valid {message} in JSON: {field}{cause}"),
        }
    })
}

/// `text` with every double-quoted string replaced by `"…"`: serde names the
/// value it could not take, and that value might be a misplaced password.
/// Field names (in backticks) stay, and so do the expected forms this service
/// writes itself (`"300s"`), which say what to fix; nothing else in quotes.
fn without_string_values(text: &str) -> String {
    // The service's own forms are set aside under markers without quotes, then put back.
    let mut marked = text.to_string();
    for (index, form) in well_known::EXAMPLE_VALUES.iter().enumerate() {
        marked = marked.replace(&format!("`{form}`"), &format!("\u{1}{index}\u{1}"));
    }
    let mut out = String::with_capacity(marked.len());
    let mut quoted = false;
    for character in marked.chars() {
        if character == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(character);
        }
    }
    for (index, form) in well_known::EXAMPLE_VALUES.iter().enumerate() {
        out = out.replace(&format!("\u{1}{index}\u{1}"), &format!("`{form}`"));
    }
    out
}

/// How long a JSON call may run when the caller sent `Grpc-Timeout`: its
/// timeout less a margin (a tenth, at least 1 ms, at most 50 ms), so that the
/// JSON answer leaves before tonic's own timer, set from the same header,
/// fires. `None` without the header (or with one tonic ignores too).
pub fn json_answer_budget(headers: &HeaderMap) -> Option<Duration> {
    let timeout = headers.get("grpc-timeout")?.to_str().ok().and_then(parse_grpc_timeout)?;
    let margin = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(50));
    Some(timeout.saturating_sub(margin))
}

/// The answer when the caller's `Grpc-Timeout` passed first.
pub fn deadline_passed() -> Refusal {
    Refusal {
        http: StatusCode::GATEWAY_TIMEOUT,
        code: Code::DeadlineExceeded,
        reason: "DEADLINE_EXCEEDED",
        message: "the call did not finish within its Grpc-Timeout".to_string(),
    }
}

/// The gRPC request for `message`, from the HTTP request's head.
pub fn grpc_request<T>(head: Parts, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::from_parts(MetadataMap::from_headers(head.headers), head.extensions, message);
    request.extensions_mut().insert(Protocol::Http);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values_are_dropped_from_parse_errors_but_field_names_stay() {
        let error = serde_json::from_str::<bool>("\"hunter2-password\"").expect_err("not a bool").to_string();
        assert!(error.contains("hunter2-password"), "serde names the value: {error}");
        let cleaned = without_string_values(&error);
        assert!(!cleaned.contains("hunter2"), "{cleaned}");
        assert_eq!(
            without_string_values("unknown field `passwd`, expected `password`"),
            "unknown field `passwd`, expected `password`"
        );
        assert_eq!(
            without_string_values("got \"5m\", expected e.g. `\"300s\"`"),
            "got \"…\", expected e.g. `\"300s\"`"
        );
        // Only the service's own forms keep their quotes inside backticks.
        assert_eq!(without_string_values("unknown variant `a\"hunter2\"b`"), "unknown variant `a\"…\"b`");
    }

    #[test]
    fn a_refusal_names_the_field_and_the_form_of_a_well_known_type() {
        let body = br#"{"email":"a@b.co","validity":"5m"}"#;
        let refusal = parse::<super::super::wire::IssueOneTimeTokenRequest>(body, "IssueOneTimeTokenRequest")
            .expect_err("5m is not a JSON duration");
        assert!(refusal.message.contains("field `validity`"), "{}", refusal.message);
        assert!(refusal.message.contains("`\"300s\"`") && !refusal.message.contains("5m"), "{}", refusal.message);
        let body = br#"{"email":"a@b.co","password":"p","personalDetails":{"firstname":"A","lastname":"B"},"leadDetails":{"becomeActiveClientTime":"hunter2"}}"#;
        let refusal = parse::<super::super::wire::CreateAccountRequest>(body, "CreateAccountRequest").expect_err("bad");
        assert!(refusal.message.contains("field `leadDetails.becomeActiveClientTime`"), "{}", refusal.message);
        assert!(refusal.message.contains("RFC 3339") && !refusal.message.contains("hunter2"), "{}", refusal.message);
        let refusal = parse::<super::super::wire::LoginRequest>(br#"{"email":"a@b.co"} x"#, "LoginRequest");
        assert!(refusal.expect_err("trailing characters").message.contains("trailing"));
    }

    #[test]
    fn a_grpc_timeout_leaves_a_margin_for_the_json_answer() {
        let budget = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("valid"));
            json_answer_budget(&headers)
        };
        assert_eq!(budget("2S"), Some(Duration::from_millis(1950)));
        assert_eq!(budget("100m"), Some(Duration::from_millis(90)));
        assert_eq!(budget("1m"), Some(Duration::ZERO));
        assert_eq!(budget("soon"), None);
        assert_eq!(json_answer_budget(&HeaderMap::new()), None);
    }

    #[test]
    fn only_json_bodies_are_taken() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_err(), "no content type");
        headers.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().expect("valid"));
        assert_eq!(check_content_type(&headers).expect_err("a form").http, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        headers.insert(header::CONTENT_TYPE, "Application/JSON; charset=utf-8".parse().expect("valid"));
        assert!(check_content_type(&headers).is_ok());
    }

    #[test]
    fn headers_become_the_metadata_the_envelope_reads_and_the_request_is_marked_http() {
        let http = axum::http::Request::builder()
            .header("Grpc-Timeout", "2S")
            .header("Authorization", "Bearer abc")
            .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .body(())
            .expect("a request");
        let (head, ()) = http.into_parts();
        let request = grpc_request(head, ());
        assert_eq!(request.metadata().get("grpc-timeout").expect("timeout"), "2S");
        assert_eq!(request.metadata().get("authorization").expect("token"), "Bearer abc");
        assert!(request.metadata().get("traceparent").is_some());
        assert_eq!(request.extensions().get::<Protocol>(), Some(&Protocol::Http));
    }
}
