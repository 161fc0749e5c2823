//! Upstream calls go through the proxy the environment names (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) with the proxy URL's credentials:
//! an http proxy forwards plain-http calls and tunnels HTTPS ones (CONNECT), a
//! socks5 proxy carries both. A proxy variable the gateway cannot use stops it
//! at start, and the sandbox is always reached directly.
//!
//! Each gateway runs as a child process with its own environment, since the
//! client reads the proxy variables when it is built.

use crate::{common, tls_vendor};
use common::{BINARY, Running};
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

/// "user:secret", as Basic credentials.
const BASIC_USER_SECRET: &str = "basic dxnlcjpzzwnyzxq=";

/// A minimal HTTP proxy on 127.0.0.1 that records each request head it gets:
/// a CONNECT opens a tunnel, any other request is forwarded to the host its
/// absolute URI names (in origin form). Then it relays bytes both ways.
async fn start_http_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut head = String::new();
                while !head.ends_with("\r\n\r\n") {
                    match client.read_line(&mut head).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                seen.lock().expect("lock").push(head.clone());
                let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
                let (method, target) =
                    (request_line.next().unwrap_or_default(), request_line.next().unwrap_or_default());
                if method == "CONNECT" {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    return;
                }
                let Some((authority, origin_form)) =
                    target.strip_prefix("http://").and_then(|rest| rest.find('/').map(|at| rest.split_at(at)))
                else {
                    let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(authority).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let forwarded = head.replacen(target, origin_form, 1);
                if upstream.write_all(forwarded.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, heads)
}

/// What a SOCKS5 proxy was asked: the credentials it was given and the
/// destination of the CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SocksConnect {
    credentials: Option<(String, String)>,
    destination: String,
}

/// A minimal SOCKS5 proxy on 127.0.0.1 (RFC 1928 CONNECT, with RFC 1929
/// username/password authentication when the client offers it).
async fn start_socks5_proxy() -> (SocketAddr, Arc<Mutex<Vec<SocksConnect>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connects = Arc::new(Mutex::new(Vec::new()));
    let seen = connects.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok((connect, mut upstream)) = socks5_handshake(&mut client).await else { return };
                seen.lock().expect("lock").push(connect);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, connects)
}

async fn socks5_handshake(client: &mut TcpStream) -> std::io::Result<(SocksConnect, TcpStream)> {
    async fn read_string(client: &mut TcpStream) -> std::io::Result<String> {
        let mut text = vec![0u8; usize::from(client.read_u8().await?)];
        client.read_exact(&mut text).await?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
    let refused = || std::io::Error::other("not a SOCKS5 CONNECT");
    // Greeting: version 5 and the authentication methods offered.
    if client.read_u8().await? != 5 {
        return Err(refused());
    }
    let mut methods = vec![0u8; usize::from(client.read_u8().await?)];
    client.read_exact(&mut methods).await?;
    let credentials = if methods.contains(&2) {
        client.write_all(&[5, 2]).await?;
        let _version = client.read_u8().await?;
        let user = read_string(client).await?;
        let password = read_string(client).await?;
        client.write_all(&[1, 0]).await?;
        Some((user, password))
    } else {
        client.write_all(&[5, 0]).await?;
        None
    };
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    if request[..2] != [5, 1] {
        return Err(refused());
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => read_string(client).await?,
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            format!("[{}]", std::net::Ipv6Addr::from(ip))
        }
        _ => return Err(refused()),
    };
    let destination = format!("{host}:{}", client.read_u16().await?);
    let upstream = TcpStream::connect(&destination).await?;
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    Ok((SocksConnect { credentials, destination }, upstream))
}

/// A plain-http vendor that hands out `token` exactly once.
async fn http_vendor(token: &str) -> MockServer {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(r#"{{"token":"{token}"}}"#)))
        .expect(1)
        .mount(&vendor)
        .await;
    vendor
}

/// Issues a one-time token through the gateway and gives the token.
async fn issue_token(running: &Running) -> String {
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let issued = client
        .issue_one_time_token(IssueOneTimeTokenRequest { email: "a@example.com".into(), ..Default::default() })
        .await
        .expect("issued through the proxy")
        .into_inner();
    issued.login_link.expect("login link").one_time_token
}

#[tokio::test]
async fn plain_http_calls_are_forwarded_by_the_environments_proxy_with_its_credentials() {
    let vendor = http_vendor("forwarded").await;
    let (proxy, heads) = start_http_proxy().await;
    let running = common::vendor_gateway(&vendor.uri(), &[], &[("HTTP_PROXY", &format!("http://user:secret@{proxy}"))]);
    assert_eq!(issue_token(&running).await, "forwarded");

    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "one request through the proxy: {heads:?}");
    let absolute = format!("POST {}/v1/one-time-token HTTP/1.1\r\n", vendor.uri());
    assert!(heads[0].starts_with(&absolute), "{}", heads[0]);
    assert!(
        heads[0].to_ascii_lowercase().contains(&format!("proxy-authorization: {BASIC_USER_SECRET}")),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn https_calls_tunnel_through_the_environments_proxy_with_its_credentials() {
    let (ca_pem, certificate, key) = tls_vendor::certificates();
    let vendor = tls_vendor::start(certificate, key).await;
    let trust_store = tls_vendor::write_trust_store("proxy-tunnel-ca.pem", &ca_pem);
    let (proxy, heads) = start_http_proxy().await;
    let proxy_url = format!("http://user:secret@{proxy}");
    let running = common::vendor_gateway(
        &vendor.base,
        &[],
        &[("HTTPS_PROXY", &proxy_url), ("SSL_CERT_FILE", trust_store.to_str().expect("utf8"))],
    );
    assert_eq!(issue_token(&running).await, tls_vendor::TOKEN);
    assert_eq!(vendor.served(), 1);

    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "one tunnel: {heads:?}");
    assert!(heads[0].starts_with(&format!("CONNECT {} HTTP/1.1\r\n", vendor.authority)), "{}", heads[0]);
    assert!(
        heads[0].to_ascii_lowercase().contains(&format!("proxy-authorization: {BASIC_USER_SECRET}")),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_socks5_proxy_from_the_environment_carries_the_calls() {
    let vendor = http_vendor("through-socks").await;
    let (proxy, connects) = start_socks5_proxy().await;
    let running =
        common::vendor_gateway(&vendor.uri(), &[], &[("ALL_PROXY", &format!("socks5://user:secret@{proxy}"))]);
    assert_eq!(issue_token(&running).await, "through-socks");

    let connects = connects.lock().expect("lock").clone();
    let expected =
        SocksConnect { credentials: Some(("user".into(), "secret".into())), destination: vendor.address().to_string() };
    assert_eq!(connects, [expected], "one connection, through the proxy");
}

#[test]
fn a_proxy_the_gateway_cannot_use_stops_it_at_start_without_showing_its_credentials() {
    let output = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--broker-api-url", "https://b.example.com", "--api-key", "k"])
        .args(["--platform-url", "https://p.example.com"])
        .env_clear()
        .env("HTTPS_PROXY", "ftp://user:hunter2@127.0.0.1:21")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("HTTPS_PROXY does not name a proxy this client can use"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the proxy's password is never shown: {stderr}");
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
