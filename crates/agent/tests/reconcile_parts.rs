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
use kube_ipvs::reconcile::Reconciler;
use kube_ipvs_controller::{
    plan, DesiredState, DesiredVirtualServer, Draining, Extent, Intent, Op, PlanConfig, ServiceRef,
    ServiceState, VecMap, VecSet, VirtualServerKind,
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
    let mut fewer = desired();
    let gone = endpoint(7, 0);
    for state in fewer.services.values_mut() {
        for vs in state.virtual_servers.values_mut() {
            vs.real_servers.remove(&gone.key);
        }
    }
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
    dataplane
        .kernel()
        .state
        .virtual_servers
        .get_mut(&key(7))
        .and_then(|vs| vs.real_servers.get_mut(&gone.key))
        .expect("in the kernel")
        .counters
        .active_connections = 1;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    reconciler.full_sync(fewer.clone()).await.unwrap();
    reconciler.resync().await.unwrap();
    assert_eq!(reconciler.draining().get(&id), Some(&began));
    assert_eq!(reconciler.draining().len(), 1);
}
