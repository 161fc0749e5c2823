//! The gateway as a real child process: started from its binary with a
//! tenants file pointing at the fixed upstream, and observed through `/proc`
//! (CPU time, resident memory) the way an operator's tools would.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{process::Child, time::Instant};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub pid: u32,
    /// From exec to the first SERVING health answer.
    pub exec_to_serving: Duration,
}

/// Writes the tenants file that points the gateway at the upstream.
pub fn write_tenants_file(dir: &Path, upstream: std::net::SocketAddr) -> anyhow::Result<PathBuf> {
    let path = dir.join("bench-tenants.toml");
    std::fs::write(
        &path,
        format!(
            "[tenants.default]\nbroker_api_url = \"http://{upstream}\"\nplatform_url = \"http://{upstream}\"\n\
             api_key = \"{}\"\nbroker_id = \"{}\"\n",
            crate::upstream::API_KEY,
            crate::load::BROKER_ID
        ),
    )?;
    Ok(path)
}

pub fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The benchmark measures the gateway's cost, not its limits.
const LIMITS_OFF: [&str; 6] =
    ["--upstream-quota-per-minute", "0", "--email-limit-per-minute", "0", "--caller-limit-per-minute", "0"];

/// Starts the gateway with its limits off and waits until its health check says SERVING.
pub async fn start(binary: &Path, tenants: &Path, extra_args: &[String]) -> anyhow::Result<Gateway> {
    start_with_limits(binary, tenants, &LIMITS_OFF, extra_args).await
}

/// Starts the gateway with `limit_args` and waits until its health check says SERVING.
pub async fn start_with_limits(
    binary: &Path,
    tenants: &Path,
    limit_args: &[&str],
    extra_args: &[String],
) -> anyhow::Result<Gateway> {
    let addr = free_port()?;
    let started = Instant::now();
    let child = tokio::process::Command::new(binary)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--tenants-file")
        .arg(tenants)
        .args(["--log-format", "json", "--shutdown-grace", "2s"])
        .args(limit_args)
        // In the in-flight burst, calls beyond the upstream concurrency limit
        // wait for a slot longer than the default 10 s upstream budget.
        .args(["--upstream-timeout", "30s"])
        .args(extra_args)
        .stdin(Stdio::null())
        // Logs are still formatted and written, as in production; only not kept.
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("the gateway exited at once"))?;
    let deadline = started + Duration::from_secs(10);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))?.connect().await {
            let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
            if answer.is_ok_and(|a| a.into_inner().status() == ServingStatus::Serving) {
                return Ok(Gateway { child, addr, pid, exec_to_serving: started.elapsed() });
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the gateway did not become SERVING within 10 s");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

impl Gateway {
    /// `n` independent HTTP/2 connections to the gateway.
    pub async fn channels(&self, n: usize) -> anyhow::Result<Vec<Channel>> {
        let mut channels = Vec::with_capacity(n);
        for _ in 0..n {
            channels.push(Channel::from_shared(format!("http://{}", self.addr))?.connect().await?);
        }
        Ok(channels)
    }

    /// User plus system CPU time the process has used.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).ok_or_else(|| anyhow::anyhow!("odd /proc stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
    }

    /// Resident memory now and at its peak, in KiB.
    pub fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status.lines().find(|l| l.starts_with(name)).ok_or_else(|| anyhow::anyhow!("no {name}"))?;
            Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = tokio::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await?;
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await??;
        anyhow::ensure!(status.success(), "the gateway exited with {status}");
        Ok(())
    }
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
