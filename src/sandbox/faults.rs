//! The fault middleware: applies the switches (`switches.rs`) to the vendor
//! endpoints (never to the control endpoints), and the markers it leaves for
//! the handlers whose fault is part of their answer (a withheld answer, a
//! trading account opened on paper only).

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use std::{sync::Arc, time::Duration};

use super::{
    switches::{BAD_REQUEST_TITLE, FaultKind},
    vendor::{Shared, lock, problem, problem_body},
};

/// What a faulty answer looks like.
/// Middleware: logs the request, delays, then either injects the fault or
/// passes the request on; logs the answer.
pub(super) async fn apply(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let number = lock(&shared.requests).arrived(request.method().as_str(), request.uri().path());
    let response = delay_or_fault(&shared, request, next).await;
    lock(&shared.requests).answered(number);
    response
}

async fn delay_or_fault(shared: &Shared, request: Request, next: Next) -> Response {
    let switches = lock(&shared.switches).clone();
    if !switches.latency.is_zero() {
        tokio::time::sleep(switches.latency).await;
    }
    let hit = switches.fault != FaultKind::None
        && request.uri().path().starts_with(&switches.fault_path_prefix)
        && request.uri().path().contains(&switches.fault_path_contains)
        && rand::random::<f64>() < switches.fault_ratio;
    if !hit {
        return next.run(request).await;
    }
    shared.count("fault");
    match switches.fault {
        FaultKind::None => next.run(request).await,
        FaultKind::ServerError => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        )
            .into_response(),
        FaultKind::MalformedBody => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"token\": \"unterminated").into_response()
        }
        FaultKind::Reset => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"{\"uuid\": \"")),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "sandbox fault: reset")),
            ];
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        FaultKind::Forbidden => {
            problem(StatusCode::FORBIDDEN, "Missing permission for this operation", request.uri().path())
        }
        FaultKind::Unprocessable => {
            problem(StatusCode::UNPROCESSABLE_ENTITY, "The request cannot be processed", request.uri().path())
        }
        FaultKind::BadRequest => problem_body(StatusCode::BAD_REQUEST, "The request was refused", request.uri().path())
            .titled(BAD_REQUEST_TITLE)
            .into_response(),
        FaultKind::NotFound => StatusCode::NOT_FOUND.into_response(),
        FaultKind::BotChallenge => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html"), (header::HeaderName::from_static("cf-mitigated"), "challenge")],
            "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>",
        )
            .into_response(),
        FaultKind::MissingInTradingSystem => {
            let mut request = request;
            request.extensions_mut().insert(MissingInTradingSystem);
            next.run(request).await
        }
        FaultKind::Hang => hang().await,
        FaultKind::HangAfterProcessing => {
            // Only a create handler knows when its work is done (and a lookup
            // under the same path prefix must still answer): the mark tells
            // the create handlers to withhold their answer; others ignore it.
            let mut request = request;
            request.extensions_mut().insert(WithholdAnswer);
            next.run(request).await
        }
        FaultKind::HangAfterRefusing => {
            let mut request = request;
            request.extensions_mut().insert(WithholdRefusal);
            next.run(request).await
        }
    }
}

/// Marks a request whose create handler is to withhold the answer once the account exists.
#[derive(Debug, Clone, Copy)]
pub(super) struct WithholdAnswer;

/// Marks a request whose trading account is to exist on paper only.
#[derive(Debug, Clone, Copy)]
pub(super) struct MissingInTradingSystem;

/// Marks a request whose create handler is to withhold its refusal of a taken email.
#[derive(Debug, Clone, Copy)]
pub(super) struct WithholdRefusal;

/// No answer until the client gives up: the future is dropped when the
/// client disconnects, and bounded so nothing lingers forever.
pub(super) async fn hang() -> Response {
    tokio::time::sleep(Duration::from_secs(300)).await;
    StatusCode::GATEWAY_TIMEOUT.into_response()
}
