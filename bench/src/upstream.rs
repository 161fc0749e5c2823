//! An upstream that answers instantly with fixed bytes (or after a set
//! delay), so the benchmark measures the gateway, not a vendor emulation. It
//! speaks just enough HTTP/1.1 (keep-alive, `Content-Length` bodies) and counts
//! the connections that carried requests. It is hand-written rather than a web framework
//! because it shares the machine's CPUs with the gateway: the less it costs,
//! the less it takes from the side being measured.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

pub const API_KEY: &str = "bench-api-key";
pub const ONE_TIME_TOKEN_BODY: &str = r#"{"token":"b3f1c0d2e4a5968778695a4b3c2d1e0f"}"#;
pub const LOGIN_BODY: &str = r#"{"email":"bench@example.com","token":"c0a1b2c3d4e5f60718293a4b5c6d7e8f","tradingAccounts":[{"tradingAccountId":"100001","uuid":"6a1c1a49-4a3e-4d0a-9a57-2f5b1c1d0e01","offer":{"uuid":"00000000-0000-4000-8000-000000000001","name":"Standard","demo":true,"system":{"uuid":"00000000-0000-4000-8000-000000000002"}},"branchUuid":"00000000-0000-4000-8000-000000000003","created":"2024-01-13T09:20:04.651Z"}]}"#;
const SESSION_COOKIE: &str = "co-auth=c0a1b2c3d4e5f60718293a4b5c6d7e8f; Path=/; Max-Age=900; HttpOnly; SameSite=Lax";
const REFRESH_COOKIE: &str =
    "rt=9f8e7d6c5b4a39281706f5e4d3c2b1a0; Path=/manager/refresh-token; Max-Age=86400; HttpOnly";

/// Shared knobs and counters of the fixed upstream.
#[derive(Debug, Default)]
pub struct Upstream {
    delay_us: AtomicU64,
    /// Bumped by each count taken, so each connection is counted once per count.
    epoch: AtomicU64,
    connections_used: AtomicUsize,
}

impl Upstream {
    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Connections that carried a request since the last call.
    pub fn take_connection_count(&self) -> usize {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.connections_used.swap(0, Ordering::Relaxed)
    }
}

/// The complete answers, built once.
struct Answers {
    one_time_token: Vec<u8>,
    login: Vec<u8>,
    not_found: Vec<u8>,
}

impl Answers {
    fn new() -> Self {
        let ok = |body: &str, cookies: &[&str]| {
            let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
            for cookie in cookies {
                head.push_str(&format!("set-cookie: {cookie}\r\n"));
            }
            format!("{head}content-length: {}\r\n\r\n{body}", body.len()).into_bytes()
        };
        Self {
            one_time_token: ok(ONE_TIME_TOKEN_BODY, &[]),
            login: ok(LOGIN_BODY, &[SESSION_COOKIE, REFRESH_COOKIE]),
            not_found: b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        }
    }

    fn for_path(&self, path: &[u8]) -> &[u8] {
        match path {
            b"/v1/one-time-token" => &self.one_time_token,
            b"/manager/mtr-login" => &self.login,
            _ => &self.not_found,
        }
    }
}

/// Starts the upstream on an OS-picked loopback port.
pub async fn start() -> anyhow::Result<(Arc<Upstream>, SocketAddr)> {
    let upstream = Arc::new(Upstream::default());
    let answers = Arc::new(Answers::new());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shared = upstream.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, shared.clone(), answers.clone()));
        }
    });
    Ok((upstream, addr))
}

/// Answers the requests of one keep-alive connection, one at a time.
async fn serve(mut stream: TcpStream, upstream: Arc<Upstream>, answers: Arc<Answers>) {
    let mut buffer = Vec::with_capacity(4096);
    let mut counted_in = u64::MAX;
    loop {
        let Some((path, used)) = next_request(&mut stream, &mut buffer).await else { return };
        let epoch = upstream.epoch.load(Ordering::Relaxed);
        if counted_in != epoch {
            counted_in = epoch;
            upstream.connections_used.fetch_add(1, Ordering::Relaxed);
        }
        let delay = upstream.delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            // The OS's sleep is precise to tens of microseconds; the runtime's
            // timer wheel ticks every millisecond, which at 1000 requests a
            // second would round every answer by an amount that depends on
            // the phase between the requests and the ticks, not on the gateway.
            let delay = Duration::from_micros(delay);
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
        }
        if stream.write_all(answers.for_path(&path)).await.is_err() {
            return;
        }
        buffer.drain(..used);
    }
}

/// Reads until one whole request (head and `Content-Length` body) is
/// buffered; returns its path and length, or `None` when the peer is gone.
async fn next_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(Vec<u8>, usize)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buffer[..end];
            let path = head.split(|&b| b == b' ').nth(1)?.to_vec();
            let length = head
                .split(|&b| b == b'\n')
                .find_map(|line| {
                    let line = std::str::from_utf8(line).ok()?.trim();
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            if buffer.len() >= total {
                return Some((path, total));
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}
