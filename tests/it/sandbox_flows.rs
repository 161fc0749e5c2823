//! The seed scenarios end to end: the gateway in sandbox mode, called through
//! the generated client, with the sandbox emulating the vendor over real HTTP.

use crate::common;
use common::{browser, new_account, reason, spawn_gateway, spawn_sandbox_gateway};
use mtr_sso::{
    proto::{CreateAccountRequest, IssueOneTimeTokenRequest, LoginRequest, RefreshRequest},
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, Sandbox, SandboxOptions, Switches},
};
use std::time::Duration;
use tonic::Code;

/// The platform's root, from a login link (`{root}/?auth=…`).
fn gateway_sandbox_root(redirect_url: &str) -> &str {
    redirect_url.split("?auth=").next().expect("a link")
}

#[tokio::test]
async fn new_user_gets_a_login_link_that_logs_in_once_and_only_once() {
    let (_sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let response =
        gateway.client.create_account(new_account("new.user@example.com")).await.expect("created").into_inner();
    let link = response.login_link.expect("link");

    let first = browser().get(&link.redirect_url).send().await.expect("open link");
    assert_eq!(first.status(), 200);
    assert!(first.text().await.expect("page").contains("Signed in as <span id=\"user\">new.user@example.com</span>"));

    let second = browser().get(&link.redirect_url).send().await.expect("open link again");
    assert_eq!(second.status(), 401, "a one-time token works once");
    let page = second.text().await.expect("page");
    assert!(page.contains("already used") && !page.contains("expired"), "says which: {page}");
}

#[tokio::test]
async fn following_the_redirect_url_ends_with_the_session_cookie_the_platform_set() {
    use reqwest::cookie::CookieStore as _;
    let (sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let response = gateway
        .client
        .issue_one_time_token(IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() })
        .await
        .expect("issued")
        .into_inner();
    let link = response.login_link.expect("link");
    assert!(link.redirect_url.starts_with(sandbox.base_url().as_str().trim_end_matches('/')));

    // A browser-like client with a cookie jar; redirects followed by hand so
    // the landing's own Set-Cookie can be compared with what the jar keeps.
    mtr_sso::upstream::install_crypto_provider();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let landing = client.get(&link.redirect_url).send().await.expect("landing");
    assert_eq!(landing.status(), 303);
    let set_by_platform = landing
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("co-auth="))
        .and_then(|c| c.split(';').next())
        .expect("the platform set co-auth")
        .to_string();
    let location = landing.headers().get("location").and_then(|v| v.to_str().ok()).expect("location").to_string();
    let app_url = sandbox.base_url().join(&location).expect("url");
    let page = client.get(app_url.clone()).send().await.expect("app");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("page").contains(DEMO_EMAIL));

    let in_jar = jar.cookies(&app_url).expect("the jar holds cookies for the platform");
    let in_jar = in_jar.to_str().expect("ascii");
    assert!(in_jar.contains(&format!("co-auth={set_by_platform}")), "jar has {in_jar}");
}

#[tokio::test]
async fn a_new_user_with_start_session_gets_a_live_session_whose_cookie_opens_the_platform_on_every_generation() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let tenants = sandbox.served_tenants();
    let mut gateway = spawn_gateway(tenants.clone(), Duration::from_secs(5)).await;
    for tenant in tenants {
        let email = format!("session.user@{}.example.com", tenant.name);
        let request = CreateAccountRequest { tenant: tenant.name.clone(), start_session: true, ..new_account(&email) };
        let response = gateway.client.create_account(request).await.expect("created").into_inner();
        assert!(response.login_link.is_none(), "{}", tenant.name);
        let session = response.session.expect("session");
        let cookie = session.cookies.iter().find(|c| c.name == "co-auth").expect("co-auth");
        let page = browser()
            .get(sandbox.base_url().join("/app").expect("url"))
            .header("cookie", format!("co-auth={}", cookie.value))
            .send()
            .await
            .expect("app");
        assert_eq!(page.status(), 200, "{}", tenant.name);
        assert!(page.text().await.expect("page").contains(&email), "{}", tenant.name);
    }
}

#[tokio::test]
async fn existing_user_logs_in_refreshes_and_a_repeat_with_the_spent_token_gets_the_same_session() {
    let (_sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let login = gateway
        .client
        .login(LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() })
        .await
        .expect("login")
        .into_inner();
    let first = login.session.expect("session");
    assert_eq!(login.trading_accounts.len(), 1);
    assert_eq!(first.cookies.iter().filter(|c| c.name == "rt").count(), 2, "both path-scoped rt cookies are handed on");

    let refresh = |token: String| RefreshRequest { refresh_token: token, ..Default::default() };
    let second = gateway.client.refresh(refresh(first.refresh_token.clone())).await.expect("refresh").into_inner();
    let second = second.session.expect("session");
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token, "rotated");

    // The platform has voided the first token; inside the reuse window its repeat gets the same session.
    let repeat = gateway.client.refresh(refresh(first.refresh_token)).await.expect("a repeat in the window");
    assert_eq!(repeat.into_inner().session.expect("session").access_token, second.access_token);
    gateway.client.refresh(refresh(second.refresh_token)).await.expect("the rotated one works");
}

