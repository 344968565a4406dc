//! Planner tests: minimal operations for each kind of change, ownership and
//! graceful termination.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kube_ipvs_controller::{
    plan, Connections, DesiredState, DesiredVirtualServer, Draining, Extent, Intent, KeyedVec,
    Observed, ObservedRealServer, Op, Owner, PlanConfig, Scope, ServiceRef, ServiceState, VecMap,
    VecSet, VirtualServerKind,
};
use kube_ipvs_model::{
    DumpedRealServer, DumpedVirtualServer, Operation, Protocol, RealServer, RealServerCounters,
    RealServerKey, Scheduler, Stats, VirtualServer, VirtualServerKey,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(proto: Protocol, addr: &str, port: u16) -> VirtualServerKey {
    VirtualServerKey::inet(proto, ip(addr), port)
}

fn rs(addr: &str, port: u16) -> RealServer {
    RealServer::new(ip(addr), port)
}

/// A Service with one virtual server on `vip:port` and the given endpoints.
fn service(vip: &str, proto: Protocol, port: u16, endpoints: &[&str]) -> ServiceState {
    let k = key(proto, vip, port);
    let vs = DesiredVirtualServer {
        service: VirtualServer::new(k, Scheduler::Rr),
        real_servers: endpoints
            .iter()
            .map(|e| {
                let r = rs(e, 8080);
                (r.key, r)
            })
            .collect(),
        port_name: "http".into(),
        kind: VirtualServerKind::ClusterIp,
        source_ranges: Vec::new(),
        traffic_policy: Default::default(),
    };
    ServiceState {
        virtual_servers: VecMap::from([(k, vs)]),
        addresses: VecSet::from([ip(vip)]),
        target: None,
    }
}

fn desired(services: Vec<(&str, ServiceState)>) -> DesiredState {
    DesiredState {
        services: services
            .into_iter()
            .map(|(n, s)| (ServiceRef::new("default", n), s))
            .collect(),
        ..Default::default()
    }
}

/// The kernel state that exactly matches `desired`, with zero counters.
fn observed_from(desired: &DesiredState) -> Observed {
    let mut dump = Vec::new();
    let mut addresses = Vec::new();
    for state in desired.services.values() {
        addresses.extend(state.addresses.iter().copied());
        for vs in state.virtual_servers.values() {
            let dests = vs
                .real_servers
                .values()
                .map(|r| DumpedRealServer {
                    server: *r,
                    counters: RealServerCounters::default(),
                })
                .collect();
            dump.push((
                DumpedVirtualServer {
                    service: vs.service.clone(),
                    stats: Stats::default(),
                },
                dests,
            ));
        }
    }
    Observed::from_dump(dump, addresses)
}

/// Plans only the part of the kernel `scope` names, with the default
/// ownership and nothing draining.
fn scoped(observed: &Observed, intent: &Intent, scope: &Scope) -> Vec<Op> {
    plan(
        observed,
        intent,
        Extent::Scope(scope),
        &PlanConfig::default(),
        &Draining::new(),
        Instant::now(),
    )
    .ops
}

fn full(observed: &Observed, desired: &DesiredState, config: &PlanConfig) -> Vec<Op> {
    let intent = Intent::new(desired.clone());
    plan(
        observed,
        &intent,
        Extent::All,
        config,
        &Draining::new(),
        Instant::now(),
    )
    .ops
}

#[test]
fn empty_kernel_gets_address_service_and_destinations_in_order() {
    let want = desired(vec![(
        "web",
        service(
            "10.96.0.1",
            Protocol::Tcp,
            80,
            &["10.244.0.1", "10.244.0.2"],
        ),
    )]);
    let ops = full(&Observed::default(), &want, &PlanConfig::default());
    let k = key(Protocol::Tcp, "10.96.0.1", 80);
    assert_eq!(
        ops,
        vec![
            Op::BindAddress(ip("10.96.0.1")),
            Op::Ipvs(Operation::NewService(VirtualServer::new(k, Scheduler::Rr))),
            Op::Ipvs(Operation::NewDest(k, rs("10.244.0.1", 8080))),
            Op::Ipvs(Operation::NewDest(k, rs("10.244.0.2", 8080))),
        ]
    );
}

#[test]
fn unchanged_state_plans_nothing() {
    let want = desired(vec![
        (
            "web",
            service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
        ),
        (
            "dns",
            service(
                "10.96.0.10",
                Protocol::Udp,
                53,
                &["10.244.0.5", "10.244.0.6"],
            ),
        ),
    ]);
    assert_eq!(
        full(&observed_from(&want), &want, &PlanConfig::default()),
        vec![]
    );
}

#[test]
fn hashed_flag_in_a_dump_is_not_a_change() {
    let want = desired(vec![(
        "web",
        service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
    )]);
    let k = key(Protocol::Tcp, "10.96.0.1", 80);
    let mut kernel = VirtualServer::new(k, Scheduler::Rr);
    kernel.flags = kube_ipvs_model::ServiceFlags::HASHED;
    let observed = Observed::from_dump(
        vec![(
            DumpedVirtualServer {
                service: kernel,
                stats: Stats::default(),
            },
            vec![DumpedRealServer {
                server: rs("10.244.0.1", 8080),
                counters: RealServerCounters {
                    active_connections: 5,
                    ..Default::default()
                },
            }],
        )],
        vec![ip("10.96.0.1")],
    );
    assert_eq!(full(&observed, &want, &PlanConfig::default()), vec![]);
}

#[test]
fn scheduler_flag_and_persistence_changes_update_in_place() {
    let before = desired(vec![(
        "web",
        service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
    )]);
    let k = key(Protocol::Tcp, "10.96.0.1", 80);
    for change in [
        VirtualServer::new(k, Scheduler::Sh),
        VirtualServer {
            flags: kube_ipvs_model::ServiceFlags::SCHED2,
            ..VirtualServer::new(k, Scheduler::Sh)
        },
        VirtualServer::new(k, Scheduler::Rr).persistent(10800),
    ] {
        let mut after = before.clone();
        let svc = after.services.values_mut().next().unwrap();
        svc.virtual_servers.get_mut(&k).unwrap().service = change.clone();
        let ops = full(&observed_from(&before), &after, &PlanConfig::default());
        assert_eq!(ops, vec![Op::Ipvs(Operation::SetService(change))]);
    }
}

#[test]
fn weight_change_updates_the_destination() {
    let before = desired(vec![(
        "web",
        service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
    )]);
    let k = key(Protocol::Tcp, "10.96.0.1", 80);
    let mut after = before.clone();
    let heavier = RealServer {
        weight: 5,
        ..rs("10.244.0.1", 8080)
    };
    after
        .services
        .values_mut()
        .next()
        .unwrap()
        .virtual_servers
        .get_mut(&k)
        .unwrap()
        .real_servers = KeyedVec::from([(heavier.key, heavier)]);
    assert_eq!(
        full(&observed_from(&before), &after, &PlanConfig::default()),
        vec![Op::Ipvs(Operation::SetDest(k, heavier))]
    );
}

#[test]
fn replaced_udp_endpoint_costs_two_writes() {
    let before = desired(vec![(
        "dns",
        service("10.96.0.10", Protocol::Udp, 53, &["10.244.0.5"]),
    )]);
    let after = desired(vec![(
        "dns",
        service("10.96.0.10", Protocol::Udp, 53, &["10.244.0.6"]),
    )]);
    let k = key(Protocol::Udp, "10.96.0.10", 53);
    assert_eq!(
        full(&observed_from(&before), &after, &PlanConfig::default()),
        vec![
            Op::Ipvs(Operation::NewDest(k, rs("10.244.0.6", 8080))),
            Op::Ipvs(Operation::DelDest(k, rs("10.244.0.5", 8080).key)),
        ]
    );
}

#[test]
fn incremental_plan_touches_only_the_changed_service() {
    // 1,000 Services in the kernel; one replaces its endpoint.
    let services: Vec<(String, ServiceState)> = (0..1000u32)
        .map(|i| {
            let vip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
            (
                format!("svc-{i}"),
                service(&vip, Protocol::Udp, 53, &["10.244.0.1"]),
            )
        })
        .collect();
    let before = DesiredState {
        services: services
            .iter()
            .map(|(n, s)| (ServiceRef::new("default", n.clone()), s.clone()))
            .collect(),
        ..Default::default()
    };
    let mut observed = observed_from(&before);
    // Drift outside the change must not be looked at by an incremental plan.
    observed
        .virtual_servers
        .remove(&key(Protocol::Udp, "10.96.0.1", 53));

    let mut intent = Intent::new(before.clone());
    let changed = ServiceRef::new("default", "svc-500");
    let vip = "10.96.2.1";
    let scope = intent.replace(
        changed,
        Some(service(vip, Protocol::Udp, 53, &["10.244.0.2"])),
    );
    let out = scoped(&observed, &intent, &scope);
    let k = key(Protocol::Udp, vip, 53);
    assert_eq!(
        out,
        vec![
            Op::Ipvs(Operation::NewDest(k, rs("10.244.0.2", 8080))),
            Op::Ipvs(Operation::DelDest(k, rs("10.244.0.1", 8080).key)),
        ]
    );

    // The full resync finds the drift.
    let repaired = plan(
        &observed,
        &intent,
        Extent::All,
        &PlanConfig::default(),
        &Draining::new(),
        Instant::now(),
    );
    assert!(repaired.ops.iter().any(|op| *op
        == Op::Ipvs(Operation::NewService(VirtualServer::new(
            key(Protocol::Udp, "10.96.0.1", 53),
            Scheduler::Rr
        )))));
}

#[test]
fn deleted_service_removes_its_virtual_server_and_address() {
    let before = desired(vec![(
        "web",
        service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
    )]);
    let mut intent = Intent::new(before.clone());
    let scope = intent.replace(ServiceRef::new("default", "web"), None);
    let out = scoped(&observed_from(&before), &intent, &scope);
    assert_eq!(
        out,
        vec![
            Op::Ipvs(Operation::DelService(key(Protocol::Tcp, "10.96.0.1", 80))),
            Op::UnbindAddress(ip("10.96.0.1")),
        ]
    );
}

#[test]
fn shared_address_stays_bound_while_one_service_still_needs_it() {
    let a = service("203.0.113.10", Protocol::Tcp, 10000, &["10.244.0.1"]);
    let b = service("203.0.113.10", Protocol::Tcp, 20000, &["10.244.0.2"]);
    let before = desired(vec![("a", a), ("b", b)]);
    let mut intent = Intent::new(before.clone());
    let scope = intent.replace(ServiceRef::new("default", "a"), None);
    let out = scoped(&observed_from(&before), &intent, &scope);
    assert_eq!(
        out,
        vec![Op::Ipvs(Operation::DelService(key(
            Protocol::Tcp,
            "203.0.113.10",
            10000
        )))]
    );
}

#[test]
fn ownership_foreign_excluded_and_stale() {
    let want = DesiredState {
        node_addresses: BTreeSet::from([ip("192.168.0.10")]),
        ..desired(vec![(
            "web",
            service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
        )])
    };
    let mut observed = observed_from(&want);
    let vs = |addr: &str, port: u16| {
        (
            DumpedVirtualServer {
                service: VirtualServer::new(key(Protocol::Tcp, addr, port), Scheduler::Wlc),
                stats: Stats::default(),
            },
            vec![],
        )
    };
    let extra = Observed::from_dump(
        vec![
            vs("192.0.2.50", 443),     // foreign: not bound on the dummy, not a node port
            vs("10.96.99.1", 80),      // stale: bound on the dummy, no Service wants it
            vs("10.100.0.1", 80),      // bound, but in an excluded CIDR
            vs("192.168.0.10", 30080), // node address, node-port range: ours
            vs("192.168.0.10", 22),    // node address, outside the range: foreign
        ],
        [ip("10.96.99.1"), ip("10.100.0.1")],
    );
    observed.virtual_servers.extend(extra.virtual_servers);
    observed.addresses.extend(extra.addresses);
    let config = PlanConfig {
        exclude_cidrs: vec!["10.100.0.0/16".parse().unwrap()],
        ..Default::default()
    };
    assert_eq!(
        full(&observed, &want, &config),
        vec![
            Op::Ipvs(Operation::DelService(key(Protocol::Tcp, "10.96.99.1", 80))),
            Op::Ipvs(Operation::DelService(key(
                Protocol::Tcp,
                "192.168.0.10",
                30080
            ))),
            Op::UnbindAddress(ip("10.96.99.1")),
        ]
    );
}

#[test]
fn firewall_mark_services_are_never_ours() {
    let want = DesiredState::default();
    let observed = Observed::from_dump(
        vec![(
            DumpedVirtualServer {
                service: VirtualServer::new(
                    VirtualServerKey::FirewallMark {
                        family: kube_ipvs_model::AddressFamily::Inet,
                        mark: 7,
                    },
                    Scheduler::Rr,
                ),
                stats: Stats::default(),
            },
            vec![],
        )],
        [],
    );
    assert_eq!(full(&observed, &want, &PlanConfig::default()), vec![]);
}

/// Kernel state for one TCP virtual server whose real server `gone` has
/// `weight` and `connections`.
fn draining_setup(
    weight: u32,
    connections: u32,
) -> (Observed, Intent, VirtualServerKey, RealServerKey) {
    let want = desired(vec![(
        "web",
        service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
    )]);
    let mut observed = observed_from(&want);
    let k = key(Protocol::Tcp, "10.96.0.1", 80);
    let gone = RealServer {
        weight,
        ..rs("10.244.0.9", 8080)
    };
    observed
        .virtual_servers
        .get_mut(&k)
        .unwrap()
        .real_servers
        .insert(
            gone.key,
            ObservedRealServer {
                server: gone,
                counters: Connections {
                    active_connections: connections,
                    ..Default::default()
                },
            },
        );
    (observed, Intent::new(want), k, gone.key)
}

#[test]
fn tcp_real_server_drains_at_weight_zero_then_goes() {
    let config = PlanConfig::default();
    let t0 = Instant::now();

    // Leaving: weight 0, starts draining.
    let (observed, intent, k, gone) = draining_setup(1, 3);
    let out = plan(
        &observed,
        &intent,
        Extent::All,
        &config,
        &Draining::new(),
        t0,
    );
    let zero = RealServer {
        weight: 0,
        ..rs("10.244.0.9", 8080)
    };
    assert_eq!(out.ops, vec![Op::Ipvs(Operation::SetDest(k, zero))]);
    assert_eq!(out.draining, Draining::from([((k, gone), t0)]));

    // Still connected, within the period: nothing, still draining since t0.
    let (observed, intent, ..) = draining_setup(0, 3);
    let later = t0 + Duration::from_secs(10);
    let out2 = plan(
        &observed,
        &intent,
        Extent::All,
        &config,
        &out.draining,
        later,
    );
    assert_eq!(out2.ops, vec![]);
    assert_eq!(out2.draining, out.draining);

    // Connections closed: deleted.
    let (observed, intent, ..) = draining_setup(0, 0);
    let out3 = plan(
        &observed,
        &intent,
        Extent::All,
        &config,
        &out.draining,
        later,
    );
    assert_eq!(out3.ops, vec![Op::Ipvs(Operation::DelDest(k, gone))]);
    assert!(out3.draining.is_empty());

    // Or the graceful period ran out with connections still open: deleted.
    let (observed, intent, ..) = draining_setup(0, 3);
    let out4 = plan(
        &observed,
        &intent,
        Extent::All,
        &config,
        &out.draining,
        t0 + Duration::from_secs(30),
    );
    assert_eq!(out4.ops, vec![Op::Ipvs(Operation::DelDest(k, gone))]);
}

#[test]
fn draining_real_server_that_comes_back_gets_its_weight_back() {
    let (observed, _, k, gone) = draining_setup(0, 3);
    let t0 = Instant::now();
    let draining = Draining::from([((k, gone), t0)]);
    let want = desired(vec![(
        "web",
        service(
            "10.96.0.1",
            Protocol::Tcp,
            80,
            &["10.244.0.1", "10.244.0.9"],
        ),
    )]);
    let out = plan(
        &observed,
        &Intent::new(want),
        Extent::All,
        &PlanConfig::default(),
        &draining,
        t0,
    );
    assert_eq!(
        out.ops,
        vec![Op::Ipvs(Operation::SetDest(k, rs("10.244.0.9", 8080)))]
    );
    assert!(out.draining.is_empty());
}

#[test]
fn sctp_and_udp_real_servers_go_at_once() {
    for proto in [Protocol::Udp, Protocol::Sctp] {
        let before = desired(vec![(
            "s",
            service("10.96.0.7", proto, 9000, &["10.244.0.1", "10.244.0.2"]),
        )]);
        let after = desired(vec![(
            "s",
            service("10.96.0.7", proto, 9000, &["10.244.0.1"]),
        )]);
        let k = key(proto, "10.96.0.7", 9000);
        let out = plan(
            &observed_from(&before),
            &Intent::new(after),
            Extent::All,
            &PlanConfig::default(),
            &Draining::new(),
            Instant::now(),
        );
        assert_eq!(
            out.ops,
            vec![Op::Ipvs(Operation::DelDest(k, rs("10.244.0.2", 8080).key))]
        );
        assert!(out.draining.is_empty());
    }
}

#[test]
fn observed_records_applied_operations() {
    let want = desired(vec![(
        "web",
        service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]),
    )]);
    let ops = full(&Observed::default(), &want, &PlanConfig::default());
    let mut observed = Observed::default();
    for op in &ops {
        observed.record(op);
    }
    assert_eq!(observed, observed_from(&want));
    assert_eq!(full(&observed, &want, &PlanConfig::default()), vec![]);
}

