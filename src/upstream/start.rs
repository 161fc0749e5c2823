//! The upstream a process talks to, started once from its settings: the
//! tenants of the settings, or the built-in sandbox and the tenants it
//! serves, each with its clients on one shared HTTP client. The service, the
//! preflight and the tests all start it here, so they call the same
//! upstream in the same way.

use std::sync::Arc;

use super::{GateContext, HttpClient, probe::Prober, tenants::Tenants};
use crate::{
    config::{Settings, Upstream},
    tenant::TenantSettings,
};

/// The started upstream: every tenant's clients, and the sandbox behind them
/// when the settings ask for it.
#[derive(Debug)]
pub struct Upstreams {
    pub tenants: Tenants,
    http: HttpClient,
    gates: Arc<GateContext>,
    /// The in-process sandbox, kept alive as long as its clients may call it.
    #[cfg(feature = "sandbox")]
    pub sandbox: Option<crate::sandbox::Sandbox>,
}

impl Upstreams {
    /// Starts the upstream of `settings` (the sandbox, with `--sandbox`) and
    /// builds every tenant's clients, each call admitted by gates under `gates`.
    pub async fn start(settings: &Settings, gates: Arc<GateContext>) -> anyhow::Result<Self> {
        #[cfg(feature = "sandbox")]
        let mut sandbox = None;
        let (tenants, default_tenant) = match &settings.upstream {
            Upstream::Tenants { tenants, default_tenant } => {
                for tenant in tenants.iter().filter(|tenant| tenant.cookie_domain.is_none()) {
                    tracing::warn!(tenant = %tenant.name, "no cookie domain: session cookies are host-only and will not reach the platform from another host");
                }
                (tenants.clone(), default_tenant.clone())
            }
            #[cfg(feature = "sandbox")]
            Upstream::Sandbox(options) => {
                // The sandbox's tenants are reached on loopback, where a host-only cookie is right.
                let started = crate::sandbox::Sandbox::start(options.clone()).await?;
                tracing::warn!(
                    sandbox_url = %started.base_url(),
                    "SANDBOX MODE: upstream is the built-in emulation of the vendor at {}; no real broker is called. \
                     Demo user {} (broker id {}); its password and the sandbox API key are in the README",
                    started.base_url(),
                    crate::sandbox::DEMO_EMAIL,
                    crate::sandbox::DEMO_BROKER_ID,
                );
                let tenants = started.served_tenants();
                sandbox = Some(started);
                (tenants, crate::tenant::DEFAULT_TENANT.to_string())
            }
            #[cfg(not(feature = "sandbox"))]
            Upstream::Sandbox(_) => anyhow::bail!("this build has no sandbox (built without the `sandbox` feature)"),
        };
        let http = HttpClient::new(&settings.http)?;
        let tenants = Tenants::new(tenants, &default_tenant, &http, &gates).map_err(anyhow::Error::msg)?;
        Ok(Self {
            tenants,
            http,
            gates,
            #[cfg(feature = "sandbox")]
            sandbox,
        })
    }

    /// Whether the upstream is the built-in sandbox.
    pub fn in_sandbox(&self) -> bool {
        #[cfg(feature = "sandbox")]
        return self.sandbox.is_some();
        #[cfg(not(feature = "sandbox"))]
        false
    }

    /// The preflight's reads of `tenant`, on the same HTTP client, admitted
    /// by gates of their own under the same context.
    pub fn prober(&self, tenant: &TenantSettings) -> Result<Prober, String> {
        Prober::new(self.http.clone(), tenant, self.gates.clone())
    }
}
