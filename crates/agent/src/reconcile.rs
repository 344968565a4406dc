//! The reconciler: holds the desired state (indexed) and what the kernel
//! holds, plans, applies through the [`Dataplane`], and records the results.
//!
//! Three kinds of sync:
//! - full: one dump, an in-memory diff against everything (start and every
//!   `--ipvs-sync-period`, and after a failure);
//! - incremental: only the Services a change touched, from the cached kernel
//!   state, with no dump;
//! - drain check: fresh counters of the virtual servers with draining real
//!   servers, so they go as soon as their connections do.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_ipvs_controller::{
    plan, DesiredState, Draining, Extent, Intent, Observed, Owner, PlanConfig, Scope, ServiceState,
};
use kube_ipvs_netlink::VirtualServerKey;
use serde::Serialize;

use crate::dataplane::{Dataplane, DataplaneError};
use crate::error::Chain;
use crate::metrics::Metrics;

/// The kinds of sync the reconciler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncKind {
    /// One dump and a diff against everything.
    Full,
    /// Only the Services a change touched, against the cached kernel state.
    Incremental,
    /// Fresh counters of draining real servers, and deletion of those done.
    Drain,
}

impl SyncKind {
    /// The kind as a log field.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Incremental => "incremental",
            SyncKind::Drain => "drain",
        }
    }

    /// Whether the sync programs changes from the sources (a drain check
    /// only finishes what an earlier sync began).
    pub fn programs_changes(self) -> bool {
        !matches!(self, SyncKind::Drain)
    }
}

impl fmt::Display for SyncKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one sync did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    /// Kernel writes that succeeded.
    pub writes: usize,
    /// Writes by kind (`new_service`, `del_dest`, `bind_address`...), successes and failures.
    pub operations: BTreeMap<&'static str, usize>,
    /// The operations that failed, each naming its operation, with the
    /// netlink error as its source.
    #[serde(serialize_with = "as_chains")]
    pub failures: Vec<Arc<DataplaneError>>,
    /// `sendmsg` calls the writes took.
    pub sendmsg_calls: usize,
    /// Whether the sync dumped the kernel first.
    pub dumped: bool,
    /// How long it took.
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
}

fn as_chains<S: serde::Serializer>(
    errors: &[Arc<DataplaneError>],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(errors.iter().map(|e| Chain(&**e).to_string()))
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl SyncReport {
    /// Whether every operation succeeded.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The reconciler over a dataplane `D`.
pub struct Reconciler<D> {
    dataplane: D,
    intent: Intent,
    observed: Observed,
    draining: Draining,
    config: PlanConfig,
    metrics: Metrics,
}

impl<D: Dataplane> Reconciler<D> {
    /// A reconciler that has not looked at the kernel yet.
    pub fn new(dataplane: D, config: PlanConfig, metrics: Metrics) -> Self {
        Reconciler {
            dataplane,
            intent: Intent::default(),
            observed: Observed::default(),
            draining: Draining::new(),
            config,
            metrics,
        }
    }

    /// The indexed desired state.
    pub fn intent(&self) -> &Intent {
        &self.intent
    }

    /// What the kernel holds, as last seen.
    pub fn observed(&self) -> &Observed {
        &self.observed
    }

    /// The real servers draining now.
    pub fn draining(&self) -> &Draining {
        &self.draining
    }

    /// The node's addresses, read from the kernel now.
    pub async fn read_node_addresses(&mut self) -> Result<Vec<std::net::IpAddr>, DataplaneError> {
        self.dataplane.node_addresses().await
    }

    /// Replaces the whole desired state, dumps the kernel and makes it match.
    pub async fn full_sync(&mut self, desired: DesiredState) -> Result<SyncReport, DataplaneError> {
        self.intent = Intent::succeed(&self.intent, desired);
        self.resync().await
    }

    /// Dumps the kernel and repairs any difference from the desired state.
    pub async fn resync(&mut self) -> Result<SyncReport, DataplaneError> {
        let started = Instant::now();
        self.observed = match self.dataplane.observe().await {
            Ok(observed) => observed,
            Err(e) => {
                self.metrics.sync_errors.inc();
                return Err(e);
            }
        };
        let mut report = self.execute(Extent::All, started).await;
        report.dumped = true;
        Ok(report)
    }

    /// Applies the changes of a few Services or stream-services entries
    /// (`None`: deleted, or not served) against the cached kernel state: no
    /// dump, only their operations.
    pub async fn sync_services(
        &mut self,
        changes: impl IntoIterator<Item = (Owner, Option<ServiceState>)>,
    ) -> SyncReport {
        let started = Instant::now();
        let mut scope = Scope::default();
        for (service, state) in changes {
            scope.extend(self.intent.replace(service, state));
        }
        self.execute(Extent::Scope(&scope), started).await
    }

    /// Refreshes the counters of virtual servers with draining real servers
    /// and deletes those whose connections are gone or whose time is up.
    pub async fn check_draining(&mut self) -> Result<SyncReport, DataplaneError> {
        let started = Instant::now();
        let mut keys: Vec<VirtualServerKey> = self.draining.keys().map(|(k, _)| *k).collect();
        keys.dedup();
        for (key, dests) in self.dataplane.destinations(&keys).await? {
            if let Some(vs) = self.observed.virtual_servers.get_mut(&key) {
                vs.real_servers = dests.into_iter().map(|d| (d.server.key, d)).collect();
            }
        }
        let scope = Scope {
            keys: keys.into_iter().collect(),
            addresses: Default::default(),
        };
        Ok(self.execute(Extent::Scope(&scope), started).await)
    }

    async fn execute(&mut self, extent: Extent<'_>, started: Instant) -> SyncReport {
        let planned = plan(
            &self.observed,
            &self.intent,
            extent,
            &self.config,
            &self.draining,
            Instant::now(),
        );
        self.draining = planned.draining;
        let applied = if planned.ops.is_empty() {
            Default::default()
        } else {
            self.dataplane.apply(&planned.ops).await
        };
        let mut report = SyncReport {
            sendmsg_calls: applied.sendmsg_calls,
            ..Default::default()
        };
        for (op, result) in planned.ops.iter().zip(applied.results) {
            tracing::debug!(%op, ok = result.is_ok(), "kernel write");
            *report.operations.entry(op.kind()).or_default() += 1;
            let outcome = match result {
                Ok(()) => {
                    self.observed.record(op);
                    report.writes += 1;
                    "success"
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "kernel operation failed; retried on the next sync");
                    report.failures.push(Arc::new(e));
                    "error"
                }
            };
            self.metrics
                .operations
                .with_label_values(&[op.kind(), outcome])
                .inc();
        }
        if !report.failures.is_empty() {
            self.metrics.sync_errors.inc();
        }
        let (virtual_servers, real_servers) = self.intent.counts();
        self.metrics.virtual_servers.set(virtual_servers as i64);
        self.metrics.real_servers.set(real_servers as i64);
        // The loop records the duration by kind of sync (and family).
        report.duration = started.elapsed();
        report
    }
}
