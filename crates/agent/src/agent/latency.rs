//! Network programming latency: from the change in the cluster that
//! produced an EndpointSlice (its `last-change-trigger-time` annotation) to
//! the sync that programmed it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube_ipvs_controller::ServiceRef;
use prometheus::HistogramVec;

/// The annotation the EndpointSlice controller sets to when the change that
/// produced the slice happened; network programming latency runs from it.
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The earliest change-trigger time per Service and family not yet
/// programmed, for changes made since the agent started.
#[derive(Debug)]
pub(crate) struct Triggers {
    /// When the agent started: older trigger times are not its latency.
    since: SystemTime,
    pending: BTreeMap<(ServiceRef, &'static str), SystemTime>,
}

impl Triggers {
    /// Tracks changes made after `since`.
    pub(crate) fn since(since: SystemTime) -> Self {
        Triggers {
            since,
            pending: BTreeMap::new(),
        }
    }

    /// Remembers when the change behind a slice happened, when that was
    /// after the agent started. As kube-proxy's
    /// `EndpointsChangeTracker.EndpointSliceUpdate` (`t.After(trackerStartTime)`):
    /// the slices of the initial list carry the time of their last change,
    /// often days before, which is no latency of this agent's (and at
    /// 10,000 Services their keys were 1.6 MiB of the first sync's peak).
    pub(crate) fn note(&mut self, slice: &EndpointSlice) {
        let Some(at) = slice.annotations().get(TRIGGER_TIME) else {
            return;
        };
        let Ok(at) = at.parse::<jiff::Timestamp>() else {
            return;
        };
        if SystemTime::from(at) <= self.since {
            return;
        }
        let Some(service) = slice.labels().get("kubernetes.io/service-name") else {
            return;
        };
        let Some(family) = super::changes::slice_family(slice) else {
            return;
        };
        let at = SystemTime::from(at);
        let key = (
            ServiceRef::new(slice.namespace().unwrap_or_default(), service.clone()),
            family,
        );
        self.pending
            .entry(key)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }

    /// Observes the latency of every noted change, now programmed, under
    /// the family of its slice.
    pub(crate) fn programmed(&mut self, histogram: &HistogramVec) {
        let wall = SystemTime::now();
        for ((_, family), at) in std::mem::take(&mut self.pending) {
            if let Ok(latency) = wall.duration_since(at) {
                histogram
                    .with_label_values(&[family])
                    .observe(latency.as_secs_f64());
            }
        }
    }
}
