//! `--check-upstream` through the real binary: against the sandbox every
//! check passes and it exits 0; a tenant with a mixed-up key or broker id
//! fails its row and the run exits 1. No secret is ever printed. A setting
//! that does not fit a tenant's generation already fails `--check-config`.
// Drives the built-in sandbox, which a build without the `sandbox` feature leaves out.
#![cfg(feature = "sandbox")]

mod common;

use common::BINARY;
use mtr_sso::sandbox::{SANDBOX_API_KEY, SANDBOX_V2_API_KEY, Sandbox, SandboxOptions};
use std::process::{Command, Stdio};

/// Runs the binary to its end off the runtime, so an in-process sandbox keeps answering.
async fn run(args: Vec<String>) -> (Option<i32>, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BINARY).args(&args).env_clear().stdin(Stdio::null()).output().expect("runs")
    })
    .await
    .expect("joined");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

fn row<'a>(table: &'a str, tenant: &str, check: &str) -> &'a str {
    table
        .lines()
        .find(|line| {
            let mut columns = line.split_whitespace();
            columns.next() == Some(tenant) && columns.next() == Some(check)
        })
        .unwrap_or_else(|| panic!("no row {tenant} {check} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_sandbox_every_check_of_both_tenants_passes() {
    let (code, table, stderr) = run(vec!["--check-upstream".into(), "--sandbox".into()]).await;
    assert_eq!(code, Some(0), "{table}{stderr}");
    assert!(table.starts_with("TENANT"), "{table}");
    for tenant in ["default", "v2"] {
        for check in ["broker-api", "platform"] {
            let line = row(&table, tenant, check);
            assert!(line.contains(" ok "), "{line}");
        }
        assert!(row(&table, tenant, "cookie-domain").contains("skipped"));
    }
    assert!(row(&table, "v2", "broker-api").contains("404"), "{table}");
    assert!(!table.contains(SANDBOX_API_KEY) && !table.contains(SANDBOX_V2_API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_up_key_or_broker_id_fails_its_row_and_the_run() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let base = sandbox.base_url().as_str().trim_end_matches('/').to_string();
    let dir = std::env::temp_dir().join(format!("mtr-sso-preflight-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("tenants.toml");
    // The v2 tenant was given the v1 key; the v1 tenant another broker's id.
    std::fs::write(
        &file,
        format!(
            "default_tenant = \"old\"\n\
             [tenants.old]\nbroker_api_url = \"{base}\"\napi_key = \"{SANDBOX_API_KEY}\"\nplatform_url = \"{base}\"\n\
             broker_id = \"2\"\n\
             [tenants.new]\nbroker_api_generation = \"v2\"\nbroker_api_url = \"{base}/broker-api-v2\"\n\
             api_key = \"{SANDBOX_API_KEY}\"\nplatform_url = \"{base}\"\nbroker_id = \"1\"\n"
        ),
    )
    .expect("write");
    let args = vec!["--check-upstream".into(), "--tenants-file".into(), file.to_string_lossy().into_owned()];
    let (code, table, stderr) = run(args).await;
    assert_eq!(code, Some(1), "{table}{stderr}");
    let key = row(&table, "new", "broker-api");
    assert!(key.contains("FAIL") && key.contains("API key"), "{key}");
    assert!(row(&table, "old", "broker-api").contains(" ok "), "{table}");
    let broker = row(&table, "old", "platform");
    assert!(broker.contains("FAIL") && broker.contains("partnerId 1") && broker.contains("broker id is 2"), "{broker}");
    assert!(row(&table, "new", "platform").contains(" ok "), "{table}");
    assert!(!table.contains(SANDBOX_API_KEY) && !stderr.contains(SANDBOX_API_KEY));
    let stats = sandbox.stats();
    for write in ["create_account", "create_user_account", "issue_one_time_token", "v2_issue_one_time_token"] {
        assert!(!stats.contains_key(write), "the preflight only reads: {stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_setting_on_a_v1_tenant_fails_check_config_with_one_line_naming_it() {
    let args =
        ["--broker-api-url", "https://b.example.com", "--api-key", "k", "--platform-url", "https://p.example.com"];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--trading-account-type".into(), "demo".into(), "--check-config".into()]);
    let (code, stdout, stderr) = run(args).await;
    assert_eq!(code, Some(64), "{stdout}{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--trading-account-type") && stderr.contains("v2"), "{stderr}");
}
