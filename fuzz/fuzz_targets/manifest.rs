//! The manifest loader (`--from-dir`): a file's text through
//! `source::manifest::parse_text` (JSON when it looks like JSON, else YAML
//! cut into documents as a file is), and
//! its objects through the controller as the agent feeds them: the
//! snapshot (Services, EndpointSlices, the Node, stream-services
//! ConfigMaps), the desired state and its planning index.
#![no_main]

use std::path::Path;

use kube_ipvs::source::manifest;
use kube_ipvs_controller::{desired, Config, ConfigMapRef, Intent, Snapshot, StreamKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = if text.trim_start().starts_with('{') {
        Path::new("fuzz.json")
    } else {
        Path::new("fuzz.yaml")
    };
    let (objects, _errors) = manifest::parse_text(path, text);
    let mut snapshot = Snapshot::new();
    snapshot.replace_services(objects.services.iter());
    snapshot.replace_slices(objects.endpoint_slices.iter());
    let mut config = Config::new("node-a");
    if let Some(node) = objects.nodes.first() {
        snapshot.set_node(node);
        config = Config::new(node.metadata.name.clone().unwrap_or_default());
    }
    for (kind, config_map) in StreamKind::ALL.iter().zip(&objects.config_maps) {
        let (Some(namespace), Some(name)) =
            (&config_map.metadata.namespace, &config_map.metadata.name)
        else {
            continue;
        };
        let reference = Some(ConfigMapRef::new(namespace.clone(), name.clone()));
        match kind {
            StreamKind::Tcp => config.streams.tcp_services = reference,
            StreamKind::Udp => config.streams.udp_services = reference,
        }
        snapshot.apply_stream_services(*kind, config_map);
    }
    let _ = Intent::new(desired(&snapshot, &config));
});
