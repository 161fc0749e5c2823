//! Upstream faults × every RPC: each call ends within its deadline with the
//! mapped code, CreateAccount reaches the vendor at most once, refused
//! connections are retried inside the deadline, a failing upstream opens the
//! circuit, calls beyond the concurrency limit wait and are never sent if no
//! slot frees up, and afterwards open sockets and tasks are back to their baseline.

use crate::common;
use common::{Gateway, reason, tenant};
use mtr_sso::{
    proto::{IssueOneTimeTokenRequest, LoginRequest, RefreshRequest},
    upstream::resilience::ResilienceSettings,
};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tonic::Code;

/// What the fault server does with every request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Slow,
    Hang,
    ResetMidBody,
    Html(u16),
    TooManyRequests,
    MalformedJson,
    Oversize,
    WrongContentType,
}

/// A raw HTTP/1.1 server that answers every request with one fault, records
/// the paths it was asked for, and aborts all its tasks when dropped.
struct FaultServer {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
    tasks: JoinSet<()>,
}

impl FaultServer {
    async fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let paths = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        let recorded = paths.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, fault, recorded.clone()));
            }
        });
        Self { addr, paths, tasks }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.paths.lock().expect("lock").iter().filter(|p| p.as_str() == path).count()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve(mut stream: TcpStream, fault: Fault, paths: Arc<Mutex<Vec<String>>>) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut read = 0;
    // Read the head and the body (Content-Length) of one request.
    loop {
        let Ok(n) = stream.read(&mut buffer[read..]).await else { return };
        if n == 0 {
            return;
        }
        read += n;
        let text = String::from_utf8_lossy(&buffer[..read]).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if read >= end + 4 + length {
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                paths.lock().expect("lock").push(path);
                break;
            }
        }
    }
    let json = |body: &str, extra: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let answer = match fault {
        Fault::Slow => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            json(r#"{"uuid":"u","token":"t"}"#, "set-cookie: co-auth=s; Path=/\r\n")
        }
        Fault::Hang => {
            std::future::pending::<()>().await;
            return;
        }
        Fault::ResetMidBody => {
            // The connection closes 190 bytes short of its Content-Length.
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"uuid\":",
                )
                .await;
            return;
        }
        Fault::Html(status) => {
            let body = format!("<html><body><h1>{status}</h1></body></html>");
            format!(
                "HTTP/1.1 {status} Error\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::TooManyRequests => {
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n".to_string()
        }
        Fault::MalformedJson => json(r#"{"token": "unterminated"#, ""),
        Fault::Oversize => {
            let body = format!("{{\"token\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
            json(&body, "")
        }
        Fault::WrongContentType => {
            let body = "<html>not the API</html>";
            format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        }
    };
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn gateway_for(url: &str, resilience: ResilienceSettings) -> Gateway {
    common::spawn_gateway_with(vec![tenant("default", url)], Duration::from_secs(5), 0, |settings| {
        settings.resilience = resilience
    })
    .await
}

/// Calls `rpc` with a 500 ms deadline; returns the code and reason and checks the time.
async fn call(gateway: &mut Gateway, rpc: &str) -> (Code, String) {
    let client = &mut gateway.client;
    const DEADLINE: Duration = Duration::from_millis(500);
    let started = Instant::now();
    let outcome = match rpc {
        "CreateAccount" => client
            .create_account(common::with_deadline(common::new_account("ada@example.com"), DEADLINE))
            .await
            .map(|r| {
                // A created account is returned even when signing it in failed.
                r.into_inner().sign_in_error.map(|e| e.reason).unwrap_or_default()
            }),
        "IssueOneTimeToken" => client
            .issue_one_time_token(common::with_deadline(
                IssueOneTimeTokenRequest { email: "a@b.co".into(), ..Default::default() },
                DEADLINE,
            ))
            .await
            .map(|_| String::new()),
        "Login" => client
            .login(common::with_deadline(
                LoginRequest { email: "a@b.co".into(), password: "pw".into(), ..Default::default() },
                DEADLINE,
            ))
            .await
            .map(|_| String::new()),
        _ => client
            .refresh(common::with_deadline(
                RefreshRequest { refresh_token: "rt-1".into(), ..Default::default() },
                DEADLINE,
            ))
            .await
            .map(|_| String::new()),
    };
    let elapsed = started.elapsed();
    assert!(elapsed < DEADLINE + Duration::from_millis(250), "{rpc} took {elapsed:?}");
    match outcome {
        Ok(sign_in_error) => (Code::Ok, sign_in_error),
        Err(status) => (status.code(), reason(&status)),
    }
}

fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

const RPCS: [&str; 4] = ["CreateAccount", "IssueOneTimeToken", "Login", "Refresh"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_every_rpc_ends_in_time_with_its_code_and_leaves_nothing_behind() {
    use Code::*;
    mtr_sso::upstream::install_crypto_provider();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (sockets_before, tasks_before) =
        (open_sockets(), tokio::runtime::Handle::current().metrics().num_alive_tasks());

    let unknown = "ACCOUNT_CREATION_OUTCOME_UNKNOWN";
    // Per fault: CreateAccount, IssueOneTimeToken, Login, Refresh. A CreateAccount
    // that got a 200 has created the account: OK, with the sign-in problem.
    let matrix: Vec<(Fault, [(Code, &str); 4])> = vec![
        (
            Fault::Slow,
            [
                (DeadlineExceeded, unknown),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
            ],
        ),
        (
            Fault::Hang,
            [
                (DeadlineExceeded, unknown),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
            ],
        ),
        (
            Fault::ResetMidBody,
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::Html(500),
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::Html(502),
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::Html(503),
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::TooManyRequests,
            [
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
            ],
        ),
        (
            Fault::MalformedJson,
            [
                (Ok, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
            ],
        ),
        (
            Fault::Oversize,
            [
                (Internal, unknown),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
            ],
        ),
        (
            Fault::WrongContentType,
            [
                (Ok, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
            ],
        ),
    ];
    let mut cells = 0;
    for (fault, expected) in matrix {
        let server = FaultServer::start(fault).await;
        let mut gateway = gateway_for(&server.url(), ResilienceSettings::default()).await;
        for (rpc, (code, expected_reason)) in RPCS.iter().zip(expected) {
            assert_eq!(call(&mut gateway, rpc).await, (code, expected_reason.to_string()), "{fault:?} × {rpc}");
            cells += 1;
        }
        assert_eq!(server.hits("/v1/accounts"), 1, "{fault:?}: CreateAccount reached the vendor once");
    }

    // Connection refused: nothing listens. Retried, never sent, not "outcome unknown".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let mut gateway = gateway_for(&format!("http://{closed}"), ResilienceSettings::default()).await;
    for rpc in RPCS {
        assert_eq!(call(&mut gateway, rpc).await, (Unavailable, "UPSTREAM_UNAVAILABLE".to_string()), "refused × {rpc}");
        cells += 1;
    }
    assert!(
        gateway.metrics_text().await.contains("mtr_sso_upstream_retries_total"),
        "refused connections were retried"
    );
    drop(gateway);

    // Everything the matrix opened is closed again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (sockets, tasks) = (open_sockets(), tokio::runtime::Handle::current().metrics().num_alive_tasks());
        if sockets <= sockets_before && tasks <= tasks_before {
            eprintln!(
                "figure: {cells} cells, each within 500 ms + 250 ms; sockets {sockets_before} → {sockets}, tasks {tasks_before} → {tasks}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "sockets {sockets_before} → {sockets}, tasks {tasks_before} → {tasks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_until_the_upstream_comes_up() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = reserved.local_addr().expect("addr");
    drop(reserved);
    let resilience = ResilienceSettings {
        max_attempts: 5,
        base_backoff: Duration::from_millis(60),
        ..ResilienceSettings::default()
    };
    let mut gateway = gateway_for(&format!("http://{addr}"), resilience).await;
    // The upstream comes up 20 ms in, before the first retry (at least 30 ms in).
    let upstream = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let listener = std::net::TcpListener::bind(addr).expect("rebind the reserved port");
        let server = wiremock::MockServer::builder().listener(listener).start().await;
        wiremock::Mock::given(wiremock::matchers::path("/v1/one-time-token"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
            .mount(&server)
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(server);
    });
    let request = IssueOneTimeTokenRequest { email: "a@b.co".into(), ..Default::default() };
    gateway
        .client
        .issue_one_time_token(common::with_deadline(request, Duration::from_secs(2)))
        .await
        .expect("retried into success");
    assert!(
        gateway
            .metrics_text()
            .await
            .contains("mtr_sso_upstream_retries_total{tenant=\"default\",endpoint=\"issue_one_time_token\"} 1")
    );
    upstream.abort();
}

#[tokio::test]
async fn a_failing_upstream_opens_the_circuit_and_calls_then_fail_fast_until_a_probe_succeeds() {
    let server = FaultServer::start(Fault::Html(503)).await;
    let resilience = ResilienceSettings {
        breaker_failures: 3,
        breaker_cooldown: Duration::from_millis(300),
        ..ResilienceSettings::default()
    };
    let mut gateway = gateway_for(&server.url(), resilience).await;
    for _ in 0..3 {
        assert_eq!(call(&mut gateway, "Login").await.1, "UPSTREAM_UNAVAILABLE");
    }
    let started = Instant::now();
    let (code, fast_reason) = call(&mut gateway, "Login").await;
    assert_eq!((code, fast_reason.as_str()), (Code::Unavailable, "UPSTREAM_CIRCUIT_OPEN"));
    assert!(started.elapsed() < Duration::from_millis(50), "fails fast");
    assert_eq!(server.hits("/manager/mtr-login"), 3, "the open circuit sent nothing");
    assert!(
        gateway.metrics_text().await.contains("mtr_sso_upstream_circuit_state{tenant=\"default\",api=\"platform\"} 1")
    );
    assert_eq!(
        call(&mut gateway, "IssueOneTimeToken").await.1,
        "UPSTREAM_UNAVAILABLE",
        "the Broker-API has its own circuit"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(call(&mut gateway, "Login").await.1, "UPSTREAM_UNAVAILABLE", "one probe goes out after the cooldown");
    assert_eq!(server.hits("/manager/mtr-login"), 4);
    assert_eq!(call(&mut gateway, "Login").await.1, "UPSTREAM_CIRCUIT_OPEN", "the failed probe opened it again");
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_wait_for_a_slot_and_are_never_sent_if_none_frees_up() {
    let server = FaultServer::start(Fault::Hang).await;
    let resilience = ResilienceSettings { max_concurrent_calls: 2, ..ResilienceSettings::off() };
    let mut gateway = gateway_for(&server.url(), resilience).await;
    // Two calls with a long deadline take both slots; the vendor never answers them.
    let mut calls = JoinSet::new();
    for n in 0..2 {
        let mut client = gateway.client.clone();
        calls.spawn(async move {
            // Distinct emails: identical concurrent requests would share one vendor call.
            let request = IssueOneTimeTokenRequest { email: format!("user{n}@b.co"), ..Default::default() };
            let status = client
                .issue_one_time_token(common::with_deadline(request, Duration::from_millis(1500)))
                .await
                .expect_err("the vendor never answers");
            (status.code(), reason(&status))
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = call(&mut gateway, "IssueOneTimeToken").await;
    assert_eq!(busy, (Code::DeadlineExceeded, "UPSTREAM_BUSY".to_string()), "it waited for a slot, then gave up");
    assert_eq!(server.hits("/v1/one-time-token"), 2, "the waiting call was never sent");
    while let Some(outcome) = calls.join_next().await {
        assert_eq!(outcome.expect("call"), (Code::DeadlineExceeded, "UPSTREAM_TIMEOUT".to_string()));
    }
    // The slots came back when their calls ended.
    assert_eq!(call(&mut gateway, "IssueOneTimeToken").await.1, "UPSTREAM_TIMEOUT");
    assert_eq!(server.hits("/v1/one-time-token"), 3);
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains("status=\"busy\"} 1"), "the refusal is counted:\n{metrics}");
}
