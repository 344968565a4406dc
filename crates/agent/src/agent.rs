//! The agent's loop: source events in, syncs out.
//!
//! Events update the [`Snapshot`] and mark the Services they affect. The
//! first sync waits until every source has delivered its initial state; after
//! it, marked Services are synced incrementally (batched by
//! `--ipvs-min-sync-period`), everything is dumped and repaired every
//! `--ipvs-sync-period`, and a failed sync is retried with backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use kube_ipvs_controller::{
    desired, desired_service_checked, Changed, Config, ServiceRef, Skipped, Snapshot,
};
use kube_ipvs_netlink::VirtualServerKey;
use tokio::time::{sleep_until, Instant};

use crate::dataplane::{Dataplane, DataplaneError};
use crate::firewall::{FirewallConfig, FirewallHandle, Ruleset, StaleUdpFlows};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::output;
use crate::reconcile::{Reconciler, SyncReport};
use crate::source::SourceEvent;

/// Timing of the loop.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `--ipvs-min-sync-period`: the shortest time between two syncs.
    pub min_sync_period: Duration,
    /// `--ipvs-sync-period`: how often everything is dumped and repaired.
    pub sync_period: Duration,
    /// How often draining real servers have their connections checked.
    pub drain_check_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            drain_check_period: Duration::from_secs(2),
        }
    }
}

/// The annotation the EndpointSlice controller sets to when the change that
/// produced the slice happened; network programming latency runs from it.
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

#[derive(Debug, Default)]
struct Initial {
    services: bool,
    slices: bool,
    node: bool,
}

impl Initial {
    fn complete(&self) -> bool {
        self.services && self.slices && self.node
    }
}

