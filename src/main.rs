//! The `mtr-sso` binary: parses settings, installs logging, runs the service
//! until SIGTERM/SIGINT. A bad setting exits with status 64 and one line.

use clap::Parser as _;
use std::process::ExitCode;

use mtr_sso::{
    app::{self, App},
    config::{Cli, Mode, Settings},
    preflight, redis_connection, server, telemetry,
};

// mimalloc instead of glibc's malloc: an RPC allocates and frees a few
// hundred small objects, and glibc's allocator took a fifth of the CPU time
// of an RPC (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `EX_USAGE`: the configuration is wrong.
const EXIT_BAD_SETTING: u8 = 64;

/// Small pages. With transparent huge pages set to `always` (common on
/// hosts), the first regions the allocator touches become 2 MiB pages: the
/// idle service measured 12.4 MiB instead of 9.1. Its working set is a few
/// megabytes, so small pages serve it better. The allocator starts before
/// `main`, so the switch (which survives `exec`) only takes effect in a fresh
/// image: the process replaces itself once, keeping its pid, arguments,
/// environment and open files. If anything fails it simply runs on as it is.
#[cfg(target_os = "linux")]
fn restart_without_huge_pages() {
    use nix::sys::prctl;
    use std::os::unix::process::CommandExt as _;
    if prctl::get_thp_disable() != Ok(false) || prctl::set_thp_disable(true).is_err() {
        return;
    }
    if let Ok(binary) = std::env::current_exe() {
        // Returns only if the exec failed.
        let _ = std::process::Command::new(binary).args(std::env::args_os().skip(1)).exec();
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    restart_without_huge_pages();
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
    // One runtime for every mode: the span exporter needs it, and so do the checks.
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
    match settings.mode {
        Mode::CheckConfig => match runtime.block_on(app::check_config(&settings)) {
            Ok(()) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("mtr-sso: {error}");
                ExitCode::from(EXIT_BAD_SETTING)
            }
        },
        Mode::CheckUpstream => match runtime.block_on(app::check_upstream(&settings)) {
            // The preflight's table on stdout; 0 when every check passed, 1 when any failed.
            Ok(checks) => {
                print!("{}", preflight::table(&checks));
                if preflight::all_passed(&checks) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(error) => {
                eprintln!("mtr-sso: {error:#}");
                ExitCode::FAILURE
            }
        },
        Mode::Serve => serve(&runtime, settings),
    }
}

/// Serves until SIGTERM/SIGINT, with logging and span export installed.
fn serve(runtime: &tokio::runtime::Runtime, settings: Settings) -> ExitCode {
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
    let outcome = runtime.block_on(async {
        let shutdown = server::shutdown_signal();
        let app = App::build(settings).await?;
        app.run(shutdown).await
    });
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("mtr-sso: {error:#}");
            // A Redis it cannot use is a setting to fix, as in `--check-config`.
            match error.downcast_ref::<redis_connection::RedisSettingError>() {
                Some(_) => ExitCode::from(EXIT_BAD_SETTING),
                None => ExitCode::FAILURE,
            }
        }
    }
}
