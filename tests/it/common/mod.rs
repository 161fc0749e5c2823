//! Test harness: starts the gateway in-process on `127.0.0.1:0` (against a
//! mock upstream or the built-in sandbox) and hands back a generated client.
// Some helpers serve only the tests that drive the sandbox.
#![cfg_attr(not(feature = "sandbox"), allow(dead_code))]

use clap::Parser as _;
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use mtr_sso::{
    app::App,
    config::{Cli, HttpSettings, Proxies, Settings, Upstream},
    proto::sso_service_client::SsoServiceClient,
    tenant::{AuthScheme, Generation, TenantSettings, UpstreamPaths},
};
use secrecy::SecretString;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use url::Url;

mod process;
// Without the sandbox, only some of these are used.
#[cfg_attr(not(feature = "sandbox"), allow(unused_imports))]
pub use process::{BINARY, Running, replica, vendor_gateway};

pub const API_KEY: &str = "test-api-key";
pub const USER_AGENT: &str = "mtr-sso-tests/1";

/// A running gateway; stops when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    pub client: SsoServiceClient<Channel>,
    pub metrics_addr: SocketAddr,
    pub health_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

impl Gateway {
    /// The Prometheus text its `/metrics` endpoint serves now.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text")
    }
}

/// The settings the tests' own HTTP clients use.
pub fn http_settings(upstream_timeout: Duration) -> HttpSettings {
    HttpSettings {
        user_agent: USER_AGENT.into(),
        connect_timeout: Duration::from_secs(1),
        upstream_timeout,
        proxies: Proxies::None,
    }
}

/// A tenant whose Broker-API and platform are both served at `base`.
pub fn tenant(name: &str, base: &str) -> TenantSettings {
    let url = Url::parse(base).expect("mock url");
    TenantSettings {
        name: name.into(),
        generation: Generation::V1,
        trading_account: None,
        v2_account_details: Default::default(),
        lookup_before_create: false,
        broker_api_url: url.clone(),
        api_key: SecretString::from(API_KEY).into(),
        auth_scheme: AuthScheme::Raw,
        platform_url: url,
        broker_id: Some("7".into()),
        cookie_domain: None,
        paths: UpstreamPaths::default(),
        session_lifetime: Duration::from_secs(900),
        one_time_token_validity: Duration::from_secs(60),
        one_time_token_max_validity: Duration::from_secs(3600),
    }
}

/// The settings of a gateway over `tenants` (the first is the default), as
/// the command line makes them, with everything that would make one test
/// depend on another switched off: no limits, no retries, no breaker, no
/// concurrency cap, no proxies, ports picked by the OS.
pub fn settings(tenants: Vec<TenantSettings>, upstream_timeout: Duration) -> Settings {
    let timeout = format!("{}ms", upstream_timeout.as_millis());
    let args = [
        "mtr-sso",
        "--broker-api-url=http://127.0.0.1:9",
        "--api-key=placeholder",
        "--platform-url=http://127.0.0.1:9",
        "--listen=127.0.0.1:0",
        "--metrics-addr=127.0.0.1:0",
        "--user-agent",
        USER_AGENT,
        "--connect-timeout=1s",
        "--upstream-timeout",
        &timeout,
        "--upstream-quota-per-minute=0",
        "--caller-limit-per-minute=0",
        "--email-limit-per-minute=0",
        "--circuit-breaker-failures=0",
        "--connect-attempts=1",
        "--upstream-concurrency=0",
        "--shutdown-grace=5s",
    ];
    let mut settings = Cli::try_parse_from(args).expect("flags parse").into_settings().expect("valid settings");
    let default_tenant = tenants[0].name.clone();
    settings.upstream = Upstream::Tenants { tenants, default_tenant };
    settings.http.proxies = Proxies::None;
    settings
}

