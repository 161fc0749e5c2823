//! One audit event: a CloudEvents 1.0 envelope (JSON format) around what was
//! decided for whom, by whose request. The types form a small, stable set,
//! versioned in their names; docs/audit.md and docs/audit-event.schema.json
//! describe every field. Serialised by serde_json, which escapes quotes and
//! control characters, and here also the three characters some readers take
//! for a line break (NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR), so no value
//! can break out of its line.

use serde::Serialize;
use std::io::{self, Write};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::subject::Subject;

/// The CloudEvents version of the envelope.
const SPEC_VERSION: &str = "1.0";

/// The event types. A new meaning gets a new name (or a `.v2`), never a
/// changed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// CreateAccount answered with an account.
    AccountCreated,
    /// IssueOneTimeToken answered with a login link.
    TokenCreated,
    /// Login, or IssueOneTimeToken with `start_session`, answered with a session.
    SessionCreated,
    /// Refresh answered with a renewed session.
    SessionRefreshed,
    /// The calling service did not authenticate (`CALLER_UNAUTHENTICATED`).
    CallerUnauthenticated,
    /// The policy refused the calling service (`CALLER_NOT_PERMITTED`).
    CallerDenied,
    /// The vendor refused the user's password, refresh token or one-time token.
    AuthnFailed,
    /// Any other end without access: invalid input, limits, vendor failures,
    /// overload, or the caller going away before the answer.
    RequestRefused,
}

impl EventType {
    /// The CloudEvents `type`.
    pub fn name(self) -> &'static str {
        match self {
            EventType::AccountCreated => "mtr-sso.account.created.v1",
            EventType::TokenCreated => "mtr-sso.token.created.v1",
            EventType::SessionCreated => "mtr-sso.session.created.v1",
            EventType::SessionRefreshed => "mtr-sso.session.refreshed.v1",
            EventType::CallerUnauthenticated => "mtr-sso.caller.unauthenticated.v1",
            EventType::CallerDenied => "mtr-sso.caller.denied.v1",
            EventType::AuthnFailed => "mtr-sso.authn.failed.v1",
            EventType::RequestRefused => "mtr-sso.request.refused.v1",
        }
    }

    /// The type of a refusal with ErrorInfo `reason`.
    pub fn of_refusal(reason: &str) -> Self {
        match reason {
            "CALLER_UNAUTHENTICATED" => EventType::CallerUnauthenticated,
            "CALLER_NOT_PERMITTED" => EventType::CallerDenied,
            "UPSTREAM_REJECTED_CREDENTIALS" | "REFRESH_TOKEN_INVALID" | "ONE_TIME_TOKEN_INVALID" => {
                EventType::AuthnFailed
            }
            _ => EventType::RequestRefused,
        }
    }
}

/// How the RPC ended for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// OK: something was handed over.
    Granted,
    /// An error status.
    Refused,
    /// The caller went away (or its deadline passed) before the answer.
    Abandoned,
}

/// What an answer handed over; never the token, cookie or session itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Minted {
    Account,
    TradingAccount,
    LoginLink,
    Session,
}

/// How the answer was obtained, when not by a vendor call of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Obtained {
    /// This RPC's own vendor calls.
    Vendor,
    /// A concurrent identical call's vendor call, shared.
    SharedCall,
    /// A refresh result remembered in the reuse window.
    ReuseWindow,
    /// A create whose answer was lost, resolved by looking the email up.
    Lookup,
    /// The stored outcome of an earlier CreateAccount with the same idempotency key.
    IdempotentReplay,
}

/// The `data` of an event.
#[derive(Debug, Clone, Serialize)]
pub struct Data {
    pub method: &'static str,
    pub protocol: &'static str,
    /// The calling service; `anonymous` when callers are not authenticated,
    /// `null` when it failed to authenticate.
    pub caller: Option<String>,
    pub tenant: Option<String>,
    pub subject: Subject,
    pub outcome: Outcome,
    /// The gRPC code name, e.g. `OK`, `PermissionDenied`, `Canceled`.
    pub code: &'static str,
    /// The ErrorInfo reason of a refusal.
    pub reason: Option<&'static str>,
    pub minted: Vec<Minted>,
    pub obtained: Option<Obtained>,
    pub request_id: Option<String>,
    pub trace_id: String,
    pub peer: String,
}