/// Recorded as a batch, a sequence of operations leaves the cache as each
/// recorded in turn does: runs of real servers for one virtual server,
/// runs broken by other operations, real servers of a virtual server the
/// cache does not hold (ignored), changed and deleted ones.
#[test]
fn observed_records_a_batch_as_one_operation_at_a_time() {
    let want = desired(vec![
        (
            "web",
            service(
                "10.96.0.1",
                Protocol::Tcp,
                80,
                &["10.244.0.1", "10.244.0.2"],
            ),
        ),
        (
            "api",
            service("10.96.0.2", Protocol::Udp, 53, &["10.244.0.3"]),
        ),
    ]);
    let mut ops = full(&Observed::default(), &want, &PlanConfig::default());
    let web = key(Protocol::Tcp, "10.96.0.1", 80);
    let absent = key(Protocol::Tcp, "10.96.0.9", 80);
    let mut changed = rs("10.244.0.1", 8080);
    changed.weight = 7;
    ops.extend([
        Op::Ipvs(Operation::NewDest(absent, rs("10.244.0.9", 8080))),
        Op::Ipvs(Operation::NewDest(web, rs("10.244.0.4", 8080))),
        Op::Ipvs(Operation::SetDest(web, changed)),
        Op::Ipvs(Operation::NewDest(absent, rs("10.244.0.8", 8080))),
        Op::Ipvs(Operation::NewDest(web, rs("10.244.0.5", 8080))),
        Op::Ipvs(Operation::DelDest(web, rs("10.244.0.2", 8080).key)),
        Op::Ipvs(Operation::NewDest(web, rs("10.244.0.2", 8080))),
        Op::BindAddress(ip("10.96.0.9")),
    ]);
    let mut one_at_a_time = Observed::default();
    for op in &ops {
        one_at_a_time.record(op);
    }
    let mut batch = Observed::default();
    batch.record_all(&ops);
    assert_eq!(batch, one_at_a_time);
    let web_servers = &batch.virtual_servers[&web].real_servers;
    assert_eq!(web_servers.len(), 4);
    assert!(!batch.virtual_servers.contains_key(&absent));
}

