//! The service's error type and its one, exhaustive mapping to gRPC statuses.
//! Every status carries a `google.rpc.ErrorInfo` whose reason callers branch
//! on; invalid input also carries `google.rpc.BadRequest` field violations.
//! Messages are written here, never copied from upstream bodies, so they
//! cannot carry a password, token or key.

use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::upstream::{UpstreamError, UpstreamFault};

/// The `domain` of every ErrorInfo this service sends. The proto's header
/// comment and the README state it too; a test keeps them equal.
pub const ERROR_DOMAIN: &str = "mtr-sso";

/// The ErrorInfo metadata keys this service sends: lowerCamelCase, as AIP-193
/// asks, because callers read them by name. The proto's header comment lists
/// them as the contract; a test keeps that list equal to this one.
pub mod metadata_key {
    /// The tenant whose vendor call failed.
    pub const TENANT: &str = "tenant";
    /// The vendor call that failed, e.g. `login`.
    pub const ENDPOINT: &str = "endpoint";
    /// The vendor's HTTP status, when it answered.
    pub const UPSTREAM_STATUS: &str = "upstreamStatus";
    /// The reason the vendor's failure maps to, even where the ErrorInfo
    /// reason says something else (ACCOUNT_CREATION_OUTCOME_UNKNOWN).
    pub const UPSTREAM_REASON: &str = "upstreamReason";
    /// The authenticated caller a CALLER_NOT_PERMITTED refers to.
    pub const CALLER: &str = "caller";
    /// With ACCOUNT_CREATION_OUTCOME_UNKNOWN: what the lookup by email that
    /// followed came to (`not_found`, `failed`, `no_time`, `not_the_account`,
    /// `no_created`, `no_date`).
    pub const LOOKUP: &str = "lookup";
    /// Every key above.
    pub const ALL: [&str; 6] = [TENANT, ENDPOINT, UPSTREAM_STATUS, UPSTREAM_REASON, CALLER, LOOKUP];
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field path, e.g. `personal_details.firstname`.
    pub field: String,
    /// What is wrong with it (never its value, which may be secret).
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// Everything an RPC can fail with.
#[derive(Debug)]
pub enum SsoError {
    /// The request is invalid; nothing was sent upstream.
    InvalidArgument { reason: InvalidReason, violations: Vec<Violation> },
    /// An upstream call failed.
    Upstream { tenant: String, error: UpstreamError },
    /// The create-account call failed in a way that leaves open whether the
    /// vendor created the account; it was not retried, and the lookup by
    /// email that followed did not find the account, or could not prove
    /// that this request created the account it found.
    AccountCreationOutcomeUnknown { tenant: String, error: UpstreamError, lookup: CreationLookup },
    /// Too many RPCs in flight: shed at once rather than queued.
    Overloaded { limit: usize },
    /// The caller presented no valid credentials.
    CallerUnauthenticated,
    /// Too many IssueOneTimeToken/Login calls by this caller, or too many
    /// sign-ins or CreateAccount calls for this email.
    Throttled { scope: ThrottleScope, retry_after: std::time::Duration },
    /// The caller is known, but the policy does not let it make this call.
    CallerNotPermitted { caller: String },
    /// The idempotency key was used for a different request.
    IdempotencyKeyReused,
    /// The first call with this idempotency key is still running.
    CreationInProgress,
    /// The stored outcome of an earlier call with the same idempotency key.
    Replayed(Box<Status>),
    /// The idempotency store failed.
    IdempotencyUnavailable,
    /// The answer's audit event could not be written, and the service fails closed.
    AuditUnavailable,
}

/// What the lookup by email after a create of unknown outcome came to, when
/// it did not prove that this request created the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationLookup {
    /// The vendor knows no account with the email (yet: a create still
    /// running at the vendor may add it later).
    NotFound,
    /// The lookup itself failed (timeout, 5xx, refused, unexpected answer).
    Failed,
    /// Too little of the deadline was left to send it.
    NoTime,
    /// The answer was not the account looked up: no uuid, or another email.
    NotTheAccount,
    /// The account found has no `created`, so its age proves nothing (and no
    /// session was asked for, whose password login could have proven it).
    NoCreated,
    /// The answer had no `Date` header, so the vendor's clock is unknown and
    /// `created` proves nothing (and no session was asked for).
    NoDate,
}

