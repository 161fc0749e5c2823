//! The JSON/HTTP API as the proto describes it, read at build time from the
//! descriptor pool: one route per RPC from its `google.api.http` annotation,
//! and from those routes the Rust route table and the OpenAPI 3 document.
//! Schemas follow protobuf's canonical JSON mapping: lowerCamelCase names,
//! enums by name, 64-bit integers as strings, `Timestamp` as an RFC 3339
//! string and `Duration` as seconds with an `s` (`"300s"`).

use prost_reflect::{DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde_json::{Map, Value as Json, json};
use std::collections::BTreeMap;

/// One RPC's HTTP route.
struct Route {
    rpc: String,
    path: String,
    description: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

/// The routes of one package's services.
pub struct HttpApi {
    service: String,
    description: String,
    routes: Vec<Route>,
}

impl HttpApi {
    /// Reads every RPC of `package`; an RPC without a route, or with a route
    /// this service cannot serve (anything but `post` with `body: "*"`), is an error.
    pub fn from_pool(pool: &DescriptorPool, package: &str) -> Result<Self, String> {
        let http =
            pool.get_extension_by_name("google.api.http").ok_or("google/api/annotations.proto is not imported")?;
        let service = pool
            .services()
            .find(|service| service.package_name() == package)
            .ok_or_else(|| format!("no service in {package}"))?;
        let mut routes = Vec::new();
        for method in service.methods() {
            let options = method.options();
            let name = method.full_name().to_string();
            if !options.has_extension(&http) {
                return Err(format!("{name} has no google.api.http route"));
            }
            let rule = options.get_extension(&http);
            let Value::Message(rule) = rule.as_ref() else { return Err(format!("{name}: malformed google.api.http")) };
            let text = |field: &str| match rule.get_field_by_name(field).as_deref() {
                Some(Value::String(text)) => text.clone(),
                _ => String::new(),
            };
            if text("post").is_empty() || text("body") != "*" {
                return Err(format!("{name}: only `post` routes with `body: \"*\"` are served"));
            }
            routes.push(Route {
                rpc: method.name().to_string(),
                path: text("post"),
                description: comment(method.parent_file().file_descriptor_proto(), method.path()),
                input: method.input(),
                output: method.output(),
            });
        }
        Ok(Self {
            service: service.name().to_string(),
            description: comment(service.parent_file().file_descriptor_proto(), service.path()),
            routes,
        })
    }

    /// `ROUTES`: each RPC's name and its HTTP path, for `src/json_api`.
    pub fn routes_source(&self) -> String {
        let mut source =
            String::from("/// Each RPC's name and its `POST` path, from its `google.api.http` annotation.\n");
        source.push_str("pub const ROUTES: &[(&str, &str)] = &[\n");
        for route in &self.routes {
            source.push_str(&format!("    ({:?}, {:?}),\n", route.rpc, route.path));
        }
        source.push_str("];\n");
        source
    }

    /// The OpenAPI 3.0 document, pretty-printed with sorted keys, so that the
    /// committed copy diffs line by line.
    pub fn openapi_document(&self) -> String {
        let mut schemas = BTreeMap::new();
        let mut paths = Map::new();
        for route in &self.routes {
            let input = message_ref(&route.input, &mut schemas);
            let output = message_ref(&route.output, &mut schemas);
            paths.insert(
                route.path.clone(),
                json!({ "post": {
                    "operationId": format!("{}_{}", self.service, route.rpc),
                    "summary": route.rpc,
                    "description": route.description,
                    "tags": [self.service],
                    "security": [{ "bearerAuth": [] }, {}],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": input } } },
                    "responses": {
                        "200": {
                            "description": format!("The {} response.", route.rpc),
                            "content": { "application/json": { "schema": output } },
                        },
                        "default": {
                            "description": "An error: `google.rpc.Status` with an ErrorInfo (domain `mtr-sso`) whose `reason` callers branch on; the HTTP status follows the standard gRPC-to-HTTP table.",
                            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Status" } } },
                        },
                    },
                }}),
            );
        }
        schemas.extend(error_schemas());
        let document = json!({
            "openapi": "3.0.3",
            "info": {
                "title": "mtr-sso JSON API",
                "version": "v1",
                "description": format!("{}\n\n{}", self.description, API_NOTES),
            },
            "tags": [{ "name": self.service, "description": self.description }],
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A caller token from the tokens file; or present a client certificate (mTLS) instead.",
                    },
                },
            },
        });
        let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
        text.push('\n');
        text
    }
}

