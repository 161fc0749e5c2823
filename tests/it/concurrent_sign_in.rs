//! Sign-in under concurrency, against the sandbox (which rotates refresh
//! tokens and voids a one-time token when a newer one is issued, as the
//! vendor does): concurrent Refresh calls with one token make one vendor call
//! and all get the same session, a repeat inside the reuse window gets it
//! again, after the window the platform's refusal comes through; concurrent
//! identical IssueOneTimeToken calls make one vendor call and share a link
//! that signs in. The figures in RELIABILITY.md come from these tests.

use crate::common;
use common::{Gateway, reason, spawn_app};
use mtr_sso::{
    proto::{IssueOneTimeTokenRequest, LoginRequest, RefreshRequest, Session},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, Sandbox, SandboxOptions},
};
use std::time::{Duration, Instant};
use tonic::Code;

/// The sandbox and a gateway on it whose refresh reuse window is `window`.
async fn start(window: Duration) -> (Sandbox, Gateway) {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let mut settings = common::settings(vec![sandbox.tenant_settings("default")], Duration::from_secs(5));
    settings.refresh_reuse_window = window;
    (sandbox, spawn_app(settings).await)
}

async fn demo_session(gateway: &mut Gateway) -> Session {
    let login = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    gateway.client.login(login).await.expect("login").into_inner().session.expect("session")
}

fn refresh(token: &str) -> RefreshRequest {
    RefreshRequest { refresh_token: token.into(), ..Default::default() }
}

fn vendor_calls(sandbox: &Sandbox, endpoint: &str) -> u64 {
    sandbox.stats().get(endpoint).copied().unwrap_or(0)
}

/// The value of the saved-calls counter for `endpoint` and `how`.
async fn saved(gateway: &Gateway, endpoint: &str, how: &str) -> u64 {
    let text = gateway.metrics_text().await;
    let series =
        format!("mtr_sso_upstream_calls_saved_total{{tenant=\"default\",endpoint=\"{endpoint}\",how=\"{how}\"}}");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().expect("a count"))
        .unwrap_or(0)
}

#[tokio::test]
async fn fifty_concurrent_refreshes_with_one_token_make_one_vendor_call_and_all_get_the_same_session() {
    let (sandbox, mut gateway) = start(Duration::from_secs(10)).await;
    let session = demo_session(&mut gateway).await;

    let started = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let mut client = gateway.client.clone();
            let token = session.refresh_token.clone();
            tokio::spawn(async move { client.refresh(refresh(&token)).await })
        })
        .collect();
    let mut sessions = Vec::new();
    for call in calls {
        sessions
            .push(call.await.expect("task").expect("every call is answered OK").into_inner().session.expect("session"));
    }
    let elapsed = started.elapsed();

    assert_eq!(vendor_calls(&sandbox, "refresh"), 1, "the vendor saw one refresh");
    let first = &sessions[0];
    assert_ne!(first.refresh_token, session.refresh_token, "the token rotated");
    assert!(sessions.iter().all(|s| s.access_token == first.access_token && s.refresh_token == first.refresh_token));
    assert_eq!(saved(&gateway, "refresh", "coalesced").await, 49, "49 callers shared the one call");
    gateway.client.refresh(refresh(&first.refresh_token)).await.expect("the shared new token works");
    eprintln!("figure: 50 concurrent Refresh, one token: 50 OK, 1 vendor call, 1 distinct session, {elapsed:?}");
}

#[tokio::test]
async fn a_repeat_inside_the_window_gets_the_same_session_and_after_it_the_platform_refusal() {
    let window = Duration::from_millis(600);
    let (sandbox, mut gateway) = start(window).await;
    let session = demo_session(&mut gateway).await;

    let renewed = gateway.client.refresh(refresh(&session.refresh_token)).await.expect("refreshed").into_inner();
    let repeated = gateway.client.refresh(refresh(&session.refresh_token)).await.expect("in the window").into_inner();
    assert_eq!(renewed.session.expect("session").access_token, repeated.session.expect("session").access_token);
    assert_eq!(vendor_calls(&sandbox, "refresh"), 1);
    assert_eq!(saved(&gateway, "refresh", "reused").await, 1);

    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let status = gateway.client.refresh(refresh(&session.refresh_token)).await.expect_err("after the window");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::Unauthenticated, "REFRESH_TOKEN_INVALID"));
    assert_eq!(vendor_calls(&sandbox, "refresh"), 2, "after the window the vendor is asked again, and refuses");
    eprintln!(
        "figure: window {window:?}: a repeat inside it got the same session (1 vendor call); after it, REFRESH_TOKEN_INVALID"
    );
}

