//! The agent's loop against the in-memory dataplane, with tokio's paused
//! clock: the first sync waits for every source, changes are batched and
//! synced incrementally, the periodic resync repairs drift, and a failed
//! operation is retried.

use std::net::IpAddr;
use std::time::Duration;

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube_ipvs::agent::{Agent, Timing};
use kube_ipvs::dataplane::MemoryDataplane;
use kube_ipvs::firewall::{
    worker, FirewallConfig, FirewallFeed, MemoryFilterState, MemoryPacketFilter, MemoryWrite,
};
use kube_ipvs::health::Health;
use kube_ipvs::metrics::Metrics;
use kube_ipvs::reconcile::{Reconciler, SyncKind, SyncReport};
use kube_ipvs::source::SourceEvent;
use kube_ipvs_controller::{
    Config, ConfigMapRef, Op, PlanConfig, ServiceRef, StreamConfig, StreamKind, UdpFrontend,
};
use kube_ipvs_netlink::{
    Operation, Protocol, RealServer, RealServerKey, Scheduler, VirtualServer, VirtualServerKey,
};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

fn service(name: &str, ip: &str, protocol: &str, port: u16) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "p", "port": port, "protocol": protocol}]}
    }))
    .unwrap()
}

fn slice(service: &str, protocol: &str, endpoints: &[&str]) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints.iter().map(|e| json!({"addresses": [e], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "p", "port": 8080, "protocol": protocol}]
    }))
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Harness {
    metrics: Metrics,
    health: Health,
    events: mpsc::UnboundedSender<SourceEvent>,
    syncs: watch::Receiver<Option<(SyncKind, SyncReport)>>,
    dataplane: MemoryDataplane,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Harness {
    fn start(timing: Timing) -> Self {
        Self::start_with(timing, None)
    }

    /// An agent whose packet filter is `filter`, run by the worker as the
    /// kernel's is.
    fn start_with(timing: Timing, filter: Option<MemoryPacketFilter>) -> Self {
        Self::start_configured(timing, Config::new("node-1"), filter)
    }

    /// An agent with the mapping configuration `config`.
    fn start_configured(
        timing: Timing,
        config: Config,
        filter: Option<MemoryPacketFilter>,
    ) -> Self {
        let dataplane = MemoryDataplane::new();
        let metrics = Metrics::unregistered();
        let metrics_handle = metrics.clone();
        let reconciler = Reconciler::new(dataplane.clone(), PlanConfig::default(), metrics.clone());
        let health = Health::new(Duration::from_secs(60));
        let mut agent = Agent::new(reconciler, config, timing, metrics, health.clone());
        if let Some(filter) = filter {
            agent.set_firewall(FirewallFeed::new(
                worker::spawn(filter, metrics_handle.clone()),
                FirewallConfig::default(),
            ));
        }
        let syncs = agent.subscribe();
        let (events, rx) = mpsc::unbounded();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(agent.run(rx, async move {
            let _ = stopped.await;
        }));
        Harness {
            metrics: metrics_handle,
            health,
            events,
            syncs,
            dataplane,
            _stop: stop,
        }
    }

    fn send(&self, event: SourceEvent) {
        self.events.unbounded_send(event).unwrap();
    }

    /// Delivers the initial state of every source.
    fn initial(&self, services: Vec<Service>, slices: Vec<EndpointSlice>) {
        self.send(SourceEvent::Services(Event::Init));
        for s in services {
            self.send(SourceEvent::Services(Event::InitApply(s)));
        }
        self.send(SourceEvent::Services(Event::InitDone));
        self.send(SourceEvent::EndpointSlices(Event::Init));
        for s in slices {
            self.send(SourceEvent::EndpointSlices(Event::InitApply(s)));
        }
        self.send(SourceEvent::EndpointSlices(Event::InitDone));
        self.send(SourceEvent::Node(Event::Init));
        self.send(SourceEvent::Node(Event::InitDone));
    }

    /// Waits for the next sync to complete and returns its kind and report.
    async fn next_sync(&mut self) -> (SyncKind, SyncReport) {
        tokio::time::timeout(Duration::from_secs(3600), self.syncs.changed())
            .await
            .expect("a sync within the hour")
            .expect("the agent is running");
        self.syncs
            .borrow_and_update()
            .clone()
            .expect("a sync report")
    }
}

fn udp_key(vip: &str) -> VirtualServerKey {
    VirtualServerKey::inet(Protocol::Udp, ip(vip), 53)
}

fn timing() -> Timing {
    Timing {
        min_sync_period: Duration::from_secs(1),
        sync_period: Duration::from_secs(30),
        drain_check_period: Duration::from_secs(2),
    }
}

#[tokio::test(start_paused = true)]
async fn first_sync_waits_for_every_source_then_programs_everything() {
    let mut h = Harness::start(timing());
    h.send(SourceEvent::Services(Event::Init));
    h.send(SourceEvent::Services(Event::InitApply(service(
        "dns",
        "10.96.0.10",
        "UDP",
        53,
    ))));
    h.send(SourceEvent::Services(Event::InitDone));
    h.send(SourceEvent::EndpointSlices(Event::Init));
    h.send(SourceEvent::EndpointSlices(Event::InitApply(slice(
        "dns",
        "UDP",
        &["10.244.0.5"],
    ))));
    h.send(SourceEvent::EndpointSlices(Event::InitDone));
    // No Node yet: a minute passes without a sync.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(h.syncs.borrow().is_none());
    assert_eq!(h.dataplane.kernel().writes.len(), 0);

    h.send(SourceEvent::Node(Event::Init));
    h.send(SourceEvent::Node(Event::InitApply(Node::default())));
    h.send(SourceEvent::Node(Event::InitDone));
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Full);
    assert_eq!(report.writes, 3, "{report:?}");
    let k = h.dataplane.kernel();
    assert_eq!(k.dumps, 1);
    assert_eq!(
        k.writes,
        vec![
            Op::BindAddress(ip("10.96.0.10")),
            Op::Ipvs(Operation::NewService(VirtualServer::new(
                udp_key("10.96.0.10"),
                Scheduler::Rr
            ))),
            Op::Ipvs(Operation::NewDest(
                udp_key("10.96.0.10"),
                RealServer::new(ip("10.244.0.5"), 8080)
            )),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn one_endpoint_replaced_costs_two_writes_and_no_dump() {
    let mut h = Harness::start(timing());
    let services: Vec<Service> = (0..200)
        .map(|i| service(&format!("s{i}"), &format!("10.96.1.{}", i + 1), "UDP", 53))
        .collect();
    let slices: Vec<EndpointSlice> = (0..200)
        .map(|i| slice(&format!("s{i}"), "UDP", &["10.244.0.1", "10.244.0.2"]))
        .collect();
    h.initial(services, slices);
    let (_, first) = h.next_sync().await;
    assert_eq!(first.writes, 200 * 4);

    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "s7",
        "UDP",
        &["10.244.0.1", "10.244.0.3"],
    ))));
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(report.writes, 2, "{report:?}");
    assert!(!report.dumped);
    let k = h.dataplane.kernel();
    assert_eq!(k.dumps, 1, "an incremental sync does not dump");
    let key = udp_key("10.96.1.8");
    assert_eq!(
        k.writes[k.writes.len() - 2..],
        [
            Op::Ipvs(Operation::NewDest(
                key,
                RealServer::new(ip("10.244.0.3"), 8080)
            )),
            Op::Ipvs(Operation::DelDest(
                key,
                RealServer::new(ip("10.244.0.2"), 8080).key
            )),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn changes_within_the_min_sync_period_are_batched() {
    let mut h = Harness::start(timing());
    h.initial(
        vec![
            service("a", "10.96.0.1", "UDP", 53),
            service("b", "10.96.0.2", "UDP", 53),
        ],
        vec![
            slice("a", "UDP", &["10.244.0.1"]),
            slice("b", "UDP", &["10.244.0.1"]),
        ],
    );
    h.next_sync().await;
    let first_sync_at = Instant::now();
    let applies = h.dataplane.kernel().applies;

    tokio::time::sleep(Duration::from_millis(100)).await;
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "a",
        "UDP",
        &["10.244.0.9"],
    ))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "b",
        "UDP",
        &["10.244.0.9"],
    ))));

    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(report.writes, 4, "both changes in one sync: {report:?}");
    assert_eq!(h.dataplane.kernel().applies, applies + 1);
    assert!(
        Instant::now() >= first_sync_at + Duration::from_secs(1),
        "not sooner than the min sync period"
    );
    assert!(Instant::now() < first_sync_at + Duration::from_millis(1100));

    // A change long after the last sync goes out at once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent_at = Instant::now();
    h.send(SourceEvent::Services(Event::Delete(service(
        "b",
        "10.96.0.2",
        "UDP",
        53,
    ))));
    let (_, report) = h.next_sync().await;
    assert_eq!(Instant::now(), sent_at);
    assert_eq!(report.operations.get("del_service"), Some(&1));
    assert_eq!(report.operations.get("unbind_address"), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn periodic_resync_repairs_drift() {
    let mut h = Harness::start(timing());
    h.initial(
        vec![service("a", "10.96.0.1", "UDP", 53)],
        vec![slice("a", "UDP", &["10.244.0.1"])],
    );
    h.next_sync().await;
    let synced_at = Instant::now();

    // Someone deletes our virtual server and adds a stale one on our dummy interface.
    {
        let mut k = h.dataplane.kernel();
        k.state.virtual_servers.remove(&udp_key("10.96.0.1"));
        let stale = VirtualServer::new(udp_key("10.96.0.99"), Scheduler::Rr);
        k.state.virtual_servers.insert(
            stale.key,
            kube_ipvs_controller::ObservedVirtualServer {
                service: stale,
                real_servers: Default::default(),
            },
        );
        k.state.addresses.insert(ip("10.96.0.99"));
    }
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Full);
    assert!(report.dumped);
    assert_eq!(Instant::now(), synced_at + Duration::from_secs(30));
    assert_eq!(report.writes, 4, "{report:?}");
    let k = h.dataplane.kernel();
    assert!(k.state.virtual_servers.contains_key(&udp_key("10.96.0.1")));
    assert!(!k.state.virtual_servers.contains_key(&udp_key("10.96.0.99")));
    assert!(!k.state.addresses.contains(&ip("10.96.0.99")));
}

