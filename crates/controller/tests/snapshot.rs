//! Change detection of the snapshot, relists, the node, and Endpoints
//! mirroring.

mod common;

use common::*;
use kube_ipvs_controller::{
    desired_service, endpoint_slices_from_endpoints, node_object_addresses,
    node_object_addresses_checked, Changed, Snapshot,
};
use serde_json::json;

fn refs(changed: &Changed) -> Vec<String> {
    changed.services.iter().map(|s| s.to_string()).collect()
}

#[test]
fn identical_reapply_reports_no_change() {
    let mut s = Snapshot::new();
    let svc = cluster_ip("web", json!({}));
    assert_eq!(refs(&s.apply_service(&svc)), ["default/web"]);
    assert!(s.apply_service(&svc).is_empty());

    // Fields the mapping does not read are not a change either.
    let mut touched = svc.clone();
    touched.metadata.resource_version = Some("42".into());
    touched.metadata.annotations = Some([("owner".to_owned(), "team-a".to_owned())].into());
    touched.spec.as_mut().unwrap().selector = Some([("app".to_owned(), "web".to_owned())].into());
    assert!(s.apply_service(&touched).is_empty());

    let changed = cluster_ip("web", json!({"ports": [{"name": "http", "port": 81}]}));
    assert_eq!(refs(&s.apply_service(&changed)), ["default/web"]);

    let sl = http_slice("web-1", "web", json!([ep("10.0.0.1", "n1")]));
    assert_eq!(refs(&s.apply_slice(&sl)), ["default/web"]);
    assert!(s.apply_slice(&sl).is_empty());
    let mut sl2 = sl.clone();
    sl2.metadata.resource_version = Some("7".into());
    assert!(s.apply_slice(&sl2).is_empty());
    let moved = http_slice("web-1", "web", json!([ep("10.0.0.2", "n1")]));
    assert_eq!(refs(&s.apply_slice(&moved)), ["default/web"]);

    assert_eq!(refs(&s.delete_slice("default", "web-1")), ["default/web"]);
    assert!(s.delete_slice("default", "web-1").is_empty());
    assert_eq!(refs(&s.delete_service(&r("web"))), ["default/web"]);
    assert!(s.delete_service(&r("web")).is_empty());
    assert_eq!(s.service_count(), 0);
    assert_eq!(s.endpoint_count(), 0);
}

#[test]
fn relist_reports_only_changed_services() {
    let mut s = Snapshot::new();
    let a = cluster_ip("a", json!({"clusterIP": "10.96.0.1"}));
    let b = cluster_ip("b", json!({"clusterIP": "10.96.0.2"}));
    let c = cluster_ip("c", json!({"clusterIP": "10.96.0.3"}));
    assert_eq!(
        refs(&s.replace_services([&a, &b, &c])),
        ["default/a", "default/b", "default/c"]
    );
    assert!(s.replace_services([&a, &b, &c]).is_empty());

    // b changed, c gone, d new; a as it was.
    let b2 = cluster_ip(
        "b",
        json!({"clusterIP": "10.96.0.2", "externalIPs": ["203.0.113.2"]}),
    );
    let d = cluster_ip("d", json!({"clusterIP": "10.96.0.4"}));
    assert_eq!(
        refs(&s.replace_services(vec![a.clone(), b2, d])),
        ["default/b", "default/c", "default/d"]
    );
    assert!(s.service(&r("c")).is_none());

    let a1 = http_slice("a-1", "a", json!([ep("10.0.0.1", "n")]));
    let a2 = http_slice("a-2", "a", json!([ep("10.0.0.2", "n")]));
    let b1 = http_slice("b-1", "b", json!([ep("10.0.0.3", "n")]));
    assert_eq!(
        refs(&s.replace_slices([&a1, &a2, &b1])),
        ["default/a", "default/b"]
    );
    assert!(s.replace_slices([&a1, &a2, &b1]).is_empty());
    // a-2 deleted while the watch was down: only a is affected.
    assert_eq!(refs(&s.replace_slices([&a1, &b1])), ["default/a"]);
    assert_eq!(s.endpoint_count(), 2);
}

#[test]
fn slice_moving_to_another_service_affects_both() {
    let mut s = Snapshot::new();
    s.apply_slice(&http_slice("x-1", "a", json!([ep("10.0.0.1", "n")])));
    assert_eq!(
        refs(&s.apply_slice(&http_slice("x-1", "b", json!([ep("10.0.0.1", "n")])))),
        ["default/a", "default/b"]
    );
    assert_eq!(s.slices_of(&r("a")).count(), 0);
    assert_eq!(s.slices_of(&r("b")).count(), 1);
    // Losing its label makes it nobody's.
    let mut unlabelled = http_slice("x-1", "b", json!([ep("10.0.0.1", "n")]));
    unlabelled.metadata.labels = None;
    assert_eq!(refs(&s.apply_slice(&unlabelled)), ["default/b"]);
    assert_eq!(s.endpoint_count(), 0);
}

