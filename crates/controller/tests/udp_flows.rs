//! Which UDP flows the conntrack clean-up keeps (kube-proxy:
//! `pkg/proxy/conntrack/cleanup.go` `CleanStaleEntries`).

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use kube_ipvs_controller::{udp_frontends, Intent, UdpFrontend};
use serde_json::json;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn dns(policy: &str) -> World {
    let svc = cluster_ip(
        "dns",
        json!({"type": "NodePort", "externalTrafficPolicy": policy,
               "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                         {"name": "tcp", "port": 53, "protocol": "TCP", "nodePort": 30054}]}),
    );
    let slice = slice(
        "dns-1",
        "dns",
        "IPv4",
        json!([{"name": "dns", "port": 5353, "protocol": "UDP"},
               {"name": "tcp", "port": 5353, "protocol": "TCP"}]),
        json!([
            ep("10.244.1.2", "node-a"),
            ep_cond("10.244.2.2", "node-b", false, true, true),
            ep_cond("10.244.3.2", "node-b", false, false, false),
        ]),
    );
    World::new().with(svc).with_slice(slice)
}

/// Every serving endpoint counts, whatever the traffic policy: flows to a
/// Local NodePort answered by an endpoint on another node are not stale.
#[test]
fn serving_endpoints_of_each_udp_frontend_whatever_the_policy() {
    for policy in ["Cluster", "Local"] {
        let w = dns(policy);
        let frontends = udp_frontends(&w.snapshot, &Intent::new(w.desired()));
        let serving: BTreeSet<IpAddr> = [ip("10.244.1.2"), ip("10.244.2.2")].into();
        assert_eq!(
            frontends.0.get(&UdpFrontend::Address(ip("10.96.0.10"), 53)),
            Some(&serving),
            "{policy}"
        );
        assert_eq!(
            frontends.0.get(&UdpFrontend::NodePort(30053)),
            Some(&serving),
            "{policy}"
        );
        assert!(
            !frontends
                .0
                .keys()
                .any(|f| matches!(f, UdpFrontend::NodePort(30054))),
            "TCP ports have no UDP frontend"
        );
        assert!(!frontends.stale(ip("10.96.0.10"), 53, ip("10.244.2.2")));
        assert!(frontends.stale(ip("10.96.0.10"), 53, ip("10.244.3.2")));
        assert!(frontends.stale(ip("192.0.2.1"), 30053, ip("10.244.9.9")));
        assert!(!frontends.stale(ip("10.96.0.99"), 53, ip("10.244.9.9")));
    }
}

/// A port without serving endpoints keeps its flows; a frontend whose
/// Service or port is deleted is named as gone.
#[test]
fn no_serving_endpoint_keeps_flows_and_a_deleted_service_is_gone() {
    let w = dns("Cluster");
    let before = udp_frontends(&w.snapshot, &Intent::new(w.desired()));
    let empty = World::new().with(cluster_ip(
        "dns",
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    ));
    let after = udp_frontends(&empty.snapshot, &Intent::new(empty.desired()));
    assert_eq!(
        after.0.get(&UdpFrontend::Address(ip("10.96.0.10"), 53)),
        Some(&BTreeSet::new())
    );
    assert!(!after.stale(ip("10.96.0.10"), 53, ip("10.244.9.9")));
    assert_eq!(
        before.gone_in(&after),
        [UdpFrontend::NodePort(30053)].into(),
        "the Service is still there; its node port is not"
    );
    let deleted = World::new();
    let none = udp_frontends(&deleted.snapshot, &Intent::new(deleted.desired()));
    assert_eq!(
        before.gone_in(&none),
        [
            UdpFrontend::Address(ip("10.96.0.10"), 53),
            UdpFrontend::NodePort(30053)
        ]
        .into()
    );
}
