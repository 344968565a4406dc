//! The real servers a virtual server gets from EndpointSlices: endpoint
//! conditions, merged slices, traffic policies and topology hints.

mod common;

use common::*;
use serde_json::json;

#[test]
fn selectorless_service_fed_by_hand_made_slice() {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "external-db"},
        "spec": {"clusterIP": "10.96.5.5", "ports": [{"port": 5432}]}
    }));
    let sl = slice_json(json!({
        "metadata": {"namespace": "default", "name": "external-db-manual",
                     "labels": {"kubernetes.io/service-name": "external-db"}},
        "addressType": "IPv4",
        "ports": [{"port": 5432}],
        "endpoints": [{"addresses": ["198.51.100.7"]}]
    }));
    let w = World::new().with(svc).with_slice(sl);
    // An unnamed port is shown by number.
    assert_lines(
        w.vs("external-db"),
        &["ClusterIP TCP 10.96.5.5:5432 5432 -> 198.51.100.7:5432"],
    );
}

#[test]
fn endpoint_conditions() {
    let cases: &[(&str, serde_json::Value, &str)] = &[
        (
            "ready ones only",
            json!([
                ep_cond("10.0.0.1", "n", true, true, false),
                ep_cond("10.0.0.2", "n", false, true, true),
                ep_cond("10.0.0.3", "n", false, false, false)
            ]),
            "10.0.0.1:8080",
        ),
        (
            "unset conditions are ready",
            json!([{"addresses": ["10.0.0.4"]}]),
            "10.0.0.4:8080",
        ),
        (
            "no ready one: serving and terminating",
            json!([
                ep_cond("10.0.0.2", "n", false, true, true),
                ep_cond("10.0.0.3", "n", false, false, true),
                ep_cond("10.0.0.5", "n", false, true, false)
            ]),
            "10.0.0.2:8080",
        ),
        (
            "neither ready nor serving: none",
            json!([ep_cond("10.0.0.3", "n", false, false, true)]),
            "",
        ),
    ];
    for (what, endpoints, expected) in cases {
        let w = World::new()
            .with(cluster_ip("web", json!({})))
            .with_slice(http_slice("web-1", "web", endpoints.clone()));
        let line = format!("ClusterIP TCP 10.96.0.10:80 http -> {expected}");
        assert_lines(w.vs("web"), &[line.trim_end()]);
        let _ = what;
    }
}

#[test]
fn slices_merged_and_deduplicated() {
    let w = World::new()
        .with(cluster_ip("web", json!({})))
        .with_slice(http_slice(
            "web-1",
            "web",
            json!([
                ep_cond("10.0.0.1", "n", false, true, true),
                ep("10.0.0.2", "n")
            ]),
        ))
        .with_slice(http_slice(
            "web-2",
            "web",
            json!([ep("10.0.0.1", "n"), ep("10.0.0.3", "n")]),
        ))
        // A different target port on the same address is another real server.
        .with_slice(slice(
            "web-3",
            "web",
            "IPv4",
            json!([{"name": "http", "port": 9090}]),
            json!([ep("10.0.0.3", "n")]),
        ))
        .with_slice(http_slice("other-1", "other", json!([ep("10.9.9.9", "n")])));
    assert_lines(
        w.vs("web"),
        &["ClusterIP TCP 10.96.0.10:80 http -> 10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080 10.0.0.3:9090"],
    );
}

