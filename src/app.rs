//! Wires settings into a running service in two steps. [`App::build`] starts
//! the stores and the upstream ([`Upstreams::start`]: real tenants or the
//! built-in sandbox) and binds every listener, so the bound addresses are
//! known before anything is served; [`App::run`] serves until shutdown. `main`
//! and the tests take the same path. The two check modes live here too:
//! [`check_config`] and [`check_upstream`], which starts the upstream the
//! same way and hands its clients to the preflight.

use anyhow::Context as _;
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    audit::Audit,
    config::{ConnectionLimits, Settings, shared_state},
    idempotency::Idempotency,
    metrics::{self, Metrics},
    preflight::{self, Check},
    quota::SlidingWindows,
    redis_connection,
    reload::Reloader,
    reuse_store::ReuseStore,
    server::{self, ServerTls},
    service::{GatewayParts, SsoGateway},
    upstream::{GateContext, Upstreams},
};

/// A built service: listeners bound, not yet serving.
#[derive(Debug)]
pub struct App {
    gateway: SsoGateway,
    grpc: TcpListener,
    health: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    metrics: Arc<Metrics>,
    tls: Option<ServerTls>,
    /// Reads the certificates, callers, policy and API keys again when they change.
    reloader: Reloader,
    shutdown_grace: Duration,
    connections: ConnectionLimits,
    tenant_names: Vec<String>,
    default_tenant: String,
    /// The in-process sandbox, kept alive as long as the service.
    #[cfg(feature = "sandbox")]
    sandbox: Option<crate::sandbox::Sandbox>,
}

