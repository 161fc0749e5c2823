//! `google.protobuf.Timestamp` and `google.protobuf.Duration` for the JSON
//! side, written and read as protobuf's canonical JSON mapping asks: a
//! timestamp as RFC 3339 in UTC with `Z` and 0, 3, 6 or 9 fractional digits
//! (strict parsers refuse `+00:00`), a duration as seconds with an `s`
//! suffix. A value that does not parse is refused with the form it must
//! take (`"300s"`), never with the value itself; the caller's field path is
//! added where the body is parsed ([`super::request::parse`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::fmt;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// The earliest and latest seconds the mapping allows: 0001-01-01T00:00:00Z
/// and 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;
/// ±10,000 years, the mapping's range of a duration.
const DURATION_SECONDS: std::ops::RangeInclusive<i64> = -315_576_000_000..=315_576_000_000;

/// What a timestamp must look like, for refusals.
pub const TIMESTAMP_FORM: &str = "a Timestamp in RFC 3339, e.g. `\"2026-12-04T08:22:33Z\"`";
/// What a duration must look like, for refusals.
pub const DURATION_FORM: &str = "a Duration in seconds with an `s` suffix, e.g. `\"300s\"` or `\"1.5s\"`";
/// The quoted examples in the forms above: a refusal keeps these quotes
/// while it drops every other quoted text (it might be the caller's secret).
pub const EXAMPLE_VALUES: [&str; 3] = ["\"2026-12-04T08:22:33Z\"", "\"300s\"", "\"1.5s\""];

/// `google.protobuf.Timestamp`, the same wire message as prost's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.Duration`, the same wire message as prost's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `nanos` as the mapping writes a fraction: none, or 3, 6 or 9 digits.
fn fraction(nanos: u32) -> String {
    match nanos {
        0 => String::new(),
        n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
        n if n % 1_000 == 0 => format!(".{:06}", n / 1_000),
        n => format!(".{n:09}"),
    }
}

impl Timestamp {
    /// The canonical text, or why there is none.
    pub fn to_canonical(self) -> Result<String, &'static str> {
        let nanos = u32::try_from(self.nanos).ok().filter(|n| *n < 1_000_000_000).ok_or("nanos out of range")?;
        if !TIMESTAMP_SECONDS.contains(&self.seconds) {
            return Err("outside 0001-01-01 to 9999-12-31");
        }
        let at = OffsetDateTime::from_unix_timestamp(self.seconds).map_err(|_| "outside the calendar")?;
        Ok(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            fraction(nanos)
        ))
    }

    /// Reads RFC 3339 with any offset (as the mapping allows), into UTC.
    pub fn from_text(text: &str) -> Option<Self> {
        let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let seconds = at.unix_timestamp();
        TIMESTAMP_SECONDS.contains(&seconds).then(|| Timestamp { seconds, nanos: at.nanosecond() as i32 })
    }
}

impl Duration {
    /// The canonical text, or why there is none.
    pub fn to_canonical(self) -> Result<String, &'static str> {
        if !DURATION_SECONDS.contains(&self.seconds) || self.nanos.unsigned_abs() >= 1_000_000_000 {
            return Err("out of range");
        }
        if (self.seconds < 0 && self.nanos > 0) || (self.seconds > 0 && self.nanos < 0) {
            return Err("seconds and nanos have different signs");
        }
        let sign = if self.seconds < 0 || self.nanos < 0 { "-" } else { "" };
        Ok(format!("{sign}{}{}s", self.seconds.unsigned_abs(), fraction(self.nanos.unsigned_abs())))
    }

    /// Reads `[-]seconds[.fraction]s`, with at most 9 fractional digits.
    pub fn from_text(text: &str) -> Option<Self> {
        let number = text.strip_suffix('s')?;
        let (negative, number) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
            return None;
        }
        if number.ends_with('.') {
            return None;
        }
        let seconds: i64 = whole.parse().ok()?;
        let nanos: i32 = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().ok()? };
        if !DURATION_SECONDS.contains(&seconds) {
            return None;
        }
        let sign = if negative { -1 } else { 1 };
        Some(Duration { seconds: sign * seconds, nanos: sign as i32 * nanos })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_canonical().map_err(serde::ser::Error::custom)?)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_canonical().map_err(serde::ser::Error::custom)?)
    }
}

