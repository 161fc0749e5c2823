use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("mtr-sso-reload-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&path).expect("dir");
        Self(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn counting(path: PathBuf, fail: Arc<std::sync::atomic::AtomicBool>) -> (Watched, Arc<AtomicUsize>) {
    let applied = Arc::new(AtomicUsize::new(0));
    let count = applied.clone();
    let apply: Apply = Box::new(move || {
        if fail.load(Ordering::SeqCst) {
            return Err(ConfigError { setting: "--policy-file".into(), problem: "broken".into() });
        }
        count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    (Watched::new("callers", vec![path], apply), applied)
}

#[test]
fn a_change_applies_once_it_holds_for_two_polls_and_a_refused_one_counts_once() {
    let dir = TempDir::new();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "v1").expect("write");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut watched, applied) = counting(path.clone(), fail.clone());
    let metrics = Metrics::new();
    metrics.reload_watched("callers");

    watched.poll(false, &metrics);
    assert_eq!(applied.load(Ordering::SeqCst), 0, "nothing changed");
    std::fs::write(&path, "v2").expect("write");
    watched.poll(false, &metrics);
    assert_eq!(applied.load(Ordering::SeqCst), 0, "seen once: it may be half-written");
    watched.poll(false, &metrics);
    assert_eq!(applied.load(Ordering::SeqCst), 1, "steady for two polls: applied");
    watched.poll(false, &metrics);
    assert_eq!(applied.load(Ordering::SeqCst), 1, "applied once");

    fail.store(true, Ordering::SeqCst);
    std::fs::write(&path, "broken").expect("write");
    for _ in 0..4 {
        watched.poll(false, &metrics);
    }
    let text = metrics.render();
    assert!(text.contains("mtr_sso_reload_failures_total{source=\"callers\"} 1"), "{text}");
    assert!(text.contains("mtr_sso_reload_failing{source=\"callers\"} 1"), "{text}");
    assert!(text.contains("mtr_sso_reloads_total{source=\"callers\"} 1"), "{text}");

    // SIGHUP applies whatever is there, changed or not.
    fail.store(false, Ordering::SeqCst);
    watched.poll(true, &metrics);
    assert_eq!(applied.load(Ordering::SeqCst), 2);
    assert!(metrics.render().contains("mtr_sso_reload_failing{source=\"callers\"} 0"));
}

#[test]
fn a_symlink_swap_is_a_change_even_when_the_content_is_the_same_length() {
    let dir = TempDir::new();
    for (version, content) in [("v1", "aaaa"), ("v2", "bbbb")] {
        std::fs::create_dir(dir.path().join(version)).expect("dir");
        std::fs::write(dir.path().join(version).join("key"), content).expect("write");
    }
    std::os::unix::fs::symlink("v1", dir.path().join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/key", dir.path().join("key")).expect("symlink");
    let paths = vec![dir.path().join("key")];
    let before = fingerprint(&paths);
    std::os::unix::fs::symlink("v2", dir.path().join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).expect("swap");
    assert_ne!(fingerprint(&paths), before);
}
