//! mtr-sso: a gRPC gateway that signs a broker's users in to the Match-Trader
//! platform. Internal services call four RPCs (CreateAccount,
//! IssueOneTimeToken, Login, Refresh); this crate performs the vendor's REST
//! calls, cookie handling and quirks behind them, and ships a sandbox that
//! emulates the vendor for local use and tests.

pub mod app;
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
pub mod json_log;
pub mod metrics;
pub mod proto;
pub mod quota;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod server;
pub mod service;
pub mod session;
pub mod telemetry;
pub mod tenant;
pub mod trace_context;
pub mod upstream;