/// Builds and runs the service as `main` does, on ports the OS picks.
pub async fn spawn_app(settings: Settings) -> Gateway {
    let app = App::build(settings).await.expect("the service builds");
    let (addr, health_addr) = (app.grpc_addr(), app.health_addr());
    let metrics_addr = app.metrics_addr().expect("the harness asks for a metrics endpoint");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run(async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    // Lazy, so that a TLS-only server can be spawned too; its tests connect their own way.
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    let client = SsoServiceClient::new(channel);
    Gateway { addr, client, metrics_addr, health_addr, stop: Some(stop), task }
}

/// Starts a gateway over `tenants` (the first is the default).
pub async fn spawn_gateway(tenants: Vec<TenantSettings>, upstream_timeout: Duration) -> Gateway {
    spawn_app(settings(tenants, upstream_timeout)).await
}

/// Starts a gateway that sheds RPCs beyond `max_in_flight`.
pub async fn spawn_gateway_limited(
    tenants: Vec<TenantSettings>,
    upstream_timeout: Duration,
    max_in_flight: usize,
) -> Gateway {
    spawn_gateway_with(tenants, upstream_timeout, 0, |settings| settings.max_in_flight = max_in_flight).await
}

/// Starts a gateway with an upstream quota per minute (0: none), adjusted by `configure`.
pub async fn spawn_gateway_with(
    tenants: Vec<TenantSettings>,
    upstream_timeout: Duration,
    upstream_per_minute: u32,
    configure: impl FnOnce(&mut Settings),
) -> Gateway {
    let mut settings = settings(tenants, upstream_timeout);
    settings.limits.upstream_per_minute = upstream_per_minute;
    configure(&mut settings);
    spawn_app(settings).await
}

/// Starts the sandbox and a gateway wired to it.
#[cfg(feature = "sandbox")]
pub async fn spawn_sandbox_gateway(options: mtr_sso::sandbox::SandboxOptions) -> (mtr_sso::sandbox::Sandbox, Gateway) {
    use mtr_sso::sandbox::Sandbox;
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let gateway = spawn_gateway(vec![sandbox.tenant_settings("default")], Duration::from_secs(5)).await;
    (sandbox, gateway)
}

/// A tenants file (in a directory of its own under the system's temporary
/// directory, named by `tag`) with one tenant, `default`, on the sandbox's Broker-API v1.
#[cfg(feature = "sandbox")]
pub fn sandbox_tenants_file(sandbox: &mtr_sso::sandbox::Sandbox, tag: &str) -> std::path::PathBuf {
    use mtr_sso::sandbox::{DEMO_BROKER_ID, SANDBOX_API_KEY};
    let base = sandbox.base_url().as_str().trim_end_matches('/');
    tenants_file(
        tag,
        &format!(
            "[tenants.default]\nbroker_api_url = \"{base}\"\nplatform_url = \"{base}\"\napi_key = \"{SANDBOX_API_KEY}\"\nbroker_id = \"{DEMO_BROKER_ID}\"\n"
        ),
    )
}

/// A tenants file holding `body`, in a directory of this process's own named
/// by `tag`.
pub fn tenants_file(tag: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mtr-sso-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tenants = dir.join("tenants.toml");
    std::fs::write(&tenants, body).expect("write");
    tenants
}

/// Opens a URL like a browser: follows redirects, keeps cookies.
pub fn browser() -> reqwest::Client {
    mtr_sso::upstream::install_crypto_provider();
    reqwest::Client::builder().cookie_store(true).build().expect("browser client")
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status.get_error_details().error_info().map(|info| info.reason.clone()).unwrap_or_default()
}

/// The ErrorInfo reason of a JSON/HTTP error body (`google.rpc.Status`).
pub fn json_reason(body: &serde_json::Value) -> &str {
    body["details"]
        .as_array()
        .and_then(|details| {
            details.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")?["reason"].as_str()
        })
        .unwrap_or("")
}

/// One IssueOneTimeToken call for `user{n}@example.com` with a 5 s deadline,
/// for tests of shared state under failure: its reason ("" when OK) and how
/// long it took. It never waits for its deadline.
pub async fn timed_token(mut client: SsoServiceClient<Channel>, n: usize) -> (String, Duration) {
    let request =
        mtr_sso::proto::IssueOneTimeTokenRequest { email: format!("user{n}@example.com"), ..Default::default() };
    let sent = Instant::now();
    let answer = client.issue_one_time_token(with_deadline(request, Duration::from_secs(5))).await;
    let reason = match answer {
        Ok(_) => String::new(),
        Err(status) => {
            assert_ne!(status.code(), tonic::Code::DeadlineExceeded, "no call waits for its deadline");
            reason(&status)
        }
    };
    (reason, sent.elapsed())
}

/// `count` concurrent Refresh calls of `refresh_token`, spread over `clients`
/// in turn; the sessions they renewed, each call answered OK.
pub async fn refresh_concurrently(
    clients: &[SsoServiceClient<Channel>],
    refresh_token: &str,
    count: usize,
) -> Vec<mtr_sso::proto::Session> {
    let calls: Vec<_> = (0..count)
        .map(|n| {
            let mut client = clients[n % clients.len()].clone();
            let request =
                mtr_sso::proto::RefreshRequest { refresh_token: refresh_token.to_string(), ..Default::default() };
            tokio::spawn(async move { client.refresh(request).await })
        })
        .collect();
    let mut renewed = Vec::new();
    for call in calls {
        renewed
            .push(call.await.expect("task").expect("every call is answered OK").into_inner().session.expect("session"));
    }
    renewed
}

/// A TLS client configuration that trusts `roots` and offers HTTP/2 only.
pub fn h2_tls_client(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// An ErrorInfo metadata entry of a status.
pub fn error_metadata(status: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt as _;
    status.get_error_details().error_info().and_then(|info| info.metadata.get(key).cloned())
}

/// The BadRequest field names of a status.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// A request with a client-side deadline (sent as `grpc-timeout`).
pub fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// A minimal valid CreateAccount request.
pub fn new_account(email: &str) -> mtr_sso::proto::CreateAccountRequest {
    mtr_sso::proto::CreateAccountRequest {
        email: email.into(),
        password: "S3cret-pass!".into(),
        personal_details: Some(mtr_sso::proto::PersonalDetails {
            firstname: "Ada".into(),
            lastname: "Lovelace".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A plaintext channel to a local server.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect")
}

/// Log output captured in memory, for tests that search every line.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf8 logs")
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
