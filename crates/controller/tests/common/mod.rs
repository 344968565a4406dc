//! Readable builders for test objects and a one-line rendering of virtual
//! servers, shared by the mapping and snapshot tests.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube_ipvs_controller::{desired, Config, DesiredState, ServiceRef, ServiceState, Snapshot};
use serde_json::{json, Value};

/// A Service from JSON.
pub fn service(v: Value) -> Service {
    serde_json::from_value(v).expect("a Service")
}

/// A ClusterIP Service `default/name` with `spec` merged over a cluster IP
/// and one TCP port 80 named http.
pub fn cluster_ip(name: &str, spec: Value) -> Service {
    let mut base = json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]});
    merge(&mut base, spec);
    service(json!({"metadata": {"namespace": "default", "name": name}, "spec": base}))
}

fn merge(base: &mut Value, over: Value) {
    if let (Some(b), Value::Object(o)) = (base.as_object_mut(), over) {
        for (k, v) in o {
            b.insert(k, v);
        }
    }
}

/// An EndpointSlice from JSON.
pub fn slice_json(v: Value) -> EndpointSlice {
    serde_json::from_value(v).expect("an EndpointSlice")
}

/// An EndpointSlice `default/name` of Service `service`.
pub fn slice(
    name: &str,
    service: &str,
    address_type: &str,
    ports: Value,
    endpoints: Value,
) -> EndpointSlice {
    slice_json(json!({
        "metadata": {"namespace": "default", "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }))
}

/// A ready endpoint on `node`.
/// An IPv4 slice of `service` with one port named `http` (8080).
pub fn http_slice(name: &str, service: &str, endpoints: Value) -> EndpointSlice {
    slice(
        name,
        service,
        "IPv4",
        json!([{"name": "http", "port": 8080}]),
        endpoints,
    )
}

pub fn ep(address: &str, node: &str) -> Value {
    json!({"addresses": [address], "nodeName": node})
}

/// An endpoint with explicit conditions.
pub fn ep_cond(address: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [address], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

/// A ready endpoint hinted for `zones`.
pub fn ep_zones(address: &str, node: &str, zones: &[&str]) -> Value {
    let zones: Vec<Value> = zones.iter().map(|z| json!({"name": z})).collect();
    json!({"addresses": [address], "nodeName": node, "hints": {"forZones": zones}})
}

/// A Node in `zone`.
pub fn node(name: &str, zone: Option<&str>, addresses: &[(&str, &str)]) -> Node {
    let addresses: Vec<Value> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    let labels = match zone {
        Some(z) => json!({"topology.kubernetes.io/zone": z}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"addresses": addresses},
    }))
    .expect("a Node")
}

/// Endpoints from JSON.
pub fn endpoints(v: Value) -> Endpoints {
    serde_json::from_value(v).expect("an Endpoints")
}

/// `default/name`.
pub fn r(name: &str) -> ServiceRef {
    ServiceRef::new("default", name)
}

/// A snapshot and a configuration for node `node-a` with addresses
/// 192.168.0.10 and 2001:db8::10.
pub struct World {
    pub snapshot: Snapshot,
    pub config: Config,
}

impl World {
    pub fn new() -> Self {
        let mut snapshot = Snapshot::new();
        snapshot.set_node_addresses(vec![
            "192.168.0.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ]);
        World {
            snapshot,
            config: Config::new("node-a"),
        }
    }

    pub fn with(mut self, service: Service) -> Self {
        self.snapshot.apply_service(&service);
        self
    }

    pub fn with_slice(mut self, slice: EndpointSlice) -> Self {
        self.snapshot.apply_slice(&slice);
        self
    }

    pub fn desired(&self) -> DesiredState {
        desired(&self.snapshot, &self.config)
    }

    /// The virtual servers of `default/name`, rendered.
    pub fn vs(&self, name: &str) -> Vec<String> {
        self.desired()
            .services
            .get(&r(name))
            .map(render)
            .unwrap_or_default()
    }

    /// The skips, rendered: conversion's then mapping's.
    pub fn skipped(&self) -> Vec<String> {
        let mut out: Vec<String> = self.snapshot.skipped().map(|s| s.to_string()).collect();
        out.extend(self.desired().skipped.iter().map(|s| s.to_string()));
        out
    }
}

/// `kind key port_name -> real servers`, one line per virtual server in key
/// order.
pub fn render(state: &ServiceState) -> Vec<String> {
    state
        .virtual_servers
        .values()
        .map(|vs| {
            let rs: Vec<String> = vs.real_servers.keys().map(|k| k.to_string()).collect();
            format!(
                "{} {} {} -> {}",
                vs.kind.as_str(),
                vs.service.key,
                vs.port_name,
                rs.join(" ")
            )
            .trim_end()
            .to_owned()
        })
        .collect()
}

/// Compares rendered lines, ignoring order.
pub fn assert_lines(actual: Vec<String>, expected: &[&str]) {
    let mut actual = actual;
    actual.sort();
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(actual, expected);
}