#[test]
fn conflicting_services_resolve_by_name_whatever_the_order() {
    let a = service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"]);
    let b = service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.2"]);
    let mut one = Intent::default();
    one.replace(ServiceRef::new("default", "b"), Some(b.clone()));
    one.replace(ServiceRef::new("default", "a"), Some(a.clone()));
    let mut two = Intent::default();
    two.replace(ServiceRef::new("default", "a"), Some(a));
    two.replace(ServiceRef::new("default", "b"), Some(b));
    let k = key(Protocol::Tcp, "10.96.0.1", 80);
    let a = Owner::from(ServiceRef::new("default", "a"));
    assert_eq!(one.virtual_server(&k).unwrap().0, &a);
    assert_eq!(two.virtual_server(&k).unwrap().0, &a);
}

#[test]
fn counts_follow_changes_and_conflicts() {
    let walk = |intent: &Intent| -> (usize, usize) {
        let keys: Vec<_> = intent.keys().copied().collect();
        let real = keys
            .iter()
            .filter_map(|k| intent.virtual_server(k))
            .map(|(_, vs)| vs.real_servers.len())
            .sum();
        (keys.len(), real)
    };
    let mut intent = Intent::default();
    let a = ServiceRef::new("default", "a");
    let b = ServiceRef::new("default", "b");
    intent.replace(
        b.clone(),
        Some(service("10.96.0.1", Protocol::Tcp, 80, &["10.244.0.1"])),
    );
    assert_eq!(intent.counts(), (1, 1));
    // "a" takes the same key with more real servers: it wins by name.
    intent.replace(
        a.clone(),
        Some(service(
            "10.96.0.1",
            Protocol::Tcp,
            80,
            &["10.244.0.2", "10.244.0.3"],
        )),
    );
    assert_eq!(intent.counts(), (1, 2));
    assert_eq!(intent.counts(), walk(&intent));
    intent.replace(a.clone(), None);
    assert_eq!(intent.counts(), (1, 1));
    intent.replace(
        b.clone(),
        Some(service("10.96.0.9", Protocol::Udp, 53, &[])),
    );
    assert_eq!(intent.counts(), (1, 0));
    intent.replace(b, None);
    assert_eq!(intent.counts(), (0, 0));
    assert_eq!(intent.counts(), walk(&intent));
}

