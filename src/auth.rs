//! Who may call which RPC. Callers are other internal services, identified by
//! their client certificate (mTLS: the first SPIFFE/URI SAN, else the first
//! DNS SAN) or by a per-caller bearer token from a secret file. A policy file
//! says which caller may call which RPC, for which tenants. The credential
//! itself is never logged or echoed: only the caller's name is.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use subtle::ConstantTimeEq as _;
use tonic::Request;

use crate::reloadable::Reloadable;

/// The RPC names a policy may grant.
pub const RPCS: [&str; 4] = ["CreateAccount", "IssueOneTimeToken", "Login", "Refresh"];

/// Shortest bearer token accepted: guessing must be hopeless.
const MIN_TOKEN_LEN: usize = 24;

/// What one caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    /// `None`: every RPC.
    rpcs: Option<HashSet<String>>,
    /// `None`: every tenant.
    tenants: Option<HashSet<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    callers: BTreeMap<String, GrantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    rpcs: Vec<String>,
    tenants: Option<Vec<String>>,
}

/// Caller authentication and the policy. The tokens and grants are replaced
/// as a whole when their files change ([`CallerAuth::replace_with`]); each
/// check reads the ones current at that moment.
#[derive(Debug)]
pub struct CallerAuth {
    rules: Reloadable<Rules>,
}

/// The tokens and grants read from one version of the files.
#[derive(Debug)]
struct Rules {
    tokens: Vec<(String, SecretString)>,
    grants: BTreeMap<String, Grant>,
}

impl CallerAuth {
    /// Parses the policy file and the (optional) tokens file. Errors name the file and line.
    pub fn parse(policy_toml: &str, tokens: Option<&str>) -> Result<Self, String> {
        let file: PolicyFile = toml::from_str(policy_toml).map_err(|e| e.message().to_string())?;
        let mut grants = BTreeMap::new();
        for (caller, entry) in file.callers {
            let rpcs = if entry.rpcs.iter().any(|r| r == "*") {
                None
            } else {
                if let Some(unknown) = entry.rpcs.iter().find(|r| !RPCS.contains(&r.as_str())) {
                    return Err(format!(
                        "caller `{caller}`: unknown RPC `{unknown}` (known: {}, or *)",
                        RPCS.join(", ")
                    ));
                }
                Some(entry.rpcs.into_iter().collect())
            };
            let tenants = match entry.tenants {
                Some(list) if list.iter().any(|t| t == "*") => None,
                Some(list) => Some(list.into_iter().collect()),
                None => None,
            };
            grants.insert(caller, Grant { rpcs, tenants });
        }
        let mut parsed_tokens: Vec<(String, SecretString)> = Vec::new();
        for (number, line) in tokens.unwrap_or("").lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (caller, token) = line
                .split_once(char::is_whitespace)
                .map(|(c, t)| (c.trim(), t.trim()))
                .ok_or_else(|| format!("tokens file line {}: expected `<caller> <token>`", number + 1))?;
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    // Not the caller's name: with the columns swapped it would be the token.
                    "tokens file line {}: the token is shorter than {MIN_TOKEN_LEN} characters (expected `<caller> <token>`)",
                    number + 1
                ));
            }
            if parsed_tokens.iter().any(|(_, t)| t.expose_secret() == token) {
                return Err(format!("tokens file line {}: a token is used twice", number + 1));
            }
            parsed_tokens.push((caller.to_string(), SecretString::from(token.to_string())));
        }
        Ok(Self { rules: Reloadable::new(Rules { tokens: parsed_tokens, grants }) })
    }

    /// From now on, checks use `other`'s tokens and grants.
    pub fn replace_with(&self, other: CallerAuth) {
        self.rules.replace(other.rules.current());
    }

    /// Whether callers may present a bearer token (so a client certificate is optional).
    pub fn accepts_tokens(&self) -> bool {
        !self.rules.current().tokens.is_empty()
    }

    /// The caller's name, from its client certificate or its bearer token;
    /// `None` when it presented neither in a form this service knows.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Option<String> {
        if let Some(name) = certificate_identity(request) {
            return Some(name);
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))?;
        // Every token is compared, in constant time, so timing tells nothing.
        let mut found = None;
        for (caller, token) in &self.rules.current().tokens {
            if bool::from(token.expose_secret().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// Whether `caller` may call `method` for `tenant`.
    pub fn authorize(&self, caller: &str, method: &str, tenant: &str) -> bool {
        self.rules.current().grants.get(caller).is_some_and(|grant| {
            grant.rpcs.as_ref().is_none_or(|rpcs| rpcs.contains(method))
                && grant.tenants.as_ref().is_none_or(|tenants| tenants.contains(tenant))
        })
    }
}

/// The first URI SAN (e.g. a SPIFFE id), else the first DNS SAN, of the
/// client certificate the TLS handshake verified.
fn certificate_identity<T>(request: &Request<T>) -> Option<String> {
    let certs = request.peer_certs()?;
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let names = cert.subject_alternative_name().ok().flatten()?;
    let mut dns = None;
    for name in &names.value.general_names {
        match name {
            x509_parser::extensions::GeneralName::URI(uri) => return Some((*uri).to_string()),
            x509_parser::extensions::GeneralName::DNSName(name) if dns.is_none() => dns = Some((*name).to_string()),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[callers.crm]
rpcs = ["Login", "Refresh"]
tenants = ["acme"]

[callers."spiffe://cluster.local/ns/signup/sa/backend"]
rpcs = ["*"]
"#;

    #[test]
    fn the_policy_grants_rpcs_per_caller_and_tenant() {
        let auth = CallerAuth::parse(POLICY, None).expect("valid");
        assert!(auth.authorize("crm", "Login", "acme"));
        assert!(!auth.authorize("crm", "Login", "globex"), "other tenant");
        assert!(!auth.authorize("crm", "IssueOneTimeToken", "acme"), "other RPC");
        assert!(auth.authorize("spiffe://cluster.local/ns/signup/sa/backend", "CreateAccount", "globex"));
        assert!(!auth.authorize("stranger", "Login", "acme"));
    }

    #[test]
    fn bad_policies_and_token_files_are_refused_with_their_line() {
        assert!(
            CallerAuth::parse("[callers.x]\nrpcs = [\"Logout\"]\n", None).expect_err("unknown rpc").contains("Logout")
        );
        let short = CallerAuth::parse(POLICY, Some("crm short")).expect_err("short");
        assert!(short.contains("line 1") && !short.contains(" short "), "{short}");
        // Columns swapped: the first column is the token, and the refusal
        // (logged at every reload) must not show it.
        let swapped = CallerAuth::parse(POLICY, Some("Zq8-secret-token-value crm")).expect_err("swapped");
        assert!(swapped.contains("line 1") && !swapped.contains("Zq8-secret-token-value"), "{swapped}");
        let twice = format!("a {0}\nb {0}\n", "t".repeat(30));
        assert!(CallerAuth::parse(POLICY, Some(&twice)).expect_err("reused").contains("line 2"));
    }

    #[test]
    fn a_bearer_token_names_its_caller_and_anything_else_is_refused() {
        let token = "k".repeat(32);
        let auth = CallerAuth::parse(POLICY, Some(&format!("# callers\ncrm {token}\n"))).expect("valid");
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        assert_eq!(auth.authenticate(&request).expect("known"), "crm");
        request.metadata_mut().insert("authorization", "Bearer nope".parse().expect("ascii"));
        assert_eq!(auth.authenticate(&request), None);
        assert_eq!(auth.authenticate(&Request::new(())), None);
    }
}
