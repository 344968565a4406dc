//! Arbitrary Services, EndpointSlices, Endpoints, Nodes and stream-services
//! ConfigMaps never make conversion or mapping panic, and the mapping keeps
//! its invariants.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, ConfigMap, EndpointAddress, EndpointPort as CorePort, EndpointSubset,
    Endpoints, LoadBalancerIngress, LoadBalancerStatus, Node, Service, ServicePort, ServiceSpec,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_ipvs_controller::{
    desired, desired_service, desired_stream_checked, endpoint_slices_from_endpoints, Config,
    ConfigMapRef, ServiceRef, Snapshot, StreamConfig, StreamKind,
};
use kube_ipvs_model::{AddressFamily, Scheduler};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

/// Strings that are often meaningful, sometimes nearly so, sometimes noise.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("None".to_owned()),
        "10\\.96\\.0\\.[0-9]{1,3}",
        "10\\.0\\.[0-2]\\.[0-9]{1,2}",
        "fd00::[0-9a-f]{1,4}",
        "(TCP|UDP|SCTP|tcp|ICMP|IPv4|IPv6|FQDN|Local|Cluster|ClientIP|Auto|PreferClose|Proxy|VIP)",
        "(http|dns|web|a|b|zone-a|zone-b|node-a|node-b|default)",
        "(rr|sh|mh|wlc|bogus|sh-port|mh-fallback,mh-port|flag-1|sh-port,mh-port)",
        any::<String>(),
    ]
}

fn port() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(0),
        1..3i32,
        65530..65540i32,
        any::<i32>(),
        30000..30003i32
    ]
}

fn meta() -> impl Strategy<Value = ObjectMeta> {
    let keys = prop_oneof![
        Just("kubernetes.io/service-name".to_owned()),
        Just("service.kubernetes.io/service-proxy-name".to_owned()),
        Just("service.kubernetes.io/headless".to_owned()),
        Just("service.kubernetes.io/topology-mode".to_owned()),
        Just("kube-ipvs.io/scheduler".to_owned()),
        Just("kube-ipvs.io/scheduler-flags".to_owned()),
        Just("kube-router.io/service.scheduler".to_owned()),
        Just("kube-router.io/service.schedflags".to_owned()),
        Just("endpointslice.kubernetes.io/skip-mirror".to_owned()),
        Just("topology.kubernetes.io/zone".to_owned()),
        Just("service.beta.kubernetes.io/load-balancer-source-ranges".to_owned()),
    ];
    (
        option::of("(a|b|web|db)"),
        option::of("(default|ns)"),
        option::of(btree_map(keys.clone(), text(), 0..4)),
        option::of(btree_map(keys, text(), 0..4)),
    )
        .prop_map(|(name, namespace, labels, annotations)| ObjectMeta {
            name,
            namespace,
            labels,
            annotations,
            ..ObjectMeta::default()
        })
}

fn service() -> impl Strategy<Value = Service> {
    let port = (
        option::of(text()),
        option::of(port()),
        port(),
        option::of(text()),
    )
        .prop_map(|(name, node_port, port, protocol)| ServicePort {
            name,
            node_port,
            port,
            protocol,
            ..ServicePort::default()
        });
    let ingress =
        (option::of(text()), option::of(text())).prop_map(|(ip, ip_mode)| LoadBalancerIngress {
            ip,
            ip_mode,
            ..LoadBalancerIngress::default()
        });
    let spec = (
        (
            option::of(text()),
            option::of(vec(text(), 0..3)),
            option::of(vec(text(), 0..3)),
        ),
        (
            option::of(vec(text(), 0..3)),
            option::of(vec(port, 0..4)),
            option::of(text()),
        ),
        (option::of(text()), option::of(text()), option::of(text())),
        (
            option::of(text()),
            option::of(any::<i32>()),
            option::of(vec(text(), 0..3)),
        ),
    )
        .prop_map(
            |(
                (ip, ips, families),
                (external, ports, ty),
                (itp, etp, td),
                (affinity, timeout, ranges),
            )| {
                ServiceSpec {
                    cluster_ip: ip,
                    cluster_ips: ips,
                    ip_families: families,
                    external_ips: external,
                    ports,
                    type_: ty,
                    internal_traffic_policy: itp,
                    external_traffic_policy: etp,
                    traffic_distribution: td,
                    session_affinity: affinity,
                    session_affinity_config: timeout.map(|t| SessionAffinityConfig {
                        client_ip: Some(ClientIPConfig {
                            timeout_seconds: Some(t),
                        }),
                    }),
                    load_balancer_source_ranges: ranges,
                    ..ServiceSpec::default()
                }
            },
        );
    (meta(), option::of(spec), option::of(vec(ingress, 0..3))).prop_map(
        |(metadata, spec, ingress)| Service {
            metadata,
            spec,
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus { ingress }),
                ..ServiceStatus::default()
            }),
        },
    )
}

fn slice() -> impl Strategy<Value = EndpointSlice> {
    let port = (option::of(text()), option::of(port()), option::of(text())).prop_map(
        |(name, port, protocol)| EndpointPort {
            name,
            port,
            protocol,
            ..EndpointPort::default()
        },
    );
    let endpoint = (
        vec(text(), 0..2),
        option::of((
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
        )),
        option::of(text()),
        option::of(vec(text(), 0..2)),
    )
        .prop_map(|(addresses, conditions, node_name, zones)| Endpoint {
            addresses,
            conditions: conditions.map(|(ready, serving, terminating)| EndpointConditions {
                ready,
                serving,
                terminating,
            }),
            node_name,
            hints: zones.map(|z| EndpointHints {
                for_zones: Some(z.into_iter().map(|name| ForZone { name }).collect()),
                ..EndpointHints::default()
            }),
            ..Endpoint::default()
        });
    (
        meta(),
        text(),
        option::of(vec(port, 0..3)),
        option::of(vec(endpoint, 0..4)),
    )
        .prop_map(|(metadata, address_type, ports, endpoints)| EndpointSlice {
            metadata,
            address_type,
            ports,
            endpoints,
        })
}