impl App {
    /// Starts everything the service needs and binds its listeners.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if let Some(warning) = shared_state::warning(settings.redis.is_some(), &settings.deployment) {
            tracing::warn!("{warning}");
        }
        let metrics = Arc::new(Metrics::new());
        let (tls, reloader) = Reloader::for_settings(&settings, metrics.clone())?;
        let reuse_window = settings.refresh_reuse_window;
        // Every RPC's deadline, and a CreateAccount's detached run, end within --upstream-timeout.
        let longest_run = settings.http.upstream_timeout;
        let (windows, idempotency, reuse_store) = match &settings.redis {
            Some(redis) => {
                let connection = redis_connection::connect(redis, redis_connection::CONNECT_TIMEOUT).await?;
                let (up, outages) = metrics.redis_series(if redis.is_cluster() { "cluster" } else { "single" });
                connection.report_to(up, outages);
                tracing::info!(redis = %redis.endpoint(), tls = redis.is_tls(), "limits, idempotency keys and refresh results shared through Redis");
                (
                    SlidingWindows::redis(connection.clone()),
                    Idempotency::redis(connection.clone(), settings.idempotency_window, longest_run),
                    ReuseStore::redis(connection, reuse_window),
                )
            }
            None => (
                SlidingWindows::in_memory(),
                Idempotency::in_memory(settings.idempotency_window, longest_run),
                ReuseStore::in_memory(reuse_window),
            ),
        };
        let windows = Arc::new(windows.with_window(settings.limit_window));
        let gates = GateContext::new(
            metrics.clone(),
            windows.clone(),
            settings.limits.upstream_per_minute,
            settings.quota_max_wait,
            settings.resilience,
        );
        let upstreams = Upstreams::start(&settings, gates).await?;
        #[cfg(feature = "sandbox")]
        let in_sandbox = upstreams.in_sandbox();
        let tenants = upstreams.tenants;
        let (tenant_names, default_tenant) = (tenants.names(), tenants.default_name().to_string());
        if settings.callers.is_none() {
            tracing::warn!("callers are not authenticated: anyone who reaches this port can sign any user in");
        }
        let audit = Audit::start(&settings.audit, metrics.clone())?;
        let gateway = SsoGateway::new(GatewayParts {
            tenants,
            upstream_timeout: settings.http.upstream_timeout,
            metrics: metrics.clone(),
            max_in_flight: settings.max_in_flight,
            callers: settings.callers.clone(),
            windows,
            limits: settings.limits,
            idempotency: Arc::new(idempotency),
            refresh_reuse: (!reuse_window.is_zero()).then_some(reuse_store),
            audit,
        });
        // The sandbox's demo user is everyone's first caller: the README and every
        // example sign it in, so its per-email limit is relaxed there.
        #[cfg(feature = "sandbox")]
        let gateway = if in_sandbox {
            gateway.with_email_limit_for(crate::sandbox::DEMO_EMAIL, crate::sandbox::DEMO_EMAIL_LIMIT_PER_MINUTE)
        } else {
            gateway
        };
        let grpc = bind("--listen", settings.listen).await?;
        let health = match settings.health_listen {
            Some(addr) => Some(bind("--health-listen", addr).await?),
            None => None,
        };
        let metrics_listener = match settings.metrics_addr {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            gateway,
            grpc,
            health,
            metrics_listener,
            metrics,
            tls,
            reloader,
            shutdown_grace: settings.shutdown_grace,
            connections: settings.connections,
            tenant_names,
            default_tenant,
            #[cfg(feature = "sandbox")]
            sandbox: upstreams.sandbox,
        })
    }

    /// Where gRPC is served.
    pub fn grpc_addr(&self) -> SocketAddr {
        local_addr(&self.grpc)
    }

    /// Where plaintext health is served, if apart from gRPC.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(local_addr)
    }

    /// Where `/metrics` is served, if at all.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(local_addr)
    }

    /// Serves until `shutdown` resolves and the drain ends.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let addr = self.grpc_addr();
        // The metrics endpoint outlives the gRPC drain, so the last scrape sees it.
        let (stop_metrics, metrics_stopped) = watch::channel(false);
        let metrics_task = self.metrics_listener.map(|listener| {
            let bound = local_addr(&listener);
            tracing::info!(metrics_addr = %bound, "metrics on http://{bound}/metrics");
            let mut stopped = metrics_stopped;
            tokio::spawn(metrics::serve(listener, self.metrics, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }))
        });
        if let Some(health) = &self.health {
            let bound = local_addr(health);
            tracing::info!(health_addr = %bound, "plaintext health on {bound}");
        }
        let exposure = server::Exposure { tls: self.tls, health_listener: self.health, connections: self.connections };
        let scheme = if exposure.tls.is_some() { "TLS" } else { "plaintext" };
        tracing::info!(grpc_addr = %addr, tenants = ?self.tenant_names, default_tenant = %self.default_tenant, %scheme, "mtr-sso listening on {addr}");
        server::serve(self.grpc, exposure, self.gateway, self.shutdown_grace, shutdown)
            .await
            .context("the server failed (check --tls-cert, --tls-key, --tls-client-ca)")?;
        let _ = stop_metrics.send(true);
        if let Some(task) = metrics_task {
            task.await??;
        }
        drop(self.reloader);
        #[cfg(feature = "sandbox")]
        drop(self.sandbox);
        Ok(())
    }
}

/// `--check-config`: the settings are checked when parsed; start fails on a
/// Redis it cannot use, so the check connects to it too.
pub async fn check_config(settings: &Settings) -> Result<(), redis_connection::RedisSettingError> {
    if let Some(redis) = &settings.redis {
        redis_connection::connect(redis, redis_connection::CONNECT_TIMEOUT).await?;
    }
    Ok(())
}

/// `--check-upstream`: starts the upstream as the service would and runs the
/// preflight's checks over its clients.
pub async fn check_upstream(settings: &Settings) -> anyhow::Result<Vec<Check>> {
    let gates = GateContext::new(
        Arc::new(Metrics::new()),
        Arc::new(SlidingWindows::in_memory()),
        settings.limits.upstream_per_minute,
        // A check that waits for quota would only hide that the quota is used up.
        Duration::ZERO,
        settings.resilience,
    );
    let upstreams = Upstreams::start(settings, gates).await?;
    preflight::check(&upstreams, &settings.http).await
}

async fn bind(setting: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("invalid setting {setting}: cannot bind {addr}: {e}"))
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    // A bound TCP listener always has a local address; the fallback is never seen.
    listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
