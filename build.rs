//! Compiles `proto/` without a system `protoc`: protox parses the files into a
//! descriptor set, tonic-prost-build generates the code from it, and the set
//! itself is written to `OUT_DIR` for the reflection service.

use prost::Message as _;
use std::{env, fs, path::PathBuf};

/// Messages that carry passwords or tokens: their generated `Debug` is
/// replaced by a redacting one in `src/proto.rs`.
const SECRET_BEARING_MESSAGES: &[&str] = &[
    ".matchtrader.sso.v1.CreateAccountRequest",
    ".matchtrader.sso.v1.LoginRequest",
    ".matchtrader.sso.v1.RefreshRequest",
    ".matchtrader.sso.v1.LoginLink",
    ".matchtrader.sso.v1.Session",
    ".matchtrader.sso.v1.BrowserCookie",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/matchtrader/sso/v1/sso_service.proto";
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("sso_descriptor.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure().skip_debug(SECRET_BEARING_MESSAGES.iter().copied()).compile_fds(descriptors)?;
    Ok(())
}
