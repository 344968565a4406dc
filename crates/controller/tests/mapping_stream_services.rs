//! ingress-nginx's `tcp-services` and `udp-services` ConfigMaps: each entry
//! served on the publish Service's addresses with its target's endpoints,
//! the publish Service giving up those ports, and every entry that cannot
//! be served named with its reason while the rest keeps working.

mod common;

use std::collections::BTreeSet;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube_ipvs_controller::{
    affected, desired, desired_owner_checked, ConfigMapRef, Intent, Owner, ServiceRef, Skipped,
    StreamEntryRef, StreamKind,
};
use kube_ipvs_model::{Scheduler, VirtualServerKey};
use serde_json::{json, Value};

const LB: &str = "203.0.113.30";

fn tcp_services() -> ConfigMapRef {
    ConfigMapRef::new("ingress-nginx", "tcp-services")
}

fn udp_services() -> ConfigMapRef {
    ConfigMapRef::new("ingress-nginx", "udp-services")
}

fn publish_ref() -> ServiceRef {
    ServiceRef::new("ingress-nginx", "ingress-nginx-controller")
}

fn entry(kind: StreamKind, port: u16) -> StreamEntryRef {
    let config_map = match kind {
        StreamKind::Tcp => tcp_services(),
        StreamKind::Udp => udp_services(),
    };
    StreamEntryRef::new(kind, config_map, port)
}

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"namespace": "ingress-nginx", "name": name},
        "data": data,
    }))
    .unwrap()
}

/// ingress-nginx's controller Service, as its install declares it: http and
/// https, plus `extra` ports; a load-balancer IP; a selector matching no
/// pod (no slice).
fn publish(extra: Value, spec: Value) -> k8s_openapi::api::core::v1::Service {
    let mut ports = vec![
        json!({"name": "http", "port": 80, "nodePort": 30080}),
        json!({"name": "https", "port": 443, "nodePort": 30443}),
    ];
    ports.extend(extra.as_array().cloned().unwrap_or_default());
    let mut base = json!({
        "type": "LoadBalancer",
        "clusterIP": "10.96.50.1",
        "ports": ports,
        "selector": {"app.kubernetes.io/name": "ingress-nginx"},
    });
    for (k, v) in spec.as_object().cloned().unwrap_or_default() {
        base[k] = v;
    }
    service(json!({
        "metadata": {"namespace": "ingress-nginx", "name": "ingress-nginx-controller"},
        "spec": base,
        "status": {"loadBalancer": {"ingress": [{"ip": LB}]}},
    }))
}

fn declared(port: u16, node_port: u16) -> Value {
    json!({"name": format!("proxied-tcp-{port}"), "port": port, "nodePort": node_port})
}

/// A ClusterIP Service `default/name` with one TCP port `port` (named
/// `tcp`) and a slice of `endpoints` listening on it.
fn target(name: &str, ip: &str, port: u16, endpoints: Value) -> Target {
    (
        service(json!({
            "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": "tcp", "port": port}]},
        })),
        slice(
            &format!("{name}-1"),
            name,
            "IPv4",
            json!([{"name": "tcp", "port": port}]),
            endpoints,
        ),
    )
}

type Target = (
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::discovery::v1::EndpointSlice,
);

/// The world of the issue: two backends on 10000 and 20000, one ConfigMap
/// mapping both onto the publish Service's load-balancer IP, which declares
/// both ports.
fn layanan() -> World {
    let mut w = World::new().with(publish(
        json!([declared(10000, 31000), declared(20000, 32000)]),
        json!({}),
    ));
    w.config.streams.tcp_services = Some(tcp_services());
    w.config.streams.publish_service = Some(publish_ref());
    let w = w
        .with_all(target(
            "layanan-xyz-port-10000",
            "10.96.60.1",
            10000,
            json!([ep("10.244.1.2", "node-a")]),
        ))
        .with_all(target(
            "layanan-xyz-port-20000",
            "10.96.60.2",
            20000,
            json!([ep("10.244.2.2", "node-b")]),
        ));
    w.with_config_map(
        StreamKind::Tcp,
        config_map(
            "tcp-services",
            json!({
                "10000": "default/layanan-xyz-port-10000:10000",
                "20000": "default/layanan-xyz-port-20000:20000",
            }),
        ),
    )
}

