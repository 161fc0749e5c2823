//! The sandbox's Broker-API v2 reads: a user account by email, a page of user accounts (`GET
//! /v1/user-accounts?page=&size=`, the cheap read the preflight proves a v2
//! key with) and a user's trading accounts (`GET
//! /v1/user-accounts/{uuid}/trading-accounts`, each as it was opened, with
//! `created`, `group` and `missingInTradingSystem`). Both need the v2 key.

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse as _, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;

use super::{
    state,
    vendor::{DEMO_BROKER_ID, ProblemPath, Shared, lock, problem, problem_body},
};

/// The typed problem of an unknown user account.
const NOT_FOUND: &str = "error://broker-api/user-account/not-found";

/// Largest page the sandbox hands out, so a page size cannot make it build a huge answer.
const MAX_PAGE_SIZE: usize = 100;

/// A user account as v2 answers it.
pub(super) fn user_json(account: &state::Account) -> Value {
    json!({
        "uuid": account.uuid,
        "email": account.email,
        "created": account.created.format(&Rfc3339).unwrap_or_default(),
        "brokerId": DEMO_BROKER_ID,
    })
}

/// v2's typed 404 for an unknown user account.
pub(super) fn not_found(path: &str) -> Response {
    problem_body(StatusCode::NOT_FOUND, "User account not found", path)
        .typed(NOT_FOUND, "User account not found.")
        .into_response()
}

/// `GET /v1/user-accounts/email/{email}`.
pub(super) async fn user_account_by_email(
    State(shared): State<Arc<Shared>>,
    ProblemPath(path): ProblemPath,
    Path(email): Path<String>,
) -> Response {
    match lock(&shared.state).account(&email) {
        Some(account) => Json(user_json(account)).into_response(),
        None => not_found(&path),
    }
}

/// Paging as query parameters; both optional.
#[derive(Debug, Deserialize)]
pub(super) struct Paging {
    page: Option<usize>,
    size: Option<usize>,
}

/// `GET /v1/user-accounts`: one page of user accounts, oldest first.
pub(super) async fn user_accounts_page(
    State(shared): State<Arc<Shared>>,
    ProblemPath(path): ProblemPath,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Response {
    let Ok(Query(paging)) = paging else {
        return problem(StatusCode::BAD_REQUEST, "Parameters 'page' and 'size' must be numbers", &path);
    };
    let (page, size) = (paging.page.unwrap_or(0), paging.size.unwrap_or(20));
    if size == 0 || size > MAX_PAGE_SIZE {
        return problem(StatusCode::BAD_REQUEST, "Parameter 'size' must be between 1 and 100", &path);
    }
    let state = lock(&shared.state);
    let (accounts, total) = state.accounts_page(page, size);
    Json(json!({
        "content": accounts.into_iter().map(user_json).collect::<Vec<Value>>(),
        "number": page,
        "size": size,
        "totalElements": total,
        "totalPages": total.div_ceil(size),
    }))
    .into_response()
}

/// `GET /v1/user-accounts/{uuid}/trading-accounts`: the user's trading accounts, oldest first.
pub(super) async fn trading_accounts_of_user(
    State(shared): State<Arc<Shared>>,
    ProblemPath(path): ProblemPath,
    Path(user_uuid): Path<String>,
) -> Response {
    let state = lock(&shared.state);
    if state.account_by_uuid(&user_uuid).is_none() {
        return not_found(&path);
    }
    Json(Value::Array(state.trading_accounts_of(&user_uuid))).into_response()
}
