//! `--check-upstream`: a preflight for operators, a checker over the clients
//! the service itself starts ([`Upstreams`]). For every tenant it makes only
//! cheap reads: the Broker-API's key, generation and lookup (see
//! [`broker_api`]), the platform's `GET /manager/platform-details` against
//! the configured broker id, and the cookie domain against the platform's
//! host. Each row says what its reads
//! proved, and no more. It never creates an account, never mints a token,
//! and never prints a secret.

mod broker_api;

use std::fmt::Write as _;

pub use broker_api::PROBE_EMAIL;

use crate::{
    config::HttpSettings,
    deadline::Deadline,
    tenant::TenantSettings,
    upstream::{
        Tenant, Upstreams,
        probe::{ProbeAnswer, Prober},
    },
};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The reads proved what the check is about.
    Pass,
    /// The reads proved it wrong, or the upstream cannot be used as set.
    Fail,
    /// The reads could not tell (e.g. a 400 on the lookup probe); not a failure.
    Inconclusive,
    /// Nothing to check (e.g. no cookie domain configured).
    Skipped,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "unsure",
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

/// Runs every check of every tenant of `upstreams`, on their own clients.
pub async fn check(upstreams: &Upstreams, http: &HttpSettings) -> anyhow::Result<Vec<Check>> {
    let user_agent = http.user_agent.as_str();
    let deadline = || Deadline::after(http.upstream_timeout);
    let mut checks = Vec::new();
    for tenant in upstreams.tenants.all() {
        let prober = upstreams.prober(&tenant.settings).map_err(anyhow::Error::msg)?;
        let rows = broker_api::check(&prober, &tenant.settings, user_agent, deadline).await;
        for (check, (verdict, detail)) in
            [("broker-api", rows.key), ("generation", rows.generation), ("lookup", rows.lookup)]
        {
            checks.push(row(&tenant.settings, check, verdict, detail));
        }
        checks.push(platform(&tenant, &prober, user_agent, deadline()).await);
        checks.push(cookie_domain(&tenant.settings));
    }
    Ok(checks)
}

fn row(tenant: &TenantSettings, check: &'static str, verdict: Verdict, detail: String) -> Check {
    Check { tenant: tenant.name.clone(), check, verdict, detail }
}

/// What to tell an operator whose read met bot protection: it is not the
/// key, and only the vendor can let the service through.
fn bot_protection(what: &str, answer: &ProbeAnswer, host: &str, user_agent: &str) -> String {
    let mitigated = answer.bot_challenge.as_deref().unwrap_or_default();
    format!(
        "bot protection: {what} answered 403 with cf-mitigated: {mitigated}, from the proxy in front of {host}, \
         before the API saw the call (not a key problem); ask the vendor to exempt this service's egress IP \
         (or its User-Agent \"{user_agent}\") from the challenge on {host}"
    )
}

/// The platform is reachable and reports the configured broker id.
async fn platform(tenant: &Tenant, prober: &Prober, user_agent: &str, deadline: Deadline) -> Check {
    let settings = &tenant.settings;
    let (verdict, detail) = match tenant.platform.platform_details(deadline).await {
        // A 403 here is a proxy more often than the platform: read it again to see which.
        Err(error) if error.status == Some(403) => {
            let path = &settings.paths.platform_details;
            match prober.platform(path, Deadline::after(deadline.remaining())).await {
                Ok(answer) if answer.bot_challenge.is_some() => {
                    let host = settings.platform_url.host_str().unwrap_or_default();
                    (Verdict::Fail, bot_protection(&format!("GET {path}"), &answer, host, user_agent))
                }
                _ => (Verdict::Fail, error.to_string()),
            }
        }
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

/// Whether no check failed (passed, inconclusive or nothing to check).
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
