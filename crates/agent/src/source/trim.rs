//! Dropping the fields the agent never reads, before objects are kept.
//!
//! `managedFields` and the `kubectl apply` annotation are often the larger
//! part of a Service, and a Node's image list is kilobytes; with tens of
//! thousands of objects held, they would dominate the agent's memory.

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation `kubectl apply` keeps the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
    }
}

impl Trim for EndpointSlice {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata);
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
use k8s_openapi::api::core::v1::ServiceSpec;
use std::borrow::Cow;

fn meta(key: &ObjectKey) -> ObjectMeta {
    ObjectMeta {
        namespace: (!key.namespace().is_empty()).then(|| key.namespace().to_owned()),
        name: Some(key.name().to_owned()),
        ..ObjectMeta::default()
    }
}

/// What the loop reads of a deleted Service: its addresses' families.
#[derive(Clone, Debug)]
pub(crate) struct ServiceIdentity {
    cluster_ips: Option<Vec<String>>,
    ip_families: Option<Vec<String>>,
}

impl Stub for Service {
    type Identity = ServiceIdentity;

    fn identity(&self) -> ServiceIdentity {
        let spec = self.spec.as_ref();
        let cluster_ips = spec.and_then(|s| match (&s.cluster_ips, &s.cluster_ip) {
            (Some(ips), _) if !ips.is_empty() => Some(ips.clone()),
            (_, Some(ip)) => Some(vec![ip.clone()]),
            _ => None,
        });
        ServiceIdentity {
            cluster_ips,
            ip_families: spec.and_then(|s| s.ip_families.clone()),
        }
    }

    fn stub(key: &ObjectKey, identity: &ServiceIdentity) -> Self {
        Service {
            metadata: meta(key),
            spec: Some(ServiceSpec {
                cluster_ips: identity.cluster_ips.clone(),
                ip_families: identity.ip_families.clone(),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

impl Stub for EndpointSlice {
    /// The address type (the usual ones not copied) and the Service it
    /// belongs to.
    type Identity = (Cow<'static, str>, Option<Box<str>>);

    fn identity(&self) -> Self::Identity {
        let address_type = match self.address_type.as_str() {
            "IPv4" => Cow::Borrowed("IPv4"),
            "IPv6" => Cow::Borrowed("IPv6"),
            other => Cow::Owned(other.to_owned()),
        };
        (
            address_type,
            self.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME))
                .map(|s| s.as_str().into()),
        )
    }

    fn stub(key: &ObjectKey, (address_type, service): &Self::Identity) -> Self {
        let mut metadata = meta(key);
        metadata.labels = service
            .as_ref()
            .map(|s| [(SERVICE_NAME.to_owned(), s.to_string())].into());
        EndpointSlice {
            metadata,
            address_type: address_type.to_string(),
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
    use k8s_openapi::api::core::v1::{ContainerImage, NodeStatus};
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
}