/// The agent: a snapshot of the sources, the mapping's configuration and the
/// reconciler.
pub struct Agent<D> {
    reconciler: Reconciler<D>,
    snapshot: Snapshot,
    config: Config,
    timing: Timing,
    metrics: Metrics,
    health: Health,
    initial: Initial,
    synced_once: bool,
    pending: Changed,
    /// The earliest change-trigger time per pending Service.
    triggers: BTreeMap<ServiceRef, SystemTime>,
    last_sync: Option<Instant>,
    next_resync: Option<Instant>,
    failures_in_a_row: u32,
    /// Skips already counted, so a relist does not count them again.
    counted_skips: BTreeSet<String>,
    /// Services seen since a relist began.
    relist_services: Option<BTreeSet<ServiceRef>>,
    /// Slices seen since a relist began.
    relist_slices: Option<BTreeSet<(String, String)>>,
    /// Every slice applied and not deleted, so a relist can tell what is gone.
    known_slices: BTreeSet<(String, String)>,
    last_skipped: Vec<Skipped>,
    firewall: Option<(FirewallHandle, FirewallConfig)>,
    syncs: tokio::sync::watch::Sender<Option<(&'static str, SyncReport)>>,
    debug_requests: Option<tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<String>>>,
}

/// Where the HTTP server asks the loop for the JSON of the desired virtual
/// servers (`/debug/virtual-servers`).
pub type DebugRequests = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<String>>;

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
            reconciler,
            snapshot: Snapshot::new(),
            config,
            timing,
            metrics,
            health,
            initial: Initial::default(),
            synced_once: false,
            pending: Changed::default(),
            triggers: BTreeMap::new(),
            last_sync: None,
            next_resync: None,
            failures_in_a_row: 0,
            counted_skips: BTreeSet::new(),
            relist_services: None,
            relist_slices: None,
            known_slices: BTreeSet::new(),
            last_skipped: Vec::new(),
            firewall: None,
            syncs: tokio::sync::watch::Sender::new(None),
            debug_requests: None,
        }
    }

    /// Keeps the node's packet filter in step with the virtual servers.
    pub fn set_firewall(&mut self, handle: FirewallHandle, config: FirewallConfig) {
        self.firewall = Some((handle, config));
    }

    /// A handle to ask the loop for the JSON of the desired virtual servers;
    /// the loop builds it when asked, so a sync never pays for it.
    pub fn debug_view(&mut self) -> DebugRequests {
        let (requests, receiver) = tokio::sync::mpsc::channel(4);
        self.debug_requests = Some(receiver);
        requests
    }

    /// Every sync's kind (`full`, `incremental`, `drain`) and report, as it
    /// completes: what tests and tools await instead of polling.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<(&'static str, SyncReport)>> {
        self.syncs.subscribe()
    }

    /// The reconciler.
    pub fn reconciler(&mut self) -> &mut Reconciler<D> {
        &mut self.reconciler
    }

    /// The snapshot of the sources.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Whether every source has delivered its initial state.
    pub fn initialized(&self) -> bool {
        self.initial.complete()
    }

    /// Applies one source event to the snapshot.
    pub fn handle(&mut self, event: SourceEvent) {
        let changed = match event {
            SourceEvent::Services(e) => {
                self.metrics.service_changes.inc();
                self.services(e)
            }
            SourceEvent::EndpointSlices(e) => {
                self.metrics.endpoint_changes.inc();
                self.slices(e)
            }
            SourceEvent::Node(e) => self.node(e),
            SourceEvent::WatchError { resource, kind } => {
                tracing::warn!(resource, error = kind, "watch failed; the source retries");
                self.metrics
                    .source_errors
                    .with_label_values(&[resource, kind])
                    .inc();
                Changed::default()
            }
            SourceEvent::FileSkipped(error) => {
                tracing::warn!(%error, "file skipped");
                self.metrics
                    .skipped
                    .with_label_values(&["File", "parse"])
                    .inc();
                Changed::default()
            }
        };
        if !changed.is_empty() {
            self.metrics.last_queued.set(unix_now());
        }
        self.pending.merge(changed);
    }

    fn services(&mut self, event: Event<Service>) -> Changed {
        match event {
            Event::Init => {
                self.initial.services = false;
                self.relist_services = Some(BTreeSet::new());
                Changed::default()
            }
            Event::InitApply(s) | Event::Apply(s) => {
                if let Some(seen) = self.relist_services.as_mut() {
                    seen.insert(ServiceRef::new(
                        s.namespace().unwrap_or_default(),
                        s.name_any(),
                    ));
                }
                self.snapshot.apply_service(&s)
            }
            Event::InitDone => {
                self.initial.services = true;
                // A relist streams objects one at a time instead of holding
                // the whole list; what it did not mention is gone.
                let seen = self.relist_services.take().unwrap_or_default();
                let gone: Vec<ServiceRef> = self
                    .snapshot
                    .services()
                    .map(|(k, _)| k.clone())
                    .filter(|k| !seen.contains(k))
                    .collect();
                let mut changed = Changed::default();
                for service in gone {
                    changed.merge(self.snapshot.delete_service(&service));
                }
                changed
            }
            Event::Delete(s) => self.snapshot.delete_service(&ServiceRef::new(
                s.namespace().unwrap_or_default(),
                s.name_any(),
            )),
        }
    }

    fn slices(&mut self, event: Event<EndpointSlice>) -> Changed {
        match event {
            Event::Init => {
                self.initial.slices = false;
                self.relist_slices = Some(BTreeSet::new());
                Changed::default()
            }
            Event::InitApply(s) | Event::Apply(s) => {
                let key = (s.namespace().unwrap_or_default(), s.name_any());
                self.note_trigger(&s);
                if let Some(seen) = self.relist_slices.as_mut() {
                    seen.insert(key.clone());
                }
                self.known_slices.insert(key);
                self.snapshot.apply_slice(&s)
            }
            Event::InitDone => {
                self.initial.slices = true;
                let seen = self.relist_slices.take().unwrap_or_default();
                let gone: Vec<(String, String)> =
                    self.known_slices.difference(&seen).cloned().collect();
                let mut changed = Changed::default();
                for (namespace, name) in gone {
                    self.known_slices.remove(&(namespace.clone(), name.clone()));
                    changed.merge(self.snapshot.delete_slice(&namespace, &name));
                }
                changed
            }
            Event::Delete(s) => {
                let key = (s.namespace().unwrap_or_default(), s.name_any());
                self.known_slices.remove(&key);
                self.snapshot.delete_slice(&key.0, &key.1)
            }
        }
    }

    fn node(&mut self, event: Event<Node>) -> Changed {
        match event {
            Event::Init => {
                self.initial.node = false;
                Changed::default()
            }
            // The directory source yields every Node it finds; only ours counts.
            Event::InitApply(n) | Event::Apply(n) if n.name_any() == self.config.node_name => {
                self.snapshot.set_node(&n)
            }
            Event::InitApply(_) | Event::Apply(_) => Changed::default(),
            Event::InitDone => {
                self.initial.node = true;
                Changed::default()
            }
            Event::Delete(n) if n.name_any() == self.config.node_name => {
                self.snapshot.set_node(&Node::default())
            }
            Event::Delete(_) => Changed::default(),
        }
    }

    /// Remembers when the change behind a slice happened, for the network
    /// programming latency.
    fn note_trigger(&mut self, slice: &EndpointSlice) {
        let Some(at) = slice.annotations().get(TRIGGER_TIME) else {
            return;
        };
        let Ok(at) = at.parse::<jiff::Timestamp>() else {
            return;
        };
        let Some(service) = slice.labels().get("kubernetes.io/service-name") else {
            return;
        };
        let at = SystemTime::from(at);
        let key = ServiceRef::new(slice.namespace().unwrap_or_default(), service.clone());
        self.triggers
            .entry(key)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
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
        let mut retry_at: Option<Instant> = None;
        loop {
            let change_sync_at = self.change_sync_at();
            let resync_at = retry_at.or(self.next_resync);
            let drain_at = (!self.reconciler.draining().is_empty()).then(|| {
                self.last_sync.unwrap_or_else(Instant::now) + self.timing.drain_check_period
            });
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                event = events.next() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
                () = sleep_until_opt(change_sync_at), if change_sync_at.is_some() => {
                    self.sync_pending().await;
                }
                () = sleep_until_opt(resync_at), if resync_at.is_some() => {
                    retry_at = None;
                    match self.full_sync().await {
                        Ok(report) if report.ok() => self.failures_in_a_row = 0,
                        _ => {
                            self.failures_in_a_row += 1;
                            retry_at = Some(Instant::now() + self.backoff());
                        }
                    }
                }
                Some(reply) = next_request(&mut self.debug_requests) => {
                    let doc = output::from_intent(self.reconciler.intent());
                    // The requester may have gone; then nobody needs the answer.
                    let _ = reply.send(serde_json::to_string(&doc).unwrap_or_default());
                }
                () = sleep_until_opt(drain_at), if drain_at.is_some() => {
                    match self.reconciler.check_draining().await {
                        Ok(report) => self.finish("drain", &report),
                        Err(e) => tracing::warn!(error = %e, "checking draining real servers failed"),
                    }
                }
            }
            if retry_at.is_none() && self.failures_in_a_row > 0 {
                retry_at = Some(Instant::now() + self.backoff());
            }
        }
        tracing::info!("stopping; the kernel's rules stay in place");
    }

    fn backoff(&self) -> Duration {
        let exp = self.failures_in_a_row.min(16);
        Duration::from_secs(1u64 << exp.saturating_sub(1)).min(self.timing.sync_period)
    }

    /// When the pending changes are due: at once, but not sooner than
    /// `min_sync_period` after the previous sync.
    fn change_sync_at(&self) -> Option<Instant> {
        if !self.initialized() || self.failures_in_a_row > 0 {
            // Before the first full picture nothing is synced; after a
            // failure the retry (a full sync) covers pending changes.
            return None;
        }
        if !self.synced_once {
            return Some(Instant::now());
        }
        if self.pending.is_empty() {
            return None;
        }
        let earliest = self
            .last_sync
            .map_or_else(Instant::now, |t| t + self.timing.min_sync_period);
        Some(earliest.max(Instant::now()))
    }

    /// The first sync, or a periodic one: dump, map everything, repair.
    pub async fn full_sync(&mut self) -> Result<SyncReport, DataplaneError> {
        self.refresh_node_addresses().await;
        self.pending = Changed::default();
        let desired = desired(&self.snapshot, &self.config);
        self.last_skipped = desired.skipped.clone();
        self.count_skips(&desired.skipped);
        let result = self.reconciler.full_sync(desired).await;
        match &result {
            Ok(report) => self.finish("full", report),
            Err(e) => tracing::warn!(error = %e, "full sync failed; retrying"),
        }
        if result.is_ok() {
            self.synced_once = true;
        }
        self.next_resync = Some(Instant::now() + self.timing.sync_period);
        result
    }

    async fn refresh_node_addresses(&mut self) {
        match self.reconciler.dataplane().node_addresses().await {
            Ok(addresses) => {
                self.reconciler
                    .set_node_addresses(addresses.iter().copied());
                let changed = self.snapshot.set_node_addresses(addresses);
                self.pending.merge(changed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing the node's addresses failed; keeping the last ones")
            }
        }
    }

    /// Syncs the Services marked by events since the last sync.
    pub async fn sync_pending(&mut self) -> SyncReport {
        if !self.synced_once || self.pending.all {
            return match self.full_sync().await {
                Ok(report) => report,
                Err(e) => {
                    self.failures_in_a_row += 1;
                    SyncReport {
                        failures: vec![e.to_string()],
                        ..Default::default()
                    }
                }
            };
        }
        let pending = std::mem::take(&mut self.pending);
        let mut skips = Vec::new();
        let changes: Vec<_> = pending
            .services
            .into_iter()
            .map(|service| {
                let state =
                    desired_service_checked(&self.snapshot, &self.config, &service, &mut skips);
                (service, state)
            })
            .collect();
        self.count_skips(&skips);
        let report = self.reconciler.sync_services(changes).await;
        if !report.ok() {
            self.failures_in_a_row += 1;
        }
        self.finish("incremental", &report);
        report
    }

    /// What the last full sync's mapping left out.
    pub fn last_skipped(&self) -> &[Skipped] {
        &self.last_skipped
    }

    fn count_skips(&mut self, skips: &[Skipped]) {
        for skip in self.snapshot.skipped().chain(skips) {
            let text = skip.to_string();
            if self.counted_skips.insert(text.clone()) {
                tracing::warn!(kind = skip.kind.as_str(), object = %skip.object, reason = %skip.reason, "skipped");
                self.metrics
                    .skipped
                    .with_label_values(&[skip.kind.as_str(), skip.reason.as_str()])
                    .inc();
            }
        }
    }

    fn finish(&mut self, kind: &'static str, report: &SyncReport) {
        let now = Instant::now();
        self.last_sync = Some(now);
        if report.ok() {
            self.health.synced();
            self.metrics.last_sync.set(unix_now());
        }
        // A drain check does not program pending changes: their latency is
        // measured when a full or incremental sync does.
        if report.ok() && kind != "drain" {
            let wall = SystemTime::now();
            for (_, at) in std::mem::take(&mut self.triggers) {
                if let Ok(latency) = wall.duration_since(at) {
                    self.metrics
                        .network_programming
                        .observe(latency.as_secs_f64());
                }
            }
        }
        tracing::info!(
            sync = kind,
            writes = report.writes,
            failed = report.failures.len(),
            sendmsg = report.sendmsg_calls,
            duration_ms = report.duration.as_secs_f64() * 1000.0,
            "synced"
        );
        self.update_firewall(kind, report);
        self.syncs.send_replace(Some((kind, report.clone())));
    }

    /// The packet filter's ruleset for the current desired state.
    pub fn ruleset(&self, config: &FirewallConfig) -> Ruleset {
        let intent = self.reconciler.intent();
        Ruleset::from_parts(
            intent.addresses().copied(),
            intent
                .keys()
                .filter_map(|k| intent.virtual_server(k).map(|(_, vs)| (*k, vs))),
            config,
        )
    }

    /// Hands the packet filter the ruleset of the current desired state and
    /// the UDP real servers just removed. The ruleset is rebuilt only when
    /// the kernel changed or after a full sync.
    fn update_firewall(&self, kind: &'static str, report: &SyncReport) {
        let Some((handle, config)) = &self.firewall else {
            return;
        };
        if report.writes > 0 || kind == "full" {
            handle.apply(self.ruleset(config));
        }
        let stale: Vec<StaleUdpFlows> = report
            .removed_udp
            .iter()
            .filter_map(|(key, rs)| {
                let VirtualServerKey::Inet { address, port, .. } = *key else {
                    return None;
                };
                Some(StaleUdpFlows {
                    vip: address,
                    vport: port,
                    endpoint: rs.address,
                    eport: rs.port,
                })
            })
            .collect();
        handle.forget_udp_flows(stale);
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
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