#[test]
fn traffic_policies() {
    let endpoints = json!([
        ep("10.0.0.1", "node-a"),
        ep("10.0.0.2", "node-b"),
        ep_cond("10.0.0.3", "node-a", false, true, true)
    ]);
    let ports = json!({"type": "NodePort", "externalIPs": ["203.0.113.1"],
                       "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    let with = |policies: serde_json::Value| {
        let mut spec = ports.clone();
        for (k, v) in policies.as_object().unwrap() {
            spec[k] = v.clone();
        }
        World::new()
            .with(cluster_ip("web", spec))
            .with_slice(http_slice("web-1", "web", endpoints.clone()))
    };
    let all = "10.0.0.1:8080 10.0.0.2:8080";
    let local = "10.0.0.1:8080";
    for (policies, cluster, external) in [
        (json!({}), all, all),
        (json!({"internalTrafficPolicy": "Local"}), local, all),
        (json!({"externalTrafficPolicy": "Local"}), all, local),
        (
            json!({"internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local"}),
            local,
            local,
        ),
    ] {
        let w = with(policies.clone());
        assert_lines(
            w.vs("web"),
            &[
                &format!("ClusterIP TCP 10.96.0.10:80 http -> {cluster}"),
                &format!("ExternalIP TCP 203.0.113.1:80 http -> {external}"),
                &format!("NodePort TCP 192.168.0.10:30080 http -> {external}"),
            ],
        );
    }
    // No local endpoint: as kube-proxy's IPVS `syncEndpoint` (PR 97081),
    // the Cluster endpoints, so pods here still reach it; a local
    // terminating one is the fallback when no local one is ready.
    let mut w = with(json!({"externalTrafficPolicy": "Local"}));
    w.config.node_name = "node-c".into();
    assert!(w
        .vs("web")
        .contains(&format!("NodePort TCP 192.168.0.10:30080 http -> {all}")));
    w.snapshot.apply_slice(&http_slice(
        "web-1",
        "web",
        json!([
            ep("10.0.0.2", "node-b"),
            ep_cond("10.0.0.3", "node-c", false, true, true)
        ]),
    ));
    assert!(w
        .vs("web")
        .contains(&"NodePort TCP 192.168.0.10:30080 http -> 10.0.0.3:8080".to_owned()));
    assert!(w
        .vs("web")
        .contains(&"ClusterIP TCP 10.96.0.10:80 http -> 10.0.0.2:8080".to_owned()));
}

#[test]
fn topology_hints() {
    let topo = json!({"trafficDistribution": "PreferClose"});
    let annotated = |key: &str, value: &str| {
        service(json!({
            "metadata": {"namespace": "default", "name": "web", "annotations": {key: value}},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}
        }))
    };
    let hinted = json!([
        ep_zones("10.0.0.1", "n1", &["zone-a"]),
        ep_zones("10.0.0.2", "n2", &["zone-b"]),
        ep_zones("10.0.0.3", "n3", &["zone-a", "zone-b"])
    ]);
    let partly = json!([
        ep_zones("10.0.0.1", "n1", &["zone-a"]),
        ep("10.0.0.2", "n2")
    ]);
    let elsewhere = json!([
        ep_zones("10.0.0.1", "n1", &["zone-c"]),
        ep_zones("10.0.0.2", "n2", &["zone-b"])
    ]);
    let cases = [
        (
            "PreferClose, all hinted",
            cluster_ip("web", topo.clone()),
            hinted.clone(),
            Some("zone-a"),
            "10.0.0.1:8080 10.0.0.3:8080",
        ),
        (
            "topology-mode Auto",
            annotated("service.kubernetes.io/topology-mode", "Auto"),
            hinted.clone(),
            Some("zone-a"),
            "10.0.0.1:8080 10.0.0.3:8080",
        ),
        (
            "topology-aware-hints auto",
            annotated("service.kubernetes.io/topology-aware-hints", "auto"),
            hinted.clone(),
            Some("zone-b"),
            "10.0.0.2:8080 10.0.0.3:8080",
        ),
        (
            // `topology.go`: kube-proxy follows complete hints whoever asked.
            "not asked",
            cluster_ip("web", json!({})),
            hinted.clone(),
            Some("zone-a"),
            "10.0.0.1:8080 10.0.0.3:8080",
        ),
        (
            "one endpoint without hints",
            cluster_ip("web", topo.clone()),
            partly,
            Some("zone-a"),
            "10.0.0.1:8080 10.0.0.2:8080",
        ),
        (
            "none for this zone",
            cluster_ip("web", topo.clone()),
            elsewhere,
            Some("zone-a"),
            "10.0.0.1:8080 10.0.0.2:8080",
        ),
        (
            "node without zone",
            cluster_ip("web", topo.clone()),
            hinted,
            None,
            "10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080",
        ),
    ];
    for (what, svc, endpoints, zone, expected) in cases {
        let mut w = World::new()
            .with(svc)
            .with_slice(http_slice("web-1", "web", endpoints));
        w.snapshot.set_node(&node("node-a", zone, &[]));
        assert_eq!(
            w.vs("web"),
            vec![format!("ClusterIP TCP 10.96.0.10:80 http -> {expected}")],
            "{what}"
        );
    }
}

