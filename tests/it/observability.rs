//! Metrics, trace propagation and the per-RPC log line, observed from outside:
//! the real binary's `/metrics` is scraped after a sandbox session, and a mock
//! vendor shows the caller's trace id arriving on the upstream call. The JSON
//! log format is checked on every kind of field and on hostile text.

use crate::common;
use common::{Running, spawn_gateway, tenant};
use mtr_sso::{
    json_log::JsonLines,
    proto::{IssueOneTimeTokenRequest, LoginRequest, sso_service_client::SsoServiceClient},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD},
};
use std::{collections::BTreeMap, time::Duration};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `name{labels}` → value, from the text exposition format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    all.iter()
        .filter(|(series, _)| {
            series.starts_with(&format!("{name}{{"))
                && labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value)
        .sum()
}

fn with_traceparent<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("traceparent", TRACEPARENT.parse().expect("ascii"));
    request.set_timeout(Duration::from_secs(5));
    request
}

#[tokio::test]
async fn metrics_scraped_after_a_sandbox_session_count_exactly_the_calls_made() {
    let running = Running::start(&[
        "--sandbox",
        "--listen",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    let (metrics_line, _) = running.wait_for("metrics on");
    let metrics_addr: String = serde_json::from_str::<serde_json::Value>(&metrics_line).expect("json")["metrics_addr"]
        .as_str()
        .expect("addr")
        .into();
    let addr = running.grpc_addr();
    let mut client = SsoServiceClient::new(common::channel(addr).await);

    let login =
        |password: &str| LoginRequest { email: DEMO_EMAIL.into(), password: password.into(), ..Default::default() };
    for _ in 0..3 {
        client.login(login(DEMO_PASSWORD)).await.expect("login");
    }
    client.login(with_traceparent(login("wrong"))).await.expect_err("wrong password");
    for _ in 0..2 {
        client
            .issue_one_time_token(IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() })
            .await
            .expect("token");
    }
    client.create_account(common::new_account("not an email")).await.expect_err("invalid");

    mtr_sso::upstream::install_crypto_provider();
    let body =
        reqwest::get(format!("http://{metrics_addr}/metrics")).await.expect("scrape").text().await.expect("text");
    let all = samples(&body);
    let handled = |method: &str, code: &str| {
        sample(
            &all,
            "grpc_server_handled_total",
            &[("grpc_method", method), ("grpc_code", code), ("grpc_type", "unary")],
        )
    };
    assert_eq!(handled("Login", "OK"), 3.0, "{body}");
    assert_eq!(handled("Login", "Unauthenticated"), 1.0);
    assert_eq!(handled("IssueOneTimeToken", "OK"), 2.0);
    assert_eq!(handled("CreateAccount", "InvalidArgument"), 1.0);
    assert_eq!(sample(&all, "grpc_server_started_total", &[("grpc_method", "Login")]), 4.0);
    assert_eq!(sample(&all, "grpc_server_handling_seconds_count", &[("grpc_method", "Login")]), 4.0);
    assert_eq!(
        sample(&all, "mtr_sso_rpc_errors_total", &[("grpc_method", "CreateAccount"), ("reason", "INVALID_REQUEST")]),
        1.0
    );
    let upstream = |endpoint: &str, status: &str| {
        sample(
            &all,
            "mtr_sso_upstream_requests_total",
            &[("tenant", "default"), ("endpoint", endpoint), ("status", status)],
        )
    };
    assert_eq!(upstream("login", "200"), 3.0);
    assert_eq!(upstream("login", "401"), 1.0);
    assert_eq!(upstream("issue_one_time_token", "200"), 2.0);
    assert_eq!(
        sample(&all, "mtr_sso_upstream_requests_total", &[("endpoint", "create_account")]),
        0.0,
        "invalid input never left"
    );
    assert_eq!(sample(&all, "mtr_sso_upstream_request_duration_seconds_count", &[("endpoint", "login")]), 4.0);
    assert_eq!(sample(&all, "mtr_sso_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    // The failed login's boundary line: one JSON object with everything an operator filters on.
    // The audit event of the same call shares stdout; a log pipeline tells them apart by `audience`.
    let line = loop {
        let (line, _) = running.wait_for("UPSTREAM_REJECTED_CREDENTIALS");
        if !line.contains("\"audience\":\"audit\"") {
            break line;
        }
    };
    let event: serde_json::Value = serde_json::from_str(&line).expect("json line");
    assert_eq!(event["message"], "rpc finished");
    assert_eq!(event["rpc.method"], "Login");
    assert_eq!(event["tenant"], "(default)");
    assert_eq!(event["code"], "Unauthenticated");
    assert_eq!(event["trace_id"], TRACE_ID);
    assert_eq!(event["caller"], "anonymous", "callers are not authenticated in this run");
    assert!(event["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert!(event["latency_us"].as_u64().is_some());
}

#[tokio::test]
async fn the_callers_trace_id_reaches_the_vendor_in_traceparent() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&server)
        .await;
    let mut gateway = spawn_gateway(vec![tenant("default", &server.uri())], Duration::from_secs(5)).await;
    let ask = || IssueOneTimeTokenRequest { email: "a@b.co".into(), ..Default::default() };
    gateway.client.issue_one_time_token(with_traceparent(ask())).await.expect("ok");
    gateway.client.issue_one_time_token(ask()).await.expect("ok");

    let requests = server.received_requests().await.expect("recorded");
    let traceparents: Vec<String> = requests
        .iter()
        .map(|r| r.headers.get("traceparent").expect("traceparent sent").to_str().expect("ascii").to_string())
        .collect();
    let continued: Vec<&str> = traceparents[0].split('-').collect();
    assert_eq!(continued[1], TRACE_ID, "same trace");
    assert_ne!(continued[2], "00f067aa0ba902b7", "a new span under the caller's");
    assert_eq!(continued[3], "01");
    let fresh: Vec<&str> = traceparents[1].split('-').collect();
    assert_eq!((fresh.len(), fresh[1].len()), (4, 32), "without a caller trace, a new one is started");
    assert_ne!(fresh[1], TRACE_ID);
}

mod collector {
    //! A minimal OTLP/gRPC trace collector that keeps what it receives.
    use opentelemetry_proto::tonic::{
        collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
        trace::v1::Span,
    };
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Collector {
        pub spans: Arc<Mutex<Vec<Span>>>,
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let spans =
                request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
            self.spans.lock().expect("lock").extend(spans);
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
        }
    }

    /// Starts the collector on an OS-picked port.
    pub async fn start() -> (Collector, std::net::SocketAddr) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }
}

#[tokio::test]
async fn spans_are_exported_over_otlp_as_children_of_the_callers_span() {
    let (collector, collector_addr) = collector::start().await;
    let endpoint = format!("http://{collector_addr}");
    let running =
        Running::start(&["--sandbox", "--listen", "127.0.0.1:0", "--log-format", "json", "--otlp-endpoint", &endpoint]);
    let addr = running.grpc_addr();
    let mut client = SsoServiceClient::new(common::channel(addr).await);
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    client.login(with_traceparent(login)).await.expect("login");

    // SIGTERM makes the binary flush its spans before it exits.
    running.terminate();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = collector.spans.lock().expect("lock").clone();
        if spans.iter().any(|s| s.name == "upstream") || std::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rpc = spans.iter().find(|s| s.name == "rpc").expect("the rpc span was exported");
    assert_eq!(mtr_sso::hex::encode(&rpc.trace_id), TRACE_ID, "the caller's trace");
    assert_eq!(mtr_sso::hex::encode(&rpc.parent_span_id), "00f067aa0ba902b7", "a child of the caller's span");
    let upstream = spans.iter().find(|s| s.name == "upstream").expect("the upstream span was exported");
    assert_eq!(mtr_sso::hex::encode(&upstream.trace_id), TRACE_ID);
    assert_eq!(upstream.parent_span_id, rpc.span_id, "the vendor call is a child of the rpc");
}

/// The JSON lines `emit` logs, each parsed.
fn json_lines_of(emit: impl FnOnce()) -> Vec<serde_json::Value> {
    let captured = common::CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().event_format(JsonLines).with_writer(captured.clone()).finish();
    tracing::subscriber::with_default(subscriber, emit);
    captured.text().lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

#[test]
fn every_field_kind_is_valid_json_with_its_type() {
    let lines = json_lines_of(|| {
        let error = std::io::Error::other("broken \"pipe\"");
        tracing::info!(
            rpc.method = "Login",
            latency_us = 42u64,
            delta = -3i64,
            ok = true,
            ratio = 0.5f64,
            nan = f64::NAN,
            error = &error as &dyn std::error::Error,
            debug = ?Some("x"),
            "rpc finished"
        );
    });
    let [line] = lines.as_slice() else { panic!("one line: {lines:?}") };
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "rpc finished");
    assert_eq!(line["rpc.method"], "Login");
    assert_eq!(line["latency_us"], 42);
    assert_eq!(line["delta"], -3);
    assert_eq!(line["ok"], true);
    assert_eq!(line["ratio"], 0.5);
    assert_eq!(line["nan"], "NaN");
    assert_eq!(line["error"], "broken \"pipe\"");
    assert_eq!(line["debug"], "Some(\"x\")");
    assert_eq!(line["target"], module_path!());
    let timestamp = line["timestamp"].as_str().expect("a string");
    assert!(
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339).is_ok(),
        "{timestamp}"
    );
}

#[test]
fn control_characters_quotes_and_unicode_survive_a_round_trip() {
    let nasty = "line\nbreak\ttab \"quoted\" back\\slash \u{1} bell\u{7} del\u{7f} é 漢字 🙂";
    let lines = json_lines_of(|| tracing::warn!(value = nasty, "odd input"));
    let [line] = lines.as_slice() else { panic!("one line: {lines:?}") };
    assert_eq!(line["value"], nasty);
    assert_eq!(line["level"], "WARN");
}
