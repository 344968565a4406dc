//! Tests of the parent module.

use super::*;
use kube_ipvs_controller::{DesiredVirtualServer, ServiceRef, ServiceState};
use kube_ipvs_netlink::{RealServer, Scheduler, VirtualServer};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn port(address: &str, protocol: Protocol, port: u16) -> ServicePort {
    ServicePort {
        address: ip(address),
        protocol,
        port,
    }
}

/// A one-Service desired state: `vips` bound, one virtual server per
/// `(kind, address, port)`, each with `endpoints` on `target_port`.
struct Svc {
    kind: VirtualServerKind,
    address: &'static str,
    port: u16,
    endpoints: &'static [&'static str],
    source_ranges: &'static [&'static str],
    policy: TrafficPolicy,
}

fn svc(kind: VirtualServerKind, address: &'static str, port: u16) -> Svc {
    Svc {
        kind,
        address,
        port,
        endpoints: &[],
        source_ranges: &[],
        policy: TrafficPolicy::Cluster,
    }
}

fn desired(vips: &[&str], servers: &[Svc]) -> DesiredState {
    let mut state = ServiceState {
        addresses: vips.iter().map(|a| ip(a)).collect(),
        ..ServiceState::default()
    };
    for s in servers {
        let key = VirtualServerKey::inet(Protocol::Tcp, ip(s.address), s.port);
        let real_servers = s
            .endpoints
            .iter()
            .map(|e| {
                let rs = RealServer::new(ip(e), 8080);
                (rs.key, rs)
            })
            .collect();
        state.virtual_servers.insert(
            key,
            DesiredVirtualServer {
                service: VirtualServer::new(key, Scheduler::Rr),
                real_servers,
                port_name: "http".into(),
                kind: s.kind,
                source_ranges: s.source_ranges.iter().map(|r| net(r)).collect(),
                traffic_policy: s.policy,
            },
        );
    }
    let mut desired = DesiredState::default();
    desired
        .services
        .insert(ServiceRef::new("default", "web"), state);
    desired
}

fn config(cidrs: &[&str], all: bool) -> FirewallConfig {
    FirewallConfig {
        cluster_cidrs: cidrs.iter().map(|c| net(c)).collect(),
        masquerade_all: all,
        ..FirewallConfig::default()
    }
}

#[test]
fn masquerade_scope_per_family() {
    let cases = [
        // (cluster cidrs, masquerade-all, v4 scope, v6 scope)
        (
            &[][..],
            false,
            MasqueradeScope::ExternalOnly,
            MasqueradeScope::ExternalOnly,
        ),
        (
            &["10.244.0.0/16"][..],
            false,
            MasqueradeScope::OutsideClusterCidrs,
            MasqueradeScope::ExternalOnly,
        ),
        (
            &["10.244.0.0/16", "fd00:10:244::/56"][..],
            false,
            MasqueradeScope::OutsideClusterCidrs,
            MasqueradeScope::OutsideClusterCidrs,
        ),
        (
            &["10.244.0.0/16"][..],
            true,
            MasqueradeScope::All,
            MasqueradeScope::All,
        ),
    ];
    for (cidrs, all, v4, v6) in cases {
        let r = Ruleset::new(&DesiredState::default(), &config(cidrs, all));
        assert_eq!(
            (r.ipv4.masquerade, r.ipv6.masquerade),
            (v4, v6),
            "{cidrs:?} {all}"
        );
    }
}

