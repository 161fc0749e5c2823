//! The metrics of rotation without restart (see `reload`): per watched
//! source (`tls`, `callers`, `api_key.<tenant>`), the changes applied, the
//! changes refused, and whether the files as they are now are refused.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{Metrics, labels::ReloadLabels};

#[derive(Debug)]
pub(super) struct ReloadSeries {
    applied: Family<ReloadLabels, Counter>,
    refused: Family<ReloadLabels, Counter>,
    failing: Family<ReloadLabels, Gauge>,
}

impl ReloadSeries {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let series = Self { applied: Family::default(), refused: Family::default(), failing: Family::default() };
        registry.register("mtr_sso_reloads", "Changed files read again and applied, by source", series.applied.clone());
        registry.register(
            "mtr_sso_reload_failures",
            "Changed files that could not be used (the previous version stays in force), by source",
            series.refused.clone(),
        );
        registry.register(
            "mtr_sso_reload_failing",
            "1 while a source's files, as they are now, cannot be used and the previous version is still in force",
            series.failing.clone(),
        );
        series
    }
}

impl Metrics {
    /// `source` is watched: its series start at 0, so that the first failure
    /// already shows as an increase.
    pub fn reload_watched(&self, source: &str) {
        let labels = ReloadLabels { source: source.to_string() };
        let _ = self.reload.applied.get_or_create(&labels);
        let _ = self.reload.refused.get_or_create(&labels);
        self.reload.failing.get_or_create(&labels).set(0);
    }

    /// `source`'s changed files were applied (`ok`) or refused.
    pub fn reloaded(&self, source: &str, ok: bool) {
        let labels = ReloadLabels { source: source.to_string() };
        if ok { &self.reload.applied } else { &self.reload.refused }.get_or_create(&labels).inc();
        self.reload.failing.get_or_create(&labels).set(i64::from(!ok));
    }
}
