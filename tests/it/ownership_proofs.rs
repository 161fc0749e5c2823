//! The proofs a lost create is resolved with, against a scripted vendor whose
//! create answers 502 (it may have created the account) and whose lookup
//! answers what each case needs: an answer that is not the account (another
//! email, no uuid) is not taken; `created` is judged on the vendor's clock
//! (its `Date` header), so a skewed clock decides nothing; without `created`
//! only a login with the request's own password proves the account. Also the
//! per-email limit of CreateAccount, in one process and across replicas.

use crate::{common, redis_server};
use common::{error_metadata, new_account, reason, spawn_gateway_with, tenant};
use mtr_sso::{proto::CreateAccountRequest, quota::Limits, redis_connection::RedisSettings};
use redis_server::{Mode, RedisServer};
use serde_json::json;
use std::time::Duration;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

const EMAIL: &str = "owner@example.com";
const LOOKUP: &str = "/v1/accounts/by-email/owner@example.com";

fn http_date(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.format(&format).expect("formatted")
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("formatted")
}

/// A vendor whose create answers 502 and whose lookup answers `lookup` (with
/// `date` as its Date header, when given); tokens and logins answer as asked.
async fn vendor(lookup: serde_json::Value, date: Option<OffsetDateTime>, login_status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/v1/accounts")).respond_with(ResponseTemplate::new(502)).mount(&server).await;
    let mut answer = ResponseTemplate::new(200).set_body_json(lookup);
    if let Some(date) = date {
        answer = answer.insert_header("date", http_date(date).as_str());
    }
    Mock::given(path(LOOKUP)).respond_with(answer).mount(&server).await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "t"})))
        .mount(&server)
        .await;
    let login = match login_status {
        200 => ResponseTemplate::new(200)
            .append_header("set-cookie", "co-auth=s; Path=/; Max-Age=900")
            .set_body_json(json!({"email": EMAIL, "token": "s"})),
        status => ResponseTemplate::new(status)
            .set_body_json(json!({"status": status, "title": "Unauthorized", "detail": "Invalid credentials"})),
    };
    Mock::given(path("/manager/mtr-login")).respond_with(login).mount(&server).await;
    server
}

async fn create_at(
    server: &MockServer,
    start_session: bool,
) -> Result<mtr_sso::proto::CreateAccountResponse, tonic::Status> {
    let mut gateway =
        spawn_gateway_with(vec![tenant("default", &server.uri())], Duration::from_secs(3), 0, |_| {}).await;
    let request = CreateAccountRequest { start_session, ..new_account(EMAIL) };
    gateway.client.create_account(request).await.map(tonic::Response::into_inner)
}

async fn requests_to(server: &MockServer, wanted: &str) -> usize {
    let received = server.received_requests().await.expect("recorded");
    received.iter().filter(|request| request.url.path() == wanted).count()
}

fn assert_unknown(result: Result<mtr_sso::proto::CreateAccountResponse, tonic::Status>, lookup: &str) {
    let status = result.expect_err("not proven");
    assert_eq!(reason(&status), "ACCOUNT_CREATION_OUTCOME_UNKNOWN", "{status:?}");
    assert_eq!(error_metadata(&status, "lookup").as_deref(), Some(lookup));
}

#[tokio::test]
async fn a_lookup_answer_for_another_email_or_without_a_uuid_is_not_taken_as_the_account() {
    // Created after the send, by any clock: only the identity can fail.
    let now = OffsetDateTime::now_utc() + time::Duration::seconds(5);
    for lookup in [
        json!({"uuid": "u-1", "email": "someone.else@example.com", "created": rfc3339(now)}),
        json!({"email": EMAIL, "created": rfc3339(now)}),
        json!({"uuid": "u-1", "created": rfc3339(now)}),
    ] {
        let server = vendor(lookup.clone(), None, 200).await;
        assert_unknown(create_at(&server, false).await, "not_the_account");
        assert_eq!(requests_to(&server, "/v1/one-time-token").await, 0, "{lookup}: nothing signed in");
    }
}

#[tokio::test]
async fn the_email_is_compared_without_regard_to_case() {
    let later = OffsetDateTime::now_utc() + time::Duration::seconds(5);
    let lookup = json!({"uuid": "u-1", "email": "Owner@Example.COM", "created": rfc3339(later)});
    let server = vendor(lookup, None, 200).await;
    let response = create_at(&server, false).await.expect("the same address");
    assert!(response.resolved_by_lookup && response.login_link.is_some());
}

