//! Wires settings into a running service: the upstream (real tenants or the
//! built-in sandbox), the shared HTTP client, the listener and the server.

use std::{future::Future, sync::Arc};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    config::{DEFAULT_TENANT, Settings, Upstream},
    idempotency::Idempotency,
    metrics::{self, Metrics},
    quota::{Buckets, connect_redis},
    sandbox::Sandbox,
    server,
    service::SsoGateway,
    tenant::Tenants,
    upstream::{GateContext, HttpClient, Proxies},
};

/// Runs the service until `shutdown` resolves and the drain ends.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (tenants, default_tenant, sandbox) = match settings.upstream {
        Upstream::Tenants { tenants, default_tenant } => (tenants, default_tenant, None),
        Upstream::Sandbox(options) => {
            let sandbox = Sandbox::start(options).await?;
            tracing::warn!(
                sandbox_url = %sandbox.base_url(),
                "SANDBOX MODE: upstream is the built-in emulation of the vendor at {}; no real broker is called. \
                 Demo user {} (broker id {}); its password and the sandbox API key are in the README",
                sandbox.base_url(),
                crate::sandbox::DEMO_EMAIL,
                crate::sandbox::DEMO_BROKER_ID,
            );
            (vec![sandbox.tenant_settings(DEFAULT_TENANT)], DEFAULT_TENANT.to_string(), Some(sandbox))
        }
    };
    for tenant in &tenants {
        if tenant.cookie_domain.is_none() && sandbox.is_none() {
            tracing::warn!(tenant = %tenant.name, "no cookie domain: session cookies are host-only and will not reach the platform from another host");
        }
    }
    // The in-process sandbox is reached directly, whatever proxy the environment names.
    let proxies = if sandbox.is_some() { Proxies::None } else { Proxies::FromEnvironment };
    let http = HttpClient::new(&settings.http, proxies)?;
    let metrics = Arc::new(Metrics::new());
    let (buckets, idempotency) = match &settings.redis_url {
        Some(url) => {
            let connection =
                connect_redis(url).await.map_err(|e| anyhow::anyhow!("invalid setting --redis-url: {e}"))?;
            tracing::info!("limits and idempotency keys shared through Redis");
            (Buckets::redis(connection.clone()), Idempotency::redis(connection, settings.idempotency_window))
        }
        None => (Buckets::in_memory(), Idempotency::in_memory(settings.idempotency_window)),
    };
    let buckets = Arc::new(buckets);
    let gates =
        GateContext::new(metrics.clone(), buckets.clone(), settings.limits.upstream_per_minute, settings.resilience);
    let tenants = Tenants::new(tenants, &default_tenant, http, gates).map_err(anyhow::Error::msg)?;
    let names = tenants.names();
    let mut gateway = SsoGateway::new(tenants, settings.http.upstream_timeout, metrics.clone())
        .with_max_in_flight(settings.max_in_flight)
        .with_throttles(buckets, settings.limits)
        .with_idempotency(Arc::new(idempotency));
    match &settings.callers {
        Some(callers) => gateway = gateway.with_caller_auth(callers.clone()),
        None => tracing::warn!("callers are not authenticated: anyone who reaches this port can sign any user in"),
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("invalid setting --listen: cannot bind {}: {e}", settings.listen))?;
    let addr = listener.local_addr()?;

    // The metrics endpoint outlives the gRPC drain, so the last scrape sees it.
    let (stop_metrics, metrics_stopped) = watch::channel(false);
    let metrics_task = match settings.metrics_addr {
        Some(metrics_addr) => {
            let metrics_listener = metrics::bind(metrics_addr).await?;
            tracing::info!(metrics_addr = %metrics_listener.local_addr()?, "metrics on http://{}/metrics", metrics_listener.local_addr()?);
            let mut stopped = metrics_stopped;
            Some(tokio::spawn(metrics::serve(metrics_listener, metrics, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })))
        }
        None => None,
    };

    let health_listener = match settings.health_listen {
        Some(health_addr) => {
            let health_listener = TcpListener::bind(health_addr)
                .await
                .map_err(|e| anyhow::anyhow!("invalid setting --health-listen: cannot bind {health_addr}: {e}"))?;
            let bound = health_listener.local_addr()?;
            tracing::info!(health_addr = %bound, "plaintext health on {bound}");
            Some(health_listener)
        }
        None => None,
    };
    let exposure = server::Exposure {
        // With tokens accepted too, a caller may come without a certificate.
        client_certificate_optional: settings.callers.as_ref().is_some_and(|c| c.accepts_tokens()),
        tls: settings.tls.clone(),
        health_listener,
    };
    let scheme = if exposure.tls.is_some() { "TLS" } else { "plaintext" };
    tracing::info!(grpc_addr = %addr, tenants = ?names, default_tenant = %default_tenant, %scheme, "mtr-sso listening on {addr}");
    server::serve_exposed(listener, exposure, gateway, settings.shutdown_grace, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("the server failed (check --tls-cert, --tls-key, --tls-client-ca): {e}"))?;
    let _ = stop_metrics.send(true);
    if let Some(task) = metrics_task {
        task.await??;
    }
    drop(sandbox);
    Ok(())
}
