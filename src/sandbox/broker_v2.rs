//! The sandbox's Broker-API v2, with v2's quirks: Bearer only (a raw key is
//! refused), a user-account body of exactly `{email, password}` that must pass
//! the password rule, a typed 409 for a taken email, no token on create,
//! trading accounts that need `group`, `leverageRatioPercent`, `accountType`
//! and `accountDetails` (the names, optionally date of birth, phone and
//! address; any other key is refused), 404 for an unknown user, and lookup
//! by email. The reads (lookup by email, pages of user accounts, a user's
//! trading accounts) and the user-account shape they answer with are in
//! `broker_v2_reads`. Served under its own prefix, as v2 has a host of
//! its own at the vendor.

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse as _, Response},
    routing::{get, post},
};
use serde_json::{Map, Value, json};
use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;

use super::{
    broker_v2_reads::{self, not_found, user_json},
    email::vendor_accepts_email,
    faults::{MissingInTradingSystem, WithholdAnswer, WithholdRefusal, hang},
    gate::Door,
    state,
    vendor::{JsonObject, ProblemPath, Shared, lock, problem, problem_body},
};

const ALREADY_EXISTS: &str = "error://broker-api/user-account/already-exists";
const ACCOUNT_TYPES: [&str; 2] = ["DEMO", "REAL"];
const ACCESS_RIGHTS: [&str; 5] =
    ["FULL", "CLOSE_ONLY", "TRADING_DISABLED", "TRADING_AND_LOGIN_DISABLED", "LOCKED_CLOSE_ONLY"];
/// The keys `accountDetails` takes, as a client that runs against the v2 demo sends them.
const ACCOUNT_DETAILS_KEYS: [&str; 6] =
    ["firstName", "lastName", "phoneNumber", "dateOfBirth", "bankAccount", "addressDetails"];
/// The keys of `accountDetails.addressDetails` (`zipCode`, not v1's `postCode`).
const ADDRESS_KEYS: [&str; 5] = ["address", "country", "state", "city", "zipCode"];

pub(super) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let door = |endpoint, route| Door::BrokerApiV2.guard(shared, endpoint, route);
    Router::new()
        .route(
            "/v1/user-accounts",
            door("create_user_account", post(create_user_account))
                .merge(door("user_accounts_page", get(broker_v2_reads::user_accounts_page))),
        )
        .route(
            "/v1/user-accounts/email/{email}",
            door("user_account_by_email", get(broker_v2_reads::user_account_by_email)),
        )
        .route(
            "/v1/user-accounts/{uuid}/trading-accounts",
            door("open_trading_account", post(open_trading_account))
                .merge(door("trading_accounts_of_user", get(broker_v2_reads::trading_accounts_of_user))),
        )
        .route("/v1/one-time-token", door("v2_issue_one_time_token", post(one_time_token)))
}

/// v2's own password rule, written apart from the gateway's so that they can disagree.
fn password_passes(password: &str) -> bool {
    let has = |test: fn(&char) -> bool| password.chars().any(|c| test(&c));
    password.len() >= 8 && has(char::is_ascii_uppercase) && has(char::is_ascii_lowercase) && has(char::is_ascii_digit)
}

async fn create_user_account(
    State(shared): State<Arc<Shared>>,
    withhold: Option<Extension<WithholdAnswer>>,
    withhold_refusal: Option<Extension<WithholdRefusal>>,
    ProblemPath(path): ProblemPath,
    JsonObject(request): JsonObject,
) -> Response {
    if let Some(other) = request.keys().find(|key| !matches!(key.as_str(), "email" | "password")) {
        return problem(StatusCode::BAD_REQUEST, &format!("Unrecognized field '{other}'"), &path);
    }
    let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let (email, password) = (text("email"), text("password"));
    if !vendor_accepts_email(&email) {
        return problem(StatusCode::BAD_REQUEST, "Field 'email' is not a valid email address", &path);
    }
    if !password_passes(&password) {
        return problem(
            StatusCode::BAD_REQUEST,
            "Field 'password' needs 8+ characters with upper case, lower case and a digit",
            &path,
        );
    }
    let account = state::Account {
        uuid: uuid::Uuid::new_v4().to_string(),
        email,
        password,
        client_type: "RETAIL".into(),
        created: OffsetDateTime::now_utc(),
        sections: Map::new(),
    };
    let added = lock(&shared.state).add_account(account);
    match added {
        Some(_) if withhold.is_some() => hang().await,
        Some(account) => Json(user_json(&account)).into_response(),
        None if withhold_refusal.is_some() => hang().await,
        None => problem_body(StatusCode::CONFLICT, "A user account with this email exists", &path)
            .typed(ALREADY_EXISTS, "User account already exists.")
            .into_response(),
    }
}

/// The first required trading-account field that is missing or wrong.
fn trading_account_problem(request: &Map<String, Value>) -> Option<&'static str> {
    let text = |key: &str| request.get(key).and_then(Value::as_str);
    if text("group").is_none_or(str::is_empty) {
        return Some("Field 'group' is required");
    }
    if request.get("leverageRatioPercent").and_then(Value::as_u64).is_none_or(|leverage| leverage == 0) {
        return Some("Field 'leverageRatioPercent' must be a positive integer");
    }
    if !text("accountType").is_some_and(|t| ACCOUNT_TYPES.contains(&t)) {
        return Some("Field 'accountType' must be DEMO or REAL");
    }
    let Some(details) = request.get("accountDetails").and_then(Value::as_object) else {
        return Some("Field 'accountDetails' is required");
    };
    if let Some(problem) = account_details_problem(details) {
        return Some(problem);
    }
    if request.get("accessRight").is_some_and(|right| !right.as_str().is_some_and(|r| ACCESS_RIGHTS.contains(&r))) {
        return Some("Field 'accessRight' has an unknown value");
    }
    None
}

