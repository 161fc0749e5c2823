//! What an upstream call is about and how it failed: the vendor endpoint it
//! addressed, and the fault already interpreted for that endpoint, in terms
//! the gRPC layer can map to a status.

use std::{fmt, time::Duration};

/// An upstream endpoint, named for logs, metrics and error metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    CreateAccount,
    IssueOneTimeToken,
    Login,
    LoginWithToken,
    Refresh,
    /// Broker-API v2: the user account, created without a trading account or token.
    CreateUserAccount,
    /// Broker-API v2: a trading account for an existing user account.
    OpenTradingAccount,
    /// A Broker-API lookup by email (the preflight's v2 key check, and the
    /// resolution of a create of unknown outcome).
    AccountByEmail,
    /// The Broker-API's service information (the preflight's v1 key check).
    ServiceInfo,
    /// The platform's public details (the preflight's broker id check).
    PlatformDetails,
    /// Broker-API v2: the trading accounts of a user account (a read).
    TradingAccountsOfUser,
}

impl Endpoint {
    /// How many endpoints there are.
    pub const COUNT: usize = 11;

    /// A dense index below [`Endpoint::COUNT`], for per-endpoint tables.
    pub fn index(self) -> usize {
        match self {
            Endpoint::CreateAccount => 0,
            Endpoint::IssueOneTimeToken => 1,
            Endpoint::Login => 2,
            Endpoint::LoginWithToken => 3,
            Endpoint::Refresh => 4,
            Endpoint::CreateUserAccount => 5,
            Endpoint::OpenTradingAccount => 6,
            Endpoint::AccountByEmail => 7,
            Endpoint::ServiceInfo => 8,
            Endpoint::PlatformDetails => 9,
            Endpoint::TradingAccountsOfUser => 10,
        }
    }

    /// A stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::CreateAccount => "create_account",
            Endpoint::IssueOneTimeToken => "issue_one_time_token",
            Endpoint::Login => "login",
            Endpoint::LoginWithToken => "login_with_token",
            Endpoint::Refresh => "refresh",
            Endpoint::CreateUserAccount => "create_user_account",
            Endpoint::OpenTradingAccount => "open_trading_account",
            Endpoint::AccountByEmail => "account_by_email",
            Endpoint::ServiceInfo => "service_info",
            Endpoint::PlatformDetails => "platform_details",
            Endpoint::TradingAccountsOfUser => "trading_accounts_of_user",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong with one upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub endpoint: Endpoint,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    pub fault: UpstreamFault,
}

/// The kinds of upstream failure, already interpreted for the endpoint that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFault {
    /// No connection could be made: the request never left.
    ConnectFailed,
    /// No answer before the deadline; the request may have been processed.
    Timeout,
    /// The deadline had passed before the request could be sent: it was not
    /// sent, so even a create is known not to have happened.
    NoTimeLeft,
    /// The connection broke after the request was sent.
    ConnectionLost,
    /// The Broker-API refused our API key (HTTP 401).
    ApiKeyRejected,
    /// The Broker-API key lacks a permission, or our IP is not whitelisted (HTTP 403).
    PermissionDenied,
    /// The platform refused the email/password/broker id.
    CredentialsRejected,
    /// The platform refused a one-time token (spent, expired or voided).
    OneTimeTokenRejected,
    /// The platform refused a refresh token (spent or expired).
    RefreshTokenRejected,
    /// An account with this email exists already.
    AccountAlreadyExists,
    /// No account has this email.
    AccountNotFound,
    /// The upstream found the request invalid (HTTP 400/422 and others).
    RequestRejected,
    /// Over the vendor's rate limit (HTTP 429).
    RateLimited { retry_after: Option<Duration> },
    /// The upstream failed (HTTP 5xx).
    ServerError,
    /// The configured path does not exist upstream (HTTP 404/405 without a problem body).
    EndpointNotFound,
    /// The answer could not be understood.
    Protocol { problem: &'static str },
    /// Our own share of the vendor's rate limit is used up: the call was not sent.
    QuotaExhausted { retry_after: Duration },
    /// The circuit is open after consecutive failures: the call was not sent.
    CircuitOpen { retry_after: Duration },
    /// Every slot for calls to this API stayed taken until the deadline: the
    /// call was not sent.
    Busy,
    /// v2 opened the trading account, but says it is missing in the trading
    /// engine (`missingInTradingSystem: true`): its owner cannot trade with it.
    TradingAccountNotInTradingSystem,
}

