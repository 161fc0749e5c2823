//! Logging and tracing setup: readable lines locally, one JSON object per line
//! in production, and spans exported over OTLP/gRPC when an endpoint is set
//! (nothing is exported otherwise). Nothing in this crate logs a secret;
//! bodies are never logged.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use std::time::Duration;
use tracing_subscriber::{EnvFilter, filter::filter_fn, fmt, prelude::*};
use url::Url;

use crate::{config::LogFormat, json_log::JsonLines};

/// Keeps the span exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered; call before the process exits.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("mtr-sso: flushing traces failed: {error}");
        }
    }
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax. With an
/// OTLP endpoint, must run inside the tokio runtime (the exporter uses it).
pub fn init(format: LogFormat, filter: &str, otlp_endpoint: Option<&Url>) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("invalid setting --log: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let provider = match otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.as_str())
                .with_timeout(Duration::from_secs(3))
                .build()
                .map_err(|e| format!("invalid setting --otlp-endpoint: {e}"))?;
            let resource = Resource::builder().with_service_name("mtr-sso").build();
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
        None => None,
    };
    let export = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("mtr-sso")));
    // Log lines carry their own fields (the one line per RPC has them all), so
    // the log layers see events only, and spans exist only for the exporter.
    // Without one, spans are refused for the whole subscriber: a per-layer
    // filter alone still lets the registry build, enter and close each span
    // (two per RPC, about 5,000 instructions).
    let events_only = || filter_fn(|metadata| metadata.is_event());
    let no_spans = provider.is_none().then(events_only);
    let text =
        (format == LogFormat::Text).then(|| fmt::layer().with_target(false).with_ansi(ansi).with_filter(events_only()));
    let json = (format == LogFormat::Json).then(|| fmt::layer().event_format(JsonLines).with_filter(events_only()));
    tracing_subscriber::registry()
        .with(no_spans)
        .with(filter)
        .with(text)
        .with(json)
        .with(export)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(Telemetry { provider })
}
