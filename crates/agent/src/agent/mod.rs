//! The agent's loop: source events in, syncs out.
//!
//! Events go to the [`SnapshotWriter`] and mark the Services they affect.
//! The first sync waits until every source has delivered its initial state;
//! after it, marked Services are synced incrementally (batched by
//! `--ipvs-min-sync-period`), everything is dumped and repaired every
//! `--ipvs-sync-period`, a sync that could not reach the kernel is retried
//! with backoff, and a Service whose operations the kernel refuses is
//! retried on its own while the others go on.
//!
//! The loop is fair: timers are polled before events, so a source that is
//! always ready cannot hold syncs, drain checks or retries back, and each
//! turn handles one event. A periodic resync runs a part at a time; after
//! each part the loop takes the events that came meanwhile and syncs their
//! changes before the next part, so a resync of a large table delays a
//! change by one part, not by the whole resync.
//!
//! - `schedule`: when each kind of sync is due ([`Timing`]).
//! - `retry`: failing Services, retried with backoff, logged at a limited rate.
//! - `latency`: network programming latency, from slices' trigger times.
//! - `skips`: what the mapping left out, logged and counted once.
//! - `changes`: changes seen and pending per IP family, for kube-proxy's
//!   metrics.

pub(crate) mod changes;
mod latency;
mod retry;
mod schedule;
mod skips;

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;

use futures::{FutureExt as _, Stream, StreamExt};
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use kube_ipvs_controller::{
    affected, desired, desired_owner_checked, health_checks, Changed, Config, ServiceRef, Skipped,
    Snapshot,
};
use tokio::time::{sleep_until, Instant};

pub use schedule::Timing;

use crate::dataplane::{Dataplane, DataplaneError};
use crate::error::Chain;
use crate::firewall::FirewallFeed;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::output;
use crate::reconcile::{Reconciler, SyncKind, SyncReport};
use crate::service_health::{ListenOn, ServiceHealth};
use crate::snapshot::{NodeAddresses, SnapshotWriter};
use crate::source::{Failure, SourceEvent};
use changes::PendingChanges;
use latency::Triggers;
use retry::{Covered, Retries};
use schedule::Schedule;
use skips::SkipLog;

/// How many events that are already waiting the loop takes between two
/// parts of a resync (more wait for the part after).
const EVENTS_BETWEEN_PARTS: usize = 4096;

/// Where the HTTP server asks the loop for the JSON of the desired virtual
/// servers (`/debug/virtual-servers`).
pub type DebugRequests = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<String>>;

/// Every sync's kind and report, as it completes.
pub type SyncEvents = tokio::sync::watch::Receiver<Option<(SyncKind, SyncReport)>>;

/// The agent: the snapshot of the sources, the mapping's configuration and
/// the reconciler, and what runs them.
pub struct Agent<D> {
    writer: SnapshotWriter,
    reconciler: Reconciler<D>,
    config: Config,
    schedule: Schedule,
    retries: Retries,
    pending: Changed,
    triggers: Triggers,
    changes: PendingChanges,
    /// The IP families the node serves, for the metrics' `ip_family`.
    families: Vec<&'static str>,
    skips: SkipLog,
    firewall: Option<FirewallFeed>,
    service_health: Option<(ServiceHealth, RangeInclusive<u16>)>,
    metrics: Metrics,
    health: Health,
    syncs: tokio::sync::watch::Sender<Option<(SyncKind, SyncReport)>>,
    debug_requests: Option<tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<String>>>,
}

impl<D: Dataplane> Agent<D> {
    /// An agent that has seen nothing yet.
    pub fn new(
        reconciler: Reconciler<D>,
        config: Config,
        timing: Timing,
        metrics: Metrics,
        health: Health,
    ) -> Self {
        Agent {
            writer: SnapshotWriter::new(config.node_name.clone(), NodeAddresses::Kernel)
                .with_streams(&config.streams),
            reconciler,
            config,
            schedule: Schedule::new(timing),
            retries: Retries::new(timing.sync_period),
            pending: Changed::default(),
            triggers: Triggers::since(std::time::SystemTime::now()),
            changes: PendingChanges::default(),
            families: vec![changes::FAMILIES[0]],
            skips: SkipLog::default(),
            firewall: None,
            service_health: None,
            metrics,
            health,
            syncs: tokio::sync::watch::Sender::new(None),
            debug_requests: None,
        }
    }

