//! The JSON/HTTP API as the proto describes it, read at build time from the
//! descriptor pool: one route per RPC from its `google.api.http` annotation,
//! and from those routes the Rust route table and the OpenAPI 3 document.
//! Schemas follow protobuf's canonical JSON mapping: lowerCamelCase names,
//! enums by name (or number, on input), integers as numbers or strings,
//! `Timestamp` as an RFC 3339 string and `Duration` as seconds with an `s`
//! (`"300s"`); `null` stands for "not set" where a field has presence. Requests carry
//! what the edge enforces: `required` from `google.api.field_behavior`, and
//! the formats and bounds of [`crate::field_rules`]; fields marked
//! `OUTPUT_ONLY` are `readOnly`.

use prost_reflect::{
    DescriptorPool, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use serde_json::{Map, Value as Json, json};
use std::collections::BTreeMap;

use crate::{
    field_rules::{self, decimal_up_to},
    schema_parts::{duration_schema, error_schemas, reference},
};

/// `google.api.FieldBehavior` values this document reads.
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;

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
    /// committed copy diffs line by line. An error names a request field
    /// that [`field_rules`] does not cover.
    pub fn openapi_document(&self) -> Result<String, String> {
        let mut schemas = Schemas::default();
        let mut paths = Map::new();
        for route in &self.routes {
            let input = schemas.message_ref(&route.input, Side::Request)?;
            let output = schemas.message_ref(&route.output, Side::Response)?;
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
        let mut schemas = schemas.done;
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
        let mut text = serde_json::to_string_pretty(&document).map_err(|error| error.to_string())?;
        text.push('\n');
        Ok(text)
    }
}

const API_NOTES: &str = "The same service as the gRPC API, from the same proto: every route is `POST` with a JSON body in protobuf's canonical JSON mapping (lowerCamelCase names, enums by name, `Timestamp` as RFC 3339, `Duration` as `\"300s\"`, 64-bit integers as strings; enums are also read by number and integers from numbers or strings, and `null` stands for an unset message or `optional` field). Unknown fields are refused. The schemas state what the service requires (required fields, formats, lengths, bounds): a request they accept passes validation, one they refuse is refused before any vendor call. Three rules are the deployment's and stated in words only: `tenant` must name a configured tenant, `tradingAccount` applies to Broker-API v2 tenants, and a date of birth is not in the future; a tenant's own maximum one-time-token validity moves the `validity` bound. Send `Content-Type: application/json`; bodies are capped at 64 KiB. A `Grpc-Timeout` header (e.g. `5S`, `800m`) sets the deadline as in gRPC, capped by the service's upstream timeout; a `traceparent` header continues the caller's W3C trace. Callers authenticate as on the gRPC side: `Authorization: Bearer <token>` or a client certificate.";

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

/// Which way a message travels: the edge's rules apply to requests only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// The component schemas made so far, and the side each message was made for.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Json>,
    sides: BTreeMap<String, Side>,
}