/// The whole event, as one JSON object.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    time: String,
    datacontenttype: &'static str,
    /// A CloudEvents extension attribute that lets a log pipeline route audit
    /// lines apart from the application log on the same stream.
    audience: &'static str,
    data: &'a Data,
}

/// The event as one line of JSON, newline included.
pub fn line(source: &str, event_type: EventType, data: &Data) -> Vec<u8> {
    let envelope = Envelope {
        specversion: SPEC_VERSION,
        id: uuid::Uuid::new_v4().to_string(),
        source,
        event_type: event_type.name(),
        time: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        datacontenttype: "application/json",
        audience: "audit",
        data,
    };
    let mut line = Vec::with_capacity(640);
    // Serialising plain strings, numbers and enums into memory cannot fail.
    let _ = envelope.serialize(&mut serde_json::Serializer::with_formatter(&mut line, OneLine));
    line.push(b'\n');
    line
}

/// serde_json's compact output, with the characters that Python's
/// `splitlines`, JavaScript before ES2019 and some log shippers treat as line
/// breaks written as `\u` escapes.
struct OneLine;

impl serde_json::ser::Formatter for OneLine {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // In UTF-8 each of the three begins with byte 0xC2 or 0xE2; a byte scan
        // for those passes almost every fragment through whole, where the
        // search by character below decodes every one.
        if memchr::memchr2(0xC2, 0xE2, fragment.as_bytes()).is_none() {
            return writer.write_all(fragment.as_bytes());
        }
        let mut rest = fragment;
        while let Some(at) = rest.find(['\u{85}', '\u{2028}', '\u{2029}']) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let breaking = rest[at..].chars().next().unwrap_or_default();
            write!(writer, "\\u{:04x}", u32::from(breaking))?;
            rest = &rest[at + breaking.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data {
        Data {
            method: "Login",
            protocol: "grpc",
            caller: Some("crm\"\n{\"type\":\"forged\"}".into()),
            tenant: Some("default".into()),
            subject: Subject { email: Some("a\n@b.co".into()), ..Subject::default() },
            outcome: Outcome::Granted,
            code: "OK",
            reason: None,
            minted: vec![Minted::Session],
            obtained: Some(Obtained::Vendor),
            request_id: None,
            trace_id: "0".repeat(32),
            peer: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn an_event_is_one_line_whatever_its_values_hold() {
        let line = line("/mtr-sso", EventType::SessionCreated, &data());
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one newline, at the end");
        let event: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(event["type"], "mtr-sso.session.created.v1");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["data"]["caller"], "crm\"\n{\"type\":\"forged\"}");
        assert_eq!(event["data"]["minted"], serde_json::json!(["session"]));
    }

    #[test]
    fn characters_some_readers_take_for_line_breaks_are_escaped() {
        let mut hostile = data();
        hostile.tenant = Some("a\u{85}b\u{2028}c\u{2029}d\u{1c}e\u{e9}".into());
        let line = line("/mtr-sso", EventType::RequestRefused, &hostile);
        let text = std::str::from_utf8(&line).expect("UTF-8");
        assert_eq!(text.lines().count(), 1);
        assert!(!text.contains(['\u{85}', '\u{2028}', '\u{2029}', '\u{1c}']), "{text}");
        assert!(text.contains("a\\u0085b\\u2028c\\u2029d\\u001ce\u{e9}"), "{text}");
        let event: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(event["data"]["tenant"], "a\u{85}b\u{2028}c\u{2029}d\u{1c}e\u{e9}");
    }

    #[test]
    fn refusals_are_typed_by_reason() {
        assert_eq!(EventType::of_refusal("CALLER_UNAUTHENTICATED"), EventType::CallerUnauthenticated);
        assert_eq!(EventType::of_refusal("CALLER_NOT_PERMITTED"), EventType::CallerDenied);
        assert_eq!(EventType::of_refusal("REFRESH_TOKEN_INVALID"), EventType::AuthnFailed);
        assert_eq!(EventType::of_refusal("OVERLOADED"), EventType::RequestRefused);
    }
}
