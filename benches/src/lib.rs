//! Benchmarks of kube-ipvs; see `benches/`. This library builds the
//! synthetic clusters they run on.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_ipvs_controller::{Config, ServiceRef, Snapshot};

/// The node the benchmarks map for, and how many nodes endpoints spread over.
pub const NODES: usize = 100;

/// Service `i`'s namespace: Services spread over 100 namespaces.
fn meta(i: usize, name: String, labels: Option<BTreeMap<String, String>>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(format!("ns-{}", i % 100)),
        name: Some(name),
        labels,
        ..ObjectMeta::default()
    }
}

fn v4(base: u32, i: usize) -> String {
    Ipv4Addr::from(base + i as u32).to_string()
}

/// Service `i`: a cluster IP, TCP port 80 named http and, for one Service
/// in four, a node port.
pub fn service(i: usize) -> Service {
    let node_port = (i % 4 == 0).then_some(30000 + (i % 2768) as i32);
    Service {
        metadata: meta(i, format!("svc-{i}"), None),
        spec: Some(ServiceSpec {
            type_: Some(
                if node_port.is_some() {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            cluster_ip: Some(v4(0x0a60_0000, i)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                node_port,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Service `i` by namespace and name.
pub fn service_ref(i: usize) -> ServiceRef {
    let name = service(i).metadata;
    ServiceRef::new(
        name.namespace.unwrap_or_default(),
        name.name.unwrap_or_default(),
    )
}

/// Two versions of Service `i`'s slice, one endpoint apart, to alternate
/// between: a one-endpoint change every time.
pub fn alternating_slices(i: usize, endpoints: usize) -> [EndpointSlice; 2] {
    [slice(i, endpoints, 1), slice(i, endpoints, 0)]
}

/// The EndpointSlice of Service `i` with `endpoints` ready endpoints;
/// `generation` shifts the first endpoint's address, to make a change.
pub fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let labels = BTreeMap::from([("kubernetes.io/service-name".to_owned(), format!("svc-{i}"))]);
    let endpoints = (0..endpoints)
        .map(|e| {
            let n = i * endpoints + e + if e == 0 { generation * 1_000_000 } else { 0 };
            Endpoint {
                addresses: vec![v4(0x0a00_0000, n)],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(format!("node-{}", n % NODES)),
                ..Endpoint::default()
            }
        })
        .collect();
    EndpointSlice {
        metadata: meta(i, format!("svc-{i}-abcde"), Some(labels)),
        address_type: "IPv4".into(),
        endpoints: Some(endpoints),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

/// A snapshot of `services` Services with `endpoints` endpoints each, on a
/// node with two addresses.
pub fn snapshot(services: usize, endpoints: usize) -> Snapshot {
    let mut snapshot = Snapshot::new();
    snapshot.replace_services((0..services).map(service));
    snapshot.replace_slices((0..services).map(|i| slice(i, endpoints, 0)));
    snapshot.set_node_addresses(vec![
        "192.168.0.10".parse().unwrap(),
        "10.1.0.10".parse().unwrap(),
    ]);
    assert_eq!(snapshot.endpoint_count(), services * endpoints);
    snapshot
}

/// The configuration the benchmarks map with.
pub fn config() -> Config {
    Config::new("node-0")
}