trait StreamWorld: Sized {
    fn with_all(self, target: Target) -> Self;
    fn with_config_map(self, kind: StreamKind, cm: ConfigMap) -> Self;
    fn stream(&self, kind: StreamKind, port: u16) -> Vec<String>;
    fn publish_vs(&self) -> Vec<String>;
}

impl StreamWorld for World {
    fn with_all(self, (service, slice): Target) -> Self {
        self.with(service).with_slice(slice)
    }

    fn with_config_map(mut self, kind: StreamKind, cm: ConfigMap) -> Self {
        self.snapshot.apply_stream_services(kind, &cm);
        self
    }

    /// The virtual servers of an entry, rendered.
    fn stream(&self, kind: StreamKind, port: u16) -> Vec<String> {
        self.desired()
            .streams
            .get(&entry(kind, port))
            .map(render)
            .unwrap_or_default()
    }

    fn publish_vs(&self) -> Vec<String> {
        self.desired()
            .services
            .get(&publish_ref())
            .map(render)
            .unwrap_or_default()
    }
}

#[test]
fn each_port_goes_to_its_own_service_on_the_load_balancer_ip_and_the_node_port() {
    let w = layanan();
    assert_lines(
        w.stream(StreamKind::Tcp, 10000),
        &[
            "LoadBalancer TCP 203.0.113.30:10000 10000 -> 10.244.1.2:10000",
            "NodePort TCP 192.168.0.10:31000 10000 -> 10.244.1.2:10000",
        ],
    );
    assert_lines(
        w.stream(StreamKind::Tcp, 20000),
        &[
            "LoadBalancer TCP 203.0.113.30:20000 20000 -> 10.244.2.2:20000",
            "NodePort TCP 192.168.0.10:32000 20000 -> 10.244.2.2:20000",
        ],
    );
    // The publish Service keeps http and https, and its cluster IP at the
    // taken ports; the load-balancer IP and node ports of 10000 and 20000
    // are the entries'.
    assert_lines(
        w.publish_vs(),
        &[
            "ClusterIP TCP 10.96.50.1:80 http ->",
            "ClusterIP TCP 10.96.50.1:443 https ->",
            "ClusterIP TCP 10.96.50.1:10000 proxied-tcp-10000 ->",
            "ClusterIP TCP 10.96.50.1:20000 proxied-tcp-20000 ->",
            "LoadBalancer TCP 203.0.113.30:80 http ->",
            "LoadBalancer TCP 203.0.113.30:443 https ->",
            "NodePort TCP 192.168.0.10:30080 http ->",
            "NodePort TCP 192.168.0.10:30443 https ->",
        ],
    );
    let d = w.desired();
    let state = &d.streams[&entry(StreamKind::Tcp, 10000)];
    assert_eq!(
        state.target,
        Some(ServiceRef::new("default", "layanan-xyz-port-10000"))
    );
    assert_eq!(
        state.addresses.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([LB.parse().unwrap()])
    );
    assert!(w.skipped().is_empty(), "{:?}", w.skipped());
    assert!(d.conflicts().is_empty());
    assert_eq!(
        entry(StreamKind::Tcp, 10000).to_string(),
        "tcp-services ingress-nginx/tcp-services:10000"
    );
    // The whole desired state, indexed: one winner per key, the entries'.
    let intent = Intent::new(d);
    let key = VirtualServerKey::inet(kube_ipvs_model::Protocol::Tcp, LB.parse().unwrap(), 10000);
    assert_eq!(
        intent.virtual_server(&key).unwrap().0,
        &Owner::Stream(entry(StreamKind::Tcp, 10000))
    );
    assert!(intent.wants_address(LB.parse().unwrap()));
}

