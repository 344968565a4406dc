//! The mapping from Services and EndpointSlices to virtual servers, one
//! Service feature per test.

mod common;

use common::*;
use kube_ipvs_controller::{desired_service, Config, ServiceState};
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
            let expected = if owner.name == "a" {
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
    // No local endpoint: the virtual server stays, without real servers;
    // a local terminating one is the fallback when no local one is ready.
    let mut w = with(json!({"externalTrafficPolicy": "Local"}));
    w.config.node_name = "node-c".into();
    assert!(w
        .vs("web")
        .contains(&"NodePort TCP 192.168.0.10:30080 http ->".to_owned()));
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
            "not asked",
            cluster_ip("web", json!({})),
            hinted.clone(),
            Some("zone-a"),
            "10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080",
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

fn scheduler_of(w: &World) -> (Scheduler, ServiceFlags) {
    let d = w.desired();
    let vs = d.services[&r("web")]
        .virtual_servers
        .values()
        .next()
        .unwrap()
        .service
        .clone();
    (vs.scheduler, vs.flags)
}

#[test]
fn per_service_schedulers_and_flags() {
    let both = ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
    let cases: Vec<(serde_json::Value, Scheduler, ServiceFlags, Option<&str>)> = vec![
        (json!({}), Scheduler::Rr, ServiceFlags::empty(), None),
        (json!({"kube-ipvs.io/scheduler": "wlc"}), Scheduler::Wlc, ServiceFlags::empty(), None),
        (json!({"kube-ipvs.io/scheduler": "sh", "kube-ipvs.io/scheduler-flags": "sh-fallback,sh-port"}), Scheduler::Sh, both, None),
        (json!({"kube-ipvs.io/scheduler": "mh", "kube-ipvs.io/scheduler-flags": "mh-port"}), Scheduler::Mh, ServiceFlags::SCHED2, None),
        (json!({"kube-router.io/service.scheduler": "sh", "kube-router.io/service.schedflags": "flag-1,flag-2"}), Scheduler::Sh, both, None),
        (json!({"kube-ipvs.io/scheduler": "lc", "kube-router.io/service.scheduler": "sh"}), Scheduler::Lc, ServiceFlags::empty(), None),
        (
            json!({"kube-ipvs.io/scheduler": "fastest"}),
            Scheduler::Rr,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler: unknown scheduler \"fastest\", using the default"),
        ),
        (
            json!({"kube-ipvs.io/scheduler": "sh", "kube-ipvs.io/scheduler-flags": "sh-port,turbo"}),
            Scheduler::Sh,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler-flags: invalid scheduler flags \"sh-port,turbo\" (unknown flag), setting none"),
        ),
        (
            json!({"kube-ipvs.io/scheduler": "mh", "kube-ipvs.io/scheduler-flags": "sh-port"}),
            Scheduler::Mh,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler-flags: flags \"sh-port\" do not apply to scheduler mh, setting none"),
        ),
        (
            json!({"kube-ipvs.io/scheduler-flags": "sh-port"}),
            Scheduler::Rr,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler-flags: flags \"sh-port\" do not apply to scheduler rr, setting none"),
        ),
    ];
    for (annotations, scheduler, flags, skip) in cases {
        let svc = service(json!({
            "metadata": {"namespace": "default", "name": "web", "annotations": annotations},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}
        }));
        let w = World::new().with(svc);
        assert_eq!(
            scheduler_of(&w),
            (scheduler.clone(), flags),
            "{annotations}"
        );
        let expected: Vec<String> = skip.into_iter().map(str::to_owned).collect();
        assert_eq!(w.skipped(), expected, "{annotations}");
    }
    // Flags without a scheduler annotation apply to a default that takes them.
    let mut w = World::new().with(service(json!({
        "metadata": {"namespace": "default", "name": "web", "annotations": {"kube-ipvs.io/scheduler-flags": "sh-port"}},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}
    })));
    w.config.scheduler = Scheduler::Sh;
    assert_eq!(scheduler_of(&w), (Scheduler::Sh, ServiceFlags::SCHED2));
}

