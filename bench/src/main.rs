//! `mtr-sso-bench`: what the gateway adds on top of its upstream, measured
//! side by side in one run on one machine:
//!
//! - A: the JSON REST call straight to an instant upstream (the floor);
//! - B: the same operation as an RPC through the gateway to that upstream;
//! - C: a health check on the gateway (tonic's own ceiling).
//!
//! Reports added latency (B−A) at a fixed rate, maximum throughput of B and
//! C, server CPU per RPC, resident memory idle and with 1000 RPCs in flight,
//! time from exec to SERVING, and the binary size. `--smoke` runs every phase
//! for a moment and fails on any non-OK answer. See BENCHMARKS.md.
//!
//! `--quota-burst` measures something else: whether the quota guard keeps a
//! burst at three times the quota inside the vendor's limit (see quota_burst.rs).

mod load;
mod process;
mod quota_burst;
mod relay;
mod upstream;
mod window_figures;

use clap::Parser;
use load::{Call, Operation, Outcome};
use mtr_sso::{
    config::HttpSettings,
    upstream::{HttpClient, Proxies},
};
use serde_json::json;
use std::{path::PathBuf, time::Duration};

#[derive(Debug, Parser)]
#[command(about = "Measures what mtr-sso adds on top of its upstream")]
struct Args {
    /// Run every phase briefly and only check that all answers are OK.
    #[arg(long)]
    smoke: bool,
    /// The gateway binary to measure.
    #[arg(long, default_value = "target/release/mtr-sso")]
    gateway_bin: PathBuf,
    /// Request rate of the open-loop phases.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of each measured phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests in flight in the closed-loop (maximum throughput) phases.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// RPCs held in flight for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
    /// How many cold starts to time.
    #[arg(long, default_value_t = 10)]
    starts: usize,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only run B for this operation at `--rate` for `--duration`, printing the
    /// gateway's pid first so a profiler can attach (see BENCHMARKS.md).
    #[arg(long, value_enum)]
    single: Option<Operation>,
    /// Internal: run as the do-nothing relay to this upstream (see relay.rs).
    #[arg(long, hide = true)]
    relay_for: Option<std::net::SocketAddr>,
    /// Instead of the above: a burst at 3× the quota for two windows, through two
    /// gateway processes sharing Redis and through one alone, against the
    /// sandbox's own limit (with --smoke: 30 per 6 s window).
    #[arg(long)]
    quota_burst: bool,
    /// The quota of the burst, per window, for the gateway and the sandbox alike.
    #[arg(long, default_value_t = 500)]
    quota: u32,
    /// The window of the burst's quota; only shorter for a quick check.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    quota_window: Duration,
    /// An extra flag for the gateway (repeatable), e.g. `--gateway-arg=--worker-threads=1`.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    gateway_args: Vec<String>,
}

struct Run {
    errors: u64,
    problems: Vec<String>,
}