#[tokio::test(start_paused = true)]
async fn a_failed_operation_is_retried_and_does_not_stop_the_batch() {
    let mut h = Harness::start(timing());
    h.initial(
        vec![
            service("a", "10.96.0.1", "UDP", 53),
            service("b", "10.96.0.2", "UDP", 53),
        ],
        vec![],
    );
    h.next_sync().await;

    let new_dest = Operation::NewDest(
        udp_key("10.96.0.1"),
        RealServer::new(ip("10.244.0.7"), 8080),
    );
    h.dataplane
        .kernel()
        .fail_next
        .push(Op::Ipvs(new_dest.clone()));
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "a",
        "UDP",
        &["10.244.0.7"],
    ))));
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "b",
        "UDP",
        &["10.244.0.8"],
    ))));
    let (_, report) = h.next_sync().await;
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert_eq!(report.writes, 1, "the other operation still applied");
    let failed_at = Instant::now();

    let (kind, retry) = h.next_sync().await;
    assert_eq!(
        kind,
        SyncKind::Incremental,
        "the failing Service is retried on its own"
    );
    assert_eq!(
        Instant::now(),
        failed_at + Duration::from_secs(1),
        "first retry after one second"
    );
    assert_eq!(retry.writes, 1);
    assert!(retry.ok());
    let k = h.dataplane.kernel();
    assert!(k.state.virtual_servers[&udp_key("10.96.0.1")]
        .real_servers
        .contains_key(&RealServer::new(ip("10.244.0.7"), 8080).key));
}

