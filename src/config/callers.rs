//! Who may call: the server's TLS material (and the CA of callers' client
//! certificates), the callers' bearer tokens and the policy. Checked
//! together, because every way to authenticate needs a policy and a policy
//! needs a way to authenticate.

use std::{fmt, path::PathBuf, sync::Arc};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::{ConfigError, invalid};
use crate::auth::CallerAuth;

/// TLS material, read at start.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// With it, callers must present a certificate it signed (unless tokens are also accepted).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles").field("key_pem", &"<redacted>").field("mtls", &self.client_ca_pem.is_some()).finish()
    }
}

impl TlsFiles {
    /// The server's TLS configuration; with a client CA, callers are asked
    /// for a certificate, which may be optional when tokens are accepted too.
    pub fn server_config(&self, client_certificate_optional: bool) -> ServerTlsConfig {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        if let Some(ca) = &self.client_ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(client_certificate_optional);
        }
        config
    }
}

/// The files as the flags name them.
#[derive(Debug)]
pub(super) struct CallerFiles<'a> {
    pub tls_cert: Option<&'a PathBuf>,
    pub tls_key: Option<&'a PathBuf>,
    pub tls_client_ca: Option<&'a PathBuf>,
    pub caller_tokens_file: Option<&'a PathBuf>,
    pub policy_file: Option<&'a PathBuf>,
}

/// The checked TLS material and caller policy.
pub(super) type Callers = (Option<TlsFiles>, Option<Arc<CallerAuth>>);

fn read(setting: &str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))
}

fn read_text(setting: &str, path: &PathBuf) -> Result<String, ConfigError> {
    String::from_utf8(read(setting, path)?).map_err(|_| invalid(setting, "is not UTF-8"))
}

impl CallerFiles<'_> {
    pub(super) fn resolve(&self) -> Result<Callers, ConfigError> {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert_pem: read("--tls-cert", cert)?,
                key_pem: read("--tls-key", key)?,
                client_ca_pem: self.tls_client_ca.map(|ca| read("--tls-client-ca", ca)).transpose()?,
            }),
            (Some(_), None) => return Err(invalid("--tls-key", "is required with --tls-cert")),
            (None, Some(_)) => return Err(invalid("--tls-cert", "is required with --tls-key")),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(invalid("--tls-client-ca", "needs --tls-cert and --tls-key"));
            }
            (None, None) => None,
        };
        if let Some(files) = &tls {
            Server::builder()
                .tls_config(files.server_config(false))
                .map_err(|e| invalid("--tls-cert/--tls-key/--tls-client-ca", format!("unusable TLS material: {e}")))?;
        }
        let mechanisms = self.tls_client_ca.is_some() || self.caller_tokens_file.is_some();
        let callers = match (self.policy_file, mechanisms) {
            (Some(policy), true) => {
                let policy_text = read_text("--policy-file", policy)?;
                let tokens = self.caller_tokens_file.map(|path| read_text("--caller-tokens-file", path)).transpose()?;
                let setting = if tokens.is_some() { "--policy-file or --caller-tokens-file" } else { "--policy-file" };
                let auth = CallerAuth::parse(&policy_text, tokens.as_deref()).map_err(|e| invalid(setting, e))?;
                Some(Arc::new(auth))
            }
            (Some(_), false) => {
                return Err(invalid(
                    "--policy-file",
                    "needs a way to authenticate callers: --tls-client-ca or --caller-tokens-file",
                ));
            }
            (None, true) => {
                let flag = if self.tls_client_ca.is_some() { "--tls-client-ca" } else { "--caller-tokens-file" };
                return Err(invalid(flag, "needs --policy-file to say what each caller may do"));
            }
            (None, false) => None,
        };
        Ok((tls, callers))
    }
}
