//! Services and EndpointSlices for the cases, written as JSON files into
//! the directory the agent watches.

use serde_json::{json, Value};

/// One Service port: (name, protocol, port, node port or 0), its pods
/// listen on `port` too.
pub type Port<'a> = (&'a str, &'a str, u16, u16);

/// A Service of `type_` ("ClusterIP", "NodePort", "LoadBalancer") with
/// cluster IP `ip` and `ports`; `extra` is merged into its `spec` (traffic
/// policies, externalIPs...), and `labels` into its metadata.
pub fn service(
    name: &str,
    type_: &str,
    ip: &str,
    ports: &[Port],
    spec: Value,
    labels: Value,
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, proto, port, node_port)| {
            let mut p = json!({"name": n, "protocol": proto, "port": port, "targetPort": port});
            if *node_port != 0 {
                p["nodePort"] = json!(node_port);
            }
            p
        })
        .collect();
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"type": type_, "clusterIP": ip, "clusterIPs": [ip], "ports": ports},
    });
    if let (Some(target), Some(extra)) = (service["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    service
}

/// An endpoint: (pod address, node it runs on, ready).
pub type Endpoint<'a> = (&'a str, &'a str, bool);

/// The EndpointSlice of Service `service` with `ports` and `endpoints`.
pub fn slice(service: &str, ports: &[Port], endpoints: &[Endpoint], labels: Value) -> Value {
    let mut all_labels = json!({"kubernetes.io/service-name": service});
    if let (Some(target), Some(extra)) = (all_labels.as_object_mut(), labels.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "default", "labels": all_labels},
        "addressType": "IPv4",
        "ports": ports.iter().map(|(n, proto, port, _)| json!({"name": n, "protocol": proto, "port": port})).collect::<Vec<_>>(),
        "endpoints": endpoints.iter().map(|(a, node, ready)| json!({
            "addresses": [a], "nodeName": node,
            "conditions": {"ready": ready, "serving": ready, "terminating": false},
        })).collect::<Vec<_>>(),
    })
}

/// A `v1` List of `items`, as one manifest file.
pub fn list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}
