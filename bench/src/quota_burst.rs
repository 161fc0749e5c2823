//! `mtr-sso-bench --quota-burst`: does the quota guard hold in every window?
//! IssueOneTimeToken is sent at three times the quota for two windows, open
//! loop, against the built-in sandbox whose own sliding-window rate limit is
//! set to the quota, in two set-ups at once (each with its own sandbox): two
//! gateway processes sharing a `redis-server`, and one process without Redis.
//! The vendor's side is read from the sandbox's record of arrivals. The run
//! fails if the vendor refused any call, if any window held more than the
//! quota, if less than 95 % of the quota was used, or if a call failed
//! otherwise than by a quota refusal. See BENCHMARKS.md.

use crate::{
    process,
    window_figures::{Seen, accepted_within, longest, most_in_any_window, quantile},
};
use mtr_sso::{
    proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient},
    sandbox::{DEMO_BROKER_ID, DEMO_EMAIL, SANDBOX_API_KEY, Sandbox, SandboxOptions},
};
use serde_json::json;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    time::Instant,
};
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

/// Each caller's deadline: longer than the gateway's default 2 s quota wait.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// What a burst is made of.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Calls per window, for the gateway's guard and the sandbox's limit alike.
    pub quota: u32,
    /// The window of both (60 s unless shortened for a smoke run).
    pub window: Duration,
    /// How many windows the burst lasts.
    pub windows: u32,
    /// The sending rate, as a multiple of the quota.
    pub over: u32,
}

#[derive(Debug, Clone, Copy)]
enum Setup {
    TwoProcessesSharingRedis,
    OneProcessInMemory,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::TwoProcessesSharingRedis => "2 processes, shared Redis",
            Setup::OneProcessInMemory => "1 process, in memory",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Setup::TwoProcessesSharingRedis => "redis",
            Setup::OneProcessInMemory => "memory",
        }
    }
}

enum Outcome {
    Ok,
    QuotaRefused,
    VendorRefused,
    Other(String),
}

/// The figures of one set-up.
struct Figures {
    setup: Setup,
    sent: usize,
    vendor_429s: usize,
    gateway_saw_429s: usize,
    most_in_any_window: usize,
    used_share: f64,
    waited: usize,
    wait_p50: Duration,
    wait_p99: Duration,
    refused: usize,
    refused_within_1ms: usize,
    refused_p50: Duration,
    refused_p99: Duration,
    other_errors: Vec<String>,
}

/// Runs the burst in both set-ups and reports; fails when the guard did not hold.
pub async fn run(gateway_bin: &Path, burst: Burst, out: Option<&Path>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mtr-sso-quota-burst-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (shared, alone) = tokio::join!(
        drive(gateway_bin, burst, &dir, Setup::TwoProcessesSharingRedis),
        drive(gateway_bin, burst, &dir, Setup::OneProcessInMemory)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let all = [shared?, alone?];
    report(burst, &all, out)
}

async fn drive(gateway_bin: &Path, burst: Burst, dir: &Path, setup: Setup) -> anyhow::Result<Figures> {
    let sandbox = Sandbox::start(SandboxOptions {
        rate_limit_per_minute: burst.quota,
        rate_limit_window: burst.window,
        ..SandboxOptions::default()
    })
    .await?;
    let tenants = write_tenants_file(&dir.join(format!("{}-tenants.toml", setup.slug())), sandbox.base_url())?;
    let redis = match setup {
        Setup::TwoProcessesSharingRedis => Some(RedisServer::start().await?),
        Setup::OneProcessInMemory => None,
    };
    let quota = burst.quota.to_string();
    let window = humantime::format_duration(burst.window).to_string();
    let mut limits = vec![
        "--upstream-quota-per-minute",
        &quota,
        "--limit-window",
        &window,
        "--email-limit-per-minute",
        "0",
        "--caller-limit-per-minute",
        "0",
    ];
    let redis_url = redis.as_ref().map(RedisServer::url);
    if let Some(url) = &redis_url {
        limits.extend(["--redis-url", url]);
    }
    let mut gateways = Vec::new();
    let mut metrics_addrs = Vec::new();
    for _ in 0..if redis.is_some() { 2 } else { 1 } {
        let metrics_addr = process::free_port()?;
        let extra = [format!("--metrics-addr={metrics_addr}")];
        gateways.push(process::start_with_limits(gateway_bin, &tenants, &limits, &extra).await?);
        metrics_addrs.push(metrics_addr);
    }
    let mut clients = Vec::new();
    for gateway in &gateways {
        clients.extend(gateway.channels(1).await?.into_iter().map(SsoServiceClient::new));
    }

    let total = burst.over * burst.quota * burst.windows;
    let interval = burst.window / (burst.over * burst.quota);
    let start = Instant::now() + Duration::from_millis(100);
    let mut calls = Vec::new();
    for n in 0..total {
        tokio::time::sleep_until(start + interval * n).await;
        calls.push(tokio::spawn(call(clients[n as usize % clients.len()].clone())));
    }
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await?);
    }
    let mut waited = 0.0;
    for addr in &metrics_addrs {
        waited += metric_sum(&scrape(*addr).await?, "mtr_sso_upstream_quota_waits_total{");
    }
    for gateway in gateways {
        gateway.stop().await?;
    }
    let seen: Vec<Seen> = sandbox
        .arrivals()
        .get("broker-api")
        .map(|arrivals| {
            arrivals.iter().map(|a| Seen { at: Duration::from_micros(a.at_us), refused: a.refused }).collect()
        })
        .unwrap_or_default();
    Ok(figures(setup, burst, &outcomes, &seen, waited as usize))
}