#[test]
fn session_affinity() {
    for (spec, timeout) in [
        (json!({"sessionAffinity": "ClientIP"}), 10800),
        (
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
            600,
        ),
    ] {
        let svc = cluster_ip("web", json!({"clusterIPs": ["10.96.0.10", "fd00::10"]}));
        let mut v = serde_json::to_value(&svc).unwrap();
        for (k, val) in spec.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        let w = World::new().with(service(v));
        let d = w.desired();
        for vs in d.services[&r("web")].virtual_servers.values() {
            assert!(vs.service.flags.contains(ServiceFlags::PERSISTENT));
            assert_eq!(vs.service.timeout, timeout);
            let max = if vs.service.key.address().unwrap().is_ipv4() {
                32
            } else {
                128
            };
            assert_eq!(vs.service.netmask, max);
        }
        assert_eq!(d.services[&r("web")].virtual_servers.len(), 2);
    }
    let w = World::new().with(cluster_ip("web", json!({"sessionAffinity": "None"})));
    assert_eq!(scheduler_of(&w).1, ServiceFlags::empty());
}

#[test]
fn not_proxied() {
    let labelled = |value: &str| {
        service(json!({
            "metadata": {"namespace": "default", "name": "web",
                         "labels": {"service.kubernetes.io/service-proxy-name": value}},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}
        }))
    };
    let cases: Vec<(
        &str,
        k8s_openapi::api::core::v1::Service,
        Option<&str>,
        bool,
    )> = vec![
        (
            "headless",
            cluster_ip("web", json!({"clusterIP": "None"})),
            None,
            false,
        ),
        (
            "headless clusterIPs",
            cluster_ip("web", json!({"clusterIP": "None", "clusterIPs": ["None"]})),
            None,
            false,
        ),
        (
            "no cluster IP yet",
            cluster_ip("web", json!({"clusterIP": ""})),
            None,
            false,
        ),
        (
            "ExternalName",
            cluster_ip(
                "web",
                json!({"type": "ExternalName", "externalName": "db.example", "clusterIP": ""}),
            ),
            None,
            false,
        ),
        ("another proxy's", labelled("other"), None, false),
        (
            "labelled, we have no name",
            labelled("kube-ipvs"),
            None,
            false,
        ),
        (
            "labelled with our name",
            labelled("kube-ipvs"),
            Some("kube-ipvs"),
            true,
        ),
        (
            "another proxy's, we have a name",
            labelled("other"),
            Some("kube-ipvs"),
            false,
        ),
        (
            "unlabelled, we have a name",
            cluster_ip("web", json!({})),
            Some("kube-ipvs"),
            true,
        ),
    ];
    for (what, svc, proxy_name, proxied) in cases {
        let mut w = World::new().with(svc);
        w.config.service_proxy_name = proxy_name.map(str::to_owned);
        assert_eq!(
            desired_service(&w.snapshot, &w.config, &r("web")).is_some(),
            proxied,
            "{what}"
        );
        assert!(w.skipped().is_empty(), "{what}");
    }
    // Slices of headless Services, and slices without a Service, feed nothing.
    let mut headless = http_slice("web-h", "web", json!([ep("10.0.0.9", "n")]));
    headless
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("service.kubernetes.io/headless".into(), String::new());
    let mut orphan = http_slice("web-o", "web", json!([ep("10.0.0.8", "n")]));
    orphan.metadata.labels = None;
    let w = World::new()
        .with(cluster_ip("web", json!({})))
        .with_slice(headless)
        .with_slice(orphan);
    assert_eq!(w.vs("web"), ["ClusterIP TCP 10.96.0.10:80 http ->"]);
}