/// An operation the kernel refuses every time (a scheduler it lacks, as
/// `twos` before Linux 6.7) is its Service's alone, as in kube-proxy's
/// `syncProxyRules`, which logs "Failed to sync service" and goes on: the
/// Service is retried with backoff, every other Service's changes still
/// reach the kernel within `--ipvs-min-sync-period`, no full resync runs
/// before its period, and the agent stays healthy and alive.
#[tokio::test(start_paused = true)]
async fn a_refused_service_does_not_hold_back_the_others() {
    let mut h = Harness::start(timing());
    h.initial(
        vec![
            service("a", "10.96.0.1", "UDP", 53),
            service("b", "10.96.0.2", "UDP", 53),
        ],
        vec![],
    );
    let (_, first) = h.next_sync().await;
    assert!(first.ok());
    let synced_at = Instant::now();

    // From now on the kernel refuses every new real server of "a".
    let refused = Op::Ipvs(Operation::NewDest(
        udp_key("10.96.0.1"),
        RealServer::new(ip("10.244.0.7"), 8080),
    ));
    h.dataplane.kernel().fail_next = vec![refused.clone(); 1000];
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "a",
        "UDP",
        &["10.244.0.7"],
    ))));
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(report.failures.len(), 1);

    // Retries of "a" back off: 1 s, 2 s, 4 s, 8 s after each failure.
    let mut retried_at = Vec::new();
    let mut last = Instant::now();
    for _ in 0..4 {
        let (kind, report) = h.next_sync().await;
        assert_eq!(kind, SyncKind::Incremental, "{report:?}");
        assert_eq!(report.failures.len(), 1);
        retried_at.push(Instant::now() - last);
        last = Instant::now();
        assert!(h.health.status().healthy, "/healthz stays 200");
        assert!(h.health.liveness().healthy, "/livez stays 200");
    }
    assert_eq!(
        retried_at,
        [1, 2, 4, 8].map(Duration::from_secs),
        "backoff of the refused Service"
    );

    // Another Service's change reaches the kernel within the min-sync period.
    let changed_at = Instant::now();
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "b",
        "UDP",
        &["10.244.0.8"],
    ))));
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert!(report.ok(), "only b's change: {report:?}");
    assert!(Instant::now() - changed_at <= timing().min_sync_period);
    assert!(
        h.dataplane.kernel().state.virtual_servers[&udp_key("10.96.0.2")]
            .real_servers
            .contains_key(&RealServer::new(ip("10.244.0.8"), 8080).key)
    );

    // Through a minute and more of refusals the agent stays alive, and the
    // periodic resync keeps its period.
    let mut full = Vec::new();
    while Instant::now() < synced_at + Duration::from_secs(95) {
        let (kind, _) = h.next_sync().await;
        if kind == SyncKind::Full {
            full.push(Instant::now() - synced_at);
        }
        assert!(h.health.liveness().healthy);
        assert!(h.health.status().healthy);
    }
    assert_eq!(
        full[..3],
        [30, 60, 90].map(Duration::from_secs),
        "full resyncs only every period: {full:?}"
    );
    let errors = h.metrics.sync_errors.with_label_values(&["new_dest"]).get();
    assert!(errors >= 8, "each refusal counted by operation: {errors}");
}

/// The dummy interface deleted by hand: binds fail with ENODEV, which only a
/// full resync can fix, so one runs at once (with backoff), recreates the
/// interface and binds the addresses again, without waiting for the period.
#[tokio::test(start_paused = true)]
async fn a_deleted_dummy_interface_is_recreated() {
    let mut h = Harness::start(timing());
    h.initial(vec![service("a", "10.96.0.1", "UDP", 53)], vec![]);
    h.next_sync().await;
    {
        let mut k = h.dataplane.kernel();
        k.dummy_gone = true;
        k.state.addresses.clear();
    }
    h.send(SourceEvent::Services(Event::Apply(service(
        "b",
        "10.96.0.2",
        "UDP",
        53,
    ))));
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(report.failures.len(), 1, "the bind fails: {report:?}");
    let failed_at = Instant::now();
    let (kind, report) = loop {
        let (kind, report) = h.next_sync().await;
        if kind == SyncKind::Full {
            break (kind, report);
        }
    };
    assert_eq!(kind, SyncKind::Full);
    assert!(Instant::now() - failed_at <= Duration::from_secs(1));
    assert_eq!(report.repaired.len(), 1, "{report:?}");
    assert!(report.ok(), "{report:?}");
    let k = h.dataplane.kernel();
    assert!(k.state.addresses.contains(&ip("10.96.0.1")));
    assert!(k.state.addresses.contains(&ip("10.96.0.2")));
}

