//! The virtual servers a Service gets: one per cluster IP, node address,
//! external IP and load-balancer ingress, per port, protocol and family.

mod common;

use common::*;
use kube_ipvs_model::{Scheduler, ServiceFlags};
use serde_json::json;

#[test]
fn cluster_ip_with_endpoints_and_bound_address() {
    let w = World::new()
        .with(cluster_ip("web", json!({})))
        .with_slice(http_slice(
            "web-1",
            "web",
            json!([ep("10.0.1.1", "node-a"), ep("10.0.1.2", "node-b")]),
        ));
    assert_lines(
        w.vs("web"),
        &["ClusterIP TCP 10.96.0.10:80 http -> 10.0.1.1:8080 10.0.1.2:8080"],
    );
    let d = w.desired();
    let state = &d.services[&r("web")];
    assert_eq!(state.addresses, ["10.96.0.10".parse().unwrap()].into());
    let vs = state.virtual_servers.values().next().unwrap();
    assert_eq!(vs.service.scheduler, Scheduler::Rr);
    assert_eq!(vs.service.flags, ServiceFlags::empty());
    for rs in vs.real_servers.values() {
        assert_eq!(rs.weight, 1);
        assert_eq!(rs.forward, kube_ipvs_model::ForwardMethod::Masquerade);
    }
    assert!(w.skipped().is_empty());
}

#[test]
fn node_port_service_with_two_ports() {
    let svc = cluster_ip(
        "np",
        json!({"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "nodePort": 30080},
            {"name": "https", "port": 443, "nodePort": 30443}]}),
    );
    let sl = slice(
        "np-1",
        "np",
        "IPv4",
        json!([{"name": "http", "port": 8080}, {"name": "https", "port": 8443}]),
        json!([ep("10.0.1.1", "node-b")]),
    );
    let w = World::new().with(svc).with_slice(sl);
    assert_lines(
        w.vs("np"),
        &[
            "ClusterIP TCP 10.96.0.10:80 http -> 10.0.1.1:8080",
            "ClusterIP TCP 10.96.0.10:443 https -> 10.0.1.1:8443",
            "NodePort TCP 192.168.0.10:30080 http -> 10.0.1.1:8080",
            "NodePort TCP 192.168.0.10:30443 https -> 10.0.1.1:8443",
        ],
    );
    // Node addresses are never bound on the dummy interface.
    let d = w.desired();
    assert_eq!(
        d.services[&r("np")].addresses,
        ["10.96.0.10".parse().unwrap()].into()
    );
}

