//! Collects the violations of one request while its fields are read, with
//! the checks that several requests share (emails, secrets, texts, UUIDs,
//! dates and timestamps).

use secrecy::SecretString;
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description};

use super::{
    is_plausible_email,
    limits::{MAX_SECRET_CHARS, MAX_TEXT_CHARS},
};
use crate::error::{InvalidReason, SsoError, Violation};

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
const HYPHENATED_UUID_LEN: usize = 36;

/// Collects violations while reading a request.
#[derive(Default)]
pub(super) struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    pub(super) fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(Violation::new(field, description));
    }

    pub(super) fn finish<T>(self, value: T) -> Result<T, SsoError> {
        if self.violations.is_empty() {
            Ok(value)
        } else {
            Err(SsoError::InvalidArgument { reason: InvalidReason::InvalidRequest, violations: self.violations })
        }
    }

    pub(super) fn email(&mut self, field: &str, value: String) -> String {
        if value.is_empty() {
            self.violation(field, "is required");
        } else if value.trim() != value {
            // Said plainly: a pasted address often carries a space or newline the caller cannot see.
            self.violation(field, "has spaces or line breaks before or after the address; remove them");
        } else if !is_plausible_email(&value) {
            self.violation(field, "is not a valid email address");
        }
        value
    }

    pub(super) fn secret(&mut self, field: &str, value: String) -> SecretString {
        if value.is_empty() {
            self.violation(field, "is required");
        } else if value.chars().count() > MAX_SECRET_CHARS {
            self.violation(field, format!("is longer than {MAX_SECRET_CHARS} characters"));
        }
        SecretString::from(value)
    }

    pub(super) fn required_text(&mut self, field: &str, value: String) -> String {
        if value.trim().is_empty() {
            self.violation(field, "is required");
        } else {
            self.check_text(field, &value);
        }
        value
    }

    /// Empty means absent: the vendor refuses empty strings.
    pub(super) fn optional_text(&mut self, field: &str, value: String) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        if value.trim().is_empty() {
            self.violation(field, "is blank; leave it empty to omit it");
            return None;
        }
        self.check_text(field, &value);
        Some(value)
    }

    pub(super) fn check_text(&mut self, field: &str, value: &str) {
        if value.chars().count() > MAX_TEXT_CHARS {
            self.violation(field, format!("is longer than {MAX_TEXT_CHARS} characters"));
        } else if value.chars().any(char::is_control) {
            self.violation(field, "contains control characters");
        }
    }

    /// The hyphenated form only (`8-4-4-4-12` hex digits), as the vendor
    /// writes UUIDs and the OpenAPI document states; `uuid` alone would also
    /// take the braced, URN and unhyphenated forms.
    pub(super) fn optional_uuid(&mut self, field: &str, value: String) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        if value.len() != HYPHENATED_UUID_LEN || uuid::Uuid::parse_str(&value).is_err() {
            self.violation(field, "is not a UUID (8-4-4-4-12 hex digits)");
        }
        Some(value)
    }

    pub(super) fn optional_timestamp(&mut self, field: &str, value: Option<prost_types::Timestamp>) -> Option<String> {
        let value = value?;
        let nanos = u32::try_from(value.nanos).ok().filter(|n| *n < 1_000_000_000);
        let formatted = nanos
            .and_then(|nanos| {
                OffsetDateTime::from_unix_timestamp(value.seconds).ok().map(|t| t.replace_nanosecond(nanos))
            })
            .and_then(Result::ok)
            .and_then(|t| t.format(&Rfc3339).ok());
        if formatted.is_none() {
            self.violation(field, "is not a valid timestamp");
        }
        formatted
    }

    pub(super) fn optional_date(&mut self, field: &str, value: String) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        // Exactly `YYYY-MM-DD` in ASCII digits first: the parser alone would
        // also take a sign before the year.
        let shaped = value.len() == 10
            && value.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
        let parsed = if shaped { Date::parse(&value, format_description!("[year]-[month]-[day]")).ok() } else { None };
        match parsed {
            Some(date) if date > OffsetDateTime::now_utc().date() => self.violation(field, "is in the future"),
            Some(_) => {}
            None => self.violation(field, "must be a date as YYYY-MM-DD"),
        }
        Some(value)
    }
}