impl Run {
    fn check(&mut self, phase: &str, outcome: &Outcome) {
        if outcome.errors > 0 {
            self.errors += outcome.errors;
            self.problems.push(format!(
                "{phase}: {} of {} failed, first: {}",
                outcome.errors,
                outcome.errors + outcome.completed,
                outcome.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
}

/// One open-loop phase of B, for profiling the gateway under one kind of load.
async fn single_phase(gateway: &process::Gateway, call: &Call, args: &Args) -> anyhow::Result<()> {
    println!("gateway pid {}", gateway.pid);
    let cpu_before = gateway.cpu_time()?;
    let outcome = load::open_loop(call, args.rate, args.duration).await;
    let cpu = gateway.cpu_time()? - cpu_before;
    println!(
        "{} RPCs at {}/s: p50 {} µs, p99 {} µs, gateway CPU {:.1} µs per RPC, {} errors",
        outcome.completed,
        args.rate,
        outcome.quantile_us(0.5),
        outcome.quantile_us(0.99),
        cpu.as_secs_f64() * 1e6 / outcome.completed.max(1) as f64,
        outcome.errors
    );
    anyhow::ensure!(outcome.errors == 0, "{} requests did not answer OK", outcome.errors);
    Ok(())
}

/// What `over` adds to `base` at p50 and p99, in microseconds.
fn added(over: &Outcome, base: &Outcome) -> (i64, i64) {
    let at = |q| over.quantile_us(q) as i64 - base.quantile_us(q) as i64;
    (at(0.5), at(0.99))
}

fn target(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(upstream) = args.relay_for {
        return relay::run(upstream);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(measure(args))
}

async fn measure(mut args: Args) -> anyhow::Result<()> {
    if args.quota_burst {
        let (quota, window) = if args.smoke { (30, Duration::from_secs(6)) } else { (args.quota, args.quota_window) };
        let burst = quota_burst::Burst { quota, window, windows: 2, over: 3 };
        return quota_burst::run(&args.gateway_bin, burst, args.out.as_deref()).await;
    }
    if args.smoke {
        args.rate = args.rate.min(200);
        args.duration = args.duration.min(Duration::from_secs(1));
        args.concurrency = args.concurrency.min(16);
        args.in_flight = args.in_flight.min(200);
        args.starts = args.starts.min(2);
    }
    mtr_sso::upstream::install_crypto_provider();
    let mut run = Run { errors: 0, problems: Vec::new() };
    let (upstream, upstream_addr) = upstream::start().await?;
    let dir = std::env::temp_dir().join(format!("mtr-sso-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tenants = process::write_tenants_file(&dir, upstream_addr)?;

    // Cold starts: exec to the first SERVING answer.
    let mut starts = Vec::new();
    for _ in 0..args.starts {
        let gateway = process::start(&args.gateway_bin, &tenants, &args.gateway_args).await?;
        starts.push(gateway.exec_to_serving);
        gateway.stop().await?;
    }
    starts.sort();
    let start_median = starts[starts.len() / 2];

    let gateway = process::start(&args.gateway_bin, &tenants, &args.gateway_args).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_idle_kib, _) = gateway.memory_kib()?;
    let channels = gateway.channels(4).await?;
    // A uses the gateway's own HTTP client, so A and B differ by the gateway alone.
    let rest_http = HttpClient::new(&HttpSettings {
        user_agent: "mtr-sso-bench".into(),
        connect_timeout: Duration::from_secs(5),
        upstream_timeout: Duration::from_secs(30),
        proxies: Proxies::None,
    })?;
    let base = format!("http://{upstream_addr}");
    let rest = |operation| Call::rest(&rest_http, &base, operation);
    let relay = relay::start(&std::env::current_exe()?, upstream_addr).await?;
    let relayed_base = format!("http://{}", relay.addr);
    let relayed = |operation| Call::rest(&rest_http, &relayed_base, operation);
    let rpc = |operation| Call::Rpc { channels: channels.clone(), operation };

    // Warm both paths' connection pools before measuring.
    run.check("warm-up A", &load::closed_loop(&rest(Operation::Login)?, 8, Duration::from_millis(500)).await);
    run.check("warm-up B", &load::closed_loop(&rpc(Operation::Login), 8, Duration::from_millis(500)).await);
    run.check("warm-up relay", &load::closed_loop(&relayed(Operation::Login)?, 8, Duration::from_millis(500)).await);

    if let Some(operation) = args.single {
        let outcome = single_phase(&gateway, &rpc(operation), &args).await;
        gateway.stop().await?;
        let _ = std::fs::remove_dir_all(&dir);
        return outcome;
    }

    // Added latency at a fixed rate, and CPU per RPC at that rate.
    let mut latency = Vec::new();
    for operation in [Operation::IssueOneTimeToken, Operation::Login] {
        let a = load::open_loop(&rest(operation)?, args.rate, args.duration).await;
        run.check(&format!("A {}", operation.name()), &a);
        let cpu_before = gateway.cpu_time()?;
        let b = load::open_loop(&rpc(operation), args.rate, args.duration).await;
        let cpu = gateway.cpu_time()? - cpu_before;
        run.check(&format!("B {}", operation.name()), &b);
        let cpu_us = cpu.as_secs_f64() * 1e6 / b.completed.max(1) as f64;
        let r = load::open_loop(&relayed(operation)?, args.rate, args.duration).await;
        run.check(&format!("A via relay {}", operation.name()), &r);
        latency.push((operation, a, b, cpu_us, r));
    }

    // Maximum throughput, closed loop.
    let cpu_before = gateway.cpu_time()?;
    let b_max = load::closed_loop(&rpc(Operation::IssueOneTimeToken), args.concurrency, args.duration).await;
    let cpu_at_max_us = (gateway.cpu_time()? - cpu_before).as_secs_f64() * 1e6 / b_max.completed.max(1) as f64;
    run.check("B max", &b_max);
    let c_max = load::closed_loop(&Call::Health { channels: channels.clone() }, args.concurrency, args.duration).await;
    run.check("C max", &c_max);

    // A 5 ms upstream: the pool and concurrency must keep up without queueing.
    upstream.set_delay(Duration::from_millis(5));
    upstream.take_connection_count();
    let a_slow = load::open_loop(&rest(Operation::Login)?, args.rate, args.duration).await;
    run.check("A Login, 5 ms upstream", &a_slow);
    let connections_a = upstream.take_connection_count();
    let b_slow = load::open_loop(&rpc(Operation::Login), args.rate, args.duration).await;
    run.check("B Login, 5 ms upstream", &b_slow);
    let connections_b = upstream.take_connection_count();

    // Memory with many RPCs in flight: the upstream holds each answer for a
    // second, so calls beyond the gateway's upstream concurrency limit wait.
    upstream.set_delay(Duration::from_secs(1));
    upstream.take_connection_count();
    let wide = gateway.channels(args.in_flight.div_ceil(100)).await?;
    let burst_call = Call::Rpc { channels: wide, operation: Operation::Login };
    let burst = tokio::spawn(async move { load::burst(&burst_call, args.in_flight).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (rss_in_flight_kib, _) = gateway.memory_kib()?;
    let connections_in_flight = upstream.take_connection_count();
    let burst = burst.await?;
    run.check("in-flight burst", &burst);
    upstream.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after_kib, rss_peak_kib) = gateway.memory_kib()?;
    gateway.stop().await?;
    let binary_bytes = std::fs::metadata(&args.gateway_bin)?.len();

    // Report.
    let ratio = b_max.throughput() / c_max.throughput();
    let mut results = json!({
        "mode": if args.smoke { "smoke" } else { "full" },
        "gateway_bin": args.gateway_bin,
        "rate_per_s": args.rate,
        "phase_duration_s": args.duration.as_secs_f64(),
        "concurrency": args.concurrency,
        "exec_to_serving_ms": { "median": start_median.as_secs_f64() * 1e3, "all": starts.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>() },
        "rss_kib": { "idle": rss_idle_kib, "in_flight": rss_in_flight_kib, "in_flight_count": args.in_flight, "upstream_connections_in_flight": connections_in_flight, "after_load": rss_after_kib, "peak": rss_peak_kib },
        "max_throughput_per_s": { "B_issue_one_time_token": b_max.summary(), "C_health": c_max.summary(), "ratio_B_over_C": ratio },
        "cpu_us_per_rpc_at_max": cpu_at_max_us,
        "upstream_5ms": { "A_login": a_slow.summary(), "B_login": b_slow.summary(), "upstream_connections_A": connections_a, "upstream_connections_B": connections_b },
        "binary_bytes": binary_bytes,
        "errors": run.errors,
    });
    println!(
        "mtr-sso benchmark ({} mode), gateway {}",
        if args.smoke { "smoke" } else { "full" },
        args.gateway_bin.display()
    );
    println!(
        "open loop at {}/s for {:?} per phase; closed loop at {} in flight\n",
        args.rate, args.duration, args.concurrency
    );
    println!(
        "| operation | A p50 | A p99 | B p50 | B p99 | added p50 (≤100 µs) | added p99 (≤500 µs) | CPU/RPC (≤30 µs) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (operation, a, b, cpu_us, _) in &latency {
        let (added_p50, added_p99) = added(b, a);
        println!(
            "| {} | {} µs | {} µs | {} µs | {} µs | {added_p50} µs ({}) | {added_p99} µs ({}) | {cpu_us:.1} µs ({}) |",
            operation.name(),
            a.quantile_us(0.5),
            a.quantile_us(0.99),
            b.quantile_us(0.5),
            b.quantile_us(0.99),
            target(added_p50 <= 100),
            target(added_p99 <= 500),
            target(*cpu_us <= 30.0),
        );
        results[operation.name()] = json!({
            "A": a.summary(), "B": b.summary(), "added_p50_us": added_p50, "added_p99_us": added_p99, "cpu_us_per_rpc": cpu_us,
        });
    }
    println!();
    println!("A through a do-nothing TCP relay process (the floor for any process on the path):");
    println!();
    println!("| operation | relayed p50 | relayed p99 | relay adds p50 | relay adds p99 |");
    println!("|---|---|---|---|---|");
    for (operation, a, _, _, r) in &latency {
        let (added_p50, added_p99) = added(r, a);
        println!(
            "| {} | {} µs | {} µs | {added_p50} µs | {added_p99} µs |",
            operation.name(),
            r.quantile_us(0.5),
            r.quantile_us(0.99)
        );
        results[operation.name()]["A_via_relay"] = r.summary();
        results[operation.name()]["relay_added_p50_us"] = json!(added_p50);
        results[operation.name()]["relay_added_p99_us"] = json!(added_p99);
    }
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| max throughput B (IssueOneTimeToken) | {:.0}/s | |", b_max.throughput());
    println!("| max throughput C (health) | {:.0}/s | |", c_max.throughput());
    println!("| B / C | {:.0} % | ≥ 50 % ({}) |", ratio * 100.0, target(ratio >= 0.5));
    println!(
        "| server CPU per RPC at max throughput | {cpu_at_max_us:.1} µs | ≤ 30 µs ({}) |",
        target(cpu_at_max_us <= 30.0)
    );
    println!("| RSS idle | {:.1} MB | ≤ 8 MB ({}) |", rss_idle_kib as f64 / 1024.0, target(rss_idle_kib <= 8 * 1024));
    println!(
        "| RSS at {} in flight ({} upstream connections) | {:.1} MB | ≤ 25 MB ({}) |",
        args.in_flight,
        connections_in_flight,
        rss_in_flight_kib as f64 / 1024.0,
        target(rss_in_flight_kib <= 25 * 1024)
    );
    println!(
        "| RSS after load / peak | {:.1} MB / {:.1} MB | |",
        rss_after_kib as f64 / 1024.0,
        rss_peak_kib as f64 / 1024.0
    );
    println!(
        "| exec → SERVING (median of {}) | {:.1} ms | ≤ 50 ms ({}) |",
        starts.len(),
        start_median.as_secs_f64() * 1e3,
        target(start_median <= Duration::from_millis(50))
    );
    println!(
        "| binary size | {:.1} MB | ≤ 10 MB ({}) |",
        binary_bytes as f64 / 1e6,
        target(binary_bytes <= 10_000_000)
    );
    println!(
        "| 5 ms upstream, Login p50 / p99: A | {} / {} µs, {} connections | |",
        a_slow.quantile_us(0.5),
        a_slow.quantile_us(0.99),
        connections_a
    );
    println!(
        "| 5 ms upstream, Login p50 / p99: B | {} / {} µs, {} connections | |",
        b_slow.quantile_us(0.5),
        b_slow.quantile_us(0.99),
        connections_b
    );
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if run.errors > 0 {
        for problem in &run.problems {
            eprintln!("{problem}");
        }
        anyhow::bail!("{} requests did not answer OK", run.errors);
    }
    println!("\nall answers OK");
    Ok(())
}
