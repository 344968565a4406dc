//! The reconciler: holds the desired state (indexed) and what the kernel
//! holds, plans, applies through the [`Dataplane`], and records the results.
//!
//! Three kinds of sync:
//! - full: the kernel dumped and compared with everything (start and every
//!   `--ipvs-sync-period`, and after a failure), in parts: the virtual
//!   servers and addresses first, then the real servers of a few hundred
//!   virtual servers at a time, each part an in-memory diff; the loop syncs
//!   changes between the parts of a periodic resync;
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
    plan, DesiredState, Draining, Extent, Intent, Observed, Owner, PlanConfig, Scope, ServiceState,
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
    /// The full resync under way, if one is.
    resync: Option<ResyncRun>,
}

/// A full resync under way. Its first part dumped the virtual servers alone
/// and made every address match; each later part dumps the real servers of
/// [`PLAN_CHUNK`] virtual servers and makes them match. Between parts the
/// loop syncs the changes that came meanwhile, so a resync of a large table
/// holds no change back for longer than one part.
struct ResyncRun {
    /// Every virtual server in the kernel or wanted when the resync began,
    /// in order; those before `next` are done.
    keys: Vec<VirtualServerKey>,
    next: usize,
    /// Dumped virtual servers the cache did not know: their real servers
    /// are unknown until their part (or a sync of their Service) dumps them.
    unknown: BTreeSet<VirtualServerKey>,
    report: SyncReport,
    outcomes: Outcomes,
    /// The time spent in the resync's own parts.
    busy: Duration,
}