#[test]
fn external_ips_and_undeclared_ports_have_no_node_port() {
    let mut w = World::new().with(publish(json!([]), json!({"externalIPs": ["198.51.100.7"]})));
    w.config.streams.tcp_services = Some(tcp_services());
    w.config.streams.publish_service = Some(publish_ref());
    let w = w
        .with_all(target(
            "db",
            "10.96.60.3",
            5432,
            json!([ep("10.244.3.2", "node-a")]),
        ))
        .with_config_map(
            StreamKind::Tcp,
            config_map("tcp-services", json!({"15432": "default/db:tcp"})),
        );
    assert_lines(
        w.stream(StreamKind::Tcp, 15432),
        &[
            "ExternalIP TCP 198.51.100.7:15432 tcp -> 10.244.3.2:5432",
            "LoadBalancer TCP 203.0.113.30:15432 tcp -> 10.244.3.2:5432",
        ],
    );
}

#[test]
fn udp_entries_are_udp_virtual_servers() {
    let mut w = World::new().with(publish(
        json!([{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]),
        json!({}),
    ));
    w.config.streams.udp_services = Some(udp_services());
    w.config.streams.publish_service = Some(publish_ref());
    let dns = service(json!({
        "metadata": {"namespace": "kube-system", "name": "kube-dns"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]},
    }));
    let dns_slice = slice_json(json!({
        "metadata": {"namespace": "kube-system", "name": "kube-dns-1",
                     "labels": {"kubernetes.io/service-name": "kube-dns"}},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
        "endpoints": [ep("10.244.0.2", "node-a")],
    }));
    let w = w.with_all((dns, dns_slice)).with_config_map(
        StreamKind::Udp,
        // PROXY on a UDP entry: ingress-nginx ignores it, and so does this.
        config_map(
            "udp-services",
            json!({"53": "kube-system/kube-dns:53:PROXY"}),
        ),
    );
    assert_lines(
        w.stream(StreamKind::Udp, 53),
        &[
            "LoadBalancer UDP 203.0.113.30:53 53 -> 10.244.0.2:53",
            "NodePort UDP 192.168.0.10:30053 53 -> 10.244.0.2:53",
        ],
    );
    assert!(w.skipped().is_empty(), "{:?}", w.skipped());
}

#[test]
fn scheduler_and_affinity_are_the_targets_traffic_policy_the_publish_services() {
    let mut w = World::new().with(publish(
        json!([declared(10000, 31000)]),
        json!({"externalTrafficPolicy": "Local"}),
    ));
    w.config.streams.tcp_services = Some(tcp_services());
    w.config.streams.publish_service = Some(publish_ref());
    let sticky = service(json!({
        "metadata": {"namespace": "default", "name": "sticky",
                     "annotations": {"kube-ipvs.io/scheduler": "sh",
                                     "kube-ipvs.io/scheduler-flags": "sh-port"}},
        "spec": {"clusterIP": "10.96.60.4", "sessionAffinity": "ClientIP",
                 "ports": [{"name": "tcp", "port": 10000}]},
    }));
    let endpoints = slice(
        "sticky-1",
        "sticky",
        "IPv4",
        json!([{"name": "tcp", "port": 10000}]),
        json!([ep("10.244.1.2", "node-a"), ep("10.244.2.2", "node-b")]),
    );
    let w = w.with_all((sticky, endpoints)).with_config_map(
        StreamKind::Tcp,
        config_map("tcp-services", json!({"10000": "default/sticky:tcp"})),
    );
    // Local: only node-a's endpoint.
    assert_lines(
        w.stream(StreamKind::Tcp, 10000),
        &[
            "LoadBalancer TCP 203.0.113.30:10000 tcp -> 10.244.1.2:10000",
            "NodePort TCP 192.168.0.10:31000 tcp -> 10.244.1.2:10000",
        ],
    );
    let d = w.desired();
    for vs in d.streams[&entry(StreamKind::Tcp, 10000)]
        .virtual_servers
        .values()
    {
        assert_eq!(vs.service.scheduler, Scheduler::Sh);
        assert_eq!(
            vs.service.flags.scheduler_flag_names(&Scheduler::Sh),
            ["sh-port"]
        );
        assert_eq!(vs.service.timeout, 10800, "the target's ClientIP affinity");
    }
}

