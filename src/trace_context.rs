//! W3C Trace Context: the `traceparent` a caller sends in gRPC metadata is
//! continued on every vendor call of that RPC, so a trace spans caller,
//! gateway and vendor. Without one, the RPC starts a new trace. The context
//! travels in a task-local, so the upstream clients need no extra argument.
//! When spans are exported (OTLP), the exported span ids are the ones sent on.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tonic::metadata::MetadataMap;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace an RPC belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    /// The span id of the caller's span (the parent of ours), if there was one.
    parent_id: Option<[u8; 8]>,
    flags: u8,
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        let mut trace_id: [u8; 16] = rand::random();
        trace_id[0] |= 1; // never all zeros, which the spec forbids
        Self { trace_id, parent_id: None, flags: 1 }
    }

    /// Parses a `traceparent` header value; `None` if it is not valid.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version: [u8; 1] = parse_hex(version)?;
        if version[0] == 0xff || (version[0] == 0 && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = parse_hex(trace)?;
        let parent_id: [u8; 8] = parse_hex(parent)?;
        let [flags] = parse_hex::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, parent_id: Some(parent_id), flags })
    }

    /// The caller's trace from the request metadata, or a new one.
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        metadata.get("traceparent").and_then(|v| v.to_str().ok()).and_then(Self::parse).unwrap_or_else(Self::new_root)
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        crate::hex::encode(&self.trace_id)
    }

    /// The caller's span id, if the trace came from the caller.
    pub fn parent_span_id(&self) -> Option<String> {
        self.parent_id.map(|id| crate::hex::encode(&id))
    }

    /// Makes `span` the caller's child in exported traces, and returns this
    /// context with the trace id the exporter uses (which differs only for a
    /// new root, whose id the exporter picks). Without export, unchanged.
    pub fn attach(self, span: &tracing::Span) -> Self {
        if let Some(parent) = self.parent_id {
            let remote = SpanContext::new(
                TraceId::from_bytes(self.trace_id),
                SpanId::from_bytes(parent),
                TraceFlags::new(self.flags),
                true,
                TraceState::default(),
            );
            // Fails only when no exporter layer is installed: nothing to attach then.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        }
        let exported = span.context().span().span_context().clone();
        if exported.is_valid() { Self { trace_id: exported.trace_id().to_bytes(), ..self } } else { self }
    }

    /// A `traceparent` for an outgoing call: same trace, a new span id.
    pub fn child_traceparent(&self) -> String {
        let mut span_id: [u8; 8] = rand::random();
        span_id[0] |= 1;
        // Written piece by piece: this runs for every vendor call.
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        crate::hex::push(&mut traceparent, &self.trace_id);
        traceparent.push('-');
        crate::hex::push(&mut traceparent, &span_id);
        traceparent.push('-');
        crate::hex::push(&mut traceparent, &[self.flags]);
        traceparent
    }
}

/// Runs `future` with `context` as the current trace.
pub async fn scope<F: std::future::Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The current RPC's trace, if inside one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|context| *context).ok()
}

/// The `traceparent` for a call made inside `span`: the exported span's own
/// ids when spans are exported, else the current trace with a new span id.
pub fn outgoing_traceparent(span: &tracing::Span) -> Option<String> {
    let exported = span.context().span().span_context().clone();
    if exported.is_valid() {
        return Some(format!(
            "00-{}-{}-{:02x}",
            exported.trace_id(),
            exported.span_id(),
            exported.trace_flags().to_u8()
        ));
    }
    current().map(|context| context.child_traceparent())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span_id() {
        let context = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_span_id().as_deref(), Some("00f067aa0ba902b7"));
        let child = context.child_traceparent();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{child}");
        assert!(child.ends_with("-01"));
        assert!(!child.contains("00f067aa0ba902b7"), "a new span id");
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").is_some());
    }
}
