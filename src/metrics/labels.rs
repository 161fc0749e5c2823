//! The label sets of the metrics, and the names their values take: the
//! protocol an RPC came in through and the conventional gRPC code names.

use prometheus_client::encoding::EncodeLabelSet;
use std::borrow::Cow;
use tonic::Code;

/// The door an RPC came in through: the `protocol` label of the RPC metrics
/// and the log line. The JSON/HTTP side marks its requests with it (as a
/// request extension); a request without the mark came over gRPC.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    /// JSON over HTTP (see `json_api`).
    Http,
}

impl Protocol {
    /// The label value: `grpc` or `http`.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RpcLabels {
    pub(super) grpc_type: &'static str,
    pub(super) grpc_service: &'static str,
    pub(super) grpc_method: &'static str,
    pub(super) protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HandledLabels {
    pub(super) grpc_type: &'static str,
    pub(super) grpc_service: &'static str,
    pub(super) grpc_method: &'static str,
    pub(super) grpc_code: &'static str,
    pub(super) protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) grpc_method: &'static str,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct UpstreamLabels {
    pub(super) tenant: String,
    pub(super) endpoint: &'static str,
    pub(super) status: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct UpstreamLatencyLabels {
    pub(super) tenant: String,
    pub(super) endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ApiLabels {
    pub(super) tenant: String,
    pub(super) api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SavedCallLabels {
    pub(super) tenant: String,
    pub(super) endpoint: &'static str,
    pub(super) how: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AuditEventLabels {
    /// The event's CloudEvents type, e.g. `mtr-sso.session.created.v1`.
    pub(super) r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AuditLossLabels {
    /// Why the event was lost: `queue_full` or `write_failed`.
    pub(super) cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RedisLabels {
    /// `single` (one endpoint) or `cluster`.
    pub(super) topology: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub(super) version: &'static str,
}

/// A file (or set of files read together) that is read again when it changes:
/// `tls`, `callers`, or `api_key.<tenant>`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReloadLabels {
    pub(super) source: String,
}

/// All metrics of one server.
/// Go-style gRPC code names, as the conventional `grpc_code` label spells them.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}
