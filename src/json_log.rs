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
        write!(writer, "\",\"level\":\"{}\"", metadata.level())?;
        let mut fields = Fields { out: &mut writer, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, metadata.target())?;
        writer.write_str("}\n")
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-22T21:20:04.112345Z`.
fn write_timestamp(out: &mut impl fmt::Write, at: OffsetDateTime) -> fmt::Result {
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
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

/// Writes `text` with JSON's escapes, without quotes.
fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
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