#[test]
fn node_zone_and_addresses_affect_everything_only_when_they_change() {
    let mut s = Snapshot::new();
    let n = node("node-a", Some("zone-a"), &[("InternalIP", "192.168.0.10")]);
    assert!(s.set_node(&n).all);
    assert!(s.set_node(&n).is_empty());
    let mut relabelled = n.clone();
    relabelled.metadata.resource_version = Some("9".into());
    assert!(s.set_node(&relabelled).is_empty());
    assert!(s.set_node(&node("node-a", Some("zone-b"), &[])).all);
    assert_eq!(s.node().zone.as_deref(), Some("zone-b"));

    let addrs = vec!["192.168.0.10".parse().unwrap(), "10.0.0.1".parse().unwrap()];
    assert!(s.set_node_addresses(addrs.clone()).all);
    let mut reordered = addrs.clone();
    reordered.reverse();
    reordered.push("10.0.0.1".parse().unwrap());
    assert!(s.set_node_addresses(reordered).is_empty());
}

#[test]
fn node_object_addresses_internal_and_external() {
    let n = node(
        "node-a",
        None,
        &[
            ("InternalIP", "192.168.0.10"),
            ("ExternalIP", "203.0.113.10"),
            ("Hostname", "node-a"),
            ("InternalIP", "2001:db8::10"),
            ("InternalIP", "192.168.0.10"),
            ("ExternalIP", "bogus"),
        ],
    );
    let ips: Vec<String> = node_object_addresses(&n)
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(ips, ["192.168.0.10", "203.0.113.10", "2001:db8::10"]);
    let mut skipped = Vec::new();
    node_object_addresses_checked(&n, &mut skipped);
    assert_eq!(
        skipped[0].to_string(),
        "Node node-a: status.addresses[].address: \"bogus\" is not an IP address"
    );
}

#[test]
fn skips_follow_the_current_object() {
    let mut s = Snapshot::new();
    s.apply_service(&cluster_ip("web", json!({"externalIPs": ["nope"]})));
    assert_eq!(s.skipped().count(), 1);
    s.apply_service(&cluster_ip("web", json!({})));
    assert_eq!(s.skipped().count(), 0);
    s.apply_slice(&http_slice("web-1", "web", json!([ep("x", "n")])));
    assert_eq!(s.skipped().count(), 1);
    s.delete_slice("default", "web-1");
    assert_eq!(s.skipped().count(), 0);
    // A relist forgets skips of objects no longer listed.
    s.apply_service(&cluster_ip("bad", json!({"externalIPs": ["nope"]})));
    s.replace_services([cluster_ip("web", json!({}))]);
    assert_eq!(s.skipped().count(), 0);
}

#[test]
fn endpoints_mirrored_like_the_mirroring_controller() {
    let e = endpoints(json!({
        "metadata": {"namespace": "default", "name": "db", "labels": {"team": "a"}},
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1"}, {"ip": "fd00::1"}],
             "notReadyAddresses": [{"ip": "10.0.0.2"}],
             "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
            {"addresses": [{"ip": "10.0.1.1"}], "ports": [{"name": "pg", "port": 5433}]}
        ]
    }));
    let slices = endpoint_slices_from_endpoints(&e);
    let summary: Vec<String> = slices
        .iter()
        .map(|s| {
            let labels = s.metadata.labels.as_ref().unwrap();
            assert_eq!(labels["kubernetes.io/service-name"], "db");
            assert_eq!(
                labels["endpointslice.kubernetes.io/managed-by"],
                "endpointslicemirroring-controller.k8s.io"
            );
            assert_eq!(labels["team"], "a");
            let eps: Vec<String> = s
                .endpoints
                .iter()
                .flatten()
                .map(|e| {
                    let c = e.conditions.as_ref().unwrap();
                    assert_eq!((c.serving, c.terminating), (None, None));
                    format!(
                        "{}{}",
                        e.addresses[0],
                        if c.ready == Some(true) {
                            ""
                        } else {
                            "(not ready)"
                        }
                    )
                })
                .collect();
            let port = s.ports.as_ref().unwrap()[0].port.unwrap();
            format!(
                "{} {} {port}: {}",
                s.metadata.name.as_ref().unwrap(),
                s.address_type,
                eps.join(" ")
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "db-0-ipv4 IPv4 5432: 10.0.0.1 10.0.0.2(not ready)",
            "db-0-ipv6 IPv6 5432: fd00::1",
            "db-1-ipv4 IPv4 5433: 10.0.1.1",
        ]
    );

    let mut skip = e.clone();
    skip.metadata.labels = Some(
        [(
            "endpointslice.kubernetes.io/skip-mirror".to_owned(),
            "true".to_owned(),
        )]
        .into(),
    );
    assert!(endpoint_slices_from_endpoints(&skip).is_empty());
}

