//! The server: the SSO service over gRPC and over JSON/HTTP (`json_api`) on
//! one port, `grpc.health.v1` and `GET /healthz`, and reflection v1 and
//! v1alpha (grpcurl 1.8 speaks only v1alpha). It takes a bound listener and
//! a shutdown future; on shutdown health turns NOT_SERVING at once, new
//! connections are refused and in-flight RPCs get a bounded grace to finish.
//!
//! JSON shares the gRPC port, told apart by path: one port to expose, secure
//! and police, with the same TLS, client certificates and limits, and one
//! drain. HTTP/1.1 is accepted for it on plaintext; over TLS the port offers
//! only HTTP/2 by ALPN, which curl and PHP's curl negotiate.
//!
//! The main listener's connections are bounded ([`connections`]): how many
//! are held at once, how long a TLS handshake may take, and how long a
//! connection may stay open before its first request. TLS is ours ([`tls`]),
//! not tonic's, so that a new certificate applies without a restart.

mod connections;
mod tls;

pub use tls::ServerTls;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tonic::{service::Routes, transport::Server};
use tonic_health::ServingStatus;

use crate::{config::ConnectionLimits, json_api, proto::sso_service_server::SsoServiceServer, service::SsoGateway};
use connections::{BoundedIncoming, FirstRequests};

/// How the server is exposed beyond its main listener.
#[derive(Debug, Default)]
pub struct Exposure {
    /// TLS (and mTLS) on the main listener; replaced when its files change.
    pub tls: Option<ServerTls>,
    /// A plaintext listener serving only health (grpc.health.v1 and
    /// `GET /healthz`), for the kubelet.
    pub health_listener: Option<TcpListener>,
    /// Bounds on the main listener's connections.
    pub connections: ConnectionLimits,
}

/// The health service name of the SSO service.
pub use crate::proto::SERVICE_NAME;

/// Largest request accepted, the same over gRPC and JSON.
const MAX_REQUEST_BYTES: usize = json_api::MAX_BODY_BYTES;

/// Serves until `shutdown` resolves, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    exposure: Exposure,
    gateway: SsoGateway,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let (stop_health, health_stopped) = tokio::sync::watch::channel(false);
    let (serving, serving_now) = tokio::sync::watch::channel(true);
    let health_task = exposure.health_listener.map(|listener| {
        let service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        let routes = Routes::new(service).into_axum_router().merge(json_api::health_router(serving_now.clone()));
        // Probes open one connection each: a small cap, and the same first-request bound.
        let limits = ConnectionLimits { max_connections: HEALTH_MAX_CONNECTIONS, ..exposure.connections };
        let (incoming, routes) = bounded(listener, routes, limits);
        let mut stopped = health_stopped;
        tokio::spawn(
            Server::builder().accept_http1(true).add_routes(Routes::from(routes)).serve_with_incoming_shutdown(
                incoming,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            ),
        )
    });
    let reflection_v1 = reflection().build_v1().expect("the embedded descriptor sets are valid");
    let reflection_v1alpha = reflection().build_v1alpha().expect("the embedded descriptor sets are valid");
    let sso = SsoServiceServer::new(gateway.clone()).max_decoding_message_size(MAX_REQUEST_BYTES);
    let mut grpc = Routes::builder();
    grpc.add_service(health_service).add_service(reflection_v1).add_service(reflection_v1alpha).add_service(sso);
    let routes = json_api::beside_grpc(grpc.routes().into_axum_router(), gateway, serving_now);

    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = exposure.connections;
    if let Some(open_files) = connections::open_file_limit()
        && open_files < limits.max_connections as u64 + DESCRIPTORS_BESIDE_CALLERS
    {
        tracing::warn!(
            open_files,
            max_connections = limits.max_connections,
            "the open-file limit (ulimit -n) leaves too few descriptors for --max-connections; raise it, or lower --max-connections"
        );
    }
    let (incoming, routes) = bounded(listener, routes, limits);
    let router = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_routes(Routes::from(routes));
    let stopped = async {
        let _ = stopped.await;
    };
    let mut server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match exposure.tls {
        Some(config) => Box::pin(router.serve_with_incoming_shutdown(
            tls::TlsIncoming::new(incoming, config, limits.tls_handshake_timeout),
            stopped,
        )),
        None => Box::pin(router.serve_with_incoming_shutdown(incoming, stopped)),
    };

    health.set_service_status(SERVICE_NAME, ServingStatus::Serving).await;
    health.set_service_status("", ServingStatus::Serving).await;

    tokio::select! {
        result = &mut server => {
            let _ = stop_health.send(true);
            return result;
        }
        () = shutdown => {}
    }
    tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: NOT_SERVING, draining in-flight RPCs");
    health.set_service_status(SERVICE_NAME, ServingStatus::NotServing).await;
    health.set_service_status("", ServingStatus::NotServing).await;
    let _ = serving.send(false);
    let _ = stop_accepting.send(());
    let drained = match tokio::time::timeout(grace, server).await {
        Ok(result) => {
            tracing::info!("drained, stopped");
            result
        }
        Err(_) => {
            tracing::warn!("grace elapsed with RPCs still in flight; stopping anyway");
            Ok(())
        }
    };
    // Probes keep getting NOT_SERVING until the main server is down.
    let _ = stop_health.send(true);
    if let Some(task) = health_task {
        let _ = task.await;
    }
    drained
}

/// Descriptors the process needs besides its callers' connections: upstream
/// and Redis connections, the listeners, logs.
const DESCRIPTORS_BESIDE_CALLERS: u64 = 256;

/// Connections held at once on the plaintext health listener.
const HEALTH_MAX_CONNECTIONS: usize = 256;

/// The listener's connections within `limits`, and the router that tells
/// them when their first request came.
fn bounded(listener: TcpListener, routes: axum::Router, limits: ConnectionLimits) -> (BoundedIncoming, axum::Router) {
    let first_requests = Arc::new(FirstRequests::default());
    let routes = routes.layer(axum::middleware::map_request_with_state(first_requests.clone(), mark_first_request));
    (BoundedIncoming::new(listener, limits, first_requests), routes)
}

/// Frees the request's connection from its first-request timeout.
async fn mark_first_request(
    axum::extract::State(first_requests): axum::extract::State<Arc<FirstRequests>>,
    request: axum::extract::Request,
) -> axum::extract::Request {
    first_requests.mark(request.extensions());
    request
}

/// Reflection over the SSO service, health and the `google.rpc` error
/// details, so that grpcurl can describe and decode all of them.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C). The handlers are
/// installed when this is called, not when the future is first polled: a
/// SIGTERM that comes between "SERVING" and the first poll must drain the
/// server, not kill the process. Call it inside the runtime, before building.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (terminate, interrupt) => {
                    tracing::warn!("cannot listen for SIGTERM and SIGINT; falling back to Ctrl-C alone");
                    drop((terminate, interrupt));
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
