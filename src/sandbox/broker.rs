//! The sandbox's Broker-API: account creation and one-time tokens behind the
//! API key (raw or Bearer), with the vendor's validation and error bodies.
//! The same routes serve the CRM-API, which adds `GET /v1/offers` (its
//! documented connection test). Neither answers v2's paths: they are 404.

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse as _, Response},
    routing::{get, post},
};
use serde_json::{Map, Value, json};
use std::{sync::Arc, time::Duration};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    email::vendor_accepts_email,
    faults::{WithholdAnswer, WithholdRefusal, hang},
    gate::Door,
    state,
    vendor::{JsonObject, ProblemPath, Shared, lock, problem},
};

pub(super) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let door = |endpoint, route| Door::BrokerApi.guard(shared, endpoint, route);
    Router::new()
        .route("/v1/accounts", door("create_account", post(create_account)))
        .route("/v1/accounts/by-email/{email}", door("account_by_email", get(account_by_email)))
        .route("/v1/one-time-token", door("issue_one_time_token", post(one_time_token)))
        .route("/service-info", door("service_info", get(service_info)))
}

/// The CRM-API: v1's routes and the offers its connection test reads.
pub(super) fn crm_routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    routes(shared).route("/v1/offers", Door::BrokerApi.guard(shared, "offers", get(offers)))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The first null or empty-string field, as a dotted path.
fn first_empty_field(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Null => Some(path.to_string()),
        Value::String(s) if s.is_empty() => Some(path.to_string()),
        Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| first_empty_field(v, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") })),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| first_empty_field(v, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

fn text<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn account_json(account: &state::Account, one_time_token: Option<&str>) -> Value {
    let mut body = account.sections.clone();
    body.insert("uuid".into(), json!(account.uuid));
    body.insert("email".into(), json!(account.email));
    body.insert("created".into(), json!(rfc3339(account.created)));
    body.insert("updated".into(), json!(rfc3339(account.created)));
    body.insert("verificationStatus".into(), json!("NEW"));
    body.insert("type".into(), json!(account.client_type));
    if let Some(token) = one_time_token {
        body.insert("oneTimeToken".into(), json!(token));
    }
    Value::Object(body)
}

async fn create_account(
    State(shared): State<Arc<Shared>>,
    withhold: Option<Extension<WithholdAnswer>>,
    withhold_refusal: Option<Extension<WithholdRefusal>>,
    ProblemPath(path): ProblemPath,
    JsonObject(mut request): JsonObject,
) -> Response {
    if let Some(field) = first_empty_field(&Value::Object(request.clone()), "") {
        return problem(StatusCode::BAD_REQUEST, &format!("Field '{field}' must not be null or empty"), &path);
    }
    let email = text(&request, "email").unwrap_or("").to_string();
    let password = text(&request, "password").unwrap_or("").to_string();
    let personal = request.get("personalDetails").and_then(Value::as_object);
    let names_given = personal.is_some_and(|p| text(p, "firstname").is_some() && text(p, "lastname").is_some());
    if email.is_empty() || password.is_empty() || !names_given {
        return problem(
            StatusCode::BAD_REQUEST,
            "email, password and personalDetails.firstname/lastname are required",
            &path,
        );
    }
    if !vendor_accepts_email(&email) {
        return problem(StatusCode::BAD_REQUEST, "Field 'email' is not a valid email address", &path);
    }
    let client_type = match text(&request, "clientType") {
        None => "RETAIL".to_string(),
        Some(t @ ("RETAIL" | "PROFESSIONAL" | "EXPERIENCED")) => t.to_string(),
        Some(_) => return problem(StatusCode::BAD_REQUEST, "Field 'clientType' has an unknown value", &path),
    };
    request.remove("password");
    request.remove("email");
    request.remove("clientType");
    let account = state::Account {
        uuid: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        password,
        client_type,
        created: OffsetDateTime::now_utc(),
        sections: request,
    };
    let created = {
        let mut state = lock(&shared.state);
        state.add_account(account).map(|account| (account, state.issue_token(&email, state::ACCOUNT_TOKEN_VALIDITY)))
    };
    let Some((account, token)) = created else {
        if withhold_refusal.is_some() {
            return hang().await;
        }
        return problem(StatusCode::CONFLICT, "Account with this email already exists", &path);
    };
    if withhold.is_some() {
        return hang().await;
    }
    Json(account_json(&account, token.as_deref())).into_response()
}

async fn account_by_email(
    State(shared): State<Arc<Shared>>,
    ProblemPath(path): ProblemPath,
    Path(email): Path<String>,
) -> Response {
    match lock(&shared.state).account(&email) {
        Some(account) => Json(account_json(account, None)).into_response(),
        None => problem(StatusCode::NOT_FOUND, "Account not found", &path),
    }
}

async fn one_time_token(
    State(shared): State<Arc<Shared>>,
    ProblemPath(path): ProblemPath,
    JsonObject(request): JsonObject,
) -> Response {
    let email = text(&request, "email").unwrap_or("");
    let validity = request.get("validityTime").and_then(Value::as_u64).filter(|v| *v > 0);
    let (Some(validity), false) = (validity, email.is_empty()) else {
        return problem(StatusCode::BAD_REQUEST, "email and a positive validityTime are required", &path);
    };
    match lock(&shared.state).issue_token(email, Duration::from_secs(validity)) {
        Some(token) => Json(json!({ "token": token })).into_response(),
        None => problem(StatusCode::NOT_FOUND, "Account not found", &path),
    }
}

async fn service_info() -> Response {
    Json(json!({ "artifact": "broker-api", "name": "mtr-sso sandbox", "serviceVersion": env!("CARGO_PKG_VERSION") }))
        .into_response()
}

/// `GET /v1/offers`: the one offer the sandbox has.
async fn offers() -> Response {
    Json(json!([{ "uuid": "00000000-0000-4000-8000-0000000000f1", "name": "sandbox offer" }])).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_nulls_and_empty_strings_are_found_with_their_path() {
        let body = json!({"email": "a@b.co", "personalDetails": {"firstname": "A", "passport": {"number": ""}}});
        assert_eq!(first_empty_field(&body, "").as_deref(), Some("personalDetails.passport.number"));
        assert_eq!(first_empty_field(&json!({"a": [1, null]}), "").as_deref(), Some("a[1]"));
        assert_eq!(first_empty_field(&json!({"a": {"b": false, "c": 0}}), ""), None);
    }
}