impl CreationLookup {
    /// The value of the `lookup` metadata entry.
    pub fn name(self) -> &'static str {
        match self {
            CreationLookup::NotFound => "not_found",
            CreationLookup::Failed => "failed",
            CreationLookup::NoTime => "no_time",
            CreationLookup::NotTheAccount => "not_the_account",
            CreationLookup::NoCreated => "no_created",
            CreationLookup::NoDate => "no_date",
        }
    }

    /// Every value, for the documents that list them.
    pub const ALL: [CreationLookup; 6] = [
        CreationLookup::NotFound,
        CreationLookup::Failed,
        CreationLookup::NoTime,
        CreationLookup::NotTheAccount,
        CreationLookup::NoCreated,
        CreationLookup::NoDate,
    ];
}

/// Which limit throttled a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleScope {
    Caller,
    Email,
}

/// Why a request was refused before any upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// One or more fields are invalid.
    InvalidRequest,
    /// The `tenant` names no configured tenant.
    UnknownTenant,
}

impl SsoError {
    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        SsoError::InvalidArgument {
            reason: InvalidReason::InvalidRequest,
            violations: vec![Violation::new(field, description)],
        }
    }

    /// A `tenant` that names no configured tenant. `known` lists the names
    /// the caller may use (without a policy, every name; with one, those it
    /// grants this caller for this call).
    pub fn unknown_tenant(known: &[&str]) -> Self {
        let mut description = "names no configured tenant (names are case-sensitive)".to_string();
        if known.is_empty() {
            description.push_str("; none is open to this caller for this call");
        } else {
            let quoted: Vec<String> = known.iter().map(|name| format!("`{name}`")).collect();
            description.push_str(&format!("; the tenants are {}, or empty for the default", quoted.join(", ")));
        }
        SsoError::InvalidArgument {
            reason: InvalidReason::UnknownTenant,
            violations: vec![Violation::new("tenant", description)],
        }
    }

    /// The gRPC code and ErrorInfo reason of this error.
    pub fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            SsoError::InvalidArgument { reason: InvalidReason::InvalidRequest, .. } => {
                (Code::InvalidArgument, "INVALID_REQUEST")
            }
            SsoError::InvalidArgument { reason: InvalidReason::UnknownTenant, .. } => {
                (Code::InvalidArgument, "UNKNOWN_TENANT")
            }
            SsoError::Upstream { error, .. } => upstream_code_and_reason(&error.fault),
            SsoError::AccountCreationOutcomeUnknown { error, .. } => {
                (upstream_code_and_reason(&error.fault).0, "ACCOUNT_CREATION_OUTCOME_UNKNOWN")
            }
            SsoError::Overloaded { .. } => (Code::ResourceExhausted, "OVERLOADED"),
            SsoError::CallerUnauthenticated => (Code::Unauthenticated, "CALLER_UNAUTHENTICATED"),
            SsoError::Throttled { scope: ThrottleScope::Caller, .. } => {
                (Code::ResourceExhausted, "CALLER_RATE_LIMITED")
            }
            SsoError::Throttled { scope: ThrottleScope::Email, .. } => (Code::ResourceExhausted, "EMAIL_RATE_LIMITED"),
            SsoError::CallerNotPermitted { .. } => (Code::PermissionDenied, "CALLER_NOT_PERMITTED"),
            SsoError::IdempotencyKeyReused => (Code::FailedPrecondition, "IDEMPOTENCY_KEY_REUSED"),
            SsoError::CreationInProgress => (Code::Aborted, "CREATION_IN_PROGRESS"),
            SsoError::Replayed(status) => (status.code(), "IDEMPOTENT_REPLAY"),
            SsoError::IdempotencyUnavailable => (Code::Unavailable, "IDEMPOTENCY_STORE_UNAVAILABLE"),
            SsoError::AuditUnavailable => (Code::Unavailable, "AUDIT_UNAVAILABLE"),
        }
    }

    fn message(&self) -> String {
        match self {
            SsoError::InvalidArgument { violations, .. } => {
                let fields: Vec<String> =
                    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect();
                format!("invalid request: {}", fields.join("; "))
            }
            SsoError::Upstream { error, .. } => error.to_string(),
            SsoError::AccountCreationOutcomeUnknown { error, lookup, .. } => format!(
                "the account may or may not have been created: {error}. It was not retried, and the lookup by email \
                 that followed gave `{}`; look the email up before creating it again",
                lookup.name()
            ),
            SsoError::Overloaded { limit } => {
                format!("the service is at its limit of {limit} RPCs in flight; retry shortly")
            }
            SsoError::CallerUnauthenticated => {
                "this service requires a client certificate or a bearer token it knows".to_string()
            }
            SsoError::Throttled { scope: ThrottleScope::Caller, .. } => {
                "too many sign-in calls from this caller; retry later".to_string()
            }
            SsoError::Throttled { scope: ThrottleScope::Email, .. } => {
                "too many calls for this email (sign-ins, or account creations); retry later".to_string()
            }
            SsoError::CallerNotPermitted { caller } => {
                format!("caller `{caller}` may not make this call for this tenant")
            }
            SsoError::IdempotencyKeyReused => "this idempotency key was used for a different request".to_string(),
            SsoError::CreationInProgress => {
                "the first call with this idempotency key is still running; retry with the same key".to_string()
            }
            SsoError::Replayed(status) => status.message().to_string(),
            SsoError::IdempotencyUnavailable => {
                "the idempotency store is unavailable; nothing was sent, retry with the same key".to_string()
            }
            SsoError::AuditUnavailable => {
                "the audit trail cannot record this answer, so it is withheld; retry later".to_string()
            }
        }
    }
}

