use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::WatchEvent;
use kube::core::ObjectList;
use kube_ipvs_testapi::cluster::{generate, ClusterSpec};
use kube_ipvs_testapi::Kind;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{Unneeded, Unread};
use crate::source::trim::Trim;

/// Decoded the long way: whole, then trimmed.
fn trimmed<K: DeserializeOwned + Trim>(text: &str) -> K {
    let mut object: K = serde_json::from_str(text).expect("decodes whole");
    object.trim();
    object
}

/// Decoded without the unread fields, then trimmed as the watch does.
fn unread<K: DeserializeOwned + Unneeded>(text: &str) -> K {
    let Unread(mut object) = serde_json::from_str::<Unread<K>>(text).expect("decodes unread");
    object.trim();
    object
}

fn same<K: DeserializeOwned + Unneeded + PartialEq + std::fmt::Debug>(object: &Value) {
    let text = object.to_string();
    assert_eq!(unread::<K>(&text), trimmed::<K>(&text), "{text}");
}

#[test]
fn generated_objects_decode_as_decoded_whole_and_trimmed() {
    let spec = ClusterSpec {
        services: 3,
        endpoints_per_service: 4,
        nodes: 2,
    };
    let mut kinds = 0;
    for (kind, object) in generate(spec) {
        if kind != Kind::Node {
            assert!(
                object["metadata"].get("managedFields").is_some(),
                "{object}"
            );
        }
        match kind {
            Kind::Service => same::<Service>(&object),
            Kind::EndpointSlice => same::<EndpointSlice>(&object),
            Kind::Node => same::<Node>(&object),
            _ => continue,
        }
        kinds += 1;
    }
    assert_eq!(kinds, 3 + 3 + 2);
}

fn service(metadata: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata,
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}],
                 "selector": {"app": "web", "managedFields": "a selector key, kept"}},
    })
}

#[test]
fn only_the_unread_fields_are_passed_over() {
    let object = service(json!({
        "name": "web", "namespace": "default",
        "labels": {"managedFields": "kept", "app": "web"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"whole\": \"object\"}",
            "a": "b",
            "managedFields": "kept",
        },
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        "resourceVersion": "7",
    }));
    let Unread(decoded) =
        serde_json::from_value::<Unread<Service>>(object.clone()).expect("decodes");
    let meta = &decoded.metadata;
    assert_eq!(meta.managed_fields, None);
    let annotations = meta.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["a", "managedFields"],
        "the last-applied annotation alone is passed over"
    );
    assert_eq!(meta.labels.as_ref().expect("labels").len(), 2);
    assert_eq!(
        meta.resource_version.as_deref(),
        Some("7"),
        "keys after the skipped ones are read"
    );
    let spec = decoded.spec.as_ref().expect("spec");
    assert_eq!(spec.selector, None, "kube-proxy reads no selector");
    assert_eq!(spec.ports.as_ref().expect("ports")[0].port, 80);
    same::<Service>(&object);
}