/// Sets what the "kernel" reports as a real server's active connections.
fn set_active_connections(
    dataplane: &MemoryDataplane,
    key: VirtualServerKey,
    rs: RealServerKey,
    n: u32,
) {
    let mut kernel = dataplane.kernel();
    let vs = kernel
        .state
        .virtual_servers
        .get_mut(&key)
        .expect("virtual server");
    vs.real_servers
        .get_mut(&rs)
        .expect("real server")
        .counters
        .active_connections = n;
}

#[tokio::test(start_paused = true)]
async fn tcp_real_server_drains_until_its_connections_close() {
    let mut h = Harness::start(timing());
    let tcp = |eps: &[&str]| slice("web", "TCP", eps);
    h.initial(
        vec![service("web", "10.96.0.1", "TCP", 80)],
        vec![tcp(&["10.244.0.1", "10.244.0.2"])],
    );
    h.next_sync().await;
    let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.96.0.1"), 80);
    let gone = RealServer::new(ip("10.244.0.2"), 8080).key;
    set_active_connections(&h.dataplane, key, gone, 1);

    h.send(SourceEvent::EndpointSlices(Event::Apply(tcp(&[
        "10.244.0.1",
    ]))));
    let (_, report) = h.next_sync().await;
    assert_eq!(report.operations.get("set_dest"), Some(&1), "{report:?}");
    assert_eq!(
        h.dataplane.kernel().state.virtual_servers[&key].real_servers[&gone]
            .server
            .weight,
        0
    );

    // While the connection is open, drain checks change nothing.
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Drain);
    assert_eq!(report.writes, 0);

    // A drain check programs no change: one arriving right after it is
    // synced at once, not a min-sync period later.
    let changed_at = Instant::now();
    h.send(SourceEvent::Services(Event::Apply(service(
        "other",
        "10.96.0.9",
        "UDP",
        53,
    ))));
    let (kind, _) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(Instant::now(), changed_at, "no wait behind a drain check");

    // The connection closes: the next check deletes it.
    set_active_connections(&h.dataplane, key, gone, 0);
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Drain);
    assert_eq!(report.operations.get("del_dest"), Some(&1), "{report:?}");
    assert!(!h.dataplane.kernel().state.virtual_servers[&key]
        .real_servers
        .contains_key(&gone));
}

#[tokio::test(start_paused = true)]
async fn network_programming_latency_runs_from_the_trigger_time() {
    let mut h = Harness::start(timing());
    h.initial(
        vec![service("a", "10.96.0.1", "UDP", 53)],
        vec![slice("a", "UDP", &["10.244.0.1"])],
    );
    h.next_sync().await;
    assert_eq!(
        h.metrics
            .network_programming
            .with_label_values(&["IPv4"])
            .get_sample_count(),
        0
    );

    let stamped = |endpoint: &str, at: jiff::Timestamp| {
        let mut changed = slice("a", "UDP", &[endpoint]);
        changed.metadata.annotations = Some(
            [(
                "endpoints.kubernetes.io/last-change-trigger-time".to_owned(),
                at.to_string(),
            )]
            .into(),
        );
        changed
    };
    // A change made before the agent started (as every slice of a relist
    // carries) is no latency of its own: kube-proxy's EndpointSliceUpdate
    // counts only trigger times after its tracker started.
    let before_start = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    h.send(SourceEvent::EndpointSlices(Event::Apply(stamped(
        "10.244.0.3",
        before_start,
    ))));
    assert_eq!(h.next_sync().await.0, SyncKind::Incremental);
    assert_eq!(
        h.metrics
            .network_programming
            .with_label_values(&["IPv4"])
            .get_sample_count(),
        0
    );

    // The EndpointSlice controller stamps when the change happened; the
    // change reaches the agent 300 ms (of wall time) later.
    let at = jiff::Timestamp::now();
    std::thread::sleep(Duration::from_millis(300));
    h.send(SourceEvent::EndpointSlices(Event::Apply(stamped(
        "10.244.0.2",
        at,
    ))));
    let (kind, _) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(
        h.metrics
            .network_programming
            .with_label_values(&["IPv4"])
            .get_sample_count(),
        1
    );
    let seconds = h
        .metrics
        .network_programming
        .with_label_values(&["IPv4"])
        .get_sample_sum();
    assert!((0.3..10.0).contains(&seconds), "{seconds}");
}

