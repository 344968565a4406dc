//! What cannot be mapped is left out and named, and the rest still maps:
//! bad input in Services and EndpointSlices, and virtual servers wanted
//! twice.

mod common;

use common::*;
use serde_json::json;

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
