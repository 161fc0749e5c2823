//! Whether this process looks like one replica of several while keeping its
//! state to itself. Without Redis every replica has its own quota guard, its
//! own idempotency keys and its own refresh results: N replicas spend N times
//! the vendor's quota, a retried CreateAccount that lands on another replica
//! creates again, and the reuse window holds only within one pod. Nothing
//! fails visibly, so start-up says it once (or refuses, when asked to).

use super::{ConfigError, invalid};

/// How this process is deployed, as far as start-up can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// Nothing says there are other replicas.
    Single,
    /// A pod of a Deployment or StatefulSet: the workload can run (and scale
    /// to) several replicas. Holds the pod name.
    ReplicatedPod(String),
}

impl Deployment {
    /// Reads the pod name Kubernetes' downward API passes in
    /// (`metadata.name`). A Deployment's pods are named
    /// `<deployment>-<replicaset hash>-<5 characters>`, a StatefulSet's
    /// `<name>-<ordinal>`; a bare pod's name has neither shape.
    pub fn from_pod_name(pod_name: Option<&str>) -> Self {
        match pod_name.map(str::trim).filter(|name| !name.is_empty()) {
            Some(name) if is_deployment_pod(name) || is_stateful_set_pod(name) => Self::ReplicatedPod(name.to_string()),
            _ => Self::Single,
        }
    }
}

/// `--require-shared-state` without Redis stops the start, wherever it runs.
pub fn check(require_shared_state: bool, has_redis: bool) -> Result<(), ConfigError> {
    if require_shared_state && !has_redis {
        return Err(invalid(
            "--require-shared-state",
            "needs --redis-url: without Redis each replica keeps its own vendor quota, idempotency keys and \
             refresh results",
        ));
    }
    Ok(())
}

/// The WARN line start-up logs for a replicated pod without Redis, if any.
pub fn warning(has_redis: bool, deployment: &Deployment) -> Option<String> {
    match deployment {
        Deployment::ReplicatedPod(pod) if !has_redis => Some(format!(
            "pod {pod} belongs to a replicated workload but no --redis-url is set: each replica spends the whole \
             vendor quota, an idempotent CreateAccount retried on another replica creates again, and the refresh \
             reuse window holds only within one pod; set --redis-url (or --require-shared-state to refuse to start)"
        )),
        _ => None,
    }
}

fn is_deployment_pod(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '-');
    let (Some(suffix), Some(hash), Some(base)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    // Kubernetes draws both from "bcdfghjklmnpqrstvwxz2456789".
    let drawn = |text: &str| text.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b));
    !base.is_empty() && suffix.len() == 5 && drawn(suffix) && (6..=10).contains(&hash.len()) && drawn(hash)
}

fn is_stateful_set_pod(name: &str) -> bool {
    match name.rsplit_once('-') {
        Some((base, ordinal)) => !base.is_empty() && !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_of_deployments_and_stateful_sets_look_replicated_and_other_names_do_not() {
        for name in ["mtr-sso-5d8f7c9b6d-x2x7k", "mtr-sso-7b9c4d5f8-q9z2w", "mtr-sso-0", "sso-12"] {
            assert_eq!(Deployment::from_pod_name(Some(name)), Deployment::ReplicatedPod(name.to_string()), "{name}");
        }
        for name in [None, Some(""), Some("mtr-sso"), Some("debug-pod"), Some("mtr-sso-abcde"), Some("laptop-1a")] {
            assert_eq!(Deployment::from_pod_name(name), Deployment::Single, "{name:?}");
        }
    }

    #[test]
    fn a_replicated_pod_without_redis_is_warned_about_and_refused_only_when_shared_state_is_required() {
        let pod = Deployment::from_pod_name(Some("mtr-sso-5d8f7c9b6d-x2x7k"));
        let warned = warning(false, &pod).expect("a warning");
        assert!(warned.contains("mtr-sso-5d8f7c9b6d-x2x7k") && warned.contains("--redis-url"), "{warned}");
        assert_eq!(warning(true, &pod), None);
        assert_eq!(warning(false, &Deployment::Single), None);
        assert!(check(false, false).is_ok());
        let refused = check(true, false).expect_err("refused");
        assert_eq!(refused.setting, "--require-shared-state");
        assert!(check(true, true).is_ok());
    }
}
