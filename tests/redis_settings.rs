//! A Redis the service cannot use stops it at start with one line naming the
//! cause and the setting, exit status 64, and `--check-config` finds the same
//! at once: a refused password, a missing one, a certificate signed by a CA
//! that is not trusted. A correct TLS configuration with a password passes.
// Drives the built-in sandbox, which a build without the `sandbox` feature leaves out.
#![cfg(feature = "sandbox")]

mod common;
mod redis_server;

use common::BINARY;
use redis_server::{Mode, RedisServer};
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs the binary to its exit: status, stderr, and how long it took.
fn run_to_exit(args: &[String]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let output = Command::new(BINARY).args(args).env_clear().stdin(Stdio::null()).output().expect("runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned(), started.elapsed())
}

fn with_redis(redis_args: &[String], check_only: bool) -> Vec<String> {
    let mut args: Vec<String> =
        ["--sandbox", "--listen", "127.0.0.1:0", "--log-format", "json"].map(String::from).to_vec();
    args.extend_from_slice(redis_args);
    if check_only {
        args.push("--check-config".into());
    }
    args
}

#[test]
fn an_unusable_redis_stops_the_start_and_fails_the_check_at_once_with_one_line_naming_the_cause() {
    let redis = RedisServer::start(Mode::TlsWithPassword);
    let dir = std::env::temp_dir().join(format!("mtr-sso-redis-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let wrong_password = dir.join("wrong-password");
    std::fs::write(&wrong_password, "not-the-password\n").expect("write");
    let other_ca = dir.join("other");
    std::fs::create_dir_all(&other_ca).expect("dir");
    redis_server::write_certificates(&other_ca);
    let path = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let url = redis.url();
    let ca = redis.file("ca.pem");
    let cases: [(Vec<String>, &str, &str); 4] = [
        (
            vec![
                "--redis-url".into(),
                url.clone(),
                "--redis-ca-file".into(),
                ca.clone(),
                "--redis-password-file".into(),
                path(&wrong_password),
            ],
            "--redis-password-file",
            "refused the password",
        ),
        (
            vec!["--redis-url".into(), url.clone(), "--redis-ca-file".into(), ca.clone()],
            "--redis-password-file",
            "requires a password",
        ),
        (
            vec!["--redis-url".into(), url.clone(), "--redis-password-file".into(), redis.file("password")],
            "--redis-ca-file",
            "certificate",
        ),
        (
            vec![
                "--redis-url".into(),
                url.clone(),
                "--redis-ca-file".into(),
                path(&other_ca.join("ca.pem")),
                "--redis-password-file".into(),
                redis.file("password"),
            ],
            "--redis-ca-file",
            "not trusted",
        ),
    ];
    for (redis_args, setting, cause) in cases {
        for check_only in [true, false] {
            let (code, stderr, took) = run_to_exit(&with_redis(&redis_args, check_only));
            let what = if check_only { "--check-config" } else { "start" };
            assert_eq!(code, Some(64), "{what} {redis_args:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{what} printed: {stderr}");
            assert!(stderr.contains(setting) && stderr.contains(cause), "{what}: `{stderr}` names {setting}, {cause}");
            assert!(!stderr.contains(redis_server::PASSWORD) && !stderr.contains("not-the-password"));
            assert!(took < Duration::from_secs(3), "{what} {redis_args:?} took {took:?}");
        }
    }
    let (code, stderr, _) = run_to_exit(&with_redis(&redis.gateway_args(), true));
    assert_eq!(code, Some(0), "a correct TLS configuration with a password passes the check: {stderr}");
}

#[test]
fn the_check_fails_when_nothing_answers_at_the_redis_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (code, stderr, _) =
        run_to_exit(&with_redis(&["--redis-url".into(), format!("redis://127.0.0.1:{port}")], true));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--redis-url") && stderr.contains("connection refused"), "{stderr}");
}

#[test]
fn a_cluster_url_passes_the_check_and_a_command_timeout_as_long_as_an_rpc_is_refused() {
    let cluster = redis_server::cluster::RedisCluster::start(Mode::TlsWithPassword);
    let (code, stderr, _) = run_to_exit(&with_redis(&cluster.gateway_args(), true));
    assert_eq!(code, Some(0), "a TLS cluster with a password passes the check: {stderr}");
    let mut args = cluster.gateway_args();
    args.extend(["--redis-command-timeout".into(), "10s".into()]);
    let (code, stderr, _) = run_to_exit(&with_redis(&args, true));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--redis-command-timeout") && stderr.contains("--upstream-timeout"), "{stderr}");
}
