//! Every RPC, successful and failing, with all logging of every crate on at
//! TRACE: no password, API key, one-time token, session or refresh token may
//! appear in any log line, any gRPC error message or any metric. One test in this binary,
//! because it owns the process-wide subscriber.

use crate::common;
use common::{new_account, spawn_sandbox_gateway};
use mtr_sso::{
    proto::{IssueOneTimeTokenRequest, LoginRequest, RefreshRequest},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, FaultKind, SANDBOX_API_KEY, SandboxOptions, Switches},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_line_error_message_or_metric_at_trace_level() {
    let captured = common::CapturedLogs::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();

    let (sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let new_password = "S3cret-pass!";
    let wrong_password = "Wr0ng-Pa55w0rd";
    let mut secrets: Vec<String> =
        vec![SANDBOX_API_KEY.into(), DEMO_PASSWORD.into(), new_password.into(), wrong_password.into()];
    let mut errors: Vec<String> = Vec::new();

    // Successes.
    let created =
        gateway.client.create_account(new_account("leak.check@example.com")).await.expect("created").into_inner();
    secrets.push(created.login_link.expect("link").one_time_token);
    let mut with_session = new_account("leak.session@example.com");
    with_session.start_session = true;
    let session =
        gateway.client.create_account(with_session).await.expect("created").into_inner().session.expect("session");
    secrets.extend([session.access_token, session.refresh_token]);
    let issued = gateway
        .client
        .issue_one_time_token(IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() })
        .await
        .expect("issued")
        .into_inner();
    secrets.push(issued.login_link.expect("link").one_time_token);
    let login = gateway
        .client
        .login(LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() })
        .await
        .expect("login")
        .into_inner()
        .session
        .expect("session");
    secrets.extend(login.cookies.iter().map(|c| c.value.clone()));
    let refreshed = gateway
        .client
        .refresh(RefreshRequest { refresh_token: login.refresh_token.clone(), ..Default::default() })
        .await
        .expect("refresh")
        .into_inner()
        .session
        .expect("session");
    secrets.extend([login.access_token, refreshed.access_token, refreshed.refresh_token]);

    // Failures.
    let bad_login = LoginRequest { email: DEMO_EMAIL.into(), password: wrong_password.into(), ..Default::default() };
    errors.push(gateway.client.login(bad_login).await.expect_err("wrong").message().to_string());
    let unknown = RefreshRequest { refresh_token: "never-issued-refresh-token".into(), ..Default::default() };
    errors.push(gateway.client.refresh(unknown).await.expect_err("unknown").message().to_string());
    let mut invalid = new_account("bad email");
    invalid.password = new_password.into();
    errors.push(gateway.client.create_account(invalid).await.expect_err("invalid").message().to_string());
    errors.push(gateway.client.create_account(new_account(DEMO_EMAIL)).await.expect_err("dup").message().to_string());
    let unknown = IssueOneTimeTokenRequest { email: "nobody@example.com".into(), ..Default::default() };
    errors.push(gateway.client.issue_one_time_token(unknown).await.expect_err("unknown user").message().to_string());
    sandbox.set_switches(Switches { fault: FaultKind::MalformedBody, ..Switches::default() });
    let login_again = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    errors.push(gateway.client.login(login_again).await.expect_err("malformed").message().to_string());
    sandbox.set_switches(Switches { fault: FaultKind::Reset, ..Switches::default() });
    errors.push(
        gateway.client.create_account(new_account("reset@example.com")).await.expect_err("reset").message().to_string(),
    );
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains("grpc_server_handled_total"), "metrics were recorded");
    drop(gateway);
    drop(sandbox);

    let logs = captured.text();
    assert!(logs.lines().count() > 20, "TRACE logging was captured:\n{logs}");
    assert!(logs.contains("rpc finished") && logs.contains("upstream answered"), "our own lines are in:\n{logs}");
    let mut hits = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if logs.contains(secret.as_str()) {
            hits.push(format!("log contains {secret}"));
        }
        if metrics.contains(secret.as_str()) {
            hits.push(format!("metrics contain {secret}"));
        }
        for message in &errors {
            if message.contains(secret.as_str()) {
                hits.push(format!("error message `{message}` contains {secret}"));
            }
        }
    }
    assert!(hits.is_empty(), "{} leak(s): {hits:#?}", hits.len());
    eprintln!(
        "figure: {} secrets searched in {} log lines, {} error messages and {} metric lines: 0 hits",
        secrets.len(),
        logs.lines().count(),
        errors.len(),
        metrics.lines().count()
    );
    assert!(secrets.len() >= 12, "enough secrets were checked: {}", secrets.len());
}