/// The first problem of `accountDetails`: missing names, a key it does not
/// take, or a value that is not a non-empty string.
fn account_details_problem(details: &Map<String, Value>) -> Option<&'static str> {
    let text =
        |map: &Map<String, Value>, key: &str| map.get(key).and_then(Value::as_str).is_some_and(|t| !t.is_empty());
    if !text(details, "firstName") || !text(details, "lastName") {
        return Some("Fields 'accountDetails.firstName' and 'accountDetails.lastName' are required");
    }
    if details.keys().any(|key| !ACCOUNT_DETAILS_KEYS.contains(&key.as_str())) {
        return Some("Unrecognized field in 'accountDetails'");
    }
    let strings =
        |map: &Map<String, Value>, except: &str| map.iter().all(|(k, v)| k == except || text(map, k) && v.is_string());
    if !strings(details, "addressDetails") {
        return Some("Fields of 'accountDetails' must be non-empty strings");
    }
    match details.get("addressDetails") {
        None => None,
        Some(Value::Object(address)) if address.keys().any(|key| !ADDRESS_KEYS.contains(&key.as_str())) => {
            Some("Unrecognized field in 'accountDetails.addressDetails'")
        }
        Some(Value::Object(address)) if strings(address, "") => None,
        Some(_) => Some("Field 'accountDetails.addressDetails' must be an object of non-empty strings"),
    }
}

async fn open_trading_account(
    State(shared): State<Arc<Shared>>,
    on_paper_only: Option<Extension<MissingInTradingSystem>>,
    withhold: Option<Extension<WithholdAnswer>>,
    withhold_refusal: Option<Extension<WithholdRefusal>>,
    ProblemPath(path): ProblemPath,
    Path(user_uuid): Path<String>,
    JsonObject(request): JsonObject,
) -> Response {
    // The lock is let go before any hang: a withheld answer must not block the sandbox.
    let opened = {
        let mut state = lock(&shared.state);
        if state.account_by_uuid(&user_uuid).is_none() {
            return not_found(&path);
        }
        if let Some(detail) = trading_account_problem(&request) {
            return problem(StatusCode::BAD_REQUEST, detail, &path);
        }
        // A withheld refusal opens nothing.
        (withhold_refusal.is_none())
            .then(|| state.open_trading_account(&user_uuid, Value::Object(request), on_paper_only.is_some()))
    };
    let Some(opened) = opened else {
        return hang().await;
    };
    if withhold.is_some() {
        return hang().await;
    }
    Json(opened).into_response()
}

async fn one_time_token(
    State(shared): State<Arc<Shared>>,
    ProblemPath(path): ProblemPath,
    JsonObject(request): JsonObject,
) -> Response {
    let email = request.get("email").and_then(Value::as_str).unwrap_or("");
    let validity = request.get("validityTime").and_then(Value::as_u64).filter(|v| *v > 0);
    // The refusal names both fields, so both are checked (as v1 does).
    let (Some(validity), false) = (validity, email.is_empty()) else {
        return problem(StatusCode::BAD_REQUEST, "email and a positive validityTime are required", &path);
    };
    match lock(&shared.state).issue_token(email, Duration::from_secs(validity)) {
        Some(token) => Json(json!({ "token": token })).into_response(),
        None => not_found(&path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_password_rule_matches_the_vendors_wording() {
        assert!(password_passes("Sandbox1"));
        for weak in ["Sandbx1", "sandbox1", "SANDBOX1", "Sandboxx"] {
            assert!(!password_passes(weak), "{weak}");
        }
    }

    #[test]
    fn a_trading_account_needs_its_four_fields() {
        let details = json!({"firstName": "A", "lastName": "B"});
        let full = json!({"group": "g", "leverageRatioPercent": 100, "accountType": "DEMO", "accountDetails": details});
        let Value::Object(full) = full else { unreachable!() };
        assert_eq!(trading_account_problem(&full), None);
        for key in ["group", "leverageRatioPercent", "accountType", "accountDetails"] {
            let mut partial = full.clone();
            partial.remove(key);
            assert!(trading_account_problem(&partial).is_some_and(|p| p.contains(key)), "{key}");
        }
    }

    #[test]
    fn account_details_take_both_shapes_and_refuse_unknown_keys() {
        let object = |value: Value| match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let names = object(json!({"firstName": "A", "lastName": "B"}));
        assert_eq!(account_details_problem(&names), None);
        let full = object(json!({"firstName": "A", "lastName": "B", "dateOfBirth": "1990-01-02", "phoneNumber": "+1",
            "addressDetails": {"address": "1 Main St", "country": "PL", "state": "S", "city": "C", "zipCode": "00-001"}}));
        assert_eq!(account_details_problem(&full), None);
        for wrong in [
            json!({"firstName": "A"}),
            json!({"firstName": "A", "lastName": "B", "middleName": "C"}),
            json!({"firstName": "A", "lastName": "B", "addressDetails": {"postCode": "1"}}),
            json!({"firstName": "A", "lastName": "B", "phoneNumber": ""}),
            json!({"firstName": "A", "lastName": "B", "addressDetails": "1 Main St"}),
        ] {
            assert!(account_details_problem(&object(wrong.clone())).is_some(), "{wrong}");
        }
    }
}
