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

mod every_rpc;
mod recovery;