impl UpstreamError {
    pub(crate) fn new(endpoint: Endpoint, status: Option<u16>, fault: UpstreamFault) -> Self {
        Self { endpoint, status, fault }
    }

    /// Whether the request may have been processed by the vendor even though
    /// no success answer arrived. Decides whether a create can be called lost.
    pub fn may_have_been_processed(&self) -> bool {
        match self.fault {
            UpstreamFault::Timeout | UpstreamFault::ConnectionLost | UpstreamFault::ServerError => true,
            UpstreamFault::Protocol { .. } => true,
            UpstreamFault::QuotaExhausted { .. }
            | UpstreamFault::CircuitOpen { .. }
            | UpstreamFault::Busy
            | UpstreamFault::NoTimeLeft
            | UpstreamFault::ConnectFailed
            | UpstreamFault::ApiKeyRejected
            | UpstreamFault::PermissionDenied
            | UpstreamFault::CredentialsRejected
            | UpstreamFault::OneTimeTokenRejected
            | UpstreamFault::RefreshTokenRejected
            | UpstreamFault::AccountAlreadyExists
            | UpstreamFault::AccountNotFound
            | UpstreamFault::RequestRejected
            | UpstreamFault::RateLimited { .. }
            | UpstreamFault::EndpointNotFound
            | UpstreamFault::TradingAccountNotInTradingSystem => false,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.fault {
            UpstreamFault::ConnectFailed => "could not connect to the upstream".to_string(),
            UpstreamFault::Timeout => "the upstream did not answer in time".to_string(),
            UpstreamFault::NoTimeLeft => "no time was left before the deadline; the call was not sent".to_string(),
            UpstreamFault::ConnectionLost => "the upstream connection broke during the call".to_string(),
            UpstreamFault::ApiKeyRejected => "the upstream rejected this service's API key".to_string(),
            UpstreamFault::PermissionDenied => {
                "the upstream denied this service's API key the operation (permission or IP whitelist)".to_string()
            }
            UpstreamFault::CredentialsRejected => "the platform rejected the email, password or broker id".to_string(),
            UpstreamFault::OneTimeTokenRejected => {
                "the platform rejected the one-time token (spent, expired or voided)".to_string()
            }
            UpstreamFault::RefreshTokenRejected => {
                "the platform rejected the refresh token (spent or expired); log in again".to_string()
            }
            UpstreamFault::AccountAlreadyExists => "an account with this email exists already".to_string(),
            UpstreamFault::AccountNotFound => "no account has this email".to_string(),
            UpstreamFault::RequestRejected => "the upstream refused the request as invalid".to_string(),
            UpstreamFault::RateLimited { .. } => "the upstream rate limit is exhausted".to_string(),
            UpstreamFault::ServerError => "the upstream failed".to_string(),
            UpstreamFault::EndpointNotFound => "the configured upstream path does not exist".to_string(),
            UpstreamFault::Protocol { problem } => format!("the upstream answer could not be used: {problem}"),
            UpstreamFault::QuotaExhausted { .. } => {
                "this service's share of the vendor's rate limit is used up; the call was not sent".to_string()
            }
            UpstreamFault::CircuitOpen { .. } => {
                "the upstream failed repeatedly; calls fail fast until it recovers, this one was not sent".to_string()
            }
            UpstreamFault::TradingAccountNotInTradingSystem => "the trading account was opened, but the vendor reports it \
                 missing in the trading system (missingInTradingSystem); its owner cannot trade until the vendor fixes it"
                .to_string(),
            UpstreamFault::Busy => {
                "all calls this service allows at once to the upstream were busy until the deadline; this one was not sent"
                    .to_string()
            }
        };
        write!(f, "{what} ({}", self.endpoint)?;
        if let Some(status) = self.status {
            write!(f, ", HTTP {status}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UpstreamError {}
