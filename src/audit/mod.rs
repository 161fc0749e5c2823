//! The audit trail: one event per RPC decision that gives a user access or
//! refuses it, including refusals of the calling service by authentication or
//! policy. The envelope opens a [`Pending`] record for every RPC and closes it
//! with the answer; a record dropped unclosed (the caller went away) still
//! writes its event, as abandoned. Events are CloudEvents 1.0 in JSON lines
//! ([`event`]), name the user only by the keyed hash of the email
//! ([`subject`]), and go to stdout or a file through a writer thread
//! ([`sink`]), copied to OTLP when asked ([`otlp`]). Whether a lost event
//! fails the RPC is the operator's choice (`--audit-on-failure`).

pub mod answer;
mod answers;
pub mod event;
mod otlp;
mod record;
mod sink;
pub mod subject;

pub use answer::{AnswerNote, note};
pub use answers::{AuditedAnswer, AuditedRequest};
pub use event::{EventType, Minted, Obtained};
pub use record::{Opening, Pending};
pub use sink::Sink;

use std::sync::Arc;

use crate::{
    config::{AuditOnFailure, AuditSettings},
    metrics::Metrics,
};
use otlp::OtlpCopy;
use subject::EmailHasher;

/// The audit trail of one service: where events go, how emails are hashed,
/// what a lost event does. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sink: Sink,
    emails: EmailHasher,
    source: String,
    fail_closed: bool,
}

impl Audit {
    /// Starts the writer for `settings`: a file that cannot be opened for
    /// appending stops the start. With an OTLP endpoint, must run inside the
    /// tokio runtime.
    pub fn start(settings: &AuditSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let otlp = match &settings.otlp_endpoint {
            Some(endpoint) => Some(OtlpCopy::start(endpoint).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let sink = match &settings.file {
            Some(path) => Sink::file(path, otlp, metrics).map_err(|e| {
                anyhow::anyhow!("invalid setting --audit-file: cannot append to {}: {e}", path.display())
            })?,
            None => Sink::stdout(otlp, metrics).map_err(|e| anyhow::anyhow!("cannot start the audit writer: {e}"))?,
        };
        Ok(Self::with_sink(settings, sink))
    }

    /// An audit trail writing to `sink`.
    pub fn with_sink(settings: &AuditSettings, sink: Sink) -> Self {
        Self {
            inner: Arc::new(Inner {
                sink,
                emails: EmailHasher::new(settings.email_key.as_ref(), settings.emails_in_clear),
                source: settings.source.clone(),
                fail_closed: settings.on_failure == AuditOnFailure::Closed,
            }),
        }
    }
}
