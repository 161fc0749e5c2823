//! The parts of the OpenAPI document that do not come from the request and
//! response messages: a `$ref`, the `Duration` string, and the error body
//! (`google.rpc.Status` with the details this service sends).

use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

/// A reference to the component schema `name`.
pub fn reference(name: &str) -> Json {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A `google.protobuf.Duration` in the JSON mapping.
pub fn duration_schema() -> Json {
    json!({
        "type": "string",
        "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$",
        "description": "A duration in seconds with up to nine fractional digits and an `s`, e.g. `\"300s\"`.",
    })
}

/// `google.rpc.Status` and the details this service sends, as grpc-gateway
/// writes them: each detail an object tagged with its `@type`.
pub fn error_schemas() -> BTreeMap<String, Json> {
    let detail = |type_name: &str, description: &str, properties: Json| {
        let mut properties = properties.as_object().cloned().unwrap_or_default();
        properties.insert(
            "@type".into(),
            json!({ "type": "string", "enum": [format!("type.googleapis.com/google.rpc.{type_name}")] }),
        );
        json!({
            "type": "object",
            "description": description,
            "required": ["@type"],
            "properties": properties,
        })
    };
    BTreeMap::from([
        (
            "Status".to_string(),
            json!({
                "type": "object",
                "description": "`google.rpc.Status`: the gRPC code, a message without secrets, and the details.",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": { "type": "integer", "format": "int32", "description": "The gRPC status code." },
                    "message": { "type": "string" },
                    "details": {
                        "type": "array",
                        "items": { "oneOf": [reference("ErrorInfo"), reference("BadRequest"), reference("RetryInfo")] },
                    },
                },
            }),
        ),
        (
            "ErrorInfo".to_string(),
            detail(
                "ErrorInfo",
                "Why the call failed: a stable `reason` to branch on, the domain `mtr-sso`, and lowerCamelCase metadata.",
                json!({
                    "reason": { "type": "string" },
                    "domain": { "type": "string" },
                    "metadata": { "type": "object", "additionalProperties": { "type": "string" } },
                }),
            ),
        ),
        (
            "BadRequest".to_string(),
            detail(
                "BadRequest",
                "The invalid fields of the request.",
                json!({ "fieldViolations": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "field": { "type": "string" }, "description": { "type": "string" } },
                }}}),
            ),
        ),
        ("RetryInfo".to_string(), detail("RetryInfo", "When to retry.", json!({ "retryDelay": duration_schema() }))),
    ])
}
