//! Upstream calls go through the proxy the environment names (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), as an HTTP CONNECT tunnel with the
//! proxy URL's credentials; a proxy the gateway cannot use stops it at start.

mod common;

use common::{BINARY, Running};
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

/// A minimal CONNECT proxy on 127.0.0.1: it records each tunnel's request
/// head, then relays bytes both ways.
async fn start_connect_proxy() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_string();
                seen.lock().expect("lock").push(head);
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn upstream_calls_tunnel_through_the_environments_proxy_with_its_credentials() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"through-the-proxy"}"#))
        .expect(1)
        .mount(&vendor)
        .await;
    let (proxy, heads) = start_connect_proxy().await;
    let proxy_url = format!("http://user:secret@{proxy}");
    let running = Running::start_with_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--broker-api-url",
            &vendor.uri(),
            "--api-key",
            "k",
            "--platform-url",
            &vendor.uri(),
        ],
        &[("HTTP_PROXY", &proxy_url)],
    );
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let issued = client
        .issue_one_time_token(IssueOneTimeTokenRequest { email: "a@example.com".into(), ..Default::default() })
        .await
        .expect("issued through the proxy")
        .into_inner();
    assert_eq!(issued.login_link.expect("login link").one_time_token, "through-the-proxy");

    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "one tunnel: {heads:?}");
    let vendor_authority = vendor.address().to_string();
    assert!(heads[0].starts_with(&format!("CONNECT {vendor_authority} HTTP/1.1\r\n")), "{}", heads[0]);
    // "user:secret", as Basic credentials.
    assert!(heads[0].to_ascii_lowercase().contains("proxy-authorization: basic dxnlcjpzzwnyzxq="), "{}", heads[0]);
}

#[test]
fn a_proxy_that_cannot_carry_a_tunnel_stops_the_gateway_at_start() {
    let output = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--broker-api-url", "https://b.example.com", "--api-key", "k"])
        .args(["--platform-url", "https://p.example.com"])
        .env_clear()
        .env("HTTPS_PROXY", "socks5://127.0.0.1:1080")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not an http:// proxy"), "{stderr}");
    assert!(stderr.contains("b.example.com"), "names the host: {stderr}");
}

#[tokio::test]
async fn the_sandbox_is_reached_directly_whatever_proxy_the_environment_names() {
    // Nothing listens there: a call that tried the proxy would fail.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let running = Running::start_with_env(
        &["--sandbox", "--listen", "127.0.0.1:0", "--log-format", "json"],
        &[("HTTP_PROXY", &nowhere), ("ALL_PROXY", &nowhere)],
    );
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let login = mtr_sso::proto::LoginRequest {
        email: mtr_sso::sandbox::DEMO_EMAIL.into(),
        password: mtr_sso::sandbox::DEMO_PASSWORD.into(),
        ..Default::default()
    };
    client.login(login).await.expect("the sandbox answers directly");
}