#[test]
fn real_servers_are_chosen_as_for_the_target_terminating_and_topology() {
    let mut w = World::new().with(publish(json!([]), json!({})));
    w.config.streams.tcp_services = Some(tcp_services());
    w.config.streams.publish_service = Some(publish_ref());
    w.snapshot.set_node(&node(
        "node-a",
        Some("zone-a"),
        &[("InternalIP", "192.168.0.10")],
    ));
    // Only terminating endpoints: they serve, as for the Service itself.
    let w = w.with_all(target(
        "draining",
        "10.96.60.5",
        7000,
        json!([
            ep_cond("10.244.1.2", "node-a", false, true, true),
            ep_cond("10.244.1.3", "node-a", false, false, true),
        ]),
    ));
    // Topology-aware: the zone's endpoints.
    let zonal = service(json!({
        "metadata": {"namespace": "default", "name": "zonal",
                     "annotations": {"service.kubernetes.io/topology-mode": "Auto"}},
        "spec": {"clusterIP": "10.96.60.6", "ports": [{"name": "tcp", "port": 7001}]},
    }));
    let zonal_slice = slice(
        "zonal-1",
        "zonal",
        "IPv4",
        json!([{"name": "tcp", "port": 7001}]),
        json!([
            ep_zones("10.244.1.4", "node-a", &["zone-a"]),
            ep_zones("10.244.2.4", "node-b", &["zone-b"])
        ]),
    );
    let w = w
        .with_all((zonal, zonal_slice))
        .with_all(target("empty", "10.96.60.7", 7002, json!([])))
        .with_config_map(
            StreamKind::Tcp,
            config_map(
                "tcp-services",
                json!({"7000": "default/draining:7000", "7001": "default/zonal:7001",
                       "7002": "default/empty:7002"}),
            ),
        );
    assert_lines(
        w.stream(StreamKind::Tcp, 7000),
        &["LoadBalancer TCP 203.0.113.30:7000 7000 -> 10.244.1.2:7000"],
    );
    assert_lines(
        w.stream(StreamKind::Tcp, 7001),
        &["LoadBalancer TCP 203.0.113.30:7001 7001 -> 10.244.1.4:7001"],
    );
    // A target without endpoints: a virtual server without real servers.
    assert_lines(
        w.stream(StreamKind::Tcp, 7002),
        &["LoadBalancer TCP 203.0.113.30:7002 7002 ->"],
    );
}

#[test]
fn dual_stack_entries_serve_each_family_the_target_has() {
    let mut w = World::new().with(publish(
        json!([declared(10000, 31000)]),
        json!({"clusterIPs": ["10.96.50.1", "fd00:96::50:1"], "ipFamilies": ["IPv4", "IPv6"],
               "externalIPs": ["2001:db8:1::30"]}),
    ));
    w.config.streams.tcp_services = Some(tcp_services());
    w.config.streams.publish_service = Some(publish_ref());
    let v6 = slice(
        "v4only-2",
        "v4only",
        "IPv6",
        json!([{"name": "tcp", "port": 10000}]),
        json!([ep("fd00:244::2", "node-a")]),
    );
    let w = w
        .with_all(target(
            "v4only",
            "10.96.60.8",
            10000,
            json!([ep("10.244.1.2", "node-a")]),
        ))
        .with_slice(v6)
        .with_config_map(
            StreamKind::Tcp,
            config_map("tcp-services", json!({"10000": "default/v4only:10000"})),
        );
    // IPv4 only: the target has no IPv6 cluster IP, so its IPv6 endpoints
    // are none of its Service's and the IPv6 addresses stay the publish
    // Service's.
    assert_lines(
        w.stream(StreamKind::Tcp, 10000),
        &[
            "LoadBalancer TCP 203.0.113.30:10000 10000 -> 10.244.1.2:10000",
            "NodePort TCP 192.168.0.10:31000 10000 -> 10.244.1.2:10000",
        ],
    );
    let publish = w.publish_vs();
    for line in [
        "ExternalIP TCP [2001:db8:1::30]:10000 proxied-tcp-10000 ->",
        "NodePort TCP [2001:db8::10]:31000 proxied-tcp-10000 ->",
    ] {
        assert!(publish.iter().any(|l| l == line), "{line} in {publish:#?}");
    }
    assert!(!publish.iter().any(|l| l.contains("203.0.113.30:10000")));
    assert_eq!(
        w.skipped(),
        ["tcp-services ingress-nginx/tcp-services:10000: target Service default/v4only has no IPv6 cluster IP for the publish Service's IPv6 addresses"]
    );
}

