//! Load generation: open loop at a fixed rate (each request its own task, so
//! a slow answer never delays the next send; latency counted from the send,
//! since tokio's 1 ms timer granularity would otherwise dominate sub-ms
//! figures) and closed loop at a fixed concurrency (maximum throughput). Every answer
//! is checked: an HTTP status other than 200, a gRPC status other than OK or a
//! health answer other than SERVING counts as an error.

use hdrhistogram::Histogram;
use mtr_sso::{
    proto::{IssueOneTimeTokenRequest, LoginRequest, sso_service_client::SsoServiceClient},
    upstream::{HttpClient, Outgoing},
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

pub const EMAIL: &str = "bench@example.com";
pub const PASSWORD: &str = "bench-password";
pub const BROKER_ID: &str = "1";
/// Long enough for the in-flight burst, where calls beyond the gateway's
/// upstream concurrency limit wait for a slot.
const RPC_DEADLINE: Duration = Duration::from_secs(30);

/// Which operation a call performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Operation {
    IssueOneTimeToken,
    Login,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::IssueOneTimeToken => "IssueOneTimeToken",
            Operation::Login => "Login",
        }
    }
}

/// One kind of request the generator sends.
#[derive(Debug, Clone)]
pub enum Call {
    /// A: the JSON REST call straight to the upstream, as the gateway makes it.
    Rest { http: Box<HttpClient>, request: Box<Outgoing> },
    /// B: the RPC through the gateway.
    Rpc { channels: Vec<Channel>, operation: Operation },
    /// C: a health check on the gateway.
    Health { channels: Vec<Channel> },
}

impl Call {
    /// A for `operation`, sent to the upstream at `base` with the gateway's HTTP client.
    pub fn rest(http: &HttpClient, base: &str, operation: Operation) -> anyhow::Result<Self> {
        use http::{HeaderValue, header};
        let (path, body) = match operation {
            Operation::IssueOneTimeToken => {
                ("/v1/one-time-token", format!(r#"{{"email":"{EMAIL}","validityTime":60}}"#))
            }
            Operation::Login => (
                "/manager/mtr-login",
                format!(r#"{{"email":"{EMAIL}","password":"{PASSWORD}","brokerId":"{BROKER_ID}"}}"#),
            ),
        };
        let url = url::Url::parse(&format!("{base}{path}"))?;
        let request = Outgoing::post(&url, body)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .header(header::AUTHORIZATION, HeaderValue::from_static(crate::upstream::API_KEY));
        Ok(Call::Rest { http: Box::new(http.clone()), request: Box::new(request) })
    }

    async fn once(&self, n: usize) -> Result<(), String> {
        match self {
            Call::Rest { http, request } => {
                let response = http.send(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                response.bytes().await.map_err(|e| e.to_string())?;
                if status != 200 {
                    return Err(format!("HTTP {status}"));
                }
                Ok(())
            }
            Call::Rpc { channels, operation } => {
                let mut client = SsoServiceClient::new(channels[n % channels.len()].clone());
                let result = match operation {
                    Operation::IssueOneTimeToken => {
                        // One email per request: identical concurrent requests would share one vendor call.
                        let email = format!("bench{n}@example.com");
                        let mut request = tonic::Request::new(IssueOneTimeTokenRequest { email, ..Default::default() });
                        request.set_timeout(RPC_DEADLINE);
                        client.issue_one_time_token(request).await.map(|_| ())
                    }
                    Operation::Login => {
                        let mut request = tonic::Request::new(LoginRequest {
                            email: EMAIL.into(),
                            password: PASSWORD.into(),
                            ..Default::default()
                        });
                        request.set_timeout(RPC_DEADLINE);
                        client.login(request).await.map(|_| ())
                    }
                };
                result.map_err(|status| format!("{:?}: {}", status.code(), status.message()))
            }
            Call::Health { channels } => {
                let mut client = HealthClient::new(channels[n % channels.len()].clone());
                let answer = client
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                    .map_err(|status| format!("{:?}", status.code()))?;
                if answer.into_inner().status() != ServingStatus::Serving {
                    return Err("not SERVING".into());
                }
                Ok(())
            }
        }
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    latencies_us: Histogram<u64>,
}

impl Outcome {
    /// Latency at a quantile, in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.latencies_us.value_at_quantile(q)
    }

    /// Completed requests per second.
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "completed": self.completed,
            "errors": self.errors,
            "throughput_per_s": (self.throughput() * 10.0).round() / 10.0,
            "p50_us": self.quantile_us(0.5),
            "p90_us": self.quantile_us(0.9),
            "p99_us": self.quantile_us(0.99),
            "p999_us": self.quantile_us(0.999),
            "max_us": self.latencies_us.max(),
        })
    }
}

struct Recorder {
    histogram: Mutex<Histogram<u64>>,
    completed: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        // 1 µs to 60 s at 3 significant figures: constant, valid bounds.
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Arc::new(Self {
            histogram: Mutex::new(histogram),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        })
    }

    fn record(&self, latency: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.completed.fetch_add(1, Ordering::Relaxed);
                let mut histogram = self.histogram.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                histogram.saturating_record((latency.as_micros() as u64).max(1));
            }
            Err(error) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(error);
            }
        }
    }

    fn outcome(&self, elapsed: Duration) -> Outcome {
        let histogram = self.histogram.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Outcome {
            completed: self.completed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            elapsed,
            latencies_us: histogram,
        }
    }
}

/// Sends `rate` requests per second for `duration`, each at its scheduled time.
pub async fn open_loop(call: &Call, rate: u32, duration: Duration) -> Outcome {
    let recorder = Recorder::new();
    let total = (u128::from(rate) * duration.as_millis() / 1000) as usize;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now() + Duration::from_millis(5);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let scheduled = start + period * n as u32;
        tokio::time::sleep_until(scheduled).await;
        let call = call.clone();
        let recorder = recorder.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = call.once(n).await;
            recorder.record(sent.elapsed(), result);
        });
    }
    while tasks.join_next().await.is_some() {}
    recorder.outcome(start.elapsed())
}

/// Keeps `concurrency` requests in flight for `duration`.
pub async fn closed_loop(call: &Call, concurrency: usize, duration: Duration) -> Outcome {
    let recorder = Recorder::new();
    let start = Instant::now();
    let end = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let call = call.clone();
        let recorder = recorder.clone();
        workers.spawn(async move {
            let mut n = worker;
            while Instant::now() < end {
                let sent = Instant::now();
                let result = call.once(n).await;
                recorder.record(sent.elapsed(), result);
                n += concurrency;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    recorder.outcome(start.elapsed())
}

/// Fires `count` requests at once and returns when all have answered.
pub async fn burst(call: &Call, count: usize) -> Outcome {
    let recorder = Recorder::new();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let call = call.clone();
        let recorder = recorder.clone();
        tasks.spawn(async move {
            let result = call.once(n).await;
            recorder.record(start.elapsed(), result);
        });
    }
    while tasks.join_next().await.is_some() {}
    recorder.outcome(start.elapsed())
}