fn frontend_serving(state: &MemoryFilterState, n: usize) -> Vec<IpAddr> {
    state.reconciled[n]
        .0
         .0
        .get(&UdpFrontend::Address(ip("10.96.0.10"), 53))
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

/// Waits until the filter's state satisfies `done`, its calls awaited.
async fn until(
    filter: &MemoryPacketFilter,
    calls: &mut watch::Receiver<usize>,
    within: Duration,
    done: impl Fn(&MemoryFilterState) -> bool,
) {
    let wait = async {
        while !done(&filter.state()) {
            calls.changed().await.unwrap();
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .expect("the packet filter called in time");
}

/// The packet filter follows the syncs: the first full sync hands it a
/// ruleset with every VIP and Service port, the UDP frontends with their
/// serving endpoints, and a look at iptables' FORWARD policy; an endpoint change that writes to the kernel
/// hands it both again, and the removed endpoint's flows are then stale
/// (kube-proxy: `pkg/proxy/ipvs/proxier.go` `syncProxyRules` writes its
/// ipsets after the virtual servers; `pkg/proxy/conntrack/cleanup.go`
/// `CleanStaleEntries` runs after each sync).
#[tokio::test(start_paused = true)]
async fn the_packet_filter_follows_the_syncs() {
    let filter = MemoryPacketFilter::new();
    let mut calls = filter.calls();
    let mut h = Harness::start_with(timing(), Some(filter.clone()));
    h.initial(
        vec![service("dns", "10.96.0.10", "UDP", 53)],
        vec![slice("dns", "UDP", &["10.244.0.1", "10.244.0.2"])],
    );
    let (kind, _) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Full);
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        !s.applied.is_empty() && !s.reconciled.is_empty() && s.forward_checks == 1
    })
    .await;
    {
        let state = filter.state();
        assert_eq!(state.applied.len(), 1);
        let sets = &state.applied[0].ipv4;
        assert!(sets.vips.contains(&ip("10.96.0.10")), "{sets:?}");
        assert_eq!(sets.services.len(), 1, "{sets:?}");
        assert_eq!(sets.hairpin.len(), 2, "{sets:?}");
        assert_eq!(
            frontend_serving(&state, 0),
            [ip("10.244.0.1"), ip("10.244.0.2")]
        );
        assert!(state.reconciled[0].1.is_empty());
    }

    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "dns",
        "UDP",
        &["10.244.0.1"],
    ))));
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(report.operations.get("del_dest"), Some(&1), "{report:?}");
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.applied.len() == 2 && s.reconciled.len() == 2
    })
    .await;
    let state = filter.state();
    assert_eq!(state.applied[1].ipv4.hairpin.len(), 1);
    assert_eq!(frontend_serving(&state, 1), [ip("10.244.0.1")]);
}

/// A Service deleted takes every flow to its frontends with it, and a
/// clean-up that fails is tried again with backoff until it succeeds, the
/// gone frontends still named (`pkg/proxy/conntrack/cleanup.go`; kube-ipvs
/// also cleans the flows of deleted Services and retries).
#[tokio::test(start_paused = true)]
async fn flows_of_a_deleted_service_go_and_a_failed_clean_up_is_retried() {
    let filter = MemoryPacketFilter::new();
    let mut calls = filter.calls();
    let mut h = Harness::start_with(timing(), Some(filter.clone()));
    let dns = service("dns", "10.96.0.10", "UDP", 53);
    h.initial(
        vec![dns.clone()],
        vec![slice("dns", "UDP", &["10.244.0.1"])],
    );
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.reconciled.len() == 1
    })
    .await;

    filter.state().fail_udp = 1;
    h.send(SourceEvent::Services(Event::Delete(dns)));
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_millis(500), |s| {
        s.reconciled.len() == 2
    })
    .await;
    let failed_at = Instant::now();
    until(&filter, &mut calls, Duration::from_secs(5), |s| {
        s.reconciled.len() == 3
    })
    .await;
    assert!(
        Instant::now() >= failed_at + Duration::from_secs(1),
        "retried after backoff"
    );
    let state = filter.state();
    let gone = [UdpFrontend::Address(ip("10.96.0.10"), 53)].into();
    assert_eq!(state.reconciled.len(), 3);
    assert_eq!(state.reconciled[1].1, gone, "the failed try");
    assert_eq!(
        state.reconciled[2].1, gone,
        "the retry still names what is gone"
    );
    assert!(state.reconciled[2].0 .0.is_empty());
}

fn is_table(write: &MemoryWrite) -> bool {
    matches!(write, MemoryWrite::Table(_))
}

/// An endpoint change reaches the table as the set elements it adds and
/// deletes, never as the whole table again (issue 17: the cost of a change
/// grows with the change, not with the cluster).
#[tokio::test(start_paused = true)]
async fn an_endpoint_change_sends_only_the_changed_elements() {
    let filter = MemoryPacketFilter::new();
    let mut calls = filter.calls();
    let mut h = Harness::start_with(timing(), Some(filter.clone()));
    h.initial(
        vec![
            service("dns", "10.96.0.10", "UDP", 53),
            service("web", "10.96.0.11", "TCP", 80),
        ],
        vec![
            slice("dns", "UDP", &["10.244.0.1", "10.244.0.2"]),
            slice("web", "TCP", &["10.244.0.3"]),
        ],
    );
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        !s.writes.is_empty()
    })
    .await;
    assert!(
        is_table(&filter.state().writes[0]),
        "start-up writes it whole"
    );

    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "web",
        "TCP",
        &["10.244.0.4"],
    ))));
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.writes.len() == 2
    })
    .await;
    let state = filter.state();
    let MemoryWrite::Elements(changes) = &state.writes[1] else {
        panic!("{:?}", state.writes[1]);
    };
    assert_eq!((changes.added(), changes.deleted()), (1, 1), "{changes:?}");
    let hairpin = |s: &kube_ipvs::firewall::FamilySets| {
        s.hairpin.iter().map(|h| h.address).collect::<Vec<_>>()
    };
    assert_eq!(hairpin(&changes.ipv4.added), [ip("10.244.0.4")]);
    assert_eq!(hairpin(&changes.ipv4.deleted), [ip("10.244.0.3")]);
    let table = state.table.as_ref().unwrap();
    assert_eq!(Some(table), state.applied.last());
    assert_eq!(
        hairpin(&table.ipv4),
        [ip("10.244.0.1"), ip("10.244.0.2"), ip("10.244.0.4")]
    );
}

