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

/// The vendor's error body (`status`, `title`, `detail`, `path`, `timestamp`).
/// Only used to classify a failure: its text is never passed to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub title: Option<String>,
    pub detail: Option<String>,
    /// v2's typed errors, e.g. `error://broker-api/user-account/already-exists`.
    pub kind: Option<String>,
}

impl Problem {
    /// The problem in a body, if the body is a JSON object with a title or detail.
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        let map = object(body)?;
        let problem =
            Problem { title: string(&map, "title"), detail: string(&map, "detail"), kind: string(&map, "type") };
        let any = problem.title.is_some() || problem.detail.is_some() || problem.kind.is_some();
        (any || map.contains_key("status")).then_some(problem)
    }

    fn text(&self) -> String {
        let part = |text: &Option<String>| text.as_deref().unwrap_or("").replace('-', " ");
        format!("{} {} {}", part(&self.title), part(&self.detail), part(&self.kind)).to_lowercase()
    }

    /// Whether the problem says that the account exists already.
    pub(crate) fn says_already_exists(&self) -> bool {
        let text = self.text();
        ["already exist", "already registered", "already in use", "duplicate", "exists", "taken"]
            .iter()
            .any(|hint| text.contains(hint))
    }

    /// Whether the problem says that the account was not found.
    pub(crate) fn says_not_found(&self) -> bool {
        let text = self.text();
        ["not found", "not exist", "no account", "unknown email", "unknown user", "no such"]
            .iter()
            .any(|hint| text.contains(hint))
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
    fn timestamps_are_rfc3339() {
        let map = object(br#"{"created":"2024-01-13T09:20:04.651Z","bad":"yesterday"}"#).expect("object");
        assert_eq!(timestamp(&map, "created").map(|t| t.unix_timestamp()), Some(1_705_137_604));
        assert_eq!(timestamp(&map, "bad"), None);
    }
}