/// Every reason an entry is not served, each named by the entry, counted
/// under its own label, with every other entry and Service still served.
#[test]
fn bad_input_is_skipped_by_name_and_the_rest_is_served() {
    let mut w = layanan()
        .with(service(json!({
            "metadata": {"namespace": "default", "name": "headless"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5000}]},
        })))
        // Shares the load-balancer IP as an external IP, at 30000.
        .with(cluster_ip(
            "squatter",
            json!({"clusterIP": "10.96.60.9", "externalIPs": [LB],
                   "ports": [{"name": "x", "port": 30000}]}),
        ));
    w = w.with_config_map(
        StreamKind::Tcp,
        config_map(
            "tcp-services",
            json!({
                "10000": "default/layanan-xyz-port-10000:10000",
                "20000": "default/layanan-xyz-port-20000:20000",
                "0": "default/layanan-xyz-port-10000:10000",
                "99999": "default/layanan-xyz-port-10000:10000",
                "ssh": "default/layanan-xyz-port-10000:10000",
                "1000": "layanan-xyz-port-10000:10000",
                "1001": "default/layanan-xyz-port-10000",
                "1002": "default/layanan-xyz-port-10000:10000:PROXY",
                "1003": "default/layanan-xyz-port-10000:10000::PROXY",
                "1004": "default/nowhere:10000",
                "1005": "default/layanan-xyz-port-10000:10001",
                "1006": "default/layanan-xyz-port-10000:http",
                "1007": "default/headless:5000",
                "30000": "default/layanan-xyz-port-20000:20000",
            }),
        ),
    );
    let e = "tcp-services ingress-nginx/tcp-services";
    let v = "is not namespace/service:port[:PROXY[:PROXY]]";
    let expected = [
        format!("{e}:0: key \"0\" is not a port in 1-65535"),
        format!("{e}:99999: key \"99999\" is not a port in 1-65535"),
        format!("{e}:ssh: key \"ssh\" is not a port in 1-65535"),
        format!("{e}:1000: value \"layanan-xyz-port-10000:10000\" {v}: the Service is not namespace/name"),
        format!("{e}:1001: value \"default/layanan-xyz-port-10000\" {v}: no :port"),
        format!("{e}:1002: value \"default/layanan-xyz-port-10000:10000:PROXY\" asks for the PROXY protocol, which IPVS cannot add or strip"),
        format!("{e}:1003: value \"default/layanan-xyz-port-10000:10000::PROXY\" asks for the PROXY protocol, which IPVS cannot add or strip"),
        format!("{e}:1004: target Service default/nowhere not found"),
        format!("{e}:1005: Service default/layanan-xyz-port-10000 has no TCP port 10001"),
        format!("{e}:1006: Service default/layanan-xyz-port-10000 has no TCP port http"),
        format!("{e}:1007: target Service default/headless is not proxied here (headless, ExternalName, no cluster IP, or another proxy's)"),
        format!("{e}:30000: virtual server TCP 203.0.113.30:30000 is also wanted by default/squatter, which keeps it"),
    ];
    let mut skipped = w.skipped();
    skipped.sort();
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(skipped, expected);

    // Labels, for kube_ipvs_skipped_objects_total{kind, reason}.
    let d = desired(&w.snapshot, &w.config);
    let labels: BTreeSet<(&str, &str)> = w
        .snapshot
        .skipped()
        .chain(&d.skipped)
        .map(|s: &Skipped| (s.kind.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        labels,
        BTreeSet::from([
            ("tcp-services", "invalid_key"),
            ("tcp-services", "malformed_value"),
            ("tcp-services", "proxy_protocol"),
            ("tcp-services", "unknown_service"),
            ("tcp-services", "unknown_port"),
            ("tcp-services", "not_proxied"),
            ("tcp-services", "conflict"),
        ])
    );

    // The good entries and every Service are served; the squatter keeps its
    // port on the shared address.
    assert_eq!(w.stream(StreamKind::Tcp, 10000).len(), 2);
    assert_eq!(w.stream(StreamKind::Tcp, 20000).len(), 2);
    assert_lines(
        w.vs("squatter"),
        &[
            "ClusterIP TCP 10.96.60.9:30000 x ->",
            "ExternalIP TCP 203.0.113.30:30000 x ->",
        ],
    );
    let intent = Intent::new(d);
    let key = VirtualServerKey::inet(kube_ipvs_model::Protocol::Tcp, LB.parse().unwrap(), 30000);
    assert_eq!(
        intent.virtual_server(&key).unwrap().0,
        &Owner::Service(ServiceRef::new("default", "squatter"))
    );
    assert!(!w.vs("layanan-xyz-port-10000").is_empty());
}

