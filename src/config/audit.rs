//! The audit trail's settings: where events go, how emails are hashed or
//! shown, what a lost event does, and the optional OTLP copy. Flattened into
//! the command line; checked into [`AuditSettings`].

use clap::{Args, ValueEnum};
use secrecy::SecretString;
use std::path::PathBuf;
use url::Url;

use super::{ConfigError, invalid};
use crate::setting_values::{parse_base_url, read_secret_file};

/// The shortest email key accepted: shorter keys make the hashes of likely
/// emails guessable offline.
const SHORTEST_EMAIL_KEY: usize = 32;

/// What an RPC does when its audit event cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOnFailure {
    /// The RPC goes on; the lost event is counted (`mtr_sso_audit_events_lost_total`).
    Open,
    /// The RPC fails with UNAVAILABLE `AUDIT_UNAVAILABLE`: no access without its record.
    Closed,
}

/// Where audit events go and what they may show.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The file events are appended to; stdout (beside the log, marked `audience: audit`) when `None`.
    pub file: Option<PathBuf>,
    /// The key of the emails' HMAC; a random key for this process when `None`.
    pub email_key: Option<SecretString>,
    /// Emails in clear beside their hash: only when the operator opts in.
    pub emails_in_clear: bool,
    pub on_failure: AuditOnFailure,
    /// The CloudEvents `source`: `/mtr-sso`, or `/mtr-sso/<pod>` when the pod name is known.
    pub source: String,
    /// An OTLP/gRPC collector that gets a copy of every event as a log record; none when `None`.
    pub otlp_endpoint: Option<Url>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            file: None,
            email_key: None,
            emails_in_clear: false,
            on_failure: AuditOnFailure::Open,
            source: "/mtr-sso".into(),
            otlp_endpoint: None,
        }
    }
}

/// The audit trail's flags.
#[derive(Debug, Clone, Args)]
pub struct AuditOptions {
    /// File the audit events are appended to, one JSON object per line; unset: stdout, each line
    /// marked `"audience":"audit"` apart from the log (see docs/audit.md).
    #[arg(long, env = "MTR_SSO_AUDIT_FILE")]
    pub audit_file: Option<PathBuf>,
    /// Secret file holding the key (32 bytes or more) of the emails' HMAC in audit events, so that
    /// events of one email join across replicas and restarts; unset: a random key per process.
    #[arg(long, env = "MTR_SSO_AUDIT_EMAIL_KEY_FILE")]
    pub audit_email_key_file: Option<PathBuf>,
    /// Write emails in clear in audit events, beside their hash.
    #[arg(long, env = "MTR_SSO_AUDIT_EMAILS_IN_CLEAR")]
    pub audit_emails_in_clear: bool,
    /// When an audit event cannot be written: `open` answers the RPC and counts the lost event,
    /// `closed` fails the RPC with UNAVAILABLE (AUDIT_UNAVAILABLE).
    #[arg(long, env = "MTR_SSO_AUDIT_ON_FAILURE", value_enum, default_value = "open")]
    pub audit_on_failure: AuditOnFailure,
    /// OTLP/gRPC collector that also gets every audit event as a log record (e.g.
    /// `http://otel-collector:4317`); none when unset.
    #[arg(long, env = "MTR_SSO_AUDIT_OTLP_ENDPOINT")]
    pub audit_otlp_endpoint: Option<String>,
}

impl AuditOptions {
    /// Checks the flags; `pod_name` (from `--pod-name`) names the event source.
    pub fn resolve(&self, pod_name: Option<&str>) -> Result<AuditSettings, ConfigError> {
        let email_key = match &self.audit_email_key_file {
            Some(path) => {
                let key = read_secret_file(path).map_err(|problem| invalid("--audit-email-key-file", problem))?;
                if key.len() < SHORTEST_EMAIL_KEY {
                    return Err(invalid(
                        "--audit-email-key-file",
                        format!("{} holds fewer than {SHORTEST_EMAIL_KEY} bytes", path.display()),
                    ));
                }
                Some(SecretString::from(key))
            }
            None => None,
        };
        let otlp_endpoint = match &self.audit_otlp_endpoint {
            Some(text) => Some(parse_base_url(text).map_err(|problem| invalid("--audit-otlp-endpoint", problem))?),
            None => None,
        };
        let pod = pod_name.map(str::trim).filter(|name| !name.is_empty());
        Ok(AuditSettings {
            file: self.audit_file.clone(),
            email_key,
            emails_in_clear: self.audit_emails_in_clear,
            on_failure: self.audit_on_failure,
            source: pod.map_or_else(|| "/mtr-sso".to_string(), |pod| format!("/mtr-sso/{pod}")),
            otlp_endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        audit: AuditOptions,
    }

    fn resolved(args: &[&str], pod: Option<&str>) -> Result<AuditSettings, ConfigError> {
        Flags::try_parse_from(std::iter::once("mtr-sso").chain(args.iter().copied())).expect("flags").audit.resolve(pod)
    }

    #[test]
    fn a_short_or_missing_key_file_and_a_bad_endpoint_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("mtr-sso-audit-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let short = dir.join("short");
        std::fs::write(&short, "k".repeat(31) + "\n").expect("write");
        let long = dir.join("long");
        std::fs::write(&long, "k".repeat(32) + "\n").expect("write");
        let refused = |args: &[&str]| resolved(args, None).expect_err("refused").setting;
        assert_eq!(refused(&["--audit-email-key-file", short.to_str().expect("path")]), "--audit-email-key-file");
        assert_eq!(refused(&["--audit-email-key-file", "/nonexistent/key"]), "--audit-email-key-file");
        assert_eq!(refused(&["--audit-otlp-endpoint", "not a url"]), "--audit-otlp-endpoint");
        let settings =
            resolved(&["--audit-email-key-file", long.to_str().expect("path")], Some("mtr-sso-7d9f-x2k")).expect("ok");
        assert!(settings.email_key.is_some());
        assert_eq!(settings.source, "/mtr-sso/mtr-sso-7d9f-x2k");
        assert_eq!(settings.on_failure, AuditOnFailure::Open, "fail-open by default");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