    /// Keeps the node's packet filter in step with the virtual servers.
    pub fn set_firewall(&mut self, feed: FirewallFeed) {
        self.firewall = Some(feed);
    }

    /// Serves the Services' health checks on their `healthCheckNodePort`,
    /// which must lie in `node_ports` (`--service-node-port-range`).
    pub fn set_service_health(&mut self, health: ServiceHealth, node_ports: RangeInclusive<u16>) {
        self.service_health = Some((health, node_ports));
    }

    /// A handle to ask the loop for the JSON of the desired virtual servers;
    /// the loop builds it when asked, so a sync never pays for it.
    pub fn debug_view(&mut self) -> DebugRequests {
        let (requests, receiver) = tokio::sync::mpsc::channel(4);
        self.debug_requests = Some(receiver);
        requests
    }

    /// Every sync's kind and report, as it completes: what tests and tools
    /// await instead of polling.
    pub fn subscribe(&self) -> SyncEvents {
        self.syncs.subscribe()
    }

    /// The reconciler.
    pub fn reconciler(&self) -> &Reconciler<D> {
        &self.reconciler
    }

    /// The snapshot of the sources.
    pub fn snapshot(&self) -> &Snapshot {
        self.writer.snapshot()
    }

    /// Whether every source has delivered its initial state.
    pub fn initialized(&self) -> bool {
        self.writer.initialized()
    }

    /// Applies one source event: to the snapshot, or, for a source's own
    /// failure, to the log and metrics (the one place it is logged).
    pub fn handle(&mut self, event: SourceEvent) {
        let mut families: Vec<&'static str> = Vec::new();
        match &event {
            SourceEvent::Services(Event::Apply(s) | Event::InitApply(s) | Event::Delete(s)) => {
                families = changes::service_families(s);
                let service = ServiceRef::new(s.namespace().unwrap_or_default(), s.name_any());
                self.changes.service(&service, &families, &self.metrics);
            }
            SourceEvent::Services(_) => {}
            SourceEvent::EndpointSlices(e) => {
                if let Event::Apply(s) | Event::InitApply(s) | Event::Delete(s) = e {
                    if let (Some(family), Some(service)) =
                        (changes::slice_family(s), changes::slice_service(s))
                    {
                        families.push(family);
                        self.changes.endpoints(&service, family, &self.metrics);
                    }
                }
                if let Event::Apply(s) | Event::InitApply(s) = e {
                    self.triggers.note(s);
                }
            }
            _ => match event.log_failure() {
                Some(Failure::Watch { resource, kind }) => self
                    .metrics
                    .source_errors
                    .with_label_values(&[resource, kind])
                    .inc(),
                Some(Failure::File(reason)) => self
                    .metrics
                    .skipped
                    .with_label_values(&["File", reason.as_str()])
                    .inc(),
                None => {}
            },
        }
        let node_event = matches!(event, SourceEvent::Node(_));
        let changed = self.writer.apply(event);
        if node_event {
            self.health
                .set_node(self.writer.snapshot().node().eligibility);
        }
        if !changed.is_empty() {
            let now = unix_now();
            let families = if families.is_empty() {
                &self.families
            } else {
                &families
            };
            for family in families {
                self.metrics
                    .last_queued
                    .with_label_values(&[family])
                    .set(now);
            }
        }
        self.pending.merge(changed);
    }