#[test]
fn without_a_usable_publish_service_no_entry_is_served() {
    // No --publish-service.
    let mut w = layanan();
    w.config.streams.publish_service = None;
    assert!(w.desired().streams.is_empty());
    assert!(w
        .skipped()
        .contains(&"tcp-services ingress-nginx/tcp-services:10000: no --publish-service: no address to serve the entry on".to_owned()));
    // A publish Service not in the cluster.
    let mut w = layanan();
    w.config.streams.publish_service = Some(ServiceRef::new("ingress-nginx", "gone"));
    assert!(w.desired().streams.is_empty());
    assert!(w.skipped().contains(
        &"tcp-services ingress-nginx/tcp-services:20000: publish Service ingress-nginx/gone not found"
            .to_owned()
    ));
    // Another proxy's publish Service.
    let mut w = layanan();
    let mut other = publish(json!([]), json!({}));
    other.metadata.labels = Some(
        [(
            "service.kubernetes.io/service-proxy-name".to_owned(),
            "other".to_owned(),
        )]
        .into(),
    );
    w.snapshot.apply_service(&other);
    assert!(w.desired().streams.is_empty());
    assert_eq!(
        w.desired().skipped[0].reason.as_str(),
        "not_proxied",
        "{:?}",
        w.skipped()
    );
}

#[test]
fn an_entry_that_is_not_served_leaves_its_port_to_the_publish_service() {
    // A PROXY entry stays with ingress-nginx's own pods, if they still run.
    let mut w = layanan().with_config_map(
        StreamKind::Tcp,
        config_map(
            "tcp-services",
            json!({"10000": "default/layanan-xyz-port-10000:10000:PROXY"}),
        ),
    );
    w.snapshot.apply_slice(&slice_json(json!({
        "metadata": {"namespace": "ingress-nginx", "name": "ingress-nginx-controller-1",
                     "labels": {"kubernetes.io/service-name": "ingress-nginx-controller"}},
        "addressType": "IPv4",
        "ports": [{"name": "proxied-tcp-10000", "port": 10000}],
        "endpoints": [ep("10.244.9.9", "node-b")],
    })));
    assert!(w.stream(StreamKind::Tcp, 10000).is_empty());
    let publish = w.publish_vs();
    for line in [
        "LoadBalancer TCP 203.0.113.30:10000 proxied-tcp-10000 -> 10.244.9.9:10000",
        "NodePort TCP 192.168.0.10:31000 proxied-tcp-10000 -> 10.244.9.9:10000",
        // 20000 has no entry any more: the publish Service's again.
        "LoadBalancer TCP 203.0.113.30:20000 proxied-tcp-20000 ->",
    ] {
        assert!(publish.iter().any(|l| l == line), "{line} in {publish:#?}");
    }
}

