//! JSON over HTTP, black-box: every RPC through its `google.api.http` route
//! on the gRPC port, against the sandbox, in protobuf's JSON mapping; errors
//! as `google.rpc.Status` with the standard HTTP status; refusals before the
//! service (content type, size, malformed JSON, unknown fields) reach no
//! vendor; metrics tell the two doors apart; callers authenticate as on gRPC.

use crate::common;
use common::{spawn_app, spawn_sandbox_gateway};
use mtr_sso::{
    auth::CallerAuth,
    proto::LoginRequest,
    sandbox::{DEMO_EMAIL, DEMO_PASSWORD, Sandbox, SandboxOptions},
};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};

fn client() -> reqwest::Client {
    mtr_sso::upstream::install_crypto_provider();
    reqwest::Client::new()
}

/// POSTs `body` as JSON to `path`; returns the HTTP status and the JSON answer.
async fn post(addr: std::net::SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let response = client().post(format!("http://{addr}{path}")).json(&body).send().await.expect("an answer");
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_string();
    assert_eq!(content_type, "application/json", "{path} answers JSON");
    (status, response.json().await.expect("a JSON body"))
}

fn demo_login() -> Value {
    json!({ "email": DEMO_EMAIL, "password": DEMO_PASSWORD })
}

#[tokio::test]
async fn every_rpc_answers_json_in_the_canonical_mapping() {
    let (_sandbox, gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let addr = gateway.addr;

    let (status, login) = post(addr, "/v1/sessions:login", demo_login()).await;
    assert_eq!(status, 200, "{login}");
    let session = &login["session"];
    assert!(session["accessToken"].as_str().is_some_and(|t| !t.is_empty()), "lowerCamelCase names: {login}");
    let expires = session["expiresAt"].as_str().expect("a timestamp");
    assert!(time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).is_ok(), "{expires}");
    let cookie = &session["cookies"][0];
    assert!(cookie["maxAge"].as_str().is_some_and(|age| age.ends_with('s')), "Duration as \"900s\": {cookie}");
    assert!(cookie["sameSite"].as_str().is_some_and(|s| s.starts_with("SAME_SITE_")), "enums by name: {cookie}");

    let refresh_token = session["refreshToken"].as_str().expect("a refresh token");
    let (status, refreshed) = post(addr, "/v1/sessions:refresh", json!({ "refreshToken": refresh_token })).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_ne!(refreshed["session"]["refreshToken"], session["refreshToken"], "rotated");

    let (status, issued) =
        post(addr, "/v1/oneTimeTokens:issue", json!({ "email": DEMO_EMAIL, "validity": "120s" })).await;
    assert_eq!(status, 200, "{issued}");
    assert!(issued["loginLink"]["redirectUrl"].as_str().is_some_and(|url| url.contains("auth=")), "{issued}");

    let account = json!({
        "email": "json.caller@example.com",
        "password": "S3cret-pass!",
        "clientType": "CLIENT_TYPE_RETAIL",
        "personalDetails": { "firstname": "Ada", "lastname": "Lovelace" },
        "accountConfiguration": { "partnerId": "42" },
    });
    let (status, created) = post(addr, "/v1/accounts", account).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["account"]["email"], "json.caller@example.com");
    assert!(created["loginLink"]["oneTimeToken"].is_string(), "{created}");
}

