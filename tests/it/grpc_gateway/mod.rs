//! Black-box tests of the gRPC service through the generated client, with a
//! mock upstream: each RPC's success path, every error mapping, deadlines,
//! at-most-once account creation, tenant selection and the cookie hand-off.

use crate::common;
use common::{error_metadata, new_account, reason, spawn_gateway, tenant, violated_fields, with_deadline};
use mtr_sso::proto::{self, IssueOneTimeTokenRequest, LoginRequest, RefreshRequest};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::Code;
use tonic_types::StatusExt as _;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, header, method, path},
};

fn session_answer() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"email": "ada@example.com", "token": "sess-1", "tradingAccounts": [{"tradingAccountId": "77", "uuid": "ta-1"}]}))
        .append_header("set-cookie", "co-auth=sess-1; Path=/; Max-Age=900; HttpOnly; Secure; SameSite=Lax")
        .append_header("set-cookie", "rt=rt-1; Path=/manager/refresh-token; HttpOnly; Secure; SameSite=Strict")
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

async fn upstream_calls(server: &MockServer, on_path: &str) -> usize {
    server.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path() == on_path).count()
}

mod calls;
mod create_account;
