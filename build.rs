//! Compiles `proto/` without a system `protoc`: protox parses the files into a
//! descriptor set, tonic-prost-build generates the gRPC code from it, and the
//! set itself is written to `OUT_DIR` for the reflection service.
//!
//! The same descriptors also give the JSON/HTTP side everything it needs, so
//! it cannot drift from the proto: a second copy of the message types with
//! pbjson's canonical JSON mapping (`OUT_DIR/json/`), the route table from the
//! `google.api.http` annotations (`OUT_DIR/http_routes.rs`) and the OpenAPI
//! document (`OUT_DIR/openapi.json`).

#[path = "build/field_rules.rs"]
mod field_rules;
// The edge's bounds, the same file `convert` uses; not every one of them
// has a keyword in the document (the email's local part is carried by
// `format: email`).
#[allow(dead_code)]
#[path = "src/convert/limits.rs"]
mod limits;
#[path = "build/openapi.rs"]
mod openapi;
#[path = "build/schema_parts.rs"]
mod schema_parts;

use std::{env, fs, path::PathBuf};

/// Messages that carry passwords or tokens: their generated `Debug` is
/// replaced by a redacting one in `src/proto.rs` (and `src/json_api/wire.rs`).
const SECRET_BEARING_MESSAGES: &[&str] = &[
    ".matchtrader.sso.v1.CreateAccountRequest",
    ".matchtrader.sso.v1.LoginRequest",
    ".matchtrader.sso.v1.RefreshRequest",
    ".matchtrader.sso.v1.LoginLink",
    ".matchtrader.sso.v1.Session",
    ".matchtrader.sso.v1.BrowserCookie",
];

const PACKAGE: &str = ".matchtrader.sso.v1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/matchtrader/sso/v1/sso_service.proto";
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src/convert/limits.rs");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true).open_file(proto)?;
    let descriptors = compiler.file_descriptor_set();
    // The encoded set keeps the options prost's types drop (the HTTP annotations).
    let encoded = compiler.encode_file_descriptor_set();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("sso_descriptor.bin"), &encoded)?;

    tonic_prost_build::configure()
        .skip_debug(SECRET_BEARING_MESSAGES.iter().copied())
        .compile_fds(descriptors.clone())?;

    // The JSON side's types: the same messages, with pbjson's serde impls that
    // refuse unknown fields (pbjson's default); Timestamp and Duration are the
    // crate's own (`src/json_api/well_known.rs`).
    let json_dir = out_dir.join("json");
    fs::create_dir_all(&json_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&json_dir)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        // Timestamp and Duration in the canonical form (UTC with `Z`), refused with their form.
        .extern_path(".google.protobuf.Timestamp", "crate::json_api::well_known::Timestamp")
        .extern_path(".google.protobuf.Duration", "crate::json_api::well_known::Duration")
        .skip_debug(SECRET_BEARING_MESSAGES.iter().copied())
        .compile_fds(descriptors)?;
    pbjson_build::Builder::new().register_descriptors(&encoded)?.out_dir(&json_dir).build(&[PACKAGE])?;

    let api = openapi::HttpApi::from_pool(&compiler.descriptor_pool(), &PACKAGE[1..])?;
    fs::write(out_dir.join("http_routes.rs"), api.routes_source())?;
    fs::write(out_dir.join("openapi.json"), api.openapi_document()?)?;
    Ok(())
}