/// The table from upstream fault to gRPC code and reason. No wildcard arm:
/// a new fault does not compile until it is mapped here.
pub fn upstream_code_and_reason(fault: &UpstreamFault) -> (Code, &'static str) {
    match fault {
        UpstreamFault::ConnectFailed => (Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
        UpstreamFault::ConnectionLost => (Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
        UpstreamFault::ServerError => (Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
        UpstreamFault::Timeout => (Code::DeadlineExceeded, "UPSTREAM_TIMEOUT"),
        // The caller's deadline passed all the same; the message says nothing was sent.
        UpstreamFault::NoTimeLeft => (Code::DeadlineExceeded, "UPSTREAM_TIMEOUT"),
        UpstreamFault::RateLimited { .. } => (Code::ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
        UpstreamFault::QuotaExhausted { .. } => (Code::ResourceExhausted, "UPSTREAM_QUOTA_EXHAUSTED"),
        UpstreamFault::CircuitOpen { .. } => (Code::Unavailable, "UPSTREAM_CIRCUIT_OPEN"),
        UpstreamFault::Busy => (Code::DeadlineExceeded, "UPSTREAM_BUSY"),
        // Our own key or permissions: the operator must fix the deployment,
        // the caller can do nothing, so this is not the caller's UNAUTHENTICATED.
        UpstreamFault::ApiKeyRejected => (Code::Internal, "UPSTREAM_REJECTED_API_KEY"),
        UpstreamFault::PermissionDenied => (Code::Internal, "UPSTREAM_PERMISSION_DENIED"),
        UpstreamFault::EndpointNotFound => (Code::Internal, "UPSTREAM_ENDPOINT_NOT_FOUND"),
        UpstreamFault::Protocol { .. } => (Code::Internal, "UPSTREAM_PROTOCOL_ERROR"),
        UpstreamFault::CredentialsRejected => (Code::Unauthenticated, "UPSTREAM_REJECTED_CREDENTIALS"),
        UpstreamFault::RefreshTokenRejected => (Code::Unauthenticated, "REFRESH_TOKEN_INVALID"),
        UpstreamFault::OneTimeTokenRejected => (Code::FailedPrecondition, "ONE_TIME_TOKEN_INVALID"),
        UpstreamFault::AccountAlreadyExists => (Code::AlreadyExists, "ACCOUNT_ALREADY_EXISTS"),
        UpstreamFault::AccountNotFound => (Code::NotFound, "ACCOUNT_NOT_FOUND"),
        UpstreamFault::RequestRejected => (Code::InvalidArgument, "UPSTREAM_REJECTED_REQUEST"),
        // The vendor's record and its trading engine disagree: only the vendor can fix it.
        UpstreamFault::TradingAccountNotInTradingSystem => {
            (Code::FailedPrecondition, "TRADING_ACCOUNT_NOT_IN_TRADING_SYSTEM")
        }
    }
}

impl From<SsoError> for Status {
    fn from(error: SsoError) -> Self {
        // A replay returns exactly what the first call returned.
        let error = match error {
            SsoError::Replayed(status) => return *status,
            other => other,
        };
        let (code, reason) = error.code_and_reason();
        let mut metadata = HashMap::new();
        let mut details = ErrorDetails::new();
        match &error {
            SsoError::InvalidArgument { violations, .. } => {
                for violation in violations {
                    details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
                }
            }
            SsoError::Upstream { tenant, error } | SsoError::AccountCreationOutcomeUnknown { tenant, error, .. } => {
                metadata.insert(metadata_key::TENANT.to_string(), tenant.clone());
                metadata.insert(metadata_key::ENDPOINT.to_string(), error.endpoint.name().to_string());
                if let Some(status) = error.status {
                    metadata.insert(metadata_key::UPSTREAM_STATUS.to_string(), status.to_string());
                }
                match error.fault {
                    UpstreamFault::RateLimited { retry_after } => {
                        details.set_retry_info(Some(retry_after.unwrap_or(std::time::Duration::from_secs(1))));
                    }
                    UpstreamFault::QuotaExhausted { retry_after } | UpstreamFault::CircuitOpen { retry_after } => {
                        details.set_retry_info(Some(retry_after));
                    }
                    _ => {}
                }
                // The outcome-unknown reason hides what went wrong upstream; keep it visible.
                metadata.insert(
                    metadata_key::UPSTREAM_REASON.to_string(),
                    upstream_code_and_reason(&error.fault).1.to_string(),
                );
            }
            SsoError::Overloaded { .. } => {
                details.set_retry_info(Some(std::time::Duration::from_millis(100)));
            }
            SsoError::CallerUnauthenticated => {}
            SsoError::Throttled { retry_after, .. } => {
                details.set_retry_info(Some(*retry_after));
            }
            SsoError::CallerNotPermitted { caller } => {
                metadata.insert(metadata_key::CALLER.to_string(), caller.clone());
            }
            SsoError::CreationInProgress => {
                details.set_retry_info(Some(std::time::Duration::from_millis(500)));
            }
            SsoError::IdempotencyKeyReused
            | SsoError::Replayed(_)
            | SsoError::IdempotencyUnavailable
            | SsoError::AuditUnavailable => {}
        }
        if let SsoError::AccountCreationOutcomeUnknown { lookup, .. } = &error {
            metadata.insert(metadata_key::LOOKUP.to_string(), lookup.name().to_string());
        }
        details.set_error_info(reason, ERROR_DOMAIN, metadata);
        Status::with_error_details(code, error.message(), details)
    }
}

#[cfg(test)]
mod tests;
