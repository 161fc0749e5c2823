//! The optional OTLP copy of the audit trail: with `--audit-otlp-endpoint`,
//! the binary exports every audit event as a log record whose body is the
//! event's JSON (the same line the file gets) and whose event name is its
//! type, and sends what is still batched when it stops.

use crate::common;
use common::Running;
use mtr_sso::{
    proto::{LoginRequest, sso_service_client::SsoServiceClient},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD},
};
use std::time::Duration;

mod collector {
    //! A minimal OTLP/gRPC logs collector that keeps what it receives.
    use opentelemetry_proto::tonic::{
        collector::logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        logs::v1::LogRecord,
    };
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Collector {
        pub records: Arc<Mutex<Vec<LogRecord>>>,
    }

    #[tonic::async_trait]
    impl LogsService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportLogsServiceRequest>,
        ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
            let records =
                request.into_inner().resource_logs.into_iter().flat_map(|r| r.scope_logs).flat_map(|s| s.log_records);
            self.records.lock().expect("lock").extend(records);
            Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
        }
    }

    /// Starts the collector on an OS-picked port.
    pub async fn start() -> (Collector, std::net::SocketAddr) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(LogsServiceServer::new(collector.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }
}

/// The string body of a record.
fn body_text(record: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match record.body.as_ref().and_then(|body| body.value.as_ref()) {
        Some(Value::StringValue(text)) => text.clone(),
        other => panic!("a string body, got {other:?}"),
    }
}

#[tokio::test]
async fn every_audit_event_is_also_exported_as_an_otlp_log_record_with_the_same_json() {
    let (collector, collector_addr) = collector::start().await;
    let endpoint = format!("http://{collector_addr}");
    let file = std::env::temp_dir().join(format!("mtr-sso-audit-otlp-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let file_arg = file.display().to_string();
    let running = Running::start(&[
        "--sandbox",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--audit-file",
        &file_arg,
        "--audit-otlp-endpoint",
        &endpoint,
    ]);
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    client.login(login.clone()).await.expect("login");
    let wrong = LoginRequest { password: "not-the-password".into(), ..login };
    client.login(wrong).await.expect_err("refused");

    // SIGTERM makes the binary send what is still batched before it exits.
    running.terminate();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = collector.records.lock().expect("lock").clone();
        if records.len() >= 2 || std::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines: Vec<String> = std::fs::read_to_string(&file).expect("audit file").lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "two RPCs, two lines");
    assert_eq!(records.len(), 2, "one record per event");
    for (record, line) in records.iter().zip(&lines) {
        assert_eq!(body_text(record), *line, "the record's body is the event's line");
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(Some(record.event_name.as_str()), event["type"].as_str());
    }
    assert_eq!(records[0].event_name, "mtr-sso.session.created.v1");
    assert_eq!(records[1].event_name, "mtr-sso.authn.failed.v1");
    let _ = std::fs::remove_file(&file);
}
