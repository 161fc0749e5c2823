//! The configured tenants (upstream profiles), each with its two API clients
//! on the one shared HTTP client, looked up by the request's `tenant` field.

use std::{collections::HashMap, sync::Arc};

use super::{BrokerApi, GateContext, HttpClient, PlatformApi};
use crate::tenant::TenantSettings;

/// One broker/platform profile and its clients.
#[derive(Debug)]
pub struct Tenant {
    pub settings: TenantSettings,
    pub broker: BrokerApi,
    pub platform: PlatformApi,
}

impl Tenant {
    /// The clients of `settings` on the shared HTTP client, admitted by gates under `gates`.
    pub fn new(settings: TenantSettings, http: &HttpClient, gates: &Arc<GateContext>) -> Result<Self, String> {
        let in_tenant = |error: String| format!("tenant `{}`: {error}", settings.name);
        Ok(Self {
            broker: BrokerApi::new(http.clone(), &settings, gates.clone()).map_err(in_tenant)?,
            platform: PlatformApi::new(http.clone(), &settings, gates.clone()).map_err(in_tenant)?,
            settings,
        })
    }
}

/// All tenants, by name, and the default one.
#[derive(Debug)]
pub struct Tenants {
    by_name: HashMap<String, Arc<Tenant>>,
    default: Arc<Tenant>,
}

impl Tenants {
    /// Builds the clients of every tenant. `default_tenant` must name one of them.
    pub fn new(
        settings: Vec<TenantSettings>,
        default_tenant: &str,
        http: &HttpClient,
        gates: &Arc<GateContext>,
    ) -> Result<Self, String> {
        let mut by_name = HashMap::with_capacity(settings.len());
        for settings in settings {
            let tenant = Tenant::new(settings, http, gates)?;
            by_name.insert(tenant.settings.name.clone(), Arc::new(tenant));
        }
        let default =
            by_name.get(default_tenant).cloned().ok_or_else(|| format!("no tenant is named `{default_tenant}`"))?;
        Ok(Self { by_name, default })
    }

    /// The tenant a request names; empty selects the default.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        if name.is_empty() {
            return Some(self.default.clone());
        }
        self.by_name.get(name).cloned()
    }

    /// The default tenant's name.
    pub fn default_name(&self) -> &str {
        &self.default.settings.name
    }

    /// Names of all tenants, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// All tenants, sorted by name.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        let mut all: Vec<Arc<Tenant>> = self.by_name.values().cloned().collect();
        all.sort_by(|a, b| a.settings.name.cmp(&b.settings.name));
        all
    }
}