fn figures(setup: Setup, burst: Burst, outcomes: &[(Outcome, Duration)], seen: &[Seen], waited: usize) -> Figures {
    let ok: Vec<Duration> =
        outcomes.iter().filter(|(o, _)| matches!(o, Outcome::Ok)).map(|&(_, latency)| latency).collect();
    let refused: Vec<Duration> =
        outcomes.iter().filter(|(o, _)| matches!(o, Outcome::QuotaRefused)).map(|&(_, latency)| latency).collect();
    let waits = longest(&ok, waited);
    let possible = f64::from(burst.quota) * f64::from(burst.windows);
    Figures {
        setup,
        sent: outcomes.len(),
        vendor_429s: seen.iter().filter(|s| s.refused).count(),
        gateway_saw_429s: outcomes.iter().filter(|(o, _)| matches!(o, Outcome::VendorRefused)).count(),
        most_in_any_window: most_in_any_window(seen, burst.window),
        used_share: accepted_within(seen, burst.window * burst.windows) as f64 / possible,
        waited,
        wait_p50: quantile(&waits, 0.5),
        wait_p99: quantile(&waits, 0.99),
        refused: refused.len(),
        refused_within_1ms: refused.iter().filter(|&&latency| latency <= Duration::from_millis(1)).count(),
        refused_p50: quantile(&refused, 0.5),
        refused_p99: quantile(&refused, 0.99),
        other_errors: outcomes
            .iter()
            .filter_map(|(o, _)| match o {
                Outcome::Other(error) => Some(error.clone()),
                _ => None,
            })
            .collect(),
    }
}