#[tokio::test]
async fn service_errors_are_google_rpc_status_with_the_http_status_of_their_code() {
    let (_sandbox, gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let addr = gateway.addr;

    let (status, body) = post(addr, "/v1/sessions:login", json!({ "email": DEMO_EMAIL, "password": "wrong" })).await;
    assert_eq!((status, common::json_reason(&body)), (401, "UPSTREAM_REJECTED_CREDENTIALS"), "{body}");
    assert_eq!(body["code"], 16);
    assert_eq!(body["details"][0]["domain"], "mtr-sso");

    let (status, body) = post(addr, "/v1/sessions:refresh", json!({ "refreshToken": "not-a-token" })).await;
    assert_eq!((status, common::json_reason(&body)), (401, "REFRESH_TOKEN_INVALID"), "{body}");

    let (status, body) = post(addr, "/v1/oneTimeTokens:issue", json!({ "email": "nobody@example.com" })).await;
    assert_eq!((status, common::json_reason(&body)), (404, "ACCOUNT_NOT_FOUND"), "{body}");

    let (status, body) = post(addr, "/v1/accounts", json!({ "email": "not-an-email", "password": "x" })).await;
    assert_eq!(status, 400, "{body}");
    let violations = body["details"]
        .as_array()
        .and_then(|details| details.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest"))
        .map(|bad| bad["fieldViolations"].as_array().expect("violations").len());
    assert!(violations.is_some_and(|count| count > 0), "BadRequest lists the fields: {body}");
}

/// Requests the JSON side refuses before the service is reached.
async fn refused_requests(addr: std::net::SocketAddr) {
    let url = |path: &str| format!("http://{addr}{path}");
    let http = client();
    let check = |response: reqwest::Response, status: u16, expected_reason: &'static str| async move {
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(common::json_reason(&body), expected_reason, "{body}");
        body
    };
    let body_of = |text: &str| {
        http.post(url("/v1/sessions:login")).header("content-type", "application/json").body(text.to_string())
    };

    let malformed = body_of("{\"email\": ").send().await.expect("answer");
    check(malformed, 400, "INVALID_JSON").await;
    let unknown = body_of("{\"email\":\"a@b.co\",\"passwd\":\"x\"}").send().await.expect("answer");
    let body = check(unknown, 400, "INVALID_JSON").await;
    assert!(body["message"].as_str().is_some_and(|m| m.contains("passwd")), "names the unknown field: {body}");
    let wrong_type = body_of("{\"email\":true,\"password\":\"x\"}").send().await.expect("answer");
    check(wrong_type, 400, "INVALID_JSON").await;
    // A secret sent into a field of another type is not echoed back.
    let misplaced = http
        .post(url("/v1/oneTimeTokens:issue"))
        .header("content-type", "application/json")
        .body("{\"email\":\"a@b.co\",\"startSession\":\"hunter2-secret\"}")
        .send()
        .await
        .expect("answer");
    let body = check(misplaced, 400, "INVALID_JSON").await;
    assert!(!body.to_string().contains("hunter2-secret"), "no value is echoed: {body}");

    let form = http
        .post(url("/v1/sessions:login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=a%40b.co")
        .send()
        .await
        .expect("answer");
    check(form, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let huge = format!("{{\"email\":\"{}\"}}", "a".repeat(70 * 1024));
    check(body_of(&huge).send().await.expect("answer"), 413, "REQUEST_TOO_LARGE").await;
    check(http.get(url("/v1/sessions:login")).send().await.expect("answer"), 405, "METHOD_NOT_ALLOWED").await;
    check(http.post(url("/v1/sessions:logout")).json(&json!({})).send().await.expect("answer"), 404, "ROUTE_NOT_FOUND")
        .await;
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_with_a_reason_and_reach_no_vendor() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let gateway = common::spawn_gateway(vec![sandbox.tenant_settings("default")], Duration::from_secs(5)).await;
    refused_requests(gateway.addr).await;
    assert!(sandbox.stats().is_empty(), "nothing reached the vendor: {:?}", sandbox.stats());
    // Invalid values pass JSON but stop at validation, still before the vendor.
    let (status, _) = post(gateway.addr, "/v1/sessions:login", json!({ "email": "", "password": "" })).await;
    assert_eq!(status, 400);
    assert!(sandbox.stats().is_empty(), "nothing reached the vendor: {:?}", sandbox.stats());
}

#[tokio::test]
async fn a_grpc_timeout_too_short_for_the_call_answers_json_504_whatever_its_length() {
    let (_sandbox, gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    for timeout in ["1n", "1m", "2m", "5m"] {
        let response = client()
            .post(format!("http://{}/v1/sessions:login", gateway.addr))
            .header("Grpc-Timeout", timeout)
            .json(&demo_login())
            .send()
            .await
            .expect("an answer");
        // A fast machine may finish within a few milliseconds; what never happens is gRPC's empty 200.
        assert_eq!(response.headers()["content-type"], "application/json", "{timeout}");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON body");
        assert!(status == 200 || (status == 504 && body["code"] == 4), "{timeout}: {status} {body}");
    }
}

#[tokio::test]
async fn metrics_count_json_calls_apart_from_grpc_calls() {
    let (_sandbox, mut gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    post(gateway.addr, "/v1/sessions:login", demo_login()).await;
    let grpc = LoginRequest { email: DEMO_EMAIL.into(), password: DEMO_PASSWORD.into(), ..Default::default() };
    gateway.client.login(grpc).await.expect("gRPC login");
    let metrics = gateway.metrics_text().await;
    for protocol in ["http", "grpc"] {
        let line = metrics
            .lines()
            .find(|line| {
                line.starts_with("grpc_server_handled_total{")
                    && line.contains("grpc_method=\"Login\"")
                    && line.contains(&format!("protocol=\"{protocol}\""))
            })
            .unwrap_or_else(|| panic!("no {protocol} series in\n{metrics}"));
        assert!(line.ends_with(" 1"), "{line}");
    }
}

#[tokio::test]
async fn the_openapi_document_and_health_are_served_beside_the_api() {
    let (_sandbox, gateway) = spawn_sandbox_gateway(SandboxOptions::default()).await;
    let http = client();
    let document: Value = http
        .get(format!("http://{}/openapi.json", gateway.addr))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(document["openapi"], "3.0.3");
    for path in ["/v1/accounts", "/v1/oneTimeTokens:issue", "/v1/sessions:login", "/v1/sessions:refresh"] {
        assert!(document["paths"][path]["post"].is_object(), "{path} is documented");
    }
    let health = http.get(format!("http://{}/healthz", gateway.addr)).send().await.expect("answer");
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.expect("JSON")["status"], "SERVING");
}

#[tokio::test]
async fn json_callers_authenticate_and_are_authorized_as_grpc_callers_are() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
    let token = "crm-token-0123456789abcdef0123456789";
    let policy = "[callers.crm]\nrpcs = [\"Login\"]\n";
    let mut settings = common::settings(vec![sandbox.tenant_settings("default")], Duration::from_secs(5));
    settings.callers = Some(Arc::new(CallerAuth::parse(policy, Some(&format!("crm {token}\n"))).expect("policy")));
    settings.health_listen = Some("127.0.0.1:0".parse().expect("address"));
    let gateway = spawn_app(settings).await;
    let http = client();
    let call = |path: &str, body: Value, bearer: Option<&str>| {
        let mut request = http.post(format!("http://{}{path}", gateway.addr)).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };

    let none = call("/v1/sessions:login", demo_login(), None).await.expect("answer");
    assert_eq!(none.status(), 401);
    assert_eq!(common::json_reason(&none.json().await.expect("JSON")), "CALLER_UNAUTHENTICATED");
    let allowed = call("/v1/sessions:login", demo_login(), Some(token)).await.expect("answer");
    assert_eq!(allowed.status(), 200);
    let outside = call("/v1/sessions:refresh", json!({ "refreshToken": "x" }), Some(token)).await.expect("answer");
    assert_eq!(outside.status(), 403);
    let body: Value = outside.json().await.expect("JSON");
    assert_eq!(common::json_reason(&body), "CALLER_NOT_PERMITTED");
    assert_eq!(body["details"][0]["metadata"]["caller"], "crm");

    // The kubelet's plaintext health port answers HTTP too, without credentials.
    let health_addr = gateway.health_addr.expect("a health port");
    let health = http.get(format!("http://{health_addr}/healthz")).send().await.expect("answer");
    assert_eq!(health.status(), 200);
}
