//! The sandbox's platform: password and one-time-token logins, refresh by
//! the `rt` cookie, and the browser pages (`/?auth=` landing, `/app`).
//! Sessions are cookies: `co-auth` for 15 minutes, and two `rt` cookies with
//! different Paths, of which only the refresh path's one refreshes.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse as _, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    gate::Door,
    session_token, state,
    vendor::{DEMO_BROKER_ID, JsonObject, Shared, lock, problem},
};

/// The platform's refresh path; the `rt` scoped to it is the refreshing one.
const REFRESH_PATH: &str = "/manager/refresh-token";
/// The path of the second `rt` the platform's web backend uses.
const BACKEND_PATH: &str = "/mtr-backend";

pub(super) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let door = |endpoint, route| Door::Platform.guard(shared, endpoint, route);
    Router::new()
        .route("/manager/mtr-login", door("login", post(login)))
        .route("/manager/login/co/with-token", door("login_with_token", post(login_with_token)))
        .route(REFRESH_PATH, door("refresh", post(refresh)))
        .route("/manager/platform-details", get(platform_details))
        .route("/", get(landing))
        .route("/app", get(app_page))
}

fn session_cookies(grant: &state::Grant) -> Vec<String> {
    let max_age = grant.lifetimes.session.as_secs();
    let rt_max_age = grant.lifetimes.refresh_token.as_secs();
    vec![
        format!("co-auth={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax", grant.access_token),
        format!("rt={}; Path={REFRESH_PATH}; Max-Age={rt_max_age}; HttpOnly; SameSite=Strict", grant.refresh_token),
        format!(
            "rt={}; Path={BACKEND_PATH}; Max-Age={rt_max_age}; HttpOnly; SameSite=Strict",
            grant.backend_refresh_token
        ),
    ]
}

fn with_cookies(mut response: Response, grant: &state::Grant) -> Response {
    for cookie in session_cookies(grant) {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn trading_account(email: &str) -> Value {
    // Stable per user, so repeated logins list the same account.
    let id =
        email.bytes().fold(100_000_u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b))) % 900_000 + 100_000;
    json!({
        "tradingAccountId": id.to_string(),
        "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, email.as_bytes()).to_string(),
        "tradingApiToken": session_token::random_token(),
        "offer": {
            "uuid": "00000000-0000-4000-8000-000000000001",
            "name": "Sandbox Standard",
            "demo": true,
            "system": { "uuid": "00000000-0000-4000-8000-000000000002", "name": "Sandbox MT" }
        },
        "branchUuid": "00000000-0000-4000-8000-000000000003",
        "created": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
    })
}

fn login_answer(shared: &Shared, grant: &state::Grant) -> Response {
    let account = trading_account(&grant.email);
    let legacy = lock(&shared.switches).legacy_login_shape;
    let body = if legacy {
        json!({ "email": grant.email, "token": grant.access_token, "accounts": [account.clone()], "selectedAccount": account })
    } else {
        json!({ "email": grant.email, "token": grant.access_token, "tradingAccounts": [account.clone()], "selectedTradingAccount": account })
    };
    with_cookies(Json(body).into_response(), grant)
}

async fn login(State(shared): State<Arc<Shared>>, JsonObject(request): JsonObject) -> Response {
    const PATH: &str = "/manager/mtr-login";
    let field = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (email, password, broker_id) = (field("email"), field("password"), field("brokerId"));
    if email.is_empty() || password.is_empty() || broker_id.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "email, password and brokerId are required", PATH);
    }
    let mut state = lock(&shared.state);
    let user = state.check_password(&email, &password).filter(|_| broker_id == DEMO_BROKER_ID);
    let Some(user) = user else {
        return problem(StatusCode::UNAUTHORIZED, "Invalid credentials", PATH);
    };
    let grant = state.open_session(&user);
    drop(state);
    login_answer(&shared, &grant)
}

async fn login_with_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    const PATH: &str = "/manager/login/co/with-token";
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    if token.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "token is required", PATH);
    }
    let redeemed = lock(&shared.state).redeem_token(&token);
    match redeemed {
        Ok(grant) => login_answer(&shared, &grant),
        Err(_) => problem(StatusCode::UNAUTHORIZED, "Invalid, expired or already used token", PATH),
    }
}

/// The `rt` cookie values in a Cookie header (a browser may send several).
fn refresh_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("rt="))
        .map(str::to_string)
        .collect()
}

async fn refresh(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut state = lock(&shared.state);
    let grant = refresh_cookies(&headers).iter().find_map(|token| state.refresh(token));
    drop(state);
    match grant {
        // The quirk: 200, empty body, the new session only in Set-Cookie.
        Some(grant) => with_cookies(StatusCode::OK.into_response(), &grant),
        None => problem(StatusCode::UNAUTHORIZED, "Invalid or expired refresh token", REFRESH_PATH),
    }
}

async fn platform_details(State(shared): State<Arc<Shared>>) -> Response {
    shared.count("platform_details");
    Json(json!({ "partnerId": DEMO_BROKER_ID, "name": "mtr-sso sandbox platform" })).into_response()
}

#[derive(Deserialize)]
struct Landing {
    auth: Option<String>,
}

/// `/?auth={token}`: what the browser opens from a login link.
async fn landing(State(shared): State<Arc<Shared>>, Query(query): Query<Landing>) -> Response {
    shared.count("landing");
    let Some(token) = query.auth.filter(|t| !t.is_empty()) else {
        return Redirect::to("/app").into_response();
    };
    let redeemed = lock(&shared.state).redeem_token(&token);
    match redeemed {
        Ok(grant) => with_cookies(Redirect::to("/app").into_response(), &grant),
        Err(refusal) => (
            StatusCode::UNAUTHORIZED,
            Html(format!("<!doctype html><title>Link not valid</title><h1>{}</h1>", refusal.explanation())),
        )
            .into_response(),
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(prefix.as_str()).map(str::to_string))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The "platform": shows who the `co-auth` cookie belongs to.
async fn app_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.count("app");
    let state = lock(&shared.state);
    let user = cookie_value(&headers, "co-auth").and_then(|token| state.session_user(&token).map(str::to_string));
    drop(state);
    match user {
        Some(email) => Html(format!(
            "<!doctype html><title>Sandbox platform</title><h1>Signed in as <span id=\"user\">{}</span></h1>",
            escape_html(&email)
        ))
        .into_response(),
        None => {
            (StatusCode::UNAUTHORIZED, Html("<!doctype html><title>Sandbox platform</title><h1>Not signed in</h1>"))
                .into_response()
        }
    }
}