/// A failed `nft` run is tried again with backoff (1 s, then 2 s) until it
/// succeeds, and what follows a failure is a whole write: the kernel may
/// hold anything then (issue 16).
#[tokio::test(start_paused = true)]
async fn a_failed_nft_run_is_retried_with_backoff_and_whole() {
    let filter = MemoryPacketFilter::new();
    let mut calls = filter.calls();
    let mut h = Harness::start_with(timing(), Some(filter.clone()));
    h.initial(
        vec![service("web", "10.96.0.11", "TCP", 80)],
        vec![slice("web", "TCP", &["10.244.0.3"])],
    );
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.writes.len() == 1
    })
    .await;

    filter.state().fail_nft = 2;
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "web",
        "TCP",
        &["10.244.0.4"],
    ))));
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.writes.len() == 2
    })
    .await;
    let failed_at = Instant::now();
    until(&filter, &mut calls, Duration::from_secs(5), |s| {
        s.writes.len() == 3
    })
    .await;
    assert_eq!(Instant::now(), failed_at + Duration::from_secs(1));
    until(&filter, &mut calls, Duration::from_secs(5), |s| {
        s.writes.len() == 4
    })
    .await;
    assert_eq!(Instant::now(), failed_at + Duration::from_secs(3));
    {
        let state = filter.state();
        assert!(!is_table(&state.writes[1]), "the change alone, which fails");
        assert!(is_table(&state.writes[2]), "then whole, which fails");
        assert!(is_table(&state.writes[3]), "whole again, which succeeds");
        let table = state.table.as_ref().unwrap();
        assert!(table
            .ipv4
            .hairpin
            .iter()
            .any(|h| h.address == ip("10.244.0.4")));
        assert_eq!(state.fail_nft, 0);
    }
    assert_eq!(
        h.metrics.sync_errors.with_label_values(&["nftables"]).get(),
        2
    );

    // Succeeded: the next change is elements again, and nothing is retried.
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "web",
        "TCP",
        &["10.244.0.5"],
    ))));
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.writes.len() == 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let state = filter.state();
    assert_eq!(state.writes.len(), 5);
    assert!(!is_table(&state.writes[4]));
}

/// Each full resync compares the table the kernel holds with what was
/// written: a flushed table, an element deleted by hand or a changed
/// sysctl is found, counted and written again; an intact table is left
/// alone (issue 16).
#[tokio::test(start_paused = true)]
async fn a_full_resync_repairs_the_table_and_the_sysctls() {
    let filter = MemoryPacketFilter::new();
    let mut calls = filter.calls();
    let mut h = Harness::start_with(timing(), Some(filter.clone()));
    h.initial(
        vec![service("web", "10.96.0.11", "TCP", 80)],
        vec![slice("web", "TCP", &["10.244.0.3"])],
    );
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.writes.len() == 1 && s.checks == 1
    })
    .await;
    let repairs = |h: &Harness, object: &str| h.metrics.repairs.with_label_values(&[object]).get();

    // An intact table: checked, not written.
    let (kind, _) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Full);
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.checks == 2
    })
    .await;
    assert_eq!(filter.state().writes.len(), 1);

    // `nft flush ruleset`.
    let written = filter.state().table.take().unwrap();
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.writes.len() == 2
    })
    .await;
    assert_eq!(
        filter.state().writes[1],
        MemoryWrite::Table(Box::new(written.clone()))
    );
    assert_eq!(filter.state().table.as_ref(), Some(&written));
    assert_eq!(repairs(&h, "nftables_table"), 1);

    // An element deleted by hand.
    filter.state().table.as_mut().unwrap().ipv4.services.clear();
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.writes.len() == 3
    })
    .await;
    assert_eq!(
        filter.state().writes[2],
        MemoryWrite::Table(Box::new(written.clone()))
    );
    assert_eq!(repairs(&h, "nftables_table"), 2);

    // A sysctl set back.
    filter.state().sysctls_differ = true;
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.checks == 5
    })
    .await;
    // The worker counts after the check returns: the next check follows that.
    h.next_sync().await;
    until(&filter, &mut calls, Duration::from_secs(1), |s| {
        s.checks == 6
    })
    .await;
    assert_eq!(repairs(&h, "sysctl"), 2, "both sysctls, once");
    assert!(!filter.state().sysctls_differ);
    assert_eq!(filter.state().writes.len(), 3, "the table was intact");
    assert_eq!(repairs(&h, "nftables_table"), 2);
}

fn tcp_services(port: u16, target: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "tcp-services", "namespace": "ingress-nginx"},
        "data": {port.to_string(): target}
    }))
    .unwrap()
}