#[test]
fn services_split_by_kind_and_family() {
    use VirtualServerKind::*;
    let d = desired(
        &["10.96.0.10", "192.0.2.10", "fd00::10"],
        &[
            svc(ClusterIp, "10.96.0.10", 80),
            svc(NodePort, "172.18.0.2", 30080),
            svc(LoadBalancer, "192.0.2.10", 80),
            svc(ClusterIp, "fd00::10", 80),
            svc(ExternalIp, "2001:db8::1", 80),
        ],
    );
    let r = Ruleset::new(&d, &FirewallConfig::default());
    assert_eq!(
        r.ipv4.vips,
        [ip("10.96.0.10"), ip("192.0.2.10")].into_iter().collect()
    );
    assert_eq!(r.ipv6.vips, [ip("fd00::10")].into_iter().collect());
    assert_eq!(
        r.ipv4.services,
        [
            port("10.96.0.10", Protocol::Tcp, 80),
            port("172.18.0.2", Protocol::Tcp, 30080),
            port("192.0.2.10", Protocol::Tcp, 80),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        r.ipv4.external_services,
        [
            port("172.18.0.2", Protocol::Tcp, 30080),
            port("192.0.2.10", Protocol::Tcp, 80),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        r.ipv6.external_services,
        [port("2001:db8::1", Protocol::Tcp, 80)]
            .into_iter()
            .collect()
    );
    assert_eq!(r.ipv6.services.len(), 2);
    assert_eq!(r.element_count(), 2 + 3 + 2 + 1 + 2 + 1);
}

#[test]
fn hairpin_has_every_nat_endpoint_once() {
    use VirtualServerKind::*;
    let mut d = desired(
        &["10.96.0.10"],
        &[
            Svc {
                endpoints: &["10.244.1.2", "10.244.2.3"],
                ..svc(ClusterIp, "10.96.0.10", 80)
            },
            Svc {
                endpoints: &["10.244.1.2"],
                ..svc(NodePort, "172.18.0.2", 30080)
            },
        ],
    );
    // A direct-routing real server never needs it.
    let state = d.services.values_mut().next().unwrap();
    let vs = state.virtual_servers.values_mut().next().unwrap();
    let mut dr = RealServer::new(ip("10.244.3.4"), 8080);
    dr.forward = ForwardMethod::DirectRoute;
    vs.real_servers.insert(dr.key, dr);

    let r = Ruleset::new(&d, &FirewallConfig::default());
    let hairpin = |a: &str| Hairpin {
        address: ip(a),
        protocol: Protocol::Tcp,
        port: 8080,
    };
    assert_eq!(
        r.ipv4.hairpin,
        [hairpin("10.244.1.2"), hairpin("10.244.2.3")]
            .into_iter()
            .collect()
    );
}

#[test]
fn source_ranges_only_for_load_balancers_of_their_family() {
    use VirtualServerKind::*;
    let d = desired(
        &["192.0.2.10", "192.0.2.11", "192.0.2.12"],
        &[
            Svc {
                source_ranges: &["198.51.100.7/24", "198.51.100.0/25", "2001:db8::/32"],
                ..svc(LoadBalancer, "192.0.2.10", 80)
            },
            // Only ranges of the other family: closed, not open.
            Svc {
                source_ranges: &["2001:db8::/32"],
                ..svc(LoadBalancer, "192.0.2.11", 80)
            },
            // Not a load balancer: ranges don't apply.
            Svc {
                source_ranges: &["198.51.100.0/24"],
                ..svc(ExternalIp, "192.0.2.12", 80)
            },
            svc(LoadBalancer, "192.0.2.13", 80),
        ],
    );
    let r = Ruleset::new(&d, &FirewallConfig::default());
    assert_eq!(
        r.ipv4.restricted,
        [
            port("192.0.2.10", Protocol::Tcp, 80),
            port("192.0.2.11", Protocol::Tcp, 80)
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        r.ipv4.allowed_sources,
        [AllowedSource {
            service: port("192.0.2.10", Protocol::Tcp, 80),
            source: net("198.51.100.0/24"),
        }]
        .into_iter()
        .collect()
    );
    assert!(r.ipv6.restricted.is_empty());
}

#[test]
fn disjoint_drops_nested_prefixes_and_clears_host_bits() {
    let cases: [(&[&str], &[&str]); 4] = [
        (&["10.244.0.0/16"], &["10.244.0.0/16"]),
        (&["10.244.1.7/16", "10.244.3.0/24"], &["10.244.0.0/16"]),
        (&["10.0.0.0/8", "11.0.0.0/8"], &["10.0.0.0/8", "11.0.0.0/8"]),
        (&["0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/8"], &["0.0.0.0/0"]),
    ];
    for (input, want) in cases {
        let input: Vec<IpNetwork> = input.iter().map(|n| net(n)).collect();
        let want: BTreeSet<IpNetwork> = want.iter().map(|n| net(n)).collect();
        assert_eq!(disjoint(input.iter()), want, "{input:?}");
    }
}

/// `pkg/proxy/ipvs/proxier.go` `syncProxyRules`: node ports, external and
/// load-balancer IPs of `externalTrafficPolicy: Local` Services go into the
/// `KUBE-*-LOCAL` sets that return before `KUBE-MARK-MASQ`; their cluster
/// IPs and `Cluster` Services' addresses do not.
#[test]
fn local_external_services_are_not_masqueraded() {
    let local = |kind, address, port| Svc {
        policy: TrafficPolicy::Local,
        ..svc(kind, address, port)
    };
    let d = desired(
        &["10.96.0.10"],
        &[
            local(VirtualServerKind::ClusterIp, "10.96.0.10", 80),
            local(VirtualServerKind::NodePort, "172.18.0.2", 30080),
            local(VirtualServerKind::LoadBalancer, "192.0.2.10", 80),
            svc(VirtualServerKind::ExternalIp, "192.0.2.11", 80),
        ],
    );
    let r = Ruleset::new(&d, &FirewallConfig::default());
    assert_eq!(
        r.ipv4.local_services,
        [
            port("172.18.0.2", Protocol::Tcp, 30080),
            port("192.0.2.10", Protocol::Tcp, 80),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(r.ipv4.external_services.len(), 3);
}
