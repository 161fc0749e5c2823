//! An HTTP request turned into the gRPC request the service expects. The
//! headers become its metadata as grpc-gateway passes them: `Authorization`
//! for the caller's token, `Grpc-Timeout` for the deadline, `traceparent` for
//! the trace. The connection's details (peer address, verified client
//! certificates) travel in the request extensions exactly as on the gRPC side.
//! Each refusal here names its reason; none is a 500.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
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

/// The caller's `Grpc-Timeout`, in the form gRPC and grpc-gateway take it
/// (`5S`, `500m`): `Ok(None)` without the header, refused (as grpc-gateway
/// refuses it, with 400) when it is there but malformed, rather than
/// silently replaced by the service's cap.
pub fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, Refusal> {
    let Some(value) = headers.get("grpc-timeout") else { return Ok(None) };
    match value.to_str().ok().and_then(parse_grpc_timeout) {
        Some(timeout) => Ok(Some(timeout)),
        None => Err(Refusal {
            http: StatusCode::BAD_REQUEST,
            code: Code::InvalidArgument,
            reason: "INVALID_GRPC_TIMEOUT",
            message: "the Grpc-Timeout header must be at most 8 digits and a unit: H (hours), M (minutes), \
                      S (seconds), m (milliseconds), u (microseconds) or n (nanoseconds), e.g. `5S` or `500m`"
                .to_string(),
        }),
    }
}

/// The server answers a request with a `Grpc-Timeout` in gRPC's way (an
/// empty 200) once the timeout passes. The JSON answer leaves this much
/// earlier: a twentieth of the timeout, at least 1 ms, at most 5 ms.
pub fn json_margin(timeout: Duration) -> Duration {
    (timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(5))
}

/// The `grpc-timeout` the service is handed: the time left until the JSON
/// answer must leave. The service keeps its own margin within it, so its
/// deadline, and its own answer, come before that moment, never after.
pub fn service_timeout(left: Duration) -> HeaderValue {
    // The finest unit whose count fits gRPC's 8 digits.
    let micros = left.as_micros();
    let text = if micros < 100_000_000 {
        format!("{micros}u")
    } else if left.as_millis() < 100_000_000 {
        format!("{}m", left.as_millis())
    } else {
        format!("{}S", left.as_secs().min(99_999_999))
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| unreachable!("digits and a letter are a valid header value"))
}

/// The answer when the service had not answered by its caller's
/// `Grpc-Timeout` (a last resort: its own deadline comes before).
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
    fn a_grpc_timeout_is_read_as_grpc_reads_it_and_a_malformed_one_is_refused() {
        let timeout = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("valid"));
            grpc_timeout(&headers)
        };
        assert_eq!(timeout("2S").ok(), Some(Some(Duration::from_secs(2))));
        assert_eq!(timeout("100m").ok(), Some(Some(Duration::from_millis(100))));
        assert_eq!(grpc_timeout(&HeaderMap::new()).ok(), Some(None));
        for bad in ["5s", "abc", "1000", "", "1.5S", "123456789m"] {
            let refusal = timeout(bad).expect_err(bad);
            assert_eq!((refusal.http, refusal.reason), (StatusCode::BAD_REQUEST, "INVALID_GRPC_TIMEOUT"), "{bad}");
            assert!(refusal.message.contains("Grpc-Timeout") && refusal.message.contains("`5S`"), "{bad}");
        }
    }

    #[test]
    fn the_service_is_handed_the_time_left_before_the_json_answer_leaves() {
        assert_eq!(json_margin(Duration::from_secs(2)), Duration::from_millis(5));
        assert_eq!(json_margin(Duration::from_millis(40)), Duration::from_millis(2));
        assert_eq!(json_margin(Duration::from_nanos(1)), Duration::from_millis(1));
        for left in
            [Duration::from_micros(1_234), Duration::from_secs(150), Duration::from_secs(200_000), Duration::MAX]
        {
            let text = service_timeout(left);
            let read = parse_grpc_timeout(text.to_str().expect("ascii")).expect("gRPC reads it");
            assert!(read <= left, "{text:?}");
        }
        assert_eq!(service_timeout(Duration::from_millis(1_950)), "1950000u");
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
