//! What the mapping left out, logged and counted once per skip: a relist
//! or resync that meets the same skip again says nothing new.

use std::collections::HashSet;

use kube_ipvs_controller::Skipped;

use crate::metrics::Metrics;

/// The skips already logged and counted.
#[derive(Debug, Default)]
pub(crate) struct SkipLog {
    counted: HashSet<Skipped>,
    /// What the last full sync's mapping left out.
    last_full: Vec<Skipped>,
}

impl SkipLog {
    /// Logs and counts each skip not seen before.
    pub(crate) fn record<'a>(
        &mut self,
        skips: impl IntoIterator<Item = &'a Skipped>,
        metrics: &Metrics,
    ) {
        for skip in skips {
            if self.counted.contains(skip) {
                continue;
            }
            tracing::warn!(kind = skip.kind.as_str(), object = %skip.object, reason = %skip.reason, "skipped");
            metrics
                .skipped
                .with_label_values(&[skip.kind.as_str(), skip.reason.as_str()])
                .inc();
            self.counted.insert(skip.clone());
        }
    }

    /// Keeps what a full sync's mapping left out.
    pub(crate) fn set_last_full(&mut self, skips: Vec<Skipped>) {
        self.last_full = skips;
    }

    /// What the last full sync's mapping left out.
    pub(crate) fn last_full(&self) -> &[Skipped] {
        &self.last_full
    }
}
