//! The gateway as a separate process: the built binary started with given
//! flags and environment, its stdout lines read as they come, stopped when
//! dropped. For tests of what only a whole process shows: signals, exit
//! codes, start-up lines, several replicas sharing Redis.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_mtr-sso");

/// A gateway process in front of one vendor URL (both APIs, key `k`), logging
/// JSON, with `extra` flags and nothing in its environment but `env`.
pub fn vendor_gateway(vendor: &str, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--broker-api-url",
        vendor,
        "--api-key",
        "k",
        "--platform-url",
        vendor,
    ];
    args.extend_from_slice(extra);
    Running::start_with_env(&args, env)
}

/// A gateway process on the tenants file `tenants`, sharing its state through
/// the Redis that `redis_args` name (a test Redis server's gateway arguments),
/// with `extra` flags.
pub fn replica(tenants: &std::path::Path, redis_args: &[String], extra: &[&str]) -> Running {
    let mut args =
        vec!["--tenants-file", tenants.to_str().expect("utf8"), "--listen", "127.0.0.1:0", "--log-format", "json"];
    args.extend(redis_args.iter().map(String::as_str));
    args.extend_from_slice(extra);
    Running::start(&args)
}

/// A running binary whose stdout lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Started with nothing in its environment but `env`.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BINARY)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawns");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The first line containing `needle`, with every line seen before it.
    pub fn wait_for(&self, needle: &str) -> (String, Vec<String>) {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return (line, seen),
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no line with `{needle}`; saw {seen:#?}");
    }

    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// The gRPC address from the JSON startup line (`--log-format json`).
    pub fn grpc_addr(&self) -> SocketAddr {
        let (line, _) = self.wait_for("mtr-sso listening");
        serde_json::from_str::<serde_json::Value>(&line).expect("json log line")["grpc_addr"]
            .as_str()
            .expect("grpc_addr")
            .parse()
            .expect("address")
    }
}
