//! The audit trail, end to end in process: every RPC outcome (granted,
//! refused by the vendor, by validation, by caller authentication, by the
//! policy, abandoned by the caller) writes exactly one event of the right
//! type, over gRPC and JSON alike; no password, token, cookie, key or email in
//! clear reaches the audit output; a sink that refuses writes fails the RPC
//! only when the audit fails closed, and the loss is counted either way.

use crate::common;
use common::{new_account, reason};
use mtr_sso::{
    auth::CallerAuth,
    config::{AuditOnFailure, Settings},
    proto::{IssueOneTimeTokenRequest, LoginRequest, RefreshRequest, sso_service_client::SsoServiceClient},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, SANDBOX_API_KEY, Sandbox, SandboxOptions, Switches},
};
use secrecy::SecretString;
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::{Code, transport::Channel};

const SIGNUP_TOKEN: &str = "signup-bearer-0123456789abcdef0123";
const CRM_TOKEN: &str = "crm-bearer-0123456789abcdef0123456";
const EMAIL_KEY: &str = "audit-email-key-0123456789abcdef-0123";
const NEW_PASSWORD: &str = "S3cret-pass!";
const WRONG_PASSWORD: &str = "Wr0ng-Pa55w0rd";

/// A fresh file for one gateway's audit lines.
fn audit_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("mtr-sso-audit-{name}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The audit events written so far, waiting up to 3 s for at least `count`.
fn events(path: &Path, count: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> =
            text.lines().map(|line| serde_json::from_str(line).expect("one JSON event per line")).collect();
        if lines.len() >= count || Instant::now() > until {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A request from `caller_token` (none: no credentials), tagged with `step` as its request id.
fn request<T>(message: T, caller_token: Option<&str>, step: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = caller_token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    }
    request.metadata_mut().insert("x-request-id", step.parse().expect("ascii"));
    request
}

async fn gateway(sandbox: &Sandbox, path: &Path, configure: impl FnOnce(&mut Settings)) -> common::Gateway {
    let mut settings = common::settings(vec![sandbox.tenant_settings("default")], Duration::from_secs(5));
    settings.audit.file = Some(path.to_path_buf());
    configure(&mut settings);
    common::spawn_app(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_outcome_writes_exactly_one_event_of_its_type_and_no_secret() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let path = audit_path("outcomes");
    let policy = "[callers.signup]\nrpcs = [\"CreateAccount\", \"IssueOneTimeToken\", \"Login\", \"Refresh\"]\n\n[callers.crm]\nrpcs = [\"Login\"]\n";
    let tokens = format!("signup {SIGNUP_TOKEN}\ncrm {CRM_TOKEN}\n");
    let gateway = gateway(&sandbox, &path, |settings| {
        settings.callers = Some(Arc::new(CallerAuth::parse(policy, Some(&tokens)).expect("policy")));
        settings.audit.email_key = Some(SecretString::from(EMAIL_KEY));
    })
    .await;
    let mut client: SsoServiceClient<Channel> = gateway.client.clone();
    let signup = Some(SIGNUP_TOKEN);
    let mut secrets: Vec<String> = vec![
        SANDBOX_API_KEY.into(),
        DEMO_PASSWORD.into(),
        NEW_PASSWORD.into(),
        WRONG_PASSWORD.into(),
        SIGNUP_TOKEN.into(),
        CRM_TOKEN.into(),
        EMAIL_KEY.into(),
    ];
    // (request id, expected type, expected reason, what the answer was obtained by)
    let mut expected: Vec<(&str, &str, Option<&str>, Option<&str>)> = Vec::new();

    let mut created = new_account("audit.new@example.com");
    created.idempotency_key = "audit-key-1".into();
    let answer = client.create_account(request(created.clone(), signup, "create")).await.expect("created").into_inner();
    secrets.push(answer.login_link.expect("link").one_time_token);
    expected.push(("create", "mtr-sso.account.created.v1", None, Some("vendor")));
    let replayed = client.create_account(request(created, signup, "create-again")).await.expect("replayed");
    secrets.push(replayed.into_inner().login_link.expect("link").one_time_token);
    expected.push(("create-again", "mtr-sso.account.created.v1", None, Some("idempotent_replay")));
    let taken = client.create_account(request(new_account(DEMO_EMAIL), signup, "create-taken")).await;
    assert_eq!(reason(&taken.expect_err("taken")), "ACCOUNT_ALREADY_EXISTS");
    expected.push(("create-taken", "mtr-sso.request.refused.v1", Some("ACCOUNT_ALREADY_EXISTS"), None));

    let link = IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() };
    let issued = client.issue_one_time_token(request(link.clone(), signup, "link")).await.expect("link");
    secrets.push(issued.into_inner().login_link.expect("link").one_time_token);
    expected.push(("link", "mtr-sso.token.created.v1", None, Some("vendor")));
    let started = IssueOneTimeTokenRequest { start_session: true, ..link.clone() };
    let session = client.issue_one_time_token(request(started, signup, "link-session")).await.expect("session");
    let session = session.into_inner().session.expect("session");
    secrets.extend([session.access_token, session.refresh_token]);
    secrets.extend(session.cookies.into_iter().map(|c| c.value));
    expected.push(("link-session", "mtr-sso.session.created.v1", None, Some("vendor")));
    let nobody = IssueOneTimeTokenRequest { email: "nobody@example.com".into(), ..Default::default() };
    let missing = client.issue_one_time_token(request(nobody, signup, "link-nobody")).await;
    assert_eq!(reason(&missing.expect_err("unknown")), "ACCOUNT_NOT_FOUND");
    expected.push(("link-nobody", "mtr-sso.request.refused.v1", Some("ACCOUNT_NOT_FOUND"), None));

    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    let granted = client.login(request(login.clone(), signup, "login")).await.expect("login").into_inner();
    let session = granted.session.expect("session");
    secrets.extend([session.access_token.clone(), session.refresh_token.clone()]);
    secrets.extend(session.cookies.iter().map(|c| c.value.clone()));
    expected.push(("login", "mtr-sso.session.created.v1", None, Some("vendor")));
    let wrong = LoginRequest { password: WRONG_PASSWORD.into(), ..login.clone() };
    let refused = client.login(request(wrong, signup, "login-wrong")).await.expect_err("wrong password");
    assert_eq!(reason(&refused), "UPSTREAM_REJECTED_CREDENTIALS");
    expected.push(("login-wrong", "mtr-sso.authn.failed.v1", Some("UPSTREAM_REJECTED_CREDENTIALS"), None));
    let invalid = LoginRequest { email: String::new(), ..login.clone() };
    assert_eq!(
        reason(&client.login(request(invalid, signup, "login-invalid")).await.expect_err("invalid")),
        "INVALID_REQUEST"
    );
    expected.push(("login-invalid", "mtr-sso.request.refused.v1", Some("INVALID_REQUEST"), None));
    let elsewhere = LoginRequest { tenant: "nowhere".into(), ..login.clone() };
    assert_eq!(
        reason(&client.login(request(elsewhere, signup, "login-tenant")).await.expect_err("tenant")),
        "UNKNOWN_TENANT"
    );
    expected.push(("login-tenant", "mtr-sso.request.refused.v1", Some("UNKNOWN_TENANT"), None));

    let renew = RefreshRequest { refresh_token: session.refresh_token.clone(), ..Default::default() };
    let renewed = client.refresh(request(renew.clone(), signup, "refresh")).await.expect("refreshed").into_inner();
    let renewed = renewed.session.expect("session");
    secrets.extend([renewed.access_token, renewed.refresh_token]);
    expected.push(("refresh", "mtr-sso.session.refreshed.v1", None, Some("vendor")));
    client.refresh(request(renew, signup, "refresh-again")).await.expect("the same session, within the reuse window");
    expected.push(("refresh-again", "mtr-sso.session.refreshed.v1", None, Some("reuse_window")));
    let bogus = RefreshRequest { refresh_token: "never-issued-refresh-token".into(), ..Default::default() };
    secrets.push(bogus.refresh_token.clone());
    assert_eq!(
        reason(&client.refresh(request(bogus, signup, "refresh-bogus")).await.expect_err("bogus")),
        "REFRESH_TOKEN_INVALID"
    );
    expected.push(("refresh-bogus", "mtr-sso.authn.failed.v1", Some("REFRESH_TOKEN_INVALID"), None));

    // The caller: none, or one the policy refuses.
    let anonymous = client.login(request(login.clone(), None, "no-caller")).await.expect_err("no credentials");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    expected.push(("no-caller", "mtr-sso.caller.unauthenticated.v1", Some("CALLER_UNAUTHENTICATED"), None));
    let denied = client.issue_one_time_token(request(link, Some(CRM_TOKEN), "crm-link")).await.expect_err("policy");
    assert_eq!(denied.code(), Code::PermissionDenied);
    expected.push(("crm-link", "mtr-sso.caller.denied.v1", Some("CALLER_NOT_PERMITTED"), None));

    // JSON over HTTP: the same envelope, the same event.
    let http = reqwest::Client::new()
        .post(format!("http://{}/v1/sessions:login", gateway.addr))
        .bearer_auth(SIGNUP_TOKEN)
        .header("x-request-id", "json-login")
        .json(&serde_json::json!({ "email": DEMO_EMAIL, "password": DEMO_PASSWORD }))
        .send()
        .await
        .expect("JSON login");
    assert!(http.status().is_success(), "{}", http.status());
    let body: Value = http.json().await.expect("JSON answer");
    secrets.push(body["session"]["accessToken"].as_str().expect("access token").to_string());
    expected.push(("json-login", "mtr-sso.session.created.v1", None, Some("vendor")));

    // A caller that goes away mid-call: the vendor is slow, the client gives up.
    sandbox.set_switches(Switches { latency: Duration::from_millis(800), ..sandbox.switches() });
    let gave_up =
        tokio::time::timeout(Duration::from_millis(150), client.login(request(login, signup, "abandoned"))).await;
    assert!(gave_up.is_err(), "the client gave up first");
    sandbox.set_switches(Switches { latency: Duration::ZERO, ..sandbox.switches() });
    expected.push(("abandoned", "mtr-sso.request.refused.v1", None, None));

    let written = events(&path, expected.len() + 1);
    assert_eq!(written.len(), expected.len(), "one event per RPC: {written:#?}");
    for (step, event_type, why, obtained) in &expected {
        let matching: Vec<&Value> = written.iter().filter(|e| e["data"]["request_id"] == *step).collect();
        assert_eq!(matching.len(), 1, "exactly one event for {step}");
        let event = matching[0];
        assert_eq!(event["type"], *event_type, "{step}: {event}");
        assert_eq!(event["data"]["reason"].as_str(), *why, "{step}: {event}");
        assert_eq!(event["data"]["obtained"].as_str(), *obtained, "{step}: {event}");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["data"]["trace_id"].as_str().map(str::len), Some(32), "{step}");
    }
    let by_step = |step: &str| written.iter().find(|e| e["data"]["request_id"] == step).expect("event").clone();
    assert_eq!(by_step("abandoned")["data"]["outcome"], "abandoned");
    assert_eq!(by_step("login")["data"]["caller"], "signup");
    assert_eq!(by_step("no-caller")["data"]["caller"], Value::Null);
    assert_eq!(by_step("crm-link")["data"]["caller"], "crm");
    assert_eq!(by_step("crm-link")["data"]["tenant"], "default", "a refused caller's event names the tenant");
    assert_eq!(by_step("json-login")["data"]["protocol"], "http");
    assert_eq!(by_step("create")["data"]["minted"], serde_json::json!(["account", "login_link"]));
    assert!(by_step("create")["data"]["subject"]["account_uuid"].as_str().is_some_and(|u| !u.is_empty()));
    // The same email joins across events; another email does not.
    let hash = |step: &str| by_step(step)["data"]["subject"]["email_hmac"].clone();
    assert_eq!(hash("login"), hash("link"));
    assert_eq!(hash("login"), hash("login-wrong"));
    assert_ne!(hash("login"), hash("create"));

    let text = std::fs::read_to_string(&path).expect("audit file");
    secrets.retain(|s| !s.is_empty());
    let leaked = secrets.iter().filter(|secret| text.contains(secret.as_str())).count();
    assert_eq!(leaked, 0, "a secret reached the audit output");
    let emails = [DEMO_EMAIL, "audit.new@example.com", "nobody@example.com"];
    let in_clear = emails.iter().filter(|email| text.to_lowercase().contains(*email)).count();
    assert_eq!(in_clear, 0, "an email in clear reached the audit output");
    let metrics = gateway.metrics_text().await;
    let counted: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("mtr_sso_audit_events_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, expected.len() as u64, "every written event is counted");
    let types: std::collections::BTreeSet<&str> = written.iter().filter_map(|e| e["type"].as_str()).collect();
    println!(
        "figure: {} RPCs, {} audit events of {} types, {leaked} of {} secrets and {in_clear} of {} emails in the audit output",
        expected.len(),
        written.len(),
        types.len(),
        secrets.len(),
        emails.len()
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_refuses_writes_fails_grants_only_when_closed_and_the_loss_is_counted() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let full = PathBuf::from("/dev/full");
    let login = || LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };

    let closed = gateway(&sandbox, &full, |settings| settings.audit.on_failure = AuditOnFailure::Closed).await;
    let withheld = closed.client.clone().login(login()).await.expect_err("no answer without its record");
    assert_eq!((withheld.code(), reason(&withheld).as_str()), (Code::Unavailable, "AUDIT_UNAVAILABLE"));
    let wrong = LoginRequest { password: WRONG_PASSWORD.into(), ..login() };
    let refused = closed.client.clone().login(wrong).await.expect_err("refused");
    assert_eq!(reason(&refused), "UPSTREAM_REJECTED_CREDENTIALS", "a refusal keeps its own reason");
    let metrics = closed.metrics_text().await;
    assert!(metrics.contains("mtr_sso_audit_events_lost_total{cause=\"write_failed\"} 2"), "{metrics}");
    assert!(metrics.contains("reason=\"AUDIT_UNAVAILABLE\"} 1"), "{metrics}");

    let open = gateway(&sandbox, &full, |settings| settings.audit.on_failure = AuditOnFailure::Open).await;
    open.client.clone().login(login()).await.expect("fail-open answers");
    let until = Instant::now() + Duration::from_secs(3);
    while !open.metrics_text().await.contains("mtr_sso_audit_events_lost_total{cause=\"write_failed\"} 1") {
        assert!(Instant::now() < until, "the lost event is counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_in_clear_are_opt_in_and_a_hostile_one_stays_inside_its_line() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let path = audit_path("clear");
    let gateway = gateway(&sandbox, &path, |settings| settings.audit.emails_in_clear = true).await;
    let hostile = "a@b.co\n{\"type\":\"mtr-sso.session.created.v1\"}\"";
    let login = LoginRequest { email: hostile.into(), password: "x".into(), ..Default::default() };
    let refused = gateway.client.clone().login(login).await.expect_err("invalid email");
    assert_eq!(reason(&refused), "INVALID_REQUEST");
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    gateway.client.clone().login(login).await.expect("login");
    let written = events(&path, 2);
    assert_eq!(written.len(), 2, "two RPCs, two lines: {written:#?}");
    assert_eq!(written[0]["type"], "mtr-sso.request.refused.v1");
    assert_eq!(written[0]["data"]["subject"]["email"], hostile);
    assert_eq!(written[1]["data"]["subject"]["email"], DEMO_EMAIL);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn by_default_the_binary_writes_events_to_stdout_marked_apart_from_its_log() {
    let running = common::Running::start(&["--sandbox", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    running.wait_for("random key"); // without --audit-email-key-file, said at start
    let addr = running.grpc_addr();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = SsoServiceClient::new(common::channel(addr).await);
        let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
        client.login(login).await.expect("login");
    });
    let (line, seen) = running.wait_for("\"audience\":\"audit\"");
    let event: Value = serde_json::from_str(&line).expect("a JSON event");
    assert_eq!(event["type"], "mtr-sso.session.created.v1");
    assert!(!line.contains(DEMO_EMAIL) && !line.contains(DEMO_PASSWORD), "{line}");
    let log: Vec<Value> = seen.iter().map(|l| serde_json::from_str(l).expect("JSON log line")).collect();
    assert!(log.iter().all(|l| l.get("audience").is_none()), "log lines carry no audience");
}
