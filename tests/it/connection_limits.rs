//! A caller that connects and then sends nothing, or stops in the middle of
//! a TLS handshake, cannot make the gateway hold descriptors: its open
//! descriptors (counted in /proc/<pid>/fd of the gateway process) return to
//! their baseline within the first-request or handshake timeout, beyond the
//! connection cap nothing more is held, and real calls succeed throughout.
//!
//! The test process and the gateway each hold over a thousand sockets: the
//! open-file limit (`ulimit -n`) must allow it, which the tests check first.

use crate::{common, redis_server};
use common::Running;
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, net::TcpStream};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

const SILENT: usize = 1000;
const HALF_HANDSHAKES: usize = 100;
/// Sockets of a flood the gateway must be seen holding at once. A loaded
/// machine opens a thousand more slowly than the bound closes the first, so
/// the peak shows they were accepted and held, not that all were at once;
/// that every one was closed by the gateway is checked apart.
const HELD_AT_ONCE: usize = 200;
/// Descriptors that may come and go beside the flood: a fresh caller's
/// connection, an upstream connection.
const SLACK: usize = 4;

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the gateway's descriptors").count()
}

fn assert_open_file_limit_allows(sockets: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("the open-file limit");
    let soft = line.trim_start_matches("Max open files").split_whitespace().next().expect("soft limit");
    if let Ok(soft) = soft.parse::<usize>() {
        assert!(
            soft >= sockets + 500,
            "raise the open-file limit (ulimit -n) to at least {}: it is {soft}",
            sockets + 500
        );
    }
}

async fn vendor() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&server)
        .await;
    server
}

fn gateway(dir: &Path, vendor: &MockServer, extra: &[&str]) -> Running {
    std::fs::create_dir_all(dir).expect("dir");
    let tenants = dir.join("tenants.toml");
    let body =
        format!("[tenants.default]\nbroker_api_url = \"{0}\"\nplatform_url = \"{0}\"\napi_key = \"k\"\n", vendor.uri());
    std::fs::write(&tenants, body).expect("write");
    let mut args = vec![
        "--tenants-file",
        tenants.to_str().expect("utf8"),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--email-limit-per-minute",
        "0",
        "--caller-limit-per-minute",
        "0",
    ];
    args.extend_from_slice(extra);
    Running::start(&args)
}

/// A real call on `channel`: it must succeed.
async fn real_call(channel: &Channel) {
    let request = IssueOneTimeTokenRequest { email: "ada@example.com".into(), ..Default::default() };
    let request = common::with_deadline(request, Duration::from_secs(5));
    SsoServiceClient::new(channel.clone()).issue_one_time_token(request).await.expect("a real call succeeds");
}

/// How the gateway's descriptors went while a flood was held.
#[derive(Debug)]
#[allow(dead_code, reason = "printed as the figure")]
struct Watched {
    /// Descriptors before the flood.
    baseline: usize,
    /// Most descriptors seen at once.
    peak: usize,
    /// From the end of the flood to the baseline again.
    back_after: Duration,
    /// Real calls made meanwhile, all of them answered OK.
    calls: usize,
}

/// The gateway's descriptors, sampled every 5 ms on a thread of its own from
/// its start until they are back at `baseline` after a flood.
struct Sampler {
    thread: std::thread::JoinHandle<(usize, Option<Instant>)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Sampler {
    fn start(pid: u32, baseline: usize) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let open = open_descriptors(pid);
                peak = peak.max(open);
                if peak > baseline + SLACK && open <= baseline + SLACK {
                    return (peak, Some(Instant::now()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (peak, None)
        });
        Self { thread, stop }
    }
}

/// Waits until `sampler` sees the descriptors back at `baseline` (or `limit`
/// passes after `since`, the end of the flood), making a real call on the
/// held channel and on a fresh connection every quarter second.
async fn watch(
    sampler: Sampler,
    baseline: usize,
    since: Instant,
    limit: Duration,
    connect: impl AsyncFn() -> Channel,
    held: &Channel,
) -> Watched {
    let mut calls = 0;
    while !sampler.thread.is_finished() && since.elapsed() < limit {
        real_call(held).await;
        real_call(&connect().await).await;
        calls += 2;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sampler.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (peak, back) = sampler.thread.join().expect("sampler");
    let back_after = back.map_or(Duration::MAX, |back| back.saturating_duration_since(since));
    Watched { baseline, peak, back_after, calls }
}

/// `count` sockets that send nothing, connected a hundred at a time: all at
/// once, a flood overflows the kernel's accept queue, and a connection the
/// kernel dropped there (or answered with a SYN cookie) never reaches the
/// gateway at all.
async fn silent_sockets(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    while sockets.len() < count {
        let mut connecting = tokio::task::JoinSet::new();
        for _ in 0..(count - sockets.len()).min(100) {
            connecting.spawn(TcpStream::connect(addr));
        }
        sockets.extend(connecting.join_all().await.into_iter().map(|socket| socket.expect("connect")));
    }
    sockets
}

/// How many of `sockets` the gateway has closed: a read sees the end or a
/// reset (a stalled handshake first reads what the server sent, then the end).
async fn closed_by_the_gateway(sockets: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for socket in sockets {
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => closed += 1,
                Ok(Ok(_)) => continue,
                Err(_) => {}
            }
            break;
        }
    }
    closed
}

