//! Dropping the fields the agent never reads, before objects are kept.
//!
//! `managedFields` and the `kubectl apply` annotation are often the larger
//! part of a Service, and a Node's image list is kilobytes; with tens of
//! thousands of objects held, they would dominate the agent's memory. Both
//! sources decode objects without them in the first place
//! ([`Unread`](super::unread::Unread)); trimming is for what is left (an
//! annotation map left empty) and for objects built otherwise.

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation `kubectl apply` keeps the whole applied object in.
pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Objects that can be trimmed.
pub(crate) trait Trim {
    /// Drops the fields the agent never reads.
    fn trim(&mut self);
}

fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

impl Trim for Service {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata);
        // The endpoints come from the EndpointSlices, as kube-proxy's do.
        if let Some(spec) = &mut self.spec {
            spec.selector = None;
        }
    }
}

impl Trim for EndpointSlice {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata);
        // Topology reads an endpoint's hints, not its zone, as kube-proxy's
        // does; its pod and host name are read by nothing.
        for endpoint in self.endpoints.iter_mut().flatten() {
            endpoint.target_ref = None;
            endpoint.zone = None;
            endpoint.hostname = None;
            endpoint.deprecated_topology = None;
        }
    }
}

impl Trim for Endpoints {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata);
    }
}

impl Trim for ConfigMap {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata);
        // Stream services are text; binary data is never read.
        self.binary_data = None;
    }
}

impl Trim for Node {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata);
        if let Some(status) = &mut self.status {
            status.images = None;
        }
    }
}

use super::index::{ObjectKey, Stub};
use crate::agent::changes::{self, FAMILIES};
use k8s_openapi::api::core::v1::ServiceSpec;

fn meta(key: &ObjectKey) -> ObjectMeta {
    ObjectMeta {
        namespace: (!key.namespace().is_empty()).then(|| key.namespace().to_owned()),
        name: Some(key.name().to_owned()),
        ..ObjectMeta::default()
    }
}

/// What the loop reads of a deleted Service: its addresses' families
/// (`changes::service_families`), one bit each in the order of
/// [`FAMILIES`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServiceIdentity(u8);

impl Stub for Service {
    type Identity = ServiceIdentity;

    fn identity(&self) -> ServiceIdentity {
        ServiceIdentity(
            changes::service_families(self)
                .iter()
                .filter_map(|f| changes::index(f))
                .fold(0, |bits, i| bits | 1 << i),
        )
    }