#[tokio::test]
async fn creation_time_is_judged_on_the_vendors_clock_so_skew_decides_nothing() {
    let now = OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    // The vendor's clock an hour behind ours: created just now, by its clock.
    let behind = vendor(json!({"uuid": "u-1", "email": EMAIL, "created": rfc3339(now - hour)}), Some(now - hour), 200);
    let response = create_at(&behind.await, false).await.expect("created by this request, on the vendor's clock");
    assert!(response.resolved_by_lookup);
    // An hour ahead: "now" on our clock is an hour old on the vendor's.
    let ahead = vendor(json!({"uuid": "u-1", "email": EMAIL, "created": rfc3339(now)}), Some(now + hour), 200).await;
    let status = create_at(&ahead, true).await.expect_err("the account was there before");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::AlreadyExists, "ACCOUNT_ALREADY_EXISTS"));
    assert_eq!(requests_to(&ahead, "/manager/mtr-login").await, 0);
    assert_eq!(requests_to(&ahead, "/v1/one-time-token").await, 0);
}

#[tokio::test]
async fn without_created_a_link_is_not_proven_but_a_session_is_proven_by_the_password() {
    let lookup = json!({"uuid": "u-1", "email": EMAIL});
    let server = vendor(lookup.clone(), None, 200).await;
    assert_unknown(create_at(&server, false).await, "no_created");
    assert_eq!(requests_to(&server, "/v1/one-time-token").await, 0);

    let response = create_at(&server, true).await.expect("the password signs in: the caller holds the account");
    assert!(response.resolved_by_lookup && response.session.is_some(), "{response:?}");
    assert_eq!(requests_to(&server, "/manager/mtr-login").await, 1);
    assert_eq!(requests_to(&server, "/v1/one-time-token").await, 0);

    let refused = vendor(lookup, None, 401).await;
    let status = create_at(&refused, true).await.expect_err("another password: not this request's account");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::AlreadyExists, "ACCOUNT_ALREADY_EXISTS"));
}

async fn taken_email_vendor() -> MockServer {
    let server = MockServer::start().await;
    let taken = json!({"status": "409", "title": "Conflict", "type": "error://broker-api/user-account/already-exists"});
    Mock::given(path("/v1/accounts"))
        .respond_with(ResponseTemplate::new(409).set_body_json(taken))
        .mount(&server)
        .await;
    server
}

fn limited(settings: &mut mtr_sso::config::Settings) {
    settings.limits = Limits { upstream_per_minute: 0, caller_per_minute: 0, email_per_minute: 2 };
}

#[tokio::test]
async fn one_email_cannot_be_hammered_through_create_account() {
    let server = taken_email_vendor().await;
    let mut gateway =
        spawn_gateway_with(vec![tenant("default", &server.uri())], Duration::from_secs(3), 0, limited).await;
    for email in ["victim@example.com", "VICTIM@example.com"] {
        let status = gateway.client.create_account(new_account(email)).await.expect_err("taken");
        assert_eq!(reason(&status), "ACCOUNT_ALREADY_EXISTS");
    }
    let status = gateway.client.create_account(new_account("victim@example.com")).await.expect_err("third");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::ResourceExhausted, "EMAIL_RATE_LIMITED"));
    let other = gateway.client.create_account(new_account("other@example.com")).await.expect_err("taken");
    assert_eq!(reason(&other), "ACCOUNT_ALREADY_EXISTS", "other emails are not affected");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 3, "the third never reached the vendor");
}

#[tokio::test]
async fn the_per_email_create_limit_is_shared_by_replicas_through_redis() {
    let redis = RedisServer::start(Mode::Plain);
    let server = taken_email_vendor().await;
    let shared = |settings: &mut mtr_sso::config::Settings| {
        limited(settings);
        settings.redis = Some(RedisSettings::new(redis.url(), None, None, None).expect("redis settings"));
    };
    let tenants = || vec![tenant("default", &server.uri())];
    let mut first = spawn_gateway_with(tenants(), Duration::from_secs(3), 0, shared).await;
    let mut second = spawn_gateway_with(tenants(), Duration::from_secs(3), 0, shared).await;
    first.client.create_account(new_account("shared@example.com")).await.expect_err("taken");
    second.client.create_account(new_account("shared@example.com")).await.expect_err("taken");
    let status = first.client.create_account(new_account("shared@example.com")).await.expect_err("third");
    assert_eq!(reason(&status), "EMAIL_RATE_LIMITED", "the other replica's call counted");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 2);
    assert!(redis.keys().iter().all(|key| !key.contains('@')), "no email in Redis");
}
