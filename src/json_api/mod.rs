//! JSON over HTTP: a second door into the same service, for callers without
//! gRPC (PHP, low-code tools, curl). Each RPC answers `POST` at the path its
//! `google.api.http` annotation names; the body is the request message in
//! protobuf's canonical JSON mapping. The handler turns the HTTP request into
//! the gRPC request and calls the same [`SsoService`] method gRPC calls, so
//! the envelope (shedding, caller and policy, deadline, trace, metrics, log
//! line) and the flows are shared; only the encoding differs. Served on the
//! gRPC port (see `server`), with the OpenAPI document and `/healthz`.

mod request;
pub mod status;
pub mod well_known;
mod wire;

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse as _, Response},
    routing::{get, post},
};
use prost::Message;
use serde::{Serialize, de::DeserializeOwned};
use std::future::Future;
use tokio::sync::watch;
use tonic::Code;

use crate::{proto::sso_service_server::SsoService as _, service::SsoGateway};

pub use request::MAX_BODY_BYTES;

include!(concat!(env!("OUT_DIR"), "/http_routes.rs"));

/// The OpenAPI 3 document of this API, generated from the proto at build
/// time; `docs/openapi.json` is a committed copy (a test keeps them equal).
pub const OPENAPI_DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Where HTTP health is served: 200 while serving, 503 once draining.
pub const HEALTH_PATH: &str = "/healthz";

/// The gRPC services' `grpc` router with the JSON API, the OpenAPI document
/// and health beside them. `serving` turns false when the server starts
/// draining. Unknown paths answer a gRPC client as tonic would, anyone else
/// with a JSON 404.
pub fn beside_grpc(grpc: axum::Router, gateway: SsoGateway, serving: watch::Receiver<bool>) -> axum::Router {
    grpc.merge(router(gateway, serving)).fallback(not_found)
}

fn router(gateway: SsoGateway, serving: watch::Receiver<bool>) -> axum::Router {
    let mut router = health_router(serving).route(OPENAPI_PATH, get(openapi));
    for &(rpc, path) in ROUTES {
        let gateway = gateway.clone();
        let handler = move |request: Request| {
            let gateway = gateway.clone();
            async move { dispatch(&gateway, rpc, request).await }
        };
        router = router.route(path, post(handler).fallback(method_not_allowed));
    }
    router
}

/// `GET /healthz` alone, for the plaintext health listener.
pub fn health_router(serving: watch::Receiver<bool>) -> axum::Router {
    axum::Router::new().route(
        HEALTH_PATH,
        get(move || {
            let serving = *serving.borrow();
            async move {
                let (code, text) = if serving {
                    (StatusCode::OK, "SERVING")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
                };
                status::json_response(code, &serde_json::json!({ "status": text }))
            }
        }),
    )
}

/// Calls `rpc` with the request's JSON body.
async fn dispatch(gateway: &SsoGateway, rpc: &str, request: Request) -> Response {
    let (head, body) = request.into_parts();
    match rpc {
        "CreateAccount" => {
            unary::<wire::CreateAccountRequest, wire::CreateAccountResponse, _, _, _>(head, body, rpc, |request| {
                gateway.create_account(request)
            })
            .await
        }
        "IssueOneTimeToken" => {
            unary::<wire::IssueOneTimeTokenRequest, wire::IssueOneTimeTokenResponse, _, _, _>(
                head,
                body,
                rpc,
                |request| gateway.issue_one_time_token(request),
            )
            .await
        }
        "Login" => {
            unary::<wire::LoginRequest, wire::LoginResponse, _, _, _>(head, body, rpc, |request| gateway.login(request))
                .await
        }
        "Refresh" => {
            unary::<wire::RefreshRequest, wire::RefreshResponse, _, _, _>(head, body, rpc, |request| {
                gateway.refresh(request)
            })
            .await
        }
        // A route in the proto without a handler here; a test calls every route.
        _ => {
            status::refused(StatusCode::NOT_IMPLEMENTED, Code::Unimplemented, "RPC_NOT_SERVED", "not served over JSON")
        }
    }
}

