//! `--check-upstream`: a preflight for operators. For every tenant it makes
//! only cheap reads with the service's own HTTP client (the Broker-API key on
//! `GET /service-info`, or on v2 a lookup of an email that cannot exist; the
//! platform's `GET /manager/platform-details` against the configured broker
//! id) and checks the cookie domain against the platform's host. It never
//! creates an account, never mints a token, and never prints a secret.

use std::{fmt::Write as _, sync::Arc};

use crate::{
    config::{Settings, Upstream},
    deadline::Deadline,
    metrics::Metrics,
    quota::SlidingWindows,
    service::{Tenant, Tenants},
    tenant::{Generation, TenantSettings},
    upstream::{GateContext, HttpClient, Proxies},
};

/// An address under a reserved top-level domain (RFC 2606): no account can have it.
pub const PROBE_EMAIL: &str = "mtr-sso-preflight@no-such-user.invalid";

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Nothing to check (e.g. no cookie domain configured).
    Skipped,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub tenant: String,
    pub check: &'static str,
    pub verdict: Verdict,
    /// What was seen; never a key, token or password.
    pub detail: String,
}

/// Runs every check of every configured tenant (the sandbox's, with `--sandbox`).
pub async fn check_upstream(settings: &Settings) -> anyhow::Result<Vec<Check>> {
    #[cfg(feature = "sandbox")]
    let mut _sandbox = None;
    let (tenants, default_tenant) = match &settings.upstream {
        Upstream::Tenants { tenants, default_tenant } => (tenants.clone(), default_tenant.clone()),
        #[cfg(feature = "sandbox")]
        Upstream::Sandbox(options) => {
            let started = crate::sandbox::Sandbox::start(options.clone()).await?;
            let tenants = started.served_tenants();
            _sandbox = Some(started);
            (tenants, crate::tenant::DEFAULT_TENANT.to_string())
        }
        #[cfg(not(feature = "sandbox"))]
        Upstream::Sandbox(_) => anyhow::bail!("this build has no sandbox (built without the `sandbox` feature)"),
    };
    let proxies = if settings.http.proxies_from_environment { Proxies::FromEnvironment } else { Proxies::None };
    let http = HttpClient::new(&settings.http, proxies)?;
    let gates = GateContext::new(
        Arc::new(Metrics::new()),
        Arc::new(SlidingWindows::in_memory()),
        settings.limits.upstream_per_minute,
        // A check that waits for quota would only hide that the quota is used up.
        std::time::Duration::ZERO,
        settings.resilience,
    );
    let tenants = Tenants::new(tenants, &default_tenant, http, gates).map_err(anyhow::Error::msg)?;
    let mut checks = Vec::new();
    for name in tenants.names() {
        let tenant = tenants.get(&name).map_err(|_| anyhow::anyhow!("tenant `{name}` vanished"))?;
        let deadline = || Deadline::after(settings.http.upstream_timeout);
        checks.push(broker_api(&tenant, deadline()).await);
        checks.push(platform(&tenant, deadline()).await);
        checks.push(cookie_domain(&tenant.settings));
    }
    Ok(checks)
}

fn row(tenant: &TenantSettings, check: &'static str, verdict: Verdict, detail: String) -> Check {
    Check { tenant: tenant.name.clone(), check, verdict, detail }
}

/// The Broker-API is reachable and takes the key.
async fn broker_api(tenant: &Tenant, deadline: Deadline) -> Check {
    let settings = &tenant.settings;
    let generation = settings.generation.name();
    let (verdict, detail) = match settings.generation {
        Generation::V1 | Generation::Crm => match tenant.broker.service_info(deadline).await {
            Ok(()) => (Verdict::Pass, format!("{generation}: GET {} accepted the key", settings.paths.service_info)),
            Err(error) => (Verdict::Fail, format!("{generation}: {error}")),
        },
        Generation::V2 => match tenant.broker.account_exists(PROBE_EMAIL, deadline).await {
            Ok(false) => {
                (Verdict::Pass, format!("{generation}: a lookup of a made-up email answered 404, key accepted"))
            }
            Ok(true) => {
                (Verdict::Pass, format!("{generation}: a lookup of a made-up email found an account, key accepted"))
            }
            Err(error) => (Verdict::Fail, format!("{generation}: {error}")),
        },
    };
    row(settings, "broker-api", verdict, detail)
}

/// The platform is reachable and reports the configured broker id.
async fn platform(tenant: &Tenant, deadline: Deadline) -> Check {
    let settings = &tenant.settings;
    let (verdict, detail) = match tenant.platform.platform_details(deadline).await {
        Err(error) => (Verdict::Fail, error.to_string()),
        Ok(details) => match (details.partner_id, &settings.broker_id) {
            (None, _) => (Verdict::Fail, "the platform details name no partnerId".to_string()),
            (Some(reported), Some(configured)) if &reported == configured => {
                (Verdict::Pass, format!("partnerId {reported} is the configured broker id"))
            }
            (Some(reported), Some(configured)) => (
                Verdict::Fail,
                format!("the platform reports partnerId {reported}, the configured broker id is {configured}"),
            ),
            (Some(reported), None) => (
                Verdict::Pass,
                format!("partnerId {reported}; no broker id configured, so Login requests must name one"),
            ),
        },
    };
    row(settings, "platform", verdict, detail)
}

/// The cookie domain is the platform's host or a parent of it.
fn cookie_domain(settings: &TenantSettings) -> Check {
    let host = settings.platform_url.host_str().unwrap_or_default().to_ascii_lowercase();
    let (verdict, detail) = match &settings.cookie_domain {
        None => (Verdict::Skipped, format!("not set: session cookies stay host-only to {host}")),
        Some(domain) if host == *domain || host.ends_with(&format!(".{domain}")) => {
            (Verdict::Pass, format!("{domain} covers the platform host {host}"))
        }
        Some(domain) => (Verdict::Fail, format!("{domain} does not cover the platform host {host}")),
    };
    row(settings, "cookie-domain", verdict, detail)
}

/// Whether every check passed or had nothing to check.
pub fn all_passed(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.verdict != Verdict::Fail)
}

/// The checks as an aligned text table with a header.
pub fn table(checks: &[Check]) -> String {
    let width = |column: fn(&Check) -> &str, title: &str| {
        checks.iter().map(|c| column(c).len()).chain([title.len()]).max().unwrap_or(0)
    };
    let tenant_width = width(|c| &c.tenant, "TENANT");
    let check_width = width(|c| c.check, "CHECK");
    let result_width = width(|c| c.verdict.label(), "RESULT");
    let mut text = String::new();
    let mut line = |tenant: &str, check: &str, result: &str, detail: &str| {
        let _ = writeln!(text, "{tenant:tenant_width$}  {check:check_width$}  {result:result_width$}  {detail}");
    };
    line("TENANT", "CHECK", "RESULT", "DETAIL");
    for check in checks {
        line(&check.tenant, check.check, check.verdict.label(), &check.detail);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns_and_a_single_failure_fails_the_whole() {
        let checks = vec![
            Check { tenant: "acme".into(), check: "broker-api", verdict: Verdict::Pass, detail: "fine".into() },
            Check { tenant: "globex-v2".into(), check: "platform", verdict: Verdict::Fail, detail: "bad".into() },
        ];
        let table = table(&checks);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TENANT     CHECK       RESULT  DETAIL"), "{table}");
        assert!(lines[2].starts_with("globex-v2  platform    FAIL    bad"), "{table}");
        assert!(!all_passed(&checks));
        assert!(all_passed(&checks[..1]));
    }
}
