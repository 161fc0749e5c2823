//! The integration tests, as one binary: each module was a test file of its
//! own, and linking the whole crate once per file dominated the test command.
//! Run one module with `cargo nextest run --test it <module>::`.

mod common;
mod redis_server;
mod rotation;
mod tls_vendor;

mod callers;
mod faults;
mod grpc_gateway;
mod idempotency;
mod limits;
mod ownership_proofs;
mod properties;
mod redis_cluster;
mod redis_outage;
mod redis_shared;
mod rotation_secrets;
mod rotation_tls;
mod upstream_clients;
mod upstream_tls;

// These drive the built-in sandbox (or need Linux), which a build without
// the `sandbox` feature (or another system) leaves out.
#[cfg(feature = "sandbox")]
mod audit;
#[cfg(feature = "sandbox")]
mod audit_otlp;
#[cfg(feature = "sandbox")]
mod binary;
#[cfg(feature = "sandbox")]
mod broker_api_v2;
#[cfg(feature = "sandbox")]
mod broker_api_v2_details;
#[cfg(feature = "sandbox")]
mod cancellation;
#[cfg(feature = "sandbox")]
mod concurrent_sign_in;
#[cfg(target_os = "linux")]
mod connection_limits;
#[cfg(feature = "sandbox")]
mod create_account_round_trips;
#[cfg(feature = "sandbox")]
mod creation_lookup;
#[cfg(feature = "sandbox")]
mod json_api;
#[cfg(feature = "sandbox")]
mod json_timeouts;
#[cfg(feature = "sandbox")]
mod no_secrets_in_logs;
#[cfg(feature = "sandbox")]
mod observability;
#[cfg(feature = "sandbox")]
mod ownership;
#[cfg(feature = "sandbox")]
mod preflight;
#[cfg(feature = "sandbox")]
mod proxy;
#[cfg(feature = "sandbox")]
mod redis_claims;
#[cfg(feature = "sandbox")]
mod redis_idempotency;
#[cfg(feature = "sandbox")]
mod redis_reuse;
#[cfg(feature = "sandbox")]
mod redis_settings;
#[cfg(feature = "sandbox")]
mod sandbox_flows;
#[cfg(feature = "sandbox")]
mod sandbox_http;
#[cfg(feature = "sandbox")]
mod v2_trading_account_once;