#[tokio::test]
async fn a_refusal_is_shared_by_concurrent_callers_and_not_remembered() {
    let (sandbox, gateway) = start(Duration::from_secs(10)).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut client = gateway.client.clone();
            tokio::spawn(async move { client.refresh(refresh("never-issued")).await })
        })
        .collect();
    for call in calls {
        let status = call.await.expect("task").expect_err("refused");
        assert_eq!(reason(&status), "REFRESH_TOKEN_INVALID");
    }
    assert_eq!(vendor_calls(&sandbox, "refresh"), 1, "the refusal was shared");
    let mut client = gateway.client.clone();
    client.refresh(refresh("never-issued")).await.expect_err("refused again");
    assert_eq!(vendor_calls(&sandbox, "refresh"), 2, "a refusal is not remembered");
}

#[tokio::test]
async fn with_the_window_at_zero_a_repeat_is_refused_as_the_platform_refuses_it() {
    let (sandbox, mut gateway) = start(Duration::ZERO).await;
    let session = demo_session(&mut gateway).await;
    gateway.client.refresh(refresh(&session.refresh_token)).await.expect("refreshed");
    let status = gateway.client.refresh(refresh(&session.refresh_token)).await.expect_err("spent");
    assert_eq!(reason(&status), "REFRESH_TOKEN_INVALID");
    assert_eq!(vendor_calls(&sandbox, "refresh"), 2);
}

#[tokio::test]
async fn twenty_concurrent_link_requests_for_one_email_make_one_vendor_call_and_the_link_signs_in() {
    let (sandbox, gateway) = start(Duration::from_secs(10)).await;
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let mut client = gateway.client.clone();
            // The same email, written in two ways: emails are compared without case.
            let email = if n % 2 == 0 { DEMO_EMAIL.to_string() } else { DEMO_EMAIL.to_uppercase() };
            tokio::spawn(async move {
                client.issue_one_time_token(IssueOneTimeTokenRequest { email, ..Default::default() }).await
            })
        })
        .collect();
    let mut links = Vec::new();
    for call in calls {
        let answer = call.await.expect("task").expect("every call is answered OK").into_inner();
        links.push(answer.login_link.expect("a link"));
    }
    let elapsed = started.elapsed();
    assert_eq!(vendor_calls(&sandbox, "issue_one_time_token"), 1, "the vendor issued one token");
    assert!(links.iter().all(|link| link.redirect_url == links[0].redirect_url), "every caller got the same link");
    assert_eq!(saved(&gateway, "issue_one_time_token", "coalesced").await, 19);

    // No newer token voided it: the link every caller holds signs in at the landing page.
    let browser = reqwest::Client::builder().cookie_store(true).build().expect("browser");
    let page = browser.get(&links[0].redirect_url).send().await.expect("open the link");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("page").contains(&format!("Signed in as <span id=\"user\">{DEMO_EMAIL}")));

    // Nothing is remembered once the call ended: a later click gets a new token.
    let mut client = gateway.client.clone();
    let later = IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() };
    let later = client.issue_one_time_token(later).await.expect("issued").into_inner().login_link.expect("link");
    assert_ne!(later.one_time_token, links[0].one_time_token);
    assert_eq!(vendor_calls(&sandbox, "issue_one_time_token"), 2);
    eprintln!(
        "figure: 20 concurrent IssueOneTimeToken, one email: 20 OK, 1 vendor call, 1 link, it signs in; {elapsed:?}"
    );
}

#[tokio::test]
async fn requests_for_another_validity_are_not_shared() {
    let (sandbox, gateway) = start(Duration::from_secs(10)).await;
    let request = |seconds: i64| IssueOneTimeTokenRequest {
        email: DEMO_EMAIL.into(),
        validity: Some(prost_types::Duration { seconds, nanos: 0 }),
        ..Default::default()
    };
    let (mut a, mut b) = (gateway.client.clone(), gateway.client.clone());
    let (first, second) = tokio::join!(a.issue_one_time_token(request(60)), b.issue_one_time_token(request(120)));
    assert!(first.is_ok() && second.is_ok());
    assert_eq!(vendor_calls(&sandbox, "issue_one_time_token"), 2);
}
