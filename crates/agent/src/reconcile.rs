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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_ipvs_controller::{
    plan, DesiredState, Draining, Extent, Intent, Observed, ObservedRealServer, Owner, PlanConfig,
    Scope, ServiceState,
};
use kube_ipvs_netlink::VirtualServerKey;
use serde::Serialize;

use crate::dataplane::{Dataplane, DataplaneError, Repaired};
use crate::drain_state::DrainStore;
use crate::error::Chain;
use crate::metrics::Metrics;

/// How many planned operations go to the dataplane in one `apply`: large
/// enough for several full `sendmsg` batches, small enough that a cold sync's
/// messages and results are a few megabytes at a time.
const APPLY_CHUNK: usize = 8192;

/// How many virtual servers one part of a full sync plans.
const PLAN_CHUNK: usize = 512;

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
    /// What a full resync found changed in the kernel's set-up and put back
    /// before its dump.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "as_strings")]
    pub repaired: Vec<Repaired>,
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

fn as_strings<S: serde::Serializer>(repaired: &[Repaired], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(repaired.iter().map(ToString::to_string))
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
    drain_store: Option<DrainStore>,
    drain_store_failing: bool,
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
            drain_store: None,
            drain_store_failing: false,
            config,
            metrics,
        }
    }

    /// Keeps when each drain began in `store`, and takes the drains it
    /// holds from before a restart: those of real servers still at weight
    /// 0 go on from their recorded start.
    pub fn with_drain_store(mut self, mut store: DrainStore) -> Self {
        match store.load() {
            Ok(draining) => {
                if !draining.is_empty() {
                    tracing::info!(
                        draining = draining.len(),
                        "drains begun before the restart go on from their start"
                    );
                }
                self.draining = draining;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the drain state failed; drains start over")
            }
        }
        self.drain_store = Some(store);
        self
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

    /// Puts back the kernel's set-up (dummy interface, sysctls), dumps the
    /// kernel and repairs any difference from the desired state.
    pub async fn resync(&mut self) -> Result<SyncReport, DataplaneError> {
        let started = Instant::now();
        // A set-up that cannot be put back is reported, and the dump and the
        // IPVS writes go on: binds fail on their own, and are retried.
        let (repaired, repair_failure) = match self.dataplane.repair().await {
            Ok(repaired) => (repaired, None),
            Err(e) => {
                self.metrics
                    .sync_errors
                    .with_label_values(&["repair"])
                    .inc();
                (Vec::new(), Some(Arc::new(e)))
            }
        };
        for what in &repaired {
            self.metrics.repairs.with_label_values(&[what.kind()]).inc();
        }
        self.observed = match self.dataplane.observe().await {
            Ok(observed) => observed,
            Err(e) => {
                self.metrics.sync_errors.with_label_values(&["dump"]).inc();
                return Err(e);
            }
        };
        let mut report = self.execute(Extent::All, started).await;
        report.dumped = true;
        report.repaired = repaired;
        report.failures.extend(repair_failure);
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
        let dumped = self.dataplane.destinations(&keys).await.inspect_err(|_| {
            self.metrics.sync_errors.with_label_values(&["dump"]).inc();
        })?;
        for (key, dests) in dumped {
            if let Some(vs) = self.observed.virtual_servers.get_mut(&key) {
                vs.real_servers = dests
                    .into_iter()
                    .map(|d| (d.server.key, ObservedRealServer::from(d)))
                    .collect();
            }
        }
        let scope = Scope {
            keys: keys.into_iter().collect(),
            addresses: Default::default(),
        };
        Ok(self.execute(Extent::Scope(&scope), started).await)
    }

    async fn execute(&mut self, extent: Extent<'_>, started: Instant) -> SyncReport {
        let mut report = SyncReport::default();
        // Outcomes by operation kind, added to the metrics once per sync.
        let mut outcomes: BTreeMap<(&'static str, bool), u64> = BTreeMap::new();
        match extent {
            Extent::Scope(scope) => {
                self.plan_and_apply(Extent::Scope(scope), &mut report, &mut outcomes)
                    .await;
            }
            Extent::All => {
                // A full sync is planned and applied in parts: every address
                // first (binds, and the virtual servers of addresses going
                // away with their unbinds), then the virtual servers
                // PLAN_CHUNK at a time, each part planned against the cache
                // as the parts before it left it. Each virtual server is
                // compared exactly as in one plan of everything; a cold sync
                // of 120,000 writes never holds its whole plan.
                let addresses: BTreeSet<IpAddr> = self
                    .observed
                    .addresses
                    .iter()
                    .chain(self.intent.addresses())
                    .copied()
                    .collect();
                let scope = Scope {
                    keys: BTreeSet::new(),
                    addresses,
                };
                // The address part visits only the virtual servers of
                // addresses going away, which it deletes whole: every other
                // drain goes on from when it began (a scope of addresses
                // would otherwise start them over).
                let drains = self.draining.clone();
                self.plan_and_apply(Extent::Scope(&scope), &mut report, &mut outcomes)
                    .await;
                self.draining = drains;
                self.end_drains_not_in_kernel();
                let keys: BTreeSet<VirtualServerKey> = self
                    .observed
                    .virtual_servers
                    .keys()
                    .chain(self.intent.keys())
                    .copied()
                    .collect();
                let keys: Vec<VirtualServerKey> = keys.into_iter().collect();
                for part in keys.chunks(PLAN_CHUNK) {
                    let scope = Scope {
                        keys: part.iter().copied().collect(),
                        addresses: BTreeSet::new(),
                    };
                    self.plan_and_apply(Extent::Scope(&scope), &mut report, &mut outcomes)
                        .await;
                }
                self.end_drains_not_in_kernel();
            }
        }
        if let Some(store) = &mut self.drain_store {
            // Logged once per run of failures: the next sync tries again.
            match store.store(&self.draining) {
                Ok(()) => self.drain_store_failing = false,
                Err(e) if !self.drain_store_failing => {
                    self.drain_store_failing = true;
                    tracing::warn!(error = %e, "writing the drain state failed; a restart would start drains over");
                }
                Err(_) => {}
            }
        }
        for ((kind, ok), n) in outcomes {
            let outcome = if ok { "success" } else { "error" };
            self.metrics
                .operations
                .with_label_values(&[kind, outcome])
                .inc_by(n);
            if !ok {
                self.metrics
                    .sync_errors
                    .with_label_values(&[kind])
                    .inc_by(n);
            }
        }
        let (virtual_servers, real_servers) = self.intent.counts();
        self.metrics.virtual_servers.set(virtual_servers as i64);
        self.metrics.real_servers.set(real_servers as i64);
        // The loop records the duration by kind of sync (and family).
        report.duration = started.elapsed();
        report
    }

    /// Drains of real servers no longer in the kernel (as the cache holds
    /// it) are over.
    fn end_drains_not_in_kernel(&mut self) {
        let observed = &self.observed.virtual_servers;
        self.draining.retain(|(key, rs), _| {
            observed
                .get(key)
                .is_some_and(|vs| vs.real_servers.contains_key(rs))
        });
    }

    /// Plans `extent` against the cache, applies the plan and records what
    /// the kernel took.
    async fn plan_and_apply(
        &mut self,
        extent: Extent<'_>,
        report: &mut SyncReport,
        outcomes: &mut BTreeMap<(&'static str, bool), u64>,
    ) {
        let planned = plan(
            &self.observed,
            &self.intent,
            extent,
            &self.config,
            &self.draining,
            Instant::now(),
        );
        self.draining = planned.draining;
        // The plan goes to the kernel a slice at a time: what the dataplane
        // builds for a slice (its netlink messages and their results) lives
        // only as long as the slice, and the plan gives back the memory of
        // each slice it hands over (taken from the end of the reversed
        // plan, shrunk in place), while the kernel cache grows with what
        // was applied. A cold sync of 120,000 writes holds neither whole.
        let mut ops = planned.ops;
        ops.reverse();
        while !ops.is_empty() {
            let mut chunk = ops.split_off(ops.len().saturating_sub(APPLY_CHUNK));
            chunk.reverse();
            ops.shrink_to_fit();
            let applied = self.dataplane.apply(&chunk).await;
            report.sendmsg_calls += applied.sendmsg_calls;
            for (op, result) in chunk.iter().zip(applied.results) {
                tracing::debug!(%op, ok = result.is_ok(), "kernel write");
                *report.operations.entry(op.kind()).or_default() += 1;
                *outcomes.entry((op.kind(), result.is_ok())).or_default() += 1;
                match result {
                    Ok(()) => {
                        self.observed.record(op);
                        report.writes += 1;
                    }
                    Err(e) => {
                        // Logged by the loop, which knows the Service and
                        // limits the rate.
                        tracing::debug!(error = %Chain(&e), "kernel operation failed");
                        report.failures.push(Arc::new(e));
                    }
                }
            }
        }
    }
}