fn report(burst: Burst, all: &[Figures], out: Option<&Path>) -> anyhow::Result<()> {
    let window = humantime::format_duration(burst.window);
    println!(
        "quota burst: IssueOneTimeToken at {}× a quota of {} per {window} for {} windows, sandbox limit {} per {window}\n",
        burst.over, burst.quota, burst.windows, burst.quota
    );
    println!(
        "| set-up | calls | vendor 429s | most in any {window} (≤ {}) | quota used (≥ 95 %) | waited | wait p50 / p99 | refused | refused within 1 ms | refusal p50 / p99 |",
        burst.quota
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut problems = Vec::new();
    let mut results = Vec::new();
    for f in all {
        println!(
            "| {} | {} | {} | {} | {:.1} % | {} | {:.0} / {:.0} ms | {} | {} | {:.2} / {:.2} ms |",
            f.setup.name(),
            f.sent,
            f.vendor_429s,
            f.most_in_any_window,
            f.used_share * 100.0,
            f.waited,
            f.wait_p50.as_secs_f64() * 1e3,
            f.wait_p99.as_secs_f64() * 1e3,
            f.refused,
            f.refused_within_1ms,
            f.refused_p50.as_secs_f64() * 1e3,
            f.refused_p99.as_secs_f64() * 1e3,
        );
        if f.vendor_429s > 0 || f.gateway_saw_429s > 0 {
            problems.push(format!(
                "{}: the vendor refused {} calls",
                f.setup.name(),
                f.vendor_429s.max(f.gateway_saw_429s)
            ));
        }
        if f.most_in_any_window > burst.quota as usize {
            problems.push(format!("{}: {} calls within one window", f.setup.name(), f.most_in_any_window));
        }
        if f.used_share < 0.95 {
            problems.push(format!("{}: only {:.1} % of the quota used", f.setup.name(), f.used_share * 100.0));
        }
        if let Some(first) = f.other_errors.first() {
            problems.push(format!("{}: {} calls failed, first: {first}", f.setup.name(), f.other_errors.len()));
        }
        results.push(json!({
            "setup": f.setup.name(), "calls": f.sent, "vendor_429s": f.vendor_429s,
            "most_in_any_window": f.most_in_any_window, "quota_used_share": f.used_share,
            "waited": f.waited, "wait_p50_ms": f.wait_p50.as_secs_f64() * 1e3, "wait_p99_ms": f.wait_p99.as_secs_f64() * 1e3,
            "refused": f.refused, "refused_within_1ms": f.refused_within_1ms,
            "refused_p50_ms": f.refused_p50.as_secs_f64() * 1e3, "refused_p99_ms": f.refused_p99.as_secs_f64() * 1e3,
            "other_errors": f.other_errors.len(),
        }));
    }
    if let Some(path) = out {
        let body = json!({
            "quota": burst.quota, "window_s": burst.window.as_secs_f64(), "windows": burst.windows, "over": burst.over,
            "setups": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&body)?)?;
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        anyhow::bail!("the quota guard did not hold");
    }
    println!("\nthe guard held: no vendor 429, no window over the quota");
    Ok(())
}

async fn call(mut client: SsoServiceClient<Channel>) -> (Outcome, Duration) {
    let mut request = tonic::Request::new(IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() });
    request.set_timeout(CALL_DEADLINE);
    let sent = Instant::now();
    let answer = client.issue_one_time_token(request).await;
    let latency = sent.elapsed();
    let outcome = match answer {
        Ok(_) => Outcome::Ok,
        Err(status) => {
            let reason = status.get_error_details().error_info().map(|info| info.reason.clone()).unwrap_or_default();
            match reason.as_str() {
                "UPSTREAM_QUOTA_EXHAUSTED" => Outcome::QuotaRefused,
                "UPSTREAM_RATE_LIMITED" => Outcome::VendorRefused,
                _ => Outcome::Other(format!("{:?} {reason}: {}", status.code(), status.message())),
            }
        }
    };
    (outcome, latency)
}

fn write_tenants_file(path: &Path, sandbox: &url::Url) -> anyhow::Result<PathBuf> {
    let base = sandbox.as_str().trim_end_matches('/');
    std::fs::write(
        path,
        format!(
            "[tenants.default]\nbroker_api_url = \"{base}\"\nplatform_url = \"{base}\"\n\
             api_key = \"{SANDBOX_API_KEY}\"\nbroker_id = \"{DEMO_BROKER_ID}\"\n"
        ),
    )?;
    Ok(path.to_path_buf())
}

/// The `/metrics` text of a gateway.
async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text)).await??;
    Ok(text)
}

/// The sum of every series of a metric whose lines start with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A throwaway `redis-server` on a free loopback port; stopped when dropped.
struct RedisServer {
    _child: tokio::process::Child,
    port: u16,
}

impl RedisServer {
    async fn start() -> anyhow::Result<Self> {
        let port = process::free_port()?.port();
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start redis-server (scripts/setup installs it): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self { _child: child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