    /// A Service whose only addresses are its families, which
    /// `changes::service_families` reads when it has no cluster IP.
    fn stub(key: &ObjectKey, &ServiceIdentity(bits): &ServiceIdentity) -> Self {
        let families = FAMILIES
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & 1 << i != 0)
            .map(|(_, f)| (*f).to_owned())
            .collect();
        Service {
            metadata: meta(key),
            spec: Some(ServiceSpec {
                ip_families: Some(families),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

impl Stub for EndpointSlice {
    /// The address type's family (`changes::slice_family`: an index into
    /// [`FAMILIES`], or none for the other types) and the Service it
    /// belongs to.
    type Identity = (Option<u8>, Option<Box<str>>);

    fn identity(&self) -> Self::Identity {
        (
            changes::index(&self.address_type).and_then(|i| u8::try_from(i).ok()),
            self.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME))
                .map(|s| s.as_str().into()),
        )
    }

    fn stub(key: &ObjectKey, (family, service): &Self::Identity) -> Self {
        let mut metadata = meta(key);
        metadata.labels = service
            .as_ref()
            .map(|s| [(SERVICE_NAME.to_owned(), s.to_string())].into());
        EndpointSlice {
            metadata,
            address_type: family
                .and_then(|i| FAMILIES.get(usize::from(i)))
                .map(|f| (*f).to_owned())
                .unwrap_or_default(),
            endpoints: None,
            ports: None,
        }
    }
}

impl Stub for Node {
    type Identity = ();

    fn identity(&self) {}

    fn stub(key: &ObjectKey, (): &()) -> Self {
        Node {
            metadata: meta(key),
            ..Node::default()
        }
    }
}

impl Stub for ConfigMap {
    type Identity = ();

    fn identity(&self) {}

    fn stub(key: &ObjectKey, (): &()) -> Self {
        ConfigMap {
            metadata: meta(key),
            ..ConfigMap::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerImage, NodeStatus, ObjectReference};
    use k8s_openapi::api::discovery::v1::Endpoint;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn trims_managed_fields_last_applied_and_images() {
        let meta = ObjectMeta {
            name: Some("n".into()),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            annotations: Some(
                [
                    (LAST_APPLIED.to_owned(), "{}".to_owned()),
                    ("keep".to_owned(), "1".to_owned()),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let mut node = Node {
            metadata: meta,
            status: Some(NodeStatus {
                images: Some(vec![ContainerImage::default()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        node.trim();
        assert_eq!(node.metadata.managed_fields, None);
        assert_eq!(
            node.metadata.annotations,
            Some([("keep".to_owned(), "1".to_owned())].into())
        );
        assert_eq!(node.status.unwrap().images, None);
        let mut service = Service {
            metadata: ObjectMeta {
                annotations: Some([(LAST_APPLIED.to_owned(), "{}".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        service.trim();
        assert_eq!(service.metadata.annotations, None);
    }

    #[test]
    fn trims_a_selector_and_what_an_endpoint_has_unread() {
        let mut service = Service {
            spec: Some(ServiceSpec {
                selector: Some([("app".to_owned(), "web".to_owned())].into()),
                cluster_ip: Some("10.96.0.1".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        service.trim();
        let spec = service.spec.expect("spec");
        assert_eq!(spec.selector, None);
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
        let endpoint = Endpoint {
            addresses: vec!["10.0.0.1".to_owned()],
            node_name: Some("node-1".to_owned()),
            zone: Some("a".to_owned()),
            hostname: Some("web-0".to_owned()),
            target_ref: Some(ObjectReference::default()),
            deprecated_topology: Some([("k".to_owned(), "v".to_owned())].into()),
            ..Default::default()
        };
        let mut slice = EndpointSlice {
            endpoints: Some(vec![endpoint.clone(), endpoint]),
            ..Default::default()
        };
        slice.trim();
        for e in slice.endpoints.expect("endpoints") {
            assert_eq!(
                e,
                Endpoint {
                    addresses: vec!["10.0.0.1".to_owned()],
                    node_name: Some("node-1".to_owned()),
                    ..Default::default()
                }
            );
        }
    }

    /// A deleted Service's stub counts its change in the families the
    /// Service had, as the loop's metrics read them.
    #[test]
    fn a_service_stub_keeps_its_families() {
        let key = ObjectKey::new("ns", "web");
        let service = |cluster_ips: Option<&[&str]>, families: Option<&[&str]>| Service {
            spec: Some(ServiceSpec {
                cluster_ips: cluster_ips.map(|ips| ips.iter().map(|s| s.to_string()).collect()),
                ip_families: families.map(|f| f.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        for (service, families) in [
            (
                service(Some(&["fd00::1", "10.0.0.1"]), None),
                vec!["IPv4", "IPv6"],
            ),
            (service(Some(&["fd00::1"]), Some(&["IPv4"])), vec!["IPv6"]),
            (service(Some(&["None"]), Some(&["IPv6"])), vec!["IPv6"]),
            (service(None, None), vec![]),
            (Service::default(), vec![]),
        ] {
            assert_eq!(changes::service_families(&service), families);
            let stub = Service::stub(&key, &service.identity());
            assert_eq!(changes::service_families(&stub), families, "{service:?}");
            assert_eq!(stub.metadata.name.as_deref(), Some("web"));
            assert_eq!(stub.metadata.namespace.as_deref(), Some("ns"));
        }
    }

    /// A deleted EndpointSlice's stub names its Service and family, as the
    /// loop's metrics read them.
    #[test]
    fn a_slice_stub_keeps_its_service_and_family() {
        let key = ObjectKey::new("ns", "web-abc");
        for (address_type, family) in [
            ("IPv4", Some("IPv4")),
            ("IPv6", Some("IPv6")),
            ("FQDN", None),
        ] {
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    labels: Some([(SERVICE_NAME.to_owned(), "web".to_owned())].into()),
                    ..Default::default()
                },
                address_type: address_type.to_owned(),
                ..Default::default()
            };
            let stub = EndpointSlice::stub(&key, &slice.identity());
            assert_eq!(changes::slice_family(&stub), family);
            assert_eq!(changes::slice_family(&slice), family);
            let service = changes::slice_service(&stub).map(|s| s.to_string());
            assert_eq!(service.as_deref(), Some("ns/web"));
            assert_eq!(stub.metadata.name.as_deref(), Some("web-abc"));
        }
    }
}
