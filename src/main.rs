//! The `mtr-sso` binary: parses settings, installs logging, runs the service
//! until SIGTERM/SIGINT. A bad setting exits with status 64 and one line.

use clap::Parser as _;
use std::process::ExitCode;

use mtr_sso::{app, config::Cli, server, telemetry};

// mimalloc instead of glibc's malloc: an RPC allocates and frees a few
// hundred small objects, and glibc's allocator took a fifth of the CPU time
// of an RPC (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `EX_USAGE`: the configuration is wrong.
const EXIT_BAD_SETTING: u8 = 64;

/// Settings the allocator reads before `main`, applied by the process
/// replacing itself once (keeping its pid, arguments, environment and open
/// files); if anything fails it simply runs on as it is.
///
/// - Small pages: with transparent huge pages set to `always` (common on
///   hosts), the first regions the allocator touches become 2 MiB pages, and
///   the idle service measured 12.5 MB instead of 9 MB. The switch survives
///   `exec`, so only a fresh image starts without them.
/// - `MIMALLOC_PURGE_DELAY=-1` unless set: memory freed after a burst stays
///   for reuse instead of going back to the OS. Returning it made every RPC
///   against a 5 ms vendor 0.5 ms slower (each return is an `madvise` with a
///   TLB shootdown), and the peak is bounded by `--max-in-flight` and
///   `--upstream-concurrency` anyway. An operator's own setting wins.
#[cfg(target_os = "linux")]
fn restart_with_allocator_settings() {
    use nix::sys::prctl;
    use std::os::unix::process::CommandExt as _;
    let Ok(binary) = std::env::current_exe() else { return };
    let mut command = std::process::Command::new(binary);
    command.args(std::env::args_os().skip(1));
    let mut changed = prctl::get_thp_disable() == Ok(false) && prctl::set_thp_disable(true).is_ok();
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        command.env("MIMALLOC_PURGE_DELAY", "-1");
        changed = true;
    }
    if changed {
        // Returns only if the exec failed.
        let _ = command.exec();
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    restart_with_allocator_settings();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("mtr-sso: {first}");
            return ExitCode::from(EXIT_BAD_SETTING);
        }
    };
    let settings = match cli.into_settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("mtr-sso: {error}");
            return ExitCode::from(EXIT_BAD_SETTING);
        }
    };
    if settings.check_only {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.worker_threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mtr-sso: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The span exporter needs the runtime, so logging starts inside it.
    let telemetry = match runtime
        .block_on(async { telemetry::init(settings.log_format, &settings.log_filter, settings.otlp_endpoint.as_ref()) })
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("mtr-sso: {error}");
            return ExitCode::from(EXIT_BAD_SETTING);
        }
    };
    let outcome = runtime.block_on(app::run(settings, server::shutdown_signal()));
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("mtr-sso: {error:#}");
            ExitCode::FAILURE
        }
    }
}
