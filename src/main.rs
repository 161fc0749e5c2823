//! The `mtr-sso` binary: parses settings, installs logging, runs the service
//! until SIGTERM/SIGINT. A bad setting exits with status 64 and one line.

use clap::Parser as _;
use std::process::ExitCode;

use mtr_sso::{app, config::Cli, server, telemetry};

/// `EX_USAGE`: the configuration is wrong.
const EXIT_BAD_SETTING: u8 = 64;

fn main() -> ExitCode {
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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.worker_threads {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
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
