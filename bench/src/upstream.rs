//! An upstream that answers instantly with fixed bytes (or after a set
//! delay), so the benchmark measures the gateway, not a vendor emulation.
//! It speaks HTTP/1.1 like the vendor and counts the connections it accepts.

use axum::{
    Router,
    extract::{ConnectInfo, State},
    http::header,
    response::{IntoResponse, Response},
    routing::post,
};
use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
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
    peers: Mutex<HashSet<SocketAddr>>,
}

impl Upstream {
    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Connections accepted since the last reset.
    pub fn take_connection_count(&self) -> usize {
        let mut peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = peers.len();
        peers.clear();
        count
    }

    async fn pause(&self, peer: SocketAddr) {
        self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(peer);
        let delay = self.delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
    }
}

async fn one_time_token(State(up): State<Arc<Upstream>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    up.pause(peer).await;
    ([(header::CONTENT_TYPE, "application/json")], ONE_TIME_TOKEN_BODY).into_response()
}

async fn login(State(up): State<Arc<Upstream>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    up.pause(peer).await;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], LOGIN_BODY).into_response();
    for cookie in [SESSION_COOKIE, REFRESH_COOKIE] {
        response.headers_mut().append(header::SET_COOKIE, header::HeaderValue::from_static(cookie));
    }
    response
}

/// Starts the upstream on an OS-picked loopback port.
pub async fn start() -> anyhow::Result<(Arc<Upstream>, SocketAddr)> {
    let upstream = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/v1/one-time-token", post(one_time_token))
        .route("/manager/mtr-login", post(login))
        .with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Ok((upstream, addr))
}