#[test]
fn topology_does_not_narrow_local_policy() {
    let svc = cluster_ip(
        "web",
        json!({"trafficDistribution": "PreferClose", "internalTrafficPolicy": "Local"}),
    );
    let mut w = World::new().with(svc).with_slice(http_slice(
        "web-1",
        "web",
        json!([
            ep_zones("10.0.0.1", "node-a", &["zone-b"]),
            ep_zones("10.0.0.2", "n2", &["zone-a"])
        ]),
    ));
    w.snapshot.set_node(&node("node-a", Some("zone-a"), &[]));
    assert_eq!(
        w.vs("web"),
        ["ClusterIP TCP 10.96.0.10:80 http -> 10.0.0.1:8080"]
    );
}

/// `pkg/proxy/topology.go` `topologyModeFromHints`: node hints first, when
/// every ready endpoint has one and one is for this node; else zone hints;
/// else every endpoint.
#[test]
fn node_hints() {
    let hinted = |address: &str, nodes: &[&str], zones: &[&str]| {
        let mut e = ep_zones(address, "n9", zones);
        e["hints"]["forNodes"] =
            json!(nodes.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
        e
    };
    let cases = [
        (
            "one for this node",
            json!([
                hinted("10.0.0.1", &["node-a"], &["zone-b"]),
                hinted("10.0.0.2", &["n2"], &["zone-a"])
            ]),
            "10.0.0.1:8080",
        ),
        (
            "none for this node: zone hints",
            json!([
                hinted("10.0.0.1", &["n1"], &["zone-b"]),
                hinted("10.0.0.2", &["n2"], &["zone-a"])
            ]),
            "10.0.0.2:8080",
        ),
        (
            "one without node hints: zone hints",
            json!([
                hinted("10.0.0.1", &["node-a"], &["zone-b"]),
                hinted("10.0.0.2", &[], &["zone-a"])
            ]),
            "10.0.0.2:8080",
        ),
        (
            "nothing usable: all",
            json!([
                hinted("10.0.0.1", &["n1"], &[]),
                hinted("10.0.0.2", &["n2"], &["zone-a"])
            ]),
            "10.0.0.1:8080 10.0.0.2:8080",
        ),
    ];
    for (what, endpoints, expected) in cases {
        let mut w = World::new()
            .with(cluster_ip(
                "web",
                json!({"trafficDistribution": "PreferSameNode"}),
            ))
            .with_slice(http_slice("web-1", "web", endpoints));
        w.config.node_name = "node-a".into();
        w.snapshot.set_node(&node("node-a", Some("zone-a"), &[]));
        assert_eq!(
            w.vs("web"),
            vec![format!("ClusterIP TCP 10.96.0.10:80 http -> {expected}")],
            "{what}"
        );
    }
}

/// `CategorizeEndpoints` with `UsesClusterEndpoints`: a ClusterIP Service
/// with `internalTrafficPolicy: Local` and no local endpoint has no real
/// server; a NodePort one falls back to the Cluster endpoints.
#[test]
fn internal_local_without_local_endpoint() {
    for (spec, expected) in [
        (json!({"internalTrafficPolicy": "Local"}), ""),
        (
            json!({"internalTrafficPolicy": "Local", "type": "NodePort",
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            " 10.0.0.2:8080",
        ),
    ] {
        let w = World::new()
            .with(cluster_ip("web", spec))
            .with_slice(http_slice(
                "web-1",
                "web",
                json!([ep("10.0.0.2", "node-b")]),
            ));
        assert!(
            w.vs("web")
                .contains(&format!("ClusterIP TCP 10.96.0.10:80 http ->{expected}")),
            "{:?}",
            w.vs("web")
        );
    }
}