#[test]
fn bad_service_input_skips_the_piece_and_keeps_the_rest() {
    let cases: Vec<(&str, serde_json::Value, &[&str], &[&str])> = vec![
        (
            "cluster IP not an IP",
            json!({"clusterIP": "10.96.0.300"}),
            &[],
            &["Service default/web: spec.clusterIPs: \"10.96.0.300\" is not an IP address"],
        ),
        (
            "cluster IP of the wrong family",
            json!({"clusterIPs": ["10.96.0.10", "10.96.0.11"], "ipFamilies": ["IPv4", "IPv6"]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &["Service default/web: spec.clusterIPs: 10.96.0.11 is not IPv6"],
        ),
        (
            "two cluster IPs of one family",
            json!({"clusterIPs": ["10.96.0.10", "10.96.0.11"]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &["Service default/web: spec.clusterIPs: duplicate address family (10.96.0.11)"],
        ),
        (
            "port 0 and port 70000",
            json!({"ports": [{"name": "a", "port": 0}, {"name": "b", "port": 70000}, {"name": "http", "port": 80}]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &[
                "Service default/web: spec.ports[].port: port 0 is outside 1-65535",
                "Service default/web: spec.ports[].port: port 70000 is outside 1-65535",
            ],
        ),
        (
            "unknown protocol",
            json!({"ports": [{"name": "q", "port": 81, "protocol": "QUIC"}, {"name": "http", "port": 80}]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &["Service default/web: spec.ports[].protocol: unknown protocol \"QUIC\""],
        ),
        (
            "node port out of range",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 99999}]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &["Service default/web: spec.ports[].nodePort: port 99999 is outside 1-65535"],
        ),
        (
            "external IPs: not an IP, family not served, repeated",
            json!({"externalIPs": ["example.com", "2001:db8::1", "203.0.113.1", "203.0.113.1"]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->", "ExternalIP TCP 203.0.113.1:80 http ->"],
            &[
                "Service default/web: spec.externalIPs: \"example.com\" is not an IP address",
                "Service default/web: spec.externalIPs: 2001:db8::1: the Service has no IPv6 cluster IP",
                "Service default/web: spec.externalIPs: duplicate 203.0.113.1",
            ],
        ),
        (
            "source range not a CIDR",
            json!({"loadBalancerSourceRanges": ["10.0.0.0/33"]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &["Service default/web: spec.loadBalancerSourceRanges: \"10.0.0.0/33\" is not a CIDR"],
        ),
        (
            "unknown policies and affinity",
            json!({"externalTrafficPolicy": "Nearby", "sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &[
                "Service default/web: spec.externalTrafficPolicy: unknown value \"Nearby\", using Cluster",
                "Service default/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: unknown value \"0\", using 10800",
            ],
        ),
        (
            "repeated port",
            json!({"ports": [{"name": "http", "port": 80}, {"name": "again", "port": 80}]}),
            &["ClusterIP TCP 10.96.0.10:80 http ->"],
            &["Service default/web: spec.ports[]: duplicate TCP port 80"],
        ),
    ];
    for (what, spec, vs, skips) in cases {
        let w = World::new().with(cluster_ip("web", spec));
        assert_lines(w.vs("web"), vs);
        assert_lines(w.skipped(), skips);
        let _ = what;
    }
}

#[test]
fn bad_load_balancer_ingress() {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}, {"ip": "203.0.113.7"}]}}
    }));
    let w = World::new().with(svc);
    assert_lines(
        w.vs("web"),
        &[
            "ClusterIP TCP 10.96.0.10:80 http ->",
            "LoadBalancer TCP 203.0.113.7:80 http ->",
        ],
    );
    assert_eq!(
        w.skipped(),
        ["Service default/web: status.loadBalancer.ingress[].ip: \"not-an-ip\" is not an IP address"]
    );
}

#[test]
fn bad_slice_input_skips_the_piece_and_keeps_the_rest() {
    let good = ep("10.0.0.1", "n");
    // (what, addressType, ports, endpoints, real servers, skips)
    type Case = (
        &'static str,
        &'static str,
        serde_json::Value,
        serde_json::Value,
        &'static str,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        (
            "address not an IP",
            "IPv4",
            json!([{"name": "http", "port": 8080}]),
            json!([good.clone(), ep("10.0.0.x", "n")]),
            "10.0.0.1:8080",
            &["EndpointSlice default/web-1: endpoints[].addresses: \"10.0.0.x\" is not an IP address"],
        ),
        (
            "address of the wrong family",
            "IPv4",
            json!([{"name": "http", "port": 8080}]),
            json!([good.clone(), ep("fd00::1", "n")]),
            "10.0.0.1:8080",
            &["EndpointSlice default/web-1: endpoints[].addresses: fd00::1 is not IPv4"],
        ),
        (
            "no address",
            "IPv4",
            json!([{"name": "http", "port": 8080}]),
            json!([good.clone(), {"addresses": []}]),
            "10.0.0.1:8080",
            &["EndpointSlice default/web-1: endpoints[].addresses: no address"],
        ),
        (
            "ports without number, out of range, unknown protocol",
            "IPv4",
            json!([{"name": "http"}, {"name": "http", "port": 65536}, {"name": "http", "port": 8081, "protocol": "ICMP"},
                   {"name": "http", "port": 8080}]),
            json!([good.clone()]),
            "10.0.0.1:8080",
            &[
                "EndpointSlice default/web-1: ports[].port: port \"http\" has no number",
                "EndpointSlice default/web-1: ports[].port: port 65536 is outside 1-65535",
                "EndpointSlice default/web-1: ports[].protocol: unknown protocol \"ICMP\"",
            ],
        ),
        (
            "unknown address type",
            "IPv5",
            json!([{"name": "http", "port": 8080}]),
            json!([good.clone()]),
            "",
            &["EndpointSlice default/web-1: addressType: unknown address type \"IPv5\""],
        ),
    ];
    for (what, address_type, ports, endpoints, expected, skips) in cases {
        let w = World::new()
            .with(cluster_ip("web", json!({})))
            .with_slice(slice("web-1", "web", address_type, ports, endpoints));
        let line = format!("ClusterIP TCP 10.96.0.10:80 http -> {expected}");
        assert_eq!(w.vs("web"), [line.trim_end()], "{what}");
        assert_lines(w.skipped(), skips);
    }
}

#[test]
fn nameless_objects_are_skipped() {
    let mut w = World::new();
    let svc = service(json!({"metadata": {"namespace": "ns"}, "spec": {"clusterIP": "10.96.0.1"}}));
    assert!(w.snapshot.apply_service(&svc).is_empty());
    let sl = slice_json(json!({"metadata": {"namespace": "ns"}, "addressType": "IPv4"}));
    assert!(w.snapshot.apply_slice(&sl).is_empty());
    assert_eq!(
        w.skipped(),
        [
            "Service ns/: no metadata.name",
            "EndpointSlice ns/: no metadata.name"
        ]
    );
    assert!(w.desired().services.is_empty());
}

#[test]
fn services_wanting_one_virtual_server_conflict() {
    let w = World::new()
        .with(cluster_ip("a", json!({"externalIPs": ["203.0.113.1"]})))
        .with(cluster_ip(
            "b",
            json!({"clusterIP": "10.96.0.11", "externalIPs": ["203.0.113.1"]}),
        ));
    let d = w.desired();
    assert_eq!(
        d.skipped.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["Service default/b: virtual server TCP 203.0.113.1:80 is also wanted by default/a, which keeps it"]
    );
    assert_eq!(d.skipped[0].reason.as_str(), "conflict");
}

#[test]
fn repeated_virtual_server_within_a_service() {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"clusterIP": "10.96.0.10", "externalIPs": ["203.0.113.1"], "ports": [{"name": "http", "port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}
    }));
    let w = World::new().with(svc);
    assert_lines(
        w.vs("web"),
        &[
            "ClusterIP TCP 10.96.0.10:80 http ->",
            "ExternalIP TCP 203.0.113.1:80 http ->",
        ],
    );
    assert_eq!(
        w.skipped(),
        ["Service default/web: virtual server: duplicate TCP 203.0.113.1:80 (LoadBalancer)"]
    );
}

#[test]
fn desired_equals_desired_service_for_every_service() {
    let mut w = World::new()
        .with(cluster_ip(
            "a",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30001}]}),
        ))
        .with(cluster_ip(
            "b",
            json!({"clusterIP": "10.96.0.11", "externalIPs": ["203.0.113.1"]}),
        ))
        .with(cluster_ip("c", json!({"clusterIP": "None"})))
        .with(cluster_ip(
            "d",
            json!({"clusterIP": "10.96.0.13", "internalTrafficPolicy": "Local"}),
        ))
        .with_slice(http_slice("a-1", "a", json!([ep("10.0.0.1", "node-a")])))
        .with_slice(http_slice(
            "d-1",
            "d",
            json!([ep("10.0.0.2", "node-a"), ep("10.0.0.3", "node-b")]),
        ));
    w.config.scheduler = Scheduler::Wrr;
    let full = w.desired();
    let mut assembled = std::collections::BTreeMap::new();
    for (service, _) in w.snapshot.services() {
        if let Some(state) = desired_service(&w.snapshot, &w.config, service) {
            assembled.insert(service.clone(), state);
        }
    }
    assert_eq!(full.services, assembled);
    assert_eq!(full.services.len(), 3);
    let empty: ServiceState = Default::default();
    assert!(full.services.values().all(|s| *s != empty));
    let _ = Config::default();
}