const API_NOTES: &str = "The same service as the gRPC API, from the same proto: every route is `POST` with a JSON body in protobuf's canonical JSON mapping (lowerCamelCase names, enums by name, `Timestamp` as RFC 3339, `Duration` as `\"300s\"`, 64-bit integers as strings). Unknown fields are refused. Send `Content-Type: application/json`; bodies are capped at 64 KiB. A `Grpc-Timeout` header (e.g. `5S`, `800m`) sets the deadline as in gRPC, capped by the service's upstream timeout; a `traceparent` header continues the caller's W3C trace. Callers authenticate as on the gRPC side: `Authorization: Bearer <token>` or a client certificate.";

/// The leading comment of the element at `path` in `file`, lines joined.
fn comment(file: &prost_types::FileDescriptorProto, path: &[i32]) -> String {
    let Some(info) = &file.source_code_info else { return String::new() };
    info.location
        .iter()
        .find(|location| location.path == path)
        .and_then(|location| location.leading_comments.as_deref())
        .map(|text| text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn reference(name: &str) -> Json {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A reference to `message`'s schema, adding it (and all it uses) to `schemas`.
fn message_ref(message: &MessageDescriptor, schemas: &mut BTreeMap<String, Json>) -> Json {
    let name = message.name().to_string();
    if !schemas.contains_key(&name) {
        // Reserved first, so that a recursive message stops here.
        schemas.insert(name.clone(), Json::Null);
        let mut properties = Map::new();
        for field in message.fields() {
            let mut schema = field_schema(&field, schemas);
            let description = comment(field.parent_file().file_descriptor_proto(), field.path());
            if schema.get("$ref").is_some() {
                // OpenAPI 3.0 ignores siblings of `$ref`.
                schema = json!({ "allOf": [schema] });
            }
            if let Some(object) = schema.as_object_mut() {
                object.insert("description".into(), Json::String(description));
            }
            properties.insert(field.json_name().to_string(), schema);
        }
        let description = comment(message.parent_file_descriptor_proto(), message.path());
        schemas.insert(
            name.clone(),
            json!({
                "type": "object",
                "description": description,
                "properties": properties,
                "additionalProperties": false,
            }),
        );
    }
    reference(&name)
}

fn enum_ref(enumeration: &EnumDescriptor, schemas: &mut BTreeMap<String, Json>) -> Json {
    let name = enumeration.name().to_string();
    let names: Vec<String> = enumeration.values().map(|value| value.name().to_string()).collect();
    let description = comment(enumeration.parent_file().file_descriptor_proto(), enumeration.path());
    schemas.insert(name.clone(), json!({ "type": "string", "enum": names, "description": description }));
    reference(&name)
}

fn field_schema(field: &FieldDescriptor, schemas: &mut BTreeMap<String, Json>) -> Json {
    if let (true, Kind::Message(entry)) = (field.is_map(), field.kind()) {
        let value = entry.map_entry_value_field();
        return json!({ "type": "object", "additionalProperties": single_schema(&value.kind(), schemas) });
    }
    let single = single_schema(&field.kind(), schemas);
    if field.is_list() { json!({ "type": "array", "items": single }) } else { single }
}

fn single_schema(kind: &Kind, schemas: &mut BTreeMap<String, Json>) -> Json {
    match kind {
        Kind::Message(message) => match message.full_name() {
            "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
            "google.protobuf.Duration" => duration_schema(),
            _ => message_ref(message, schemas),
        },
        Kind::Enum(enumeration) => enum_ref(enumeration, schemas),
        Kind::String => json!({ "type": "string" }),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({ "type": "integer", "format": "int32" }),
        Kind::Uint32 | Kind::Fixed32 => {
            json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295u32 })
        }
        // The JSON mapping writes 64-bit integers as strings (numbers are accepted too).
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$" })
        }
        Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$" }),
        Kind::Float | Kind::Double => json!({ "type": "number" }),
        Kind::Bytes => json!({ "type": "string", "format": "byte" }),
    }
}

fn duration_schema() -> Json {
    json!({
        "type": "string",
        "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$",
        "description": "A duration in seconds with up to nine fractional digits and an `s`, e.g. `\"300s\"`.",
    })
}

/// `google.rpc.Status` and the details this service sends, as grpc-gateway
/// writes them: each detail an object tagged with its `@type`.
fn error_schemas() -> BTreeMap<String, Json> {
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
