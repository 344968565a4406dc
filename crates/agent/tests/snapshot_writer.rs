//! The snapshot writer applies watch events as kube-runtime's reflector
//! `Writer::apply_watcher_event` does: `Apply`/`Delete` at once; a listing
//! ends at `InitDone` with everything it did not name gone, and is never
//! a whole picture before then.

use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube_ipvs::snapshot::{NodeAddresses, SnapshotWriter};
use kube_ipvs::source::SourceEvent;
use kube_ipvs_controller::{ConfigMapRef, ServiceRef, StreamConfig, StreamKind};
use serde_json::json;

fn service(name: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}
    }))
    .unwrap()
}

fn slice(name: &str, service: &str, endpoint: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [endpoint], "conditions": {"ready": true}}],
        "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]
    }))
    .unwrap()
}

fn node(name: &str, zone: &str, address: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]}
    }))
    .unwrap()
}

fn r(name: &str) -> ServiceRef {
    ServiceRef::new("default", name)
}

fn list(writer: &mut SnapshotWriter, services: Vec<Service>, slices: Vec<EndpointSlice>) {
    writer.apply(SourceEvent::Services(Event::Init));
    for s in services {
        writer.apply(SourceEvent::Services(Event::InitApply(s)));
    }
    writer.apply(SourceEvent::Services(Event::InitDone));
    writer.apply(SourceEvent::EndpointSlices(Event::Init));
    for s in slices {
        writer.apply(SourceEvent::EndpointSlices(Event::InitApply(s)));
    }
    writer.apply(SourceEvent::EndpointSlices(Event::InitDone));
}

#[test]
fn initialized_only_once_every_kind_is_listed_and_not_while_relisting() {
    let mut writer = SnapshotWriter::new("node-1", NodeAddresses::Kernel);
    assert!(!writer.initialized());
    list(&mut writer, vec![], vec![]);
    assert!(!writer.initialized(), "the Node is not listed yet");
    writer.apply(SourceEvent::Node(Event::Init));
    writer.apply(SourceEvent::Node(Event::InitDone));
    assert!(writer.initialized());
    writer.apply(SourceEvent::Services(Event::Init));
    assert!(!writer.initialized(), "a relist is under way");
    writer.apply(SourceEvent::Services(Event::InitDone));
    assert!(writer.initialized());
}

#[test]
fn a_relist_is_swapped_in_whole_and_reports_only_what_changed() {
    let mut writer = SnapshotWriter::new("node-1", NodeAddresses::Kernel);
    list(
        &mut writer,
        vec![service("a", "10.96.0.1"), service("b", "10.96.0.2")],
        vec![
            slice("a-1", "a", "10.244.0.1"),
            slice("b-1", "b", "10.244.0.2"),
        ],
    );
    assert_eq!(writer.snapshot().service_count(), 2);

    // The relist mentions `a` unchanged and `b` no more.
    assert!(writer.apply(SourceEvent::Services(Event::Init)).is_empty());
    assert!(writer
        .apply(SourceEvent::Services(Event::InitApply(service(
            "a",
            "10.96.0.1"
        ))))
        .is_empty());
    assert_eq!(
        writer.snapshot().service_count(),
        2,
        "the old state stands until the listing is done"
    );
    let changed = writer.apply(SourceEvent::Services(Event::InitDone));
    assert_eq!(changed.services.into_iter().collect::<Vec<_>>(), [r("b")]);
    assert!(writer.snapshot().service(&r("b")).is_none());
    assert!(writer.snapshot().service(&r("a")).is_some());

    // The slices' relist changes `a-1` and drops `b-1`: the change is
    // reported as the slice arrives, the removal at the end.
    writer.apply(SourceEvent::EndpointSlices(Event::Init));
    let changed = writer.apply(SourceEvent::EndpointSlices(Event::InitApply(slice(
        "a-1",
        "a",
        "10.244.0.9",
    ))));
    assert_eq!(changed.services.into_iter().collect::<Vec<_>>(), [r("a")]);
    assert_eq!(writer.snapshot().slices_of(&r("b")).count(), 1);
    let changed = writer.apply(SourceEvent::EndpointSlices(Event::InitDone));
    assert_eq!(changed.services.into_iter().collect::<Vec<_>>(), [r("b")]);
    assert_eq!(writer.snapshot().slices_of(&r("b")).count(), 0);
    assert_eq!(writer.snapshot().endpoint_count(), 1);
}

