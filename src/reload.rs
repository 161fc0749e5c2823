//! Certificates and secrets rotate without a restart: the server's
//! certificate and key, the client-CA bundle, the callers' tokens, the policy
//! and each tenant's API key file are read again when they change, and all of
//! them on SIGHUP.
//!
//! Changes are found by polling, every [`POLL_INTERVAL`], each file's
//! resolved path and a hash of its content, rather than by inotify: a
//! Kubernetes Secret mount swaps a `..data` symlink to a new directory, which
//! an inotify watch on the file never sees and one on the directory sees
//! only as a rename of a hidden entry; resolving the path and hashing the
//! content notices every kind of swap (symlink, rename, rewrite in place),
//! needs no dependency, and costs a few reads of small files a second.
//!
//! A version is applied once it has been seen unchanged on two polls in a
//! row, so a file caught half-written (or a certificate already replaced
//! whose key is not yet) is never applied nor reported. A version that
//! cannot be used leaves the previous one in force: one ERROR line names the
//! files and the setting (never their content), and the metrics
//! `mtr_sso_reload_failures_total` and `mtr_sso_reload_failing` say so.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::task::JoinHandle;

use crate::{
    auth::CallerAuth,
    config::{CallerFiles, ConfigError, Settings, TlsFiles, Upstream},
    metrics::Metrics,
    reloadable::{Reloadable, SecretFile},
    tenant::{TenantSettings, read_api_key_file},
};

/// How often the files are looked at. A change applies within two intervals.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What is read from files and where the new versions go.
struct Sources {
    caller_files: CallerFiles,
    /// The server's TLS configuration, and whether a client certificate is optional.
    tls: Option<(Reloadable<rustls::ServerConfig>, bool)>,
    callers: Option<Arc<CallerAuth>>,
    /// Each tenant's API key, by tenant name; only those read from a file are watched.
    api_keys: Vec<(String, SecretFile)>,
}

/// Watches the files while it lives.
#[derive(Debug)]
pub struct Reloader {
    task: JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Apply = Box<dyn Fn() -> Result<(), ConfigError> + Send>;

/// One set of files read together, and what to do with a new version.
struct Watched {
    source: String,
    paths: Vec<PathBuf>,
    apply: Apply,
    /// The version in force (or refused last).
    settled: u64,
    /// The version seen on the latest poll.
    seen: u64,
}

impl Reloader {
    /// The server's TLS configuration from `settings`, and a reloader that
    /// watches every file they name. The tenants' API keys are shared with
    /// the clients started from the same settings (clones share the value).
    pub fn for_settings(
        settings: &Settings,
        metrics: Arc<Metrics>,
    ) -> Result<(Option<Reloadable<rustls::ServerConfig>>, Self), ConfigError> {
        let (tls, callers, caller_files) = (settings.tls.as_ref(), settings.callers.as_ref(), &settings.caller_files);
        // The sandbox's tenants have their keys inline: nothing to watch.
        let tenants: &[TenantSettings] = match &settings.upstream {
            Upstream::Tenants { tenants, .. } => tenants,
            Upstream::Sandbox(_) => &[],
        };
        // With tokens accepted too, a caller may come without a certificate.
        let client_certificate_optional =
            callers.is_some_and(|c| c.accepts_tokens()) || caller_files.caller_tokens_file.is_some();
        let tls = match tls {
            Some(files) => Some(Reloadable::new(files.server_config(client_certificate_optional)?)),
            None => None,
        };
        let sources = Sources {
            caller_files: caller_files.clone(),
            tls: tls.clone().map(|config| (config, client_certificate_optional)),
            callers: callers.cloned(),
            api_keys: tenants.iter().map(|tenant| (tenant.name.clone(), tenant.api_key.clone())).collect(),
        };
        Ok((tls, Self::start(sources, metrics)))
    }

