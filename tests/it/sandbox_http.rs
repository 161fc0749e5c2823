//! The sandbox as an HTTP server, called directly: it must behave like the
//! vendor (validation, Problem bodies, key schemes, rate limit, cookies) so
//! that everything tested against it means something.

use mtr_sso::sandbox::{
    BROKER_API_V2_PREFIX, CRM_API_PREFIX, DEMO_EMAIL, DEMO_PASSWORD, SANDBOX_API_KEY, SANDBOX_V2_API_KEY, Sandbox,
    SandboxOptions, Switches,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    mtr_sso::upstream::install_crypto_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).await.expect("sandbox")
}

fn account(email: &str) -> Value {
    json!({"email": email, "password": "pw-123", "personalDetails": {"firstname": "A", "lastname": "B"}})
}

async fn post(sandbox: &Sandbox, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = client().post(sandbox.base_url().join(path).expect("url")).json(body);
    if let Some(key) = key {
        request = request.header("authorization", key);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn create_account_accepts_the_raw_and_the_bearer_key_and_refuses_others() {
    let sandbox = sandbox().await;
    let ok = post(&sandbox, "/v1/accounts", Some(SANDBOX_API_KEY), &account("raw@example.com")).await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.expect("json");
    assert!(body["uuid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(body["oneTimeToken"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(body["verificationStatus"], "NEW");
    assert!(body.get("password").is_none(), "the password is never echoed");

    let bearer = format!("Bearer {SANDBOX_API_KEY}");
    assert_eq!(post(&sandbox, "/v1/accounts", Some(&bearer), &account("bearer@example.com")).await.status(), 200);
    let refused = post(&sandbox, "/v1/accounts", Some("wrong"), &account("x@example.com")).await;
    assert_eq!(refused.status(), 401);
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["status"], 401);
    for field in ["title", "detail", "path", "timestamp"] {
        assert!(problem[field].is_string(), "problem has {field}");
    }
    assert_eq!(post(&sandbox, "/v1/accounts", None, &account("y@example.com")).await.status(), 401);
}

#[tokio::test]
async fn create_account_refuses_nulls_empties_missing_fields_bad_emails_and_duplicates() {
    let sandbox = sandbox().await;
    let key = Some(SANDBOX_API_KEY);
    let mut with_null = account("n@example.com");
    with_null["offerUuid"] = Value::Null;
    let mut with_empty = account("e@example.com");
    with_empty["personalDetails"]["citizenship"] = json!("");
    for (body, hint) in [
        (with_null, "offerUuid"),
        (with_empty, "personalDetails.citizenship"),
        (json!({"email": "m@example.com", "password": "pw"}), "required"),
        (account("not-an-email"), "email"),
    ] {
        let answer = post(&sandbox, "/v1/accounts", key, &body).await;
        assert_eq!(answer.status(), 400, "{body}");
        let problem: Value = answer.json().await.expect("problem");
        assert!(problem["detail"].as_str().expect("detail").contains(hint), "{problem}");
    }
    let duplicate = post(&sandbox, "/v1/accounts", key, &account(DEMO_EMAIL)).await;
    assert_eq!(duplicate.status(), 409);
}

#[tokio::test]
async fn problem_bodies_name_the_path_the_caller_sent_nested_prefix_included() {
    let sandbox = sandbox().await;
    let token = json!({"email": DEMO_EMAIL, "validityTime": 30});
    for (path, key) in [
        ("/v1/one-time-token".to_string(), "wrong"),
        (format!("{CRM_API_PREFIX}/v1/one-time-token"), "wrong"),
        (format!("{CRM_API_PREFIX}/v1/offers"), "wrong"),
        (format!("{BROKER_API_V2_PREFIX}/v1/one-time-token"), SANDBOX_API_KEY),
    ] {
        let refused = post(&sandbox, &path, Some(key), &token).await;
        assert_eq!(refused.status(), 401, "{path}");
        let problem: Value = refused.json().await.expect("problem");
        assert_eq!(problem["path"], path.as_str(), "{path}");
    }
    // Refusals from the handlers themselves (not the key check) name it too.
    let crm_body = format!("{CRM_API_PREFIX}/v1/accounts");
    let not_an_object = post(&sandbox, &crm_body, Some(SANDBOX_API_KEY), &json!([1])).await;
    assert_eq!(not_an_object.status(), 400);
    let problem: Value = not_an_object.json().await.expect("problem");
    assert_eq!(
        (problem["path"].as_str(), problem["detail"].as_str()),
        (Some(crm_body.as_str()), Some("Body must be a JSON object"))
    );
}

#[tokio::test]
async fn the_v2_one_time_token_refuses_a_missing_email_as_its_refusal_says() {
    let sandbox = sandbox().await;
    let path = format!("{BROKER_API_V2_PREFIX}/v1/one-time-token");
    let bearer = format!("Bearer {SANDBOX_V2_API_KEY}");
    for body in [json!({"validityTime": 30}), json!({"email": "", "validityTime": 30}), json!({"email": DEMO_EMAIL})] {
        let refused = post(&sandbox, &path, Some(&bearer), &body).await;
        assert_eq!(refused.status(), 400, "{body}");
        let problem: Value = refused.json().await.expect("problem");
        assert_eq!(problem["detail"], "email and a positive validityTime are required", "{body}");
    }
    let issued = post(&sandbox, &path, Some(&bearer), &json!({"email": DEMO_EMAIL, "validityTime": 30})).await;
    assert_eq!(issued.status(), 200);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_and_is_a_setting() {
    let sandbox = sandbox().await;
    sandbox.set_switches(Switches { rate_limit_per_minute: 3, ..Switches::default() });
    let body = json!({"email": DEMO_EMAIL, "validityTime": 30});
    let first_sent = Instant::now();
    for _ in 0..3 {
        assert_eq!(post(&sandbox, "/v1/one-time-token", Some(SANDBOX_API_KEY), &body).await.status(), 200);
    }
    let limited = post(&sandbox, "/v1/one-time-token", Some(SANDBOX_API_KEY), &body).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    // A sliding minute: the wait ends when the first request leaves it.
    let earliest = 60 - first_sent.elapsed().as_secs().min(59);
    assert!((earliest..=60).contains(&wait), "Retry-After {wait}, expected {earliest}..=60");
    sandbox.set_switches(Switches { rate_limit_per_minute: 0, ..Switches::default() });
    for _ in 0..50 {
        assert_eq!(post(&sandbox, "/v1/one-time-token", Some(SANDBOX_API_KEY), &body).await.status(), 200);
    }
}

#[tokio::test]
async fn the_arrivals_endpoint_lists_every_rate_limited_request_and_a_shortened_window_frees_slots_sooner() {
    let sandbox = sandbox().await;
    let window = Duration::from_millis(600);
    sandbox.set_switches(Switches { rate_limit_per_minute: 2, rate_limit_window: window, ..Switches::default() });
    let body = json!({"email": DEMO_EMAIL, "validityTime": 30});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(post(&sandbox, "/v1/one-time-token", Some(SANDBOX_API_KEY), &body).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    // A window after the last of them, both accepted requests have left it.
    tokio::time::sleep(window).await;
    assert_eq!(post(&sandbox, "/v1/one-time-token", Some(SANDBOX_API_KEY), &body).await.status(), 200);

    let url = sandbox.base_url().join("/_sandbox/arrivals").expect("url");
    let arrivals: Value = client().get(url).send().await.expect("request").json().await.expect("json");
    let seen = arrivals["broker-api"].as_array().expect("the Broker-API's arrivals");
    let refused: Vec<bool> = seen.iter().map(|a| a["refused"].as_bool().expect("refused")).collect();
    assert_eq!(refused, [false, false, true, false]);
    let at_us: Vec<u64> = seen.iter().map(|a| a["at_us"].as_u64().expect("at_us")).collect();
    assert!(at_us.windows(2).all(|pair| pair[0] <= pair[1]), "oldest first: {at_us:?}");
    assert!(at_us[3] - at_us[0] >= 600_000, "the fourth came a window after the first: {at_us:?}");
    assert_eq!(sandbox.arrivals()["broker-api"].len(), 4, "the same record in process");
    assert!(!arrivals.to_string().contains(SANDBOX_API_KEY), "APIs are named, keys are not");
}

#[tokio::test]
async fn login_sets_co_auth_and_two_path_scoped_rt_cookies_and_refresh_answers_with_cookies_only() {
    let sandbox = sandbox().await;
    let login = post(
        &sandbox,
        "/manager/mtr-login",
        None,
        &json!({"email": DEMO_EMAIL, "password": DEMO_PASSWORD, "brokerId": mtr_sso::sandbox::DEMO_BROKER_ID}),
    )
    .await;
    assert_eq!(login.status(), 200);
    let cookies: Vec<String> =
        login.headers().get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii").into()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("co-auth=") && c.contains("Max-Age=900")));
    let refresh_rt =
        cookies.iter().find(|c| c.starts_with("rt=") && c.contains("Path=/manager/refresh-token")).expect("rt");
    let backend_rt =
        cookies.iter().find(|c| c.starts_with("rt=") && c.contains("Path=/mtr-backend")).expect("second rt");
    let value = |c: &str| c.trim_start_matches("rt=").split(';').next().expect("value").to_string();
    let body: Value = login.json().await.expect("json");
    assert!(body["tradingAccounts"].as_array().is_some_and(|a| !a.is_empty()));

    let refresh = |rt: String| {
        client()
            .post(sandbox.base_url().join("/manager/refresh-token").expect("url"))
            .header("cookie", format!("rt={rt}"))
            .send()
    };
    assert_eq!(
        refresh(value(backend_rt)).await.expect("refresh").status(),
        401,
        "the backend-path rt does not refresh"
    );
    let renewed = refresh(value(refresh_rt)).await.expect("refresh");
    assert_eq!(renewed.status(), 200);
    assert_eq!(renewed.headers().get_all("set-cookie").iter().count(), 3);
    assert!(renewed.bytes().await.expect("body").is_empty(), "the quirk: an empty body");
    assert_eq!(refresh(value(refresh_rt)).await.expect("refresh").status(), 401, "the old rt is void");
}

#[tokio::test]
async fn latency_and_faults_are_off_by_default_and_switchable_over_http() {
    let sandbox = sandbox().await;
    let switches_url = sandbox.base_url().join("/_sandbox/switches").expect("url");
    let current: Switches = client().get(switches_url.clone()).send().await.expect("get").json().await.expect("json");
    assert_eq!(current, Switches::default());

    let slow = json!({"latency": 200, "fault": "server_error", "fault_path_prefix": "/manager"});
    client().put(switches_url).json(&slow).send().await.expect("put");
    let started = Instant::now();
    let info = client()
        .get(sandbox.base_url().join("/service-info").expect("url"))
        .header("authorization", SANDBOX_API_KEY)
        .send()
        .await
        .expect("info");
    assert_eq!(info.status(), 200, "the fault only hits its path prefix");
    assert!(started.elapsed() >= Duration::from_millis(200), "latency applies everywhere");
    let login = post(&sandbox, "/manager/mtr-login", None, &json!({})).await;
    assert_eq!(login.status(), 503);
    let stats: Value = client()
        .get(sandbox.base_url().join("/_sandbox/stats").expect("url"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["requests"]["fault"], 1);
    assert_eq!(stats["accounts"], 1, "the demo user");
}