#[test]
fn changes_re_map_exactly_the_owners_they_affect() {
    let base = layanan();
    let publish_owner = Owner::Service(publish_ref());
    let e10000 = Owner::Stream(entry(StreamKind::Tcp, 10000));
    let e20000 = Owner::Stream(entry(StreamKind::Tcp, 20000));
    let t20000 = Owner::Service(ServiceRef::new("default", "layanan-xyz-port-20000"));

    // The ConfigMap moves 10000 to the other Service: the entry and the
    // publish Service, nothing else.
    let mut w = World {
        snapshot: base.snapshot.clone(),
        config: base.config.clone(),
    };
    let changed = w.snapshot.apply_stream_services(
        StreamKind::Tcp,
        &config_map(
            "tcp-services",
            json!({
                "10000": "default/layanan-xyz-port-20000:20000",
                "20000": "default/layanan-xyz-port-20000:20000",
            }),
        ),
    );
    assert_eq!(
        changed.streams,
        BTreeSet::from([entry(StreamKind::Tcp, 10000)])
    );
    assert_eq!(
        affected(&w.snapshot, &w.config, &changed),
        BTreeSet::from([publish_owner.clone(), e10000.clone()])
    );
    assert_lines(
        w.stream(StreamKind::Tcp, 10000),
        &[
            "LoadBalancer TCP 203.0.113.30:10000 20000 -> 10.244.2.2:20000",
            "NodePort TCP 192.168.0.10:31000 20000 -> 10.244.2.2:20000",
        ],
    );
    check_incremental(&base, &w, &changed);

    // A target's endpoints change: its Service, the entries targeting it and
    // the publish Service.
    let mut w = World {
        snapshot: base.snapshot.clone(),
        config: base.config.clone(),
    };
    let changed = w.snapshot.apply_slice(&slice(
        "layanan-xyz-port-20000-1",
        "layanan-xyz-port-20000",
        "IPv4",
        json!([{"name": "tcp", "port": 20000}]),
        json!([ep("10.244.2.2", "node-b"), ep("10.244.2.3", "node-b")]),
    ));
    assert_eq!(
        affected(&w.snapshot, &w.config, &changed),
        BTreeSet::from([publish_owner.clone(), t20000.clone(), e20000.clone()])
    );
    check_incremental(&base, &w, &changed);

    // The publish Service changes: every entry.
    let mut w = World {
        snapshot: base.snapshot.clone(),
        config: base.config.clone(),
    };
    let changed = w.snapshot.apply_service(&publish(
        json!([declared(10000, 31001), declared(20000, 32000)]),
        json!({}),
    ));
    assert_eq!(
        affected(&w.snapshot, &w.config, &changed),
        BTreeSet::from([publish_owner.clone(), e10000.clone(), e20000.clone()])
    );
    check_incremental(&base, &w, &changed);

    // The ConfigMap goes: both entries, and the publish Service gets its
    // ports back.
    let mut w = World {
        snapshot: base.snapshot.clone(),
        config: base.config.clone(),
    };
    let changed = w.snapshot.delete_stream_services(StreamKind::Tcp);
    assert_eq!(
        affected(&w.snapshot, &w.config, &changed),
        BTreeSet::from([publish_owner, e10000, e20000])
    );
    assert!(w
        .publish_vs()
        .contains(&"LoadBalancer TCP 203.0.113.30:10000 proxied-tcp-10000 ->".to_owned()));
    check_incremental(&base, &w, &changed);

    // The same ConfigMap again: nothing.
    let mut w = World {
        snapshot: base.snapshot.clone(),
        config: base.config.clone(),
    };
    let changed = w.snapshot.apply_stream_services(
        StreamKind::Tcp,
        &config_map(
            "tcp-services",
            json!({
                "10000": "default/layanan-xyz-port-10000:10000",
                "20000": "default/layanan-xyz-port-20000:20000",
            }),
        ),
    );
    assert!(changed.is_empty());
}

/// Mapping only the affected owners over the intent of `before` gives the
/// intent of `after` mapped whole.
fn check_incremental(before: &World, after: &World, changed: &kube_ipvs_controller::Changed) {
    let mut intent = Intent::new(desired(&before.snapshot, &before.config));
    for owner in affected(&after.snapshot, &after.config, changed) {
        let state = desired_owner_checked(&after.snapshot, &after.config, &owner, &mut Vec::new());
        intent.replace(owner, state);
    }
    let full = Intent::new(desired(&after.snapshot, &after.config));
    assert_eq!(intent.services(), full.services());
    assert_eq!(intent.counts(), full.counts());
}