/// Reads one well-known type from a JSON string; anything else is refused
/// with `form`, never with the value.
struct TextVisitor<T> {
    form: &'static str,
    read: fn(&str) -> Option<T>,
}

impl<T> de::Visitor<'_> for TextVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.form)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.read)(text).ok_or_else(|| E::custom(format!("expected {}", self.form)))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor { form: TIMESTAMP_FORM, read: Timestamp::from_text })
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor { form: DURATION_FORM, read: Duration::from_text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp(seconds: i64, nanos: i32) -> String {
        Timestamp { seconds, nanos }.to_canonical().expect("in range")
    }

    #[test]
    fn timestamps_are_written_in_utc_with_z_and_0_3_6_or_9_digits() {
        assert_eq!(timestamp(1_796_372_553, 0), "2026-12-04T08:22:33Z");
        assert_eq!(timestamp(1_796_372_553, 640_000_000), "2026-12-04T08:22:33.640Z");
        assert_eq!(timestamp(1_796_372_553, 640_715_000), "2026-12-04T08:22:33.640715Z");
        assert_eq!(timestamp(1_796_372_553, 640_715_752), "2026-12-04T08:22:33.640715752Z");
        assert_eq!(timestamp(-62_135_596_800, 0), "0001-01-01T00:00:00Z");
        assert_eq!(timestamp(253_402_300_799, 999_999_999), "9999-12-31T23:59:59.999999999Z");
        assert!(Timestamp { seconds: 253_402_300_800, nanos: 0 }.to_canonical().is_err());
        assert!(Timestamp { seconds: 0, nanos: -1 }.to_canonical().is_err());
    }

    #[test]
    fn timestamps_are_read_with_any_offset_into_utc() {
        let read = |text: &str| Timestamp::from_text(text);
        assert_eq!(read("2026-12-04T08:22:33Z"), Some(Timestamp { seconds: 1_796_372_553, nanos: 0 }));
        assert_eq!(read("2026-12-04T09:22:33.5+01:00"), Some(Timestamp { seconds: 1_796_372_553, nanos: 500_000_000 }));
        for bad in ["", "2026-12-04", "yesterday", "2026-12-04 08:22:33"] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_round_trip_in_the_canonical_form() {
        for (text, seconds, nanos) in
            [("300s", 300, 0), ("1.500s", 1, 500_000_000), ("-0.000001s", 0, -1_000), ("0.000000001s", 0, 1)]
        {
            let duration = Duration::from_text(text).expect(text);
            assert_eq!((duration.seconds, duration.nanos), (seconds, nanos), "{text}");
            assert_eq!(duration.to_canonical().expect("canonical"), text);
        }
        assert_eq!(Duration::from_text("1.5s"), Some(Duration { seconds: 1, nanos: 500_000_000 }));
        for bad in ["5m", "300", "s", "1.s", ".5s", "1.0000000001s", "+1s", "1e3s", "315576000001s"] {
            assert_eq!(Duration::from_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_examples_kept_in_refusals_are_those_the_forms_show() {
        for example in EXAMPLE_VALUES {
            assert!(
                TIMESTAMP_FORM.contains(&format!("`{example}`")) || DURATION_FORM.contains(&format!("`{example}`"))
            );
        }
        let shown = |form: &str| form.matches("`\"").count();
        assert_eq!(shown(TIMESTAMP_FORM) + shown(DURATION_FORM), EXAMPLE_VALUES.len());
    }

    #[test]
    fn a_refusal_names_the_form_and_not_the_value() {
        let error = serde_json::from_str::<Duration>("\"5m\"").expect_err("no unit but s").to_string();
        assert!(error.contains("\"300s\"") && !error.contains("5m"), "{error}");
        let error = serde_json::from_str::<Duration>("300").expect_err("a number").to_string();
        assert!(error.contains("\"300s\""), "{error}");
        let error = serde_json::from_str::<Timestamp>("\"soon\"").expect_err("not RFC 3339").to_string();
        assert!(error.contains("RFC 3339") && !error.contains("soon"), "{error}");
    }
}
