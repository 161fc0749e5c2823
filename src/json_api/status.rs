//! Errors as the JSON side answers them: the HTTP status from the standard
//! gRPC-to-HTTP table (grpc-gateway's `HTTPStatusFromCode`), and a body that
//! is `google.rpc.Status` in JSON, its details tagged with `@type` as
//! grpc-gateway writes them. Refusals that happen before the service is
//! reached (content type, body size, malformed JSON, unknown route) use the
//! same shape with a reason of their own.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use prost::Message as _;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};
use tonic_types::pb;

use crate::error::ERROR_DOMAIN;

const TYPE_PREFIX: &str = "type.googleapis.com/";

/// The HTTP status grpc-gateway answers for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // 499 Client Closed Request, as nginx and grpc-gateway use it.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The service's answer `status` as an HTTP response.
pub fn from_grpc(status: &Status) -> Response {
    let details = pb::Status::decode(status.details()).map(|decoded| decoded.details).unwrap_or_default();
    let body = json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": details.iter().filter_map(detail_json).collect::<Vec<_>>(),
    });
    json_response(http_status(status.code()), &body)
}

/// A refusal made before the service was reached, not yet rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub http: StatusCode,
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    /// The refusal as its HTTP response.
    pub fn into_response(self) -> Response {
        refused(self.http, self.code, self.reason, &self.message)
    }
}

/// A refusal made before the service was reached: `code` and `reason` as an
/// ErrorInfo of this service's domain, answered with `http`.
pub fn refused(http: StatusCode, code: Code, reason: &str, message: &str) -> Response {
    let body = json!({
        "code": code as i32,
        "message": message,
        "details": [{
            "@type": format!("{TYPE_PREFIX}google.rpc.ErrorInfo"),
            "reason": reason,
            "domain": ERROR_DOMAIN,
            "metadata": {},
        }],
    });
    json_response(http, &body)
}

/// `value` as a JSON response with `status`.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One `Any` detail as grpc-gateway writes it; details of other types are
/// left out (this service sends none).
fn detail_json(any: &prost_types::Any) -> Option<Value> {
    let type_name = any.type_url.strip_prefix(TYPE_PREFIX)?;
    let mut object = Map::new();
    object.insert("@type".into(), Value::String(any.type_url.clone()));
    match type_name {
        "google.rpc.ErrorInfo" => {
            let info = pb::ErrorInfo::decode(any.value.as_slice()).ok()?;
            object.insert("reason".into(), Value::String(info.reason));
            object.insert("domain".into(), Value::String(info.domain));
            let metadata: Map<String, Value> =
                info.metadata.into_iter().map(|(key, value)| (key, Value::String(value))).collect();
            object.insert("metadata".into(), Value::Object(metadata));
        }
        "google.rpc.BadRequest" => {
            let bad = pb::BadRequest::decode(any.value.as_slice()).ok()?;
            let violations = bad
                .field_violations
                .into_iter()
                .map(|violation| json!({ "field": violation.field, "description": violation.description }))
                .collect();
            object.insert("fieldViolations".into(), Value::Array(violations));
        }
        "google.rpc.RetryInfo" => {
            let retry = pb::RetryInfo::decode(any.value.as_slice()).ok()?;
            let delay = retry.retry_delay.unwrap_or_default();
            object.insert("retryDelay".into(), Value::String(duration_json(delay.seconds, delay.nanos)));
        }
        _ => return None,
    }
    Some(Value::Object(object))
}

/// A `Duration` in the JSON mapping: seconds, the fraction in 0, 3, 6 or 9
/// digits, and an `s` (`"3s"`, `"0.100s"`).
fn duration_json(seconds: i64, nanos: i32) -> String {
    let negative = seconds < 0 || nanos < 0;
    let (seconds, nanos) = (seconds.unsigned_abs(), nanos.unsigned_abs());
    let sign = if negative { "-" } else { "" };
    match nanos {
        0 => format!("{sign}{seconds}s"),
        n if n % 1_000_000 == 0 => format!("{sign}{seconds}.{:03}s", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{sign}{seconds}.{:06}s", n / 1_000),
        n => format!("{sign}{seconds}.{n:09}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt as _};

    #[test]
    fn every_grpc_code_maps_to_the_http_status_grpc_gateway_answers() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn durations_are_written_as_the_json_mapping_asks() {
        assert_eq!(duration_json(3, 0), "3s");
        assert_eq!(duration_json(0, 100_000_000), "0.100s");
        assert_eq!(duration_json(1, 500), "1.000000500s");
        assert_eq!(duration_json(2, 250_000), "2.000250s");
        assert_eq!(duration_json(-1, -500_000_000), "-1.500s");
    }

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn a_status_becomes_google_rpc_status_json_with_tagged_details() {
        let mut details = ErrorDetails::new();
        details.set_error_info("UPSTREAM_RATE_LIMITED", ERROR_DOMAIN, [("tenant".to_string(), "acme".to_string())]);
        details.set_retry_info(Some(std::time::Duration::from_millis(1500)));
        details.add_bad_request_violation("email", "is required");
        let status = Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        let response = from_grpc(&status);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = body_json(response).await;
        assert_eq!(body["code"], 8);
        assert_eq!(body["message"], "slow down");
        let details = body["details"].as_array().expect("details");
        let of_type = |name: &str| {
            details
                .iter()
                .find(|d| d["@type"] == format!("type.googleapis.com/google.rpc.{name}"))
                .unwrap_or_else(|| panic!("{name} in {details:?}"))
        };
        assert_eq!(of_type("ErrorInfo")["reason"], "UPSTREAM_RATE_LIMITED");
        assert_eq!(of_type("ErrorInfo")["domain"], "mtr-sso");
        assert_eq!(of_type("ErrorInfo")["metadata"]["tenant"], "acme");
        assert_eq!(of_type("RetryInfo")["retryDelay"], "1.500s");
        assert_eq!(of_type("BadRequest")["fieldViolations"][0]["field"], "email");
    }

    #[tokio::test]
    async fn a_refusal_carries_its_reason_in_the_same_shape() {
        let response =
            refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument, "UNSUPPORTED_MEDIA_TYPE", "no");
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body = body_json(response).await;
        assert_eq!(body["code"], 3);
        assert_eq!(body["details"][0]["reason"], "UNSUPPORTED_MEDIA_TYPE");
        assert_eq!(body["details"][0]["domain"], "mtr-sso");
    }
}
