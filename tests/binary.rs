//! The real `mtr-sso` binary: bad settings stop it with one line and exit 64,
//! `--sandbox` announces itself and serves, SIGTERM drains and exits.

mod common;

use common::{BINARY, Running};
use mtr_sso::{
    proto::LoginRequest,
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD},
};
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BINARY).args(args).env_clear().stdin(Stdio::null()).output().expect("runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn each_bad_setting_exits_64_with_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("mtr-sso-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tenants = dir.join("tenants.toml");
    std::fs::write(
        &tenants,
        "[tenants.acme]\nbroker_api_url = \"https://b.example.com\"\nplatform_url = \"https://p.example.com\"\n",
    )
    .expect("write");
    let tenants = tenants.to_str().expect("utf8");
    let cases: [(&[&str], &str); 7] = [
        (&[], "--broker-api-url"),
        (&["--listen", "not-an-address"], "--listen"),
        (&["--sandbox", "--upstream-timeout", "0s"], "--upstream-timeout"),
        (&["--sandbox", "--platform-url", "https://p.example.com"], "--platform-url"),
        (
            &["--broker-api-url", "ftp://b", "--api-key", "k", "--platform-url", "https://p.example.com"],
            "--broker-api-url",
        ),
        (&["--tenants-file", tenants], "tenants.acme.api_key_file"),
        (&["--sandbox", "--log-format", "xml"], "--log-format"),
    ];
    for (args, setting) in cases {
        let (code, stderr) = run_to_exit(args);
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?} printed: {stderr}");
        assert!(stderr.contains(setting), "{args:?}: `{stderr}` does not name {setting}");
    }
}

#[tokio::test]
async fn sandbox_mode_announces_itself_serves_and_drains_on_sigterm() {
    let mut running =
        Running::start(&["--sandbox", "--listen", "127.0.0.1:0", "--log-format", "json", "--shutdown-grace", "5s"]);
    let (listening, before) = running.wait_for("mtr-sso listening");
    assert!(before.iter().any(|l| l.contains("SANDBOX MODE")), "sandbox mode is announced: {before:#?}");
    let line: serde_json::Value = serde_json::from_str(&listening).expect("json log line");
    let addr: std::net::SocketAddr = line["grpc_addr"].as_str().expect("grpc_addr").parse().expect("address");
    assert_ne!(addr.port(), 0, "the OS-picked port is printed");

    let mut client = mtr_sso::proto::sso_service_client::SsoServiceClient::new(common::channel(addr).await);
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    let session = client.login(login).await.expect("login through the binary").into_inner().session.expect("session");
    assert!(!session.access_token.is_empty());

    running.terminate();
    running.wait_for("shutting down");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(6), "exits within its grace");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