#[test]
fn apply_and_delete_take_effect_at_once() {
    let mut writer = SnapshotWriter::new("node-1", NodeAddresses::Kernel);
    list(&mut writer, vec![service("a", "10.96.0.1")], vec![]);
    let changed = writer.apply(SourceEvent::Services(Event::Apply(service(
        "b",
        "10.96.0.2",
    ))));
    assert!(changed.affects(&r("b")));
    let changed = writer.apply(SourceEvent::Services(Event::Delete(service(
        "a",
        "10.96.0.1",
    ))));
    assert!(changed.affects(&r("a")));
    assert_eq!(writer.snapshot().service_count(), 1);
    assert!(writer
        .apply(SourceEvent::Services(Event::Apply(service(
            "b",
            "10.96.0.2"
        ))))
        .is_empty());
}

#[test]
fn only_our_node_counts_and_a_relist_without_it_forgets_it() {
    let mut writer = SnapshotWriter::new("node-1", NodeAddresses::NodeObject);
    writer.apply(SourceEvent::Node(Event::Init));
    writer.apply(SourceEvent::Node(Event::InitApply(node(
        "node-2",
        "zone-b",
        "192.0.2.2",
    ))));
    writer.apply(SourceEvent::Node(Event::InitApply(node(
        "node-1",
        "zone-a",
        "192.0.2.1",
    ))));
    let changed = writer.apply(SourceEvent::Node(Event::InitDone));
    assert!(changed.all, "a new zone and addresses affect every Service");
    assert_eq!(writer.snapshot().node().zone.as_deref(), Some("zone-a"));
    assert_eq!(
        writer.snapshot().node_addresses(),
        ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
    );

    writer.apply(SourceEvent::Node(Event::Init));
    let changed = writer.apply(SourceEvent::Node(Event::InitDone));
    assert!(changed.all);
    assert_eq!(writer.snapshot().node().zone, None);
    assert!(writer.snapshot().node_addresses().is_empty());
}

fn config_map(name: &str, port: &str, target: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ingress-nginx"},
        "data": {port: target}
    }))
    .unwrap()
}

fn entries(writer: &SnapshotWriter) -> Vec<String> {
    writer
        .snapshot()
        .stream_entries()
        .map(|(e, t)| format!("{e} -> {}:{}", t.service, t.port))
        .collect()
}

#[test]
fn stream_services_config_maps_are_listed_like_the_node_and_others_are_ignored() {
    let streams = StreamConfig {
        tcp_services: Some(ConfigMapRef::new("ingress-nginx", "tcp-services")),
        udp_services: None,
        publish_service: Some(ServiceRef::new("ingress-nginx", "controller")),
    };
    let mut writer = SnapshotWriter::new("node-1", NodeAddresses::Kernel).with_streams(&streams);
    list(&mut writer, vec![], vec![]);
    writer.apply(SourceEvent::Node(Event::Init));
    writer.apply(SourceEvent::Node(Event::InitDone));
    assert!(!writer.initialized(), "tcp-services is not listed yet");
    let tcp = StreamKind::Tcp;
    writer.apply(SourceEvent::StreamServices(tcp, Event::Init));
    let changed = writer.apply(SourceEvent::StreamServices(
        tcp,
        Event::InitApply(config_map("tcp-services", "10000", "default/a:80")),
    ));
    assert!(changed.is_empty(), "buffered until InitDone");
    assert!(entries(&writer).is_empty());
    let changed = writer.apply(SourceEvent::StreamServices(tcp, Event::InitDone));
    assert_eq!(changed.streams.len(), 1);
    assert!(writer.initialized());
    assert_eq!(
        entries(&writer),
        ["tcp-services ingress-nginx/tcp-services:10000 -> default/a:80"]
    );

    // Another ConfigMap, and a kind not configured, change nothing.
    for event in [
        SourceEvent::StreamServices(
            tcp,
            Event::Apply(config_map("other", "10000", "default/b:80")),
        ),
        SourceEvent::StreamServices(
            StreamKind::Udp,
            Event::Apply(config_map("tcp-services", "10000", "default/b:80")),
        ),
    ] {
        assert!(writer.apply(event).is_empty());
    }
    assert_eq!(
        entries(&writer),
        ["tcp-services ingress-nginx/tcp-services:10000 -> default/a:80"]
    );

    // A relist without it: gone.
    writer.apply(SourceEvent::StreamServices(tcp, Event::Init));
    assert!(!writer.initialized());
    let changed = writer.apply(SourceEvent::StreamServices(tcp, Event::InitDone));
    assert_eq!(changed.streams.len(), 1);
    assert!(entries(&writer).is_empty());
    assert!(writer.initialized());
}
