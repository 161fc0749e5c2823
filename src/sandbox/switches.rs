//! Fault switches: latency, server errors, connection resets mid-body,
//! malformed bodies and hangs (before or after the request was processed),
//! refusals a preflight must tell apart (400, 404, a bot-protection 403), and
//! a trading account opened on paper only. All off by default. Plain data,
//! set through the control endpoints or `Sandbox::set_switches`; the
//! middleware in `faults.rs` applies them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// No fault.
    #[default]
    None,
    /// 503 with an HTML body, as a proxy in front of the vendor sends it.
    ServerError,
    /// The connection breaks after part of the body was sent.
    Reset,
    /// 200 with a body that is not JSON.
    MalformedBody,
    /// No answer at all, until the client gives up.
    Hang,
    /// The account is created, then the answer is withheld until the client
    /// gives up: a vendor that did the work but whose answer was lost on the
    /// way back. Applied by the account-creating handlers (v1, CRM-API, v2)
    /// and the v2 trading-account open only; other requests under the path
    /// filters (the lookups, the list of trading accounts) are answered as usual.
    HangAfterProcessing,
    /// A create for an email that is taken is refused (nothing is created),
    /// then the refusal is withheld until the client gives up: a vendor
    /// whose duplicate refusal was lost on the way back. Applied by the
    /// account-creating handlers (v1, CRM-API, v2) only, as above; the v2
    /// trading-account open opens nothing and withholds its answer.
    HangAfterRefusing,
    /// 403 with a Problem body: the key lacks the permission.
    Forbidden,
    /// 422 with a Problem body: the vendor refuses the request.
    Unprocessable,
    /// 400 with a Problem body titled [`BAD_REQUEST_TITLE`], as a v2 lookup
    /// answers for an address it dislikes.
    BadRequest,
    /// 404 without a body: the path does not exist on this host (e.g. a
    /// CRM-API without `/service-info`).
    NotFound,
    /// 403 with `cf-mitigated: challenge` and an HTML page: Cloudflare's bot
    /// protection in front of the host, before the API saw the call.
    BotChallenge,
    /// The v2 trading account is opened, but its answer (and every later
    /// read of it) says `missingInTradingSystem: true`. Applied by that
    /// handler only; other requests under the path filters are answered as usual.
    MissingInTradingSystem,
}

/// The title of the [`FaultKind::BadRequest`] answer.
pub const BAD_REQUEST_TITLE: &str = "Email address is not valid";

/// The sandbox's runtime switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Switches {
    /// Latency added before every vendor answer.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// The fault to inject.
    pub fault: FaultKind,
    /// Share of requests that get the fault, 0.0 to 1.0.
    pub fault_ratio: f64,
    /// Only requests whose path starts with this get the fault (empty: all).
    pub fault_path_prefix: String,
    /// Only requests whose path also contains this get the fault (empty: all),
    /// e.g. `/trading-accounts` for that one v2 call.
    pub fault_path_contains: String,
    /// Requests per minute per API key and per platform; 0 switches the limit off.
    pub rate_limit_per_minute: u32,
    /// The window of the rate limit: a minute, as the vendor's, unless a test
    /// shortens it (milliseconds in JSON).
    #[serde(with = "millis")]
    pub rate_limit_window: Duration,
    /// Answer logins in the older platforms' shape (`accounts`, `selectedAccount`).
    pub legacy_login_shape: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            fault: FaultKind::None,
            fault_ratio: 1.0,
            fault_path_prefix: String::new(),
            fault_path_contains: String::new(),
            rate_limit_per_minute: crate::config::SandboxOptions::default().rate_limit_per_minute,
            rate_limit_window: Duration::from_secs(60),
            legacy_login_shape: false,
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