impl Schemas {
    /// A reference to `message`'s schema, adding it (and all it uses).
    fn message_ref(&mut self, message: &MessageDescriptor, side: Side) -> Result<Json, String> {
        let name = message.name().to_string();
        match self.sides.get(&name) {
            Some(made) if *made == side => return Ok(reference(&name)),
            // One schema cannot be both: a request's carries the edge's rules.
            Some(_) => return Err(format!("{name} is used in both requests and responses")),
            None => {}
        }
        // Reserved first, so that a recursive message stops here.
        self.sides.insert(name.clone(), side);
        let behavior = message.parent_pool().get_extension_by_name("google.api.field_behavior");
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let behaviors = behavior.as_ref().map(|extension| field_behaviors(&field, extension)).unwrap_or_default();
            let mut schema = self.field_schema(&field, side)?;
            if side == Side::Request && (matches!(field.kind(), Kind::String) || is_duration(&field)) {
                let rule = field_rules::rule_for(message.name(), field.name())
                    .ok_or_else(|| format!("{}: no rule in build/field_rules.rs", field.full_name()))?;
                merge(&mut schema, field_rules::keywords(rule));
            }
            if behaviors.contains(&REQUIRED) {
                required.push(field.json_name().to_string());
            }
            // proto3's JSON mapping reads `null` as "not set" where the field
            // has presence (messages, `optional` scalars); pbjson does so too.
            let nullable = side == Side::Request && field.supports_presence() && !behaviors.contains(&REQUIRED);
            if schema.get("$ref").is_some() {
                // OpenAPI 3.0 ignores siblings of `$ref`.
                schema = json!({ "allOf": [schema] });
            }
            if let Some(object) = schema.as_object_mut() {
                let description = comment(field.parent_file().file_descriptor_proto(), field.path());
                object.insert("description".into(), Json::String(description));
                if nullable {
                    object.insert("nullable".into(), Json::Bool(true));
                }
                if behaviors.contains(&OUTPUT_ONLY) {
                    object.insert("readOnly".into(), Json::Bool(true));
                }
            }
            properties.insert(field.json_name().to_string(), schema);
        }
        let description = comment(message.parent_file_descriptor_proto(), message.path());
        let mut schema = json!({
            "type": "object",
            "description": description,
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        self.done.insert(name.clone(), schema);
        Ok(reference(&name))
    }

    fn field_schema(&mut self, field: &FieldDescriptor, side: Side) -> Result<Json, String> {
        if let (true, Kind::Message(entry)) = (field.is_map(), field.kind()) {
            let value = entry.map_entry_value_field();
            return Ok(json!({ "type": "object", "additionalProperties": self.single_schema(&value.kind(), side)? }));
        }
        let single = self.single_schema(&field.kind(), side)?;
        Ok(if field.is_list() { json!({ "type": "array", "items": single }) } else { single })
    }

    fn single_schema(&mut self, kind: &Kind, side: Side) -> Result<Json, String> {
        Ok(match kind {
            Kind::Message(message) => match message.full_name() {
                "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
                "google.protobuf.Duration" => duration_schema(),
                _ => self.message_ref(message, side)?,
            },
            Kind::Enum(enumeration) => self.enum_ref(enumeration),
            Kind::String => json!({ "type": "string" }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => integer_schema("int32", i32::MIN.into(), i32::MAX.into()),
            Kind::Uint32 | Kind::Fixed32 => integer_schema("int64", 0, u32::MAX.into()),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => integer_schema("int64", i64::MIN.into(), i64::MAX.into()),
            Kind::Uint64 | Kind::Fixed64 => integer_schema("uint64", 0, u64::MAX.into()),
            Kind::Float | Kind::Double => json!({ "type": "number" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
        })
    }

    /// Enums by name, as written, or by number, as proto3's JSON mapping
    /// (and pbjson) also reads them.
    fn enum_ref(&mut self, enumeration: &EnumDescriptor) -> Json {
        let name = enumeration.name().to_string();
        let names: Vec<String> = enumeration.values().map(|value| value.name().to_string()).collect();
        let numbers: Vec<i32> = enumeration.values().map(|value| value.number()).collect();
        let description = comment(enumeration.parent_file().file_descriptor_proto(), enumeration.path());
        let description = format!("{description} Written by name; read by name or by number.");
        self.done.insert(
            name.clone(),
            json!({
                "description": description,
                "oneOf": [
                    { "type": "string", "enum": names },
                    { "type": "integer", "format": "int32", "enum": numbers },
                ],
            }),
        );
        reference(&name)
    }
}

/// The `google.api.field_behavior` values of `field`.
fn field_behaviors(field: &FieldDescriptor, extension: &ExtensionDescriptor) -> Vec<i32> {
    let options = field.options();
    if !options.has_extension(extension) {
        return Vec::new();
    }
    match options.get_extension(extension).as_ref() {
        Value::List(values) => values.iter().filter_map(Value::as_enum_number).collect(),
        _ => Vec::new(),
    }
}

fn is_duration(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::Message(message) if message.full_name() == "google.protobuf.Duration")
}

/// `keywords` added to `schema`, or to its `items` for a list.
fn merge(schema: &mut Json, keywords: Json) {
    let Json::Object(keywords) = keywords else { return };
    let target = if schema.get("type") == Some(&json!("array")) { &mut schema["items"] } else { schema };
    if let Some(object) = target.as_object_mut() {
        object.extend(keywords);
    }
}

/// An integer as proto3's JSON mapping reads it: a JSON number, or a string
/// that Rust's `str::parse` takes (an optional sign, leading zeros).
fn integer_schema(format: &str, min: i128, max: i128) -> Json {
    let positive = format!("\\+?0*(?:{})", decimal_up_to(max.unsigned_abs(), true));
    let pattern = if min < 0 {
        format!("^(?:{positive}|-0*(?:{}))$", decimal_up_to(min.unsigned_abs(), true))
    } else {
        format!("^{positive}$")
    };
    json!({ "oneOf": [
        { "type": "integer", "format": format, "minimum": min, "maximum": max },
        { "type": "string", "pattern": pattern },
    ]})
}
