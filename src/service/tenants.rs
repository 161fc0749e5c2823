//! The configured tenants (upstream profiles), each with its two API clients
//! on the one shared HTTP client, looked up by the request's `tenant` field.

use std::{collections::HashMap, sync::Arc};

use crate::{
    error::SsoError,
    tenant::TenantSettings,
    upstream::{BrokerApi, GateContext, HttpClient, PlatformApi},
};

/// One broker/platform profile and its clients.
#[derive(Debug)]
pub struct Tenant {
    pub settings: TenantSettings,
    pub broker: BrokerApi,
    pub platform: PlatformApi,
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
        http: HttpClient,
        gates: Arc<GateContext>,
    ) -> Result<Self, String> {
        let mut by_name = HashMap::with_capacity(settings.len());
        for settings in settings {
            let in_tenant = |error: String| format!("tenant `{}`: {error}", settings.name);
            let tenant = Tenant {
                broker: BrokerApi::new(http.clone(), &settings, gates.clone()).map_err(in_tenant)?,
                platform: PlatformApi::new(http.clone(), &settings, gates.clone()).map_err(in_tenant)?,
                settings,
            };
            by_name.insert(tenant.settings.name.clone(), Arc::new(tenant));
        }
        let default =
            by_name.get(default_tenant).cloned().ok_or_else(|| format!("no tenant is named `{default_tenant}`"))?;
        Ok(Self { by_name, default })
    }

    /// The tenant a request names; empty selects the default. A refusal
    /// lists the tenants for which `may_know` holds.
    pub fn get_or_list(&self, name: &str, may_know: impl Fn(&str) -> bool) -> Result<Arc<Tenant>, SsoError> {
        if name.is_empty() {
            return Ok(self.default.clone());
        }
        self.by_name.get(name).cloned().ok_or_else(|| {
            let names = self.names();
            let known: Vec<&str> = names.iter().map(String::as_str).filter(|name| may_know(name)).collect();
            SsoError::unknown_tenant(Some(&known))
        })
    }

    /// The tenant a request names; empty selects the default. A refusal
    /// names no other tenant.
    pub fn get(&self, name: &str) -> Result<Arc<Tenant>, SsoError> {
        if name.is_empty() {
            return Ok(self.default.clone());
        }
        self.by_name.get(name).cloned().ok_or_else(|| SsoError::unknown_tenant(None))
    }

    /// Names of all tenants, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}