/// Outcomes by operation kind, added to the metrics once per sync.
type Outcomes = BTreeMap<(&'static str, bool), u64>;

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
            resync: None,
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
    /// kernel and repairs any difference from the desired state: every part
    /// of a resync, one after the other.
    pub async fn resync(&mut self) -> Result<SyncReport, DataplaneError> {
        self.begin_resync().await?;
        loop {
            if let Some(report) = self.resync_part().await? {
                return Ok(report);
            }
        }
    }

    /// Whether a full resync is under way ([`Self::resync_part`] goes on with it).
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// Begins a full resync (dropping one under way): puts back the
    /// kernel's set-up, dumps the virtual servers (not their real servers)
    /// and the dummy interface's addresses into the cache, and makes every
    /// address match (binds, and the virtual servers of addresses going
    /// away with their unbinds). [`Self::resync_part`] does the rest.
    /// Gives the node's addresses when the dump listed them as well.
    pub async fn begin_resync(&mut self) -> Result<Option<Vec<IpAddr>>, DataplaneError> {
        let started = Instant::now();
        // A resync under way is dropped; the real servers it never dumped
        // must not pass for known (empty) in the next one.
        if let Some(dropped) = self.resync.take() {
            self.forget_unknown(&dropped.unknown);
        }
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
        let dump = match self.dataplane.observe_virtual_servers().await {
            Ok(dump) => dump,
            Err(e) => {
                self.metrics.sync_errors.with_label_values(&["dump"]).inc();
                return Err(e);
            }
        };
        let node_addresses = dump.node_addresses;
        let unknown = self
            .observed
            .take_virtual_server_dump(dump.virtual_servers, dump.addresses);
        let mut report = SyncReport {
            dumped: true,
            repaired,
            failures: repair_failure.into_iter().collect(),
            ..Default::default()
        };
        let mut outcomes = Outcomes::new();
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
        // The address part visits only the virtual servers of addresses
        // going away, which it deletes whole: every other drain goes on from
        // when it began (a scope of addresses would otherwise start them
        // over).
        let drains = self.draining.clone();
        self.plan_and_apply(Extent::Scope(&scope), &mut report, &mut outcomes)
            .await;
        self.draining = drains;
        self.end_drains_not_in_kernel(&unknown);
        let keys: BTreeSet<VirtualServerKey> = self
            .observed
            .virtual_servers
            .keys()
            .chain(self.intent.keys())
            .copied()
            .collect();
        self.resync = Some(ResyncRun {
            keys: keys.into_iter().collect(),
            next: 0,
            unknown,
            report,
            outcomes,
            busy: started.elapsed(),
        });
        Ok(node_addresses)
    }

    /// One part of the full resync under way: dumps the real servers of the
    /// next [`PLAN_CHUNK`] virtual servers and makes them match, each
    /// compared exactly as in one plan of everything. Returns the resync's
    /// report after its last part (its duration the time of its own parts),
    /// `None` while parts remain or when no resync is under way. A failed
    /// dump ends the resync.
    pub async fn resync_part(&mut self) -> Result<Option<SyncReport>, DataplaneError> {
        let started = Instant::now();
        let Some(run) = &mut self.resync else {
            return Ok(None);
        };
        let end = (run.next + PLAN_CHUNK).min(run.keys.len());
        let part: BTreeSet<VirtualServerKey> = run.keys[run.next..end].iter().copied().collect();
        run.next = end;
        // Those gone from the cache since (deleted by a sync of their
        // Service) have nothing to dump; any wanted again are planned whole.
        let cached: Vec<VirtualServerKey> = part
            .iter()
            .filter(|k| self.observed.virtual_servers.contains_key(k))
            .copied()
            .collect();
        let dumped = self.dump_real_servers(&cached).await;
        let Some(mut run) = self.resync.take() else {
            return Ok(None);
        };
        if let Err(e) = dumped {
            self.forget_unknown(&run.unknown);
            return Err(e);
        }
        let scope = Scope {
            keys: part,
            addresses: BTreeSet::new(),
        };
        self.plan_and_apply(Extent::Scope(&scope), &mut run.report, &mut run.outcomes)
            .await;
        run.busy += started.elapsed();
        if run.next < run.keys.len() {
            self.resync = Some(run);
            return Ok(None);
        }
        // Every virtual server has been dumped (or deleted) by now.
        self.end_drains_not_in_kernel(&BTreeSet::new());
        // The cache was filled a virtual server at a time.
        self.observed.pack();
        let ResyncRun {
            mut report,
            outcomes,
            busy,
            ..
        } = run;
        self.conclude(outcomes);
        report.duration = busy;
        Ok(Some(report))
    }

    /// After a failed dump the cache must not claim real servers it never
    /// saw: the virtual servers whose real servers were never dumped leave
    /// it (a retried full resync dumps them again).
    fn forget_unknown(&mut self, unknown: &BTreeSet<VirtualServerKey>) {
        for key in unknown {
            self.observed.virtual_servers.remove(key);
        }
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
        let mut report = SyncReport::default();
        self.dump_unknown(&scope, &mut report).await;
        self.execute(&scope, report, started).await
    }

    /// Dumps the real servers of `keys` into the cache (no longer unknown
    /// to a resync under way).
    async fn dump_real_servers(&mut self, keys: &[VirtualServerKey]) -> Result<(), DataplaneError> {
        let dumped = self.dataplane.destinations(keys).await.inspect_err(|_| {
            self.metrics.sync_errors.with_label_values(&["dump"]).inc();
        })?;
        for (key, real_servers) in dumped {
            if let Some(run) = &mut self.resync {
                run.unknown.remove(&key);
            }
            self.observed.refresh_real_servers(&key, real_servers);
        }
        Ok(())
    }

    /// During a resync, the virtual servers of `scope` whose real servers
    /// were not dumped yet are dumped now, before a sync plans against them.
    async fn dump_unknown(&mut self, scope: &Scope, report: &mut SyncReport) {
        let Some(run) = &mut self.resync else {
            return;
        };
        let keys: Vec<VirtualServerKey> = scope
            .keys
            .iter()
            .filter(|k| run.unknown.contains(k))
            .copied()
            .collect();
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.dump_real_servers(&keys).await {
            // Planned as unknown, their writes may fail and are retried.
            report.failures.push(Arc::new(e));
        }
    }

    /// Refreshes the counters of virtual servers with draining real servers
    /// and deletes those whose connections are gone or whose time is up.
    pub async fn check_draining(&mut self) -> Result<SyncReport, DataplaneError> {
        let started = Instant::now();
        let mut keys: Vec<VirtualServerKey> = self.draining.keys().map(|(k, _)| *k).collect();
        keys.dedup();
        self.dump_real_servers(&keys).await?;
        let scope = Scope {
            keys: keys.into_iter().collect(),
            addresses: Default::default(),
        };
        Ok(self.execute(&scope, SyncReport::default(), started).await)
    }

    /// Plans and applies a scope against the cache.
    async fn execute(
        &mut self,
        scope: &Scope,
        mut report: SyncReport,
        started: Instant,
    ) -> SyncReport {
        let mut outcomes = Outcomes::new();
        self.plan_and_apply(Extent::Scope(scope), &mut report, &mut outcomes)
            .await;
        self.conclude(outcomes);
        // The loop records the duration by kind of sync (and family).
        report.duration = started.elapsed();
        report
    }

    /// What every sync does at its end: keeps the drains, and adds its
    /// outcomes and the state's size to the metrics.
    fn conclude(&mut self, outcomes: Outcomes) {
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
    }

    /// Drains of real servers no longer in the kernel (as the cache holds
    /// it) are over; those of virtual servers whose real servers were not
    /// dumped yet (`unknown`: after a restart, every one) go on.
    fn end_drains_not_in_kernel(&mut self, unknown: &BTreeSet<VirtualServerKey>) {
        let observed = &self.observed.virtual_servers;
        self.draining.retain(|(key, rs), _| {
            unknown.contains(key)
                || observed
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
        outcomes: &mut Outcomes,
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
            let mut accepted = Vec::with_capacity(chunk.len());
            for (op, result) in chunk.iter().zip(applied.results) {
                tracing::debug!(%op, ok = result.is_ok(), "kernel write");
                *report.operations.entry(op.kind()).or_default() += 1;
                *outcomes.entry((op.kind(), result.is_ok())).or_default() += 1;
                match result {
                    Ok(()) => {
                        accepted.push(op);
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
            self.observed.record_all(accepted);
        }
    }
}
