//! The bounds the edge enforces, stated once. `convert` checks requests
//! against them, and the build script includes this file to write them into
//! the OpenAPI document, so the contract and the checks cannot drift apart.
//! Lengths count characters (Unicode scalar values), as JSON Schema's
//! `maxLength` does.

/// The longest free-text field (names, address lines, ...).
pub const MAX_TEXT_CHARS: usize = 256;

/// The longest password or refresh token.
pub const MAX_SECRET_CHARS: usize = 4096;

/// The longest email address (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;

/// The longest local part of an email address (RFC 5321).
pub const MAX_EMAIL_LOCAL_CHARS: usize = 64;

/// The longest label of a domain name (RFC 1035).
pub const MAX_DNS_LABEL_CHARS: usize = 63;

/// The longest CreateAccount idempotency key.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// A tenant's longest one-time-token validity unless its settings say
/// otherwise (`one_time_token_max_validity`).
pub const DEFAULT_MAX_ONE_TIME_TOKEN_VALIDITY_SECS: u64 = 60 * 60;
