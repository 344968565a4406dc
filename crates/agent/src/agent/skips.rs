//! What the mapping left out, logged and counted once per skip: a relist
//! or resync that meets the same skip again says nothing new.
//!
//! Bound: the skips met since the start of the previous full sync. Each
//! full sync meets every current skip again, so one that is gone is
//! forgotten a resync period later (and logged again should it return).

use std::collections::HashMap;

use kube_ipvs_controller::Skipped;

use crate::metrics::Metrics;

/// The skips already logged and counted.
#[derive(Debug, Default)]
pub(crate) struct SkipLog {
    /// Each skip logged, with the full sync in which it was last met.
    counted: HashMap<Skipped, u64>,
    /// Full syncs begun.
    generation: u64,
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
            if let Some(generation) = self.counted.get_mut(skip) {
                *generation = self.generation;
                continue;
            }
            tracing::warn!(kind = skip.kind.as_str(), object = %skip.object, reason = %skip.reason, "skipped");
            metrics
                .skipped
                .with_label_values(&[skip.kind.as_str(), skip.reason.as_str()])
                .inc();
            self.counted.insert(skip.clone(), self.generation);
        }
    }

    /// A full sync begins: forgets the skips not met since the previous one
    /// began.
    pub(crate) fn begin_full(&mut self) {
        let previous = self.generation;
        self.counted.retain(|_, g| *g == previous);
        self.generation += 1;
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