#[tokio::test]
async fn a_thousand_silent_sockets_are_closed_after_the_first_request_timeout_while_real_calls_succeed() {
    assert_open_file_limit_allows(SILENT);
    let vendor = vendor().await;
    let dir = std::env::temp_dir().join(format!("mtr-sso-silent-{}", std::process::id()));
    let gateway = gateway(&dir, &vendor, &["--first-request-timeout", "3s"]);
    let addr = gateway.grpc_addr();
    let pid = gateway.child.id();
    let held = common::channel(addr).await;
    real_call(&held).await;
    let baseline = open_descriptors(pid);

    let sampler = Sampler::start(pid, baseline);
    let flood = Instant::now();
    let mut sockets = silent_sockets(addr, SILENT).await;
    let (flooded_in, since) = (flood.elapsed(), Instant::now());
    let connect = async || common::channel(addr).await;
    let watched = watch(sampler, baseline, since, Duration::from_secs(8), connect, &held).await;
    eprintln!(
        "figure: plaintext, {SILENT} silent sockets opened in {flooded_in:?}, --first-request-timeout 3s: {watched:?}"
    );
    assert!(watched.peak >= baseline + HELD_AT_ONCE, "the sockets were held at first: {watched:?}");
    assert!(watched.back_after <= Duration::from_millis(4500), "back to the baseline within the bound: {watched:?}");
    assert_eq!(closed_by_the_gateway(&mut sockets).await, SILENT, "every silent socket was closed by the gateway");
    real_call(&held).await;
}

/// The bytes a TLS client sends first (its ClientHello), after which these
/// sockets send nothing more: the handshake stops in the middle.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().expect("name")).expect("client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("hello");
    hello
}

/// TLS connections whose handshake completes, and which then send nothing.
async fn idle_after_handshake(addr: SocketAddr, ca_pem: &[u8], count: usize) -> Vec<impl Sized> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).expect("ca");
    }
    let config = common::h2_tls_client(roots);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut held = Vec::new();
    for _ in 0..count {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        held.push(connector.connect(name, tcp).await.expect("the handshake completes"));
    }
    held
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    CertificateDer::pem_slice_iter(pem).map(|cert| cert.expect("a PEM certificate")).collect()
}

#[tokio::test]
async fn silent_sockets_and_stalled_tls_handshakes_are_closed_within_their_bounds_while_real_calls_succeed() {
    assert_open_file_limit_allows(SILENT + HALF_HANDSHAKES);
    mtr_sso::upstream::install_crypto_provider();
    let vendor = vendor().await;
    let dir = std::env::temp_dir().join(format!("mtr-sso-tls-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    redis_server::write_certificates(&dir);
    let file = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    let (cert, key) = (file("server.pem"), file("server.key"));
    let flags =
        ["--tls-cert", &cert, "--tls-key", &key, "--tls-handshake-timeout", "2s", "--first-request-timeout", "4s"];
    let gateway = gateway(&dir, &vendor, &flags);
    let addr = gateway.grpc_addr();
    let pid = gateway.child.id();
    let ca_pem = std::fs::read(dir.join("ca.pem")).expect("ca");
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem)).domain_name("localhost");
    let connect = async || {
        let endpoint =
            Channel::from_shared(format!("https://{addr}")).expect("uri").tls_config(tls.clone()).expect("tls");
        endpoint.connect().await.expect("connect over TLS")
    };
    let held = connect().await;
    real_call(&held).await;
    let baseline = open_descriptors(pid);

    // Stalled handshakes and silent sockets: closed by the handshake timeout.
    let sampler = Sampler::start(pid, baseline);
    let flood = Instant::now();
    let mut stalled = silent_sockets(addr, HALF_HANDSHAKES).await;
    let hello = client_hello();
    for socket in &mut stalled {
        socket.write_all(&hello).await.expect("hello");
    }
    let mut silent = silent_sockets(addr, SILENT).await;
    let (flooded_in, since) = (flood.elapsed(), Instant::now());
    let watched = watch(sampler, baseline, since, Duration::from_secs(6), connect, &held).await;
    eprintln!(
        "figure: TLS, {SILENT} silent sockets and {HALF_HANDSHAKES} stalled handshakes opened in {flooded_in:?}, --tls-handshake-timeout 2s: {watched:?}"
    );
    assert!(watched.peak >= baseline + HELD_AT_ONCE, "the sockets were held at first: {watched:?}");
    assert!(watched.back_after <= Duration::from_millis(3500), "back to the baseline within the bound: {watched:?}");
    assert_eq!(closed_by_the_gateway(&mut silent).await, SILENT, "every silent socket was closed by the gateway");
    assert_eq!(closed_by_the_gateway(&mut stalled).await, HALF_HANDSHAKES, "every stalled handshake too");

    // Handshakes that complete, then no request: closed by the first-request timeout.
    let sampler = Sampler::start(pid, baseline);
    let since = Instant::now();
    let idle = idle_after_handshake(addr, &ca_pem, 20).await;
    let watched = watch(sampler, baseline, since, Duration::from_secs(8), connect, &held).await;
    eprintln!("figure: TLS, 20 connections idle after their handshake, --first-request-timeout 4s: {watched:?}");
    assert!(watched.peak >= baseline + 20, "held at first: {watched:?}");
    assert!(watched.back_after >= Duration::from_millis(3800), "closed by the first-request bound: {watched:?}");
    assert!(watched.back_after <= Duration::from_millis(5500), "back to the baseline within the bound: {watched:?}");
    drop(idle);
    // The held channel carried requests before: past both bounds it still serves.
    real_call(&held).await;
}

