//! mtr-sso: a gRPC gateway that signs a broker's users in to the Match-Trader
//! platform. Internal services call four RPCs (CreateAccount,
//! IssueOneTimeToken, Login, Refresh); this crate performs the vendor's REST
//! calls, cookie handling and quirks behind them, and ships a sandbox that
//! emulates the vendor for local use and tests.
//!
//! The modules, from the bottom up; each imports only those above it in
//! this list, never one below:
//!
//! | module | what it holds |
//! |---|---|
//! | [`proto`] | the generated gRPC types and the descriptor set for reflection |
//! | [`hex`], [`setting_values`] | small parsers and encoders |
//! | [`reloadable`] | values re-read from files while the process runs (read at each use) |
//! | [`sealing`] | keys a caller's secret yields: a lookup name, an AEAD seal, a keyed fingerprint |
//! | [`tenant`] | one tenant's settings, declared once for flags and the tenants file |
//! | [`auth`] | who a caller is (certificate or token) and what the policy lets it do |
//! | [`redis_connection`] | the one Redis connection (one endpoint or a cluster): TLS, credentials, a check that names what is wrong, a timeout per command, and whether Redis is out |
//! | [`quota`] | the limits shared by replicas (sliding logs): the vendor's quota, per caller, per email |
//! | [`reuse_store`] | refresh results kept for the reuse window, sealed with keys only the refresh token yields |
//! | [`deadline`], [`trace_context`] | an RPC's deadline and its W3C trace context |
//! | [`single_flight`] | concurrent callers asking for the same thing share one run of the work, in the span and trace of the one that started it |
//! | [`json_log`], [`idempotency`] | the JSON log line; remembered CreateAccount outcomes |
//! | [`config`] | the command line, the tenants file and the caller files, checked into `Settings` and its `Mode` |
//! | [`sandbox`] | the built-in emulation of the vendor (feature `sandbox`) |
//! | [`metrics`] | Prometheus metrics and their endpoint |
//! | [`reload`] | re-reads certificates, callers, the policy and API keys when their files change or on SIGHUP |
//! | [`audit`] | the audit trail: one event per access decision, its schema, its writer |
//! | [`upstream`] | the vendor's two HTTP APIs: client, admission gate, classification, errors; the tenants' clients, started once (`Upstreams::start`) |
//! | [`preflight`] | `--check-upstream`: cheap reads over the started clients of every tenant, as a table |
//! | [`error`] | the service's errors and their one mapping to gRPC statuses |
//! | [`convert`] | requests validated into commands at the edge |
//! | [`service`] | the envelope every RPC passes through, and one file per flow |
//! | [`json_api`] | JSON over HTTP: the same RPCs through the same envelope, the OpenAPI document |
//! | [`server`], [`telemetry`], [`app`], `fuzzing` | the server (gRPC and JSON on one port), logging and traces, the wiring and the two checks, the fuzz entry points (feature `fuzzing`) |

pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod convert;
pub mod deadline;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod hex;
pub mod idempotency;
pub mod json_api;
pub mod json_log;
pub mod metrics;
pub mod preflight;
pub mod proto;
pub mod quota;
pub mod redis_connection;
pub mod reload;
pub mod reloadable;
pub mod reuse_store;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod sealing;
pub mod server;
pub mod service;
pub mod setting_values;
pub mod single_flight;
pub mod telemetry;
pub mod tenant;
pub mod trace_context;
pub mod upstream;
