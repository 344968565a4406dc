//! kube-proxy's change metrics: changes seen and pending since the last
//! sync, per IP family, and which families the node serves.

use std::net::IpAddr;

use foldhash::HashSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube_ipvs_controller::{Intent, NodeInfo, ServiceRef};
use kube_ipvs_netlink::VirtualServerKey;

use crate::metrics::Metrics;

/// The `ip_family` label values, as Kubernetes spells the families.
pub(crate) const FAMILIES: [&str; 2] = ["IPv4", "IPv6"];

/// Where `family` is in [`FAMILIES`]; none for any other spelling.
pub(crate) fn index(family: &str) -> Option<usize> {
    FAMILIES.iter().position(|f| *f == family)
}

/// The families of a Service: its cluster IPs', else its `ipFamilies`
/// (headless). An ExternalName Service has none.
pub(crate) fn service_families(service: &Service) -> Vec<&'static str> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let ips: Vec<&String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    let mut out: Vec<&'static str> = ips
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| {
            if ip.is_ipv4() {
                FAMILIES[0]
            } else {
                FAMILIES[1]
            }
        })
        .collect();
    if out.is_empty() {
        out = spec
            .ip_families
            .iter()
            .flatten()
            .filter_map(|f| index(f).map(|i| FAMILIES[i]))
            .collect();
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The family of an EndpointSlice's addresses (`FQDN` slices have none).
pub(crate) fn slice_family(slice: &EndpointSlice) -> Option<&'static str> {
    index(&slice.address_type).map(|i| FAMILIES[i])
}

/// The Service an EndpointSlice belongs to.
pub(crate) fn slice_service(slice: &EndpointSlice) -> Option<ServiceRef> {
    let name = slice.labels().get("kubernetes.io/service-name")?;
    Some(ServiceRef::new(
        slice.namespace().unwrap_or_default(),
        name.clone(),
    ))
}

/// The families the node serves: those of the desired virtual servers;
/// with none, those of the Node's primary IPs; else IPv4.
pub(crate) fn served_families(intent: &Intent, node: &NodeInfo) -> Vec<&'static str> {
    let mut seen = [false; 2];
    for key in intent.keys() {
        if let VirtualServerKey::Inet { address, .. } = key {
            seen[usize::from(address.is_ipv6())] = true;
            if seen == [true, true] {
                break;
            }
        }
    }
    if seen == [false, false] {
        for ip in &node.primary_ips {
            seen[usize::from(ip.is_ipv6())] = true;
        }
    }
    if seen == [false, false] {
        seen[0] = true;
    }
    FAMILIES
        .iter()
        .zip(seen)
        .filter_map(|(f, s)| s.then_some(*f))
        .collect()
}

/// The Services with changes not yet synced, per family, as kube-proxy's
/// change trackers count them.
#[derive(Debug, Default)]
pub(crate) struct PendingChanges {
    services: [HashSet<ServiceRef>; 2],
    endpoints: [HashSet<ServiceRef>; 2],
    /// Families whose gauges exist.
    seen: [bool; 2],
}

impl PendingChanges {
    /// A change to `service`, of `families`.
    pub(crate) fn service(&mut self, service: &ServiceRef, families: &[&str], metrics: &Metrics) {
        for family in families {
            let Some(i) = index(family) else { continue };
            self.seen[i] = true;
            metrics.service_changes.with_label_values(&[family]).inc();
            self.services[i].insert(service.clone());
            metrics
                .service_changes_pending
                .with_label_values(&[family])
                .set(self.services[i].len() as i64);
        }
    }

    /// A change to the endpoints of `service`, of `family`.
    pub(crate) fn endpoints(&mut self, service: &ServiceRef, family: &str, metrics: &Metrics) {
        let Some(i) = index(family) else { return };
        self.seen[i] = true;
        metrics.endpoint_changes.with_label_values(&[family]).inc();
        self.endpoints[i].insert(service.clone());
        metrics
            .endpoint_changes_pending
            .with_label_values(&[family])
            .set(self.endpoints[i].len() as i64);
    }

    /// A sync programmed every pending change.
    pub(crate) fn synced(&mut self, metrics: &Metrics) {
        for (i, family) in FAMILIES.iter().enumerate() {
            // The initial listing changes every Service: a table sized for
            // all of them is not kept for the few that change later.
            for set in [&mut self.services[i], &mut self.endpoints[i]] {
                set.clear();
                set.shrink_to(64);
            }
            if self.seen[i] {
                metrics
                    .service_changes_pending
                    .with_label_values(&[family])
                    .set(0);
                metrics
                    .endpoint_changes_pending
                    .with_label_values(&[family])
                    .set(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn families_of_services_and_slices() {
        let svc = |spec: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).unwrap()
        };
        assert_eq!(
            service_families(&svc(json!({"clusterIPs": ["10.96.0.1", "fd00::1"]}))),
            ["IPv4", "IPv6"]
        );
        assert_eq!(
            service_families(&svc(json!({"clusterIP": "fd00::1"}))),
            ["IPv6"]
        );
        assert_eq!(
            service_families(&svc(json!({"clusterIP": "None", "ipFamilies": ["IPv4"]}))),
            ["IPv4"]
        );
        assert!(service_families(&svc(json!({"type": "ExternalName"}))).is_empty());
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s-1", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "s"}},
            "addressType": "IPv6", "endpoints": []
        }))
        .unwrap();
        assert_eq!(slice_family(&slice), Some("IPv6"));
        assert_eq!(slice_service(&slice), Some(ServiceRef::new("ns", "s")));
    }

    #[test]
    fn pending_counts_distinct_services_until_a_sync() {
        let metrics = Metrics::unregistered();
        let mut pending = PendingChanges::default();
        let a = ServiceRef::new("ns", "a");
        pending.service(&a, &["IPv4"], &metrics);
        pending.service(&a, &["IPv4"], &metrics);
        pending.endpoints(&a, "IPv4", &metrics);
        let gauge = |g: &prometheus::IntGaugeVec| g.with_label_values(&["IPv4"]).get();
        assert_eq!(gauge(&metrics.service_changes_pending), 1);
        assert_eq!(gauge(&metrics.endpoint_changes_pending), 1);
        assert_eq!(
            metrics.service_changes.with_label_values(&["IPv4"]).get(),
            2
        );
        pending.synced(&metrics);
        assert_eq!(gauge(&metrics.service_changes_pending), 0);
        assert_eq!(gauge(&metrics.endpoint_changes_pending), 0);
    }
}