#[tokio::test]
async fn beyond_the_connection_cap_nothing_more_is_held_and_a_new_caller_is_served_once_a_slot_frees() {
    const CAP: usize = 50;
    let vendor = vendor().await;
    let dir = std::env::temp_dir().join(format!("mtr-sso-cap-{}", std::process::id()));
    let cap = CAP.to_string();
    let gateway = gateway(&dir, &vendor, &["--max-connections", &cap, "--first-request-timeout", "1s"]);
    let addr = gateway.grpc_addr();
    let pid = gateway.child.id();
    let held = common::channel(addr).await;
    real_call(&held).await;
    let baseline = open_descriptors(pid);

    let _silent = silent_sockets(addr, 2 * CAP).await;
    let started = Instant::now();
    let fresh = tokio::spawn(async move {
        real_call(&common::channel(addr).await).await;
        started.elapsed()
    });
    let mut peak = 0;
    while !fresh.is_finished() && started.elapsed() < Duration::from_secs(8) {
        peak = peak.max(open_descriptors(pid));
        real_call(&held).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served_after = fresh.await.expect("the new caller is served");
    eprintln!(
        "figure: --max-connections {CAP}, {} silent sockets: peak {} descriptors over a baseline of {baseline}; a new caller served after {served_after:?}",
        2 * CAP,
        peak
    );
    // The held channel takes one slot: the flood gets the other CAP - 1.
    assert!(peak <= baseline + CAP - 1 + SLACK, "never more than the cap: peak {peak}, baseline {baseline}");
    assert!(peak >= baseline + CAP - 1 - SLACK, "the cap was reached: peak {peak}, baseline {baseline}");
    assert!(served_after <= Duration::from_secs(4), "served once slots freed: {served_after:?}");
}

#[tokio::test]
async fn the_health_listener_holds_at_most_its_cap_and_closes_silent_sockets_after_the_first_request_timeout() {
    const HEALTH_CAP: usize = 256;
    mtr_sso::upstream::install_crypto_provider();
    let vendor = vendor().await;
    let dir = std::env::temp_dir().join(format!("mtr-sso-health-flood-{}", std::process::id()));
    let gateway = gateway(&dir, &vendor, &["--health-listen", "127.0.0.1:0", "--first-request-timeout", "3s"]);
    let (line, _) = gateway.wait_for("plaintext health on");
    let health: SocketAddr = serde_json::from_str::<serde_json::Value>(&line).expect("json")["health_addr"]
        .as_str()
        .expect("health_addr")
        .parse()
        .expect("address");
    let pid = gateway.child.id();
    let healthz = format!("http://{health}/healthz");
    let client = reqwest::Client::new();
    assert!(client.get(&healthz).send().await.expect("healthz").status().is_success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = open_descriptors(pid);

    let sampler = Sampler::start(pid, baseline);
    let mut silent = silent_sockets(health, HEALTH_CAP + 44).await;
    let since = Instant::now();
    while !sampler.thread.is_finished() && since.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sampler.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (peak, back) = sampler.thread.join().expect("sampler");
    let back_after = back.map(|back| back.saturating_duration_since(since));
    eprintln!(
        "figure: health listener, {} silent sockets, --first-request-timeout 3s: peak {peak} over a baseline of {baseline}, back after {back_after:?}",
        HEALTH_CAP + 44
    );
    assert!(peak <= baseline + HEALTH_CAP + SLACK, "never more than the cap: peak {peak}, baseline {baseline}");
    assert!(peak >= baseline + HEALTH_CAP - SLACK, "the cap was reached: peak {peak}, baseline {baseline}");
    // The last ones wait in the backlog for a slot, then get their 3 s.
    assert!(back_after.is_some_and(|after| after <= Duration::from_millis(7500)), "closed within the bounds");
    assert_eq!(closed_by_the_gateway(&mut silent).await, HEALTH_CAP + 44, "every silent socket was closed");
    let probe = tokio::time::timeout(Duration::from_secs(2), client.get(&healthz).send()).await;
    assert!(probe.expect("answered at once").expect("healthz").status().is_success());
}