#[test]
fn an_endpoint_keeps_what_the_mapping_reads() {
    let endpoint = json!({
        "addresses": ["10.0.0.1"],
        "conditions": {"ready": false, "serving": true, "terminating": true},
        "nodeName": "node-1",
        "zone": "zone-a",
        "hostname": "web-0",
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": "u"},
        "deprecatedTopology": {"kubernetes.io/hostname": "node-1"},
        "hints": {"forZones": [{"name": "zone-b"}], "forNodes": [{"name": "node-2"}]},
    });
    let object = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x", "labels": {"kubernetes.io/service-name": "web", "zone": "kept"},
                     "managedFields": [{"manager": "m"}]},
        "addressType": "IPv4",
        "endpoints": [endpoint, endpoint, {"addresses": ["10.0.0.2"]}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    });
    let Unread(slice) =
        serde_json::from_value::<Unread<EndpointSlice>>(object.clone()).expect("decodes");
    let endpoints = slice.endpoints.as_ref().expect("endpoints");
    assert_eq!(endpoints.len(), 3);
    for e in &endpoints[..2] {
        assert_eq!(e.addresses, ["10.0.0.1"]);
        let conditions = e.conditions.as_ref().expect("conditions");
        assert_eq!(
            (conditions.ready, conditions.serving, conditions.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(e.node_name.as_deref(), Some("node-1"));
        let hints = e.hints.as_ref().expect("hints");
        assert_eq!(hints.for_zones.as_ref().expect("zones")[0].name, "zone-b");
        assert_eq!(hints.for_nodes.as_ref().expect("nodes")[0].name, "node-2");
        assert_eq!(
            (&e.zone, &e.hostname, &e.target_ref, &e.deprecated_topology),
            (&None, &None, &None, &None)
        );
    }
    assert_eq!(endpoints[2].addresses, ["10.0.0.2"]);
    assert_eq!(
        slice.metadata.labels.as_ref().expect("labels").len(),
        2,
        "a label named zone is kept"
    );
    assert_eq!(slice.metadata.managed_fields, None);
    assert_eq!(slice.ports.as_ref().expect("ports")[0].port, Some(8080));
    same::<EndpointSlice>(&object);
}

#[test]
fn a_node_and_a_config_map_pass_over_their_own() {
    let node = json!({"metadata": {"name": "node-0", "managedFields": [{"manager": "kubelet"}]},
        "status": {"images": [{"names": ["a"], "sizeBytes": 1}],
                   "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}});
    let Unread(decoded) = serde_json::from_value::<Unread<Node>>(node.clone()).expect("decodes");
    let status = decoded.status.as_ref().expect("status");
    assert_eq!(status.images, None);
    assert_eq!(
        status.addresses.as_ref().expect("addresses")[0].address,
        "192.0.2.1"
    );
    same::<Node>(&node);
    let config_map = json!({"metadata": {"name": "tcp", "managedFields": [{"manager": "m"}]},
        "data": {"8080": "default/web:80", "binaryData": "kept"}, "binaryData": {"b": "AAAA"}});
    let Unread(decoded) =
        serde_json::from_value::<Unread<ConfigMap>>(config_map.clone()).expect("decodes");
    assert_eq!(decoded.binary_data, None);
    assert_eq!(decoded.data.as_ref().expect("data").len(), 2);
    same::<ConfigMap>(&config_map);
}

#[test]
fn unread_fields_are_not_checked() {
    for metadata in [
        json!({"name": "web", "managedFields": "not a list"}),
        json!({"name": "web", "managedFields": [{"fieldsV1": [1, {"a": null}]}],
               "annotations": {"kubectl.kubernetes.io/last-applied-configuration": {"not": "a string"}}}),
    ] {
        let text = service(metadata).to_string();
        assert!(
            serde_json::from_str::<Service>(&text).is_err(),
            "whole, it is invalid: {text}"
        );
        let Unread(decoded) = serde_json::from_str::<Unread<Service>>(&text).expect("decodes");
        assert_eq!(decoded.metadata.name.as_deref(), Some("web"));
        assert_eq!(decoded.metadata.managed_fields, None);
    }
}

#[test]
fn everything_else_is_checked_as_before() {
    for metadata in [
        json!({"name": 7}),
        json!({"name": "web", "annotations": {"a": 1}}),
        json!({"name": "web", "annotations": ["a"]}),
        json!("metadata"),
    ] {
        let text = service(metadata).to_string();
        let whole = serde_json::from_str::<Service>(&text).expect_err("invalid whole");
        let unread = serde_json::from_str::<Unread<Service>>(&text).expect_err("invalid unread");
        assert_eq!(unread.to_string(), whole.to_string(), "{text}");
    }
}

#[test]
fn escaped_keys_and_null_annotations_are_read_the_same() {
    // An escape makes serde_json hand the key over owned, not borrowed.
    let text = r#"{"meta\u0064ata": {"name": "web", "annotations": null,
        "managed\u0046ields": [{"manager": "m"}]}, "spec": {"ports": [{"port": 80}]}}"#;
    let Unread(decoded) = serde_json::from_str::<Unread<Service>>(text).expect("decodes");
    assert_eq!(decoded.metadata.name.as_deref(), Some("web"));
    assert_eq!(decoded.metadata.managed_fields, None);
    assert_eq!(decoded.metadata.annotations, None);
    let text = r#"{"metadata": {"name": "c", "annotations": {"kubectl.kubernetes.io\/last-applied-configuration": "{}", "x": "y"}}, "data": {"a": "b"}}"#;
    assert_eq!(unread::<ConfigMap>(text), trimmed::<ConfigMap>(text));
    assert_eq!(
        unread::<ConfigMap>(text)
            .metadata
            .annotations
            .expect("x")
            .len(),
        1
    );
}

/// As kube reads them: a list page, and watch events, whose object may
/// come before its type (serde then buffers it, and decodes the buffer).
#[test]
fn list_pages_and_watch_events_decode_their_objects_unread() {
    let object = service(json!({"name": "web", "managedFields": [{"manager": "m"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}));
    let page = json!({"apiVersion": "v1", "kind": "ServiceList",
        "metadata": {"resourceVersion": "9", "continue": "next"}, "items": [object, object]});
    let list: ObjectList<Unread<Service>> = serde_json::from_value(page).expect("a page");
    assert_eq!(list.items.len(), 2);
    for Unread(service) in &list.items {
        assert_eq!(service.metadata.managed_fields, None);
        assert!(service
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.is_empty()));
    }
    for text in [
        format!(r#"{{"type": "MODIFIED", "object": {object}}}"#),
        format!(r#"{{"object": {object}, "type": "MODIFIED"}}"#),
    ] {
        let event: WatchEvent<Unread<Service>> = serde_json::from_str(&text).expect("an event");
        let WatchEvent::Modified(Unread(service)) = event else {
            panic!("{event:?}");
        };
        assert_eq!(service.metadata.managed_fields, None, "{text}");
        assert!(
            service.metadata.annotations.is_some_and(|a| a.is_empty()),
            "{text}"
        );
    }
}