fn endpoints() -> impl Strategy<Value = Endpoints> {
    fn address() -> impl Strategy<Value = EndpointAddress> {
        (text(), option::of(text())).prop_map(|(ip, node_name)| EndpointAddress {
            ip,
            node_name,
            ..EndpointAddress::default()
        })
    }
    let port =
        (option::of(text()), port(), option::of(text())).prop_map(|(name, port, protocol)| {
            CorePort {
                name,
                port,
                protocol,
                ..CorePort::default()
            }
        });
    let subset = (
        option::of(vec(address(), 0..3)),
        option::of(vec(address(), 0..2)),
        option::of(vec(port, 0..2)),
    )
        .prop_map(|(addresses, not_ready_addresses, ports)| EndpointSubset {
            addresses,
            not_ready_addresses,
            ports,
        });
    (meta(), option::of(vec(subset, 0..3)))
        .prop_map(|(metadata, subsets)| Endpoints { metadata, subsets })
}

/// The data of a stream-services ConfigMap: keys that are ports or not,
/// values that name Services and ports of the generated ones, or not.
fn stream_data() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof!["[0-9]{1,6}", "(80|443|53|30000)", text()];
    let value = prop_oneof![
        "(default|ns)/(a|b|web|http|dns)(:(80|http|dns|53|0|70000|[0-9]{1,5}))?(:(PROXY|proxy|x)?){0,3}",
        text(),
    ];
    btree_map(key, value, 0..5)
}

fn node() -> impl Strategy<Value = Node> {
    meta().prop_map(|metadata| Node {
        metadata,
        ..Node::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn conversion_and_mapping_never_panic(
        services in vec(service(), 0..6),
        slices in vec(slice(), 0..6),
        endpoints in vec(endpoints(), 0..3),
        node in node(),
        scheduler in text(),
        proxy_name in option::of(text()),
        tcp_data in stream_data(),
        udp_data in stream_data(),
        publish in "(a|b|web|http|dns)",
    ) {
        let mut snapshot = Snapshot::new();
        snapshot.set_node(&node);
        snapshot.set_node_addresses(vec!["192.168.0.10".parse().unwrap(), "fd00::99".parse().unwrap()]);
        for s in &services {
            snapshot.apply_service(s);
        }
        for s in &slices {
            snapshot.apply_slice(s);
        }
        for e in &endpoints {
            let _ = endpoint_slices_from_endpoints(e);
            snapshot.apply_endpoints(e);
        }
        for (kind, data) in [(StreamKind::Tcp, tcp_data), (StreamKind::Udp, udp_data)] {
            let config_map = ConfigMap {
                metadata: ObjectMeta {
                    namespace: Some("ingress-nginx".into()),
                    name: Some(kind.as_str().into()),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..ConfigMap::default()
            };
            snapshot.apply_stream_services(kind, &config_map);
        }
        let config = Config {
            node_name: "node-a".into(),
            scheduler: scheduler.parse::<Scheduler>().unwrap(),
            service_proxy_name: proxy_name,
            nodeport_addresses: Vec::new(),
            streams: StreamConfig {
                tcp_services: Some(ConfigMapRef::new("ingress-nginx", "tcp-services")),
                udp_services: Some(ConfigMapRef::new("ingress-nginx", "udp-services")),
                publish_service: Some(ServiceRef::new("default", publish)),
            },
            ..Config::default()
        };
        let full = desired(&snapshot, &config);
        for skipped in snapshot.skipped().chain(full.skipped.iter()) {
            let _ = skipped.to_string();
        }

        // The full computation is the per-Service one, assembled.
        let mut assembled = BTreeMap::new();
        for (service, _) in snapshot.services() {
            if let Some(state) = desired_service(&snapshot, &config, service) {
                assembled.insert(service.clone(), state);
            }
        }
        prop_assert_eq!(&full.services, &assembled);
        let mut assembled = BTreeMap::new();
        for (entry, _) in snapshot.stream_entries() {
            if let Some(state) = desired_stream_checked(&snapshot, &config, &entry, &mut Vec::new()) {
                assembled.insert(entry, state);
            }
        }
        prop_assert_eq!(&full.streams, &assembled);

        // Real servers are of their virtual server's family; every bound
        // address has a virtual server.
        for state in full.services.values().chain(full.streams.values()) {
            for (key, vs) in &state.virtual_servers {
                prop_assert_eq!(vs.service.key, *key);
                for rs in vs.real_servers.keys() {
                    prop_assert_eq!(AddressFamily::of(&rs.address), key.family());
                    prop_assert!(rs.port != 0);
                }
            }
            for address in &state.addresses {
                prop_assert!(state.virtual_servers.keys().any(|k| k.address() == Some(*address)));
            }
        }

        // A relist of the same objects changes nothing (a relist names each
        // object once; with repeats the last one is what the snapshot holds).
        let unique: BTreeMap<(String, Option<String>), &Service> = services
            .iter()
            .map(|s| {
                let namespace = s.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                ((namespace, s.metadata.name.clone()), s)
            })
            .collect();
        snapshot.replace_services(unique.values().copied());
        prop_assert!(snapshot.replace_services(unique.values().copied()).is_empty());
        let before = desired(&snapshot, &config);
        snapshot.replace_slices(&slices);
        snapshot.replace_services(Vec::<Service>::new());
        prop_assert!(desired(&snapshot, &config).services.is_empty());
        let _ = before;
    }
}
