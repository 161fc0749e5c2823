//! The JSON log line: one object per event, written straight into the log
//! buffer. The generic JSON formatter of `tracing-subscriber` builds a map of
//! owned values for every event and then serialises it, which made logging
//! the largest single cost of an RPC; this writes the same shape directly:
//! `{"timestamp":…,"level":…,"message":…,<fields>…,"target":…}`.

use std::fmt;
use time::OffsetDateTime;
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// Formats each event as one JSON object on one line.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, OffsetDateTime::now_utc())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(metadata.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields { out: &mut writer, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, metadata.target())?;
        writer.write_str("}\n")
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-22T21:20:04.112345Z`.
/// Digits are placed by hand: `write!` with seven padded numbers cost more
/// than the rest of the line.
fn write_timestamp(out: &mut impl fmt::Write, at: OffsetDateTime) -> fmt::Result {
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |end: usize, digits: usize, value: u32| {
        let mut value = value;
        for at in (end - digits..end).rev() {
            text[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(4, 4, at.year().clamp(0, 9999) as u32);
    put(7, 2, u8::from(at.month()).into());
    put(10, 2, at.day().into());
    put(13, 2, at.hour().into());
    put(16, 2, at.minute().into());
    put(19, 2, at.second().into());
    put(26, 6, at.microsecond());
    // Only ASCII digits and separators were written.
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// Writes `text` as a JSON string, quotes included.
fn write_string(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    write_escaped(out, text)?;
    out.write_char('"')
}

/// Formats a value straight into a JSON string, escaping as it goes: no
/// intermediate `String` per field.
fn write_formatted(out: &mut impl fmt::Write, value: fmt::Arguments<'_>) -> fmt::Result {
    struct Escaping<'a, W: fmt::Write>(&'a mut W);
    impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            write_escaped(self.0, text)
        }
    }
    out.write_char('"')?;
    fmt::write(&mut Escaping(out), value)?;
    out.write_char('"')
}

/// Bytes that JSON strings escape: control characters, `"` and `\` (and DEL, for safety).
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[0x7f] = true;
    table
};

/// Writes `text` with JSON's escapes, without quotes.
fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    // Most values need no escape at all: one scan, one write.
    if !text.bytes().any(|byte| NEEDS_ESCAPE[byte as usize]) {
        return out.write_str(text);
    }
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.write_str(&text[plain..at])?;
        if escaped.is_empty() {
            write!(out, "\\u{byte:04x}")?;
        } else {
            out.write_str(escaped)?;
        }
        plain = at + 1;
    }
    out.write_str(&text[plain..])
}

/// Writes each field as `,"name":value`.
struct Fields<'a, W: fmt::Write> {
    out: &'a mut W,
    result: fmt::Result,
}

impl<W: fmt::Write> Fields<'_, W> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_char(',')?;
        write_string(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl<W: fmt::Write> tracing::field::Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |out| write_string(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        if value.is_finite() {
            self.put(field, |out| write!(out, "{value}"));
        } else {
            self.put(field, |out| write_formatted(out, format_args!("{value}")));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, |out| write_formatted(out, format_args!("{value}")));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |out| write_formatted(out, format_args!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_zero_padded_rfc3339_with_microseconds() {
        let mut text = String::new();
        write_timestamp(&mut text, time::macros::datetime!(2026-01-02 03:04:05.000678 UTC)).expect("written");
        assert_eq!(text, "2026-01-02T03:04:05.000678Z");
        text.clear();
        write_timestamp(&mut text, time::macros::datetime!(0987-12-31 23:59:59.999999 UTC)).expect("written");
        assert_eq!(text, "0987-12-31T23:59:59.999999Z");
    }
}