/// One unary call: check and parse the body into the JSON-side message, hand
/// the gRPC form of it to `call`, and answer the reply or the error in JSON.
async fn unary<JsonRequest, JsonResponse, GrpcRequest, GrpcResponse, Answer>(
    head: Parts,
    body: Body,
    rpc: &str,
    call: impl FnOnce(tonic::Request<GrpcRequest>) -> Answer,
) -> Response
where
    JsonRequest: DeserializeOwned + Message,
    JsonResponse: Serialize + Message + Default,
    GrpcRequest: Message + Default,
    GrpcResponse: Message,
    Answer: Future<Output = Result<tonic::Response<GrpcResponse>, tonic::Status>>,
{
    // The server's own timer for a `Grpc-Timeout` started about now.
    let arrived = tokio::time::Instant::now();
    let parsed = async {
        let timeout = request::grpc_timeout(&head.headers).map_err(status::Refusal::into_response)?;
        request::check_content_type(&head.headers).map_err(status::Refusal::into_response)?;
        let bytes = request::read_body(body).await.map_err(status::Refusal::into_response)?;
        let message: JsonRequest =
            request::parse(&bytes, &format!("{rpc}Request")).map_err(status::Refusal::into_response)?;
        let message = wire::transcode::<_, GrpcRequest>(&message).map_err(|status| status::from_grpc(&status))?;
        Ok((timeout, message))
    };
    let (timeout, message) = match parsed.await {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal,
    };
    let answer = match timeout {
        None => call(request::grpc_request(head, message)).await,
        Some(timeout) => {
            // tonic's server answers any request with a `grpc-timeout` in
            // gRPC's way (an empty 200) once it passes, so the JSON answer
            // must leave a little before. The service is handed only the
            // time left until then (reading the body took some), so its own
            // deadline and its own answer, with its log line and metric,
            // come first; this timer is the last resort.
            let answer_by = arrived + timeout.saturating_sub(request::json_margin(timeout));
            let mut head = head;
            let left = answer_by.saturating_duration_since(tokio::time::Instant::now());
            head.headers.insert("grpc-timeout", request::service_timeout(left));
            match tokio::time::timeout_at(answer_by, call(request::grpc_request(head, message))).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::warn!(
                        rpc,
                        timeout_us = timeout.as_micros() as u64,
                        "the service did not answer within the caller's Grpc-Timeout"
                    );
                    return request::deadline_passed().into_response();
                }
            }
        }
    };
    match answer.and_then(|reply| wire::transcode::<_, JsonResponse>(reply.get_ref())) {
        Ok(reply) => match serde_json::to_value(&reply) {
            Ok(json) => status::json_response(StatusCode::OK, &json),
            Err(_) => status::from_grpc(&tonic::Status::internal("the reply could not be written as JSON")),
        },
        Err(error) => status::from_grpc(&error),
    }
}

async fn openapi() -> Response {
    let mut response = OPENAPI_DOCUMENT.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn method_not_allowed() -> Response {
    let mut response = status::refused(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::Unimplemented,
        "METHOD_NOT_ALLOWED",
        "every route of this API takes POST with a JSON body",
    );
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// An unknown path: a gRPC client hears UNIMPLEMENTED as tonic answers it,
/// anyone else a JSON 404.
async fn not_found(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        let (head, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(head, Body::empty());
    }
    status::refused(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        "ROUTE_NOT_FOUND",
        &format!("no route {}; the API is described at {OPENAPI_PATH}", request.uri().path()),
    )
}

#[cfg(test)]
mod contract_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_exactly_one_route_and_the_routes_are_aip_136_paths() {
        let mut named: Vec<&str> = ROUTES.iter().map(|(rpc, _)| *rpc).collect();
        named.sort_unstable();
        let mut rpcs = crate::auth::RPCS.to_vec();
        rpcs.sort_unstable();
        assert_eq!(named, rpcs);
        for (rpc, path) in ROUTES {
            assert!(path.starts_with("/v1/") && !path.contains('{'), "{rpc}: {path}");
        }
    }

    /// `docs/openapi.json` is the copy people read on the web; set
    /// `UPDATE_OPENAPI=1` to rewrite it from the proto.
    #[test]
    fn the_committed_openapi_document_is_the_one_the_proto_generates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, OPENAPI_DOCUMENT).expect("docs/openapi.json is writable");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == OPENAPI_DOCUMENT,
            "docs/openapi.json differs from the proto's; rewrite it with \
             `UPDATE_OPENAPI=1 cargo test --lib json_api` and commit it"
        );
    }

    #[test]
    fn the_openapi_document_describes_every_route_with_the_json_names() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_DOCUMENT).expect("JSON");
        for (rpc, path) in ROUTES {
            let operation = &document["paths"][path]["post"];
            assert_eq!(operation["summary"], *rpc);
            assert!(operation["responses"]["default"].is_object(), "{rpc} documents its errors");
        }
        let schemas = &document["components"]["schemas"];
        assert!(schemas["LoginRequest"]["properties"]["brokerId"].is_object(), "lowerCamelCase");
        assert_eq!(schemas["LoginLink"]["properties"]["expiresAt"]["format"], "date-time");
        assert_eq!(schemas["ClientType"]["oneOf"][0]["enum"][1], "CLIENT_TYPE_RETAIL");
        assert_eq!(schemas["LoginRequest"]["additionalProperties"], false, "unknown fields are refused");
    }
}
