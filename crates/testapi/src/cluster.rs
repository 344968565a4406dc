//! A generated cluster for benchmarks: realistic Services, EndpointSlices and
//! Nodes, with the managed fields and last-applied annotations that a real
//! apiserver returns (and that the agent must trim to keep its memory down).

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::{json, Value};

use crate::kind::Kind;
use crate::Error;

/// The size of a generated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Number of ClusterIP Services (one TCP port each).
    pub services: usize,
    /// Ready endpoints in the one EndpointSlice of each Service.
    pub endpoints_per_service: usize,
    /// Number of Nodes, named `node-0`, `node-1`, ...
    pub nodes: usize,
}

/// Services per generated namespace.
const SERVICES_PER_NAMESPACE: usize = 500;
const TIME: &str = "2025-01-01T00:00:00Z";

/// Every object of the cluster, in creation order.
pub fn generate(spec: ClusterSpec) -> impl Iterator<Item = (Kind, Value)> {
    let nodes = spec.nodes.max(1);
    let node_objects = (0..spec.nodes).map(|n| (Kind::Node, node(n)));
    let service_objects = (0..spec.services).flat_map(move |i| {
        [
            (Kind::Service, service(i)),
            (
                Kind::EndpointSlice,
                endpoint_slice(i, spec.endpoints_per_service, nodes),
            ),
        ]
    });
    node_objects.chain(service_objects)
}

fn nth_address(base: Ipv4Addr, n: usize) -> String {
    let n = u32::try_from(n).expect("fewer than 2^32 addresses");
    Ipv4Addr::from(u32::from(base).wrapping_add(n)).to_string()
}

fn namespace(i: usize) -> String {
    format!("bench-{}", i / SERVICES_PER_NAMESPACE)
}

fn service(i: usize) -> Value {
    let name = format!("svc-{i:05}");
    let ns = namespace(i);
    let applied = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
    });
    json!({
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": name},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n")},
            "creationTimestamp": TIME,
            "managedFields": [{
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "v1",
                "time": TIME,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {
                        "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                        "f:labels": {".": {}, "f:app": {}},
                    },
                    "f:spec": {
                        "f:internalTrafficPolicy": {},
                        "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {},
                        }},
                        "f:selector": {}, "f:sessionAffinity": {}, "f:type": {},
                    },
                },
            }],
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": nth_address(Ipv4Addr::new(10, 96, 0, 10), i),
            "clusterIPs": [nth_address(Ipv4Addr::new(10, 96, 0, 10), i)],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
        "status": {"loadBalancer": {}},
    })
}

fn endpoint_slice(i: usize, endpoints: usize, nodes: usize) -> Value {
    let service = format!("svc-{i:05}");
    let ns = namespace(i);
    let endpoints: Vec<Value> = (0..endpoints)
        .map(|e| {
            let n = i * endpoints + e;
            json!({
                "addresses": [nth_address(Ipv4Addr::new(10, 128, 0, 0), n)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": format!("node-{}", n % nodes),
                "zone": format!("zone-{}", n % 3),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": format!("{service}-pod-{e}"), "uid": format!("00000000-0000-4000-9000-{n:012}")},
            })
        })
        .collect();
    json!({
        "metadata": {
            "name": format!("{service}-x7k2p"),
            "generateName": format!("{service}-"),
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "app": service,
            },
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": TIME},
            "creationTimestamp": TIME,
            "generation": 1,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service, "uid": format!("00000000-0000-4000-a000-{i:012}"), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "discovery.k8s.io/v1",
                "time": TIME,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:addressType": {}, "f:endpoints": {},
                    "f:metadata": {
                        "f:annotations": {".": {}, "f:endpoints.kubernetes.io/last-change-trigger-time": {}},
                        "f:generateName": {},
                        "f:labels": {".": {}, "f:app": {}, "f:endpointslice.kubernetes.io/managed-by": {}, "f:kubernetes.io/service-name": {}},
                        "f:ownerReferences": {".": {}, format!("k:{{\"uid\":\"00000000-0000-4000-a000-{i:012}\"}}"): {}},
                    },
                    "f:ports": {},
                },
            }],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

fn node(n: usize) -> Value {
    let name = format!("node-{n}");
    json!({
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": format!("zone-{}", n % 3)},
            "creationTimestamp": TIME,
        },
        "spec": {"podCIDR": format!("10.128.{n}.0/24"), "podCIDRs": [format!("10.128.{n}.0/24")]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": nth_address(Ipv4Addr::new(192, 0, 2, 10), n)}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": TIME, "lastTransitionTime": TIME}],
        },
    })
}

/// Writes a kubeconfig with one cluster at `server` (plain HTTP, no
/// credentials) as its current context. JSON is valid YAML.
pub fn write_kubeconfig(path: &Path, server: &str) -> Result<(), Error> {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testapi", "cluster": {"server": server}}],
        "users": [{"name": "testapi", "user": {}}],
        "contexts": [{"name": "testapi", "context": {"cluster": "testapi", "user": "testapi"}}],
        "current-context": "testapi",
    });
    std::fs::write(path, format!("{config:#}\n")).map_err(|source| Error::WriteKubeconfig {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    #[test]
    fn generated_objects_are_valid_and_distinct() {
        let spec = ClusterSpec {
            services: 600,
            endpoints_per_service: 3,
            nodes: 2,
        };
        let objects: Vec<_> = generate(spec).collect();
        assert_eq!(objects.len(), 2 + 2 * 600);
        let mut addresses = std::collections::BTreeSet::new();
        for (kind, value) in objects {
            match kind {
                Kind::Service => {
                    let s: Service = serde_json::from_value(value).unwrap();
                    assert!(addresses.insert(s.spec.unwrap().cluster_ip.unwrap()));
                }
                Kind::EndpointSlice => {
                    let s: EndpointSlice = serde_json::from_value(value).unwrap();
                    let endpoints = s.endpoints.unwrap_or_default();
                    assert_eq!(endpoints.len(), 3);
                    for e in endpoints {
                        assert!(addresses.insert(e.addresses[0].clone()));
                    }
                }
                Kind::Node => drop(serde_json::from_value::<Node>(value).unwrap()),
                Kind::ConfigMap => panic!("no ConfigMap is generated"),
            }
        }
        assert!(
            addresses.contains("10.96.2.97"),
            "ClusterIPs run past one octet"
        );
    }
}
