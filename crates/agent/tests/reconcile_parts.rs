//! A full sync planned and applied in parts (the addresses, then the virtual
//! servers a few hundred at a time) must do exactly what one plan of
//! everything does: the same writes, in an order the kernel accepts, and
//! the same kernel at the end. kube-proxy's `syncProxyRules` compares every
//! Service in one pass; this is the same comparison, cut in pieces.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use kube_ipvs::dataplane::MemoryDataplane;
use kube_ipvs::metrics::Metrics;
use kube_ipvs::reconcile::{Reconciler, SyncReport};
use kube_ipvs_controller::{
    plan, DesiredState, DesiredVirtualServer, Draining, Extent, Intent, Op, Owner, PlanConfig,
    ServiceRef, ServiceState, VecMap, VecSet, VirtualServerKind,
};
use kube_ipvs_netlink::{
    DumpedRealServer, DumpedVirtualServer, Operation, Protocol, RealServer, Scheduler, Stats,
    VirtualServer, VirtualServerKey,
};

const SERVICES: u32 = 1_300;

fn vip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i))
}

fn endpoint(i: u32, e: u32) -> RealServer {
    RealServer::new(IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i * 16 + e)), 8080)
}

fn key(i: u32) -> VirtualServerKey {
    VirtualServerKey::inet(Protocol::Tcp, vip(i), 80)
}

/// Services 0..SERVICES, each with one TCP virtual server on its own
/// address and four endpoints.
fn desired() -> DesiredState {
    let services = (0..SERVICES)
        .map(|i| {
            let vs = DesiredVirtualServer {
                service: VirtualServer::new(key(i), Scheduler::Rr),
                real_servers: (0..4)
                    .map(|e| {
                        let r = endpoint(i, e);
                        (r.key, r)
                    })
                    .collect(),
                port_name: "http".into(),
                kind: VirtualServerKind::ClusterIp,
                source_ranges: Vec::new(),
                traffic_policy: Default::default(),
            };
            let state = ServiceState {
                virtual_servers: VecMap::from([(key(i), vs)]),
                addresses: VecSet::from([vip(i)]),
                target: None,
            };
            (ServiceRef::new("default", format!("svc-{i}")), state)
        })
        .collect();
    DesiredState {
        services,
        ..Default::default()
    }
}

fn dumped(server: RealServer) -> DumpedRealServer {
    DumpedRealServer {
        server,
        counters: Default::default(),
    }
}

/// A kernel that differs from the desired state in every way a full sync
/// repairs: Services missing (every third), a real server too many, one
/// missing and one at another weight (the others), a virtual server of a
/// Service gone on a bound address, an address bound for nobody, and a
/// virtual server that is not the agent's (its address is not bound).
fn kernel() -> (
    Vec<(DumpedVirtualServer, Vec<DumpedRealServer>)>,
    Vec<IpAddr>,
) {
    let mut dump = Vec::new();
    let mut addresses = Vec::new();
    for i in (0..SERVICES).filter(|i| i % 3 != 0) {
        addresses.push(vip(i));
        let mut dests: Vec<DumpedRealServer> = (1..4).map(|e| dumped(endpoint(i, e))).collect();
        dests[0].server.weight = 7;
        // UDP is deleted at once; a TCP leftover would drain first.
        let mut stale = VirtualServer::new(
            VirtualServerKey::inet(Protocol::Udp, vip(i), 53),
            Scheduler::Rr,
        );
        stale.flags = Default::default();
        dump.push((
            DumpedVirtualServer {
                service: VirtualServer::new(key(i), Scheduler::Rr),
                stats: Stats::default(),
            },
            dests,
        ));
        if i % 100 == 1 {
            dump.push((
                DumpedVirtualServer {
                    service: stale,
                    stats: Stats::default(),
                },
                vec![dumped(endpoint(i, 9))],
            ));
        }
    }
    let gone = IpAddr::V4(Ipv4Addr::new(10, 97, 0, 1));
    addresses.push(gone);
    dump.push((
        DumpedVirtualServer {
            service: VirtualServer::new(
                VirtualServerKey::inet(Protocol::Udp, gone, 53),
                Scheduler::Rr,
            ),
            stats: Stats::default(),
        },
        vec![dumped(endpoint(9_000, 1))],
    ));
    addresses.push(IpAddr::V4(Ipv4Addr::new(10, 97, 0, 2)));
    let foreign = VirtualServerKey::inet(Protocol::Tcp, Ipv4Addr::new(192, 0, 2, 1).into(), 80);
    dump.push((
        DumpedVirtualServer {
            service: VirtualServer::new(foreign, Scheduler::Wlc),
            stats: Stats::default(),
        },
        vec![dumped(endpoint(9_001, 1))],
    ));
    (dump, addresses)
}

