//! Tolerant reading of upstream JSON: every field optional, numbers accepted
//! where strings are expected, unknown fields ignored, empty strings treated
//! as absent. One wrongly typed field never throws away a whole answer.

use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Parses a body as a JSON object; anything else (HTML, text, arrays) is `None`.
pub(crate) fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A non-empty string field; a number is rendered as its decimal text.
pub(crate) fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A boolean field.
pub(crate) fn boolean(map: &Map<String, Value>, key: &str) -> Option<bool> {
    map.get(key)?.as_bool()
}

/// An object field.
pub(crate) fn child<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    map.get(key)?.as_object()
}

/// An RFC 3339 timestamp field.
pub(crate) fn timestamp(map: &Map<String, Value>, key: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(map.get(key)?.as_str()?, &Rfc3339).ok()
}

/// The vendor's error body (`status`, `title`, `detail`, `path`, `type`,
/// `timestamp`). Only used to classify a failure: its text is never passed
/// to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub title: Option<String>,
    pub detail: Option<String>,
    /// The typed error, e.g. `error://broker-api/user-account/already-exists`:
    /// the field the vendor says to branch on.
    pub kind: Option<String>,
    /// The body's own `status`: v1 sends a number, the v2 pages type it as a string.
    pub status: Option<u16>,
}

/// What a problem says, as far as classification cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemMeaning {
    /// An account (v2: a user account) with this email exists already.
    AlreadyExists,
    /// No such account or user account.
    NotFound,
}

/// Every `type` the vendor is known to send, and what it means. A type not
/// listed here decides nothing: the status and then the phrases do.
pub(crate) const KNOWN_TYPES: [(&str, ProblemMeaning); 2] = [
    ("error://broker-api/user-account/already-exists", ProblemMeaning::AlreadyExists),
    ("error://broker-api/user-account/not-found", ProblemMeaning::NotFound),
];

/// Whole titles or details (compared without case, surrounding blanks and a
/// final full stop) that the vendor is known to use for a taken email. Whole
/// phrases only: a word like "exists" or "taken" also occurs in refusals
/// that mean something else ("offer does not exist", "login taken").
const ALREADY_EXISTS_PHRASES: [&str; 5] = [
    "account with this email already exists",
    "user account already exists",
    "a user account with this email exists",
    "user with this email already exists",
    "email already exists",
];

/// Whole titles or details that the vendor is known to use for an unknown email.
const NOT_FOUND_PHRASES: [&str; 5] = [
    "account not found",
    "user account not found",
    "user with this email does not exist",
    "account with this email does not exist",
    "user not found",
];

impl Problem {
    /// The problem in a body, if the body is a JSON object with a title,
    /// detail, type or status (a JSON error body from the vendor, not a
    /// proxy's page, even when its status is not a number).
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        let map = object(body)?;
        let problem = Problem {
            title: string(&map, "title"),
            detail: string(&map, "detail"),
            kind: string(&map, "type"),
            status: string(&map, "status").and_then(|status| status.trim().parse().ok()),
        };
        let any = problem.title.is_some() || problem.detail.is_some() || problem.kind.is_some();
        (any || map.contains_key("status")).then_some(problem)
    }

    /// What the problem's `type` means, when it is a known one.
    pub(crate) fn typed_meaning(&self) -> Option<ProblemMeaning> {
        let kind = self.kind.as_deref()?.trim();
        KNOWN_TYPES.iter().find(|(known, _)| known.eq_ignore_ascii_case(kind)).map(|(_, meaning)| *meaning)
    }

    /// What the title or detail says, when either is one of the known phrases.
    pub(crate) fn phrase_meaning(&self) -> Option<ProblemMeaning> {
        let said = |phrases: &[&str]| {
            [&self.title, &self.detail].into_iter().flatten().any(|text| {
                let text = text.trim().trim_end_matches('.').trim().to_lowercase();
                phrases.contains(&text.as_str())
            })
        };
        if said(&ALREADY_EXISTS_PHRASES) {
            Some(ProblemMeaning::AlreadyExists)
        } else if said(&NOT_FOUND_PHRASES) {
            Some(ProblemMeaning::NotFound)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_strings_and_empty_strings_as_absent() {
        let map = object(br#"{"id": 42, "name": "", "uuid": "u-1"}"#).expect("object");
        assert_eq!(string(&map, "id").as_deref(), Some("42"));
        assert_eq!(string(&map, "name"), None);
        assert_eq!(string(&map, "uuid").as_deref(), Some("u-1"));
    }

    #[test]
    fn non_json_error_bodies_have_no_problem() {
        assert_eq!(Problem::parse(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(Problem::parse(b"[1,2]"), None);
        let problem = Problem::parse(br#"{"status":400,"title":"Bad Request","extra":{"x":1}}"#).expect("problem");
        assert_eq!(problem.title.as_deref(), Some("Bad Request"));
    }

    #[test]
    fn status_is_read_as_a_number_or_a_string() {
        assert_eq!(Problem::parse(br#"{"status":409}"#).and_then(|p| p.status), Some(409));
        assert_eq!(Problem::parse(br#"{"status":"409"}"#).and_then(|p| p.status), Some(409));
        let unnumbered = Problem::parse(br#"{"status":"conflict"}"#).expect("still the vendor's JSON error body");
        assert_eq!(unnumbered.status, None);
        assert_eq!(Problem::parse(br#"{"uuid":"u-1"}"#), None);
    }

    #[test]
    fn phrases_count_only_whole() {
        let problem = |detail: &str| Problem { title: None, detail: Some(detail.into()), kind: None, status: None };
        assert_eq!(
            problem("Account with this email already exists.").phrase_meaning(),
            Some(ProblemMeaning::AlreadyExists)
        );
        assert_eq!(problem("  USER ACCOUNT ALREADY EXISTS ").phrase_meaning(), Some(ProblemMeaning::AlreadyExists));
        for loose in ["Offer does not exist", "Login taken", "Duplicate request id", "exists", "Partner already exists"]
        {
            assert_eq!(problem(loose).phrase_meaning(), None, "{loose}");
        }
        assert_eq!(problem("User with this email does not exist").phrase_meaning(), Some(ProblemMeaning::NotFound));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let map = object(br#"{"created":"2024-01-13T09:20:04.651Z","bad":"yesterday"}"#).expect("object");
        assert_eq!(timestamp(&map, "created").map(|t| t.unix_timestamp()), Some(1_705_137_604));
        assert_eq!(timestamp(&map, "bad"), None);
    }
}