/// A Service whose external IP is the node's own address owns only the
/// virtual servers it wants there: a foreign virtual server on another port
/// of that address survives a full plan, and the Service's own goes when
/// the Service does (kube-proxy binds no node address, `syncService`).
#[test]
fn a_node_address_as_external_ip_owns_only_its_own_keys() {
    let node_ip = "192.168.0.10";
    let mut edge = service(node_ip, Protocol::Tcp, 8443, &["10.244.0.1"]);
    edge.addresses.clear();
    let want = DesiredState {
        node_addresses: BTreeSet::from([ip(node_ip)]),
        ..desired(vec![("edge", edge)])
    };
    let mut observed = Observed::from_dump(
        vec![(
            DumpedVirtualServer {
                service: VirtualServer::new(key(Protocol::Tcp, node_ip, 443), Scheduler::Wlc),
                stats: Stats::default(),
            },
            vec![],
        )],
        [],
    );
    let ops = full(&observed, &want, &PlanConfig::default());
    assert!(
        !ops.iter().any(|op| matches!(op, Op::BindAddress(_))),
        "nothing bound: {ops:?}"
    );
    assert!(
        !ops.contains(&Op::Ipvs(Operation::DelService(key(
            Protocol::Tcp,
            node_ip,
            443
        )))),
        "the foreign virtual server stays: {ops:?}"
    );
    for op in &ops {
        observed.record(op);
    }
    assert!(observed
        .virtual_servers
        .contains_key(&key(Protocol::Tcp, node_ip, 8443)));

    // The Service goes: its own virtual server goes with it, the foreign stays.
    let mut intent = Intent::new(want.clone());
    let scope = intent.replace(ServiceRef::new("default", "edge"), None);
    assert_eq!(
        scoped(&observed, &intent, &scope),
        vec![Op::Ipvs(Operation::DelService(key(
            Protocol::Tcp,
            node_ip,
            8443
        )))]
    );
    // So does a full plan after the Service went, with no event to scope it.
    let after = Intent::succeed(
        &Intent::new(want),
        DesiredState {
            node_addresses: BTreeSet::from([ip(node_ip)]),
            ..DesiredState::default()
        },
    );
    let ops = plan(
        &observed,
        &after,
        Extent::All,
        &PlanConfig::default(),
        &Draining::new(),
        Instant::now(),
    )
    .ops;
    assert_eq!(
        ops,
        vec![Op::Ipvs(Operation::DelService(key(
            Protocol::Tcp,
            node_ip,
            8443
        )))]
    );
}