fn counts(ops: &[Op]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for op in ops {
        *out.entry(op.to_string()).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn a_full_sync_in_parts_does_what_one_plan_of_everything_does() {
    let (dump, addresses) = kernel();
    let observed = kube_ipvs_controller::Observed::from_dump(dump, addresses);
    let whole = plan(
        &observed,
        &Intent::new(desired()),
        Extent::All,
        &PlanConfig::default(),
        &Draining::new(),
        Instant::now(),
    );

    let dataplane = MemoryDataplane::new();
    dataplane.kernel().state = observed.clone();
    let mut reconciler = Reconciler::new(
        dataplane.clone(),
        PlanConfig::default(),
        Metrics::unregistered(),
    );
    let report = reconciler.full_sync(desired()).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    let (writes, state) = {
        let kernel = dataplane.kernel();
        (kernel.writes.clone(), kernel.state.clone())
    };
    // SERVICES is several parts of 512: the parts wrote what one plan would.
    assert!(whole.ops.len() > 2_000, "{} operations", whole.ops.len());
    assert_eq!(counts(&writes), counts(&whole.ops));
    assert_eq!(report.writes, whole.ops.len());

    // Each address is bound before a virtual server on it is created, and
    // unbound after every virtual server on it is gone.
    let at = |wanted: &Op| writes.iter().position(|op| op == wanted);
    for (i, op) in writes.iter().enumerate() {
        if let Op::Ipvs(Operation::NewService(vs)) = op {
            let address = vs.key.address().unwrap();
            if let Some(bind) = at(&Op::BindAddress(address)) {
                assert!(bind < i, "{address} bound after its virtual server");
            }
        }
        if let Op::UnbindAddress(address) = op {
            assert!(!writes[i..].iter().any(
                |later| matches!(later, Op::Ipvs(Operation::DelService(k)) if k.address() == Some(*address))
            ));
        }
    }

    // The kernel holds the desired state and the foreign virtual server.
    let intent = Intent::new(desired());
    let mut want: Vec<VirtualServerKey> = intent.keys().copied().collect();
    want.push(VirtualServerKey::inet(
        Protocol::Tcp,
        Ipv4Addr::new(192, 0, 2, 1).into(),
        80,
    ));
    want.sort();
    let have: Vec<VirtualServerKey> = state.virtual_servers.keys().copied().collect();
    assert_eq!(have, want);
    for i in 0..SERVICES {
        let vs = &state.virtual_servers[&key(i)];
        let servers: Vec<RealServer> = vs.real_servers.values().map(|r| r.server).collect();
        let expected: Vec<RealServer> = (0..4).map(|e| endpoint(i, e)).collect();
        assert_eq!(servers, expected, "service {i}");
    }
    let bound: Vec<IpAddr> = state.addresses.iter().copied().collect();
    let wanted: Vec<IpAddr> = intent.addresses().copied().collect();
    assert_eq!(bound, wanted);

    // A second full sync finds nothing to do.
    let again = reconciler.full_sync(desired()).await.unwrap();
    assert_eq!(again.writes, 0);
}

/// [`desired`] without the real server `gone`.
fn desired_without(gone: RealServer) -> DesiredState {
    let mut fewer = desired();
    for state in fewer.services.values_mut() {
        for vs in state.virtual_servers.values_mut() {
            vs.real_servers.remove(&gone.key);
        }
    }
    fewer
}

/// The kernel's real server `rs` of `vs` has an open connection.
fn hold_a_connection(dataplane: &MemoryDataplane, vs: VirtualServerKey, rs: RealServer) {
    dataplane
        .kernel()
        .state
        .virtual_servers
        .get_mut(&vs)
        .and_then(|vs| vs.real_servers.get_mut(&rs.key))
        .expect("in the kernel")
        .counters
        .active_connections = 1;
}

/// A TCP real server that leaves drains at weight 0 from when it left; full
/// syncs in parts (the address part among them) go on with that start
/// instead of starting the drain over, as the one plan of everything did
/// (kube-proxy's graceful termination keeps one deadline per real server).
#[tokio::test]
async fn full_syncs_in_parts_keep_when_a_drain_began() {
    let dataplane = MemoryDataplane::new();
    let config = PlanConfig {
        graceful_period: std::time::Duration::from_secs(3600),
        ..PlanConfig::default()
    };
    let mut reconciler = Reconciler::new(dataplane.clone(), config, Metrics::unregistered());
    reconciler.full_sync(desired()).await.unwrap();

    // Service 7 loses its endpoint 0: it drains.
    let gone = endpoint(7, 0);
    let fewer = desired_without(gone);
    reconciler.full_sync(fewer.clone()).await.unwrap();
    let id = (key(7), gone.key);
    let began = *reconciler.draining().get(&id).expect("draining");
    assert_eq!(
        dataplane.kernel().state.virtual_servers[&key(7)].real_servers[&gone.key]
            .server
            .weight,
        0
    );

    // A connection stays open on it, so it goes only when its time is up.
    hold_a_connection(&dataplane, key(7), gone);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    reconciler.full_sync(fewer.clone()).await.unwrap();
    reconciler.resync().await.unwrap();
    assert_eq!(reconciler.draining().get(&id), Some(&began));
    assert_eq!(reconciler.draining().len(), 1);
}

/// The Service `i` of [`desired`] with endpoints `endpoints`.
fn service_state(i: u32, endpoints: std::ops::Range<u32>) -> (Owner, Option<ServiceState>) {
    let mut state = desired();
    let name = ServiceRef::new("default", format!("svc-{i}"));
    let mut service = state.services.remove(&name).expect("a desired Service");
    for vs in service.virtual_servers.values_mut() {
        vs.real_servers = endpoints
            .clone()
            .map(|e| {
                let r = endpoint(i, e);
                (r.key, r)
            })
            .collect();
    }
    (Owner::Service(name), Some(service))
}

/// Synced everything but Service 1200, whose virtual server was refused and
/// then appeared in the kernel as it is wanted after all: the cache does not
/// know it.
async fn unknown_to_the_cache(
    dataplane: &MemoryDataplane,
    reconciler: &mut Reconciler<MemoryDataplane>,
) {
    dataplane
        .kernel()
        .fail_next
        .push(Op::Ipvs(Operation::NewService(VirtualServer::new(
            key(1200),
            Scheduler::Rr,
        ))));
    let first = reconciler.full_sync(desired()).await.unwrap();
    assert!(!first.failures.is_empty());
    assert!(!reconciler
        .observed()
        .virtual_servers
        .contains_key(&key(1200)));
    {
        let mut k = dataplane.kernel();
        let mut vs = kube_ipvs_controller::ObservedVirtualServer {
            service: VirtualServer::new(key(1200), Scheduler::Rr),
            real_servers: Default::default(),
        };
        for e in 0..4 {
            vs.real_servers.insert(
                endpoint(1200, e).key,
                kube_ipvs_controller::ObservedRealServer {
                    server: endpoint(1200, e),
                    counters: Default::default(),
                },
            );
        }
        k.state.virtual_servers.insert(key(1200), vs);
    }
}

/// A reconciler over a fresh kernel after [`unknown_to_the_cache`].
async fn with_one_unknown() -> (MemoryDataplane, Reconciler<MemoryDataplane>) {
    let dataplane = MemoryDataplane::new();
    let mut reconciler = Reconciler::new(
        dataplane.clone(),
        PlanConfig::default(),
        Metrics::unregistered(),
    );
    unknown_to_the_cache(&dataplane, &mut reconciler).await;
    (dataplane, reconciler)
}

/// Runs the resync under way to its end: how many parts that took, and its report.
async fn rest_of_the_resync(reconciler: &mut Reconciler<MemoryDataplane>) -> (usize, SyncReport) {
    let mut parts = 0;
    loop {
        parts += 1;
        if let Some(report) = reconciler.resync_part().await.unwrap() {
            return (parts, report);
        }
    }
}

/// A resync dropped for another (a relist's full sync) leaves the virtual
/// servers whose real servers it never dumped unknown to the next: a change
/// synced between the next one's parts dumps them instead of taking them
/// for empty.
#[tokio::test]
async fn a_resync_begun_over_another_dumps_what_the_first_never_did() {
    let (dataplane, mut reconciler) = with_one_unknown().await;
    reconciler.begin_resync().await.unwrap();
    reconciler.begin_resync().await.unwrap();
    // Service 1200 changes before its part: its real servers are dumped
    // first, so nothing is written twice.
    let report = reconciler.sync_services([service_state(1200, 0..4)]).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.writes, 0, "{:?}", report.operations);
    let (_, report) = rest_of_the_resync(&mut reconciler).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(&dataplane.kernel().state, reconciler.observed());
}

/// A periodic resync runs in parts (kube-proxy's `syncProxyRules` holds
/// every change back until its one pass ends): changes synced between the
/// parts go to the kernel at once, whether their virtual server's part is
/// done, still to come, or its real servers were never dumped (a virtual
/// server the cache did not know when the resync began is dumped before the
/// change is planned against it), and the parts after them find nothing
/// left to repair.
#[tokio::test]
async fn changes_synced_between_the_parts_of_a_resync_go_to_the_kernel_at_once() {
    let (dataplane, mut reconciler) = with_one_unknown().await;

    reconciler.begin_resync().await.unwrap();
    assert!(reconciler.resyncing());
    assert_eq!(
        reconciler.resync_part().await.unwrap().map(|r| r.writes),
        None
    );
    let before = dataplane.kernel().writes.len();

    // Service 3's part is done, 1000's is still to come, 1100 goes, and
    // 1200's real servers were never dumped.
    let report = reconciler
        .sync_services([
            service_state(3, 0..5),
            service_state(1000, 1..4),
            (Owner::Service(ServiceRef::new("default", "svc-1100")), None),
            service_state(1200, 0..4),
        ])
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    {
        let k = dataplane.kernel();
        let new: Vec<String> = k.writes[before..].iter().map(ToString::to_string).collect();
        // One real server added, one drained (TCP: weight 0), one virtual
        // server deleted with its address; nothing for Service 1200.
        assert_eq!(new.len(), 4, "{new:?}");
        assert!(k.state.virtual_servers[&key(3)]
            .real_servers
            .contains_key(&endpoint(3, 4).key));
        assert_eq!(
            k.state.virtual_servers[&key(1000)].real_servers[&endpoint(1000, 0).key]
                .server
                .weight,
            0
        );
        assert!(!k.state.virtual_servers.contains_key(&key(1100)));
    }

    let (parts, report) = rest_of_the_resync(&mut reconciler).await;
    assert_eq!(1 + parts, SERVICES.div_ceil(512) as usize);
    assert!(!reconciler.resyncing());
    assert!(report.dumped);
    // Only the real server drained above goes, at its part: it has no
    // connections. Nothing else was left to repair.
    assert_eq!(
        report.operations,
        BTreeMap::from([("del_dest", 1)]),
        "{:?}",
        report.operations
    );
    assert_eq!(report.writes, 1);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(&dataplane.kernel().state, reconciler.observed());
}

/// After a restart the cache knows no real server until its part dumps it:
/// a drain begun before the restart goes on from its recorded start, not
/// from the first sync after it (kube-proxy's graceful termination list
/// lives in memory and starts over; the drain store keeps it here).
#[tokio::test]
async fn a_drain_begun_before_a_restart_keeps_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("drains");
    let dataplane = MemoryDataplane::new();
    let config = PlanConfig {
        graceful_period: std::time::Duration::from_secs(3600),
        ..PlanConfig::default()
    };
    let mut before = Reconciler::new(dataplane.clone(), config.clone(), Metrics::unregistered())
        .with_drain_store(kube_ipvs::drain_state::DrainStore::new(&store));
    before.full_sync(desired()).await.unwrap();
    let gone = endpoint(1_100, 0);
    let fewer = desired_without(gone);
    before.full_sync(fewer.clone()).await.unwrap();
    let id = (key(1_100), gone.key);
    let began = *before.draining().get(&id).expect("draining");
    hold_a_connection(&dataplane, key(1_100), gone);
    drop(before);

    // The store keeps whole seconds: a start taken anew would be 2 s later.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut after = Reconciler::new(dataplane.clone(), config, Metrics::unregistered())
        .with_drain_store(kube_ipvs::drain_state::DrainStore::new(&store));
    let report = after.full_sync(fewer).await.unwrap();
    assert_eq!(report.writes, 0, "{:?}", report.operations);
    let start = *after.draining().get(&id).expect("still draining");
    assert!(
        start < began + std::time::Duration::from_millis(1_500),
        "the drain started over: {:?} after it began",
        start.duration_since(began)
    );
}
