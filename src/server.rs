//! The gRPC server: the SSO service, `grpc.health.v1`, and reflection v1 and
//! v1alpha (grpcurl 1.8 speaks only v1alpha). It takes a bound listener and
//! a shutdown future; on shutdown health turns NOT_SERVING at once, new
//! connections are refused and in-flight RPCs get a bounded grace to finish.

use std::{future::Future, time::Duration};
use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;

use crate::{proto::sso_service_server::SsoServiceServer, service::SsoGateway};

/// The health service name of the SSO service.
pub const SERVICE_NAME: &str = "matchtrader.sso.v1.SsoService";

/// Largest request accepted; the biggest legitimate one (a full account form) is a few KiB.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Serves until `shutdown` resolves, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    gateway: SsoGateway,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");
    let sso = SsoServiceServer::new(gateway).max_decoding_message_size(MAX_REQUEST_BYTES);

    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    // Nagle's algorithm would hold back the later frames of an answer (headers,
    // data and trailers go out as separate writes) until the client ACKs.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sso)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);

    health.set_service_status(SERVICE_NAME, ServingStatus::Serving).await;
    health.set_service_status("", ServingStatus::Serving).await;

    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: NOT_SERVING, draining in-flight RPCs");
    health.set_service_status(SERVICE_NAME, ServingStatus::NotServing).await;
    health.set_service_status("", ServingStatus::NotServing).await;
    let _ = stop_accepting.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(result) => {
            tracing::info!("drained, stopped");
            result
        }
        Err(_) => {
            tracing::warn!("grace elapsed with RPCs still in flight; stopping anyway");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