    /// Runs until `shutdown` completes or the events end, leaving the
    /// kernel's rules in place.
    pub async fn run(
        mut self,
        events: impl Stream<Item = SourceEvent>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut events = std::pin::pin!(events);
        let mut shutdown = std::pin::pin!(shutdown);
        'run: loop {
            let resyncing = self.reconciler.resyncing();
            let change_sync_at = self
                .schedule
                .change_sync_at(self.initialized(), !self.pending.is_empty());
            let resync_at = self.schedule.resync_at();
            let drain_at = self
                .schedule
                .drain_check_at(!self.reconciler.draining().is_empty());
            let retry_at = self.retries.next_at();
            // Timers first: each is ready only when due, and a due one must
            // not wait behind a source that always has another event.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = sleep_until_opt(resync_at), if resync_at.is_some() && !resyncing => {
                    let retry = self.schedule.retrying();
                    self.schedule.resync_started();
                    let result = if retry {
                        self.full_sync().await.map(Some)
                    } else {
                        self.begin_periodic_resync().await
                    };
                    self.resync_result(&result);
                }
                () = sleep_until_opt(change_sync_at), if change_sync_at.is_some() => {
                    self.sync_pending().await;
                }
                () = sleep_until_opt(retry_at), if retry_at.is_some() => {
                    let due = self.retries.take_due();
                    self.pending.merge(due);
                }
                // The periodic resync goes on a part at a time; the events
                // that came during a part are taken before the next, and
                // the changes they make are synced first when due.
                () = std::future::ready(()), if resyncing => {
                    let result = self.resync_part().await;
                    self.resync_result(&result);
                    for _ in 0..EVENTS_BETWEEN_PARTS {
                        match events.next().now_or_never() {
                            Some(Some(event)) => self.handle(event),
                            Some(None) => break 'run,
                            None => break,
                        }
                    }
                }
                () = sleep_until_opt(drain_at), if drain_at.is_some() => {
                    match self.reconciler.check_draining().await {
                        Ok(report) => self.finish(SyncKind::Drain, &report),
                        Err(e) => {
                            // The next check waits a period, as after a success.
                            self.schedule.drain_checked();
                            tracing::warn!(error = %Chain(&e), "checking draining real servers failed");
                        }
                    }
                }
                event = events.next() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
                Some(reply) = next_request(&mut self.debug_requests) => {
                    let doc = output::from_intent(self.reconciler.intent());
                    // The requester may have gone; then nobody needs the answer.
                    let _ = reply.send(serde_json::to_string(&doc).unwrap_or_default());
                }
            }
            self.schedule.ensure_retry();
        }
        tracing::info!("stopping; the kernel's rules stay in place");
    }

    /// The first sync, or a periodic one: dump, map everything, repair.
    pub async fn full_sync(&mut self) -> Result<SyncReport, DataplaneError> {
        self.refresh_node_addresses().await;
        self.map_and_sync().await
    }

    /// The full sync after the node's addresses are read: map everything,
    /// dump, repair.
    async fn map_and_sync(&mut self) -> Result<SyncReport, DataplaneError> {
        self.pending = Changed::default();
        // The listing filled the snapshot one object at a time.
        self.writer.snapshot_mut().pack();
        let desired = desired(self.writer.snapshot(), &self.config);
        self.skips.begin_full();
        self.skips.record(
            self.writer.snapshot().skipped().chain(&desired.skipped),
            &self.metrics,
        );
        self.skips.set_last_full(desired.skipped.clone());
        let result = self.reconciler.full_sync(desired).await;
        self.full_sync_ended(result)
    }

    /// The periodic resync, whole: the kernel dumped and compared with the
    /// desired state as the incremental syncs keep it, without mapping every
    /// Service again (the desired state is mapped whole at start, after a
    /// relist and when a failed sync is retried). At 10,000 Services the
    /// whole mapping was a third of a resync's CPU. The loop runs the same
    /// resync a part at a time ([`Self::begin_periodic_resync`],
    /// [`Self::resync_part`]), syncing changes between the parts.
    pub async fn periodic_resync(&mut self) -> Result<SyncReport, DataplaneError> {
        if let Some(report) = self.begin_periodic_resync().await? {
            return Ok(report);
        }
        loop {
            if let Some(report) = self.resync_part().await? {
                return Ok(report);
            }
        }
    }

    /// Begins the periodic resync: its first part (the kernel's set-up,
    /// the dump of the virtual servers, the addresses). Changes still
    /// pending are synced first, so none is counted as programmed by a
    /// resync that left it out. Before the first full sync, or when
    /// everything must be mapped again, a full sync runs whole instead and
    /// its report is returned.
    ///
    /// The node's addresses come from the dump's listing of addresses (one
    /// listing, where there were two); the Services they change are synced
    /// as any change is, between the resync's parts, and a change that
    /// needs everything mapped again turns the resync into a full sync.
    pub async fn begin_periodic_resync(&mut self) -> Result<Option<SyncReport>, DataplaneError> {
        if !self.schedule.synced_once() || self.pending.all {
            return self.full_sync().await.map(Some);
        }
        if !self.pending.is_empty() {
            self.sync_pending().await;
        }
        match self.reconciler.begin_resync().await {
            Ok(listed) => {
                match listed {
                    Some(addresses) => self.set_node_addresses(addresses),
                    None => self.refresh_node_addresses().await,
                }
                if self.pending.all {
                    return self.map_and_sync().await.map(Some);
                }
                // The changes since the last full sync split some of the
                // snapshot's nodes (a full mapping packs it itself).
                self.writer.snapshot_mut().pack();
                Ok(None)
            }
            Err(e) => self.full_sync_ended(Err(e)).map(Some),
        }
    }

    /// The next part of the resync under way; its report after the last.
    pub async fn resync_part(&mut self) -> Result<Option<SyncReport>, DataplaneError> {
        match self.reconciler.resync_part().await {
            Ok(None) => Ok(None),
            result => self
                .full_sync_ended(result.map(|r| r.unwrap_or_default()))
                .map(Some),
        }
    }

    fn resync_result(&mut self, result: &Result<Option<SyncReport>, DataplaneError>) {
        match result {
            Ok(Some(_)) => self.schedule.succeeded(),
            Ok(None) => {}
            Err(_) => self.schedule.failed(),
        }
    }

    fn full_sync_ended(
        &mut self,
        result: Result<SyncReport, DataplaneError>,
    ) -> Result<SyncReport, DataplaneError> {
        if let Ok(report) = &result {
            if let Some(at) =
                self.retries
                    .record(Covered::All, &report.failures, self.reconciler.intent())
            {
                self.schedule.resync_by(at);
            }
            for what in &report.repaired {
                tracing::warn!(%what, "kernel state the agent owns had changed; put back");
            }
        }
        // What only a relist pruned before: names no object uses any more.
        self.writer.snapshot_mut().prune();
        self.families =
            changes::served_families(self.reconciler.intent(), self.writer.snapshot().node());
        for family in &self.families {
            self.metrics.init_family(family);
        }
        match &result {
            Ok(report) => self.finish(SyncKind::Full, report),
            Err(e) => tracing::warn!(error = %Chain(e), "full sync failed; retrying"),
        }
        self.schedule.full_sync_done(result.is_ok());
        // What the sync allocated and freed is not kept resident.
        crate::allocator::release_free_memory();
        result
    }

    /// How many Services (or stream-services entries) have operations the
    /// kernel refused on their last sync.
    pub fn failing(&self) -> usize {
        self.retries.len()
    }

    async fn refresh_node_addresses(&mut self) {
        match self.reconciler.read_node_addresses().await {
            Ok(addresses) => self.set_node_addresses(addresses),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "listing the node's addresses failed; keeping the last ones")
            }
        }
    }

    fn set_node_addresses(&mut self, addresses: Vec<std::net::IpAddr>) {
        let changed = self.writer.snapshot_mut().set_node_addresses(addresses);
        self.pending.merge(changed);
    }

    /// Syncs the Services (and stream-services entries) marked by events
    /// since the last sync, with what depends on them.
    pub async fn sync_pending(&mut self) -> SyncReport {
        if !self.schedule.synced_once() || self.pending.all {
            return match self.full_sync().await {
                Ok(report) => report,
                Err(e) => {
                    self.schedule.failed();
                    SyncReport {
                        failures: vec![Arc::new(e)],
                        ..Default::default()
                    }
                }
            };
        }
        let pending = std::mem::take(&mut self.pending);
        let mut skips = Vec::new();
        let snapshot = self.writer.snapshot();
        let changes: Vec<_> = affected(snapshot, &self.config, &pending)
            .into_iter()
            .map(|owner| {
                let state = desired_owner_checked(snapshot, &self.config, &owner, &mut skips);
                (owner, state)
            })
            .collect();
        self.skips.record(
            self.writer.snapshot().skipped().chain(&skips),
            &self.metrics,
        );
        let owners: Vec<_> = changes.iter().map(|(owner, _)| owner.clone()).collect();
        let report = self.reconciler.sync_services(changes).await;
        if let Some(at) = self.retries.record(
            Covered::Owners(&owners),
            &report.failures,
            self.reconciler.intent(),
        ) {
            self.schedule.resync_by(at);
        }
        self.finish(SyncKind::Incremental, &report);
        report
    }

    /// What the last full sync's mapping left out.
    pub fn last_skipped(&self) -> &[Skipped] {
        self.skips.last_full()
    }

    fn finish(&mut self, kind: SyncKind, report: &SyncReport) {
        if kind.programs_changes() {
            self.schedule.finished();
        } else {
            self.schedule.drain_checked();
        }
        // A drain check does not program pending changes: it is neither a
        // full nor a partial sync in kube-proxy's sense, and the latency of
        // changes is measured when a full or incremental sync programs them.
        // Nor does a periodic resync that ends with changes still pending
        // (taken between its parts, not yet due): they wait, with their
        // trigger times and gauges, for the sync that programs them.
        let programmed = kind.programs_changes() && self.pending.is_empty();
        if kind.programs_changes() {
            let seconds = report.duration.as_secs_f64();
            let split = match kind {
                SyncKind::Full => &self.metrics.sync_full_duration,
                _ => &self.metrics.sync_partial_duration,
            };
            for family in &self.families {
                self.metrics
                    .sync_duration
                    .with_label_values(&[family])
                    .observe(seconds);
                split.with_label_values(&[family]).observe(seconds);
            }
        }
        if programmed {
            self.changes.synced(&self.metrics);
        }
        // A sync that reached the kernel is the loop working, whatever single
        // operations the kernel refused (their Services retry on their own):
        // kube-proxy's health follows completed syncs the same way.
        if kind.programs_changes() || report.ok() {
            self.health.synced();
            let now = unix_now();
            for family in &self.families {
                self.metrics.last_sync.with_label_values(&[family]).set(now);
            }
            if programmed {
                self.triggers.programmed(&self.metrics.network_programming);
            }
        }
        tracing::info!(
            sync = kind.as_str(),
            writes = report.writes,
            failed = report.failures.len(),
            sendmsg = report.sendmsg_calls,
            duration_ms = report.duration.as_secs_f64() * 1000.0,
            "synced"
        );
        if let Some(feed) = &self.firewall {
            feed.after_sync(
                kind,
                report,
                self.reconciler.intent(),
                self.writer.snapshot(),
            );
        }
        if kind.programs_changes() {
            self.sync_service_health();
        }
        self.syncs.send_replace(Some((kind, report.clone())));
    }
}

impl<D> Agent<D> {
    /// kube-proxy's `SyncServices` and `SyncEndpoints` after each sync: the
    /// health checks follow the snapshot, and a port that could not be bound
    /// is tried again.
    fn sync_service_health(&mut self) {
        let Some((service_health, node_ports)) = &mut self.service_health else {
            return;
        };
        let snapshot = self.writer.snapshot();
        let mut skipped = Vec::new();
        let wanted = health_checks(snapshot, &self.config, node_ports, &mut skipped);
        self.skips.record(&skipped, &self.metrics);
        let on = if self.config.nodeport_addresses.is_empty() && !self.config.nodeport_primary {
            ListenOn::Any
        } else {
            ListenOn::Addresses(
                snapshot
                    .node_addresses()
                    .iter()
                    .copied()
                    .filter(|a| self.config.node_port_address(*a, snapshot.node()))
                    .collect(),
            )
        };
        service_health.sync(&wanted, &on);
    }
}

async fn next_request<T>(receiver: &mut Option<tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
    match receiver {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
