//! The tenants file: `[tenants.<name>]` tables, each a tenant's settings with
//! the same keys as the single-tenant flags, and an optional `default_tenant`.

use serde::Deserialize;
use std::{collections::BTreeMap, path::Path};

use super::{ConfigError, Upstream, invalid};
use crate::tenant::{DEFAULT_TENANT, TenantOptions};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    default_tenant: Option<String>,
    tenants: BTreeMap<String, TenantOptions>,
}

/// Reads and checks the tenants file at `path`.
pub(super) fn load(path: &Path) -> Result<Upstream, ConfigError> {
    let setting = format!("--tenants-file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| invalid(&setting, format!("cannot read it: {e}")))?;
    let file: TenantsFile = toml::from_str(&text).map_err(|e| invalid(where_in(&setting, &text, &e), e.message()))?;
    if file.tenants.is_empty() {
        return Err(invalid(&setting, "defines no [tenants.<name>] table"));
    }
    let mut tenants = Vec::with_capacity(file.tenants.len());
    for (name, options) in file.tenants {
        if name.is_empty() {
            return Err(invalid(&setting, "a tenant name is empty"));
        }
        let tenant = options
            .resolve(&name)
            .map_err(|bad| invalid(format!("tenants.{name}.{} in {}", bad.key, path.display()), bad.problem))?;
        tenants.push(tenant);
    }
    let default_tenant = match file.default_tenant {
        Some(name) if tenants.iter().any(|t| t.name == name) => name,
        Some(name) => {
            return Err(invalid(format!("default_tenant in {}", path.display()), format!("names no tenant: `{name}`")));
        }
        None if tenants.len() == 1 => tenants[0].name.clone(),
        None if tenants.iter().any(|t| t.name == DEFAULT_TENANT) => DEFAULT_TENANT.into(),
        None => {
            return Err(invalid(
                format!("default_tenant in {}", path.display()),
                "required when there are several tenants and none is named `default`",
            ));
        }
    };
    Ok(Upstream::Tenants { tenants, default_tenant })
}

/// The file with the line and key a parse error is at, so that e.g. an
/// unknown generation names its setting. Only the key is quoted, never the
/// value, which may be a secret.
fn where_in(setting: &str, text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else { return setting.to_string() };
    let start = span.start.min(text.len());
    let line_number = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_number - 1).unwrap_or("");
    match line.split_once('=').map(|(key, _)| key.trim()).filter(|key| !key.is_empty()) {
        Some(key) => format!("{setting} line {line_number} ({key})"),
        None => format!("{setting} line {line_number}"),
    }
}