/// Changing the ConfigMap moves a port to another Service in the next
/// incremental sync: no dump, the new Service's endpoint in, the old one
/// drained at weight 0, on the load-balancer IP and the node port alike.
#[tokio::test(start_paused = true)]
async fn a_config_map_change_moves_a_port_to_another_service_within_one_sync() {
    let config = Config {
        streams: StreamConfig {
            tcp_services: Some(ConfigMapRef::new("ingress-nginx", "tcp-services")),
            udp_services: None,
            publish_service: Some(ServiceRef::new("ingress-nginx", "controller")),
        },
        ..Config::new("node-1")
    };
    let mut h = Harness::start_configured(timing(), config, None);
    h.dataplane.kernel().node_addresses = vec![ip("192.168.0.10")];
    let publish: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "controller", "namespace": "ingress-nginx"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.100",
                 "ports": [{"name": "tcp-10000", "port": 10000, "nodePort": 31000}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.30"}]}}
    }))
    .unwrap();
    h.initial(
        vec![
            publish,
            service("a", "10.96.0.1", "TCP", 10000),
            service("b", "10.96.0.2", "TCP", 20000),
        ],
        vec![
            slice("a", "TCP", &["10.244.0.1"]),
            slice("b", "TCP", &["10.244.0.2"]),
        ],
    );
    // The ConfigMap's listing is part of the initial state.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        h.syncs.borrow().is_none(),
        "no sync before tcp-services is listed"
    );
    let kind = StreamKind::Tcp;
    h.send(SourceEvent::StreamServices(kind, Event::Init));
    h.send(SourceEvent::StreamServices(
        kind,
        Event::InitApply(tcp_services(10000, "default/a:10000")),
    ));
    h.send(SourceEvent::StreamServices(kind, Event::InitDone));
    let (kind_of_sync, _) = h.next_sync().await;
    assert_eq!(kind_of_sync, SyncKind::Full);
    let lb = VirtualServerKey::inet(Protocol::Tcp, ip("203.0.113.30"), 10000);
    let node_port = VirtualServerKey::inet(Protocol::Tcp, ip("192.168.0.10"), 31000);
    let real_servers = |h: &Harness, key: &VirtualServerKey| -> Vec<(String, u32)> {
        h.dataplane.kernel().state.virtual_servers[key]
            .real_servers
            .values()
            .map(|d| (d.server.key.to_string(), d.server.weight))
            .collect()
    };
    for key in [&lb, &node_port] {
        assert_eq!(real_servers(&h, key), [("10.244.0.1:8080".to_owned(), 1)]);
    }

    h.send(SourceEvent::StreamServices(
        StreamKind::Tcp,
        Event::Apply(tcp_services(10000, "default/b:20000")),
    ));
    let (kind_of_sync, report) = h.next_sync().await;
    assert_eq!(kind_of_sync, SyncKind::Incremental);
    assert!(!report.dumped);
    // Per virtual server: the new endpoint, the old one at weight 0.
    assert_eq!(report.writes, 4, "{report:?}");
    for key in [&lb, &node_port] {
        assert_eq!(
            real_servers(&h, key),
            [
                ("10.244.0.1:8080".to_owned(), 0),
                ("10.244.0.2:8080".to_owned(), 1)
            ]
        );
    }
    assert_eq!(h.dataplane.kernel().dumps, 1);
}

/// The address of the `i`th Service of [`initial_in_three_parts`].
fn address(i: u32) -> String {
    format!("10.96.{}.{}", i / 250, i % 250 + 1)
}

/// 1,200 Services `s0`..`s1199` of one TCP port, each with the endpoint
/// 10.244.0.1: a periodic resync of them runs in three parts of up to 512
/// virtual servers. Returns their number.
fn initial_in_three_parts(h: &mut Harness) -> u32 {
    let n = 1_200;
    h.initial(
        (0..n)
            .map(|i| service(&format!("s{i}"), &address(i), "TCP", 80))
            .collect(),
        (0..n)
            .map(|i| slice(&format!("s{i}"), "TCP", &["10.244.0.1"]))
            .collect(),
    );
    n
}

/// kube-proxy's `syncProxyRules` makes a change that comes during a full
/// resync wait for the resync's end (at 10,000 Services, tens of seconds on
/// a loaded node). Here the periodic resync runs a part at a time, and a
/// change that comes during a part is synced as soon as that part ends.
#[tokio::test(start_paused = true)]
async fn a_change_during_a_periodic_resync_is_synced_before_the_resync_ends() {
    let mut h = Harness::start(timing());
    let n = initial_in_three_parts(&mut h);
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Full);
    assert_eq!(report.writes, 3 * n as usize);
    let synced_at = Instant::now();

    // The resync begins at 30 s; each part's dump takes 5 s.
    h.dataplane.kernel().dump_delay = Duration::from_secs(5);
    tokio::time::sleep_until(synced_at + Duration::from_secs(37)).await;
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "s1100",
        "TCP",
        &["10.244.0.2"],
    ))));
    let key = VirtualServerKey::inet(Protocol::Tcp, ip(&address(1100)), 80);
    let new = RealServerKey {
        address: ip("10.244.0.2"),
        port: 8080,
    };

    // Synced when the second part ends, the third still to come.
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(Instant::now(), synced_at + Duration::from_secs(40));
    assert_eq!(report.writes, 2, "{:?}", report.operations);
    assert!(h.dataplane.kernel().state.virtual_servers[&key]
        .real_servers
        .contains_key(&new));

    // The resync ends after its third part; its only write removes the
    // real server that left, drained and without connections.
    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Full);
    assert_eq!(Instant::now(), synced_at + Duration::from_secs(45));
    assert_eq!(
        report.operations,
        std::collections::BTreeMap::from([("del_dest", 1)])
    );
    let k = h.dataplane.kernel();
    let servers: Vec<RealServerKey> = k.state.virtual_servers[&key]
        .real_servers
        .keys()
        .copied()
        .collect();
    assert_eq!(servers, vec![new]);
}

