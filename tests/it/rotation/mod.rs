//! What the rotation tests share: files published as a Kubernetes Secret
//! mount publishes them, the captured log, and the metrics.
// Only some modules use each part of it.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::common::{CapturedLogs, Gateway};

/// A directory of files, published either in place or the way the kubelet
/// publishes a Secret: each version in a directory of its own, `..data` a
/// symlink to the current one (swapped by a rename), each file a symlink
/// through `..data`.
pub struct SecretDir {
    root: PathBuf,
    version: usize,
    symlinked: bool,
}

impl SecretDir {
    /// Kubernetes-style.
    pub fn new(files: &[(&str, &[u8])]) -> Self {
        let mut dir = Self::empty(true);
        dir.publish(files);
        dir
    }

    /// Plain files, written in place.
    pub fn plain(files: &[(&str, &[u8])]) -> Self {
        let dir = Self::empty(false);
        for (name, content) in files {
            std::fs::write(dir.root.join(name), content).expect("write");
        }
        dir
    }

    fn empty(symlinked: bool) -> Self {
        let root = std::env::temp_dir().join(format!("mtr-sso-rotation-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).expect("dir");
        Self { root, version: 0, symlinked }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A new version of the files, swapped in at once; the old one is removed.
    pub fn publish(&mut self, files: &[(&str, &[u8])]) {
        assert!(self.symlinked, "plain files are written in place");
        self.version += 1;
        let version = format!("..2026_12_04_v{}", self.version);
        std::fs::create_dir(self.root.join(&version)).expect("version dir");
        for (name, content) in files {
            std::fs::write(self.root.join(&version).join(name), content).expect("write");
        }
        std::os::unix::fs::symlink(&version, self.root.join("..data_tmp")).expect("symlink");
        std::fs::rename(self.root.join("..data_tmp"), self.root.join("..data")).expect("swap");
        for (name, _) in files {
            if std::fs::symlink_metadata(self.root.join(name)).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), self.root.join(name)).expect("symlink");
            }
        }
        if self.version > 1 {
            let _ = std::fs::remove_dir_all(self.root.join(format!("..2026_12_04_v{}", self.version - 1)));
        }
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The process's log, captured from the first call on.
pub fn captured_logs() -> CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let _ = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).try_init();
        logs
    })
    .clone()
}

/// The value of one series (name and labels as printed), if present.
pub async fn metric(gateway: &Gateway, series: &str) -> Option<f64> {
    let text = gateway.metrics_text().await;
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Waits (at most 5 s) until `series` reads `value`; how long it took.
pub async fn wait_for_metric(gateway: &Gateway, series: &str, value: f64) -> Duration {
    let started = Instant::now();
    while metric(gateway, series).await != Some(value) {
        assert!(started.elapsed() < Duration::from_secs(5), "{series} never reached {value}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}
