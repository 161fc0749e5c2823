//! A copy of every audit event as an OpenTelemetry log record, exported over
//! OTLP/gRPC when `--audit-otlp-endpoint` is set (off by default), through the
//! same OpenTelemetry crates as the spans. The record's body is the event's
//! JSON, unchanged; its event name is the CloudEvents type, its attribute
//! `audience` is `audit`. The copy is best effort: the stdout or file line
//! stays the trail of record, and only its loss is counted and fails closed.

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    logs::{SdkLogger, SdkLoggerProvider},
};
use std::time::{Duration, SystemTime};
use url::Url;

/// The exporter and its logger; dropping it sends what is still batched.
#[derive(Debug)]
pub struct OtlpCopy {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
}

impl OtlpCopy {
    /// An exporter to `endpoint`. Must run inside the tokio runtime, whose
    /// tasks carry the gRPC connection.
    pub fn start(endpoint: &Url) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.as_str())
            .with_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| format!("invalid setting --audit-otlp-endpoint: {e}"))?;
        let resource = Resource::builder().with_service_name("mtr-sso").build();
        let provider = SdkLoggerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        let logger = provider.logger("mtr-sso.audit");
        Ok(Self { provider, logger })
    }

    /// Queues `line` (one event's JSON) for export.
    pub fn emit(&self, event_type: &'static str, line: &[u8]) {
        let body = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)).into_owned();
        let mut record = self.logger.create_log_record();
        record.set_event_name(event_type);
        record.set_timestamp(SystemTime::now());
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_body(AnyValue::from(body));
        record.add_attribute("audience", "audit");
        self.logger.emit(record);
    }
}

impl Drop for OtlpCopy {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "exporting the last audit records over OTLP failed");
        }
    }
}
