//! The upstream quota shared by two gateway processes through a real Redis:
//! together they never send the vendor more calls than the quota allows.

mod common;

use common::{Running, reason};
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

/// A throwaway redis-server on a free loopback port.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn keys(&self) -> Vec<String> {
        let output =
            Command::new("redis-cli").args(["-p", &self.port.to_string(), "--scan"]).output().expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn grpc_addr(running: &Running) -> SocketAddr {
    let (line, _) = running.wait_for("mtr-sso listening");
    serde_json::from_str::<serde_json::Value>(&line).expect("json")["grpc_addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("addr")
}

#[tokio::test]
async fn two_gateways_sharing_redis_never_send_the_vendor_more_than_the_quota() {
    const QUOTA: usize = 20;
    let redis = Redis::start();
    let upstream = MockServer::start().await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&upstream)
        .await;
    let dir = std::env::temp_dir().join(format!("mtr-sso-quota-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tenants = dir.join("tenants.toml");
    std::fs::write(
        &tenants,
        format!(
            "[tenants.default]\nbroker_api_url = \"{0}\"\nplatform_url = \"{0}\"\napi_key = \"k\"\n",
            upstream.uri()
        ),
    )
    .expect("write");
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let quota = QUOTA.to_string();
    let args = [
        "--tenants-file",
        tenants.to_str().expect("utf8"),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--redis-url",
        &redis_url,
        "--upstream-quota-per-minute",
        &quota,
        "--email-limit-per-minute",
        "0",
    ];
    let (first, second) = (Running::start(&args), Running::start(&args));
    let mut clients = [
        SsoServiceClient::new(common::channel(grpc_addr(&first)).await),
        SsoServiceClient::new(common::channel(grpc_addr(&second)).await),
    ];

    let (mut accepted, mut refused) = (0, 0);
    for n in 0..60 {
        let request = IssueOneTimeTokenRequest { email: format!("user{n}@example.com"), ..Default::default() };
        match clients[n % 2].issue_one_time_token(request).await {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(
                    (status.code(), reason(&status).as_str()),
                    (Code::ResourceExhausted, "UPSTREAM_QUOTA_EXHAUSTED")
                );
                refused += 1;
            }
        }
    }
    let sent = upstream.received_requests().await.expect("recorded").len();
    assert_eq!(sent, accepted, "every accepted call, and only those, reached the vendor");
    // The bucket refills one call every 3 s, so a run of a few seconds may earn one more.
    assert!((QUOTA..=QUOTA + 1).contains(&sent), "the vendor saw {sent} calls for a quota of {QUOTA}");
    assert_eq!(accepted + refused, 60);

    let keys = redis.keys();
    assert!(keys.iter().any(|k| k.contains("upstream:default:broker-api")), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains('@')), "no email in Redis: {keys:?}");
}