    /// Starts watching every file `sources` names; needs a Tokio runtime.
    fn start(sources: Sources, metrics: Arc<Metrics>) -> Self {
        let watched = watched(sources);
        for entry in &watched {
            metrics.reload_watched(&entry.source);
        }
        let watched = Arc::new(Mutex::new(watched));
        // Installed now, not when the task first runs: a SIGHUP in between would end the process.
        let mut hangup = hangup_signal();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POLL_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = ticks.tick() => false,
                    Some(()) = recv(&mut hangup) => true,
                };
                if forced {
                    tracing::info!("SIGHUP: reading the certificates, callers, policy and API keys again");
                }
                let (watched, metrics) = (watched.clone(), metrics.clone());
                // File reads block; a Secret mount may sit on a slow network volume.
                let _ = tokio::task::spawn_blocking(move || {
                    let mut watched = watched.lock().unwrap_or_else(PoisonError::into_inner);
                    for entry in watched.iter_mut() {
                        entry.poll(forced, &metrics);
                    }
                })
                .await;
            }
        });
        Self { task }
    }
}

impl Watched {
    fn new(source: impl Into<String>, paths: Vec<PathBuf>, apply: Apply) -> Self {
        let now = fingerprint(&paths);
        Self { source: source.into(), paths, apply, settled: now, seen: now }
    }

    fn poll(&mut self, forced: bool, metrics: &Metrics) {
        let now = fingerprint(&self.paths);
        let steady = now == self.seen;
        self.seen = now;
        if !forced && (!steady || now == self.settled) {
            return;
        }
        self.settled = now;
        let files = self.paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ");
        match (self.apply)() {
            Ok(()) => {
                metrics.reloaded(&self.source, true);
                tracing::info!(source = %self.source, %files, "read again and applied: {}", self.source);
            }
            Err(error) => {
                metrics.reloaded(&self.source, false);
                tracing::error!(
                    source = %self.source,
                    %files,
                    setting = %error.setting,
                    "cannot use the changed {files}; keeping the previous version: {error}"
                );
            }
        }
    }
}

/// The resolved path and content of each file, hashed; a file that cannot be
/// read counts by its error, so that it is noticed (and reported) too.
fn fingerprint(paths: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for path in paths {
        std::fs::canonicalize(path).ok().hash(&mut hasher);
        match std::fs::read(path) {
            Ok(content) => content.hash(&mut hasher),
            Err(error) => error.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}

fn watched(sources: Sources) -> Vec<Watched> {
    let Sources { caller_files, tls, callers, api_keys } = sources;
    let mut watched = Vec::new();
    if let Some((config, client_certificate_optional)) = tls {
        let files = caller_files.clone();
        let paths = [&files.tls_cert, &files.tls_key, &files.tls_client_ca].into_iter().flatten().cloned().collect();
        let apply: Apply = Box::new(move || {
            let Some(tls): Option<TlsFiles> = files.read_tls()? else { return Ok(()) };
            config.replace(tls.server_config(client_certificate_optional)?);
            Ok(())
        });
        watched.push(Watched::new("tls", paths, apply));
    }
    if let Some(callers) = callers {
        let files = caller_files;
        let paths = [&files.caller_tokens_file, &files.policy_file].into_iter().flatten().cloned().collect::<Vec<_>>();
        if !paths.is_empty() {
            let apply: Apply = Box::new(move || {
                if let Some(new) = files.read_callers()? {
                    callers.replace_with(new);
                }
                Ok(())
            });
            watched.push(Watched::new("callers", paths, apply));
        }
    }
    for (tenant, key) in api_keys {
        let Some(path) = key.path().map(PathBuf::from) else { continue };
        let file = path.clone();
        let setting = format!("tenants.{tenant}.api_key_file");
        let apply: Apply = Box::new(move || {
            let value =
                read_api_key_file(&file).map_err(|problem| ConfigError { setting: setting.clone(), problem })?;
            key.replace(value);
            Ok(())
        });
        watched.push(Watched::new(format!("api_key.{tenant}"), vec![path], apply));
    }
    watched
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; files are still read again when they change");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// The next SIGHUP; never, where there is none.
async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests;
