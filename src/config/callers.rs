//! Who may call: the server's TLS material (and the CA of callers' client
//! certificates), the callers' bearer tokens and the policy. Checked
//! together, because every way to authenticate needs a policy and a policy
//! needs a way to authenticate. The same files are read again when they
//! change (see `reload`): [`CallerFiles::read_tls`] and
//! [`CallerFiles::read_callers`] check a new version as start-up does.

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use std::{fmt, path::PathBuf, sync::Arc};

use super::{ConfigError, invalid};
use crate::auth::CallerAuth;

/// TLS material, as read from the files.
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

/// The only protocol offered by ALPN over TLS: gRPC needs HTTP/2, and the
/// JSON side's clients (curl, PHP's curl) negotiate it.
const ALPN_H2: &[u8] = b"h2";

impl TlsFiles {
    /// The server's TLS configuration; with a client CA, callers are asked
    /// for a certificate, which may be optional when tokens are accepted too.
    /// A problem names the file's flag, never the file's content.
    pub fn server_config(&self, client_certificate_optional: bool) -> Result<Arc<ServerConfig>, ConfigError> {
        let certificates = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| invalid("--tls-cert", "is not a PEM certificate chain"))?;
        if certificates.is_empty() {
            return Err(invalid("--tls-cert", "holds no PEM certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|_| invalid("--tls-key", "holds no PEM private key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("--tls-cert", format!("unusable TLS material: {e}")))?;
        let builder = match &self.client_ca_pem {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(ca) {
                    let certificate = certificate.map_err(|_| invalid("--tls-client-ca", "is not a PEM bundle"))?;
                    roots
                        .add(certificate)
                        .map_err(|e| invalid("--tls-client-ca", format!("holds an unusable certificate: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(invalid("--tls-client-ca", "holds no PEM certificate"));
                }
                let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if client_certificate_optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier =
                    verifier.build().map_err(|e| invalid("--tls-client-ca", format!("cannot verify with it: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certificates, key)
            .map_err(|e| invalid("--tls-cert/--tls-key", format!("unusable TLS material: {e}")))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }
}

/// The files as the flags name them; kept in the settings, so that they can
/// be read again when they change.
#[derive(Debug, Clone, Default)]
pub struct CallerFiles {
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub caller_tokens_file: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
}

/// The checked TLS material and caller policy.
pub(super) type Callers = (Option<TlsFiles>, Option<Arc<CallerAuth>>);

fn read(setting: &str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))
}

fn read_text(setting: &str, path: &PathBuf) -> Result<String, ConfigError> {
    String::from_utf8(read(setting, path)?).map_err(|_| invalid(setting, "is not UTF-8"))
}

impl CallerFiles {
    pub(super) fn resolve(&self) -> Result<Callers, ConfigError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(_), Some(_)) => self.read_tls()?,
            (Some(_), None) => return Err(invalid("--tls-key", "is required with --tls-cert")),
            (None, Some(_)) => return Err(invalid("--tls-cert", "is required with --tls-key")),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(invalid("--tls-client-ca", "needs --tls-cert and --tls-key"));
            }
            (None, None) => None,
        };
        if let Some(files) = &tls {
            files.server_config(false)?;
        }
        let mechanisms = self.tls_client_ca.is_some() || self.caller_tokens_file.is_some();
        let callers = match (&self.policy_file, mechanisms) {
            (Some(_), true) => self.read_callers()?.map(Arc::new),
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

    /// The TLS files as they are now; `None` without `--tls-cert` and `--tls-key`.
    pub fn read_tls(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        Ok(Some(TlsFiles {
            cert_pem: read("--tls-cert", cert)?,
            key_pem: read("--tls-key", key)?,
            client_ca_pem: self.tls_client_ca.as_ref().map(|ca| read("--tls-client-ca", ca)).transpose()?,
        }))
    }

    /// The policy and the tokens as they are now; `None` without `--policy-file`.
    pub fn read_callers(&self) -> Result<Option<CallerAuth>, ConfigError> {
        let Some(policy) = &self.policy_file else { return Ok(None) };
        let policy_text = read_text("--policy-file", policy)?;
        let tokens =
            self.caller_tokens_file.as_ref().map(|path| read_text("--caller-tokens-file", path)).transpose()?;
        let setting = if tokens.is_some() { "--policy-file or --caller-tokens-file" } else { "--policy-file" };
        CallerAuth::parse(&policy_text, tokens.as_deref()).map(Some).map_err(|e| invalid(setting, e))
    }
}