/// A change taken between two parts of a periodic resync, but not yet due
/// (a sync ran within `--ipvs-min-sync-period`), is still pending when the
/// resync ends: the resync did not program it, so its latency and the
/// pending gauges wait for the sync that does. kube-proxy observes
/// `NetworkProgrammingLatency` in `syncProxyRules` for the changes that
/// sync applied (`endpointsChanges.Update` hands it only those).
#[tokio::test(start_paused = true)]
async fn a_change_still_pending_when_a_resync_ends_is_not_counted_as_programmed() {
    let mut h = Harness::start(Timing {
        min_sync_period: Duration::from_secs(15),
        ..timing()
    });
    initial_in_three_parts(&mut h);
    assert_eq!(h.next_sync().await.0, SyncKind::Full);
    let synced_at = Instant::now();
    let programmed = |h: &Harness| {
        h.metrics
            .network_programming
            .with_label_values(&["IPv4"])
            .get_sample_count()
    };
    let pending = |h: &Harness| {
        h.metrics
            .endpoint_changes_pending
            .with_label_values(&["IPv4"])
            .get()
    };

    // Endpoints are added, not moved, so that no drain check runs.
    // One change synced at 25 s, the next due 15 s later: the resync,
    // beginning at 30 s, syncs it first.
    h.dataplane.kernel().dump_delay = Duration::from_secs(5);
    tokio::time::sleep_until(synced_at + Duration::from_secs(25)).await;
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "s1",
        "TCP",
        &["10.244.0.1", "10.244.0.2"],
    ))));
    assert_eq!(h.next_sync().await.0, SyncKind::Incremental);
    tokio::time::sleep_until(synced_at + Duration::from_secs(29)).await;
    h.send(SourceEvent::EndpointSlices(Event::Apply(slice(
        "s2",
        "TCP",
        &["10.244.0.1", "10.244.0.2"],
    ))));
    let (kind, _) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(Instant::now(), synced_at + Duration::from_secs(30));

    // A change stamped by the EndpointSlice controller comes during the
    // resync's second part (30-35-40-45 s); it is due at 45 s.
    tokio::time::sleep_until(synced_at + Duration::from_secs(37)).await;
    let mut changed = slice("s1100", "TCP", &["10.244.0.1", "10.244.0.2"]);
    changed.metadata.annotations = Some(
        [(
            "endpoints.kubernetes.io/last-change-trigger-time".to_owned(),
            jiff::Timestamp::now().to_string(),
        )]
        .into(),
    );
    h.send(SourceEvent::EndpointSlices(Event::Apply(changed)));

    let (kind, _) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Full);
    assert_eq!(Instant::now(), synced_at + Duration::from_secs(45));
    let key = VirtualServerKey::inet(Protocol::Tcp, ip(&address(1100)), 80);
    let new = RealServerKey {
        address: ip("10.244.0.2"),
        port: 8080,
    };
    assert!(!h.dataplane.kernel().state.virtual_servers[&key]
        .real_servers
        .contains_key(&new));
    assert_eq!(programmed(&h), 0, "counted before it reached the kernel");
    assert_eq!(pending(&h), 1);

    let (kind, report) = h.next_sync().await;
    assert_eq!(kind, SyncKind::Incremental);
    assert_eq!(report.writes, 1, "{:?}", report.operations);
    assert!(h.dataplane.kernel().state.virtual_servers[&key]
        .real_servers
        .contains_key(&new));
    assert_eq!(programmed(&h), 1);
    assert_eq!(pending(&h), 0);
}

/// A node address added while the agent runs gets the NodePort's virtual
/// server at the next periodic resync, as kube-proxy's `syncProxyRules`
/// (pkg/proxy/ipvs/proxier.go) reads the node's addresses on every sync.
/// The addresses come from the resync's own listing (the one that finds the
/// dummy interface's): no second listing.
#[tokio::test(start_paused = true)]
async fn a_node_address_added_is_served_from_the_next_periodic_resync() {
    let mut h = Harness::start(timing());
    h.dataplane.kernel().node_addresses = vec![ip("192.168.0.10")];
    let node_port: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                 "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 31000}]}
    }))
    .unwrap();
    h.initial(vec![node_port], vec![slice("a", "TCP", &["10.244.0.1"])]);
    h.next_sync().await;
    let key = |address: &str| VirtualServerKey::inet(Protocol::Tcp, ip(address), 31000);
    assert!(h
        .dataplane
        .kernel()
        .state
        .virtual_servers
        .contains_key(&key("192.168.0.10")));
    let listings = h.dataplane.kernel().node_address_listings;
    let started = Instant::now();

    h.dataplane.kernel().node_addresses.push(ip("192.168.0.11"));
    while !h
        .dataplane
        .kernel()
        .state
        .virtual_servers
        .contains_key(&key("192.168.0.11"))
    {
        h.next_sync().await;
        assert!(
            Instant::now() - started <= timing().sync_period * 2,
            "not served in a resync"
        );
    }
    let k = h.dataplane.kernel();
    assert!(k.state.virtual_servers.contains_key(&key("192.168.0.10")));
    assert_eq!(
        k.node_address_listings, listings,
        "listed apart from the dump"
    );
}