#[test]
fn snapshot_applies_endpoints_and_drops_stale_mirrors() {
    let mut w = World::new().with(cluster_ip(
        "db",
        json!({"ports": [{"name": "pg", "port": 5432}]}),
    ));
    let v1 = endpoints(json!({
        "metadata": {"namespace": "default", "name": "db"},
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "bad"}], "ports": [{"name": "pg", "port": 5432}]},
            {"addresses": [{"ip": "10.0.1.1"}], "ports": [{"name": "pg", "port": 5433}]}
        ]
    }));
    assert_eq!(refs(&w.snapshot.apply_endpoints(&v1)), ["default/db"]);
    assert!(w.snapshot.apply_endpoints(&v1).is_empty());
    assert_eq!(
        w.vs("db"),
        ["ClusterIP TCP 10.96.0.10:5432 pg -> 10.0.0.1:5432 10.0.1.1:5433"]
    );
    assert_eq!(
        w.skipped(),
        ["Endpoints default/db: subsets[].addresses[].ip: \"bad\" is not an IP address"]
    );
    // A relist of EndpointSlices keeps the mirrored ones.
    assert!(w
        .snapshot
        .replace_slices(Vec::<k8s_openapi::api::discovery::v1::EndpointSlice>::new())
        .is_empty());

    let v2 = endpoints(json!({
        "metadata": {"namespace": "default", "name": "db"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "pg", "port": 5432}]}]
    }));
    assert_eq!(refs(&w.snapshot.apply_endpoints(&v2)), ["default/db"]);
    assert_eq!(
        w.vs("db"),
        ["ClusterIP TCP 10.96.0.10:5432 pg -> 10.0.0.1:5432"]
    );
    assert!(w.skipped().is_empty());
    assert_eq!(
        refs(&w.snapshot.delete_endpoints("default", "db")),
        ["default/db"]
    );
    assert_eq!(w.vs("db"), ["ClusterIP TCP 10.96.0.10:5432 pg ->"]);
    assert!(desired_service(&w.snapshot, &w.config, &r("db")).is_some());
}

#[test]
fn node_names_are_shared_between_endpoints() {
    let mut s = Snapshot::new();
    s.apply_slice(&http_slice("a-1", "a", json!([ep("10.0.0.1", "node-x")])));
    s.apply_slice(&http_slice("b-1", "b", json!([ep("10.0.0.2", "node-x")])));
    let a = s.slices_of(&r("a")).next().unwrap().endpoints[0]
        .node
        .clone()
        .unwrap();
    let b = s.slices_of(&r("b")).next().unwrap().endpoints[0]
        .node
        .clone()
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

/// A relist keeps what was skipped of the objects it names and forgets the
/// rest, as kube-proxy's change trackers forget a deleted object.
#[test]
fn relist_keeps_skips_of_listed_objects_only() {
    let mut s = Snapshot::new();
    let odd_port =
        |name: &str| cluster_ip(name, json!({"ports": [{"port": 80, "protocol": "ICMP"}]}));
    let (a, b) = (odd_port("a"), odd_port("b"));
    s.replace_services([&a, &b]);
    let skipped = |s: &Snapshot| {
        let mut objects: Vec<String> = s.skipped().map(|k| k.object.clone()).collect();
        objects.dedup();
        objects
    };
    assert_eq!(skipped(&s), ["default/a", "default/b"]);
    s.replace_services([&b]);
    assert_eq!(skipped(&s), ["default/b"]);

    let bad_slice = |name: &str| {
        let mut slice = http_slice(name, "b", json!([ep("10.0.0.1", "n")]));
        slice.address_type = "IPv7".into();
        slice
    };
    s.replace_slices([bad_slice("b-1"), bad_slice("b-2")]);
    assert_eq!(skipped(&s), ["default/b", "default/b-1", "default/b-2"]);
    s.replace_slices([bad_slice("b-2")]);
    assert_eq!(skipped(&s), ["default/b", "default/b-2"]);
}