#[tokio::test]
async fn the_access_token_sent_as_the_refresh_token_is_refused_before_any_vendor_call() {
    let (sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let login = gateway
        .client
        .login(LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() })
        .await
        .expect("login")
        .into_inner();
    let session = login.session.expect("session");
    let mixed_up = RefreshRequest { refresh_token: session.access_token.clone(), ..Default::default() };
    let status = gateway.client.refresh(mixed_up).await.expect_err("an access token does not refresh");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "INVALID_REQUEST"));
    assert!(status.message().contains("session.refresh_token"), "{status:?}");
    assert!(!status.message().contains(&session.access_token), "the token is never echoed");
    assert_eq!(sandbox.stats().get("refresh").copied().unwrap_or(0), 0, "the vendor saw no refresh");
    let right = RefreshRequest { refresh_token: session.refresh_token, ..Default::default() };
    gateway.client.refresh(right).await.expect("the refresh token itself works");
    assert_eq!(sandbox.stats().get("refresh").copied(), Some(1));
}

#[tokio::test]
async fn login_on_an_older_platform_shape_still_lists_trading_accounts() {
    let (sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    sandbox.set_switches(Switches { legacy_login_shape: true, ..sandbox.switches() });
    let login = gateway
        .client
        .login(LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() })
        .await
        .expect("login")
        .into_inner();
    assert_eq!(login.trading_accounts.len(), 1);
    assert!(login.selected_trading_account.is_some());
}

#[tokio::test]
async fn one_time_tokens_expire_and_a_newer_one_voids_the_older() {
    let (_sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let issue = |seconds: i64| IssueOneTimeTokenRequest {
        email: DEMO_EMAIL.into(),
        validity: Some(prost_types::Duration { seconds, nanos: 0 }),
        ..Default::default()
    };
    // Expired.
    let short =
        gateway.client.issue_one_time_token(issue(1)).await.expect("issued").into_inner().login_link.expect("link");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = browser().get(&short.redirect_url).send().await.expect("open");
    assert_eq!(expired.status(), 401);
    assert!(expired.text().await.expect("page").contains("has expired"));
    // Regenerated: the first (1 hour) is void once a second (15 minutes) exists.
    let long =
        gateway.client.issue_one_time_token(issue(3600)).await.expect("issued").into_inner().login_link.expect("link");
    let newer =
        gateway.client.issue_one_time_token(issue(900)).await.expect("issued").into_inner().login_link.expect("link");
    let voided = browser().get(&long.redirect_url).send().await.expect("open");
    assert_eq!(voided.status(), 401);
    assert!(voided.text().await.expect("page").contains("replaced by a newer one"));
    assert_eq!(browser().get(&newer.redirect_url).send().await.expect("open").status(), 200);
    let unknown = browser().get(format!("{}?auth=never-issued", gateway_sandbox_root(&newer.redirect_url))).send();
    assert!(unknown.await.expect("open").text().await.expect("page").contains("token is unknown"));
    // Valid, redeemed server-side.
    let session = gateway
        .client
        .issue_one_time_token(IssueOneTimeTokenRequest { start_session: true, ..issue(30) })
        .await
        .expect("session")
        .into_inner()
        .session
        .expect("session");
    assert!(!session.access_token.is_empty());
}

#[tokio::test]
async fn every_sandbox_error_path_arrives_as_the_right_code_and_reason() {
    let (sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let login = |password: &str, broker_id: &str| LoginRequest {
        email: DEMO_EMAIL.into(),
        password: password.into(),
        broker_id: broker_id.into(),
        ..Default::default()
    };
    let status = gateway.client.login(login("wrong", "")).await.expect_err("wrong password");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::Unauthenticated, "UPSTREAM_REJECTED_CREDENTIALS"));
    let status = gateway.client.login(login(DEMO_PASSWORD, "999")).await.expect_err("unknown broker");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::Unauthenticated, "UPSTREAM_REJECTED_CREDENTIALS"));

    let status = gateway.client.create_account(new_account(DEMO_EMAIL)).await.expect_err("duplicate");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::AlreadyExists, "ACCOUNT_ALREADY_EXISTS"));

    let unknown = IssueOneTimeTokenRequest { email: "nobody@example.com".into(), ..Default::default() };
    let status = gateway.client.issue_one_time_token(unknown).await.expect_err("unknown user");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::NotFound, "ACCOUNT_NOT_FOUND"));

    sandbox.set_switches(Switches { rate_limit_per_minute: 1, ..sandbox.switches() });
    let ask = || IssueOneTimeTokenRequest { email: DEMO_EMAIL.into(), ..Default::default() };
    let mut limited = None;
    for _ in 0..3 {
        if let Err(status) = gateway.client.issue_one_time_token(ask()).await {
            limited = Some(status);
            break;
        }
    }
    let status = limited.expect("the limit is reached");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::ResourceExhausted, "UPSTREAM_RATE_LIMITED"));
}

#[tokio::test]
async fn sandbox_faults_map_to_unavailable_and_protocol_errors() {
    use mtr_sso::sandbox::FaultKind;
    let (sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let login = || LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    for (fault, code, expected) in [
        (FaultKind::ServerError, Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
        (FaultKind::Reset, Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
        (FaultKind::MalformedBody, Code::Internal, "UPSTREAM_PROTOCOL_ERROR"),
    ] {
        sandbox.set_switches(Switches { fault, ..Switches::default() });
        let status = gateway.client.login(login()).await.expect_err("fault");
        assert_eq!((status.code(), reason(&status).as_str()), (code, expected), "{fault:?}");
    }
    sandbox.set_switches(Switches { fault: FaultKind::Hang, ..Switches::default() });
    let status =
        gateway.client.login(common::with_deadline(login(), Duration::from_millis(300))).await.expect_err("hang");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    sandbox.set_switches(Switches::default());
    gateway.client.login(login()).await.expect("healthy again");
}