#[test]
fn node_port_addresses_filter() {
    let svc = cluster_ip(
        "np",
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let mut w = World::new().with(svc);
    w.snapshot.set_node_addresses(vec![
        "192.168.0.10".parse().unwrap(),
        "10.1.0.5".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    ]);
    let nodeports = |w: &World| -> Vec<String> {
        w.vs("np")
            .into_iter()
            .filter(|l| l.starts_with("NodePort"))
            .collect()
    };
    assert_lines(
        nodeports(&w),
        &[
            "NodePort TCP 10.1.0.5:30080 http ->",
            "NodePort TCP 192.168.0.10:30080 http ->",
        ],
    );
    w.config.nodeport_addresses = vec!["10.1.0.0/16".parse().unwrap()];
    assert_lines(nodeports(&w), &["NodePort TCP 10.1.0.5:30080 http ->"]);
}

#[test]
fn multi_port_service_with_external_ips() {
    let svc = cluster_ip(
        "ext",
        json!({"externalIPs": ["203.0.113.1", "203.0.113.2"], "ports": [
            {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    let sl = slice(
        "ext-1",
        "ext",
        "IPv4",
        json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        json!([ep("10.0.1.1", "node-b")]),
    );
    let w = World::new().with(svc).with_slice(sl);
    assert_lines(
        w.vs("ext"),
        &[
            "ClusterIP TCP 10.96.0.10:80 http -> 10.0.1.1:8080",
            "ClusterIP UDP 10.96.0.10:53 dns -> 10.0.1.1:5353",
            "ExternalIP TCP 203.0.113.1:80 http -> 10.0.1.1:8080",
            "ExternalIP UDP 203.0.113.1:53 dns -> 10.0.1.1:5353",
            "ExternalIP TCP 203.0.113.2:80 http -> 10.0.1.1:8080",
            "ExternalIP UDP 203.0.113.2:53 dns -> 10.0.1.1:5353",
        ],
    );
    let d = w.desired();
    let bound: Vec<String> = d.services[&r("ext")]
        .addresses
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(bound, ["10.96.0.10", "203.0.113.1", "203.0.113.2"]);
}

#[test]
fn load_balancers_sharing_one_ip_never_mix_endpoints() {
    let lb = |name: &str, cluster: &str, port: i32| {
        service(json!({
            "metadata": {"namespace": "default", "name": name},
            "spec": {"type": "LoadBalancer", "clusterIP": cluster,
                     "loadBalancerSourceRanges": ["198.51.100.0/24"],
                     "ports": [{"name": "p", "port": port, "nodePort": port + 20000}]},
            "status": {"loadBalancer": {"ingress": [
                {"ip": "203.0.113.50"}, {"ip": "203.0.113.60", "ipMode": "Proxy"}, {"hostname": "lb.example"}]}}
        }))
    };
    let w = World::new()
        .with(lb("a", "10.96.0.1", 10000))
        .with(lb("b", "10.96.0.2", 20000))
        .with_slice(slice(
            "a-1",
            "a",
            "IPv4",
            json!([{"name": "p", "port": 1000}]),
            json!([ep("10.0.1.1", "n")]),
        ))
        .with_slice(slice(
            "b-1",
            "b",
            "IPv4",
            json!([{"name": "p", "port": 2000}]),
            json!([ep("10.0.2.2", "n")]),
        ));
    assert_lines(
        w.vs("a"),
        &[
            "ClusterIP TCP 10.96.0.1:10000 p -> 10.0.1.1:1000",
            "LoadBalancer TCP 203.0.113.50:10000 p -> 10.0.1.1:1000",
            "NodePort TCP 192.168.0.10:30000 p -> 10.0.1.1:1000",
        ],
    );
    assert_lines(
        w.vs("b"),
        &[
            "ClusterIP TCP 10.96.0.2:20000 p -> 10.0.2.2:2000",
            "LoadBalancer TCP 203.0.113.50:20000 p -> 10.0.2.2:2000",
            "NodePort TCP 192.168.0.10:40000 p -> 10.0.2.2:2000",
        ],
    );
    let d = w.desired();
    let all = d.virtual_servers();
    assert_eq!(all.len(), 6);
    assert!(d.conflicts().is_empty());
    for (key, (owner, vs)) in &all {
        if vs.kind == kube_ipvs_controller::VirtualServerKind::LoadBalancer {
            assert_eq!(
                vs.source_ranges,
                vec!["198.51.100.0/24".parse().unwrap()],
                "{key}"
            );
            let expected = if *owner == r("a").into() {
                "10.0.1.1"
            } else {
                "10.0.2.2"
            };
            assert!(
                vs.real_servers
                    .keys()
                    .all(|k| k.address.to_string() == expected),
                "{key}"
            );
        } else {
            assert!(vs.source_ranges.is_empty());
        }
    }
    // Both Services need the shared address bound.
    assert!(d.services[&r("a")]
        .addresses
        .contains(&"203.0.113.50".parse().unwrap()));
    assert!(d.services[&r("b")]
        .addresses
        .contains(&"203.0.113.50".parse().unwrap()));
    // spec.loadBalancerIP is not an ingress.
    assert!(!d.addresses().contains(&"203.0.113.60".parse().unwrap()));
}

#[test]
fn dual_stack() {
    let svc = cluster_ip(
        "ds",
        json!({"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"],
               "ipFamilies": ["IPv4", "IPv6"], "externalIPs": ["203.0.113.9", "2001:db8:1::9"],
               "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let w = World::new()
        .with(svc)
        .with_slice(http_slice("ds-v4", "ds", json!([ep("10.0.0.1", "n")])))
        .with_slice(slice(
            "ds-v6",
            "ds",
            "IPv6",
            json!([{"name": "http", "port": 8080}]),
            json!([ep("fd01::1", "n")]),
        ))
        .with_slice(slice(
            "ds-fqdn",
            "ds",
            "FQDN",
            json!([{"name": "http", "port": 8080}]),
            json!([ep("db.example", "n")]),
        ));
    assert_lines(
        w.vs("ds"),
        &[
            "ClusterIP TCP 10.96.0.10:80 http -> 10.0.0.1:8080",
            "ClusterIP TCP [fd00::10]:80 http -> [fd01::1]:8080",
            "ExternalIP TCP 203.0.113.9:80 http -> 10.0.0.1:8080",
            "ExternalIP TCP [2001:db8:1::9]:80 http -> [fd01::1]:8080",
            "NodePort TCP 192.168.0.10:30080 http -> 10.0.0.1:8080",
            "NodePort TCP [2001:db8::10]:30080 http -> [fd01::1]:8080",
        ],
    );
    assert!(w.skipped().is_empty(), "{:?}", w.skipped());

    // An IPv6-only Service takes neither IPv4 endpoints nor IPv4 node addresses.
    let v6 = cluster_ip(
        "v6",
        json!({"clusterIP": "fd00::20", "type": "NodePort",
                                      "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
    );
    let w =
        World::new()
            .with(v6)
            .with_slice(http_slice("v6-v4", "v6", json!([ep("10.0.0.1", "n")])));
    assert_lines(
        w.vs("v6"),
        &[
            "ClusterIP TCP [fd00::20]:80 http ->",
            "NodePort TCP [2001:db8::10]:30081 http ->",
        ],
    );
}

#[test]
fn sctp_and_udp_match_ports_by_name_and_protocol() {
    let svc = cluster_ip(
        "multi",
        json!({"ports": [{"name": "sig", "port": 3868, "protocol": "SCTP"},
                         {"name": "dns", "port": 53, "protocol": "UDP"},
                         {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
    );
    let sl = slice(
        "multi-1",
        "multi",
        "IPv4",
        json!([{"name": "sig", "port": 3869, "protocol": "SCTP"},
               {"name": "dns", "port": 5353, "protocol": "UDP"},
               {"name": "dns-tcp", "port": 5354}]),
        json!([ep("10.0.0.1", "n")]),
    );
    // A slice port with the right name but another protocol does not match.
    let wrong = slice(
        "multi-2",
        "multi",
        "IPv4",
        json!([{"name": "sig", "port": 9999, "protocol": "TCP"}]),
        json!([ep("10.0.0.2", "n")]),
    );
    let w = World::new().with(svc).with_slice(sl).with_slice(wrong);
    assert_lines(
        w.vs("multi"),
        &[
            "ClusterIP SCTP 10.96.0.10:3868 sig -> 10.0.0.1:3869",
            "ClusterIP UDP 10.96.0.10:53 dns -> 10.0.0.1:5353",
            "ClusterIP TCP 10.96.0.10:53 dns-tcp -> 10.0.0.1:5354",
        ],
    );
}

/// An external IP or load-balancer IP that is the node's own address is
/// served there but never bound on the dummy interface (kube-proxy:
/// `pkg/proxy/ipvs/proxier.go` `syncService` binds an address only when
/// it is not already the node's).
#[test]
fn node_addresses_as_external_and_load_balancer_ips_are_not_bound() {
    let svc = cluster_ip(
        "edge",
        json!({"type": "LoadBalancer", "externalIPs": ["192.168.0.10", "203.0.113.7"],
               "ports": [{"name": "https", "port": 8443, "nodePort": 30443}]}),
    );
    let mut svc = svc;
    svc.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.168.0.11"}]}}))
            .unwrap(),
    );
    let mut w = World::new().with(svc);
    w.snapshot.set_node_addresses(vec![
        "192.168.0.10".parse().unwrap(),
        "192.168.0.11".parse().unwrap(),
    ]);
    let lines = w.vs("edge");
    for want in [
        "ExternalIP TCP 192.168.0.10:8443 https ->",
        "ExternalIP TCP 203.0.113.7:8443 https ->",
        "LoadBalancer TCP 192.168.0.11:8443 https ->",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want} in {lines:?}");
    }
    let d = w.desired();
    assert_eq!(
        d.services[&r("edge")].addresses,
        [
            "10.96.0.10".parse().unwrap(),
            "203.0.113.7".parse().unwrap()
        ]
        .into()
    );
}
